"""The store lock across real processes: a waiter says what it waits for and gets the lock when
the holder releases it or is killed with SIGKILL; the wait is bounded with a clear error; a fresh
SQLite store opened by several processes at once is created once (no alembic race)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from jobs.adapters.locking import lock_path, store_lock
from jobs.core.errors import ServiceError

HOLD = (
    "import sys, time\n"
    "from jobs.adapters.locking import store_lock\n"
    "store_lock(sys.argv[1]).__enter__()\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def hold(uri: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, uri, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_file_sits_beside_the_sqlite_store(tmp_path, uri):
    assert lock_path(uri) == tmp_path / "store" / "mlflow.db.lock"
    server = lock_path("http://user:secret@127.0.0.1:5000", tmp_path / "home")
    assert server.parent == tmp_path / "home" / "locks"
    assert "secret" not in store_lock("http://user:secret@127.0.0.1:5000", tmp_path).store


def test_a_waiter_says_so_and_gets_the_lock_when_the_holder_ends(uri, caplog):
    holder = hold(uri, 1.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="jobs.adapters.locking"), store_lock(uri):
        waited = time.monotonic() - started
        assert holder.poll() is not None  # we only got in once the holder had ended
    assert waited > 0.3
    message = caplog.records[0].getMessage()
    assert f"waiting for another promotion on {uri}" in message
    assert f"pid {holder.pid}" in message


def test_the_wait_is_bounded_with_a_clear_error(uri, monkeypatch):
    holder = hold(uri, 60)
    monkeypatch.setenv("ABALONE_LOCK_WAIT_S", "0.5")
    try:
        started = time.monotonic()
        with pytest.raises(ServiceError) as err, store_lock(uri):
            pass
        assert time.monotonic() - started < 10
        assert "gave up after 0.5s waiting for another promotion" in str(err.value)
        assert f"pid {holder.pid}" in str(err.value)
        assert "ABALONE_LOCK_WAIT_S" in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_killed_with_sigkill_leaves_the_store_unlocked(uri, monkeypatch):
    holder = hold(uri, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    monkeypatch.setenv("ABALONE_LOCK_WAIT_S", "2")
    with store_lock(uri):
        pass


def test_bad_wait_setting_is_a_usage_error(uri, monkeypatch):
    from jobs.core.errors import UsageError

    for bad in ("nan", "-1", "inf", "soon"):
        monkeypatch.setenv("ABALONE_LOCK_WAIT_S", bad)
        with pytest.raises(UsageError, match="ABALONE_LOCK_WAIT_S"), store_lock(uri):
            pass


def test_reentrant_in_one_thread(uri, monkeypatch):
    monkeypatch.setenv("ABALONE_LOCK_WAIT_S", "1")
    with store_lock(uri), store_lock(uri, purpose="store creation"):
        pass
    with store_lock(uri):  # released completely
        pass


OPEN = (
    "import sys, time\n"
    "from jobs.adapters.tracking import check_tracking\n"
    "start = float(sys.argv[2])\n"
    "time.sleep(max(0.0, start - time.time()))\n"
    "check_tracking(sys.argv[1])\n"
)


def test_a_fresh_store_opened_by_three_processes_at_once(uri):
    """MLflow creates and migrates a new SQLite schema on first open; three processes doing it at
    the same moment all succeed (on main one died with an alembic error)."""
    start = time.time() + 4  # after the imports of all three
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, uri, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0, err[-2000:]
