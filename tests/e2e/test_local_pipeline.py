"""`abalone run` end to end on one machine: the promotion lifecycle of DESIGN §6.

Two backends: a real `mlflow server` subprocess on a loopback port (HTTP path, shared by the test
session, so assertions are relative to what the registry held before) and the embedded SQLite
default under a fresh ABALONE_HOME. The data is the real UCI file (ABALONE_DATA or the shipped
copy). Training runs as a real `python -m jobs.train` subprocess each time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from jobs.cli import app
from tests.conftest import real_data_file

runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch() -> Path:
    return real_data_file()


def cli(*args: str) -> tuple[int, dict | None, str]:
    result = runner.invoke(app, list(args))
    payload = None
    if "--json" in args and result.stdout.strip():
        payload = json.loads(result.stdout)
    return result.exit_code, payload, result.stderr


def aliases(uri: str) -> dict[str, str]:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = client.get_registered_model("abalone-age")
    return {alias: str(version) for alias, version in model.aliases.items()}


def tags(uri: str, version: str) -> dict[str, str]:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client.get_model_version("abalone-age", version).tags


def lifecycle(batch: Path, uri: str, *, fresh_home: Path | None = None) -> None:
    """The whole lifecycle on one store; with ``fresh_home`` the store starts empty, so the first
    candidate must become champion and land in that home's SQLite store and artifact root."""
    # 1. a run on a store (maybe already holding a champion) ends with a champion and a decision
    code, first, err = cli("run", "--source", str(batch), "--json")
    assert code in (0, 1), err
    if fresh_home is not None:
        assert code == 0, err  # fresh store: the first candidate becomes champion
        assert first["champion_version"] == first["model_version"] == "1"
        assert (fresh_home / "mlflow.db").is_file()
        assert any((fresh_home / "mlartifacts").rglob("MLmodel"))
    assert first["ingest"]["status"] == "accepted"
    v1 = first["model_version"]
    assert first["metrics"]["test_rmse"] > 0
    assert tags(uri, v1)["gate.decision"] == first["gate"]["decision"]
    assert aliases(uri)["champion"]
    if code == 0:
        assert aliases(uri)["champion"] == v1

    # 2. again on the same data: a new version with a recorded decision; @champion never unset
    code, second, err = cli("run", "--source", str(batch), "--json")
    v2 = second["model_version"]
    assert v2 != v1
    assert second["ingest"]["dataset_version"] == first["ingest"]["dataset_version"]
    assert tags(uri, v2)["gate.decision"] in ("promote", "reject")
    assert tags(uri, v2)["gate.reasons"]
    assert aliases(uri)["champion"] in (v1, v2)

    # 3. prd needs a person: awaiting approval (exit 1), decision tagged, nothing moved
    champion_before = aliases(uri)["champion"]
    code, third, err = cli("run", "--source", str(batch), "--env", "prd", "--json")
    v3 = third["model_version"]
    assert code == 1, err
    assert third["gate"]["decision"] == "awaiting_approval"
    assert tags(uri, v3)["gate.decision"] == "awaiting_approval"
    assert aliases(uri)["champion"] == champion_before

    # 4. approve + promote: v3 becomes champion, the old one @previous
    code, _, err = cli("approve", v3, "--by", "marine.scientist", "--env", "prd")
    assert code == 0, err
    assert tags(uri, v3)["approved_by"] == "marine.scientist"
    code, promoted, err = cli("promote", "--version", v3, "--env", "prd", "--json")
    assert code == 0, err
    assert promoted["gate"]["decision"] == "promote"
    assert aliases(uri)["champion"] == v3
    assert aliases(uri)["previous"] == champion_before

    # 5. rollback restores the previous champion
    code, _, err = cli("rollback", "--env", "prd", "--json")
    assert code == 0, err
    assert aliases(uri)["champion"] == champion_before


def test_lifecycle_against_a_real_mlflow_server(batch, abalone_home, mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    lifecycle(batch, mlflow_server)


def test_lifecycle_on_the_embedded_sqlite_default(batch, abalone_home):
    lifecycle(batch, f"sqlite:///{abalone_home / 'mlflow.db'}", fresh_home=abalone_home)


def test_rejected_batch_trains_nothing(abalone_home, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("X,1,2,3\n")
    code, payload, err = cli("run", "--source", str(bad), "--json")
    assert code == 1
    assert "rejected, nothing trained" in err
    assert payload["ingest"]["status"] == "rejected" and payload["model_version"] is None
    assert not (abalone_home / "jobs").exists()


def test_unreachable_mlflow_fails_before_anything_runs(abalone_home, monkeypatch, batch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    code, _, err = cli("run", "--source", str(batch))
    assert code == 2
    assert "unreachable" in err and "127.0.0.1:9" in err
    assert "Traceback" not in err
    assert not (abalone_home / "lake").exists()
