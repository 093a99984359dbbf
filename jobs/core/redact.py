"""Redaction of secrets in what the product stores, logs or shows (pure).

A URL's user information (``http://user:pass@host``) becomes ``***@host``, and the value of every
query or fragment parameter whose name looks like a credential (``X-Amz-Signature``,
``X-Amz-Credential``, ``X-Amz-Security-Token``, ``Signature``, ``sig``, ``token``, ``key``,
``password``, ``secret``, ``auth``, ``session``…) becomes ``***``. Scheme, host, port, path and the
other parameters stay, so a redacted URL still says where the data came from. :func:`redact` takes a
URL, a free text with URLs in it (a log line, an error message), or JSON-like data (dicts, lists).
The request itself always uses the real URL; only what is written or printed goes through here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TypeVar

REDACTED = "***"

#: parameter names that carry credentials (substring match, case-insensitive)
_SECRET_NAME = re.compile(
    r"sig|token|key|credential|secret|pass|pwd|auth|session|cookie|bearer", re.IGNORECASE
)
#: a URL inside free text: scheme://… up to whitespace or a quote/bracket
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")

T = TypeVar("T")


def _redact_params(text: str) -> str:
    parts = []
    for part in re.split(r"([&;])", text):
        name, eq, value = part.partition("=")
        if eq and value and _SECRET_NAME.search(name):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return "".join(parts)


def redact_url(url: str) -> str:
    """``url`` with its user information and credential parameters replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = len(rest)
    for ch in "/?#":
        index = rest.find(ch)
        if index != -1:
            cut = min(cut, index)
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = REDACTED + "@" + authority.rsplit("@", 1)[1]
    path, hash_, fragment = tail.partition("#")
    path, qmark, query = path.partition("?")
    if qmark:
        query = _redact_params(query)
    if hash_:
        fragment = _redact_params(fragment)
    return f"{scheme}://{authority}{path}{qmark}{query}{hash_}{fragment}"


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted (see :func:`redact_url`)."""
    if "://" not in text:
        return text
    return _URL.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    url = match.group(0)
    trail = len(url) - len(url.rstrip(".,;:!?)]}"))  # sentence punctuation after a URL stays
    return redact_url(url[: len(url) - trail]) + url[len(url) - trail :]


def redact(value: T) -> T:
    """A string, or JSON-like data (dicts, lists, tuples) with every string in it, redacted.
    Anything else is returned as is."""
    if isinstance(value, str):
        return redact_text(value)  # type: ignore[return-value]
    if isinstance(value, Mapping):
        return {k: redact(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)  # type: ignore[return-value]
    return value


class RedactingFilter(logging.Filter):
    """A log-handler filter that redacts the formatted message and any traceback text of every
    record the handler emits: the safety net under the call sites that redact what they log."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True
