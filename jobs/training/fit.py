"""Fit, evaluate, log and register one model (DESIGN §5): what the training job does once its
inputs are checked. Order of effects: the channels are read and checked, then the tracking store,
before any model is fitted or anything is logged; the version is registered only after the run
completed, and ``@challenger`` moves only once the version is READY and tagged. A failure in between
deletes the new version, so a crash never leaves a half-registered version or a moved alias.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cloudpickle
import joblib
import mlflow
import mlflow.sklearn
import numpy
import pandas as pd
import sklearn
from mlflow import MlflowClient
from mlflow.models import infer_signature

from jobs.adapters.settings import Settings, environ_value, environment, load_settings
from jobs.adapters.storage import open_store
from jobs.adapters.tracking import Registry, check_tracking, ensure_experiment, fluent_run
from jobs.adapters.tracking_runs import owner_tags
from jobs.core import model as model_lib
from jobs.core.data import splits_version
from jobs.core.errors import AbaloneError
from jobs.core.evaluate import regression_metrics
from jobs.core.policy import CHALLENGER, MODEL_NAME
from jobs.core.profile import build_profile
from jobs.core.schema import FEATURES, SPLITS, TARGET
from jobs.training.contract import (
    Channels,
    Lineage,
    TrainResult,
    read_splits,
    resolve_lineage,
    write_json,
)
from jobs.training.plots import predicted_vs_actual_plot, residual_plot

log = logging.getLogger(__name__)


def _read_summary(uri: str | None) -> dict | None:
    """The data-quality summary JSON (best effort: a missing report does not stop training)."""
    if not uri:
        return None
    try:
        if uri.startswith("s3://"):
            parent, name = uri.rsplit("/", 1)
            return json.loads(open_store(parent).get_bytes(name))
        return json.loads(Path(uri.removeprefix("file://")).read_text())
    except (AbaloneError, OSError, ValueError) as err:
        log.warning("data-quality summary %s not logged: %s", uri, err)
        return None


def _git_sha(settings: Settings) -> str | None:
    if sha := settings.git_sha or environ_value("GIT_SHA"):
        return sha
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _pip_requirements() -> list[str]:
    return [
        f"scikit-learn=={sklearn.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
        f"numpy=={numpy.__version__}",
        f"pandas=={pd.__version__}",
    ]


def train(
    channels: Channels,
    *,
    model_dir: Path,
    output_dir: Path,
    params: Mapping[str, Any] | None = None,
    lineage: Lineage | None = None,
    settings: Settings | None = None,
    register: bool = True,
) -> TrainResult:
    """Fit, evaluate, log to MLflow, write the SageMaker outputs, register and alias ``@challenger``."""
    started = time.perf_counter()
    settings = settings or load_settings(None)
    params = {**model_lib.DEFAULT_PARAMS, **model_lib.parse_params(params)}
    model_lib.build_model(params)  # validates values and ranges (UsageError) before any logging
    frames = read_splits(channels)
    check_tracking(settings.tracking_uri)  # before any MLflow or model work: fail fast
    lineage = lineage or resolve_lineage(channels, None, environment())
    dataset_version = lineage.dataset_version or splits_version(frames)
    data_quality = lineage.data_quality or "unknown"
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    experiment_id = ensure_experiment(client, settings)
    X = {s: frames[s][list(FEATURES)] for s in SPLITS}
    y = {s: frames[s][TARGET].to_numpy(dtype=float) for s in SPLITS}
    tags = {
        "dataset_version": dataset_version,
        "ingest_id": lineage.ingest_id or "unknown",
        "data_quality": data_quality,
        "report_path": lineage.report_path or "none",
        "env": settings.env,
        "sklearn_version": sklearn.__version__,
    }
    if git_sha := _git_sha(settings):
        tags["git_sha"] = git_sha
        tags["mlflow.source.git.commit"] = git_sha

    with fluent_run(
        settings.tracking_uri, experiment_id=experiment_id, run_name=f"train-{dataset_version}"
    ) as run:
        run_id = run.info.run_id
        mlflow.set_tags({**tags, **owner_tags()})  # the owner: a dead one's run is failed later
        mlflow.log_params({**params, **{f"n_{s}": len(y[s]) for s in SPLITS}})
        _log_inputs(frames, channels, dataset_version)
        model, pred, metrics = _fit(params, X, y)
        mlflow.log_metrics(metrics)
        _log_plots(y, pred)
        profile = build_profile(X["train"], pred["train"])
        write_json(model_dir / "reference_profile.json", profile)
        mlflow.log_dict(profile, "reference_profile.json")
        if summary := _read_summary(lineage.summary_json):
            mlflow.log_dict(summary, "data_quality/summary.json")
        info = _log_model(model, X["train"])
        metadata = _write_model_dir(model, model_dir, run_id, dataset_version, metrics, params)
        mlflow.log_artifacts(str(model_dir), artifact_path="model_dir")

    version = None
    if register:
        version = _register(
            Registry(settings.tracking_uri, client=client),
            info,
            run_id,
            lambda v: write_json(model_dir / "metadata.json", {**metadata, "model_version": v}),
            {
                "dataset_version": dataset_version,
                "run_id": run_id,
                "ingest_id": tags["ingest_id"],
                "data_quality": data_quality,
                "env": settings.env,
                **{
                    k: f"{metrics[k]:.6f}" for k in ("test_rmse", "val_rmse", "test_mae", "test_r2")
                },
            },
        )
    result = TrainResult(
        run_id=run_id,
        model_version=version,
        metrics=metrics,
        params=params,
        dataset_version=dataset_version,
        data_quality=data_quality,
        experiment_id=experiment_id,
        experiment_name=settings.experiment_name,
        model_uri=f"models:/{MODEL_NAME}/{version}" if version else None,
        model_dir=str(model_dir),
        duration_s=time.perf_counter() - started,
        fit_s=metrics["fit_seconds"],
    )
    write_json(output_dir / "result.json", result.to_dict())
    log.info("run %s: test_rmse %.4f, version %s", run_id, metrics["test_rmse"], version)
    return result


def _log_inputs(frames: dict[str, pd.DataFrame], channels: Channels, dataset_version: str) -> None:
    for split, context in (
        ("train", "training"),
        ("validation", "validation"),
        ("test", "testing"),
    ):
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways", int hints
            warnings.simplefilter("ignore", UserWarning)
            ds = mlflow.data.from_pandas(
                frames[split],
                source=str(channels.path(split)),
                targets=TARGET,
                name=f"abalone-{split}",
                digest=dataset_version,
            )
            mlflow.log_input(ds, context=context)


def _fit(params: dict[str, Any], X: dict, y: dict) -> tuple[Any, dict, dict[str, float]]:
    """The fitted model, its predictions per split, and ``val_*``/``test_*``/``train_*`` metrics."""
    fit_start = time.perf_counter()
    model = model_lib.build_model(params)
    model.fit(X["train"], y["train"])
    fit_s = time.perf_counter() - fit_start
    pred = {s: model.predict(X[s]) for s in SPLITS}
    metrics: dict[str, float] = {}
    for split, prefix in (("validation", "val"), ("test", "test"), ("train", "train")):
        for key, value in regression_metrics(y[split], pred[split]).items():
            metrics[f"{prefix}_{key}"] = value
    metrics["fit_seconds"] = fit_s
    return model, pred, metrics


def _log_plots(y: dict, pred: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="abalone-train-") as tmp:
        plots = Path(tmp) / "plots"
        for split in ("validation", "test"):
            residual_plot(
                y[split], pred[split], plots / f"residuals_{split}.png", f"Residuals ({split})"
            )
            predicted_vs_actual_plot(
                y[split],
                pred[split],
                plots / f"predicted_vs_actual_{split}.png",
                f"Predicted vs actual ({split})",
            )
        mlflow.log_artifacts(str(plots), artifact_path="plots")


def _log_model(model: Any, train_features: pd.DataFrame) -> Any:
    example = train_features.head(5)
    return mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="cloudpickle",
        signature=infer_signature(example, model.predict(example)),
        input_example=example,
        pip_requirements=_pip_requirements(),
    )


def _write_model_dir(
    model: Any,
    model_dir: Path,
    run_id: str,
    dataset_version: str,
    metrics: dict[str, float],
    params: dict[str, Any],
) -> dict[str, Any]:
    """What SageMaker serves: ``model.joblib`` + ``metadata.json`` (next to the profile)."""
    joblib.dump(model, model_dir / "model.joblib")
    metadata = {
        "model_name": MODEL_NAME,
        "run_id": run_id,
        "dataset_version": dataset_version,
        "metrics": metrics,
        "params": params,
        "features": list(FEATURES),
        "target": TARGET,
        "sklearn_version": sklearn.__version__,
    }
    write_json(model_dir / "metadata.json", metadata)
    return metadata


def _register(
    registry: Registry,
    info: Any,
    run_id: str,
    name_version: Any,
    tags: dict[str, str],
) -> str:
    """Register the logged model, name the version in the served model's metadata (SageMaker packs
    the model directory after the script), then move ``@challenger``; an incomplete registration
    is deleted again, so no half-registered version or moved alias is left behind."""
    version = registry.register(info.model_uri, run_id=run_id, model_id=info.model_id, tags=tags)
    try:
        name_version(version)
        registry.set_alias(CHALLENGER, version)
        registry.client.set_tag(run_id, "registered_version", version)
    except BaseException:
        log.error("registration of version %s incomplete; deleting it", version)
        try:
            registry.delete_version(version)
        finally:
            raise
    return version
