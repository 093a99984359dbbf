"""``abalone monitor`` (DESIGN §7): read captured traffic, compare it with the training reference
profile, run the data contract on it, and write a report a person can read at a glance.

Sources of captured traffic (``--capture``; default ``$ABALONE_HOME/capture``), a local file or
directory, or an ``s3://bucket/prefix``; every ``*.jsonl`` file below it is read and each line is one
of:

- **this project's capture record** (``jobs.serve``, files ``YYYY/MM/DD/HH.jsonl``)::

    {"timestamp": "2026-11-26T17:05:01.123456Z", "model_version": "3",
     "inputs": [{"sex": "M", "length": 0.455, ...}, ...],
     "outputs": [{"rings": 9.8, "age_years": 11.3}, ...]}

- **SageMaker Model Monitor data capture** (``<prefix>/<endpoint>/<variant>/YYYY/MM/DD/HH/*.jsonl``)::

    {"captureData": {
       "endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                          "data": "M,0.455,...", "encoding": "CSV"},
       "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                          "data": "{\\"predictions\\": [...]}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2026-11-26T17:05:01Z"},
     "eventVersion": "0"}

  ``encoding`` is ``CSV``, ``JSON`` or ``BASE64`` (then ``observedContentType`` says what the decoded
  bytes are). Request bodies are parsed by :func:`jobs.inference.parse_request`, the very parser the
  endpoint ran, so every format the endpoint accepts is read the same way here. Predicted rings
  come from the JSON answer (``predictions``; its ``model_version`` when present) or the first CSV
  column; a record whose answer cannot be read keeps its inputs and contributes no predictions.

A line that cannot be read is skipped and counted (never fatal); ``--since`` keeps records at or
after a time (and skips whole hourly files that end before it).

The reference profile (``jobs.profile``) comes from ``models:/abalone-age@champion`` (the run
artifact ``reference_profile.json`` of the version's run), another ``models:/name/<version>`` or
``models:/name@alias``, ``runs:/<run_id>``, or a local/S3 JSON file.

Outputs under ``$ABALONE_HOME/monitoring/<YYYYMMDDTHHMMSSZ>/``: ``report.html`` (per-feature table
coloured by status, reference-vs-live histograms inline), ``summary.json`` and the GX Data Docs of
the captured batch (``data_docs/``). All writes are atomic.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import io
import json
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from jobs.drift import DRIFT, NA, OK, WARN, DriftResult, Thresholds, assess
from jobs.errors import AbaloneError, SourceError, StorageError, UsageError
from jobs.profile import PREDICTION, load_profile, loads_profile
from jobs.schema import FEATURES, NUMERIC_FEATURES
from jobs.settings import MODEL_NAME, Settings
from jobs.storage import LocalStore, Store, open_store

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
DEFAULT_REFERENCE = f"models:/{MODEL_NAME}@champion"
PROFILE_ARTIFACTS = ("reference_profile.json", "model_dir/reference_profile.json")
MAX_RECORD_ROWS = 1_000_000
_HOUR_IN_PATH = re.compile(r"(\d{4})/(\d{2})/(\d{2})/(\d{2})(?:\.jsonl$|/)")
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# ---- time -----------------------------------------------------------------------------------------


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


# ---- capture records ------------------------------------------------------------------------------


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
    from jobs.inference import media_type

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
    from jobs.inference import InvalidInput, parse_request

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


# ---- reading a capture location -------------------------------------------------------------------


@dataclass
class CaptureBatch:
    """All captured rows read for one monitoring run."""

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

    @property
    def rows(self) -> int:
        return len(self.features)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "files": self.files,
            "records": self.records,
            "rows": self.rows,
            "predictions": len(self.predictions),
            "skipped_lines": self.skipped,
            "skipped_examples": self.skipped_examples,
            "formats": self.formats,
            "model_versions": self.model_versions,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "since": _iso(self.since),
        }


def _iso(stamp: datetime | None) -> str | None:
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


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based line numbers."""
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield number, line


def read_capture(
    source: str | Path,
    *,
    since: datetime | None = None,
    s3_client: Any = None,
    max_examples: int = 5,
) -> CaptureBatch:
    """Read every capture record under ``source`` (at or after ``since``) into one batch."""
    source = str(source)
    store, keys = _open_capture(source, s3_client)
    if not keys:
        raise SourceError(f"no capture found: no .jsonl files under {source}")
    if since is not None:
        kept = []
        for key in keys:
            hour = _path_hour(key)
            if hour is None or hour + timedelta(hours=1) > since:
                kept.append(key)
        keys = kept

    batch = CaptureBatch(source=source, features=pd.DataFrame(), predictions=np.empty(0))
    rows: list[dict[str, Any]] = []
    preds: list[float] = []
    formats: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    for key in keys:
        batch.files += 1
        for number, line in _lines(store.get_bytes(key)):
            try:
                record = parse_line(line)
            except RecordError as err:
                batch.skipped += 1
                if len(batch.skipped_examples) < max_examples:
                    batch.skipped_examples.append(f"{key}:{number}: {err}")
                continue
            stamp = record.timestamp
            if since is not None and (stamp is None or stamp < since):
                continue
            batch.records += 1
            formats[record.source_format] += 1
            if record.model_version is not None:
                versions[record.model_version] += len(record.rows)
            if stamp is not None:
                batch.first = stamp if batch.first is None else min(batch.first, stamp)
                batch.last = stamp if batch.last is None else max(batch.last, stamp)
            rows.extend(record.rows)
            if record.predictions is not None:
                preds.extend(record.predictions)
    if batch.skipped:
        log.warning(
            "%d capture lines could not be read (first: %s)",
            batch.skipped,
            batch.skipped_examples[0] if batch.skipped_examples else "?",
        )
    batch.features = _typed(rows)
    batch.predictions = np.asarray(preds, dtype=float)
    batch.formats = dict(formats)
    batch.model_versions = dict(versions)
    batch.since = since
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


# ---- the reference profile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    profile: dict[str, Any]
    source: str
    model_version: str | None = None
    run_id: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model_version": self.model_version,
            "run_id": self.run_id,
            "n_rows": self.profile.get("n_rows"),
            "created_at": self.profile.get("created_at"),
        }


def _parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` → (name, alias, None); ``models:/name/3`` → (name, None, "3")."""
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in rest:
        name, version = rest.split("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise UsageError(f"--reference {uri!r}: use models:/<name>@<alias> or models:/<name>/<version>")


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a tqdm bar per artifact download; one small JSON file does not need one."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _download_profile(tracking_uri: str, run_id: str, what: str) -> dict[str, Any]:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    last: Exception | None = None
    with (
        tempfile.TemporaryDirectory(prefix="abalone-profile-") as tmp,
        _no_progress_bar(),
    ):
        for artifact in PROFILE_ARTIFACTS:
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=artifact, dst_path=tmp, tracking_uri=tracking_uri
                )
            except (MlflowException, OSError) as err:
                last = err
                continue
            return load_profile(Path(local))
    detail = str(last).strip().splitlines()[0][:200] if last else ""
    raise UsageError(
        f"{what} (run {run_id}) has no reference_profile.json artifact; retrain it with this "
        f"version of the pipeline or pass --reference PATH ({detail})"
    )


def resolve_reference(
    reference: str | None, settings: Settings, s3_client: Any = None
) -> Reference:
    """The reference profile named by ``--reference`` (default: the champion's)."""
    ref = (reference or DEFAULT_REFERENCE).strip()
    if ref.startswith(("models:/", "runs:/")):
        from jobs.registry import Registry, check_tracking

        check_tracking(settings.tracking_uri)
        if ref.startswith("runs:/"):
            run_id = ref[len("runs:/") :].strip("/").split("/", 1)[0]
            if not run_id:
                raise UsageError(f"--reference {ref!r}: use runs:/<run_id>")
            return Reference(
                _download_profile(settings.tracking_uri, run_id, ref), ref, None, run_id
            )
        name, alias, version = _parse_models_uri(ref)
        registry = Registry(settings.tracking_uri, name=name)
        if alias is not None:
            version = registry.alias(alias)
            if version is None:
                raise UsageError(
                    f"no @{alias} version of {name} yet: train and promote a model "
                    "(abalone run) or pass --reference PATH"
                )
        run_id = registry.version(version).run_id
        if not run_id:
            raise UsageError(f"{name} version {version} has no MLflow run")
        profile = _download_profile(settings.tracking_uri, run_id, f"{name} version {version}")
        return Reference(profile, ref, str(version), run_id)
    parsed = urlparse(ref)
    if parsed.scheme == "s3":
        parent, _, name = ref.rstrip("/").rpartition("/")
        try:
            data = open_store(parent, s3_client=s3_client).get_bytes(name)
        except StorageError as err:
            raise SourceError(f"reference profile not readable: {err}") from err
        return Reference(loads_profile(data, origin=ref), ref)
    return Reference(load_profile(Path(parsed.path if parsed.scheme == "file" else ref)), ref)


# ---- the monitoring run ---------------------------------------------------------------------------


@dataclass
class MonitorResult:
    summary: dict[str, Any]
    drift: DriftResult
    report_html: str | None
    summary_json: str | None

    @property
    def drifting(self) -> bool:
        return self.drift.drift


def _data_quality(frame: pd.DataFrame, settings: Settings, docs_dir: Path) -> dict[str, Any]:
    """The GX data contract (inputs only, no ``rings``) on the captured batch."""
    from validation import validate_frame

    result = validate_frame(
        frame,
        with_target=False,
        max_warning_fraction=settings.policy.max_warning_fraction,
        docs_dir=docs_dir,
        run_name="capture",
    )
    return {
        "status": "passed" if result.ok else "failed",
        "batch_status": result.status,
        "rows_total": result.rows_total,
        "rows_flagged": len(result.quarantined),
        "warning_fraction": round(float(result.warning_fraction), 6),
        "failed_expectations": list(result.failed_expectations),
        "problems": list(result.problems)[:20],
        "report_html": result.report_html,
    }


def monitor(
    settings: Settings,
    *,
    capture: str | None = None,
    since: str | None = None,
    reference: str | None = None,
    now: datetime | None = None,
    thresholds: Thresholds | None = None,
    run_validation: bool = True,
    retrain_on_drift: bool = False,
    progress: Progress | None = None,
    s3_client: Any = None,
) -> MonitorResult:
    """Read capture → load reference → drift statistics → GX suite → HTML + JSON report."""
    step = progress or (lambda _msg: None)
    now = now or datetime.now(UTC)
    since_at = parse_since(since, now)
    source = capture or str(settings.capture_dir)
    t = thresholds or Thresholds.from_policy(settings.policy)

    step(f"reading captured traffic from {source}")
    batch = read_capture(source, since=since_at, s3_client=s3_client)
    if batch.rows == 0:
        window = f" since {_iso(since_at)}" if since_at else ""
        raise SourceError(
            f"no capture found: {batch.files} file(s) under {source} hold no readable "
            f"records{window}" + (f" ({batch.skipped} unreadable lines)" if batch.skipped else "")
        )

    step(f"loading the reference profile ({reference or DEFAULT_REFERENCE})")
    ref = resolve_reference(reference, settings, s3_client=s3_client)

    step(f"comparing {batch.rows:,} live rows with the reference")
    preds = batch.predictions if len(batch.predictions) else None
    result = assess(ref.profile, batch.features, preds, t)

    store = LocalStore(settings.monitoring_dir)
    run_id = stamp = now.strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while store.exists(f"{run_id}/summary.json"):  # two runs in the same second
        n += 1
        run_id = f"{stamp}-{n}"

    quality: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="abalone-monitor-") as tmp:
        if run_validation:
            step("running the data contract on the captured batch (Great Expectations)")
            docs = Path(tmp) / "data_docs"
            quality = _data_quality(batch.features, settings, docs)
            if quality["report_html"] is not None:
                rel = Path(quality["report_html"]).relative_to(docs).as_posix()
                store.put_tree(f"{run_id}/data_docs", docs)
                quality["report_html"] = store.uri(f"{run_id}/data_docs/{rel}")
                quality["report_relative"] = f"data_docs/{rel}"  # link from report.html

    step("writing the drift report")
    summary = {
        "run_id": run_id,
        "created_at": _iso(now),
        "env": settings.env,
        "status": result.status,
        "drift": result.drift,
        "message": result.message,
        "drifting_features": result.drifting_features,
        "prediction_drift": result.prediction_drift,
        "score": result.score,
        "capture": batch.describe(),
        "reference": ref.describe(),
        "data_quality": quality,
        "drift_detail": result.to_dict(),
        "report_html": store.uri(f"{run_id}/report.html"),
        "summary_json": store.uri(f"{run_id}/summary.json"),
    }
    if (
        batch.model_versions
        and ref.model_version
        and set(batch.model_versions) != {ref.model_version}
    ):
        summary["note"] = (
            f"captured traffic was served by version(s) {', '.join(sorted(batch.model_versions))}; "
            f"the reference is version {ref.model_version}"
        )
    page = render_html(summary, result, batch, ref.profile)
    store.put_bytes(f"{run_id}/report.html", page.encode())
    _write_summary(store, run_id, summary)
    if retrain_on_drift:
        if result.drift:
            step("drift found: retraining on the latest validated data")
            summary["retrain"] = retrain_safely(settings, progress)
        else:
            summary["retrain"] = {"ok": None, "skipped": f"not needed ({result.status})"}
        _write_summary(store, run_id, summary)
    log.info("monitor %s: %s", run_id, result.message)
    return MonitorResult(summary, result, summary["report_html"], summary["summary_json"])


def _write_summary(store: Store, run_id: str, summary: Mapping[str, Any]) -> None:
    text = json.dumps(summary, indent=2, default=str, allow_nan=False) + "\n"
    store.put_bytes(f"{run_id}/summary.json", text.encode())


def retrain(settings: Settings, progress: Progress | None = None) -> dict[str, Any]:
    """Run the pipeline again on the latest validated data (the raw batch of ``curated/LATEST``).

    Re-ingesting the accepted batch's immutable raw bytes revalidates it and yields the same dataset
    version, so the model is retrained on exactly the data that last passed the contract.
    """
    from jobs.ingest import latest_dataset
    from jobs.pipeline import run_pipeline

    lake = open_store(settings.lake)
    version = latest_dataset(settings, lake)
    try:
        manifest = json.loads(lake.get_bytes(f"curated/{version}/manifest.json"))
    except (StorageError, json.JSONDecodeError) as err:
        raise StorageError(f"dataset {version} has no readable manifest in {lake.root}") from err
    ingest_id = manifest.get("ingest_id")
    raw = [k for k in lake.list(f"raw/{ingest_id}/") if not k.rsplit("/", 1)[-1].startswith("_")]
    if not ingest_id or not raw:
        raise StorageError(f"the raw batch of dataset {version} is missing from {lake.root}")
    source = lake.uri(raw[0])
    run = run_pipeline(settings, source, progress=progress)
    payload = run.to_dict()
    payload["retrained_on"] = {"dataset_version": version, "source": source}
    payload["ok"] = run.ok
    return payload


def retrain_safely(settings: Settings, progress: Progress | None = None) -> dict[str, Any]:
    """:func:`retrain`, with an expected failure reported in the result instead of raised."""
    try:
        return retrain(settings, progress)
    except AbaloneError as err:
        partial = getattr(err, "result", None)
        return {
            "ok": False,
            "error": str(err),
            **({"run": partial.to_dict()} if partial is not None else {}),
        }


# ---- the HTML report ------------------------------------------------------------------------------

_COLOURS = {DRIFT: "#c62828", WARN: "#ef8f00", OK: "#2e7d32", NA: "#757575"}
_BACKGROUNDS = {DRIFT: "#fdecea", WARN: "#fff4e0", OK: "#edf7ee", NA: "#f3f3f3"}


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not np.isfinite(value):
        return "-"
    if isinstance(value, float) and spec == "p":
        return "<1e-12" if value < 1e-12 else f"{value:.2g}"
    return format(value, spec)


def _histogram_png(name: str, spec: Mapping[str, Any], live: np.ndarray, status: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.4, 1.9), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colour = _COLOURS.get(status, "#1565c0")
    if spec.get("type") == "categorical":
        cats = list(spec["categories"])
        cats += [c for c in sorted(set(live.tolist())) if c not in cats]
        expected = [float(spec["expected"].get(c, 0.0)) for c in cats]
        counts = Counter(live.tolist())
        total = max(sum(counts.values()), 1)
        actual = [counts.get(c, 0) / total for c in cats]
        x = np.arange(len(cats))
        ax.bar(x - 0.2, expected, 0.4, color="#90a4ae", label="reference")
        ax.bar(x + 0.2, actual, 0.4, color=colour, label="live")
        ax.set_xticks(x, cats)
        ax.set_ylabel("share", fontsize=7)
    else:
        ref = np.asarray(spec.get("sample", []), float)
        cur = live[np.isfinite(live)]
        both = np.concatenate([ref, cur]) if cur.size else ref
        lo, hi = (float(np.min(both)), float(np.max(both))) if both.size else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-9, 25)
        if ref.size:
            ax.hist(ref, bins=bins, density=True, color="#90a4ae", alpha=0.7, label="reference")
        if cur.size:
            ax.hist(
                cur,
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.6,
                color=colour,
                label="live",
            )
        ax.set_yticks([])
    ax.set_title(name, fontsize=8)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _rows_html(
    result: DriftResult, batch: CaptureBatch, profile: Mapping[str, Any]
) -> Iterable[str]:
    items = list(result.features.items())
    if result.prediction is not None:
        items.append((PREDICTION, result.prediction))
    for name, f in items:
        spec = profile[PREDICTION] if name == PREDICTION else profile["features"][name]
        if name == PREDICTION:
            live = batch.predictions
        elif name in batch.features.columns:
            column = batch.features[name]
            live = column.dropna().astype(str).to_numpy() if name == "sex" else column.to_numpy()
        else:
            live = np.empty(0)
        png = _histogram_png(name, spec, np.asarray(live), f.status)
        test = "χ²" if f.test == "chi2" else "KS"
        means = (
            f"{_fmt(f.reference_mean, '.4g')} → {_fmt(f.live_mean, '.4g')}"
            if f.kind == "numeric"
            else ""
        )
        yield (
            f'<tr style="background:{_BACKGROUNDS[f.status]}">'
            f"<td><b>{html.escape(name)}</b></td>"
            f'<td><span class="pill" style="background:{_COLOURS[f.status]}">'
            f"{html.escape(f.status)}</span></td>"
            f"<td>{_fmt(f.psi)}</td><td>{test} {_fmt(f.statistic)}</td>"
            f"<td>{html.escape(_fmt(f.pvalue, 'p'))}</td><td>{html.escape(means)}</td><td>{f.n:,}</td>"
            f'<td><img alt="{html.escape(name)} reference vs live" '
            f'src="data:image/png;base64,{png}"></td>'
            f"<td>{html.escape(f.note)}</td></tr>"
        )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin-top:28px}
.banner{padding:14px 18px;border-radius:8px;color:#fff;font-size:18px;margin:14px 0}
table{border-collapse:collapse;font-size:13px} td,th{padding:6px 10px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:middle} th{background:#fafafa}
.pill{color:#fff;padding:2px 8px;border-radius:10px;font-size:12px}
.meta td{border:none;padding:2px 12px 2px 0} .muted{color:#666;font-size:12px}
"""


def render_html(
    summary: Mapping[str, Any],
    result: DriftResult,
    batch: CaptureBatch,
    profile: Mapping[str, Any],
) -> str:
    """The drift report as one self-contained HTML page (plots inline as PNG)."""
    status = result.status
    colour = {"drift": "#c62828", "ok": "#2e7d32"}.get(status, "#757575")
    headline = {
        "drift": "DRIFT DETECTED",
        "ok": "No drift",
        "insufficient_data": "Not enough data to judge",
    }.get(status, status)
    e = html.escape
    cap = summary["capture"]
    ref = summary["reference"]
    t = result.thresholds
    meta = [
        ("environment", summary["env"]),
        (
            "captured",
            f"{cap['rows']:,} rows in {cap['records']:,} records from {cap['files']} "
            f"file(s); {cap['skipped_lines']} unreadable lines skipped",
        ),
        (
            "window",
            f"{cap['first'] or '?'} → {cap['last'] or '?'}"
            + (f" (since {cap['since']})" if cap["since"] else ""),
        ),
        ("source", cap["source"]),
        ("formats", ", ".join(f"{k}: {v}" for k, v in cap["formats"].items()) or "-"),
        (
            "served by",
            ", ".join(f"v{k} ({v:,} rows)" for k, v in cap["model_versions"].items()) or "unknown",
        ),
        (
            "reference",
            f"{ref['source']}"
            + (f" → version {ref['model_version']}" if ref["model_version"] else "")
            + f", {ref['n_rows']:,} training rows",
        ),
        (
            "rule",
            f"a column drifts when PSI > {t.drift_psi:g} and its test p-value < "
            f"{t.drift_ks_pvalue:g} / columns tested; at least {t.min_rows} live rows",
        ),
    ]
    if summary.get("note"):
        meta.append(("note", summary["note"]))
    quality = summary.get("data_quality")
    if quality:
        q_colour = _COLOURS[OK] if quality["status"] == "passed" else _COLOURS[DRIFT]
        problems = "".join(f"<li>{e(p)}</li>" for p in quality["problems"][:10])
        link = (
            f' — <a href="{e(str(quality["report_relative"]))}">Data Docs</a>'
            if quality.get("report_relative")
            else ""
        )
        quality_html = (
            f'<p><span class="pill" style="background:{q_colour}">{e(quality["status"])}</span> '
            f"{quality['rows_flagged']:,} of {quality['rows_total']:,} rows flagged"
            f"{link}</p>" + (f"<ul>{problems}</ul>" if problems else "")
        )
    else:
        quality_html = "<p class='muted'>not run</p>"
    rows = "\n".join(_rows_html(result, batch, profile))
    meta_html = "".join(f"<tr><td><b>{e(k)}</b></td><td>{e(str(v))}</td></tr>" for k, v in meta)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>abalone drift report {e(summary["run_id"])}</title><style>{_CSS}</style></head>
<body>
<h1>abalone-age drift report</h1>
<div class="muted">{e(summary["run_id"])} · created {e(summary["created_at"])}</div>
<div class="banner" style="background:{colour}">{e(headline)} — {e(result.message)}</div>
<table class="meta">{meta_html}</table>
<h2>Features and predictions</h2>
<p class="muted">Grey: training reference sample. Line: live traffic. PSI over the reference's
10 quantile bins; KS (numeric) or χ² (sex) as the significance test.</p>
<table>
<tr><th>column</th><th>status</th><th>PSI</th><th>test</th><th>p-value</th>
<th>mean ref → live</th><th>live n</th><th>reference vs live</th><th>note</th></tr>
{rows}
</table>
<h2>Data contract on the captured batch</h2>
{quality_html}
</body></html>
"""
