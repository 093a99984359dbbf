"""SageMaker inference handlers (DESIGN §7): what the SageMaker scikit-learn serving container
calls per request, and what ``abalone serve`` serves locally::

    model = model_fn(model_dir)                      # once, at start-up
    data = input_fn(request_body, content_type)      # body is str for text/csv and application/json
    prediction = predict_fn(data, model)
    body, content_type = output_fn(prediction, accept)

The image's default model server calls :func:`transform_fn`, which chains them.
Model directory: what ``jobs/train.py`` writes to ``SM_MODEL_DIR`` (``model.joblib`` + optional
``metadata.json``), or an MLflow model directory (``MLmodel`` + cloudpickled ``model.pkl``). The
request contract is :mod:`jobs.core.contract`; predictions go through the verified numpy fast path
of :mod:`jobs.serving.fastpath` when the model allows it. MLflow is imported only for MLflow model
directories.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from jobs.adapters.settings import environ_value
from jobs.core.contract import (
    CSV_TYPE,
    DEFAULT_MAX_ROWS,
    JSON_TYPE,
    InvalidInput,
    Prediction,
    Rows,
    choose_accept,
    media_type,
    parse_request,
    render,
)
from jobs.core.errors import UsageError
from jobs.serving.fastpath import compile_fast_path

__all__ = [
    "CSV_TYPE",
    "JSON_TYPE",
    "InvalidInput",
    "Prediction",
    "Rows",
    "ServingModel",
    "choose_accept",
    "input_fn",
    "media_type",
    "model_fn",
    "output_fn",
    "parse_request",
    "predict_fn",
    "transform_fn",
]

log = logging.getLogger(__name__)

SMALL_BATCH = 64  # rows; smaller requests run OpenMP code single-threaded (see _openmp_one_thread)
_THREAD_STATE = threading.local()


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
        from threadpoolctl import threadpool_limits  # optional: never fatal to serving

        threadpool_limits(1, user_api="openmp")
    except Exception as err:  # threadpoolctl is a scikit-learn dependency; never fatal
        log.debug("could not limit OpenMP threads: %s", err)


# ---- model_fn -------------------------------------------------------------------------------------


def model_fn(model_dir: str | os.PathLike[str]) -> ServingModel:
    """Load the model from ``model_dir`` (SageMaker's ``/opt/ml/model`` or an MLflow model dir)."""
    path = Path(model_dir)
    if (path / "model.joblib").is_file():
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
        # lazy: MLflow takes seconds to import; only MLflow model directories need it
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
    """Inside the SageMaker container, re-raise as the inference toolkit's error type so the model
    server answers ``err.status_code`` with the message (any other exception becomes a 500)."""
    cls = _toolkit_error_class()
    return err if cls is None or isinstance(err, cls) else cls(err.message, err.status_code)


@functools.cache
def _toolkit_error_class() -> type[InvalidInput] | None:
    try:
        # optional: the inference toolkit exists only inside the SageMaker container
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
    raw = environ_value("ABALONE_MAX_ROWS", "") or ""
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_ROWS


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


def output_fn(prediction: Prediction, accept: str | None) -> tuple[str, str]:
    """Serialise predictions as ``(body, content_type)`` for the ``Accept`` header."""
    try:
        kind = choose_accept(accept)
    except InvalidInput as err:
        raise _for_container(err) from err
    return render(prediction, kind)


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
        # optional: sagemaker-containers exists only in the SageMaker scikit-learn image
        from sagemaker_containers.beta.framework import worker
    except ImportError:  # not in the image
        return None
    return worker.Response
