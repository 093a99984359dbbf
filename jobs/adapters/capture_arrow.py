"""One block of captured lines as rows: parsed by ``pyarrow.json`` and the kernels of
:mod:`jobs.adapters.capture_kernels`, every line they cannot vouch for read on its own by
:func:`jobs.adapters.capture_records.parse_line`, the two merged back in line order."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import json as pa_json

from jobs.adapters.capture_blocks import _Lines
from jobs.adapters.capture_kernels import (
    _LINE_SCHEMA,
    _SEX_CODES,
    _answers,
    _child,
    _csv_texts,
    _mask,
    _numbers,
    _one_row_csv,
    _plain_measurements,
    _stamps,
    _strings,
)
from jobs.adapters.capture_records import (
    CaptureRecord,
)
from jobs.core.contract import MAX_MEASUREMENT
from jobs.core.schema import FEATURES, NUMERIC_FEATURES

log = logging.getLogger(__name__)


@dataclass
class _Part:
    """Rows read from one block, in line order."""

    line: np.ndarray  # block line index of each row
    sex: np.ndarray
    numeric: np.ndarray  # (n, 7)
    pred_line: np.ndarray
    preds: np.ndarray


_MISFITS = 64  # lines pyarrow rejects in one block before the rest of it goes through json.loads
_ROW_IN_ERROR = re.compile(r" in row (\d+)$")


def _arrow_table(lines: Sequence[bytes]) -> tuple[pa.Table | None, int | None]:
    """``pyarrow.json`` over these lines, or ``(None, index of the line it rejected or None)``."""
    data = lines.data if isinstance(lines, _Lines) else b"\n".join(lines)
    try:
        table = pa_json.read_json(
            pa.BufferReader(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_LINE_SCHEMA, unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        found = _ROW_IN_ERROR.search(str(err))
        row = int(found.group(1)) if found else None
        return None, row if row is not None and row < len(lines) else None
    return (table, None) if table.num_rows == len(lines) else (None, None)


def _as_table(lines: Sequence[bytes]) -> pa.Table:
    """The block's lines as a table of :data:`_LINE_SCHEMA`, one row per line: by ``pyarrow.json``
    around the lines it rejects, which (and, after :data:`_MISFITS` of them, the rest of the block)
    go through ``json.loads`` (:func:`_fitted`: a line that does not fit - not JSON, not an object,
    a field of another type - gets a null ``captureData`` and is read by :func:`parse_line`, which
    says why it is skipped)."""
    pieces: list[pa.Table] = []
    start, misfits = 0, 0
    while start < len(lines):
        rest = lines[start:] if start else lines  # (a whole block: not split into lines)
        table, bad = _arrow_table(rest)
        if table is not None:
            pieces.append(table)
            break
        if bad is None or misfits >= _MISFITS:
            pieces.append(_fitted_table(rest))
            break
        if bad:
            head, _ = _arrow_table(rest[:bad])
            pieces.append(head if head is not None else _fitted_table(rest[:bad]))
        pieces.append(_fitted_table(rest[bad : bad + 1]))
        start += bad + 1
        misfits += 1
    return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)


def _fitted_table(lines: Sequence[bytes]) -> pa.Table:
    return pa.Table.from_pylist([_fitted(line) for line in lines], schema=_LINE_SCHEMA)


def _fitted(line: bytes) -> dict[str, Any]:
    """One line reduced to :data:`_LINE_SCHEMA` (``{}`` unless every field read is text)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(obj, dict):
        return {}
    capture, meta = obj.get("captureData"), obj.get("eventMetadata", {})
    if not isinstance(capture, dict) or not isinstance(meta, dict):
        return {}
    out: dict[str, Any] = {}
    for part in ("endpointInput", "endpointOutput"):
        block = capture.get(part)
        if block is None:
            continue
        if not isinstance(block, dict):
            return {}
        fields = {k: block.get(k) for k in ("observedContentType", "encoding", "data")}
        if any(v is not None and not isinstance(v, str) for v in fields.values()):
            return {}
        out[part] = fields
    stamp = meta.get("inferenceTime")
    if stamp is not None and not isinstance(stamp, str):
        return {}
    return {"captureData": out, "eventMetadata": {"inferenceTime": stamp}}


def _vectorised(lines: Sequence[bytes], since_us: int | None) -> tuple[np.ndarray, _Part, dict]:
    """Parse a block column-wise: the rows read and ``slow``, the lines to read one by one."""
    table = _as_table(lines)
    capture = _strings(table.column("captureData"))
    request = _child(capture, "endpointInput")
    texts, usable = _csv_texts(request)
    simple, fields = _one_row_csv(texts)
    width = pc.list_value_length(fields).to_numpy(zero_copy_only=False)
    width = np.nan_to_num(width.astype(float), nan=0).astype(int)
    fast = usable & simple & ((width == 8) | (width == 9))
    starts = np.asarray(fields.offsets)[:-1]
    flat = fields.values
    idx = np.flatnonzero(fast)
    pos = starts[idx]
    sex = pc.utf8_trim_whitespace(flat.take(pa.array(pos)))
    ok = _mask(pc.is_in(sex, _SEX_CODES))
    take = pa.array(idx)
    plain = _plain_measurements(texts.take(take), fields.take(take), 0.0, MAX_MEASUREMENT)
    if plain is not None:  # the usual block: one regex per row, not one per field
        numeric, good = plain
        ok &= good
    else:
        numeric = np.empty((len(idx), len(NUMERIC_FEATURES)))
        for j in range(len(NUMERIC_FEATURES)):
            numeric[:, j], good = _numbers(flat.take(pa.array(pos + j + 1)), 0.0, MAX_MEASUREMENT)
            ok &= good
    nine = width[idx] == 9
    if nine.any():
        tail = np.where(nine, pos + 8, pos)  # rows of 8 fields check their sex field: ignored
        _, good = _numbers(flat.take(pa.array(tail)), 0.0, 1000.0)
        ok &= good | ~nine
    micros, known_time = _stamps(_strings(table.column("eventMetadata")))
    ok &= known_time[idx]
    rows = np.zeros(len(lines), dtype=bool)
    rows[idx[ok]] = True
    rings, known, versions = _answers(_child(capture, "endpointOutput"), rows)
    rows &= known
    slow = ~rows
    keep = rows.copy()
    nat = np.iinfo(np.int64).min
    if since_us is not None:
        keep &= (micros != nat) & (micros >= since_us)
    sel = np.flatnonzero(fast)  # positions of `idx` inside the block
    chosen = keep[sel]
    has_pred = keep & ~np.isnan(rings)
    part = _Part(
        line=sel[chosen],
        sex=np.asarray(sex.filter(pa.array(chosen)).to_pylist(), dtype=object),
        numeric=numeric[chosen],
        pred_line=np.flatnonzero(has_pred),
        preds=rings[has_pred],
    )
    stamps = micros[keep]
    stamps = stamps[stamps != nat]
    meta = {
        "records": int(keep.sum()),
        "first": int(stamps.min()) if stamps.size else None,
        "last": int(stamps.max()) if stamps.size else None,
        "versions": _counts(versions.filter(pa.array(keep))),
    }
    return slow, part, meta


def _counts(values: pa.Array) -> dict[str, int]:
    """How many times each non-null value occurs (``value_counts`` without a Python object per row)."""
    counted = pc.value_counts(values.drop_null())
    return dict(
        zip(
            counted.field("values").to_pylist(),
            counted.field("counts").to_pylist(),
            strict=True,
        )
    )


def _micros(stamp: datetime) -> int:
    return int((stamp - _EPOCH) // timedelta(microseconds=1))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _records_part(records: list[tuple[int, CaptureRecord]]) -> _Part:
    """Rows of records read line by line, typed as before (:func:`_typed`)."""
    rows = [row for _, record in records for row in record.rows]
    frame = _typed(rows)
    preds = [(i, p) for i, record in records for p in (record.predictions or [])]
    return _Part(
        line=np.asarray([i for i, record in records for _ in record.rows], dtype=np.int64),
        sex=frame["sex"].to_numpy(dtype=object),
        numeric=frame[list(NUMERIC_FEATURES)].to_numpy(dtype=float),
        pred_line=np.asarray([i for i, _ in preds], dtype=np.int64),
        preds=np.asarray([p for _, p in preds], dtype=float),
    )


def _merge(pieces: list[_Part]) -> tuple[pd.DataFrame, np.ndarray] | None:
    """One block's rows in line order (column-wise rows and line-by-line records interleaved)."""
    if not pieces:
        return None
    line = np.concatenate([p.line for p in pieces])
    order = np.argsort(line, kind="stable")
    pred_line = np.concatenate([p.pred_line for p in pieces])
    preds = np.concatenate([p.preds for p in pieces])[np.argsort(pred_line, kind="stable")]
    numeric = np.concatenate([p.numeric.reshape(-1, len(NUMERIC_FEATURES)) for p in pieces])
    sex = np.concatenate([p.sex for p in pieces])[order]
    frame = pd.DataFrame(numeric[order], columns=list(NUMERIC_FEATURES))
    frame.insert(0, "sex", pd.Series(sex, dtype="str"))
    return frame, preds.astype(float)


def _typed(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Captured rows as FEATURES columns: ``sex`` as text, measurements as floats (NaN if bad)."""
    frame = pd.DataFrame(rows, columns=list(FEATURES))
    out = pd.DataFrame(
        {"sex": pd.Series([None if v is None else str(v) for v in frame["sex"]], dtype="str")}
    )
    for name in NUMERIC_FEATURES:
        out[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return out
