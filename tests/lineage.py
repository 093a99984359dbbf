"""The registry invariants of issue 12, read straight from MLflow (not through the code under test),
and process helpers for the concurrency and crash tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

from jobs.adapters.locking import store_lock

NAME = "abalone-age"
INTENT = "promotion.intent"


def registry_state(uri: str) -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, str]]:
    """(aliases, {version: tags}, registered-model tags) of ``abalone-age``."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = client.get_registered_model(NAME)
    versions = {
        str(v.version): v for v in client.search_model_versions(f"name='{NAME}'", max_results=1000)
    }
    for v in versions.values():
        assert str(v.status) == "READY", f"v{v.version} is {v.status}"
    aliases = {alias: str(version) for alias, version in model.aliases.items()}
    return aliases, {k: dict(v.tags or {}) for k, v in versions.items()}, dict(model.tags or {})


def assert_lineage(uri: str) -> list[str]:
    """One consistent champion lineage; returns it, newest first.

    - no promotion or rollback in flight (no intent tag): the state is final;
    - ``@champion`` and ``@previous`` are on READY versions whose ``gate.decision`` is ``promote``;
    - ``@previous`` is what ``@champion`` replaced (``champion.replaced``);
    - walking ``champion.replaced`` from the champion, each version was gated against the champion
      it replaced (``gate.champion_version``);
    - every version tagged ``promote`` is in that chain or was rolled back (none silently displaced).
    """
    aliases, tags, model_tags = registry_state(uri)
    assert INTENT not in model_tags, f"a promotion is still in flight: {model_tags[INTENT]}"
    champion, previous = aliases.get("champion"), aliases.get("previous")
    for alias in ("champion", "previous"):
        if alias in aliases:
            v = aliases[alias]
            assert tags[v].get("gate.decision") == "promote", (alias, v, tags[v])
    if champion is None:
        assert previous is None
        assert not [v for v, t in tags.items() if t.get("gate.decision") == "promote"], tags
        return []
    assert previous == tags[champion].get("champion.replaced"), (aliases, tags[champion])
    chain, v = [], champion
    while v is not None:
        assert v not in chain, f"champion.replaced loops: {[*chain, v]}"
        chain.append(v)
        t = tags[v]
        replaced = t.get("champion.replaced")
        assert t.get("gate.decision") == "promote", (v, t)
        assert t.get("champion.promoted_at"), (v, t)
        assert t.get("gate.champion_version") == (replaced or "none"), (v, t)
        v = replaced
    for v, t in tags.items():
        if t.get("gate.decision") == "promote":
            assert v in chain or t.get("rolled_back_to"), f"v{v} promoted but displaced: {t}"
    return chain


def abalone(*args: str, home: Path, **env: str) -> subprocess.Popen:
    """``abalone ARGS`` as a new process on ``home`` (stdout/stderr piped)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    environ.update(ABALONE_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true", **env)
    for var in ("ABALONE_LAKE", "ABALONE_REPORTS", "ABALONE_TEST_CRASH_AT"):
        if var not in env:
            environ.pop(var, None)
    return subprocess.Popen(
        [sys.executable, "-c", "from jobs.cli import app; app(prog_name='abalone')", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"abalone did not finish within {timeout:.0f}s: {err[-2000:]}"
        ) from None
    return proc.returncode, out, err


def training_jobs(home: Path | None = None) -> list[int]:
    """Pids of live ``python -m jobs.train`` processes (of runs on ``home``, when given)."""
    found = []
    mark = f"ABALONE_HOME={home}".encode() if home is not None else None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            environ = (entry / "environ").read_bytes().split(b"\0") if mark else []
        except OSError:
            continue
        if b"jobs.train" in cmd and state != "Z" and (mark is None or mark in environ):
            found.append(int(entry.name))
    return found


def wait_for(what: str, check, timeout: float = 120.0, interval: float = 0.1):
    """Poll ``check`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def experiment_runs(uri: str, status: str | None = None) -> list:
    """The runs of experiment ``abalone-dev`` in the SQLite store at ``uri`` (only ``status`` if
    given); none while the store does not exist yet.

    A poll must not open a store that a job is creating: opening a new SQLite store creates and
    migrates its schema, so two openers at once break each other's migration (the job dies, the
    poll times out). Like every abalone process, the poll opens it under the store's lock."""
    if not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    with store_lock(uri, purpose="store creation"):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp = client.get_experiment_by_name("abalone-dev")
        if exp is None:
            return []
        where = f"attributes.status = '{status}'" if status else ""
        return client.search_runs([exp.experiment_id], filter_string=where)
