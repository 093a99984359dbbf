"""One captured record, read on its own: this project's capture record and SageMaker data capture
(CSV, JSON or BASE64 payloads), request bodies parsed by the endpoint's own parser
(:func:`jobs.core.contract.parse_request`); :class:`CaptureBatch` is what a monitoring run read.
The reference behaviour the column-wise reader (:mod:`jobs.adapters.capture_arrow`) must match."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from jobs.core.contract import InvalidInput, media_type, parse_request
from jobs.core.numbers import NotANumber, is_number, parse_number, shown, why_not
from jobs.core.schema import FEATURES
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
    source_format: str  # abalone | sagemaker | loss (a loss marker: no rows)
    dropped: int = 0  # records ``abalone serve`` could not write (loss markers only)


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
                raise RecordError(f"input {name}={shown(value)} is not a scalar value")
            if name == "sex" or value is None:
                continue
            if isinstance(value, str) and not is_number(value):  # the contract's one grammar
                raise RecordError(f"input {name}={shown(value)} is {why_not(value)}")
            if isinstance(value, int):
                try:
                    row[name] = value = float(value)
                except OverflowError:
                    raise RecordError(f"input {name}={shown(value)} is too large") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise RecordError(f"input {name}={value!r} is not a finite number")
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
        except (ValueError, RecursionError) as err:  # JSONDecodeError, huge integers, deep nesting
            raise RecordError("endpointOutput is not valid JSON") from err
        version = body.get("model_version") if isinstance(body, Mapping) else None
        return _rings(body), None if version is None else str(version)
    rings = []
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        try:
            rings.append(parse_number(line.split(",", 1)[0]))
        except NotANumber as err:
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
    except RecursionError:
        raise RecordError("not JSON (nested too deeply)") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an integer of 4,300+ digits
        raise RecordError(f"not JSON ({getattr(err, 'msg', None) or str(err)[:80]})") from None
    if not isinstance(obj, Mapping):
        raise RecordError("a capture record must be a JSON object")
    if "captureData" in obj:
        return parse_sagemaker_record(obj)
    if "inputs" in obj:
        return parse_abalone_record(obj)
    if "capture_dropped" in obj:
        return _loss_marker(obj)
    raise RecordError("neither an abalone capture record (inputs) nor SageMaker (captureData)")


def _loss_marker(obj: Mapping[str, Any]) -> CaptureRecord:
    """``{"timestamp": …, "capture_dropped": N, …}``: N records the server could not write."""
    count = obj["capture_dropped"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise RecordError(f"capture_dropped {shown(count)} is not a count")
    return CaptureRecord(
        timestamp=_timestamp(obj.get("timestamp")),
        model_version=None,
        rows=[],
        predictions=None,
        source_format="loss",
        dropped=count,
    )


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
    dropped: int = 0  # records the server could not write (its loss markers)
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
            "dropped_records": self.dropped,
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
