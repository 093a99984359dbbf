"""The code package served by the SageMaker scikit-learn image's own serving stack (DESIGN §7).

The image's Python stack (``tests/container/stack.py``) installs ``sourcedir.tar.gz`` the way
the image does at start-up, then runs its single-model server (sagemaker-containers' Flask worker
under gunicorn + gevent) on a loopback port. Every request of the local server's tests goes to
both that server and ``abalone serve`` (``jobs.serve``) with the same model: the answers must
agree (status, predictions, error message).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from components.packaging import MODEL_RUNTIME
from jobs.core.schema import FEATURES
from jobs.core.synthetic import make_abalone
from jobs.serving.handlers import model_fn
from jobs.serving.server import ServeLimits, serve_in_thread
from tests.conftest import free_port, wait_http
from tests.container import stack
from tests.serving.test_inference import all_formats, make_model_dir
from tests.serving.test_serve import _GOOD, CSV, JSON, malformed_payload

pytestmark = pytest.mark.container

MAX_ROWS = 500  # ABALONE_MAX_ROWS in the container, ServeLimits.max_rows locally


@dataclass
class Servers:
    container: httpx.Client
    local: httpx.Client
    proc: subprocess.Popen
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    @staticmethod
    def post(client: httpx.Client, body, content_type: str | None, accept: str | None = None):
        headers = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if accept is not None:
            headers["Accept"] = accept
        return client.post("/invocations", content=body, headers=headers)

    def both(self, body, content_type: str | None, accept: str | None = None):
        """The same request to the image's server and to ``abalone serve``."""
        return (
            self.post(self.container, body, content_type, accept),
            self.post(self.local, body, content_type, accept),
        )


@pytest.fixture(scope="module")
def installed(container_venv, code_upload, tmp_path_factory):
    """``/opt/ml`` with the model and the code package installed by the image's start-up step."""
    base = tmp_path_factory.mktemp("opt-ml")
    make_model_dir(base / "model", model_version="5")
    output = stack.install_code_package(container_venv, code_upload.uri, base, **code_upload.env)
    return base, output


@pytest.fixture(scope="module")
def servers(container_venv, code_upload, installed):
    base, _ = installed
    port = free_port()
    env = stack.serving_env(
        container_venv, base, code_upload.uri, ABALONE_MAX_ROWS=str(MAX_ROWS), **code_upload.env
    )
    log = base / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            stack.serving_command(container_venv, base, port),
            env=env,
            cwd=base,
            stdin=subprocess.DEVNULL,  # never the test worker's stdin (xdist talks over it)
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ping", timeout=120, proc=proc)
        first = httpx.get(f"{url}/ping", timeout=120)  # the first request loads the model
        assert first.status_code == 200, log.read_text(errors="replace")[-4000:]
        model = model_fn(base / "model")
        with (
            serve_in_thread(model, None, ServeLimits(max_rows=MAX_ROWS)) as local_server,
            httpx.Client(base_url=url, timeout=60) as container,
            httpx.Client(base_url=local_server.url, timeout=60) as local,
        ):
            yield Servers(container, local, proc, log)
    except (RuntimeError, httpx.HTTPError) as err:
        pytest.fail(f"the container's server did not come up: {err}\n{log.read_text()[-4000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_code_package_installs_over_the_image_pins(container_venv, installed):
    check = stack.pip_check(container_venv)
    assert check.returncode == 0, check.stdout + check.stderr
    have = stack.versions(container_venv)
    assert have["protobuf"] == "3.20.2"  # the image's pin (sagemaker-containers' record_pb2)
    moved = set()
    for pin in stack.IMAGE_PINS:
        req = Requirement(pin)
        name = canonicalize_name(req.name)
        if not req.specifier.contains(have.get(name, "0"), prereleases=True):
            moved.add(name)
    # only the model runtime (pinned to the training environment) and boto3 (the code's floor)
    # may move; the serving and training stack (Flask, Werkzeug, gevent, gunicorn, protobuf,
    # sagemaker-*) keeps the image's versions
    on_purpose = {canonicalize_name(n) for n in MODEL_RUNTIME} | {"boto3", "botocore"}
    assert moved <= on_purpose, sorted(moved - on_purpose)


def test_ping(servers):
    resp = servers.container.get("/ping")
    assert resp.status_code == 200


@pytest.mark.parametrize("name", list(all_formats(make_abalone(3, seed=1))))
def test_every_format_answers_as_locally(servers, name):
    frame = make_abalone(25, seed=4)
    content_type, body = all_formats(frame)[name]
    got, want = servers.both(body, content_type)
    assert got.status_code == 200, (got.text, servers.log_tail())
    assert want.status_code == 200
    assert got.json() == want.json()
    assert got.json()["model_version"] == "5"
    assert len(got.json()["predictions"]) == 25


def test_csv_answer_as_locally(servers):
    frame = make_abalone(40, seed=9)
    body = frame[list(FEATURES)].to_csv(index=False, header=False)
    got, want = servers.both(body, CSV, accept=CSV)
    assert got.status_code == want.status_code == 200
    assert got.headers["content-type"].split(";")[0] == CSV
    assert got.text == want.text
    assert len(got.text.splitlines()) == 40


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status"),
    [
        ("M,0.4,0.3,0.1,0.5,0.2,0.1,0.15\nI,0.4,0.3,0.1,0.5,x,0.1,0.1", CSV, None, 422),
        (",".join(map(str, _GOOD)), CSV, "image/png", 406),
        (",".join(map(str, _GOOD)), "application/x-npy", None, 415),
        ("\n".join([",".join(map(str, _GOOD))] * (MAX_ROWS + 1)), CSV, None, 413),
        (json.dumps({"instances": [_GOOD] * (MAX_ROWS + 1)}), JSON, None, 413),
        ('{"instances": [', JSON, None, 400),
        ("M,0.4,0.3\n", CSV, None, 400),
    ],
    ids=["bad value", "bad accept", "bad content type", "csv rows", "json rows", "json", "fields"],
)
def test_errors_answer_as_locally(servers, body, content_type, accept, status):
    got, want = servers.both(body, content_type, accept)
    assert want.status_code == status
    assert got.status_code == status, (got.text[:500], servers.log_tail())
    assert got.json() == want.json()  # {"error": "<message naming the row and field>"}


def test_large_batch_as_locally(servers):
    frame = make_abalone(MAX_ROWS, seed=5)
    got, want = servers.both(frame[list(FEATURES)].to_csv(index=False, header=False), CSV)
    assert got.status_code == want.status_code == 200
    assert got.json() == want.json()


def as_the_image_passes_it(content_type: str | None, body: bytes) -> tuple[str, bytes]:
    """The request the image's server hands to the handlers (sagemaker-containers' ``Request``):
    no or an empty Content-Type is ``application/json``, and a body of exactly ``text/csv`` or
    ``application/json`` arrives as text decoded from UTF-8 with replacement characters (werkzeug
    ``get_data(as_text=True)``), so invalid bytes never reach ``input_fn`` as bytes."""
    content_type = content_type or JSON
    if content_type in (CSV, JSON):
        body = body.decode("utf-8", "replace").encode()
    return content_type, body


def test_malformed_payloads_answer_as_locally_and_the_server_survives(servers):
    statuses: list[int] = []

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(malformed_payload())
    def check(payload):
        ctype, body = payload
        sent = ctype  # the generator makes only values a client can send, or None (no header)
        got = servers.post(servers.container, body, sent)
        local_type, local_body = as_the_image_passes_it(sent, body)
        want = servers.post(servers.local, local_body, local_type)
        statuses.append(got.status_code)
        assert 400 <= got.status_code < 500, (payload, got.status_code, got.text[:300])
        assert got.status_code == want.status_code, (payload, got.text[:300], want.text[:300])
        assert got.json() == want.json()

    check()
    assert len(statuses) >= 250
    assert servers.proc.poll() is None
    assert servers.container.get("/ping").status_code == 200
    got, want = servers.both(",".join(map(str, _GOOD)), CSV)
    assert got.status_code == 200 and got.json() == want.json()
