"""The inference contract (DESIGN §7), pure: request parsing and validation, and the answer.

Request formats (one or many rows; at most ``max_rows`` rows, default 10,000):

- ``text/csv``: headerless rows in canonical order ``sex,length,…,shell_weight``; a ninth field is
  accepted as ``rings`` and ignored (rows copied from the UCI file can be replayed). A header row
  names the columns in any order; ``rings`` is ignored there too, any other unknown column is an
  error.
- ``application/json``: ``{"instances": [[...], ...]}`` (lists in canonical order, 8 or 9 fields),
  ``{"instances": [{...}]}`` or a bare list of records, MLflow's ``dataframe_split`` and
  ``dataframe_records``, and ``{"inputs": [...]}``. JSON numbers must be numbers.

Every value is checked (``sex`` in {M, F, I}; measurements finite, in ``[0, MAX_MEASUREMENT]``; CSV
fields are numbers of the contract's one grammar, :mod:`jobs.core.numbers`: ASCII digits, no ``0_5``,
no ``nan``/``inf``, no digits of other scripts, though Python's ``float()`` reads them); a bad
request raises :class:`InvalidInput` with the HTTP status (400 malformed, 406 ``Accept``, 413 too
many rows, 415 content type, 422 a value out of contract) and a message naming the row and field.
Answers by ``Accept``: JSON ``{"predictions": [{"rings", "age_years"}], "model_version"}`` (default)
or CSV ``rings,age_years`` lines. Used by the serving handlers and by the capture reader.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jobs.core.errors import UsageError
from jobs.core.numbers import NotANumber, parse_number, shown
from jobs.core.schema import AGE_OFFSET_YEARS, FEATURES, NUMERIC_FEATURES, SEX_VALUES, TARGET

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
SUPPORTED_CONTENT_TYPES: tuple[str, ...] = (CSV_TYPE, JSON_TYPE)
DEFAULT_MAX_ROWS = 10_000
MAX_MEASUREMENT = 10.0  # mm/200 or g/200: 2 m or 2 kg; the UCI maxima are below 3
_N_NUMERIC = len(NUMERIC_FEATURES)
_N_FEATURES = len(FEATURES)
_SEX_SET = frozenset(SEX_VALUES)
_COLUMN_INDEX = {name: i for i, name in enumerate(FEATURES)}


class InvalidInput(UsageError):
    """A request the model cannot answer; ``status_code`` is the HTTP status to reply with.

    Mirrors the SageMaker inference toolkit's error shape (``status_code`` + ``message``), so the
    container answers 4xx with this message instead of a 500.
    """

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class Rows:
    """Validated request rows: ``sex`` (n,) object array of "M"/"F"/"I", ``numeric`` (n, 7) float64
    in ``NUMERIC_FEATURES`` order."""

    sex: np.ndarray
    numeric: np.ndarray
    content_type: str = CSV_TYPE

    def __len__(self) -> int:
        return len(self.sex)

    def to_frame(self) -> pd.DataFrame:
        """The rows as the DataFrame ``Pipeline.predict`` expects (``FEATURES`` columns)."""
        frame = pd.DataFrame(self.numeric, columns=list(NUMERIC_FEATURES))
        frame.insert(0, "sex", self.sex.tolist())  # str dtype on pandas 3, like read_csv
        return frame

    def records(self) -> list[dict[str, Any]]:
        """One dict per row, keyed by feature name (used by data capture)."""
        numeric = self.numeric.tolist()
        return [
            {"sex": s, **dict(zip(NUMERIC_FEATURES, values, strict=True))}
            for s, values in zip(self.sex.tolist(), numeric, strict=True)
        ]


@dataclass(frozen=True)
class Prediction:
    """``rings`` (n,) float64 predictions plus the identity of the model that made them."""

    rings: np.ndarray
    model_version: str | None = None
    model_name: str | None = None

    def __len__(self) -> int:
        return len(self.rings)


def media_type(header: str | None) -> str:
    """``"text/csv; charset=utf-8"`` → ``"text/csv"``."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def parse_request(
    body: str | bytes, content_type: str | None, *, max_rows: int = DEFAULT_MAX_ROWS
) -> Rows:
    """Core of :func:`input_fn`: decode, parse and validate, raising :class:`InvalidInput`."""
    kind = media_type(content_type)
    if kind not in SUPPORTED_CONTENT_TYPES:
        shown = kind or "none"
        raise InvalidInput(
            f"unsupported content type {shown!r}; send text/csv or application/json", 415
        )
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidInput(f"body is not valid UTF-8 (byte {err.start})", 400) from err
    elif isinstance(body, str):
        text = body
    else:
        raise InvalidInput(f"body must be str or bytes, not {type(body).__name__}", 400)
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise InvalidInput("empty request body: send at least one row", 400)
    if kind == CSV_TYPE:
        return _parse_csv(text, max_rows)
    return _parse_json(text, max_rows)


def _too_many(n: int, max_rows: int) -> InvalidInput:
    return InvalidInput(
        f"too many rows ({n} or more): the limit is {max_rows} per request; split it", 413
    )


def _parse_csv(text: str, max_rows: int) -> Rows:
    stripped = text.strip()
    if "\n" not in stripped and "\r" not in stripped and '"' not in stripped:
        lines: list[list[str]] = [stripped.split(",")]  # one row: the hot path
    else:
        lines = []
        try:
            for row in csv.reader(io.StringIO(text)):
                if row and any(field.strip() for field in row):
                    lines.append(row)
                    if len(lines) > max_rows + 1:  # + 1: the first line may be a header
                        raise _too_many(len(lines), max_rows)
        except csv.Error as err:
            raise InvalidInput(f"malformed CSV: {err}", 400) from err
    header = [c.strip().lower() for c in lines[0]]
    if header[0] in _COLUMN_INDEX or header[0] == TARGET:  # data rows start with M/F/I
        order = _header_order(header)
        lines = lines[1:]
        if not lines:
            raise InvalidInput("CSV has a header row but no data rows", 400)
    else:
        order = None
    if len(lines) > max_rows:
        raise _too_many(len(lines), max_rows)
    width = len(lines[0])
    if order is None and width not in (_N_FEATURES, _N_FEATURES + 1):
        raise InvalidInput(
            f"row 1: expected {_N_FEATURES} fields ({','.join(FEATURES)}) "
            f"optionally followed by rings, got {width}",
            400,
        )
    expected = len(header) if order is not None else width
    n = len(lines)
    sex = np.empty(n, dtype=object)
    numeric = np.empty((n, _N_NUMERIC), dtype=np.float64)
    for r, fields in enumerate(lines):
        if len(fields) != expected:
            raise InvalidInput(
                f"row {r + 1}: expected {expected} fields like row 1, got {len(fields)}", 400
            )
        values = [fields[i] for i in order] if order is not None else fields
        sex[r] = _check_sex(values[0].strip(), r)
        for j in range(_N_NUMERIC):
            numeric[r, j] = _check_number(_csv_float(values[j + 1], r, j), r, j)
        if width == _N_FEATURES + 1 and order is None:
            _check_rings(fields[_N_FEATURES], r)
    return Rows(sex=sex, numeric=numeric, content_type=CSV_TYPE)


def _header_order(header: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen:
            raise InvalidInput(f"CSV header: column {name!r} appears twice", 400)
        if name not in _COLUMN_INDEX and name != TARGET:
            raise InvalidInput(
                f"CSV header: unknown column {name!r}; expected {','.join(FEATURES)}", 400
            )
        seen[name] = i
    missing = [c for c in FEATURES if c not in seen]
    if missing:
        raise InvalidInput(f"CSV header: missing column(s) {', '.join(missing)}", 400)
    return [seen[c] for c in FEATURES]


def _csv_float(raw: str, r: int, j: int) -> float:
    try:
        return parse_number(raw)
    except NotANumber as err:
        raise InvalidInput(f"row {r + 1}, field {NUMERIC_FEATURES[j]!r}: {err}", 422) from None


def _check_sex(value: Any, r: int) -> str:
    if not isinstance(value, str) or value not in _SEX_SET:
        raise InvalidInput(
            f"row {r + 1}, field 'sex': must be one of M, F, I, got {shown(value)}", 422
        )
    return value


def _check_number(x: float, r: int, j: int) -> float:
    if not (0.0 <= x <= MAX_MEASUREMENT):  # also false for NaN
        what = "not finite" if not math.isfinite(x) else f"out of range [0, {MAX_MEASUREMENT:g}]"
        raise InvalidInput(f"row {r + 1}, field {NUMERIC_FEATURES[j]!r}: {what}: {x!r}", 422)
    return x


def _check_rings(raw: Any, r: int) -> None:
    """The optional trailing ``rings`` is ignored but must still look like a rings count."""
    try:
        value = parse_number(raw) if isinstance(raw, str) else _json_float(raw)
    except (ValueError, TypeError, OverflowError):
        value = math.nan
    if not (0.0 <= value <= 1000.0):
        raise InvalidInput(f"row {r + 1}, field 'rings': not a rings count: {raw!r}"[:160], 422)


def _json_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(type(value).__name__)
    return float(value)  # OverflowError for ints beyond float range


def _parse_json(text: str, max_rows: int) -> Rows:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise InvalidInput(f"malformed JSON: {str(err)[:120]}", 400) from None
    if isinstance(doc, list):
        instances: Any = doc
    elif isinstance(doc, dict):
        if "instances" in doc:
            instances = doc["instances"]
        elif "dataframe_records" in doc:
            instances = doc["dataframe_records"]
        elif "dataframe_split" in doc:
            instances = _from_dataframe_split(doc["dataframe_split"], max_rows)
        elif "inputs" in doc:
            instances = doc["inputs"]
        else:
            keys = ", ".join(sorted(map(str, doc))[:5]) or "none"
            raise InvalidInput(
                "JSON must be a list of rows or an object with 'instances', "
                f"'dataframe_records' or 'dataframe_split' (got keys: {keys})",
                400,
            )
    else:
        raise InvalidInput(f"JSON must be an object or a list, not {type(doc).__name__}", 400)
    if not isinstance(instances, list):
        raise InvalidInput(f"rows must be a JSON list, not {type(instances).__name__}", 400)
    if not instances:
        raise InvalidInput("no rows: send at least one row", 400)
    if len(instances) > max_rows:
        raise _too_many(len(instances), max_rows)
    n = len(instances)
    sex = np.empty(n, dtype=object)
    numeric = np.empty((n, _N_NUMERIC), dtype=np.float64)
    for r, row in enumerate(instances):
        if isinstance(row, dict):
            values = _record_values(row, r)
        elif isinstance(row, list):
            if len(row) not in (_N_FEATURES, _N_FEATURES + 1):
                raise InvalidInput(
                    f"row {r + 1}: expected {_N_FEATURES} values ({','.join(FEATURES)}) "
                    f"optionally followed by rings, got {len(row)}",
                    400,
                )
            if len(row) == _N_FEATURES + 1:
                _check_rings(row[_N_FEATURES], r)
            values = row
        else:
            raise InvalidInput(
                f"row {r + 1}: must be a list of values or an object, not {type(row).__name__}",
                400,
            )
        sex[r] = _check_sex(values[0], r)
        for j in range(_N_NUMERIC):
            raw = values[j + 1]
            try:
                x = _json_float(raw)
            except (TypeError, OverflowError):
                raise InvalidInput(
                    f"row {r + 1}, field {NUMERIC_FEATURES[j]!r}: must be a JSON number, "
                    f"got {shown(raw)}",
                    422,
                ) from None
            numeric[r, j] = _check_number(x, r, j)
    return Rows(sex=sex, numeric=numeric, content_type=JSON_TYPE)


def _record_values(row: dict[str, Any], r: int) -> list[Any]:
    unknown = [k for k in row if k not in _COLUMN_INDEX and k != TARGET]
    if unknown:
        raise InvalidInput(f"row {r + 1}: unknown field {str(unknown[0])[:40]!r}", 400)
    missing = [c for c in FEATURES if c not in row]
    if missing:
        raise InvalidInput(f"row {r + 1}: missing field(s) {', '.join(missing)}", 400)
    if TARGET in row:
        _check_rings(row[TARGET], r)
    return [row[c] for c in FEATURES]


def _from_dataframe_split(split: Any, max_rows: int) -> list[dict[str, Any]]:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        raise InvalidInput("'dataframe_split' must be an object with 'columns' and 'data'", 400)
    columns = split["columns"]
    data = split.get("data")
    if not isinstance(data, list):
        raise InvalidInput("'dataframe_split.data' must be a list of rows", 400)
    if len(data) > max_rows:
        raise _too_many(len(data), max_rows)
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise InvalidInput("'dataframe_split.columns' must be distinct column names", 400)
    records = []
    for r, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InvalidInput(
                f"row {r + 1}: expected a list of {len(columns)} values matching 'columns'", 400
            )
        records.append(dict(zip(columns, row, strict=True)))
    return records


def choose_accept(accept: str | None) -> str:
    """Pick the response type from an ``Accept`` header; JSON unless CSV is preferred."""
    if not accept:
        return JSON_TYPE
    best: tuple[float, str] | None = None
    for part in accept.split(","):
        kind, _, params = part.strip().partition(";")
        kind = kind.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        target = {
            JSON_TYPE: JSON_TYPE,
            CSV_TYPE: CSV_TYPE,
            "*/*": JSON_TYPE,
            "application/*": JSON_TYPE,
            "text/*": CSV_TYPE,
        }.get(kind)
        if target and q > 0 and (best is None or q > best[0]):
            best = (q, target)
    if best is None:
        raise InvalidInput(
            f"cannot answer Accept: {accept[:80]!r}; accept application/json or text/csv", 406
        )
    return best[1]


def render(prediction: Prediction, kind: str) -> tuple[str, str]:
    """``(body, content_type)`` of an answer of media type ``kind`` (from :func:`choose_accept`)."""
    rings = prediction.rings.tolist()
    if kind == CSV_TYPE:
        body = "".join(f"{r!r},{r + AGE_OFFSET_YEARS!r}\n" for r in rings)
        return body, CSV_TYPE
    payload = {
        "predictions": [{"rings": r, "age_years": r + AGE_OFFSET_YEARS} for r in rings],
        "model_version": prediction.model_version,
    }
    return json.dumps(payload, separators=(",", ":")), JSON_TYPE
