"""Time windows of ``abalone monitor --since``: pure parsing with an injected ``now``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from jobs.core.errors import UsageError

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime (naive values are taken as UTC)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    stamp = datetime.fromisoformat(value)
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC)


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """``--since``: ``30m``, ``1h``, ``24h``, ``7d``, ``2w`` before ``now``, or an ISO 8601 time."""
    if value is None or not value.strip():
        return None
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(value)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        return parse_time(value)
    except ValueError as err:
        raise UsageError(
            f"--since {value!r}: use a duration like 1h, 24h, 7d or an ISO 8601 time "
            "such as 2026-11-26T09:00:00Z"
        ) from err
