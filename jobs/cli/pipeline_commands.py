"""Pipeline commands: ``ingest``, ``run`` (local or ``--target aws``), ``train``, ``promote``,
``approve``, ``rollback``. Each parses flags, loads settings, calls one service, prints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from jobs.adapters.fetch import resolve_source
from jobs.adapters.settings import load_settings, megabytes
from jobs.cli.app import (
    EnvOption,
    JsonOption,
    SourceOption,
    app,
    console,
    handle_errors,
    print_json,
    settings_for,
    show,
)
from jobs.cli.render import (
    Steps,
    print_aws_step,
    print_execution_status,
    print_gate_summary,
    print_ingest_summary,
    print_run_summary,
)
from jobs.core.errors import AbaloneError, UsageError
from jobs.core.redact import redact


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
    # lazy: MLflow, Great Expectations, scikit-learn and pandas take seconds to import
    from jobs.ingestion.ingest import ingest as run_ingest
    from jobs.ingestion.ingest import rejection_reason

    settings = load_settings(env)
    if max_mb is not None:
        limits = settings.fetch.model_copy(update={"max_bytes": megabytes(max_mb, "--max-mb")})
        settings = settings.model_copy(update={"fetch": limits})
    batch = resolve_source(source)
    with Steps(enabled=not as_json) as steps:
        result = run_ingest(settings, batch, refresh=refresh, progress=steps)
    summary = result.summary
    show(summary, as_json, print_ingest_summary)
    if not result.ok:
        first = rejection_reason(summary)
        console.print(f"[bold red]rejected:[/] {first}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _run_on_aws(source: str, stack: str, *, direct: bool, as_json: bool) -> None:
    """Submit a batch to a deployed stack's pipeline and follow the execution to its end."""
    from jobs.aws import launcher  # lazy: boto3 and pandas, only for AWS commands

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
    batch = resolve_source(source)
    if target == "aws":
        _run_on_aws(batch, stack, direct=direct, as_json=as_json)
        return
    if target != "local":
        raise UsageError(f"--target {target!r}: choose local or aws")
    # lazy: MLflow, Great Expectations, scikit-learn and pandas take seconds to import
    from jobs.pipeline import run_pipeline

    settings = settings_for(env)
    try:
        with Steps(enabled=not as_json) as steps:
            result = run_pipeline(settings, batch, refresh=refresh, progress=steps)
    except AbaloneError as err:
        partial = getattr(err, "result", None)
        if partial is not None:
            show(partial.to_dict(), as_json, print_run_summary)
        raise
    show(result.to_dict(), as_json, print_run_summary)
    if not result.ok:
        raise typer.Exit(1)


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
    # lazy: MLflow, Great Expectations, scikit-learn and pandas take seconds to import
    from jobs.adapters.lake import Lake
    from jobs.adapters.tracking import check_tracking
    from jobs.adapters.tracking_runs import recover_store
    from jobs.training.launcher import prepare_channels, run_subprocess

    settings = settings_for(env)
    check_tracking(settings.tracking_uri)
    recover_store(settings)
    version = dataset or Lake.open(settings.lake).latest_dataset()
    workdir = settings.home / "jobs" / f"train-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    with Steps(enabled=not as_json) as steps:
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
        "tracking_uri": redact(settings.tracking_uri),
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
    # lazy: MLflow, Great Expectations, scikit-learn and pandas take seconds to import
    from jobs.promotion.service import reevaluate

    settings = settings_for(env)
    with Steps(enabled=not as_json) as steps:
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
    # lazy: MLflow, Great Expectations, scikit-learn and pandas take seconds to import
    from jobs.adapters.tracking import Registry, check_tracking

    settings = settings_for(env)
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
    # lazy: MLflow, Great Expectations, scikit-learn and pandas take seconds to import
    from jobs.adapters.locking import store_lock
    from jobs.adapters.tracking import Registry, check_tracking

    settings = settings_for(env)
    check_tracking(settings.tracking_uri)
    registry = Registry.from_settings(settings)
    with store_lock(settings.tracking_uri, settings.home):  # no promotion moves aliases meanwhile
        if repaired := registry.repair():
            typer.echo(repaired, err=True)
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
