"""Crash-safe promotion on a real MLflow store (SQLite, and the HTTP server): a process killed with
SIGKILL at each named point of ``Registry.promote``/``rollback`` leaves a state that is visibly in
flight (the intent tag), never an inconsistent final one, and the next locked repair finishes or
undoes it so every registry invariant holds again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from mlflow import MlflowClient

from jobs.adapters.locking import store_lock
from jobs.adapters.tracking import Registry
from tests.lineage import INTENT, assert_lineage, registry_state

GATE = {"gate.decision": "promote", "gate.reasons": "all rules passed"}


def _store(tmp_path, uri: str | None = None) -> tuple[str, str]:
    """Versions 1-3 of abalone-age; v1 is champion (gated against none)."""
    uri = uri or f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    registry = Registry(uri, client=client)
    name = f"abalone-age-{tmp_path.name}"[:60] if uri.startswith("http") else "abalone-age"
    registry.name = name
    client.create_registered_model(name)
    if uri.startswith("http"):  # a server takes only sources inside a run's artifacts
        exp = client.create_experiment(name)
        run = client.create_run(exp)
        client.set_terminated(run.info.run_id)
        source, run_id = f"{run.info.artifact_uri}/model", run.info.run_id
    else:
        (tmp_path / "model").mkdir()
        source, run_id = (tmp_path / "model").as_uri(), None
    for _ in range(3):
        client.create_model_version(name, source=source, run_id=run_id)
    registry.promote("1", {**GATE, "gate.champion_version": "none"})
    return uri, name


def _crash(uri: str, name: str, point: str, code: str) -> None:
    script = textwrap.dedent(
        f"""
        from jobs.adapters.tracking import Registry
        r = Registry({uri!r}, name={name!r})
        {code}
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "ABALONE_TEST_CRASH_AT": point},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def _promote_code(version: str, champion: str) -> str:
    tags = {**GATE, "gate.champion_version": champion}
    return f"r.promote({version!r}, {tags!r})"


@pytest.mark.parametrize(
    ("point", "finished"),
    [
        ("promote.intent", False),  # before the commit point: undone
        ("promote.committed", True),  # tags written, no alias moved: finished
        ("promote.previous", True),  # @previous moved, @champion not yet: finished
        ("promote.champion", True),  # both moved, intent not cleared: finished
    ],
)
def test_killed_promotion_is_repaired(tmp_path, point, finished):
    uri, name = _store(tmp_path)
    _crash(uri, name, point, _promote_code("2", "1"))
    registry = Registry(uri, name=name)
    intent = registry.intent()
    assert intent is not None and intent["version"] == "2" and intent["replaces"] == "1"
    if point == "promote.previous":  # the half state of the issue: visibly in flight, not final
        assert (registry.alias("previous"), registry.alias("champion")) == ("1", "1")
    with store_lock(uri, tmp_path):
        done = registry.repair()
    assert done and ("finished" if finished else "undid") in done
    assert registry.intent() is None
    aliases, tags, _ = registry_state_named(uri, name)
    if finished:
        assert (aliases["champion"], aliases["previous"]) == ("2", "1")
        assert tags["2"]["champion.replaced"] == "1"
    else:
        assert aliases["champion"] == "1" and "previous" not in aliases
        assert tags["2"]["gate.decision"] == "interrupted"
        assert "champion.replaced" not in tags["2"]
        assert "abalone promote --version 2" in tags["2"]["gate.reasons"]
    # a later promotion works from the repaired state and keeps one lineage
    registry.promote("3", {**GATE, "gate.champion_version": aliases["champion"]})
    assert registry.aliases().previous == aliases["champion"]
    if name == "abalone-age":
        assert_lineage(uri)


def registry_state_named(uri: str, name: str):
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = client.get_registered_model(name)
    versions = client.search_model_versions(f"name='{name}'")
    return (
        {a: str(v) for a, v in model.aliases.items()},
        {str(v.version): dict(v.tags) for v in versions},
        dict(model.tags or {}),
    )


def test_killed_rollback_is_finished(tmp_path):
    uri, name = _store(tmp_path)
    registry = Registry(uri, name=name)
    registry.promote("2", {**GATE, "gate.champion_version": "1"})
    _crash(uri, name, "rollback.champion", "r.rollback()")
    assert registry.intent()["op"] == "rollback"
    with store_lock(uri, tmp_path):
        assert "rollback" in registry.repair()
    aliases, tags, model_tags = registry_state(uri)
    assert aliases == {"champion": "1"}  # v1 replaced nothing: no @previous
    assert tags["2"]["rolled_back_to"] == "1"
    assert INTENT not in model_tags
    assert_lineage(uri)


def test_repair_on_the_http_server(tmp_path, mlflow_server):
    """The same order and repair through MLflow's REST API (what the AWS stack uses)."""
    uri, name = _store(tmp_path, mlflow_server)
    _crash(uri, name, "promote.previous", _promote_code("2", "1"))
    registry = Registry(uri, name=name)
    assert registry.intent()["version"] == "2"
    with store_lock(uri, tmp_path):
        assert "finished" in registry.repair()
    aliases, _tags, model_tags = registry_state_named(uri, name)
    assert (aliases["champion"], aliases["previous"]) == ("2", "1")
    assert INTENT not in model_tags


def test_without_an_intent_repair_does_nothing(tmp_path):
    uri, name = _store(tmp_path)
    registry = Registry(uri, name=name)
    with store_lock(uri, tmp_path):
        assert registry.repair() is None
    assert registry.aliases().champion == "1"
    assert_lineage(uri)


def test_rollback_command_finishes_an_interrupted_promotion_first(tmp_path, monkeypatch):
    """`abalone rollback` under the lock: the half-done promotion of v2 is finished, then undone
    by the rollback itself, leaving v1 champion and a consistent lineage."""
    from typer.testing import CliRunner

    from jobs.cli import app

    uri, name = _store(tmp_path)
    _crash(uri, name, "promote.previous", _promote_code("2", "1"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("ABALONE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["rollback", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "rolled_back_from": "2",
        "champion_version": "1",
        "previous_version": None,
    }
    assert "finished the interrupted promotion of v2" in result.stderr
    assert registry_state(uri)[1]["2"]["rolled_back_to"] == "1"
    assert_lineage(uri)
