"""Shared fixtures: generated data, the real UCI file (``ABALONE_DATA`` or the shipped copy), a real
``mlflow server`` on a loopback port (one per session), and a moto S3 server on loopback.

Nothing here mocks the code under test: MLflow, Great Expectations and the HTTP stack are real;
only AWS is emulated (moto), because there is no AWS account here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)

# Hypothesis: random exploration locally; in CI (``.ci/run`` sets HYPOTHESIS_PROFILE=ci) the same
# examples every run, no example database and no deadline (2 shared cores make timings noisy).
settings.register_profile("dev", deadline=None)
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True, max_examples=100
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server process exited with {proc.returncode} before {url} answered"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


@pytest.fixture(scope="module", autouse=True)
def _restore_mlflow_globals():
    """MLflow keeps the tracking and registry URIs process-wide (in-process training sets them);
    put them back after each module so no test depends on which module ran before it."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(before)
    mlflow.set_registry_uri(before)  # type: ignore[arg-type]
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)


def real_data_file() -> Path:
    """The real UCI file: ``ABALONE_DATA`` when set (CI points it at ../shared), else the copy
    shipped in the package, so real-data tests run on a fresh clone too."""
    from jobs.adapters.fetch import shipped_data_path

    value = os.environ.get("ABALONE_DATA")
    if not value:
        return shipped_data_path()
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"ABALONE_DATA={value} is set but is not a file")
    return path


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    return real_data_file()


@pytest.fixture
def abalone_home(tmp_path, monkeypatch) -> Path:
    """A fresh, isolated ABALONE_HOME with the local default store."""
    home = tmp_path / "home"
    monkeypatch.setenv("ABALONE_HOME", str(home))
    for var in ("ABALONE_LAKE", "ABALONE_REPORTS", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> Path:
    """A headerless generated batch that satisfies the data contract."""
    from jobs.core.synthetic import make_abalone, to_csv_bytes

    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    path.write_bytes(to_csv_bytes(make_abalone(800, seed=1)))
    return path


@contextlib.contextmanager
def running_mlflow_server(root: Path) -> Iterator[str]:
    """A real ``mlflow server`` subprocess on a free loopback port with its store under ``root``;
    yields the tracking URI (``http://127.0.0.1:PORT``) and stops the server after."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ)
    env.update(
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    log_file = open(root / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", timeout=90, proc=proc)
    except RuntimeError:
        proc.kill()
        log_file.close()
        raise RuntimeError((root / "server.log").read_text()[-3000:]) from None
    try:
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` subprocess on a free loopback port, shared by the session.

    Yields the tracking URI (``http://127.0.0.1:PORT``).
    """
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture
def fresh_mlflow_server(tmp_path):
    """A server of the test's own: an empty registry (no champion yet), for tests whose outcome
    depends on what the registry held before."""
    with running_mlflow_server(tmp_path / "mlflow-server") as uri:
        yield uri


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server on a loopback port; yields its endpoint URL. Tests create their own buckets."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch):
    """Point boto3 at the moto server with fake credentials; yields the endpoint URL."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint
