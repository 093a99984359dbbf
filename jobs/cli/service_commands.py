"""Service commands: ``serve`` (the local inference server), ``ui`` (MLflow UI over the local
store, or a deployed stack's presigned URL) and ``monitor`` (drift report)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError

from jobs.adapters.settings import environment, megabytes
from jobs.cli.app import EnvOption, JsonOption, app, console, handle_errors, out, settings_for, show
from jobs.cli.render import Steps, print_monitor_summary
from jobs.core.errors import ServiceError, UsageError
from jobs.core.redact import redact


@app.command()
@handle_errors
def serve(
    model: Annotated[
        str,
        typer.Option(
            "--model", help="MLflow model URI (models:/abalone-age@champion) or a model directory."
        ),
    ] = "models:/abalone-age@champion",
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", help="Largest request body, in MB.")
    ] = 5.0,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Most rows per request.")] = 10_000,
    body_timeout: Annotated[
        float,
        typer.Option("--body-timeout", help="Seconds a request body may take to arrive (408)."),
    ] = 30.0,
    capture: Annotated[
        bool, typer.Option("--capture/--no-capture", help="Append data-capture records.")
    ] = True,
    env: EnvOption = "dev",
) -> None:
    """Serve a model on the SageMaker contract: GET /ping, POST /invocations; runs until Ctrl-C."""
    # lazy: MLflow, Great Expectations, scikit-learn and pandas take seconds to import
    from jobs.serving.server import ServeLimits, create_app, load_serving_model, run_server

    settings = settings_for(env)
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port")
    try:
        limits = ServeLimits(
            max_body_bytes=megabytes(max_body_mb, "--max-body-mb"),
            max_rows=max_rows,
            body_timeout_s=body_timeout,
        )
    except ValidationError as err:
        raise UsageError("--max-rows and --body-timeout must be positive numbers") from err
    if not _is_loopback(host):
        console.print(
            f"[bold yellow]warning:[/] --host {host} is not a loopback address: the server has no "
            "authentication, so anyone who can reach this port can call the model (and fill the "
            "capture). Bind 127.0.0.1 or put an authenticating proxy in front.",
            highlight=False,
        )
    if "://" in model or model.startswith(("models:", "runs:")):
        # lazy: MLflow, Great Expectations, scikit-learn and pandas take seconds to import
        from jobs.adapters.tracking import check_tracking

        check_tracking(settings.tracking_uri)
    loaded = load_serving_model(model, settings.tracking_uri)
    capture_dir = settings.capture_dir if capture else None
    asgi = create_app(loaded, capture_dir, limits)
    version = f"v{loaded.model_version}" if loaded.model_version else "(unversioned)"
    out.print(f"serving {model} {version} on http://{host}:{port}", highlight=False)
    console.print(
        f"capture → {capture_dir or 'off'}; limits {max_body_mb:g} MB / {max_rows} rows; "
        "Ctrl-C to stop",
        highlight=False,
    )
    run_server(asgi, host, port)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: only `localhost` is known to stay on this machine
        return False


@app.command()
@handle_errors
def ui(
    port: Annotated[int, typer.Option("--port", help="Loopback port for the MLflow UI.")] = 5000,
    stack: Annotated[
        str | None,
        typer.Option(
            "--stack", help="Print a presigned URL of a deployed stack's MLflow UI instead."
        ),
    ] = None,
) -> None:
    """Start `mlflow server` on 127.0.0.1 over the local store; runs until Ctrl-C.

    With --stack, print a presigned URL of that AWS stack's managed MLflow UI (valid 5 minutes).
    """
    if stack is not None:
        from jobs.aws import launcher, reports  # lazy: boto3 and pandas, only for AWS commands

        out.print(reports.mlflow_ui_url(launcher.resolve_stack(stack)), soft_wrap=True)
        return
    settings = settings_for("dev")
    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        out.print(f"MLflow is already served at {redact(uri)}", highlight=False)
        return
    if not uri.startswith("sqlite:///"):
        raise UsageError(
            f"abalone ui serves a sqlite:/// store; MLFLOW_TRACKING_URI is {redact(uri)}"
        )
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port")
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            raise UsageError(f"port {port} on 127.0.0.1 is in use; pass --port") from err
    # lazy: MLflow takes seconds to import; an unusable store fails here in seconds, in one line
    from jobs.adapters.tracking import check_tracking

    check_tracking(uri)
    artifacts = settings.home / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    env = environment()
    env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = settings.home / "mlflow-ui.log"
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", uri, "--artifacts-destination", str(artifacts),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log_file, _stop_on_signals():
        # its own process group: `mlflow server` starts workers; all of them stop with us
        proc = subprocess.Popen(
            cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_ready(f"{url}/health", proc, log_path)
            out.print(f"MLflow UI: {url}", highlight=False)
            console.print(f"store {redact(uri)}; log {log_path}; Ctrl-C to stop", highlight=False)
            code = proc.wait()
            if code != 0:
                raise ServiceError(f"mlflow server exited with {code}; see {log_path}")
        except KeyboardInterrupt:
            console.print("stopping MLflow UI")
        finally:
            _stop_group(proc)


class _Stopped(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: stop like Ctrl-C does."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """The first SIGINT, SIGTERM or SIGHUP raises (like Ctrl-C) so the block's cleanup runs; later
    ones are ignored so they cannot cut that cleanup short."""
    received: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        if not received:
            received.append(signum)
            raise _Stopped(signal.Signals(signum).name)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the child's whole process group, SIGKILL to what is left after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:  # the workers, which may outlive the server process
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def _wait_ready(url: str, proc, log_path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"mlflow server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise ServiceError(
        f"mlflow server did not answer {url} within {timeout_s:.0f}s; see {log_path}"
    )


@app.command("monitor")
@handle_errors
def monitor_command(
    since: Annotated[
        str | None,
        typer.Option(help="Only traffic at or after this: 1h, 24h, 7d or an ISO 8601 time."),
    ] = None,
    capture: Annotated[
        str | None,
        typer.Option(
            help="Captured traffic: a directory, a .jsonl file or s3://bucket/prefix; this "
            "server's capture or SageMaker data capture. Default: $ABALONE_HOME/capture."
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Reference profile: models:/abalone-age@champion (default), "
            "models:/NAME/VERSION, runs:/RUN_ID, or a JSON file (path or s3://)."
        ),
    ] = None,
    env: EnvOption = "dev",
    as_json: JsonOption = False,
    retrain: Annotated[
        bool,
        typer.Option(help="When drift is found, run the pipeline on the latest validated data."),
    ] = False,
    min_rows: Annotated[
        int, typer.Option("--min-rows", min=1, help="Fewer live rows than this: no verdict.")
    ] = 50,
) -> None:
    """Compare captured traffic with the training reference profile (PSI + KS), run the data
    contract on it, and write an HTML + JSON drift report under $ABALONE_HOME/monitoring/.

    Exit codes: 0 no drift (or not enough data), 1 drift, 2 usage/source/service error.
    """
    # lazy: MLflow, Great Expectations, scikit-learn and pandas take seconds to import
    from jobs.core.drift import Thresholds
    from jobs.monitoring.monitor import monitor as run_monitor
    from jobs.pipeline import retrain_safely

    settings = settings_for(env)
    thresholds = Thresholds.from_policy(settings.policy, min_rows=min_rows)
    with Steps(enabled=not as_json) as steps:
        result = run_monitor(
            settings,
            capture=capture,
            since=since,
            reference=reference,
            thresholds=thresholds,
            retrain_on_drift=retrain,
            retrain=lambda: retrain_safely(settings, steps),
            progress=steps,
        )
    show(result.summary, as_json, print_monitor_summary)
    if result.drifting:
        raise typer.Exit(1)
