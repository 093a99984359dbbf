"""The ``abalone`` command line (Typer + rich). Thin edge: parse flags, load settings, call the core,
print a summary. Exit codes: 0 ok, 1 rejected (validation, gate), 2 usage/config/source/service error.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from jobs.adapters.settings import default_environ, environment
from jobs.core.errors import AbaloneError

app = typer.Typer(
    name="abalone",
    help="abalone-mlops: validated ingest, MLflow-gated training, serving and drift monitoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # never cut paths or messages
out = Console()

EnvOption = Annotated[str, typer.Option("--env", help="Stack whose thresholds apply: dev or prd.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


def _quiet_libraries() -> None:
    default_environ(
        MLFLOW_DISABLE_TELEMETRY="true",
        GX_ANALYTICS_ENABLED="false",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mlflow.tracking.request_header.registry", "great_expectations", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one clear line on stderr and the matching exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except AbaloneError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def show(payload: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    """The JSON payload on stdout with --json, else the human summary on stderr."""
    if as_json:
        print_json(payload)
    else:
        human(payload)


def _settings(env: str):
    from jobs.adapters.settings import load_settings

    return load_settings(env)  # type: ignore[arg-type]


# ---- commands -------------------------------------------------------------------------------------


SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source",
        "-s",
        help="Batch to ingest: a local path, http(s):// URL or s3:// URI. Default: the UCI abalone URL.",
    ),
]


class _Steps:
    """Rich progress for long steps: a spinner with the current step, and a log of finished ones."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and console.is_terminal
        self._status = None
        self._last: str | None = None

    def __enter__(self) -> _Steps:
        if self.enabled:
            self._status = console.status("starting…")
            self._status.__enter__()
        return self

    def __call__(self, message: str) -> None:
        if self._last is not None:
            console.print(f"[green]✓[/] {self._last}", highlight=False)
        self._last = message
        if self._status is not None:
            self._status.update(message + "…")

    def __exit__(self, exc_type, *_exc) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)
        if self._last is not None and exc_type is None:
            console.print(f"[green]✓[/] {self._last}", highlight=False)


class _KeyValues:
    """Key/value summary lines that are never wrapped or cut (paths must stay copy-pasteable)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add_row(self, key: str, value: str) -> None:
        self.rows.append((key, value))

    def __rich__(self):
        from rich.text import Text

        width = max((len(k) for k, _ in self.rows), default=0)
        text = Text(no_wrap=True, overflow="ignore")
        for i, (key, value) in enumerate(self.rows):
            text.append(f"{key:<{width}}  ", style="bold")
            text.append_text(Text.from_markup(value))
            if i < len(self.rows) - 1:
                text.append("\n")
        return text


def print_ingest_summary(summary: dict) -> None:
    """A one-screen human summary of an ingest (stderr, so --json stdout stays clean)."""

    ok = summary["status"] == "accepted"
    table = _KeyValues()
    table.add_row("ingest", summary["ingest_id"])
    table.add_row("status", "[green]accepted[/]" if ok else "[red]rejected[/]")
    table.add_row(
        "rows",
        f"{summary['rows_total']:,} total, {summary['rows_accepted']:,} accepted, "
        f"{summary['rows_quarantined']:,} quarantined",
    )
    if summary.get("dataset_version"):
        splits = summary.get("splits") or {}
        table.add_row(
            "dataset",
            f"{summary['dataset_version']}  ({', '.join(f'{k} {v}' for k, v in splits.items())})",
        )
    table.add_row("report", str(summary["report_html"]))
    table.add_row("summary", str(summary["summary_json"]))
    if summary.get("quarantine_uri"):
        table.add_row("quarantine", str(summary["quarantine_uri"]))
    console.print(table)
    problems = summary.get("problems") or []
    for line in problems[:8]:
        console.print(f"  [yellow]•[/] {line}", highlight=False)
    if len(problems) > 8:
        console.print(f"  … and {len(problems) - 8} more (see the report)")


@app.command()
@handle_errors
def ingest(
    source: SourceOption = None,
    env: EnvOption = "dev",
    as_json: JsonOption = False,
    refresh: Annotated[bool, typer.Option(help="Re-download a cached URL source.")] = False,
    max_mb: Annotated[
        float | None, typer.Option("--max-mb", help="Largest batch accepted, in MB (default 50).")
    ] = None,
) -> None:
    """Validate one batch with the data contract and write its data-quality report.

    Exit codes: 0 accepted, 1 rejected by validation, 2 source/usage error.
    """
    from jobs.adapters.settings import UCI_ABALONE_URL, FetchLimits, load_settings
    from jobs.ingestion.ingest import ingest as run_ingest
    from jobs.ingestion.ingest import rejection_reason

    overrides = {}
    if max_mb is not None:
        if max_mb <= 0:
            from jobs.core.errors import UsageError

            raise UsageError("--max-mb must be positive")
        overrides["fetch"] = FetchLimits(max_bytes=int(max_mb * 1024 * 1024))
    settings = load_settings(env, **overrides)  # type: ignore[arg-type]
    with _Steps(enabled=not as_json) as steps:
        result = run_ingest(settings, source or UCI_ABALONE_URL, refresh=refresh, progress=steps)
    summary = result.summary
    show(summary, as_json, print_ingest_summary)
    if not result.ok:
        first = rejection_reason(summary)
        console.print(f"[bold red]rejected:[/] {first}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def print_run_summary(result: dict) -> None:
    """One screen: data quality, run, metrics, champion vs candidate, gate decision with reasons."""

    ing = result["ingest"]
    gate = result.get("gate") or {}
    table = _KeyValues()
    dq = "[green]passed[/]" if ing["status"] == "accepted" else "[red]rejected[/]"
    table.add_row(
        "data quality",
        f"{dq}  {ing['rows_accepted']:,}/{ing['rows_total']:,} rows accepted, "
        f"{ing['rows_quarantined']:,} quarantined",
    )
    table.add_row("report", str(ing["report_html"]))
    if ing.get("dataset_version"):
        table.add_row("dataset", ing["dataset_version"])
    if result.get("run_id"):
        table.add_row("mlflow run", f"{result['run_id']}  ({result.get('tracking_uri')})")
    metrics = result.get("metrics") or {}
    if metrics:
        shown = ", ".join(
            f"{k} {metrics[k]:.3f}"
            for k in ("test_rmse", "test_mae", "test_r2", "val_rmse")
            if k in metrics
        )
        table.add_row("metrics", shown)
    if result.get("model_version"):
        table.add_row("candidate", f"abalone-age v{result['model_version']}")
    if gate:
        colour = {"promote": "green", "awaiting_approval": "yellow"}.get(gate["decision"], "red")
        table.add_row("gate", f"[bold {colour}]{gate['decision']}[/]")
    table.add_row(
        "champion",
        f"v{result['champion_version']}" if result.get("champion_version") else "none",
    )
    console.print(table)
    for reason in gate.get("reasons", []):
        mark = "[green]✓[/]" if reason.startswith("PASS") else "[red]✗[/]"
        console.print(
            f"  {mark} {reason.split(' ', 1)[1] if ' ' in reason else reason}", highlight=False
        )


def _run_on_aws(source: str, stack: str, *, direct: bool, as_json: bool) -> None:
    """Submit a batch to a deployed stack's pipeline and follow the execution to its end."""
    from jobs.aws import launcher

    resources = launcher.resolve_stack(stack)
    submitted = launcher.submit(resources, source, direct=direct)
    if not as_json:
        where = f"s3://{submitted.bucket}/{submitted.key}"
        console.print(
            f"{'uploaded to' if submitted.uploaded else 'started on'} {where}; "
            f"execution {submitted.execution_arn}",
            highlight=False,
        )
    done = launcher.follow(submitted.execution_arn, on_step=None if as_json else print_aws_step)
    show(done.to_dict() if as_json else done, as_json, print_execution_status)
    if not done.ok:
        raise typer.Exit(1)


@app.command()
@handle_errors
def run(
    source: SourceOption = None,
    env: EnvOption = "dev",
    as_json: JsonOption = False,
    refresh: Annotated[bool, typer.Option(help="Re-download a cached URL source.")] = False,
    target: Annotated[
        str, typer.Option("--target", help="local (this machine) or aws (a deployed stack).")
    ] = "local",
    stack: Annotated[
        str, typer.Option("--stack", help="With --target aws: the Pulumi stack to run on.")
    ] = "dev",
    direct: Annotated[
        bool,
        typer.Option(
            "--direct",
            help="With --target aws: SRC is already an s3:// object in the data bucket; "
            "start an execution on it instead of uploading to raw/.",
        ),
    ] = False,
) -> None:
    """The main job: ingest → validate → train → evaluate → register → gate → promote.

    Exit codes: 0 promoted, 1 rejected (data or gate) or awaiting approval, 2 usage/source/service error.
    """
    from jobs.adapters.settings import UCI_ABALONE_URL

    if target == "aws":
        _run_on_aws(source or UCI_ABALONE_URL, stack, direct=direct, as_json=as_json)
        return
    if target != "local":
        from jobs.core.errors import UsageError

        raise UsageError(f"--target {target!r}: choose local or aws")
    from jobs.pipeline import run_pipeline

    settings = _settings(env)
    try:
        with _Steps(enabled=not as_json) as steps:
            result = run_pipeline(
                settings, source or UCI_ABALONE_URL, refresh=refresh, progress=steps
            )
    except AbaloneError as err:
        partial = getattr(err, "result", None)
        if partial is not None:
            show(partial.to_dict(), as_json, print_run_summary)
        raise
    show(result.to_dict(), as_json, print_run_summary)
    if not result.ok:
        raise typer.Exit(1)


# ---- training, registry and gate (issue 3) ---------------------------------------------------------


def print_gate_summary(payload: dict) -> None:
    """Version, gate decision with every reason, and where the aliases point now."""
    gate = payload["gate"]
    colour = {"promote": "green", "awaiting_approval": "yellow"}.get(gate["decision"], "red")
    console.print(
        f"abalone-age v{payload['model_version']}: gate [bold {colour}]{gate['decision']}[/]",
        highlight=False,
    )
    for reason in gate["reasons"]:
        mark = "[green]✓[/]" if reason.startswith("PASS") else "[red]✗[/]"
        console.print(f"  {mark} {reason.split(' ', 1)[1]}", highlight=False)
    champion = payload.get("champion_version")
    previous = payload.get("previous_version")
    console.print(
        f"@champion → {'v' + champion if champion else 'none'}, "
        f"@previous → {'v' + previous if previous else 'none'}",
        highlight=False,
    )


@app.command()
@handle_errors
def train(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Curated dataset version (default: the latest ingest)."),
    ] = None,
    env: EnvOption = "dev",
    as_json: JsonOption = False,
) -> None:
    """Train on a curated dataset version (python -m jobs.train), register it as @challenger.

    Exit codes: 0 trained and registered, 2 usage/service error. Run `abalone promote` to gate it.
    """
    from datetime import UTC, datetime

    from jobs.adapters.lake import Lake
    from jobs.adapters.tracking import check_tracking
    from jobs.training.launcher import prepare_channels, run_subprocess

    settings = _settings(env)
    check_tracking(settings.tracking_uri)
    version = dataset or Lake.open(settings.lake).latest_dataset()
    workdir = settings.home / "jobs" / f"train-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    with _Steps(enabled=not as_json) as steps:
        steps(f"preparing channels for {version}")
        channels = prepare_channels(settings, version, workdir)
        steps(f"training on {version} (python -m jobs.train)")
        result = run_subprocess(settings, channels, workdir=workdir)
    payload = {
        "dataset_version": result.dataset_version,
        "run_id": result.run_id,
        "model_version": result.model_version,
        "metrics": result.metrics,
        "params": result.params,
        "workdir": str(workdir),
        "tracking_uri": settings.tracking_uri,
    }
    if as_json:
        print_json(payload)
        return
    m = result.metrics
    console.print(
        f"run {result.run_id}: test rmse {m['test_rmse']:.3f}, mae {m['test_mae']:.3f}, "
        f"r2 {m['test_r2']:.3f} (val rmse {m['val_rmse']:.3f})",
        highlight=False,
    )
    console.print(
        f"registered abalone-age v{result.model_version} as @challenger; gate it with "
        f"`abalone promote --version {result.model_version} --env {settings.env}`",
        highlight=False,
    )


@app.command()
@handle_errors
def promote(
    version: Annotated[
        str | None, typer.Option("--version", help="Model version (default: @challenger).")
    ] = None,
    env: EnvOption = "dev",
    as_json: JsonOption = False,
) -> None:
    """Re-evaluate the promotion gate for a version (e.g. after approval); promote it on pass.

    Exit codes: 0 promoted, 1 rejected or awaiting approval, 2 usage/service error.
    """
    from jobs.promotion.service import reevaluate

    settings = _settings(env)
    with _Steps(enabled=not as_json) as steps:
        steps(f"evaluating the gate for {'v' + version if version else '@challenger'}")
        decision, aliases = reevaluate(settings, version)
    payload = {
        "model_version": decision.inputs.candidate_version,
        "gate": decision.to_dict(),
        "champion_version": aliases.champion,
        "previous_version": aliases.previous,
    }
    show(payload, as_json, print_gate_summary)
    if not decision.passed:
        raise typer.Exit(1)


@app.command()
@handle_errors
def approve(
    version: Annotated[str, typer.Argument(help="Model version to approve.")],
    by: Annotated[str, typer.Option("--by", help="Who approves (recorded as approved_by).")],
    env: EnvOption = "dev",
) -> None:
    """Record a person's approval on a version (tags approval=approved, approved_by)."""
    from jobs.adapters.tracking import Registry, check_tracking

    settings = _settings(env)
    check_tracking(settings.tracking_uri)
    Registry.from_settings(settings).approve(version, by)
    console.print(
        f"approved abalone-age v{version} by {by.strip()}; promote it with "
        f"`abalone promote --version {version} --env {settings.env}`",
        highlight=False,
    )


@app.command()
@handle_errors
def rollback(env: EnvOption = "dev", as_json: JsonOption = False) -> None:
    """Point @champion back at @previous."""
    from jobs.adapters.tracking import Registry, check_tracking

    settings = _settings(env)
    check_tracking(settings.tracking_uri)
    registry = Registry.from_settings(settings)
    before = registry.alias("champion")
    aliases = registry.rollback()
    payload = {
        "rolled_back_from": before,
        "champion_version": aliases.champion,
        "previous_version": aliases.previous,
    }
    if as_json:
        print_json(payload)
        return
    console.print(
        f"@champion → v{aliases.champion} (was v{before}); "
        f"@previous → {'v' + aliases.previous if aliases.previous else 'none'}",
        highlight=False,
    )


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
    capture: Annotated[
        bool, typer.Option("--capture/--no-capture", help="Append data-capture records.")
    ] = True,
    env: EnvOption = "dev",
) -> None:
    """Serve a model on the SageMaker contract: GET /ping, POST /invocations; runs until Ctrl-C."""
    from pydantic import ValidationError

    from jobs.core.errors import UsageError
    from jobs.serving.server import ServeLimits, create_app, load_serving_model, run_server

    settings = _settings(env)
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port")
    try:
        limits = ServeLimits(max_body_bytes=int(max_body_mb * 1024 * 1024), max_rows=max_rows)
    except ValidationError as err:
        raise UsageError("--max-body-mb and --max-rows must be positive") from err
    if "://" in model or model.startswith(("models:", "runs:")):
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
    import socket
    import subprocess

    from jobs.core.errors import ServiceError, UsageError

    if stack is not None:
        from jobs.aws import launcher

        out.print(launcher.mlflow_ui_url(launcher.resolve_stack(stack)), soft_wrap=True)
        return
    settings = _settings("dev")
    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        out.print(f"MLflow is already served at {uri}")
        return
    if not uri.startswith("sqlite:///"):
        raise UsageError(f"abalone ui serves a sqlite:/// store; MLFLOW_TRACKING_URI is {uri}")
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port")
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            raise UsageError(f"port {port} on 127.0.0.1 is in use; pass --port") from err
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
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_ready(f"{url}/health", proc, log_path)
            out.print(f"MLflow UI: {url}", highlight=False)
            console.print(f"store {uri}; log {log_path}; Ctrl-C to stop", highlight=False)
            code = proc.wait()
            if code != 0:
                raise ServiceError(f"mlflow server exited with {code}; see {log_path}")
        except KeyboardInterrupt:
            console.print("stopping MLflow UI")
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _wait_ready(url: str, proc, log_path, timeout_s: float = 90.0) -> None:
    import time

    import httpx

    from jobs.core.errors import ServiceError

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


# ---- monitor (drift) ------------------------------------------------------------------------------


def print_monitor_summary(summary: dict) -> None:
    """One screen: verdict, drifting columns, per-column PSI, data quality, report paths."""

    colour = {"drift": "red", "ok": "green"}.get(summary["status"], "yellow")
    cap = summary["capture"]
    table = _KeyValues()
    table.add_row("drift", f"[bold {colour}]{summary['status']}[/]  {summary['message']}")
    table.add_row(
        "captured",
        f"{cap['rows']:,} rows, {cap['records']:,} records, {cap['files']} file(s)"
        + (f", {cap['skipped_lines']} unreadable lines skipped" if cap["skipped_lines"] else ""),
    )
    ref = summary["reference"]
    table.add_row(
        "reference",
        ref["source"] + (f" (version {ref['model_version']})" if ref.get("model_version") else ""),
    )
    detail = summary["drift_detail"]
    columns = {
        **detail["features"],
        **({"prediction": detail["prediction"]} if detail["prediction"] else {}),
    }
    shown = []
    for name, f in columns.items():
        mark = {"drift": "red", "warn": "yellow", "ok": "green"}.get(f["status"], "dim")
        psi = "-" if f.get("psi") is None else f"{f['psi']:.3f}"
        shown.append(f"[{mark}]{name} {psi}[/]")
    table.add_row("PSI", "  ".join(shown))
    quality = summary.get("data_quality")
    if quality:
        q = "[green]passed[/]" if quality["status"] == "passed" else "[red]failed[/]"
        table.add_row("data quality", f"{q}  {quality['rows_flagged']:,} rows flagged")
    if summary.get("note"):
        table.add_row("note", summary["note"])
    table.add_row("report", str(summary["report_html"]))
    table.add_row("summary", str(summary["summary_json"]))
    retrained = summary.get("retrain")
    if retrained:
        if retrained.get("skipped"):
            table.add_row("retrain", f"skipped: {retrained['skipped']}")
        elif retrained.get("error"):
            table.add_row("retrain", f"[red]failed:[/] {retrained['error']}")
        else:
            gate = (retrained.get("gate") or {}).get("decision", "?")
            table.add_row(
                "retrain",
                f"version {retrained.get('model_version')} on "
                f"{retrained['retrained_on']['dataset_version']}: gate {gate}",
            )
    console.print(table)


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
    from jobs.core.drift import Thresholds
    from jobs.monitoring.monitor import monitor as run_monitor
    from jobs.pipeline import retrain_safely

    settings = _settings(env)
    thresholds = Thresholds.from_policy(settings.policy, min_rows=min_rows)
    with _Steps(enabled=not as_json) as steps:
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


# ---- AWS: status and reports of a deployed stack (jobs.aws.launcher) -------------------------------

StackOption = Annotated[
    str,
    typer.Option("--stack", help="Deployed stack; resources come from /abalone/<stack>/ in SSM."),
]
_POLL_STATES = ("WaitFor", "Get", "Check", "Is", "Count")


def print_aws_step(step) -> None:
    """One finished state of a pipeline execution (poll-loop passes are shown once per state)."""
    mark = "[green]✓[/]" if step.status == "succeeded" else "[red]✗[/]"
    took = f" ({step.seconds:.1f}s)" if step.seconds is not None else ""
    line = f"{mark} {step.name}{took}"
    if step.error:
        line += f"  [red]{step.error}[/]" + (f": {step.cause[:200]}" if step.cause else "")
    console.print(line, highlight=False, soft_wrap=True)


def print_execution_status(current) -> None:
    """A one-screen summary of a pipeline execution (``jobs.aws.launcher.ExecutionStatus``)."""
    seen: set[str] = set()
    for step in current.steps:
        if step.name.startswith(_POLL_STATES) and step.name in seen and step.status != "failed":
            continue
        seen.add(step.name)
        if step.status == "running":
            console.print(f"[yellow]…[/] {step.name} (running)", highlight=False)
        else:
            print_aws_step(step)
    colour = {"SUCCEEDED": "green", "RUNNING": "yellow"}.get(current.status, "red")
    table = _KeyValues()
    table.add_row("execution", current.arn)
    table.add_row("status", f"[{colour}]{current.status}[/]")
    if current.error:
        table.add_row("error", f"{current.error}: {current.cause or ''}")
    if current.output is not None:
        for key, value in current.summary().items():
            if value is not None and key != "reasons":
                table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    for reason in (current.summary().get("reasons") or []) if current.output else []:
        console.print(f"  • {reason}", highlight=False)


@app.command("status")
@handle_errors
def status_command(
    stack: StackOption = "dev",
    execution: Annotated[
        str | None,
        typer.Option("--execution", help="Execution ARN (default: the stack's latest execution)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a pipeline execution on AWS with each state's progress.

    Exit codes: 0 succeeded or still running, 1 failed/timed out/aborted, 2 usage/service error.
    """
    from jobs.aws import launcher

    if execution is None:
        execution = launcher.latest_execution(launcher.resolve_stack(stack))
    current = launcher.status(execution)
    show(current.to_dict() if as_json else current, as_json, print_execution_status)
    if current.done and not current.ok:
        raise typer.Exit(1)


@app.command("reports")
@handle_errors
def reports_command(
    stack: StackOption = "dev",
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N reports.")] = 10,
    expires: Annotated[
        int, typer.Option("--expires", min=60, help="Seconds the presigned links stay valid.")
    ] = 3600,
    as_json: JsonOption = False,
) -> None:
    """List the stack's data-quality reports with presigned links (the buckets stay private)."""
    from jobs.aws import launcher

    reports = launcher.list_reports(launcher.resolve_stack(stack), limit=limit, expires_s=expires)
    if as_json:
        print_json([r.to_dict() for r in reports])
        return
    if not reports:
        console.print(f"no data-quality reports in stack {stack!r} yet")
        return
    for report in reports:
        colour = "green" if report.status == "accepted" else "red"
        console.print(
            f"[bold]{report.ingest_id}[/]  [{colour}]{report.status or '?'}[/]  "
            f"{report.rows_total if report.rows_total is not None else '?'} rows"
            + (f"  {report.dataset_version}" if report.dataset_version else ""),
            highlight=False,
        )
        out.print(
            f"  report   {report.report_url or '(no Data Docs)'}", highlight=False, soft_wrap=True
        )
        out.print(f"  summary  {report.summary_url}", highlight=False, soft_wrap=True)
