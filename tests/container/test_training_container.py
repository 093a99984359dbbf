"""``jobs/train.py`` run by the SageMaker scikit-learn image's training entry (DESIGN §5, §8).

The image's ``train`` command (sagemaker-training) reads ``/opt/ml/input/config`` as SageMaker
writes it for the stack's ``createTrainingJob`` (hyperparameters ``sagemaker_program`` /
``sagemaker_submit_directory``, three CSV channels, the stack's environment), installs the code
package's ``requirements.txt`` into the image's Python stack and runs ``train.py`` as a process.
The job logs to a real ``mlflow server`` on loopback and registers ``@challenger``; the model
directory it leaves (what SageMaker packs into ``model.tar.gz``) names that version.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from mlflow import MlflowClient

from jobs.adapters.settings import MODEL_NAME
from jobs.adapters.tracking import Registry
from jobs.core.data import canonical_csv, dataset_version, split
from jobs.core.schema import FEATURES
from jobs.core.synthetic import make_abalone
from jobs.serving.handlers import model_fn
from tests.container import stack

pytestmark = pytest.mark.container

INGEST_ID = "20261126T120000000000Z-c0ffee"


def write_training_config(base, code_uri: str, hyperparameters: dict[str, str]) -> str:
    """``/opt/ml/input`` as SageMaker lays it out for the stack's training job; the version."""
    frame = make_abalone(500, seed=5)
    for name, part in split(frame, seed=0).items():
        channel = base / "input/data" / name
        channel.mkdir(parents=True)
        (channel / f"{name}.csv").write_bytes(canonical_csv(part))
    config = base / "input/config"
    config.mkdir(parents=True)
    hyper = {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": code_uri,
        "sagemaker_container_log_level": "20",
        **hyperparameters,
    }
    (config / "hyperparameters.json").write_text(json.dumps(hyper))
    # SageMaker names the host algo-1 and makes it resolvable; the toolkit waits until each host
    # resolves, so the one host here is localhost
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "localhost", "hosts": ["localhost"]})
    )
    channel_config = {
        "ContentType": "text/csv",
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
    }
    (config / "inputdataconfig.json").write_text(
        json.dumps({name: channel_config for name in ("train", "validation", "test")})
    )
    return dataset_version(frame)


def test_training_job_through_the_image_entry(container_venv, code_upload, mlflow_server, tmp_path):
    base = tmp_path / "opt-ml"
    version = write_training_config(base, code_upload.uri, {"estimators": "svr", "svr_C": "3"})
    env = stack.container_env(
        container_venv,
        base,
        # the stack's training Environment (components/pipeline_training_states.py), the tracking
        # server on loopback instead of its ARN; the image's entry module is on the path too
        ABALONE_ENV="dev",
        MLFLOW_TRACKING_URI=mlflow_server,
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONPATH=f"{base / 'code'}:{stack.ENTRY_DIR}",
        ABALONE_DATASET_VERSION=version,
        ABALONE_INGEST_ID=INGEST_ID,
        ABALONE_DATA_QUALITY="passed",
        ABALONE_REPORT_PATH=f"/reports/{INGEST_ID}/data_docs/index.html",
        **code_upload.env,
    )
    log_path = tmp_path / "train.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [str(container_venv / "bin/train")],
            env=env,
            cwd=base,
            stdin=subprocess.DEVNULL,  # never the test worker's stdin (xdist talks over it)
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    full_log = log_path.read_text(errors="replace")
    log = full_log[-5000:]
    assert proc.returncode == 0, log
    assert not (base / "output/failure").exists(), log
    assert "Installing dependencies from requirements.txt" in full_log  # the code package's
    assert "Reporting training SUCCESS" in log

    result = json.loads((base / "output/data/result.json").read_text())
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    challenger = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    assert str(challenger.version) == result["model_version"]
    assert challenger.tags["dataset_version"] == version
    run = client.get_run(result["run_id"])
    assert run.data.tags["ingest_id"] == INGEST_ID
    assert float(run.data.params["svr_C"]) == 3.0

    meta = json.loads((base / "model/metadata.json").read_text())
    assert meta["model_version"] == result["model_version"]
    served = model_fn(base / "model")  # what the endpoint loads from model.tar.gz
    assert served.model_version == result["model_version"]
    rows = make_abalone(20, seed=9)[list(FEATURES)]
    registered = Registry(mlflow_server).load_model(result["model_version"])
    np.testing.assert_allclose(served.pipeline.predict(rows), registered.predict(rows))

    check = stack.pip_check(container_venv)
    assert check.returncode == 0, check.stdout + check.stderr
