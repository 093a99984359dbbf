"""The total deadline of a URL download, against a real loopback server that trickles its body."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobs.adapters.fetch import fetch
from jobs.adapters.settings import FetchLimits
from jobs.core.errors import SourceError

#: how long the trickling server keeps a connection at most (then it closes it, truncated)
TRICKLE_FOR_S = 20.0


class _Trickle(BaseHTTPRequestHandler):
    """Announces 10,000 bytes, then sends one byte every 0.2 s (``/slow``) or nothing (``/stall``)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", "10000")
        self.end_headers()
        self.wfile.flush()
        stop = time.monotonic() + TRICKLE_FOR_S
        try:
            while time.monotonic() < stop:
                if self.path.startswith("/slow"):
                    self.wfile.write(b"M")
                    self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            return  # the client gave up

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(scope="module")
def trickle() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["/slow.csv", "/stall.csv"])
def test_fetch_stops_at_the_deadline_and_caches_nothing(trickle, tmp_path, path):
    limits = FetchLimits(deadline_s=1.5)
    with pytest.raises(SourceError, match=r"within the 1.5s deadline \(ABALONE_FETCH_DEADLINE_S\)"):
        fetch(trickle + path, limits=limits, cache_dir=tmp_path / "cache")
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_ingest_cli_ends_at_the_deadline_with_one_line(trickle, tmp_path):
    """A server trickling a byte every 0.2 s would hold `abalone ingest` for TRICKLE_FOR_S seconds;
    with ABALONE_FETCH_DEADLINE_S=2 it ends at the deadline: exit 2, one line, nothing landed."""
    home = tmp_path / "home"
    env = dict(os.environ, ABALONE_HOME=str(home), ABALONE_FETCH_DEADLINE_S="2")
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobs", "ingest", "--source", f"{trickle}/slow.csv?token=SEKRIT"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TRICKLE_FOR_S + 30,
        check=False,
    )
    took = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "within the 2s deadline" in lines[0], done.stderr
    assert "SEKRIT" not in done.stderr and "token=***" in lines[0]
    assert took < TRICKLE_FOR_S, f"ingest took {took:.1f}s: the deadline did not end it"
    assert not any(p.is_file() for p in (home / "cache").rglob("*"))
    assert not (home / "lake" / "raw").exists() or not any((home / "lake" / "raw").iterdir())


def test_deadline_setting_is_validated(tmp_path):
    env = dict(os.environ, ABALONE_HOME=str(tmp_path / "home"), ABALONE_FETCH_DEADLINE_S="nan")
    done = subprocess.run(
        [sys.executable, "-m", "jobs", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: bad setting ABALONE_FETCH_DEADLINE_S: Input should be a finite number"
    ]
