"""``abalone serve``: the SageMaker inference contract over HTTP, locally (DESIGN §7).

A small raw ASGI application served by uvicorn (httptools/uvloop when installed, h11/asyncio
otherwise) over the handler functions of :mod:`jobs.serving.handlers`:

- ``GET /ping`` → 200 ``{"status": "ok", "model_version": ..., "capture": {"written": n,
  "dropped": n}}`` (the model is loaded before the socket opens, so the server never answers before
  it can predict; ``dropped``: records data capture lost, e.g. to a full disk; ``capture`` is null
  when capture is off);
- ``POST /invocations`` → ``input_fn`` → ``predict_fn`` → ``output_fn``.

Bad requests answer 4xx with ``{"error": "<message naming row/field>"}``; a body over
``max_body_bytes`` → 413 without reading it; more rows than ``max_rows`` → 413; a body not received
within ``body_timeout_s`` → 408 and the connection is closed. Anything else
unexpected is logged and answered 500 with the request id, and the worker keeps serving. Every
successful request queues one data-capture record (:mod:`jobs.capture`), written by a background
thread and flushed on shutdown. Batches above ``inline_rows`` rows are predicted in a worker thread
so ``/ping`` and small requests keep answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.adapters.capture import CaptureItem, CaptureWriter
from jobs.core.contract import JSON_TYPE, InvalidInput, choose_accept, media_type, parse_request
from jobs.core.errors import ServiceError, StorageError, UsageError
from jobs.serving.handlers import (
    ServingModel,
    model_fn,
    output_fn,
    predict_fn,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL_URI = "models:/abalone-age@champion"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ServeLimits(BaseModel):
    """Request limits of the local server (SageMaker's own payload limit is 6 MB)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0, description="413 above this.")
    max_rows: int = Field(default=10_000, gt=0, description="413 above this many rows.")
    inline_rows: int = Field(
        default=64, ge=0, description="Batches larger than this are predicted off the event loop."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, allow_inf_nan=False, description="408 when a body takes longer."
    )


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return dict(scope.get("headers") or ())


class InferenceApp:
    """The ASGI application. Build it with :func:`create_app`."""

    def __init__(
        self, model: ServingModel, capture_dir: Path | None, limits: ServeLimits | None = None
    ) -> None:
        self.model = model
        self.limits = limits or ServeLimits()
        self.capture = CaptureWriter(Path(capture_dir)) if capture_dir is not None else None
        self.requests = 0
        self.errors = 0
        version = json.dumps(model.model_version)
        self._ping_head = f'{{"status":"ok","model_version":{version},"capture":'.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.capture is not None:
                        self.capture.start()
                except Exception as err:
                    await send({"type": "lifespan.startup.failed", "message": str(err)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _start_capture_late(self) -> None:
        try:
            self.capture.start()
        except StorageError as err:
            log.error("data capture disabled: %s", err)
            self.capture = None

    def _ping_body(self) -> bytes:
        """``/ping``'s answer; ``capture``: records written and lost (dropped) so far, or null."""
        counts = self.capture.status() if self.capture is not None else None
        return self._ping_head + json.dumps(counts, separators=(",", ":")).encode() + b"}"

    def close(self) -> None:
        """Flush data capture (called on server shutdown)."""
        if self.capture is not None:
            self.capture.close()

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        method = scope["method"]
        headers = _headers(scope)
        rid = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = rid if _REQUEST_ID.match(rid) else os.urandom(8).hex()
        if path == "/invocations":
            if method != "POST":
                await _reply_error(send, 405, "use POST /invocations", request_id, allow=b"POST")
                return
            await self._invoke(headers, receive, send, request_id)
        elif path == "/ping":
            if method not in ("GET", "HEAD"):
                await _reply_error(send, 405, "use GET /ping", request_id, allow=b"GET, HEAD")
                return
            await _reply(send, 200, self._ping_body(), JSON_TYPE, request_id)
        else:
            await _reply_error(
                send, 404, f"no route {path[:80]}; use /ping or /invocations", request_id
            )

    async def _invoke(
        self, headers: dict[bytes, bytes], receive: Any, send: Any, request_id: str
    ) -> None:
        limit = self.limits.max_body_bytes
        declared = headers.get(b"content-length")
        too_big = declared is not None and (not declared.isdigit() or int(declared) > limit)
        body = bytearray()
        more = True
        deadline = asyncio.get_running_loop().time() + self.limits.body_timeout_s
        late = f"request body not received within {self.limits.body_timeout_s:g}s"
        while more and not too_big:
            message = await _receive_by(receive, deadline)
            if message is None:  # a body that never completes must not hold the connection
                await _reply_error(send, 408, late, request_id, close=True)
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            too_big = len(body) > limit
        if too_big:
            # Read (and drop) a moderately oversized body so the client sees the 413 rather than a
            # reset connection; give up on anything far larger and close the connection.
            seen = len(body)
            del body
            while more and seen <= 4 * limit:
                message = await _receive_by(receive, deadline)
                if message is None:
                    break  # answer 413 and close
                if message["type"] == "http.disconnect":
                    return
                seen += len(message.get("body", b""))
                more = message.get("more_body", False)
            msg = f"request body over the limit of {limit} bytes"
            await _reply_error(send, 413, msg, request_id, close=more)
            return
        self.requests += 1
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        accept = headers.get(b"accept", b"").decode("latin-1")
        try:
            choose_accept(accept)  # 406 before any work
            rows = parse_request(bytes(body), content_type, max_rows=self.limits.max_rows)
            if len(rows) > self.limits.inline_rows:
                loop = asyncio.get_running_loop()
                prediction = await loop.run_in_executor(None, predict_fn, rows, self.model)
            else:
                prediction = predict_fn(rows, self.model)
            out, out_type = output_fn(prediction, accept)
        except InvalidInput as err:
            self.errors += 1
            await _reply_error(send, err.status_code, err.message, request_id)
            return
        except Exception:
            self.errors += 1
            log.exception("request %s failed", request_id)
            await _reply_error(send, 500, f"internal error (request {request_id})", request_id)
            return
        if self.capture is not None and not self.capture.running:
            self._start_capture_late()  # lifespan "off": start on first use
        if self.capture is not None:
            self.capture.submit(
                CaptureItem(
                    timestamp=time.time(),
                    request_id=request_id,
                    content_type=media_type(content_type),
                    rows=rows,
                    rings=prediction.rings,
                    model_name=self.model.model_name,
                    model_version=self.model.model_version,
                    run_id=self.model.run_id,
                )
            )
        await _reply(send, 200, out.encode(), out_type, request_id)


async def _receive_by(receive: Any, deadline: float) -> dict[str, Any] | None:
    """The next ASGI message, or ``None`` when ``deadline`` (the event loop's clock) passes first.
    ``asyncio.timeout_at`` adds a timer, not a task, to each receive."""
    try:
        async with asyncio.timeout_at(deadline):
            return await receive()
    except TimeoutError:
        return None


async def _reply(
    send: Any,
    status: int,
    body: bytes,
    content_type: str,
    request_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _reply_error(
    send: Any,
    status: int,
    message: str,
    request_id: str,
    *,
    allow: bytes | None = None,
    close: bool = False,
) -> None:
    extra = []
    if allow:
        extra.append((b"allow", allow))
    if close:
        extra.append((b"connection", b"close"))
    body = json.dumps({"error": message}).encode()
    await _reply(send, status, body, JSON_TYPE, request_id, extra)


def create_app(
    model: ServingModel, capture_dir: Path | None, limits: ServeLimits | None = None
) -> InferenceApp:
    """The ASGI app for ``model``; ``capture_dir=None`` disables data capture."""
    return InferenceApp(model, capture_dir, limits)


# ---- running it -----------------------------------------------------------------------------------


def _uvicorn_config(app: InferenceApp, **kwargs: Any) -> Any:
    import uvicorn  # lazy: not in the Lambda image, which imports this module for its types

    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
        **kwargs,
    )


def run_server(app: InferenceApp, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve ``app`` in the foreground until interrupted (Ctrl-C flushes capture and stops)."""
    import uvicorn  # lazy: not in the Lambda image, which imports this module for its types

    if app.capture is not None:
        app.capture.start()  # fail fast, with the reason, when the capture dir is unwritable
    server = uvicorn.Server(_uvicorn_config(app, host=host, port=port))
    try:
        server.run()
    except OSError as err:
        raise ServiceError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    finally:
        app.close()
    if not server.started:
        raise ServiceError(f"the server did not start on {host}:{port} (port in use?)")


@dataclass(frozen=True)
class RunningServer:
    """A server started by :func:`serve_in_thread`."""

    url: str
    port: int
    app: InferenceApp


@contextlib.contextmanager
def serve_in_thread(
    model: ServingModel,
    capture_dir: Path | None,
    limits: ServeLimits | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 15.0,
) -> Iterator[RunningServer]:
    """Serve ``model`` on ``host:port`` (``0``: a free port) in a background thread.

    Yields a :class:`RunningServer`; on exit the server stops and data capture is flushed.
    """
    import uvicorn  # lazy: not in the Lambda image, which imports this module for its types

    app = create_app(model, capture_dir, limits)
    if app.capture is not None:
        app.capture.start()  # fail fast, with the reason, when the capture dir is unwritable
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets that say they are TCP,
    # and without it Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        app.close()
        raise ServiceError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    bound = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"abalone-serve-{bound}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            app.close()
            raise ServiceError(f"the inference server did not start on {host}:{bound}")
        time.sleep(0.01)
    try:
        yield RunningServer(url=f"http://{host}:{bound}", port=bound, app=app)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        app.close()


# ---- resolving --model ----------------------------------------------------------------------------


def load_serving_model(ref: str, tracking_uri: str | None = None) -> ServingModel:
    """A local model directory, or an MLflow URI loaded with :func:`model_fn`. A registered version
    (``models:/name@alias``, ``models:/name/N``) serves what SageMaker serves for it: its run's
    model directory (``model_dir`` artifact), else its MLflow model; ``runs:/…`` is downloaded."""
    path = Path(ref).expanduser()
    if "://" not in ref and not ref.startswith(("models:", "runs:")):
        if not path.is_dir():
            raise UsageError(f"--model {ref}: no such model directory")
        return model_fn(path)
    # lazy: MLflow takes seconds to import and only registry URIs need it
    from jobs.adapters.tracking import Registry, parse_models_uri

    name = version = run_id = None
    try:
        with tempfile.TemporaryDirectory(prefix="abalone-serve-") as tmp:
            if ref.startswith("models:/"):
                name, alias, version = parse_models_uri(ref)
                registry = Registry(tracking_uri, name)  # type: ignore[arg-type]
                version = registry.alias(alias) if alias else version
                if version is None:
                    raise UsageError(f"no @{alias} version of {name} yet")
                run_id = registry.version(version).run_id  # pinned: the alias may move meanwhile
                model = model_fn(registry.download_model_dir(version, Path(tmp)))
            else:
                registry = Registry(tracking_uri)  # type: ignore[arg-type]
                model = model_fn(registry.download(ref, Path(tmp)))
    except UsageError as err:
        raise UsageError(f"--model {ref}: {err}") from err
    return model.with_identity(
        model_name=name or model.model_name,
        model_version=version or model.model_version,
        run_id=run_id or model.run_id,
        source=ref,
    )
