"""Specific exceptions with a one-line message a user can act on (DESIGN §9).

The CLI maps them to exit codes: ``UsageError`` and ``SourceError`` and ``ServiceError`` → 2,
``RejectedError`` → 1. Everything else is a bug and shows a traceback.
"""

from __future__ import annotations


class AbaloneError(Exception):
    """Base class for expected failures; ``str(err)`` is the one line shown to the user."""

    exit_code = 2


class UsageError(AbaloneError):
    """Bad flags, bad config, unknown stack or version."""


class SourceError(AbaloneError):
    """A source could not be read: missing path, HTTP error, timeout, truncated, too large."""


class StorageError(AbaloneError):
    """The lake (local directory or S3) could not be read or written."""


class ServiceError(AbaloneError):
    """A service the job needs (MLflow, S3, an endpoint) is unreachable or answered an error."""


class RejectedError(AbaloneError):
    """The data or the model was rejected by a rule (validation, gate)."""

    exit_code = 1
