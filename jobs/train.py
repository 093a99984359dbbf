"""Training entry point in SageMaker script mode (DESIGN §5): the same file runs locally as a
subprocess of ``abalone train`` / ``abalone run`` and as a SageMaker training job.

    python -m jobs.train [--<hyperparameter> VALUE ...] [--dataset-version V] [--ingest-id I]
                         [--data-quality passed] [--report-path URI] [--summary-json URI]

Environment (the SageMaker contract):

- ``SM_CHANNEL_TRAIN``, ``SM_CHANNEL_VALIDATION``, ``SM_CHANNEL_TEST``: directories holding
  ``train.csv``, ``validation.csv``, ``test.csv`` (header row, canonical columns);
- ``SM_MODEL_DIR``: receives ``model.joblib``, ``metadata.json``, ``reference_profile.json``;
- ``SM_OUTPUT_DATA_DIR``: receives ``result.json`` (``run_id``, ``model_version``, ``metrics``) or,
  on failure, ``error.json`` (``type``, ``message``);
- ``MLFLOW_TRACKING_URI`` (default: the local SQLite store under ``ABALONE_HOME``), ``ABALONE_ENV``
  (``dev``/``prd`` → experiment ``abalone-<env>``).

Lineage (dataset version, ingest id, data-quality status, report and summary locations) comes from
the flags above, else ``ABALONE_DATASET_VERSION``/``ABALONE_INGEST_ID``/``ABALONE_DATA_QUALITY``/
``ABALONE_REPORT_PATH``/``ABALONE_SUMMARY_JSON``, else ``manifest.json`` next to ``train.csv``.

Hyperparameters are the keys of ``jobs.model.DEFAULT_PARAMS``; SageMaker passes every value as a
string, so values are converted to the default's type. An unknown name is a usage error (exit 2).

Order of effects: the channels are read and checked, then the tracking store, before any model is
fitted or anything is logged; the model version is registered only after the run completed, and
``@challenger`` moves only once the version is READY and tagged. A failure in between deletes the new version, so a crash never leaves a
half-registered version or a moved alias.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from jobs import errors
from jobs.errors import AbaloneError, ServiceError, SourceError, UsageError
from jobs.schema import FEATURES, SPLITS, TARGET
from jobs.settings import MODEL_NAME, Settings

log = logging.getLogger(__name__)

LINEAGE_FLAGS = {
    "dataset_version": "ABALONE_DATASET_VERSION",
    "ingest_id": "ABALONE_INGEST_ID",
    "data_quality": "ABALONE_DATA_QUALITY",
    "report_path": "ABALONE_REPORT_PATH",
    "summary_json": "ABALONE_SUMMARY_JSON",
}
CHANNEL_ENV = {
    "train": "SM_CHANNEL_TRAIN",
    "validation": "SM_CHANNEL_VALIDATION",
    "test": "SM_CHANNEL_TEST",
}


@dataclass(frozen=True)
class Channels:
    train: Path
    validation: Path
    test: Path

    @classmethod
    def single(cls, directory: Path) -> Channels:
        """All three channels in one directory (a curated dataset version)."""
        return cls(Path(directory), Path(directory), Path(directory))

    def path(self, split: str) -> Path:
        return Path(getattr(self, split)) / f"{split}.csv"


@dataclass(frozen=True)
class Lineage:
    dataset_version: str | None = None
    ingest_id: str | None = None
    data_quality: str | None = None
    report_path: str | None = None
    summary_json: str | None = None


@dataclass
class TrainResult:
    run_id: str
    model_version: str | None
    metrics: dict[str, float]
    params: dict[str, Any]
    dataset_version: str
    data_quality: str
    experiment_id: str
    experiment_name: str
    model_uri: str | None
    model_dir: str
    duration_s: float
    fit_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- arguments ----------------------------------------------------------------------------------


def _param_types() -> dict[str, type]:
    from jobs import model

    declared = dict(getattr(model, "PARAM_TYPES", {}) or {})
    for key, value in model.DEFAULT_PARAMS.items():
        declared.setdefault(key, type(value) if value is not None else str)
    return declared


def _coerce(name: str, raw: Any, kind: type) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':  # JSON-encoded by some SageMaker SDKs
        text = text[1:-1]
    try:
        if kind is bool:
            low = text.lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        return json.loads(text)
    except (TypeError, ValueError) as err:
        raise UsageError(f"hyperparameter {name}={raw!r} is not a valid {kind.__name__}") from err


def coerce_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters from strings to the types of ``DEFAULT_PARAMS``; unknown names are errors."""
    types = _param_types()
    unknown = sorted(set(raw) - set(types))
    if unknown:
        raise UsageError(
            f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(sorted(types)) or 'none'}"
        )
    return {k: _coerce(k, v, types[k]) for k, v in raw.items()}


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``--name value`` / ``--name=value`` pairs → (hyperparameters, lineage overrides)."""
    raw: dict[str, str] = {}
    lineage: dict[str, str] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or len(item) == 2:
            raise UsageError(f"unexpected argument {item!r}; use --name value")
        if "=" in item:
            key, value = item[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items) or items[i + 1].startswith("--"):
                raise UsageError(f"argument {item} needs a value")
            key, value = item[2:], items[i + 1]
            i += 2
        key = key.replace("-", "_")
        if key in LINEAGE_FLAGS:
            lineage[key] = value
        else:
            raw[key] = value
    return coerce_params(raw), lineage


# ---- inputs -------------------------------------------------------------------------------------


def read_split(channels: Channels, split: str) -> pd.DataFrame:
    from jobs.registry import canonical_frame

    path = channels.path(split)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError as err:
        raise SourceError(f"{split} channel has no {path.name}: {path}") from err
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise SourceError(f"cannot read {path}: {err}") from err
    return canonical_frame(frame, str(path))


def resolve_lineage(
    channels: Channels,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Lineage:
    """Flags, then environment, then ``manifest.json`` beside ``train.csv``."""
    environ = os.environ if environ is None else environ
    manifest: dict[str, Any] = {}
    mpath = Path(channels.train) / "manifest.json"
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as err:
            raise SourceError(f"cannot read {mpath}: {err}") from err
    from_manifest = {
        "dataset_version": manifest.get("dataset_version"),
        "ingest_id": manifest.get("ingest_id"),
        "data_quality": manifest.get("data_quality"),
        "report_path": manifest.get("report_html"),
        "summary_json": manifest.get("summary_json"),
    }
    values = {
        key: (overrides or {}).get(key) or environ.get(var) or from_manifest.get(key)
        for key, var in LINEAGE_FLAGS.items()
    }
    return Lineage(**values)


def _computed_version(frames: Mapping[str, pd.DataFrame]) -> str:
    import hashlib

    from jobs.data import canonical_csv

    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update(canonical_csv(frames[split]))
    return "ds-" + digest.hexdigest()[:12]


def _read_summary(uri: str | None) -> dict | None:
    """The data-quality summary JSON (best effort: a missing report does not stop training)."""
    if not uri:
        return None
    try:
        if uri.startswith("s3://"):
            from jobs.storage import open_store

            parent, name = uri.rsplit("/", 1)
            return json.loads(open_store(parent).get_bytes(name))
        return json.loads(Path(uri.removeprefix("file://")).read_text())
    except (AbaloneError, OSError, ValueError) as err:
        log.warning("data-quality summary %s not logged: %s", uri, err)
        return None


def _git_sha() -> str | None:
    for var in ("ABALONE_GIT_SHA", "GIT_SHA"):
        if os.environ.get(var):
            return os.environ[var]
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


# ---- training -----------------------------------------------------------------------------------


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _pip_requirements() -> list[str]:
    import cloudpickle
    import numpy
    import sklearn

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
    import joblib
    import mlflow
    import mlflow.sklearn
    import sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from jobs.evaluate import regression_metrics
    from jobs.model import DEFAULT_PARAMS, build_model
    from jobs.plots import predicted_vs_actual_plot, residual_plot
    from jobs.profile import build_profile
    from jobs.registry import CHALLENGER, Registry, check_tracking, ensure_experiment
    from jobs.settings import load_settings

    started = time.perf_counter()
    settings = settings or load_settings(os.environ.get("ABALONE_ENV", "dev"))  # type: ignore[arg-type]
    params = {**DEFAULT_PARAMS, **coerce_params(dict(params or {}))}
    build_model(params)  # validates values and ranges (UsageError) before anything is logged
    frames = {split: read_split(channels, split) for split in SPLITS}
    check_tracking(settings.tracking_uri)  # before any MLflow or model work: fail fast
    lineage = lineage or resolve_lineage(channels)
    dataset_version = lineage.dataset_version or _computed_version(frames)
    data_quality = lineage.data_quality or "unknown"
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
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
    if git_sha := _git_sha():
        tags["git_sha"] = git_sha
        tags["mlflow.source.git.commit"] = git_sha

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{dataset_version}") as run:
        run_id = run.info.run_id
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                **params,
                "n_train": len(y["train"]),
                "n_validation": len(y["validation"]),
                "n_test": len(y["test"]),
            }
        )
        for split, context in (
            ("train", "training"),
            ("validation", "validation"),
            ("test", "testing"),
        ):
            with (
                warnings.catch_warnings()
            ):  # "source can be interpreted in multiple ways", int hints
                warnings.simplefilter("ignore", UserWarning)
                ds = mlflow.data.from_pandas(
                    frames[split],
                    source=str(channels.path(split)),
                    targets=TARGET,
                    name=f"abalone-{split}",
                    digest=dataset_version,
                )
                mlflow.log_input(ds, context=context)

        fit_start = time.perf_counter()
        model = build_model(params)
        model.fit(X["train"], y["train"])
        fit_s = time.perf_counter() - fit_start
        pred = {s: model.predict(X[s]) for s in SPLITS}
        metrics: dict[str, float] = {}
        for split, prefix in (("validation", "val"), ("test", "test"), ("train", "train")):
            for key, value in regression_metrics(y[split], pred[split]).items():
                metrics[f"{prefix}_{key}"] = value
        metrics["fit_seconds"] = fit_s
        mlflow.log_metrics(metrics)

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

        profile = build_profile(X["train"], pred["train"])
        _write_json(model_dir / "reference_profile.json", profile)
        mlflow.log_dict(profile, "reference_profile.json")
        if summary := _read_summary(lineage.summary_json):
            mlflow.log_dict(summary, "data_quality/summary.json")

        example = X["train"].head(5)
        signature = infer_signature(example, model.predict(example))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="cloudpickle",
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
        )
        joblib.dump(model, model_dir / "model.joblib")
        _write_json(
            model_dir / "metadata.json",
            metadata := {
                "model_name": MODEL_NAME,
                "run_id": run_id,
                "dataset_version": dataset_version,
                "metrics": metrics,
                "params": params,
                "features": list(FEATURES),
                "target": TARGET,
                "sklearn_version": sklearn.__version__,
            },
        )
        mlflow.log_artifacts(str(model_dir), artifact_path="model_dir")

    version: str | None = None
    if register:
        registry = Registry(settings.tracking_uri, client=client)
        version = registry.register(
            info.model_uri,
            run_id=run_id,
            model_id=info.model_id,
            tags={
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
        try:  # the served model names its version (SageMaker packs model_dir after the script)
            _write_json(model_dir / "metadata.json", {**metadata, "model_version": version})
            registry.set_alias(CHALLENGER, version)
            client.set_tag(run_id, "registered_version", version)
        except BaseException:
            log.error("registration of version %s incomplete; deleting it", version)
            try:
                registry.delete_version(version)
            finally:
                raise

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
        fit_s=fit_s,
    )
    _write_json(output_dir / "result.json", result.to_dict())
    log.info("run %s: test_rmse %.4f, version %s", run_id, metrics["test_rmse"], version)
    return result


# ---- script mode --------------------------------------------------------------------------------


def channels_from_env(environ: Mapping[str, str]) -> tuple[Channels, Path, Path]:
    needed = [*CHANNEL_ENV.values(), "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR"]
    missing = [var for var in needed if not environ.get(var)]
    if missing:
        raise UsageError(
            f"missing environment variable(s) {', '.join(missing)} (SageMaker script mode)"
        )
    channels = Channels(*(Path(environ[CHANNEL_ENV[s]]) for s in SPLITS))
    return channels, Path(environ["SM_MODEL_DIR"]), Path(environ["SM_OUTPUT_DATA_DIR"])


def _write_failure(err: BaseException, environ: Mapping[str, str]) -> None:
    payload = {
        "type": type(err).__name__,
        "message": str(err),
        "exit_code": getattr(err, "exit_code", 1),
    }
    try:
        if environ.get("SM_OUTPUT_DATA_DIR"):
            _write_json(Path(environ["SM_OUTPUT_DATA_DIR"]) / "error.json", payload)
        if environ.get("SM_OUTPUT_DIR"):  # SageMaker shows this file as the failure reason
            Path(environ["SM_OUTPUT_DIR"], "failure").write_text(f"{payload['type']}: {err}\n")
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet = ("mlflow.tracking.request_header.registry", "alembic", "mlflow.store.db.utils")
    # mlflow.sklearn warns about cloudpickle; the format is a deliberate choice (DESIGN §5).
    for name in (*quiet, "mlflow.sklearn"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        params, overrides = parse_args(sys.argv[1:] if argv is None else argv)
        channels, model_dir, output_dir = channels_from_env(os.environ)
        lineage = resolve_lineage(channels, overrides)
        train(channels, model_dir=model_dir, output_dir=output_dir, params=params, lineage=lineage)
    except AbaloneError as err:
        _write_failure(err, os.environ)
        sys.stderr.write(f"error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt as err:
        _write_failure(err, os.environ)
        sys.stderr.write("error: interrupted\n")
        return 130
    return 0


# ---- local launcher (the pipeline and ``abalone train``) ----------------------------------------


def prepare_channels(settings: Settings, dataset_version: str, workdir: Path) -> Channels:
    """Copy a curated dataset version (splits + manifest) from the lake into ``workdir/data``."""
    from jobs.storage import open_store

    lake = open_store(settings.lake)
    prefix = f"curated/{dataset_version}"
    target = Path(workdir) / "data"
    target.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        key = f"{prefix}/{split}.csv"
        if not lake.exists(key):
            raise UsageError(f"unknown dataset version {dataset_version}: no {key} in {lake.root}")
        (target / f"{split}.csv").write_bytes(lake.get_bytes(key))
    if lake.exists(f"{prefix}/manifest.json"):
        (target / "manifest.json").write_bytes(lake.get_bytes(f"{prefix}/manifest.json"))
    return Channels.single(target)


def run_subprocess(
    settings: Settings,
    channels: Channels,
    *,
    workdir: Path,
    params: Mapping[str, Any] | None = None,
    lineage: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> TrainResult:
    """Run ``python -m jobs.train`` with the SageMaker environment contract; returns its result.

    Outputs go to ``workdir/model`` and ``workdir/output``; the job's log to ``workdir/train.log``.
    A failure is re-raised as the job's own error class (from ``output/error.json``).
    """
    workdir = Path(workdir)
    model_dir, output_dir = workdir / "model", workdir / "output"
    for d in (model_dir, output_dir):
        d.mkdir(parents=True, exist_ok=True)
    (output_dir / "error.json").unlink(missing_ok=True)
    (output_dir / "result.json").unlink(missing_ok=True)
    env = dict(os.environ)
    env.update(
        SM_CHANNEL_TRAIN=str(channels.train),
        SM_CHANNEL_VALIDATION=str(channels.validation),
        SM_CHANNEL_TEST=str(channels.test),
        SM_MODEL_DIR=str(model_dir),
        SM_OUTPUT_DATA_DIR=str(output_dir),
        MLFLOW_TRACKING_URI=settings.tracking_uri,
        ABALONE_ENV=settings.env,
        ABALONE_HOME=str(settings.home),
        ABALONE_LAKE=settings.lake,
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    argv = [sys.executable, "-m", "jobs.train"]
    for key, value in {**(params or {})}.items():
        argv += [f"--{key}", str(value)]
    for key, value in (lineage or {}).items():
        if value:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    log_path = workdir / "train.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            proc.terminate()
            proc.wait(timeout=30)
            raise ServiceError(f"training exceeded {timeout_s:.0f}s; log: {log_path}") from err
        except KeyboardInterrupt:
            proc.wait(timeout=60)  # the job got the same SIGINT and cleans up
            raise
    if code != 0:
        raise _job_error(output_dir / "error.json", code, log_path)
    result = json.loads((output_dir / "result.json").read_text())
    return TrainResult(**result)


def _job_error(error_json: Path, code: int, log_path: Path) -> AbaloneError:
    try:
        payload = json.loads(error_json.read_text())
    except (OSError, ValueError):
        tail = (
            log_path.read_text(errors="replace").strip().splitlines()[-1:]
            if log_path.exists()
            else []
        )
        return ServiceError(
            f"training failed (exit {code}): {tail[0] if tail else 'no output'}; log: {log_path}"
        )
    cls = getattr(errors, str(payload.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, AbaloneError)):
        cls = ServiceError
    return cls(payload.get("message") or f"training failed (exit {code})")


if __name__ == "__main__":
    sys.exit(main())
