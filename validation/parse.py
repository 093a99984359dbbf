"""Lenient parsing of a raw batch into a text frame (DESIGN §3).

Never raises on bad input: whatever the bytes are, the result is a frame of *text* values (pandas
``str`` dtype, missing values as NA) indexed by the 1-based line number in the file, plus a list of
structural problems found while reading. Judging the content is the job of the Great Expectations
suite; this module only decides what the columns are called and which line each row came from.

- Bytes that are not UTF-8 text (binary garbage, NUL bytes) give an empty frame and a problem.
- A first line whose fields are all non-numeric is a header; its names are normalised
  (case-, space- and hyphen-insensitive: ``Whole weight`` → ``whole_weight``).
- A headerless file whose width is the canonical width gets the canonical names; any other width
  gets positional names ``column_1 … column_N`` so the column-order expectation reports the
  observed width honestly.
- Ragged rows are padded with missing values (caught by the not-null expectations) or widen the
  frame with extra positional columns (caught by the column-order expectation), and each is named
  in a problem line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from jobs.core.numbers import ASCII_SPACE, looks_numeric

MISSING_TOKENS = frozenset({"", "na", "nan", "null", "none", "?"})
MAX_PROBLEM_LINES = 20
MAX_BYTES_PER_ROW = 128  # a canonical row is ~45 bytes; bounds memory before parsing


@dataclass
class ParsedBatch:
    """A batch as text: ``frame`` (index = 1-based line number), ``header`` (a header row was
    found), ``problems`` (structural one-liners), ``readable`` (the bytes decoded as text)."""

    frame: pd.DataFrame
    header: bool = False
    readable: bool = True
    problems: list[str] = field(default_factory=list)
    ragged_rows: list[int] = field(default_factory=list)


def normalise_name(name: str) -> str:
    """``' Whole Weight '`` → ``'whole_weight'``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def empty_frame(columns: Sequence[str] = ()) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
    frame.index = pd.RangeIndex(1, 1, name="row_number")
    return frame


def _decode(data: bytes) -> tuple[str | None, str | None]:
    """The text, or ``None`` and a one-line reason."""
    if b"\x00" in data:
        offset = data.index(b"\x00")
        return None, f"file is binary, not CSV text (NUL byte at offset {offset})"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as err:
        return None, (
            f"file is not UTF-8 text (undecodable byte 0x{data[err.start]:02x} at offset {err.start})"
        )


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names, start=1):
        name = name or f"column_{i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 1
        out.append(name)
    return out


def parse_bytes(data: bytes, expected: Sequence[str], max_rows: int) -> ParsedBatch:
    """Parse raw bytes leniently; ``expected`` is the canonical column list for headerless files.

    A file with more than ``max_rows`` (+1 for a header) lines, or more than
    ``max_rows * MAX_BYTES_PER_ROW`` bytes, is not parsed at all (bounded memory and time): the
    frame has no columns but the file's line count as its length, so the row-count expectation
    reports the real size.
    """
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    too_big = None
    if lines > max_rows + 1:
        too_big = f"file has {lines:,} lines, more than the {max_rows:,}-row limit: not parsed"
    elif len(data) > max_rows * MAX_BYTES_PER_ROW:
        too_big = (
            f"file is {len(data):,} bytes, more than the {max_rows * MAX_BYTES_PER_ROW:,}-byte "
            f"limit ({max_rows:,} rows of at most {MAX_BYTES_PER_ROW} bytes): not parsed"
        )
    if too_big:
        frame = pd.DataFrame(index=pd.RangeIndex(1, lines + 1, name="row_number"))
        return ParsedBatch(frame=frame, readable=False, problems=[too_big])
    text, reason = _decode(data)
    if text is None:
        return ParsedBatch(frame=empty_frame(), readable=False, problems=[reason or "unreadable"])
    numbered: list[tuple[int, list[str]]] = []
    reader = csv.reader(text.splitlines())
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                numbered.append((reader.line_num, row))
    except csv.Error as err:
        return ParsedBatch(
            frame=empty_frame(),
            readable=False,
            problems=[f"row {reader.line_num}: not readable as CSV ({err})"],
        )
    if not numbered:
        return ParsedBatch(frame=empty_frame(), problems=["file is empty (no rows)"])

    first = numbered[0][1]
    header = not any(looks_numeric(cell) for cell in first)  # digits of any script: data
    if header:
        names = _unique([normalise_name(cell) for cell in first])
        numbered = numbered[1:]
    elif len(first) == len(expected):
        names = list(expected)
    else:
        names = [f"column_{i}" for i in range(1, len(first) + 1)]
    return rows_to_frame(numbered, names, header=header)


def rows_to_frame(
    numbered: list[tuple[int, list[str]]], names: list[str], header: bool
) -> ParsedBatch:
    """Build the text frame; pad short rows, widen for long rows, record each ragged row."""
    width = len(names)
    problems: list[str] = []
    ragged: list[int] = []
    widest = max((len(row) for _, row in numbered), default=width)
    if widest > width:
        names = names + [f"column_{i}" for i in range(width + 1, widest + 1)]
    for number, row in numbered:
        if len(row) != width:
            ragged.append(number)
            if len(problems) < MAX_PROBLEM_LINES:
                problems.append(f"row {number}: {len(row)} fields, expected {width}")
    if len(ragged) > MAX_PROBLEM_LINES:
        problems.append(f"... and {len(ragged) - MAX_PROBLEM_LINES} more ragged rows")

    columns: list[list[str | None]] = [[] for _ in names]
    for _, row in numbered:
        for j in range(len(names)):
            cell = row[j].strip(ASCII_SPACE) if j < len(row) else ""
            columns[j].append(None if cell.lower() in MISSING_TOKENS else cell)
    frame = pd.DataFrame(
        {name: pd.Series(values, dtype="str") for name, values in zip(names, columns, strict=True)}
    )
    frame.index = pd.Index([number for number, _ in numbered], name="row_number")
    return ParsedBatch(frame=frame, header=header, problems=problems, ragged_rows=ragged)


def frame_to_text(df: pd.DataFrame) -> ParsedBatch:
    """An in-memory (typed) frame as a text frame, rows numbered 1..n in their current order."""
    data: dict[str, pd.Series] = {}
    for name in df.columns:
        column = df[name]
        if column.dtype == "float64":  # the same text as below, without a Python test per value
            numbers = column.to_numpy()
            values: list[str | None] = list(map(str, numbers.tolist()))  # str(x) == format(x, "")
            for i in np.flatnonzero(np.isnan(numbers)).tolist():
                values[i] = None
        else:
            values = [
                None
                if _missing(v)
                else (format(v, "") if not isinstance(v, str) else v.strip(ASCII_SPACE) or None)
                for v in column.tolist()
            ]
        data[normalise_name(str(name))] = pd.Series(values, dtype="str")
    frame = pd.DataFrame(data)
    frame.index = pd.RangeIndex(1, len(df) + 1, name="row_number")
    return ParsedBatch(frame=frame, header=True)


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
