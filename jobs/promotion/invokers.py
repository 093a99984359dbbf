"""How the system test reaches a served model: the local server on loopback, or a SageMaker endpoint
through ``InvokeEndpoint`` (the staging endpoint of the AWS pipeline). Both answer
:class:`Reply` objects, so :func:`jobs.promotion.systemtest.run_system_test` is written once."""

from __future__ import annotations

import contextlib
import errno
import http.client
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jobs.adapters.capture import iter_records
from jobs.serving.handlers import ServingModel
from jobs.serving.server import RunningServer, ServeLimits, serve_in_thread


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str


class InvokeError(Exception):
    """The served model could not be reached at all (no HTTP answer)."""


class Invoker(Protocol):
    """What the system test needs from a served model."""

    name: str
    kind: str
    max_rows: int

    def invoke(self, body: bytes, content_type: str | None, accept: str) -> Reply: ...
    def ping(self) -> int | None: ...  # HTTP status of GET /ping, None when not offered
    def captured(self) -> int | None: ...  # capture records written, None when not observable


def _loopback_hint(err: BaseException) -> str:
    """127.0.0.1 unreachable means the loopback interface is down (e.g. a bare network namespace);
    say so, since the server itself bound fine."""
    if isinstance(err, OSError) and err.errno in (errno.ENETUNREACH, errno.EADDRNOTAVAIL):
        return " (the loopback interface looks down: bring it up, e.g. `ip link set lo up`)"
    return ""


class LoopbackInvoker:
    """A keep-alive HTTP/1.1 client (stdlib) to a server on 127.0.0.1; counts 200 invocations."""

    kind = "loopback"

    def __init__(self, server: RunningServer, capture_dir: Path | None, timeout: float = 60.0):
        port = server.port
        self.name = f"http://127.0.0.1:{port}"
        self.max_rows = server.app.limits.max_rows
        self.app = server.app
        self.capture_dir = capture_dir
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.ok = 0

    def _request(self, method: str, path: str, body: bytes | None, headers: dict) -> Reply:
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnect once: the server may close after an error
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as err:
                raise InvokeError(f"{type(err).__name__}: {err}{_loopback_hint(err)}") from err
        return Reply(resp.status, data, resp.getheader("content-type", ""))

    def invoke(self, body: bytes, content_type: str | None, accept: str) -> Reply:
        headers = {"Accept": accept}
        if content_type is not None:
            headers["Content-Type"] = content_type
        reply = self._request("POST", "/invocations", body, headers)
        if reply.status == 200:
            self.ok += 1
        return reply

    def ping(self) -> int | None:
        return self._request("GET", "/ping", None, {}).status

    def captured(self) -> int | None:
        """Records written so far; flushes (and stops) the server's capture writer first."""
        if self.capture_dir is None:
            return None
        self.app.close()
        return sum(1 for _ in iter_records(self.capture_dir))

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def serve_on_loopback(model: ServingModel, max_rows: int) -> Iterator[LoopbackInvoker]:
    """Serve ``model`` with the real ``abalone serve`` app on a free loopback port, data capture to
    a temporary directory, and yield an invoker for it."""
    with tempfile.TemporaryDirectory(prefix="abalone-systemtest-") as tmp:
        capture_dir = Path(tmp) / "capture"
        with serve_in_thread(model, capture_dir, ServeLimits(max_rows=max_rows)) as server:
            invoker = LoopbackInvoker(server, capture_dir)
            try:
                yield invoker
            finally:
                invoker.close()


class CallableInvoker:
    """``invoke(body, content_type, accept) -> bytes`` that raises on an error answer (what
    ``InvokeEndpoint`` does: botocore's ``ModelError`` carries ``OriginalStatusCode``)."""

    kind = "sagemaker-endpoint"

    def __init__(
        self,
        call: Callable[[bytes, str | None, str], bytes],
        name: str = "",
        max_rows: int = 10_000,
    ) -> None:
        self.call = call
        self.name = name
        self.max_rows = max_rows

    def invoke(self, body: bytes, content_type: str | None, accept: str) -> Reply:
        try:
            data = self.call(body, content_type, accept)
        except Exception as err:
            status = _error_status(err)
            if status is None:
                raise InvokeError(_one_line(err)) from err
            message = getattr(err, "message", None) or _one_line(err)
            return Reply(status, str(message).encode(), "text/plain")
        return Reply(200, data, accept)

    def ping(self) -> int | None:
        return None

    def captured(self) -> int | None:
        return None


def endpoint_invoker(endpoint: str, client: Any = None, max_rows: int = 10_000) -> CallableInvoker:
    """An invoker for a SageMaker endpoint (``sagemaker-runtime:InvokeEndpoint``)."""
    if client is None:
        import boto3  # only the AWS system test needs it

        client = boto3.client("sagemaker-runtime")

    def call(body: bytes, content_type: str | None, accept: str) -> bytes:
        kwargs = {"EndpointName": endpoint, "Body": body, "Accept": accept}
        if content_type is not None:
            kwargs["ContentType"] = content_type
        return client.invoke_endpoint(**kwargs)["Body"].read()

    return CallableInvoker(call, endpoint, max_rows)


def _error_status(err: BaseException) -> int | None:
    """The HTTP status an error answer carried: ``ModelError``'s ``OriginalStatusCode``, or a
    ``status_code`` attribute (the inference handlers' own ``InvalidInput``)."""
    response = getattr(err, "response", None)
    if isinstance(response, dict):  # the API's own refusal (e.g. a validation error) otherwise
        status = response.get("OriginalStatusCode")
        if status is None:
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        try:
            return int(status) if status is not None else None
        except (TypeError, ValueError):
            return None
    status = getattr(err, "status_code", None)
    return status if isinstance(status, int) else None


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
