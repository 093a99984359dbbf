"""``python -m jobs.train`` in SageMaker script mode, against a real ``mlflow server`` (HTTP) and the
embedded SQLite store: what it logs, writes and registers, and how it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from mlflow import MlflowClient

from jobs.adapters.settings import MODEL_NAME, load_settings
from jobs.core.data import canonical_csv, dataset_version, split
from jobs.core.errors import ServiceError, UsageError
from jobs.core.schema import FEATURES
from jobs.core.synthetic import make_abalone
from tests.conftest import free_port

CHEAP = ("--estimators", "svr")  # one SVR: seconds, not the full ensemble
CHEAP_PARAMS = {"estimators": "svr"}
METRICS = [f"{s}_{m}" for s in ("val", "test") for m in ("rmse", "mae", "r2", "rmsle")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A curated dataset version laid out as the lake does: three splits and a manifest."""
    frame = make_abalone(500, seed=5)
    version = dataset_version(frame)
    root = tmp_path_factory.mktemp("channel")
    for name, part in split(frame, seed=0).items():
        (root / f"{name}.csv").write_bytes(canonical_csv(part))
    (root / "manifest.json").write_text(
        json.dumps(
            {
                "dataset_version": version,
                "ingest_id": "20261126T120000000000Z-a1b2c3",
                "data_quality": "passed",
                "report_html": "/reports/20261126T120000000000Z-a1b2c3/data_docs/index.html",
                "summary_json": None,
            }
        )
    )
    return root, version


@pytest.fixture(scope="module")
def sqlite_settings(tmp_path_factory):
    """One embedded store for the module (creating a SQLite MLflow store costs seconds)."""
    home = tmp_path_factory.mktemp("sqlite-home")
    return load_settings("dev", environ={"ABALONE_HOME": str(home)})


def run_job(channel: Path, work: Path, tracking_uri: str, *args: str, env_extra=None, timeout=180):
    env = dict(os.environ)
    env.update(
        SM_CHANNEL_TRAIN=str(channel),
        SM_CHANNEL_VALIDATION=str(channel),
        SM_CHANNEL_TEST=str(channel),
        SM_MODEL_DIR=str(work / "model"),
        SM_OUTPUT_DATA_DIR=str(work / "output"),
        MLFLOW_TRACKING_URI=tracking_uri,
        ABALONE_HOME=str(work / "home"),
        ABALONE_ENV="dev",
        **(env_extra or {}),
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, time.monotonic() - start


def versions(uri: str) -> list[str]:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        return sorted(str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'"))
    except Exception:  # store not created yet
        return []


def check_trained(uri: str, work: Path, version_tag: str) -> dict:
    """Everything a successful job promises, checked through MLflow's public client."""
    result = json.loads((work / "output" / "result.json").read_text())
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    v = result["model_version"]
    challenger = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    assert str(challenger.version) == v and challenger.status == "READY"
    assert challenger.tags["dataset_version"] == version_tag
    assert challenger.tags["run_id"] == result["run_id"]
    assert float(challenger.tags["test_rmse"]) == pytest.approx(result["metrics"]["test_rmse"])

    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert set(METRICS) <= set(run.data.metrics)
    assert run.data.tags["dataset_version"] == version_tag
    assert run.data.tags["ingest_id"] == "20261126T120000000000Z-a1b2c3"
    assert run.data.tags["data_quality"] == "passed"
    assert run.data.tags["report_path"].endswith("data_docs/index.html")
    assert client.get_experiment(run.info.experiment_id).name == "abalone-dev"
    digests = {(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs}
    assert {(f"abalone-{s}", version_tag) for s in ("train", "validation", "test")} <= digests

    listed = {a.path for a in client.list_artifacts(result["run_id"], "plots")}
    assert {f"plots/residuals_{s}.png" for s in ("validation", "test")} <= listed
    assert {f"plots/predicted_vs_actual_{s}.png" for s in ("validation", "test")} <= listed
    top = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"reference_profile.json", "model_dir"} <= top

    model_dir = work / "model"
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["run_id"] == result["run_id"] and meta["features"] == list(FEATURES)
    assert meta["model_version"] == v  # what the endpoint answers as "model_version"
    profile = json.loads((model_dir / "reference_profile.json").read_text())
    assert profile["kind"] == "abalone-reference-profile"

    from jobs.adapters.tracking import Registry

    served = Registry(uri).load_model(v)
    saved = joblib.load(model_dir / "model.joblib")
    sample = make_abalone(20, seed=9)[list(FEATURES)]
    np.testing.assert_allclose(served.predict(sample), saved.predict(sample))
    return result


@pytest.mark.slow
def test_job_against_mlflow_server_registers_challenger(dataset, mlflow_server, tmp_path):
    channel, version = dataset
    before = versions(mlflow_server)
    proc, took = run_job(
        channel, tmp_path, mlflow_server, *CHEAP, "--svr_C", "3", "--svr_epsilon", "0.4"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = check_trained(mlflow_server, tmp_path, version)
    assert result["model_version"] not in before
    params = MlflowClient(tracking_uri=mlflow_server).get_run(result["run_id"]).data.params
    assert float(params["svr_C"]) == 3.0 and float(params["svr_epsilon"]) == 0.4
    assert took < 90
    # the literal user path: models:/ with MLFLOW_TRACKING_URI in the environment
    code = (
        "import mlflow.sklearn, sys; from jobs.core.synthetic import make_abalone; "
        f"m = mlflow.sklearn.load_model('models:/{MODEL_NAME}@challenger'); "
        "print(len(m.predict(make_abalone(7, seed=2).drop(columns='rings'))))"
    )
    env = dict(os.environ, MLFLOW_TRACKING_URI=mlflow_server)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "7", out.stderr[-2000:]


@pytest.mark.slow
def test_launcher_against_sqlite_keeps_artifacts_under_home(dataset, sqlite_settings, tmp_path):
    from jobs.training.contract import Channels
    from jobs.training.launcher import run_subprocess

    channel, version = dataset
    settings = sqlite_settings
    home = settings.home
    assert settings.tracking_uri.startswith("sqlite:///")
    result = run_subprocess(
        settings, Channels.single(channel), workdir=tmp_path, params=CHEAP_PARAMS
    )
    assert result.model_version == "1" and result.dataset_version == version
    check_trained(settings.tracking_uri, tmp_path, version)
    stored = list((home / "mlartifacts" / "abalone-dev").rglob("*.png"))
    assert len(stored) == 4, "plots must land under $ABALONE_HOME/mlartifacts"


def test_unknown_hyperparameter_is_a_usage_error(dataset, tmp_path):
    channel, _ = dataset
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc, _ = run_job(channel, tmp_path, uri, *CHEAP, "--bogus", "1")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown hyperparameter(s) bogus; known:"), last
    assert json.loads((tmp_path / "output" / "error.json").read_text())["type"] == "UsageError"
    assert not (tmp_path / "mlflow.db").exists(), "the job must stop before touching MLflow"


def script_env(monkeypatch, channel: Path, work: Path) -> None:
    """The script-mode environment, for calling ``jobs.train.main`` in process."""
    for name in ("TRAIN", "VALIDATION", "TEST"):
        monkeypatch.setenv(f"SM_CHANNEL_{name}", str(channel))
    monkeypatch.setenv("SM_MODEL_DIR", str(work / "model"))
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(work / "output"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    monkeypatch.setenv("ABALONE_HOME", str(work / "home"))
    script_env_defaults(monkeypatch)


def script_env_defaults(monkeypatch) -> None:
    """``main()`` sets these defaults in os.environ; register them so they are undone afterwards."""
    for var, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "60"),
        ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
    ):
        monkeypatch.setenv(var, os.environ.get(var, value))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--svr_C", "lots"], "hyperparameter svr_C='lots' is not a valid float"),
        (["--svr_C"], "argument --svr_C needs a value"),
        (["svr_C", "3"], "unexpected argument 'svr_C'"),
    ],
)
def test_bad_arguments_are_usage_errors(dataset, tmp_path, monkeypatch, capsys, args, message):
    from jobs.training.script import main

    script_env(monkeypatch, dataset[0], tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_unreachable_mlflow_fails_fast_before_training(dataset, tmp_path):
    channel, _ = dataset
    dead = f"http://127.0.0.1:{free_port()}"  # bound then closed: nothing listens
    proc, took = run_job(channel, tmp_path, dead)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"MLflow tracking server {dead} is unreachable" in lines[0]
    assert took < 20
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())
    assert not (tmp_path / "output" / "result.json").exists()


def test_launcher_reraises_the_job_error_class(dataset, tmp_path):
    from jobs.training.contract import Channels
    from jobs.training.launcher import run_subprocess

    channel, _ = dataset
    settings = load_settings("dev", environ={"ABALONE_HOME": str(tmp_path / "h")})
    with pytest.raises(UsageError, match="unknown hyperparameter"):
        run_subprocess(settings, Channels.single(channel), workdir=tmp_path, params={"nope": 1})
    dead = settings.model_copy(update={"tracking_uri": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(ServiceError, match="unreachable"):
        run_subprocess(dead, Channels.single(channel), workdir=tmp_path, params=CHEAP_PARAMS)


def test_crash_during_training_registers_nothing_and_moves_no_alias(
    dataset, sqlite_settings, tmp_path, monkeypatch
):
    """A model that blows up in ``fit``: the run is marked FAILED, no version, @challenger unchanged."""
    import jobs.core.model
    from jobs.adapters.tracking import Registry
    from jobs.training.contract import Channels
    from jobs.training.fit import train

    channel, _ = dataset
    uri = sqlite_settings.tracking_uri
    registry = Registry(uri)
    before = (versions(uri), registry.alias("challenger"))
    real_build = jobs.core.model.build_model

    class Exploding:
        def fit(self, X, y):
            real_build(CHEAP_PARAMS).fit(X.head(5), y[:5])
            raise MemoryError("simulated crash in fit")

    monkeypatch.setattr(jobs.core.model, "build_model", lambda params=None: Exploding())
    with pytest.raises(MemoryError):
        train(
            Channels.single(channel),
            model_dir=tmp_path / "m",
            output_dir=tmp_path / "o",
            settings=sqlite_settings,
        )
    assert (versions(uri), registry.alias("challenger")) == before
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("abalone-dev")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    assert runs[0].info.status == "FAILED"
    assert not (tmp_path / "o" / "result.json").exists()


def test_missing_channel_file_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from jobs.training.script import main

    empty = tmp_path / "empty"
    empty.mkdir()
    script_env(monkeypatch, empty, tmp_path)
    assert main([*CHEAP]) == 2
    assert "train channel has no train.csv" in capsys.readouterr().err
    assert json.loads((tmp_path / "output" / "error.json").read_text())["type"] == "SourceError"


def test_a_dataset_too_small_to_train_on_is_named_before_anything_is_logged(
    tmp_path, monkeypatch, capsys
):
    """A 3-row dataset curated before ingest required MIN_DATASET_ROWS (its validation and test
    splits empty): one clear line at the train step, no traceback, nothing written but error.json."""
    from jobs.training.script import main

    channel = tmp_path / "tiny"
    channel.mkdir()
    frame = make_abalone(3, seed=1)
    for name in ("train", "validation", "test"):
        (channel / f"{name}.csv").write_bytes(
            canonical_csv(frame if name == "train" else frame[:0])
        )
    script_env(monkeypatch, channel, tmp_path)
    assert main([*CHEAP]) == 2
    err = capsys.readouterr().err
    assert "training data: not enough rows to train (3 < 20)" in err and "Traceback" not in err
    assert json.loads((tmp_path / "output" / "error.json").read_text())["type"] == "SourceError"
    assert not (tmp_path / "mlflow.db").exists()  # failed before the tracking store was touched
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())


def test_missing_sagemaker_environment_is_named(monkeypatch, capsys):
    from jobs.training.script import main

    for var in ("SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION", "SM_CHANNEL_TEST", "SM_MODEL_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("SM_OUTPUT_DATA_DIR", raising=False)
    script_env_defaults(monkeypatch)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "missing environment variable(s) SM_CHANNEL_TRAIN" in err and "SM_MODEL_DIR" in err
