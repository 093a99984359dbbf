"""Stale RUNNING runs: only runs whose owner process on this host is gone are marked FAILED; a live
owner's run (a concurrent training job) and runs without owner tags are left alone, and a reused
pid (same number, another process) is not mistaken for the owner."""

from __future__ import annotations

import socket
import subprocess
import sys

from mlflow import MlflowClient

from jobs.adapters.tracking_runs import OWNER_HOST, OWNER_PID, OWNER_START, fail_stale_runs
from jobs.adapters.tracking_runs import _start_time as start_time


def test_only_runs_of_dead_owners_are_failed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("abalone-dev", artifact_location=(tmp_path / "a").as_uri())
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    try:
        owners = {
            "live": {OWNER_PID: str(live.pid), OWNER_HOST: host, OWNER_START: start_time(live.pid)},
            "dead": {OWNER_PID: str(dead.pid), OWNER_HOST: host, OWNER_START: "1"},
            "reused": {OWNER_PID: str(live.pid), OWNER_HOST: host, OWNER_START: "1"},
            "elsewhere": {OWNER_PID: str(dead.pid), OWNER_HOST: host + "-other"},
            "untagged": {},
        }
        runs = {
            name: client.create_run(exp, tags=tags).info.run_id for name, tags in owners.items()
        }
        failed = fail_stale_runs(client, "abalone-dev")
        status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    finally:
        live.kill()
        live.wait()
    assert sorted(failed) == sorted([runs["dead"], runs["reused"]])
    assert status == {
        "live": "RUNNING",
        "dead": "FAILED",
        "reused": "FAILED",
        "elsewhere": "RUNNING",
        "untagged": "RUNNING",
    }
    reason = client.get_run(runs["dead"]).data.tags["abalone.failed_reason"]
    assert f"pid {dead.pid}" in reason and "died" in reason
    assert fail_stale_runs(client, "abalone-dev") == [runs["live"]]  # its owner is gone now
    assert fail_stale_runs(client, "abalone-dev") == []
    assert fail_stale_runs(client, "abalone-prd") == []  # no such experiment
