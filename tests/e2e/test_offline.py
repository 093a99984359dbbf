"""First contact with no network: ``abalone run`` with no ``--source`` uses the UCI file shipped in
the package and never opens a connection beyond loopback.

The run is a real ``python -m jobs run`` subprocess (and its ``python -m jobs.train`` child) under a
network guard loaded through ``sitecustomize``: any name lookup or connection to a non-loopback
address is refused before a packet leaves and recorded, and the test fails on any record. The
guard itself is checked on ``--source uci``, the one path that must try the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from jobs.adapters.fetch import PACKAGE_SOURCE, shipped_data_path

pytestmark = pytest.mark.slow

GUARD = textwrap.dedent(
    '''
    """Test network guard: refuse and record every non-loopback lookup or connection."""
    import ipaddress, os, socket

    _LOG = os.environ["NETGUARD_LOG"]
    _LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}

    def _loopback(host):
        if host is None or host in _LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def _refuse(what):
        with open(_LOG, "a") as fh:
            fh.write(f"{os.getpid()} {what}\\n")
        raise OSError(101, f"network disabled by the test guard: {what}")

    _getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if not _loopback(host):
            _refuse(f"getaddrinfo {host}")
        return _getaddrinfo(host, *args, **kwargs)

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            _refuse(f"connect {address[0]}")

    def connect(self, address):
        _check(self, address)
        return _connect(self, address)

    def connect_ex(self, address):
        _check(self, address)
        return _connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    '''
)


def guarded_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir(exist_ok=True)
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "network-attempts.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ABALONE_"))}
    env.update(
        ABALONE_HOME=str(tmp_path / "home"),
        NETGUARD_LOG=str(log),
        PYTHONPATH=os.pathsep.join(filter(None, [str(guard_dir), env.get("PYTHONPATH")])),
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        GX_ANALYTICS_ENABLED="false",
    )
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, log.read_text().splitlines()


def test_the_guard_catches_a_download(tmp_path):
    proc, attempts = guarded_cli(tmp_path, "ingest", "--source", "uci")
    assert proc.returncode == 2, proc.stderr
    assert "archive.ics.uci.edu" in proc.stderr and "Traceback" not in proc.stderr
    assert any("archive.ics.uci.edu" in line for line in attempts)


def test_abalone_run_without_source_needs_no_network(tmp_path):
    proc, attempts = guarded_cli(tmp_path, "run", "--json")
    assert attempts == [], f"network attempted: {attempts}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["gate"]["decision"] == "promote"
    assert summary["champion_version"] == summary["model_version"] == "1"

    lineage = summary["ingest"]["source"]
    shipped = shipped_data_path().read_bytes()
    assert lineage["source"] == PACKAGE_SOURCE
    assert lineage["sha256"] == hashlib.sha256(shipped).hexdigest()
    assert summary["ingest"]["rows_total"] == 4177

    home = tmp_path / "home"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    champion = MlflowClient(uri, uri).get_model_version_by_alias("abalone-age", "champion")
    assert str(champion.version) == "1"
    # the terminal shows the steps and the summary; library chatter goes to the log file
    assert "INFO mlflow" not in proc.stderr and "alembic" not in proc.stderr
    assert "Creating initial MLflow database tables" in (home / "logs" / "abalone.log").read_text()
