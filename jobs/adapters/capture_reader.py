"""Reader of captured traffic in both formats (DESIGN §7): a local file or directory, or an
``s3://bucket/prefix``; every ``*.jsonl`` below it, one record per line:

- **this project's capture record** (:mod:`jobs.adapters.capture`, files ``YYYY/MM/DD/HH.jsonl``);
- **SageMaker data capture** (``<prefix>/<endpoint>/<variant>/YYYY/MM/DD/HH/*.jsonl``:
  ``captureData.endpointInput``/``endpointOutput`` with ``encoding`` CSV, JSON or BASE64).

Files are streamed (local files or S3 bodies read in blocks of :data:`BLOCK_BYTES`, never whole) and
each block is parsed column-wise by pyarrow: the JSON lines by ``pyarrow.json``, the common one-row
request bodies (CSV, BASE64 CSV, ``{"instances": [[…]]}``) and answers (CSV value, our JSON answer) by
Arrow compute kernels, applying the same checks as the endpoint's parser. Every line those kernels
cannot vouch for (other shapes, bad values, a block pyarrow rejects - halved until it is small) is
read on its own by :func:`parse_line`, so what is kept, skipped and reported is exactly what the
line-by-line reader gave: request bodies are parsed by :func:`jobs.core.contract.parse_request`, the
parser the endpoint ran; a line that cannot be read is skipped and counted (never fatal). ``since``
keeps records at or after a time and skips whole hourly files that end before it.

:class:`CaptureScan` yields the rows chunk by chunk (the monitoring run folds them into bounded
statistics); :func:`read_capture` collects them all (small captures, tests).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import json as pa_json

from jobs.adapters.storage import LocalStore, S3Store, Store, open_store
from jobs.core.contract import MAX_MEASUREMENT, InvalidInput, media_type, parse_request
from jobs.core.errors import SourceError, StorageError
from jobs.core.schema import FEATURES, NUMERIC_FEATURES, SEX_VALUES
from jobs.core.timewindow import parse_time

log = logging.getLogger(__name__)

MAX_RECORD_ROWS = 1_000_000
_HOUR_IN_PATH = re.compile(r"(\d{4})/(\d{2})/(\d{2})/(\d{2})(?:\.jsonl$|/)")


def _path_hour(key: str) -> datetime | None:
    """The hour a capture file covers, from ``…/YYYY/MM/DD/HH.jsonl`` or ``…/YYYY/MM/DD/HH/…``."""
    found = _HOUR_IN_PATH.findall(key)
    if not found:
        return None
    y, m, d, h = (int(x) for x in found[-1])
    try:
        return datetime(y, m, d, h, tzinfo=UTC)
    except ValueError:
        return None


class RecordError(ValueError):
    """One capture line that cannot be used (skipped and counted, never fatal)."""


@dataclass(frozen=True)
class CaptureRecord:
    """One captured request: when, which model, the input rows and the predicted rings."""

    timestamp: datetime | None
    model_version: str | None
    rows: list[dict[str, Any]]
    predictions: list[float] | None
    source_format: str  # abalone | sagemaker


def _rings(outputs: Any) -> list[float]:
    """Predicted rings from ``[{"rings": r, ...}]``, ``[r, ...]`` or ``{"predictions": [...]}``."""
    if isinstance(outputs, Mapping):
        if "predictions" not in outputs:
            raise RecordError("output has no 'predictions'")
        outputs = outputs["predictions"]
    if not isinstance(outputs, list):
        raise RecordError("outputs must be a list")
    rings: list[float] = []
    for item in outputs:
        value = item.get("rings") if isinstance(item, Mapping) else item
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError(f"prediction {value!r} is not a number")
        rings.append(float(value))
    return rings


def _rows(inputs: Any) -> list[dict[str, Any]]:
    if not isinstance(inputs, list) or not inputs:
        raise RecordError("'inputs' must be a non-empty list")
    rows = []
    for item in inputs:
        if isinstance(item, Mapping):
            row = {name: item.get(name) for name in FEATURES}
        elif isinstance(item, list) and len(item) in (len(FEATURES), len(FEATURES) + 1):
            row = dict(zip(FEATURES, item[: len(FEATURES)], strict=True))
        else:
            raise RecordError("each input must be a record or a list in canonical order")
        for name, value in row.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, str | int | float)
            ):
                raise RecordError(f"input {name}={value!r} is not a scalar value")
        rows.append(row)
    return rows


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"timestamp {value!r} is not an ISO 8601 string")
    try:
        return parse_time(value)
    except ValueError as err:
        raise RecordError(f"timestamp {value!r} is not ISO 8601") from err


def parse_abalone_record(obj: Mapping[str, Any]) -> CaptureRecord:
    rows = _rows(obj.get("inputs"))
    predictions = None
    if obj.get("outputs") is not None:
        predictions = _rings(obj["outputs"])
        if len(predictions) != len(rows):
            predictions = None  # misaligned: keep the inputs, ignore these outputs
    version = obj.get("model_version")
    return CaptureRecord(
        timestamp=_timestamp(obj.get("timestamp")),
        model_version=None if version is None else str(version),
        rows=rows,
        predictions=predictions,
        source_format="abalone",
    )


def _payload(part: Any, what: str) -> tuple[str, str]:
    """``(text, media type)`` of a SageMaker ``endpointInput``/``endpointOutput`` block."""
    if not isinstance(part, Mapping) or "data" not in part:
        raise RecordError(f"{what} has no data")
    data = part["data"]
    if not isinstance(data, str):
        raise RecordError(f"{what} data is not a string")
    encoding = str(part.get("encoding", "")).upper()
    content_type = str(part.get("observedContentType") or "")
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as err:
            raise RecordError(f"{what} is not valid base64 UTF-8 text") from err
    elif encoding not in ("CSV", "JSON", ""):
        raise RecordError(f"{what} has unknown encoding {encoding!r}")
    kind = media_type(content_type)
    if not kind:
        kind = "text/csv" if encoding == "CSV" else "application/json" if encoding == "JSON" else ""
    return data, kind


def _output_rings(text: str, kind: str) -> tuple[list[float], str | None]:
    """Predicted rings (and the model version our JSON answers carry) from a response body."""
    if kind == "application/json" or (not kind and text.lstrip()[:1] in "{["):
        try:
            body = json.loads(text)
        except json.JSONDecodeError as err:
            raise RecordError("endpointOutput is not valid JSON") from err
        version = body.get("model_version") if isinstance(body, Mapping) else None
        return _rings(body), None if version is None else str(version)
    rings = []
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        try:
            rings.append(float(line.split(",", 1)[0]))
        except ValueError as err:
            raise RecordError(f"endpointOutput CSV value {line[:40]!r} is not a number") from err
    return rings, None


def parse_sagemaker_record(obj: Mapping[str, Any]) -> CaptureRecord:
    """A SageMaker data-capture line; the input must parse, a bad output only drops predictions."""
    capture = obj.get("captureData")
    if not isinstance(capture, Mapping):
        raise RecordError("captureData must be an object")
    text, kind = _payload(capture.get("endpointInput"), "endpointInput")
    try:
        parsed = parse_request(text, kind, max_rows=MAX_RECORD_ROWS)
    except InvalidInput as err:
        raise RecordError(f"endpointInput not readable: {err}") from err
    rows = parsed.records()
    predictions, version = None, None
    if capture.get("endpointOutput") is not None:
        try:
            predictions, version = _output_rings(
                *_payload(capture["endpointOutput"], "endpointOutput")
            )
        except RecordError as err:
            log.debug("capture output ignored: %s", err)
        if predictions is not None and len(predictions) != len(rows):
            predictions = None
    meta = obj.get("eventMetadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return CaptureRecord(
        timestamp=_timestamp(meta.get("inferenceTime")),
        model_version=version,
        rows=rows,
        predictions=predictions,
        source_format="sagemaker",
    )


def parse_line(line: str | bytes) -> CaptureRecord:
    """One JSONL line in either capture format, or :class:`RecordError`."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"not JSON ({err.msg if hasattr(err, 'msg') else err})") from err
    if not isinstance(obj, Mapping):
        raise RecordError("a capture record must be a JSON object")
    if "captureData" in obj:
        return parse_sagemaker_record(obj)
    if "inputs" in obj:
        return parse_abalone_record(obj)
    raise RecordError("neither an abalone capture record (inputs) nor SageMaker (captureData)")


@dataclass
class CaptureBatch:
    """Captured rows read for one monitoring run: all of them (:func:`read_capture`), or a sample
    when ``total_rows``/``total_predictions`` say how many were read (a monitoring run)."""

    source: str
    features: pd.DataFrame
    predictions: np.ndarray  # predicted rings of the rows whose record carried outputs
    records: int = 0
    files: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    model_versions: dict[str, int] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None
    since: datetime | None = None
    total_rows: int | None = None
    total_predictions: int | None = None
    sample_size: int | None = None

    @property
    def rows(self) -> int:
        return len(self.features) if self.total_rows is None else self.total_rows

    @property
    def sampled(self) -> bool:
        return self.rows > len(self.features) or (
            self.total_predictions is not None and self.total_predictions > len(self.predictions)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "files": self.files,
            "records": self.records,
            "rows": self.rows,
            "predictions": (
                len(self.predictions) if self.total_predictions is None else self.total_predictions
            ),
            "skipped_lines": self.skipped,
            "sampled": self.sampled,
            "sampled_rows": len(self.features),
            "sampled_predictions": len(self.predictions),
            "sample_size": self.sample_size,
            "skipped_examples": self.skipped_examples,
            "formats": self.formats,
            "model_versions": self.model_versions,
            "first": iso(self.first),
            "last": iso(self.last),
            "since": iso(self.since),
        }


def iso(stamp: datetime | None) -> str | None:
    return stamp.isoformat().replace("+00:00", "Z") if stamp else None


def _open_capture(source: str, s3_client: Any = None) -> tuple[Store, list[str]]:
    """The store holding the capture and the ``.jsonl`` keys to read (a file or a tree)."""
    parsed = urlparse(source)
    if parsed.scheme == "s3":
        store = open_store(source, s3_client=s3_client)
        keys = [k for k in store.list() if k.endswith(".jsonl")]
        if not keys and source.rstrip("/").endswith(".jsonl"):
            parent, _, name = source.rstrip("/").rpartition("/")
            store = open_store(parent, s3_client=s3_client)
            keys = [name] if store.exists(name) else []
        return store, keys
    path = Path(parsed.path if parsed.scheme == "file" else source)
    if path.is_file():
        return LocalStore(path.parent), [path.name]
    if not path.exists():
        raise SourceError(f"no capture found: {path} does not exist")
    store = LocalStore(path)
    return store, [k for k in store.list() if k.endswith(".jsonl")]


# ---- streaming: files in blocks, blocks parsed column-wise ----------------------------------------

BLOCK_BYTES = 16 * 1024 * 1024  # text parsed at a time: ~36,000 SageMaker records

_PAYLOAD = pa.struct(
    [("observedContentType", pa.string()), ("encoding", pa.string()), ("data", pa.string())]
)
_LINE_SCHEMA = pa.schema(
    [
        ("captureData", pa.struct([("endpointInput", _PAYLOAD), ("endpointOutput", _PAYLOAD)])),
        ("eventMetadata", pa.struct([("inferenceTime", pa.string())])),
    ]
)
_ANSWER_SCHEMA = pa.schema(
    [
        ("predictions", pa.list_(pa.struct([("rings", pa.float64())]))),
        ("model_version", pa.string()),
    ]
)
# What Python's float() reads the same way as Arrow's cast (anything else is read line by line).
_DECIMAL = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z?$"
_SEX_CODES = pa.array(sorted(SEX_VALUES))


def _open_stream(store: Store, key: str) -> Any:
    """A binary file object over one capture file, read as it is consumed (never whole)."""
    if isinstance(store, LocalStore):
        return store.path(key).open("rb")
    if isinstance(store, S3Store):
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: boto3 is slow to import

        try:
            return store.client.get_object(Bucket=store.bucket, Key=store.key(key))["Body"]
        except (ClientError, BotoCoreError) as err:
            raise StorageError(f"S3 get {store.uri(key)} failed: {err}") from err
    return io.BytesIO(store.get_bytes(key))


def _blocks(stream: Any, size: int) -> Iterator[bytes]:
    """Blocks of whole lines (cut after a newline) of at most about ``size`` bytes."""
    carry = b""
    while True:
        data = stream.read(size)
        if not data:
            break
        data = carry + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            continue
        carry = data[cut:]
        yield data[:cut]
    if carry:
        yield carry


def _strings(values: Any) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _child(parent: pa.Array, name: str) -> pa.Array:
    """A struct child with the parent's nulls (a null parent gives a null child)."""
    child = pc.struct_field(parent, name)
    return pc.if_else(parent.is_valid(), child, pa.scalar(None, child.type))


def _mask(values: Any) -> np.ndarray:
    """A boolean Arrow array as numpy, nulls as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _media(content_type: pa.Array, encoding: pa.Array) -> pa.Array:
    """:func:`jobs.core.contract.media_type` of each block, falling back on the encoding."""
    kind = pc.utf8_lower(
        pc.utf8_trim_whitespace(pc.replace_substring_regex(content_type, r";(?s:.*)$", ""))
    )
    kind = pc.fill_null(kind, "")
    fallback = pc.if_else(
        pc.equal(encoding, "CSV"),
        "text/csv",
        pc.if_else(pc.equal(encoding, "JSON"), "application/json", ""),
    )
    return pc.if_else(pc.equal(kind, ""), pc.fill_null(fallback, ""), kind)


_WS = "[ \\t\\n\\r]*"  # JSON whitespace
_JSON_NUMBER = "(-?(?:0|[1-9][0-9]*)(?:\\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
_JSON_ROW = (  # {"instances": [["M", 0.45, …]]}, one row in canonical order (8 or 9 values)
    f'^{_WS}\\{{{_WS}"instances"{_WS}:{_WS}\\[{_WS}\\[{_WS}"([MFI])"'
    + f"{_WS},{_WS}{_JSON_NUMBER}" * 7
    + "{tail}"
    + f"{_WS}\\]{_WS}\\]{_WS}\\}}{_WS}$"
)
_JSON_ROWS = (
    (_JSON_ROW.replace("{tail}", ""), ",".join(f"\\{i}" for i in range(1, 9))),
    (
        _JSON_ROW.replace("{tail}", f"{_WS},{_WS}{_JSON_NUMBER}"),
        ",".join(f"\\{i}" for i in range(1, 10)),
    ),
)


def _csv_texts(payload: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Request bodies as one-row CSV text (BASE64 decoded; a one-row ``{"instances": [[…]]}``
    rewritten as its CSV row) and where that is certain; the rest is read line by line."""
    raw_encoding = _child(payload, "encoding")
    encoding = pc.utf8_upper(pc.fill_null(raw_encoding, ""))
    kind = _media(_child(payload, "observedContentType"), encoding)
    data = _child(payload, "data")
    known = _mask(raw_encoding.is_valid())  # "encoding": null reads as "NONE" line by line
    plain = known & _mask(pc.is_in(encoding, pa.array(["CSV", "JSON", ""])))
    coded = known & _mask(pc.equal(encoding, "BASE64")) & _mask(data.is_valid())
    if coded.any():
        decoded: list[str | None] = []
        for text in data.filter(pa.array(coded)).to_pylist():
            try:
                decoded.append(base64.b64decode(text, validate=True).decode("utf-8"))
            except (binascii.Error, UnicodeDecodeError, ValueError):
                decoded.append(None)  # read line by line: that gives the exact error
        data = pc.replace_with_mask(data, pa.array(coded), pa.array(decoded, pa.string()))
    usable = (plain | coded) & _mask(data.is_valid())
    is_csv = _mask(pc.equal(kind, "text/csv"))
    is_json = _mask(pc.equal(kind, "application/json")) & usable
    if is_json.any():
        rewritten = pc.if_else(pa.array(is_json), data, pa.scalar(None, pa.string()))
        matched = np.zeros(len(data), dtype=bool)
        for pattern, row in _JSON_ROWS:
            hit = _mask(pc.match_substring_regex(rewritten, pattern))
            if hit.any():
                data = pc.if_else(
                    pa.array(hit), pc.replace_substring_regex(rewritten, pattern, row), data
                )
                matched |= hit
        is_json &= matched
    return data, usable & (is_csv | is_json)


def _one_row_csv(text: pa.Array) -> tuple[np.ndarray, pa.Array | None]:
    """Which texts are one CSV row with no quotes or BOM, and their fields (list array)."""
    stripped = pc.utf8_trim_whitespace(text)
    simple = pc.and_(
        pc.invert(pc.match_substring_regex(stripped, '[\\r\\n"\\x{FEFF}]')),
        pc.greater(pc.utf8_length(stripped), 0),
    )
    return _mask(simple), pc.split_pattern(stripped, ",")


def _numbers(fields: pa.Array, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Fields as floats and whether each is a plain decimal within ``[lo, hi]``."""
    trimmed = pc.utf8_trim_whitespace(fields)
    ok = _mask(pc.match_substring_regex(trimmed, _DECIMAL))
    values = np.full(len(fields), np.nan)
    if ok.any():
        try:
            values[ok] = pc.cast(trimmed.filter(pa.array(ok)), pa.float64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return values, np.zeros(len(fields), dtype=bool)  # read line by line instead
    ok &= (values >= lo) & (values <= hi)
    return values, ok


def _stamps(meta: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``inferenceTime`` as epoch microseconds (``NaT`` if absent) and where that is certain."""
    text = _child(meta, "inferenceTime")
    present = _mask(text.is_valid())
    ok = _mask(pc.match_substring_regex(text, _ISO_UTC)) | ~present
    micros = np.full(len(text), np.iinfo(np.int64).min, dtype=np.int64)
    chosen = ok & present
    if chosen.any():
        picked = text.filter(pa.array(chosen))
        whole = pc.strptime(
            pc.utf8_slice_codeunits(picked, 0, 19),
            format="%Y-%m-%dT%H:%M:%S",
            unit="us",
            error_is_null=True,  # an impossible date: that record is read line by line
        )
        fraction = pc.utf8_rpad(
            pc.fill_null(pc.extract_regex(picked, r"\.(?P<f>[0-9]+)").field("f"), ""), 6, "0"
        )
        value = whole.cast(pa.int64()).to_numpy(zero_copy_only=False)
        valid = _mask(whole.is_valid())
        value = np.where(valid, value, 0).astype(np.int64)
        value += pc.cast(fraction, pa.int64()).to_numpy(zero_copy_only=False)
        where = np.flatnonzero(chosen)
        micros[where[valid]] = value[valid]
        ok[where[~valid]] = False
    return micros, ok


def _answers(payload: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Predicted rings of one-row records from their ``endpointOutput``: ``(rings, known, versions)``.

    ``known`` is False where the answer is not a plain CSV value or our JSON answer; those are read
    by :func:`_output_rings` one by one (exactly as before).
    """
    n = len(payload)
    rings = np.full(n, np.nan)
    versions = np.full(n, None, dtype=object)
    present = _mask(payload.is_valid()) & rows
    known = ~present  # no output: no prediction, nothing to read
    if not present.any():
        return rings, known, versions
    raw_encoding = _child(payload, "encoding")
    encoding = pc.utf8_upper(pc.fill_null(raw_encoding, ""))
    kind = _media(_child(payload, "observedContentType"), encoding)
    data = _child(payload, "data")
    plain = present & _mask(pc.is_in(encoding, pa.array(["CSV", "JSON", ""])))
    plain &= _mask(data.is_valid()) & _mask(raw_encoding.is_valid())
    csv_rows = plain & _mask(pc.equal(kind, "text/csv"))
    if csv_rows.any():
        simple, fields = _one_row_csv(data)
        first = pc.list_element(pc.list_slice(fields, 0, 1), 0)
        values, ok = _numbers(first, -np.inf, np.inf)
        take = csv_rows & simple & ok & np.isfinite(values)
        rings[take] = values[take]
        known |= take
    json_rows = plain & _mask(pc.equal(kind, "application/json"))
    json_rows &= ~_mask(pc.match_substring_regex(data, "[\\r\\n]"))
    if json_rows.any():
        texts = data.filter(pa.array(json_rows))
        try:
            body = pa_json.read_json(
                io.BytesIO("\n".join(texts.to_pylist()).encode()),
                read_options=pa_json.ReadOptions(use_threads=False, block_size=1 << 26),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=_ANSWER_SCHEMA, unexpected_field_behavior="ignore"
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            body = None
        where = np.flatnonzero(json_rows)
        if body is not None and body.num_rows == len(texts):
            preds = _strings(body.column("predictions"))
            length = pc.fill_null(pc.list_value_length(preds), 0).to_numpy(zero_copy_only=False)
            value = pc.struct_field(pc.list_flatten(pc.list_slice(preds, 0, 1)), "rings")
            got = np.full(len(texts), np.nan)
            got[length >= 1] = value.to_numpy(zero_copy_only=False)
            got[length != 1] = np.nan
            names = _strings(body.column("model_version")).to_pylist()
        else:  # some answer does not fit the schema: each is read by json.loads
            answers = [_answer(text) for text in texts.to_pylist()]
            got = np.array([np.nan if a is None else a[0] for a in answers], dtype=float)
            names = [None if a is None else a[1] for a in answers]
        good = np.isfinite(got)
        rings[where[good]] = got[good]
        known[where[good]] = True
        versions[where[good]] = np.asarray(names, dtype=object)[good]
    return rings, known, versions


def _answer(text: str) -> tuple[float, str | None] | None:
    """``(rings, model_version)`` of our one-row JSON answer, or None (read line by line)."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    preds, version = body.get("predictions"), body.get("model_version")
    if not isinstance(preds, list) or len(preds) != 1 or not isinstance(preds[0], dict):
        return None
    value = preds[0].get("rings")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if version is not None and not isinstance(version, str):
        return None
    return float(value), version


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


def _arrow_table(lines: list[bytes]) -> tuple[pa.Table | None, int | None]:
    """``pyarrow.json`` over these lines, or ``(None, index of the line it rejected or None)``."""
    data = b"\n".join(lines)
    try:
        table = pa_json.read_json(
            io.BytesIO(data),
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


def _as_table(lines: list[bytes]) -> pa.Table:
    """The block's lines as a table of :data:`_LINE_SCHEMA`, one row per line: by ``pyarrow.json``
    around the lines it rejects, which (and, after :data:`_MISFITS` of them, the rest of the block)
    go through ``json.loads`` (:func:`_fitted`: a line that does not fit - not JSON, not an object,
    a field of another type - gets a null ``captureData`` and is read by :func:`parse_line`, which
    says why it is skipped)."""
    pieces: list[pa.Table] = []
    start, misfits = 0, 0
    while start < len(lines):
        rest = lines[start:]
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


def _fitted_table(lines: list[bytes]) -> pa.Table:
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


def _vectorised(lines: list[bytes], since_us: int | None) -> tuple[np.ndarray, _Part, dict]:
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
        "versions": pd.Series(versions[keep], dtype=object).value_counts().to_dict(),
    }
    return slow, part, meta


def _micros(stamp: datetime) -> int:
    return int((stamp - _EPOCH) // timedelta(microseconds=1))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CaptureScan:
    """Capture under ``source`` read block by block: iterate for ``(features, predictions)`` chunks
    (features: FEATURES columns, ``sex`` text and measurements float); :attr:`batch` holds the
    counts (records, files, skipped lines, formats, versions, first/last) once iteration ends."""

    def __init__(
        self,
        source: str | Path,
        *,
        since: datetime | None = None,
        s3_client: Any = None,
        max_examples: int = 5,
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        self.source = str(source)
        self.since = since
        self.max_examples = max_examples
        self.block_bytes = block_bytes
        self.store, keys = _open_capture(self.source, s3_client)
        if not keys:
            raise SourceError(f"no capture found: no .jsonl files under {self.source}")
        if since is not None:
            keys = [
                k for k in keys if (h := _path_hour(k)) is None or h + timedelta(hours=1) > since
            ]
        self.keys = keys
        self.batch = CaptureBatch(
            source=self.source, features=_typed([]), predictions=np.empty(0), since=since
        )
        self._formats: Counter[str] = Counter()
        self._versions: Counter[str] = Counter()
        self._rows = 0

    @property
    def rows(self) -> int:
        return self._rows

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        for key in self.keys:
            self.batch.files += 1
            stream = _open_stream(self.store, key)
            try:
                number = 0
                for block in _blocks(stream, self.block_bytes):
                    split = block.splitlines()
                    if b"" in split or any(map(bytes.isspace, split)):  # blank lines: dropped
                        numbers = [number + i for i, line in enumerate(split, 1) if line.strip()]
                        lines = [split[n - number - 1] for n in numbers]
                    else:
                        numbers, lines = range(number + 1, number + len(split) + 1), split
                    number += len(split)
                    yield from self._block(key, lines, numbers)
            finally:
                stream.close()
        self._finish()

    def _block(self, key: str, lines: list[bytes], numbers: Sequence[int]) -> Iterator[tuple]:
        """The rows of one block's non-blank ``lines`` (``numbers``: their line numbers)."""
        if not lines:
            return
        since_us = None if self.since is None else _micros(self.since)
        slow, part, meta = _vectorised(lines, since_us)
        pieces = [part]
        records = []
        for i in np.flatnonzero(slow):
            record = self._record(key, numbers[i], lines[i])
            if record is not None:
                records.append((int(i), record))
        if records:
            pieces.append(_records_part(records))
        if meta["records"]:
            self.batch.records += meta["records"]
            self._formats["sagemaker"] += meta["records"]
            self._versions.update(meta["versions"])
        for value in (meta["first"], meta["last"]):
            if value is not None:
                self._seen(_EPOCH + timedelta(microseconds=value))
        chunk = _merge(pieces)
        if chunk is not None:
            self._rows += len(chunk[0])
            yield chunk

    def _record(self, key: str, number: int, line: bytes) -> CaptureRecord | None:
        """One line read as before (:func:`parse_line`): skipped and counted if unreadable."""
        try:
            record = parse_line(line)
        except RecordError as err:
            self.batch.skipped += 1
            if len(self.batch.skipped_examples) < self.max_examples:
                self.batch.skipped_examples.append(f"{key}:{number}: {err}")
            return None
        stamp = record.timestamp
        if self.since is not None and (stamp is None or stamp < self.since):
            return None
        self.batch.records += 1
        self._formats[record.source_format] += 1
        if record.model_version is not None:
            self._versions[record.model_version] += len(record.rows)
        if stamp is not None:
            self._seen(stamp)
        return record

    def _seen(self, stamp: datetime) -> None:
        b = self.batch
        b.first = stamp if b.first is None else min(b.first, stamp)
        b.last = stamp if b.last is None else max(b.last, stamp)

    def _finish(self) -> None:
        b = self.batch
        if b.skipped:
            log.warning(
                "%d capture lines could not be read (first: %s)",
                b.skipped,
                b.skipped_examples[0] if b.skipped_examples else "?",
            )
        b.formats = dict(self._formats)
        b.model_versions = dict(self._versions)


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


def read_capture(
    source: str | Path,
    *,
    since: datetime | None = None,
    s3_client: Any = None,
    max_examples: int = 5,
) -> CaptureBatch:
    """Every capture record under ``source`` (at or after ``since``) in one batch, all rows in
    memory: for small captures and tests; the monitoring run streams with :class:`CaptureScan`."""
    scan = CaptureScan(source, since=since, s3_client=s3_client, max_examples=max_examples)
    frames, preds = [], []
    for frame, pred in scan:
        frames.append(frame)
        preds.append(pred)
    batch = scan.batch
    if frames:
        batch.features = pd.concat(frames, ignore_index=True)
        batch.predictions = np.concatenate(preds)
    return batch


def _typed(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Captured rows as FEATURES columns: ``sex`` as text, measurements as floats (NaN if bad)."""
    frame = pd.DataFrame(rows, columns=list(FEATURES))
    out = pd.DataFrame(
        {"sex": pd.Series([None if v is None else str(v) for v in frame["sex"]], dtype="str")}
    )
    for name in NUMERIC_FEATURES:
        out[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return out
