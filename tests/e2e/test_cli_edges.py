"""The CLI at its edges, as a new process each time: `abalone ui` stops the `mlflow server` it
started (its whole process group) on SIGTERM, SIGINT and SIGHUP; a tracking store that cannot work,
and sizes that are not sizes, end in one line on stderr with exit 2 within seconds, not tracebacks."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tests.conftest import free_port, wait_http


def _env(home, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(ABALONE_HOME=str(home), **extra)
    return env


def _run(*args: str, env: dict[str, str], timeout: float = 45) -> subprocess.CompletedProcess:
    """`abalone ARGS`; the timeout is the test's bound: far below MLflow's ~100 s of retries."""
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
def test_ui_stops_the_mlflow_server_it_started(tmp_path, sig):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", "ui", "--port", str(port)],
        env=_env(tmp_path / "home"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    children: list[psutil.Process] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=120, proc=proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "abalone ui started no mlflow server"
        proc.send_signal(sig)
        assert proc.wait(timeout=40) in (0, 130)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"still running after {sig.name}: {[p.cmdline() for p in alive]}"
    finally:
        for child in [proc, *children]:  # whatever the outcome, leave nothing running
            try:
                if isinstance(child, psutil.Process):
                    child.kill()
                elif child.poll() is None:
                    child.kill()
                    child.wait(timeout=10)
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        proc.stderr.close()


def _one_line(done: subprocess.CompletedProcess, *expected: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_unopenable_sqlite_store_is_one_line_within_seconds(tmp_path):
    done = _run("run", env=_env(tmp_path / "home", MLFLOW_TRACKING_URI="sqlite:////proc/x.db"))
    _one_line(done, "sqlite:////proc/x.db", "cannot be opened")
    assert not (tmp_path / "home" / "lake").exists()  # nothing ran before the check


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) for m in ("psycopg", "psycopg2")),
    reason="a PostgreSQL driver is installed here",
)
def test_database_store_without_its_driver_is_one_line(tmp_path):
    uri = "postgresql://mlflow:DbSecret77@127.0.0.1:1/mlflow"
    done = _run("run", env=_env(tmp_path / "home", MLFLOW_TRACKING_URI=uri))
    line = _one_line(
        done, "postgresql://***@127.0.0.1:1/mlflow", "module `psycopg", "not installed"
    )
    assert "DbSecret77" not in done.stderr + done.stdout + line


def test_unreachable_database_store_is_one_line(tmp_path):
    """The driver is there (SQLite's): a store that refuses to open ends the run in seconds."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "mlflow.db").mkdir()  # a directory where the database file should be
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    started = time.monotonic()
    done = _run("train", env=_env(tmp_path / "home", MLFLOW_TRACKING_URI=uri))
    _one_line(done, "cannot be opened")
    assert time.monotonic() - started < 40


@pytest.fixture
def silent_port():
    """A loopback port that accepts connections and never says a word (a firewall that drops,
    a proxy that hangs): a MySQL client waits there for the server's greeting."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("where", ["closed port", "silent server"])
def test_unreachable_database_server_is_one_line_within_seconds(tmp_path, where, silent_port):
    """A database store with its driver installed (PyMySQL) that cannot be reached: one line and
    exit 2 in seconds - MLflow alone retries a closed port with back-off for about 100 s, and
    waits on a silent server without end."""
    port = silent_port if where == "silent server" else free_port()
    uri = f"mysql+pymysql://mlflow:DbSecret77@127.0.0.1:{port}/mlflow"
    started = time.monotonic()
    done = _run("run", env=_env(tmp_path / "home", MLFLOW_TRACKING_URI=uri))
    line = _one_line(done, f"mysql+pymysql://***@127.0.0.1:{port}/mlflow", "unreachable")
    assert "check the host, port, database and credentials" in line
    assert time.monotonic() - started < 30
    assert "DbSecret77" not in done.stderr + done.stdout
    assert not (tmp_path / "home" / "lake").exists()  # nothing ran before the check


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e-9", "0", "-3"])
def test_max_mb_that_is_not_a_size_is_one_line(tmp_path, value):
    done = _run("ingest", "--max-mb", value, env=_env(tmp_path / "home"))
    _one_line(done, f"--max-mb {float(value):g} is not a size")
    assert not (tmp_path / "home" / "lake").exists()


def test_ui_on_an_unopenable_store_is_one_line(tmp_path):
    env = _env(tmp_path / "home", MLFLOW_TRACKING_URI="sqlite:////proc/x.db")
    done = _run("ui", "--port", str(free_port()), env=env)
    _one_line(done, "sqlite:////proc/x.db", "cannot be opened")
