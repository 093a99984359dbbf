"""Column-wise checks of captured lines with Arrow compute kernels: the common one-row request
bodies (CSV, BASE64 CSV, ``{"instances": [[…]]}``) and answers, validated with the same rules as
:mod:`jobs.adapters.capture_records`; files streamed in blocks of :data:`BLOCK_BYTES`."""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import json as pa_json

from jobs.adapters.capture_blocks import _blocks_into
from jobs.adapters.storage import LocalStore, S3Store, Store
from jobs.core.errors import StorageError
from jobs.core.numbers import NUMBER_REGEX
from jobs.core.schema import SEX_VALUES

log = logging.getLogger(__name__)


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
# The contract's one number grammar (ASCII, RE2 here); Arrow's cast then reads it as float() does.
_DECIMAL = NUMBER_REGEX
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


def _blocks(stream: Any, size: int, buffer: bytearray | None = None) -> Iterator[bytes]:
    """Blocks of whole lines (cut after a newline) of at most about ``size`` bytes: each read of
    ``size`` bytes, after the unfinished line the previous read left, cut after its last newline.
    A file is read into ``buffer`` (reused from file to file when the caller passes one)."""
    if hasattr(stream, "readinto"):
        yield from _blocks_into(stream, size, bytearray() if buffer is None else buffer)
        return
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
    if parent.null_count == 0:  # nothing to mask (the common case): no copy of the child
        return child
    return pc.if_else(parent.is_valid(), child, pa.scalar(None, child.type))


def _by_value(values: pa.Array, kernel: Any) -> pa.Array:
    """An element-wise ``kernel`` computed once per distinct value and spread back to every row
    (content types and encodings repeat in nearly every line: one regex per value, not per row)."""
    encoded = pc.dictionary_encode(values)
    return pc.take(kernel(encoded.dictionary), encoded.indices)


def _mask(values: Any) -> np.ndarray:
    """A boolean Arrow array as numpy, nulls as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _media(content_type: pa.Array, encoding: pa.Array) -> pa.Array:
    """:func:`jobs.core.contract.media_type` of each block, falling back on the encoding."""
    kind = _by_value(
        content_type,
        lambda v: pc.utf8_lower(
            pc.utf8_trim_whitespace(pc.replace_substring_regex(v, r";(?s:.*)$", ""))
        ),
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
        where = np.flatnonzero(is_json)
        bodies = data.take(pa.array(where))  # the JSON bodies only: no copy of the whole column
        matched = np.zeros(len(data), dtype=bool)
        for pattern, row in _JSON_ROWS:
            hit = _mask(pc.match_substring_regex(bodies, pattern))
            if hit.any():
                rows = np.zeros(len(data), dtype=bool)
                rows[where[hit]] = True
                rewritten = pc.replace_substring_regex(bodies.filter(pa.array(hit)), pattern, row)
                data = pc.replace_with_mask(data, pa.array(rows), rewritten)
                matched |= rows
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
    trimmed = pc.ascii_trim_whitespace(fields)  # as jobs.core.numbers: ASCII whitespace only
    ok = _mask(pc.match_substring_regex(trimmed, _DECIMAL))
    values = np.full(len(fields), np.nan)
    if ok.any():
        try:
            values[ok] = pc.cast(trimmed.filter(pa.array(ok)), pa.float64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return values, np.zeros(len(fields), dtype=bool)  # read line by line instead
    ok &= (values >= lo) & (values <= hi)
    return values, ok


# A one-row CSV text that is exactly "sex,d,d,d,d,d,d,d" (no white space, each d a _DECIMAL): its
# fields need no trimming and pass _DECIMAL as they are, so one regex per row checks all of them.
_PLAIN_ROW = (
    "^(?:"
    + "|".join(re.escape(code) for code in sorted(SEX_VALUES))
    + ")(?:,(?:"
    + _DECIMAL.removeprefix("^").removesuffix("$")
    + ")){7}$"
)


def _plain_measurements(
    texts: pa.Array, fields: pa.Array, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_numbers` of the seven measurements of every row at once - ``(values (n, 7), ok)``,
    ``fields`` the rows' split ``texts`` - when every text is a plain row (:data:`_PLAIN_ROW`);
    None otherwise (then each column goes through :func:`_numbers`)."""
    if not _mask(pc.match_substring_regex(pc.ascii_trim_whitespace(texts), _PLAIN_ROW)).all():
        return None
    starts = np.asarray(fields.offsets)[:-1]
    cells = fields.values.take(pa.array((starts[:, None] + np.arange(1, 8)).ravel()))
    try:
        values = pc.cast(cells, pa.float64()).to_numpy(zero_copy_only=False).reshape(-1, 7)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return values, ((values >= lo) & (values <= hi)).all(axis=1)


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
        # matched _ISO_UTC: after the 19 characters of the seconds come "", "Z" or ".f…[Z]"
        fraction = pc.utf8_rpad(pc.utf8_rtrim(pc.utf8_slice_codeunits(picked, 20, 27), "Z"), 6, "0")
        value = whole.cast(pa.int64()).to_numpy(zero_copy_only=False)
        valid = _mask(whole.is_valid())
        value = np.where(valid, value, 0).astype(np.int64)
        value += pc.cast(fraction, pa.int64()).to_numpy(zero_copy_only=False)
        where = np.flatnonzero(chosen)
        micros[where[valid]] = value[valid]
        ok[where[~valid]] = False
    return micros, ok


def _answers(payload: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Predicted rings of one-row records from their ``endpointOutput``: ``(rings, known, versions)``
    (``versions``: the answers' ``model_version``, an Arrow string array, null where none - no
    Python string per row).

    ``known`` is False where the answer is not a plain CSV value or our JSON answer; those are read
    by :func:`_output_rings` one by one (exactly as before).
    """
    n = len(payload)
    rings = np.full(n, np.nan)
    versions = pa.nulls(n, pa.string())
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
    if json_rows.any() and _line_breaks(data.filter(pa.array(json_rows))):
        json_rows &= ~_mask(pc.match_substring_regex(data, "[\\r\\n]"))
    if json_rows.any():
        texts = data.filter(pa.array(json_rows))
        try:
            body = pa_json.read_json(
                pa.BufferReader(_joined_lines(texts)),
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
            names = _strings(body.column("model_version"))
        else:  # some answer does not fit the schema: each is read by json.loads
            answers = [_answer(text) for text in texts.to_pylist()]
            got = np.array([np.nan if a is None else a[0] for a in answers], dtype=float)
            names = pa.array([None if a is None else a[1] for a in answers], pa.string())
        good = np.isfinite(got)
        rings[where[good]] = got[good]
        known[where[good]] = True
        if good.any():
            hit = np.zeros(n, dtype=bool)
            hit[where[good]] = True
            versions = pc.replace_with_mask(versions, pa.array(hit), names.filter(pa.array(good)))
    return rings, known, versions


def _line_breaks(texts: pa.Array) -> bool:
    """Whether some of the (non-null) ``texts`` holds a CR or LF: one scan of their bytes."""
    values = texts.buffers()[2]
    if values is None:
        return False
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)
    start, end = int(offsets[texts.offset]), int(offsets[texts.offset + len(texts)])
    chunk = values[start:end].to_pybytes()
    return b"\n" in chunk or b"\r" in chunk


def _joined_lines(texts: pa.Array) -> pa.Buffer:
    """The (non-null) ``texts`` as one buffer, each followed by a newline - the lines Python's
    ``"\n".join`` would give, built by Arrow without a Python string per row."""
    joined = pc.binary_join_element_wise(texts, pa.scalar("", pa.string()), "\n")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)
    start, end = offsets[joined.offset], offsets[joined.offset + len(joined)]
    return joined.buffers()[2][start:end]


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
