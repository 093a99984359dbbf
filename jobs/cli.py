"""The ``abalone`` command line (Typer + rich). Thin edge: parse flags, load settings, call the core,
print a summary. Exit codes: 0 ok, 1 rejected (validation, gate), 2 usage/config/source/service error.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from jobs.errors import AbaloneError

app = typer.Typer(
    name="abalone",
    help="abalone-mlops: validated ingest, MLflow-gated training, serving and drift monitoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

EnvOption = Annotated[str, typer.Option("--env", help="Stack whose thresholds apply: dev or prd.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


def _quiet_libraries() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mlflow.tracking.request_header.registry", "great_expectations", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


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


def _settings(env: str):
    from jobs.settings import load_settings

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


def print_ingest_summary(summary: dict) -> None:
    """A one-screen human summary of an ingest (stderr, so --json stdout stays clean)."""
    from rich.table import Table

    ok = summary["status"] == "accepted"
    table = Table(show_header=False, box=None, padding=(0, 1))
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
    from jobs.ingest import ingest as run_ingest
    from jobs.settings import UCI_ABALONE_URL, FetchLimits, load_settings

    overrides = {}
    if max_mb is not None:
        if max_mb <= 0:
            from jobs.errors import UsageError

            raise UsageError("--max-mb must be positive")
        overrides["fetch"] = FetchLimits(max_bytes=int(max_mb * 1024 * 1024))
    settings = load_settings(env, **overrides)  # type: ignore[arg-type]
    with _Steps(enabled=not as_json) as steps:
        result = run_ingest(settings, source or UCI_ABALONE_URL, refresh=refresh, progress=steps)
    summary = result.summary
    if as_json:
        print_json(summary)
    else:
        print_ingest_summary(summary)
    if not result.ok:
        first = (summary.get("problems") or ["batch failed the data contract"])[0]
        console.print(f"[bold red]rejected:[/] {first}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


# ---- monitor (drift) ------------------------------------------------------------------------------


def print_monitor_summary(summary: dict) -> None:
    """One screen: verdict, drifting columns, per-column PSI, data quality, report paths."""
    from rich.table import Table

    colour = {"drift": "red", "ok": "green"}.get(summary["status"], "yellow")
    cap = summary["capture"]
    table = Table(show_header=False, box=None, padding=(0, 1))
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
    from jobs.drift import Thresholds
    from jobs.monitor import monitor as run_monitor

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
            progress=steps,
        )
    if as_json:
        print_json(result.summary)
    else:
        print_monitor_summary(result.summary)
    if result.drifting:
        raise typer.Exit(1)
