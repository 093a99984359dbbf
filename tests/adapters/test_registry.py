"""Registry operations (aliases, approval, promotion, rollback) against a real ``mlflow server`` and
the embedded SQLite store; the gate end to end through the CLI (dev reject, prd approval flow) and
``abalone ui`` serving the same store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from typer.testing import CliRunner

from jobs.adapters.settings import MODEL_NAME, load_settings
from jobs.adapters.tracking import Registry
from jobs.core.data import canonical_csv, dataset_version, split
from jobs.core.errors import UsageError
from jobs.core.schema import FEATURES
from jobs.core.synthetic import make_abalone
from tests.conftest import free_port

# One SVR on raw measurements: a second to fit, and sensible on the golden rows of the system test.
CHEAP = {"estimators": "svr", "numeric_transform": "none"}


def write_dataset(lake, n: int = 700, seed: int = 5) -> str:
    """A curated dataset version in a local lake, as the ingest writes it."""
    frame = make_abalone(n, seed=seed)
    version = dataset_version(frame)
    root = lake / "curated" / version
    root.mkdir(parents=True, exist_ok=True)
    parts = split(frame, seed=0)
    for name, part in parts.items():
        (root / f"{name}.csv").write_bytes(canonical_csv(part))
    manifest = {
        "dataset_version": version,
        "ingest_id": "20261126T120000000000Z-a1b2c3",
        "rows": {k: len(v) for k, v in parts.items()},
        "data_quality": "passed",
        "report_html": "/reports/x/data_docs/index.html",
        "summary_json": None,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    (lake / "curated" / "LATEST.json").write_text(json.dumps({"dataset_version": version}))
    return version


def train_version(settings, version: str, workdir, params=None, cheap: bool = True) -> str:
    from jobs.training.contract import Channels
    from jobs.training.fit import train

    result = train(
        Channels.single(settings.home / "lake" / "curated" / version),
        model_dir=workdir / "model",
        output_dir=workdir / "output",
        params={**(CHEAP if cheap else {}), **(params or {})},
        settings=settings,
    )
    return result.model_version


@pytest.fixture(scope="module", params=["sqlite", "http"])
def source(request, tmp_path_factory):
    """A store holding one trained, registered model; yields (tracking URI, logged-model source)."""
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    environ = {"ABALONE_HOME": str(home)}
    if request.param == "http":
        environ["MLFLOW_TRACKING_URI"] = request.getfixturevalue("mlflow_server")
    settings = load_settings("dev", environ=environ)
    version = write_dataset(home / "lake")
    v = train_version(settings, version, home / "job")
    mv = Registry(settings.tracking_uri).version(v)
    return settings.tracking_uri, mv.source, mv.run_id, settings, version


@pytest.fixture
def registry(source):
    """A registered model of its own per test (unique name), with three versions of the same model."""
    uri, model_source, run_id = source[:3]
    reg = Registry(uri, name=f"test-{uuid.uuid4().hex[:8]}")
    for _ in range(3):
        reg.register(model_source, run_id=run_id)
    return reg


def test_register_waits_until_ready_and_versions_count_up(registry):
    assert registry.latest_version() == "3"
    assert str(registry.version("2").status) == "READY"


def test_unset_alias_is_none(registry, source):
    assert registry.alias("champion") is None
    assert (
        Registry(source[0], name="never-registered-" + uuid.uuid4().hex).alias("champion") is None
    )


def test_promote_moves_champion_and_keeps_previous(registry):
    first = registry.promote("1")
    assert (first.champion, first.previous) == ("1", None)
    second = registry.promote("2")
    assert (second.champion, second.previous) == ("2", "1")
    assert registry.tags("2")["champion.replaced"] == "1"
    again = registry.promote("2")  # already champion: nothing moves
    assert (again.champion, again.previous) == ("2", "1")


def test_rollback_walks_back_through_promotions(registry):
    for v in ("1", "2", "3"):
        registry.promote(v)
    assert registry.aliases().previous == "2"
    back = registry.rollback()
    assert (back.champion, back.previous) == ("2", "1")
    assert "rolled_back_at" in registry.tags("3")
    back = registry.rollback()
    assert (back.champion, back.previous) == ("1", None)
    with pytest.raises(UsageError, match="no @previous version"):
        registry.rollback()
    assert registry.alias("champion") == "1"  # a failed rollback moves nothing


def test_approve_records_who(registry):
    registry.approve("2", by="  ann ")
    tags = registry.tags("2")
    assert tags["approval"] == "approved" and tags["approved_by"] == "ann" and tags["approved_at"]
    with pytest.raises(UsageError, match="--by"):
        registry.approve("2", by=" ")
    with pytest.raises(UsageError, match="no version 99"):
        registry.approve("99", by="ann")


def test_evaluate_gate_tags_and_promotes(registry, source):
    """The gate over a real store: system test of the run's model_dir artifact, champion re-scored
    on the same rows, decision tags on the version, aliases moved on pass."""
    from jobs.adapters.lake import Lake
    from jobs.promotion.service import evaluate_gate, system_test

    settings, dataset = source[3], source[4]
    test_frame = Lake.open(settings.lake).read_split(dataset, "test")
    rmse = float(registry.client.get_run(source[2]).data.metrics["test_rmse"])
    st = system_test(registry, "1", test_frame, expected_rmse=rmse, tolerance=0.05)
    assert st.passed, st.reasons
    first = evaluate_gate(registry, "1", settings, st, "passed", test_frame)
    assert first.decision == "promote" and registry.alias("champion") == "1"
    assert registry.tags("1")["gate.champion_version"] == "none"
    assert registry.tags("1")["systemtest.passed"] == "true"  # the system test's own figures

    second = evaluate_gate(registry, "2", settings, st, "passed", test_frame)
    assert second.decision == "promote"
    tags = registry.tags("2")
    assert tags["gate.champion_version"] == "1" and tags["gate.rmse_diff"] == "0.0000"
    assert (registry.alias("champion"), registry.alias("previous")) == ("2", "1")

    refused = evaluate_gate(registry, "3", settings, st, "failed", test_frame)
    assert refused.decision == "reject" and registry.tags("3")["gate.decision"] == "reject"
    assert "FAIL data_quality" in registry.tags("3")["gate.reasons"]
    assert registry.alias("champion") == "2"


def test_load_model_through_models_uri(registry):
    model = registry.load_model("1")
    assert len(model.predict(make_abalone(4, seed=3)[list(FEATURES)])) == 4


# ---- the gate end to end through the CLI (embedded store) ---------------------------------------


@pytest.fixture(scope="module")
def gated_home(tmp_path_factory):
    """A fresh ABALONE_HOME with a curated dataset; the CLI tests below build on each other."""
    home = tmp_path_factory.mktemp("gated-home")
    version = write_dataset(home / "lake")
    return home, version


@pytest.fixture
def cli_env(gated_home, monkeypatch):
    home, version = gated_home
    monkeypatch.setenv("ABALONE_HOME", str(home))
    for var in ("ABALONE_LAKE", "ABALONE_REPORTS", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    return home, version


def cli(*args: str):
    from jobs.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_dev_gate_promotes_first_then_rejects_a_worse_candidate(cli_env, tmp_path):
    _, version = cli_env
    dev = load_settings("dev")
    res = cli("train", "--json")  # latest dataset, default hyperparameters, script-mode subprocess
    assert res.exit_code == 0, res.output
    trained = json.loads(res.stdout)
    v1 = trained["model_version"]
    assert trained["dataset_version"] == version and trained["metrics"]["test_rmse"] > 0
    res = cli("promote", "--json")  # default: @challenger
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["model_version"] == v1 and payload["champion_version"] == v1
    assert payload["gate"]["decision"] == "promote"

    worse = train_version(dev, version, tmp_path / "b", {"svr_C": 0.01, "svr_epsilon": 2.0})
    res = cli("promote", "--version", worse)
    assert res.exit_code == 1
    assert "reject" in res.stderr and f"vs champion v{v1}" in res.stderr
    reg = Registry(dev.tracking_uri)
    tags = reg.tags(worse)
    assert tags["gate.decision"] == "reject"
    assert tags["gate.champion_version"] == v1
    assert float(tags["gate.rmse_diff"]) > 0.05
    assert tags["gate.rule.champion"] == "failed"
    assert tags["gate.rmse_diff_ci"].startswith("[")
    assert "FAIL champion" in tags["gate.reasons"]
    assert reg.alias("champion") == v1 and reg.alias("challenger") == worse


@pytest.mark.slow
def test_prd_waits_for_approval_then_promotes_and_rolls_back(cli_env, tmp_path):
    _, version = cli_env
    prd = load_settings("prd")
    reg = Registry(prd.tracking_uri)
    old = reg.alias("champion")
    assert old is not None, "runs after the dev test in this module"
    # default hyperparameters, like the champion `abalone train` made: same rows, same model
    cand = train_version(prd, version, tmp_path / "c", cheap=False)

    res = cli("promote", "--version", cand, "--env", "prd", "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["gate"]["decision"] == "awaiting_approval", res.stdout
    assert reg.tags(cand)["gate.decision"] == "awaiting_approval"
    assert reg.alias("champion") == old

    assert cli("approve", cand, "--by", "ann", "--env", "prd").exit_code == 0
    res = cli("promote", "--version", cand, "--env", "prd", "--json")
    assert res.exit_code == 0, res.output
    gate = json.loads(res.stdout)["gate"]
    assert gate["decision"] == "promote"
    assert any("approved by ann" in r for r in gate["reasons"])
    assert reg.tags(cand)["gate.champion_version"] == old  # compared with the old champion
    assert (reg.alias("champion"), reg.alias("previous")) == (cand, old)

    res = cli("rollback", "--env", "prd", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["champion_version"] == old
    assert reg.alias("champion") == old


def test_cli_errors_are_one_line_exit_2(cli_env):
    assert cli("promote", "--version", "999").exit_code == 2
    res = cli("approve", "999", "--by", "x")
    assert res.exit_code == 2 and "no version 999" in res.stderr


@pytest.mark.slow
def test_ui_serves_the_store_with_gate_tags(cli_env):
    del cli_env
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", "ui", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ),
    )
    try:
        line = proc.stdout.readline()  # printed once the server answers /health
        url = f"http://127.0.0.1:{port}"
        assert line.strip() == f"MLflow UI: {url}", line
        assert httpx.get(url, timeout=10).status_code == 200
        api = f"{url}/api/2.0/mlflow"
        model = httpx.get(f"{api}/registered-models/get", params={"name": MODEL_NAME}).json()
        aliases = {a["alias"]: a["version"] for a in model["registered_model"]["aliases"]}
        assert {"champion", "challenger"} <= set(aliases)
        mv = httpx.get(
            f"{api}/model-versions/get", params={"name": MODEL_NAME, "version": "2"}
        ).json()["model_version"]
        tags = {t["key"]: t["value"] for t in mv["tags"]}
        assert tags["gate.decision"] == "reject" and "gate.reasons" in tags
        runs = httpx.post(
            f"{api}/runs/search", json={"experiment_ids": [mv_experiment(api, mv["run_id"])]}
        ).json()["runs"]
        assert mv["run_id"] in {r["info"]["run_id"] for r in runs}
        arts = httpx.get(
            f"{api}/artifacts/list", params={"run_id": mv["run_id"], "path": "plots"}
        ).json()
        assert any(f["path"].endswith("residuals_test.png") for f in arts.get("files", []))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0


def mv_experiment(api: str, run_id: str) -> str:
    return httpx.get(f"{api}/runs/get", params={"run_id": run_id}).json()["run"]["info"][
        "experiment_id"
    ]


def test_ui_refuses_a_busy_port(cli_env):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        start = time.monotonic()
        res = cli("ui", "--port", str(sock.getsockname()[1]))
    assert res.exit_code == 2 and "in use" in res.stderr
    assert time.monotonic() - start < 10
