"""Commands about a deployed stack: ``status`` of a pipeline execution and ``reports`` (presigned
links to the data-quality reports); resources come from the stack's SSM parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.app import JsonOption, StackOption, app, console, handle_errors, out, print_json, show
from jobs.cli.render import print_execution_status


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
    from jobs.aws import launcher  # lazy: boto3 and pandas, only for AWS commands

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
    download: Annotated[
        Path | None,
        typer.Option(
            "--download",
            help="Copy a whole report site into this directory and print the page to open "
            "(opens with no network; a presigned link shows one page without its styles).",
        ),
    ] = None,
    ingest: Annotated[
        str | None,
        typer.Option("--ingest", help="With --download: this ingest id (default newest)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the stack's data-quality reports with presigned links (the buckets stay private),
    or with --download copy one report site to this machine."""
    from jobs.aws import launcher  # lazy: boto3, pandas: AWS only
    from jobs.aws import reports as stack_reports

    resources = launcher.resolve_stack(stack)
    if download is not None:
        page = stack_reports.download_report(
            f"s3://{resources.reports_bucket}",
            download,
            ingest_id=ingest,
            s3=launcher._client("s3", resources.region),
        )
        if as_json:
            print_json({"page": str(page)})
        else:
            console.print(f"report copied; open {page}", highlight=False, soft_wrap=True)
        return
    reports = stack_reports.list_reports(resources, limit=limit, expires_s=expires)
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
