"""Storage (local + S3 on moto) and fetch (path, loopback HTTP, S3) behaviour."""

from __future__ import annotations

import hashlib
import http.server
import threading

import boto3
import pytest

from jobs.adapters.fetch import fetch
from jobs.adapters.settings import FetchLimits
from jobs.adapters.storage import LocalStore, open_store
from jobs.core.errors import SourceError, StorageError

BODY = b"M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path == "/abalone.data":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/truncated.csv":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) * 10))
            self.end_headers()
            self.wfile.write(BODY)
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/huge.csv":
            self.send_response(200)
            self.send_header("Content-Length", str(500 * 1024 * 1024))
            self.end_headers()
            self.wfile.write(BODY)
            self.close_connection = True
        elif self.path == "/slow.csv":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            threading.Event().wait(3)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def http_base():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_local_store_put_is_atomic_and_raw_never_overwritten(tmp_path):
    store = LocalStore(tmp_path)
    store.put_bytes("raw/a/batch.csv", b"one", overwrite=False)
    with pytest.raises(StorageError, match="refusing to overwrite"):
        store.put_bytes("raw/a/batch.csv", b"two", overwrite=False)
    assert store.get_bytes("raw/a/batch.csv") == b"one"
    assert store.list("raw") == ["raw/a/batch.csv"]  # no temp files left behind
    with pytest.raises(StorageError, match="invalid storage key"):
        store.put_bytes("../escape", b"x")


def test_s3_store_same_surface(aws_env):
    boto3.client("s3").create_bucket(Bucket="lake-test")
    store = open_store("s3://lake-test/some/prefix")
    uri = store.put_bytes("raw/x/batch.csv", b"data", overwrite=False)
    assert uri == "s3://lake-test/some/prefix/raw/x/batch.csv"
    with pytest.raises(StorageError):
        store.put_bytes("raw/x/batch.csv", b"other", overwrite=False)
    assert store.get_bytes("raw/x/batch.csv") == b"data"
    assert store.exists("raw/x/batch.csv") and not store.exists("raw/y")
    assert store.list("raw") == ["raw/x/batch.csv"]


def test_s3_unreachable_is_a_clear_storage_error(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = open_store("s3://nowhere")
    with pytest.raises(StorageError, match="S3 unreachable"):
        store.put_bytes("k", b"x")


def test_fetch_local_records_lineage(tmp_path):
    path = tmp_path / "batch.csv"
    path.write_bytes(BODY)
    got = fetch(str(path))
    assert got.data == BODY and got.size == len(BODY)
    assert got.sha256 == hashlib.sha256(BODY).hexdigest()
    assert got.name == "batch.csv"


def test_fetch_missing_path_names_it(tmp_path):
    with pytest.raises(SourceError, match=r"no such file: .*nope\.csv"):
        fetch(str(tmp_path / "nope.csv"))


def test_fetch_refuses_200mb_file_without_reading_it(tmp_path):
    big = tmp_path / "big.csv"
    with big.open("wb") as fh:
        fh.truncate(200 * 1024 * 1024)  # sparse: costs no disk and is never read
    with pytest.raises(SourceError, match=r"200\.0 MB, above the 50\.0 MB batch limit"):
        fetch(str(big))


def test_fetch_http_downloads_and_caches(http_base, tmp_path):
    got = fetch(f"{http_base}/abalone.data", cache_dir=tmp_path)
    assert got.data == BODY and not got.cached
    again = fetch(f"{http_base}/abalone.data", cache_dir=tmp_path)
    assert again.cached and again.sha256 == got.sha256


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.csv", "HTTP 404"),
        ("/truncated.csv", "truncated"),
        ("/huge.csv", "500.0 MB, above"),
    ],
)
def test_fetch_http_failures(http_base, path, message):
    with pytest.raises(SourceError, match=message):
        fetch(f"{http_base}{path}")


def test_fetch_http_timeout(http_base):
    with pytest.raises(SourceError, match="timed out"):
        fetch(f"{http_base}/slow.csv", limits=FetchLimits(timeout_s=0.5))


def test_fetch_s3(aws_env):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="src-test")
    s3.put_object(Bucket="src-test", Key="in/batch.csv", Body=BODY)
    assert fetch("s3://src-test/in/batch.csv").data == BODY
    with pytest.raises(SourceError, match="no such object"):
        fetch("s3://src-test/in/missing.csv")


def test_fetch_rejects_unknown_scheme():
    with pytest.raises(SourceError, match="unsupported source"):
        fetch("ftp://example.invalid/x.csv")


# ---- the shipped default source ------------------------------------------------------------------


def test_default_source_is_the_shipped_uci_file_and_uci_names_the_download():
    from jobs.adapters.fetch import PACKAGE_SOURCE, resolve_source, shipped_data_path
    from jobs.adapters.settings import UCI_ABALONE_URL
    from jobs.core.errors import UsageError

    assert resolve_source(None) == PACKAGE_SOURCE
    assert resolve_source("uci") == resolve_source(" UCI ") == UCI_ABALONE_URL
    assert resolve_source("data/batch.csv") == "data/batch.csv"
    for empty in ("", "  "):
        with pytest.raises(UsageError, match="--source is empty"):
            resolve_source(empty)

    got = fetch(PACKAGE_SOURCE)
    shipped = shipped_data_path().read_bytes()
    assert got.data == shipped and got.size == 191_873 and len(shipped.splitlines()) == 4177
    assert got.lineage()["source"] == PACKAGE_SOURCE and got.name == "abalone.csv"
    assert got.sha256 == hashlib.sha256(shipped).hexdigest()
    with pytest.raises(SourceError, match=r"no shipped data named 'other\.csv'"):
        fetch("package:other.csv")


def test_empty_source_is_a_usage_error_on_the_cli(abalone_home):
    from typer.testing import CliRunner

    from jobs.cli import app

    for command in ("ingest", "run"):
        result = CliRunner().invoke(app, [command, "--source", ""])
        assert result.exit_code == 2, result.output
        assert "--source is empty" in result.stderr and "Traceback" not in result.output
    assert not (abalone_home / "lake").exists()


def test_version_flag():
    from importlib.metadata import version

    from typer.testing import CliRunner

    from jobs.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"abalone-mlops {version('abalone-mlops')}"
