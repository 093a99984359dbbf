"""The local training job never outlives the process that launched it: SIGTERM or Ctrl-C (SIGINT)
to the launcher stops the job's process group (the job ends its MLflow run FAILED and registers
nothing), then the launcher dies of the same signal. (kill -9 of the launcher: the kernel kills the
job, PR_SET_PDEATHSIG; tests/e2e/test_crash_safety.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from jobs.core.data import canonical_csv, split
from jobs.core.synthetic import make_abalone
from tests.lineage import experiment_runs, training_jobs, wait_for

pytestmark = pytest.mark.slow

LAUNCH = (
    "import sys\n"
    "from pathlib import Path\n"
    "from jobs.adapters.settings import load_settings\n"
    "from jobs.training.contract import Channels\n"
    "from jobs.training.launcher import run_subprocess\n"
    "settings = load_settings('dev', environ={'ABALONE_HOME': sys.argv[1]})\n"
    "run_subprocess(settings, Channels.single(Path(sys.argv[2])), workdir=Path(sys.argv[3]))\n"
)


@pytest.fixture(scope="module")
def channel(tmp_path_factory) -> Path:
    """Enough rows that the full ensemble trains for seconds."""
    root = tmp_path_factory.mktemp("channel")
    for name, part in split(make_abalone(4000, seed=7), seed=0).items():
        (root / f"{name}.csv").write_bytes(canonical_csv(part))
    (root / "manifest.json").write_text(json.dumps({"data_quality": "passed"}))
    return root


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_launcher_stops_the_job(channel, tmp_path, signum):
    home = tmp_path / "home"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(home), str(channel), str(tmp_path / "work")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        try:
            job = wait_for("the training job", lambda: training_jobs(home))
            wait_for("its MLflow run", lambda: experiment_runs(uri, "RUNNING"))
        except AssertionError as err:  # say what the launcher printed, not only that we timed out
            launcher.kill()
            raise AssertionError(
                f"{err}; the launcher said: {launcher.communicate()[1][-2000:]}"
            ) from None
        os.kill(launcher.pid, signum)
        _, err = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == -signum, err[-2000:]
    assert not [p for p in job if p in training_jobs(home)]  # the job is gone with it
    assert [r.info.status for r in experiment_runs(uri)] == ["FAILED"]  # ended by the job itself
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.search_model_versions("name='abalone-age'") == []
