"""The abalone data contract (DESIGN §3) as Great Expectations suites.

``validate_batch(bytes, ...)`` parses a raw batch leniently, runs the critical and warning suites,
builds the Data Docs site and returns a ``BatchValidation``; ``validate_frame(df, ...)`` runs the
same suites on an in-memory frame (``with_target=False`` for captured model inputs).
Importing this package does not import Great Expectations; the first validation does.
"""

from validation.batch import BatchValidation, validate_batch, validate_frame

__all__ = ["BatchValidation", "validate_batch", "validate_frame"]
