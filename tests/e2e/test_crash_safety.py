"""Issue 12 on the local path, with real `abalone run` processes on the real UCI file:

- concurrent runs on one ABALONE_HOME (fresh, then holding a champion) all succeed and leave one
  consistent champion lineage, each candidate gated against the champion it replaced;
- `kill -9` at several points of a run (training, system test, between the alias writes) leaves no
  orphan training job and no inconsistent final registry; the next run marks the dead job's MLflow
  run FAILED, finishes the interrupted promotion and succeeds.

The crash points inside a run are reached with the test-only ``ABALONE_TEST_CRASH_AT`` (the process
SIGKILLs itself there); the kill during training is a real ``kill -9`` of the parent from here.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import real_data_file
from tests.lineage import (
    INTENT,
    abalone,
    assert_lineage,
    experiment_runs,
    finish,
    registry_state,
    training_jobs,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def batch() -> str:
    return str(real_data_file())


def store(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


def run(home: Path, batch: str, **env: str) -> tuple[int, dict | None, str]:
    code, out, err = finish(abalone("run", "--source", batch, "--json", home=home, **env))
    return code, (json.loads(out) if code in (0, 1) and out.strip() else None), err


def test_concurrent_runs_leave_one_champion_lineage(tmp_path, batch):
    home = tmp_path / "home"
    # three at once on a fresh home: the store is created once, every run succeeds
    procs = [abalone("run", "--source", batch, "--json", home=home) for _ in range(3)]
    results = [finish(p) for p in procs]
    for code, _, err in results:
        assert code == 0, err[-3000:]
        assert "alembic" not in err.lower(), err[-3000:]
    assert len(assert_lineage(store(home))) == 3

    # two at once on a home that has a champion: both are gated against the champion they replace
    procs = [abalone("run", "--source", batch, "--json", home=home) for _ in range(2)]
    results = [finish(p) for p in procs]
    for code, _, err in results:
        assert code == 0, err[-3000:]
    chain = assert_lineage(store(home))
    assert chain == ["5", "4", "3", "2", "1"] or sorted(chain, key=int) == ["1", "2", "3", "4", "5"]
    assert len(chain) == 5
    payloads = [json.loads(out) for _, out, _ in results]
    assert {p["model_version"] for p in payloads} == {"4", "5"}


def _children(pid: int, home: Path) -> list[int]:
    return [p for p in training_jobs(home) if _ppid(p) == pid]


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _gone(pids: list[int], home: Path, timeout: float = 15.0) -> None:
    wait_for(
        f"training job(s) {pids} to end",
        lambda: not [p for p in pids if p in training_jobs(home)],
        timeout,
    )


def test_kill_minus_9_at_each_point_of_a_run(tmp_path, batch):
    home = tmp_path / "home"
    uri = store(home)

    # 1. kill -9 of `abalone run` during training: the job dies with it, registers nothing
    proc = abalone("run", "--source", batch, "--json", home=home)
    try:
        child = wait_for("the training job", lambda: _children(proc.pid, home))
        stale = wait_for("its MLflow run", lambda: experiment_runs(uri, "RUNNING"))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    _gone(child, home)
    time.sleep(2)  # what an orphan would have done by now: register a version, move @challenger
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.search_model_versions("name='abalone-age'") == []
    assert [r.info.status for r in experiment_runs(uri, "RUNNING")] == ["RUNNING"]

    # 2. the next run marks the dead job's run FAILED and succeeds
    code, first, err = run(home, batch)
    assert code == 0, err[-3000:]
    dead = client.get_run(stale[0].info.run_id)
    assert dead.info.status == "FAILED"
    assert "died" in dead.data.tags["abalone.failed_reason"]
    assert first["champion_version"] == first["model_version"] == "1"
    assert_lineage(uri)

    # 3. kill -9 during the system test: nothing moves, no orphan
    code, _, err = run(home, batch, ABALONE_TEST_CRASH_AT="systemtest.serving")
    assert code == -signal.SIGKILL, err[-3000:]
    assert training_jobs(home) == []
    aliases, tags, _ = registry_state(uri)
    assert aliases == {"champion": "1", "challenger": "2"}
    assert tags["2"].get("gate.decision") != "promote"
    assert_lineage(uri)

    # 4. kill -9 between the alias writes: @previous moved, @champion not: visibly in flight
    code, _, err = run(home, batch, ABALONE_TEST_CRASH_AT="promote.previous")
    assert code == -signal.SIGKILL, err[-3000:]
    aliases, tags, model_tags = registry_state(uri)
    assert (aliases["champion"], aliases["previous"]) == ("1", "1")
    assert json.loads(model_tags[INTENT])["version"] == "3"

    # 5. the re-run finishes that promotion under the lock, then gates its own candidate against
    #    the champion it would replace (v3), and succeeds
    code, last, err = run(home, batch)
    assert code == 0, err[-3000:]
    assert "finished the interrupted promotion of v3" in err
    assert last["model_version"] == "4"
    assert assert_lineage(uri) == ["4", "3", "1"]
    assert training_jobs(home) == []
