"""The one number grammar of the data contract (DESIGN §3, §7): ingest, serving and monitoring read
a number from text with this module only, so a value is a number in all three or in none.

A number is ASCII text: an optional sign, digits with an optional decimal point (``1``, ``1.``,
``.5``, ``0.455``) and an optional exponent (``4.55e-1``); ASCII whitespace around it is ignored.
Everything else is not a number, in particular what Python's ``float()`` or pandas would also read:
underscores (``0_5``), digits of other scripts (Arabic-Indic U+0660-U+0669, full-width
U+FF10-U+FF19, ...), ``nan``, ``inf``/``infinity`` spelled out, hexadecimal. A number too large
for a float (``1e999``) is a number whose value is infinite, which every range check rejects.

:data:`NUMBER_REGEX` / :data:`INTEGER_REGEX` are the same grammar as regular expressions for the
engines that match text themselves (Great Expectations' regex expectations, Arrow's RE2 kernels):
they use ``[0-9]``, never ``\\d`` (which matches any script's digits in Python).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

#: ASCII whitespace, the only whitespace stripped from a value (``str.strip()`` would strip any).
ASCII_SPACE = " \t\n\r\f\v"
NUMBER_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
NUMBER_REGEX = rf"^{NUMBER_PATTERN}$"
#: ``rings``: an integer, optionally written with a zero fraction (``9``, ``9.0``).
INTEGER_REGEX = r"^[+-]?[0-9]+(?:\.0*)?$"
_NUMBER = re.compile(NUMBER_PATTERN)
_INTEGER = re.compile(INTEGER_REGEX[1:-1])
# Any script's digits (and underscores), same shape: tells a data row from a header.
_ANY_SCRIPT = re.compile(
    r"[+-]?(?:\d[\d_]*[.\u066b]?[\d_]*|[.\u066b]\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?"
)
MAX_SHOWN = 40


class NotANumber(ValueError):
    """A value outside the grammar; the message says what it is and why it is not a number."""


def is_number(text: str) -> bool:
    """Whether ``text`` (surrounding ASCII whitespace ignored) is a number of the grammar."""
    return _NUMBER.fullmatch(text.strip(ASCII_SPACE)) is not None


def is_integer(text: str) -> bool:
    """Whether ``text`` is a whole number of the grammar (``rings``: ``9`` or ``9.0``)."""
    return _INTEGER.fullmatch(text.strip(ASCII_SPACE)) is not None


def looks_numeric(text: str) -> bool:
    """Whether ``text`` was meant as a number, in the grammar or not (digits of any script): a
    first CSV row with such a cell is data, not a header."""
    value = text.strip()
    return is_number(value) or _ANY_SCRIPT.fullmatch(value) is not None


def shown(value: Any) -> str:
    """``repr`` of a value for a message, cut to :data:`MAX_SHOWN` characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def why_not(text: str) -> str:
    """Why ``text`` is not a number of the grammar, in a few words."""
    value = text.strip(ASCII_SPACE)
    if not value:
        return "empty"
    if value.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return "nan/inf spelled out are not numbers"
    if "_" in value:
        return "underscores are not allowed in numbers"
    foreign = [ch for ch in value if not ch.isascii()]
    if foreign:
        if any(ch.isdigit() for ch in foreign):
            scripts = sorted({unicodedata.name(ch, "?").split(" DIGIT")[0] for ch in foreign})
            return f"digits must be ASCII 0-9, not {', '.join(scripts)[:60]} digits"
        return "only ASCII characters are allowed in numbers"
    return "not a number"


def parse_number(text: str) -> float:
    """The float value of ``text``, or :class:`NotANumber` naming the value and the reason."""
    value = text.strip(ASCII_SPACE)
    if value.isascii() and "_" not in value and value == value.strip():
        # Fast path (the serving hot path): on ASCII text without underscores or other spaces,
        # float() succeeding with a finite value means exactly that the grammar matches.
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    if _NUMBER.fullmatch(value) is None:
        raise NotANumber(f"not a number: {shown(text)} ({why_not(text)})")
    return float(value)
