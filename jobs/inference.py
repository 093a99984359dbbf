"""SageMaker inference handlers for the abalone model (DESIGN §7).

The SageMaker scikit-learn serving container imports this module and calls, per request::

    model = model_fn(model_dir)                      # once, at start-up
    data = input_fn(request_body, content_type)      # body is str for text/csv and application/json
    prediction = predict_fn(data, model)
    body, content_type = output_fn(prediction, accept)

``abalone serve`` (``jobs.serve``) runs the very same functions behind a local ASGI server; the
image's default model server calls :func:`transform_fn`, which chains them (``inference.py``).

Model directory: what ``jobs/train.py`` writes to ``SM_MODEL_DIR`` (``model.joblib`` + optional
``metadata.json``), or an MLflow model directory (``MLmodel`` + cloudpickled ``model.pkl``).

Request formats (one or many rows; at most ``max_rows`` rows, default 10,000):

- ``text/csv``: headerless rows in canonical order ``sex,length,diameter,height,whole_weight,
  shucked_weight,viscera_weight,shell_weight``. A ninth field is accepted as ``rings`` and ignored,
  so rows copied straight from the UCI file (or a curated split) can be replayed; every row must
  then have nine fields. A header row (first field a column name) names the columns in any order; a
  ``rings`` column is ignored there too, any other unknown column is an error.
- ``application/json``: ``{"instances": [[...], ...]}`` (lists in canonical order, 8 or 9 fields as
  above), ``{"instances": [{...}, ...]}`` or a bare list of records (objects keyed by feature name),
  MLflow's ``{"dataframe_split": {"columns": [...], "data": [[...]]}}``,
  ``{"dataframe_records": [{...}]}`` and ``{"inputs": [...]}`` (rows as above). JSON numbers must be numbers (not strings).

Every value is checked: ``sex`` in {M, F, I}; measurements finite numbers in ``[0, MAX_MEASUREMENT]``.
A bad request raises :class:`InvalidInput` whose ``status_code`` is 400 (malformed: encoding, JSON,
shape, field count), 406 (unsupported ``Accept``), 413 (too many rows), 415 (unsupported content
type) or 422 (a value out of contract); its message names the row (1-based) and the field.

Responses, by ``Accept``: ``application/json`` (default, also for ``*/*`` or no header)
``{"predictions": [{"rings": r, "age_years": r + 1.5}, ...], "model_version": "..."}``, or
``text/csv`` with one ``rings,age_years`` line per row.

Only the standard library, numpy, pandas, scikit-learn and joblib are imported here (plus the
stdlib-only ``jobs.schema`` and ``jobs.errors``); MLflow is imported lazily, only for MLflow model
directories.

Speed: ``Pipeline.predict`` on a one-row DataFrame costs milliseconds, mostly DataFrame handling in
the ColumnTransformer. For the usual structure (ColumnTransformer of one-hot ``sex`` and scalers,
then estimators) :func:`compile_fast_path` builds an equivalent numpy path; it is checked at load
time to give bit-identical predictions on probe rows, and any other structure (or any mismatch)
falls back to ``pipeline.predict(DataFrame)``.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.errors import UsageError
from jobs.schema import AGE_OFFSET_YEARS, FEATURES, NUMERIC_FEATURES, SEX_VALUES, TARGET

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
SUPPORTED_CONTENT_TYPES: tuple[str, ...] = (CSV_TYPE, JSON_TYPE)
DEFAULT_MAX_ROWS = 10_000
MAX_MEASUREMENT = 10.0  # mm/200 or g/200: 2 m or 2 kg; the UCI maxima are below 3
_N_NUMERIC = len(NUMERIC_FEATURES)
_N_FEATURES = len(FEATURES)
_SEX_SET = frozenset(SEX_VALUES)
_COLUMN_INDEX = {name: i for i, name in enumerate(FEATURES)}
SMALL_BATCH = 64  # rows; smaller requests run OpenMP code single-threaded (see _openmp_one_thread)
_THREAD_STATE = threading.local()


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


@dataclass(frozen=True)
class ServingModel:
    """What :func:`model_fn` returns: the fitted pipeline, its identity, and the fast path."""

    pipeline: Any
    model_name: str | None = None
    model_version: str | None = None
    run_id: str | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    fast_path: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def predict_rows(self, rows: Rows) -> np.ndarray:
        if len(rows) == 0:
            return np.empty(0, dtype=np.float64)
        if len(rows) <= SMALL_BATCH:
            _openmp_one_thread()
        if self.fast_path is not None:
            out = self.fast_path(rows.sex, rows.numeric)
        else:
            out = self.pipeline.predict(rows.to_frame())
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def with_identity(self, **changes: Any) -> ServingModel:
        return replace(self, **changes)


def _openmp_one_thread() -> None:
    """Run OpenMP regions (e.g. HistGradientBoosting's predict) on one thread in this thread.

    Forking an OpenMP team for a one-row prediction costs far more than the work, and on a busy
    machine the team's barrier can take hundreds of milliseconds. OpenMP's thread count is a
    per-thread setting, so this only affects the calling (request-serving) thread; big batches
    served from other threads keep every core.
    """
    if getattr(_THREAD_STATE, "openmp_limited", False):
        return
    _THREAD_STATE.openmp_limited = True
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="openmp")
    except Exception as err:  # threadpoolctl is a scikit-learn dependency; never fatal
        log.debug("could not limit OpenMP threads: %s", err)


# ---- model_fn -------------------------------------------------------------------------------------


def model_fn(model_dir: str | os.PathLike[str]) -> ServingModel:
    """Load the model from ``model_dir`` (SageMaker's ``/opt/ml/model`` or an MLflow model dir)."""
    path = Path(model_dir)
    if (path / "model.joblib").is_file():
        import joblib

        pipeline = joblib.load(path / "model.joblib")
        metadata = _read_metadata(path / "metadata.json")
        run_id = metadata.get("run_id")
    elif (path / "MLmodel").is_file():
        pipeline, metadata, run_id = _load_mlflow_dir(path)
    else:
        raise UsageError(f"{path} is not a model directory (no model.joblib and no MLmodel file)")
    if not hasattr(pipeline, "predict"):
        raise UsageError(f"{path}: the loaded object ({type(pipeline).__name__}) has no predict()")
    version = metadata.get("model_version")
    fast = compile_fast_path(pipeline)
    log.info("loaded model from %s (fast path: %s)", path, "on" if fast else "off")
    return ServingModel(
        pipeline=pipeline,
        model_name=metadata.get("model_name"),
        model_version=None if version is None else str(version),
        run_id=run_id,
        source=str(path),
        metadata=metadata,
        fast_path=fast,
    )


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: unreadable model metadata ({err})") from err
    if not isinstance(data, dict):
        raise UsageError(f"{path}: model metadata must be a JSON object")
    return data


def _load_mlflow_dir(path: Path) -> tuple[Any, dict[str, Any], str | None]:
    try:
        import mlflow.sklearn
        from mlflow.models import Model
    except ImportError as err:  # pragma: no cover - the SageMaker container path never gets here
        raise UsageError(
            f"{path} is an MLflow model directory but mlflow is not installed"
        ) from err
    try:
        info = Model.load(str(path))
        pipeline = mlflow.sklearn.load_model(str(path))
    except Exception as err:
        raise UsageError(f"{path}: cannot load the MLflow sklearn model ({err})") from err
    metadata = dict(info.metadata or {})
    metadata.update(_read_metadata(path / "metadata.json"))
    return pipeline, metadata, metadata.get("run_id") or info.run_id


# ---- input_fn -------------------------------------------------------------------------------------


def input_fn(request_body: str | bytes, request_content_type: str | None) -> Rows:
    """Parse and validate a request body (SageMaker passes ``str`` for CSV/JSON, else ``bytes``)."""
    try:
        return parse_request(request_body, request_content_type, max_rows=_env_max_rows())
    except InvalidInput as err:
        raise _for_container(err) from err


def _for_container(err: InvalidInput) -> InvalidInput:
    """Inside the SageMaker container, re-raise as the inference toolkit's error type so its
    multi-model server answers ``err.status_code`` (the default server: :func:`transform_fn`)."""
    cls = _toolkit_error_class()
    return err if cls is None or isinstance(err, cls) else cls(err.message, err.status_code)


@functools.cache
def _toolkit_error_class() -> type[InvalidInput] | None:
    try:
        from sagemaker_inference.errors import BaseInferenceToolkitError
    except ImportError:  # not in the container: InvalidInput itself is the contract
        return None

    class ToolkitInvalidInput(InvalidInput, BaseInferenceToolkitError):
        def __init__(self, message: str, status_code: int = 400) -> None:
            BaseInferenceToolkitError.__init__(self, status_code, message, message)
            self.args = (message,)  # str(err) is the message, as for InvalidInput
            self.message = message
            self.status_code = status_code

    return ToolkitInvalidInput


def _env_max_rows() -> int:
    raw = os.environ.get("ABALONE_MAX_ROWS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_ROWS


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
        return float(raw)
    except ValueError:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise InvalidInput(
            f"row {r + 1}, field {NUMERIC_FEATURES[j]!r}: not a number: {shown!r}", 422
        ) from None


def _check_sex(value: Any, r: int) -> str:
    if not isinstance(value, str) or value not in _SEX_SET:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
        raise InvalidInput(f"row {r + 1}, field 'sex': must be one of M, F, I, got {shown}", 422)
    return value


def _check_number(x: float, r: int, j: int) -> float:
    if not (0.0 <= x <= MAX_MEASUREMENT):  # also false for NaN
        what = "not finite" if not math.isfinite(x) else f"out of range [0, {MAX_MEASUREMENT:g}]"
        raise InvalidInput(f"row {r + 1}, field {NUMERIC_FEATURES[j]!r}: {what}: {x!r}", 422)
    return x


def _check_rings(raw: Any, r: int) -> None:
    """The optional trailing ``rings`` is ignored but must still look like a rings count."""
    try:
        value = float(raw) if isinstance(raw, str) else _json_float(raw)
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
                shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:40] + "…"
                raise InvalidInput(
                    f"row {r + 1}, field {NUMERIC_FEATURES[j]!r}: must be a JSON number, "
                    f"got {shown}",
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


# ---- predict_fn / output_fn -----------------------------------------------------------------------


def predict_fn(input_data: Rows, model: ServingModel) -> Prediction:
    """Predict rings for validated rows (the output of :func:`input_fn`)."""
    if not isinstance(input_data, Rows):
        raise InvalidInput("predict_fn expects the rows returned by input_fn", 400)
    return Prediction(
        rings=model.predict_rows(input_data),
        model_version=model.model_version,
        model_name=model.model_name,
    )


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


def output_fn(prediction: Prediction, accept: str | None) -> tuple[str, str]:
    """Serialise predictions as ``(body, content_type)`` for the ``Accept`` header."""
    try:
        kind = choose_accept(accept)
    except InvalidInput as err:
        raise _for_container(err) from err
    rings = prediction.rings.tolist()
    if kind == CSV_TYPE:
        body = "".join(f"{r!r},{r + AGE_OFFSET_YEARS!r}\n" for r in rings)
        return body, CSV_TYPE
    payload = {
        "predictions": [{"rings": r, "age_years": r + AGE_OFFSET_YEARS} for r in rings],
        "model_version": prediction.model_version,
    }
    return json.dumps(payload, separators=(",", ":")), JSON_TYPE


def transform_fn(
    model: ServingModel, request_body: str | bytes, content_type: str | None, accept: str | None
) -> Any:
    """One request in the SageMaker scikit-learn image's model server (sagemaker-containers under
    gunicorn): ``input_fn`` → ``predict_fn`` → ``output_fn``, a bad request answered with its 4xx
    and ``{"error": message}`` as ``abalone serve`` does. That server turns any exception of a
    handler into a 500 but passes a response object through, so the error is returned as one."""
    try:
        choose_accept(accept)  # 406 before any work, as abalone serve
        return output_fn(predict_fn(input_fn(request_body, content_type), model), accept)
    except InvalidInput as err:
        response = _container_response_class()
        if response is None:
            raise
        body = json.dumps({"error": err.message})
        return response(response=body, status=err.status_code, mimetype=JSON_TYPE)


@functools.cache
def _container_response_class() -> Any:
    try:
        from sagemaker_containers.beta.framework import worker
    except ImportError:  # not in the image
        return None
    return worker.Response


# ---- the fast path --------------------------------------------------------------------------------


def compile_fast_path(
    pipeline: Any,
) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """A numpy-only equivalent of ``pipeline.predict(frame)`` or ``None`` when not applicable.

    Applies to a ``Pipeline`` whose first step is ``jobs.model.AbaloneFeatures`` or a fitted dense
    ``ColumnTransformer`` made of a ``OneHotEncoder`` on ``sex`` and ``StandardScaler``/
    ``MinMaxScaler``/``"passthrough"``/``"drop"`` on measurement columns. Later steps: scalers are
    replicated in numpy, known estimators (TransformedTargetRegressor, VotingRegressor, SVR,
    MLPRegressor, linear models) are called without their per-call input validation, anything
    else through its own ``transform``/``predict`` (finiteness checks skipped: inputs were
    validated). The result is compared with ``pipeline.predict`` on probe rows; a path that is
    not bit-identical is discarded (first the deep one, then the shallow one).
    """
    for deep in (True, False):  # deep: estimators compiled too; shallow: their own predict()
        try:
            fast = _build_fast_path(pipeline, deep=deep)
        except Exception as err:  # an unexpected structure is not an error: use the slow path
            log.info("fast path not built (%s: %s)", type(err).__name__, err)
            continue
        if fast is None:
            return None
        try:
            if _same_predictions(pipeline, fast):
                fast.deep = deep  # type: ignore[attr-defined]  # which variant (tests, logs)
                return fast
            log.warning("fast path (deep=%s) differs from Pipeline.predict; not used", deep)
        except Exception as err:
            log.warning("fast path (deep=%s) self-check failed (%s); not used", deep, err)
    return None


Head = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _build_fast_path(
    pipeline: Any, deep: bool = True
) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    import sklearn
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if type(pipeline) is not Pipeline or len(pipeline.steps) < 2:
        return None
    head = _compile_head(pipeline.steps[0][1])
    if head is None:
        return None
    tail = [step for _, step in pipeline.steps[1:] if step not in (None, "passthrough")]
    if not tail or any(hasattr(step, "feature_names_in_") for step in tail):
        return None  # later steps fitted on named columns: keep sklearn's own path
    final = tail[-1]
    if not hasattr(final, "predict") or any(not hasattr(s, "transform") for s in tail[:-1]):
        return None
    transforms: list[Callable[[np.ndarray], np.ndarray]] = []
    for step in tail[:-1]:
        if type(step) is StandardScaler:
            scale = _standard(step, None)
            transforms.append(lambda x, scale=scale: scale(None, x))
        else:
            transforms.append(step.transform)

    final_predict = (_compile_estimator(final) if deep else None) or final.predict

    def predict(sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        x = head(sex, numeric)
        with sklearn.config_context(assume_finite=True):
            for transform in transforms:
                x = transform(x)
            return final_predict(x)

    return predict


Predictor = Callable[[np.ndarray], np.ndarray]


def _compile_estimator(est: Any) -> Predictor | None:
    """``est.predict`` minus the per-call input validation, for estimators whose predict is a thin
    shell around a documented computation; ``None`` for anything else. Each replica mirrors the
    scikit-learn source of ``predict`` (checked against 1.9) and is verified bit-for-bit at load."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import VotingRegressor
    from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.svm import SVR, NuSVR

    kind = type(est)
    if kind is TransformedTargetRegressor:
        inner = _compile_estimator(est.regressor_) or est.regressor_.predict
        transformer = est.transformer_
        if type(transformer) is FunctionTransformer and not transformer.validate:
            func = transformer.inverse_func or (lambda y: y)
            kwargs = transformer.inv_kw_args or {}

            def inverse(y: np.ndarray) -> np.ndarray:
                return func(y, **kwargs)
        else:
            inverse = transformer.inverse_transform
        squeeze = getattr(est, "_training_dim", None) == 1

        def ttr(x: np.ndarray) -> np.ndarray:
            pred = inner(x)
            out = inverse(pred.reshape(-1, 1) if pred.ndim == 1 else pred)
            if squeeze and out.ndim == 2 and out.shape[1] == 1:
                out = out.squeeze(axis=1)
            return out

        return ttr
    if kind is VotingRegressor:
        parts = [_compile_estimator(e) or e.predict for e in est.estimators_]
        weights = est._weights_not_none
        return lambda x: np.average(np.asarray([p(x) for p in parts]).T, axis=1, weights=weights)
    if kind in (SVR, NuSVR) and not est._sparse and not callable(est.kernel):
        dense_predict = est._dense_predict
        return lambda x: dense_predict(np.ascontiguousarray(x, dtype=np.float64))
    if kind is MLPRegressor:
        return lambda x: est._predict(x, check_input=False)
    if kind in (LinearRegression, Ridge, Lasso, ElasticNet) and np.ndim(est.coef_) == 1:
        coef, intercept = est.coef_, est.intercept_
        return lambda x: x @ coef.T + intercept
    return None


def _compile_head(step: Any) -> Head | None:
    """The first pipeline step (the one that takes the DataFrame) as a numpy function."""
    from sklearn.compose import ColumnTransformer

    if type(step) is ColumnTransformer:
        return _column_transformer(step)
    if type(step).__name__ == "AbaloneFeatures":  # jobs.model's own feature step
        return _abalone_features(step)
    return None


def _abalone_features(step: Any) -> Head | None:
    """``jobs.model.AbaloneFeatures``: one-hot sex + (cbrt | log | identity) measurements."""
    import sys

    categories = getattr(sys.modules.get(type(step).__module__), "SEX_CATEGORIES", None)
    kind = getattr(step, "numeric_transform", None)
    if not categories or kind not in ("none", "cbrt", "log"):
        return None
    eye = np.stack([[float(s == c) for c in categories] for s in SEX_VALUES])
    code = {s: i for i, s in enumerate(SEX_VALUES)}

    def transform(sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        onehot = eye[[code[s] for s in sex]]
        if kind == "cbrt":
            num = np.cbrt(numeric)
        elif kind == "log":
            num = np.log(np.clip(numeric, 1e-3, None))
        else:
            num = numeric
        return np.hstack([onehot, num])

    return transform


def _column_transformer(pre: Any) -> Head | None:
    from sklearn.preprocessing import (
        FunctionTransformer,
        MinMaxScaler,
        OneHotEncoder,
        StandardScaler,
    )

    if getattr(pre, "sparse_output_", True):
        return None
    names_in = [str(c) for c in getattr(pre, "feature_names_in_", [])]
    if sorted(names_in) != sorted(FEATURES):
        return None
    numeric_pos = {name: i for i, name in enumerate(NUMERIC_FEATURES)}
    parts: list[Head] = []
    for _name, trans, columns in pre.transformers_:
        cols = _column_names(columns, names_in)
        if cols is None:
            return None
        if trans == "drop" or not cols:
            continue
        if isinstance(trans, str) and trans != "passthrough":
            return None
        if cols == ["sex"]:
            if type(trans) is not OneHotEncoder:
                return None
            parts.append(_one_hot(trans))
            continue
        if "sex" in cols:
            return None
        idx = np.array([numeric_pos[c] for c in cols])
        if type(trans) is FunctionTransformer and trans.func is None:  # remainder="passthrough"
            trans = "passthrough"
        if trans == "passthrough":
            parts.append(lambda sex, num, idx=idx: num[:, idx])
        elif type(trans) is StandardScaler:
            parts.append(_standard(trans, idx))
        elif type(trans) is MinMaxScaler and not trans.clip:
            parts.append(_minmax(trans, idx))
        else:
            return None

    def transform(sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        return np.hstack([part(sex, numeric) for part in parts])

    return transform


def _column_names(columns: Any, names_in: list[str]) -> list[str] | None:
    if isinstance(columns, str | int | np.integer):
        columns = [columns]
    if isinstance(columns, slice) or not isinstance(columns, Sequence | np.ndarray):
        return None
    out = []
    for c in columns:
        if isinstance(c, bool | np.bool_):
            return None
        if isinstance(c, int | np.integer):
            out.append(names_in[int(c)])
        elif isinstance(c, str):
            out.append(c)
        else:
            return None
    return out


def _one_hot(enc: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if (
        getattr(enc, "drop_idx_", None) is not None
        or getattr(enc, "_infrequent_enabled", False)
        or len(enc.categories_) != 1
    ):
        raise ValueError("one-hot encoder with drop/infrequent categories")
    categories = [str(c) for c in enc.categories_[0]]
    if not set(SEX_VALUES) <= set(categories) and enc.handle_unknown == "error":
        raise ValueError("one-hot encoder would reject a valid sex value")
    dtype = np.dtype(enc.dtype)
    table = {s: np.zeros(len(categories), dtype=dtype) for s in SEX_VALUES}
    for s, vec in table.items():
        if s in categories:
            vec[categories.index(s)] = 1
    eye = np.stack([table[s] for s in SEX_VALUES])
    code = {s: i for i, s in enumerate(SEX_VALUES)}

    def encode(sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        return eye[[code[s] for s in sex]]

    return encode


def _standard(scaler: Any, idx: np.ndarray | None) -> Head:
    """``StandardScaler.transform`` on columns ``idx`` of the second argument (all when None)."""
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def transform(sex: Any, numeric: np.ndarray) -> np.ndarray:
        x = numeric[:, idx] if idx is not None else np.array(numeric, dtype=np.float64)
        if mean is not None:
            x -= mean
        if scale is not None:
            x /= scale
        return x

    return transform


def _minmax(scaler: Any, idx: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def transform(sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        x = numeric[:, idx]
        x *= scaler.scale_
        x += scaler.min_
        return x

    return transform


def probe_rows(n: int = 200, seed: int = 20260) -> Rows:
    """Plausible rows covering every sex and the measurement range, for self-checks and tests."""
    rng = np.random.default_rng(seed)
    sex = np.array([SEX_VALUES[i % 3] for i in range(n)], dtype=object)
    length = rng.uniform(0.05, 0.8, n)
    numeric = np.column_stack(
        [
            length,
            length * rng.uniform(0.7, 0.85, n),
            length * rng.uniform(0.0, 0.35, n),
            4.8 * length**3 * rng.uniform(0.8, 1.2, n),
            2.0 * length**3 * rng.uniform(0.8, 1.2, n),
            1.0 * length**3 * rng.uniform(0.8, 1.2, n),
            1.4 * length**3 * rng.uniform(0.8, 1.2, n),
        ]
    ).round(4)
    return Rows(sex=sex, numeric=numeric)


def _same_predictions(pipeline: Any, fast: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> bool:
    probe = probe_rows()
    expected = np.asarray(pipeline.predict(probe.to_frame()), dtype=np.float64).reshape(-1)
    got = np.asarray(fast(probe.sex, probe.numeric), dtype=np.float64).reshape(-1)
    if not np.array_equal(expected, got):
        return False
    for i in range(3):  # single rows take other code paths (BLAS kernels) in some estimators
        one = Rows(sex=probe.sex[i : i + 1], numeric=probe.numeric[i : i + 1])
        single = np.asarray(pipeline.predict(one.to_frame()), dtype=np.float64).reshape(-1)
        if not np.array_equal(single, np.asarray(fast(one.sex, one.numeric)).reshape(-1)):
            return False
    return True
