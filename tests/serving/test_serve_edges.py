"""`abalone serve` at its edges: a body that never completes (real loopback sockets) and a host that
is not loopback."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.serving.handlers import model_fn
from jobs.serving.server import ServeLimits, serve_in_thread
from tests.serving.test_inference import make_model_dir

ROW = b"M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model"), model_version="5")


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout`` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        pass
    return data


def _start(port: int, body: bytes, declared: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


def test_a_body_that_never_completes_gets_408_and_the_server_keeps_serving(model_dir, tmp_path):
    limits = ServeLimits(body_timeout_s=1.0)
    with serve_in_thread(model_fn(model_dir), None, limits) as srv:
        stalled = _start(srv.port, ROW[:10], declared=len(ROW))  # 10 bytes of the announced 43
        trickled = _start(srv.port, b"M", declared=len(ROW))
        try:
            # while both hang, other clients are served
            ok = httpx.post(
                f"{srv.url}/invocations", content=ROW, headers={"Content-Type": "text/csv"}
            )
            assert ok.status_code == 200
            for _ in range(4):  # the trickler keeps sending, one byte every 0.4 s
                time.sleep(0.4)
                try:
                    trickled.sendall(b",")
                except OSError:
                    break
            answers = [_read_all(s, timeout=10) for s in (stalled, trickled)]
        finally:
            stalled.close()
            trickled.close()
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert b"request body not received within 1s" in answer
            assert b"connection: close" in answer.lower()
        assert httpx.get(f"{srv.url}/ping").status_code == 200


def test_body_timeout_option_is_checked():
    runner = CliRunner()
    bad = runner.invoke(app, ["serve", "--body-timeout", "0", "--model", "/nonexistent"])
    assert bad.exit_code == 2
    assert "--max-rows and --body-timeout must be positive numbers" in bad.output


@pytest.mark.parametrize("value", ["nan", "inf", "1e-9", "0", "-1"])
def test_max_body_mb_must_be_a_size(value):
    runner = CliRunner()
    bad = runner.invoke(app, ["serve", "--max-body-mb", value, "--model", "/nonexistent"])
    assert bad.exit_code == 2, bad.output
    assert bad.output.strip().splitlines() == [
        f"error: --max-body-mb {float(value):g} is not a size: give a positive number of MB"
    ]


@pytest.mark.parametrize(
    ("host", "warns"),
    [
        ("192.0.2.1", True),
        ("0.0.0.0", True),
        ("127.0.0.1", False),
        ("localhost", False),
        ("::1", False),
    ],
)
def test_a_host_other_than_loopback_warns_there_is_no_authentication(tmp_path, host, warns):
    """The warning comes before anything is loaded or bound (the missing model then ends it)."""
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--host", host, "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert ("no authentication" in result.output) is warns, result.output
    assert "no such model directory" in result.output
