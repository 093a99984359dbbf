"""No secret stored, logged or shown; consistent file modes whatever the umask.

`abalone run` as a user runs it (a new process) with a source URL carrying credentials (user
information and a presigned query string, checked by a loopback server that refuses requests without
them) and, on the HTTP path, a tracking URI carrying a password to a real `mlflow server` on
loopback. Afterwards every byte under ABALONE_HOME, the MLflow server's store and artifacts, stdout
and stderr is searched for each secret.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import real_data_file, running_mlflow_server

pytestmark = pytest.mark.slow

USER, PASSWORD = "ingest-user", "PwSecret4711"
QUERY = {
    "X-Amz-Credential": "AKIACREDSECRET0815",
    "X-Amz-Security-Token": "TokSecretFQoGZXIv",
    "X-Amz-Signature": "SigSecret0123abcdef",
    "token": "PlainTokSecret42",
}
TRACKING_PASSWORD = "TrackSecret9001"
SECRETS = [PASSWORD, *QUERY.values(), TRACKING_PASSWORD]


class _Guarded(BaseHTTPRequestHandler):
    """Serves the UCI file only to a request with the user's password and the whole query."""

    data = b""

    def do_GET(self) -> None:
        auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        query = "&".join(f"{k}={v}" for k, v in QUERY.items())
        if self.headers.get("Authorization") != auth or self.path != f"/data/abalone.csv?{query}":
            self.send_response(403)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        self.wfile.write(self.data)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(scope="module")
def source_url() -> Iterator[str]:
    _Guarded.data = real_data_file().read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Guarded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    query = "&".join(f"{k}={v}" for k, v in QUERY.items())
    port = server.server_address[1]
    yield f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/data/abalone.csv?{query}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A real `mlflow server` on loopback of this module's own, so its whole store can be searched;
    yields (tracking URI with a password in it, store root)."""
    root = tmp_path_factory.mktemp("mlflow-secrets")
    with running_mlflow_server(root) as uri:
        yield uri.replace("http://", f"http://mluser:{TRACKING_PASSWORD}@", 1), root


def _abalone(*args: str, env: dict[str, str], umask: int | None = None):
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def _hits(roots: list[Path], *texts: bytes) -> list[str]:
    """Every (file or stream, secret) pair where a secret appears."""
    found = []
    for name, text in (("stdout", texts[0]), ("stderr", texts[1])):
        found += [f"{name}: {s}" for s in SECRETS if s.encode() in text]
    for root in roots:
        for path in root.rglob("*"):
            names = str(path.relative_to(root))
            found += [f"path {path}: {s}" for s in SECRETS if s in names]
            if path.is_file():
                data = path.read_bytes()
                found += [f"{path}: {s}" for s in SECRETS if s.encode() in data]
    return found


def test_no_secret_is_stored_logged_or_shown_http_tracking(source_url, tracking_server, tmp_path):
    uri, store = tracking_server
    home = tmp_path / "home"
    env = dict(os.environ, ABALONE_HOME=str(home), MLFLOW_TRACKING_URI=uri)
    done = _abalone("run", "--source", source_url, "--json", env=env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    # and a failing run's error line
    bad = _abalone("ingest", "--source", source_url.replace(PASSWORD, PASSWORD + "x"), env=env)
    assert bad.returncode == 2 and b"HTTP 403" in bad.stderr
    hits = _hits([home, store], done.stdout + bad.stdout, done.stderr + bad.stderr)
    assert hits == [], "\n".join(hits)
    summary = json.loads(done.stdout)
    assert summary["gate"]["decision"] == "promote"
    # the request used the real URL (the server refuses any other); what is kept names it redacted
    source = summary["ingest"]["source"]["source"]
    assert source.startswith("http://***@127.0.0.1:") and "X-Amz-Signature=***" in source
    assert summary["tracking_uri"].startswith("http://***@127.0.0.1:")
    assert list(home.rglob("train.log"))


def test_no_secret_and_nothing_world_accessible_with_umask_000(source_url, tmp_path):
    """On the embedded default (SQLite store, artifacts under ABALONE_HOME) run with umask 000:
    the product's files come out 0640/0600 and directories 0750/0700, whatever the umask."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["ABALONE_HOME"] = str(home)
    done = _abalone("run", "--source", source_url, env=env, umask=0)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    hits = _hits([home], done.stdout, done.stderr)
    assert hits == [], "\n".join(hits)
    loose = []
    paths = [home, *home.rglob("*")]
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not path.is_symlink() and mode & 0o027:
            loose.append(f"{oct(mode)} {path.relative_to(home)}")
    assert loose == [], "group-writable or world-accessible:\n" + "\n".join(loose[:40])
    assert (home / "mlflow.db").is_file() and any(home.glob("lake/raw/*/*"))
    assert len(paths) > 50
