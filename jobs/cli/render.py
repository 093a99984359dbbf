"""Everything the CLI prints for people: progress of long steps and the one-screen summaries
(stderr, so ``--json`` stdout stays clean). Paths and messages are never wrapped or cut."""

from __future__ import annotations

from rich.text import Text

from jobs.cli.app import console
from jobs.core.redact import redact


class Steps:
    """Rich progress for long steps: a spinner with the current step, and a log of finished ones."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and console.is_terminal
        self._status = None
        self._last: str | None = None

    def __enter__(self) -> Steps:
        if self.enabled:
            self._status = console.status("starting…")
            self._status.__enter__()
        return self

    def __call__(self, message: str) -> None:
        message = redact(message)
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


class KeyValues:
    """Key/value summary lines that are never wrapped or cut (paths must stay copy-pasteable)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add_row(self, key: str, value: str) -> None:
        self.rows.append((key, value))

    def __rich__(self):
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
    table = KeyValues()
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


def print_run_summary(result: dict) -> None:
    """One screen: data quality, run, metrics, champion vs candidate, gate decision with reasons."""

    ing = result["ingest"]
    gate = result.get("gate") or {}
    table = KeyValues()
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


def print_monitor_summary(summary: dict) -> None:
    """One screen: verdict, drifting columns, per-column PSI, data quality, report paths."""

    colour = {"drift": "red", "ok": "green"}.get(summary["status"], "yellow")
    cap = summary["capture"]
    table = KeyValues()
    table.add_row("drift", f"[bold {colour}]{summary['status']}[/]  {summary['message']}")
    table.add_row(
        "captured",
        f"{cap['rows']:,} rows, {cap['records']:,} records, {cap['files']} file(s)"
        + (f", {cap['skipped_lines']} unreadable lines skipped" if cap["skipped_lines"] else "")
        + (
            f", {cap['dropped_records']} records lost by data capture"
            if cap.get("dropped_records")
            else ""
        ),
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


def print_aws_step(step) -> None:
    """One finished state of a pipeline execution (poll-loop passes are shown once per state)."""
    mark = "[green]✓[/]" if step.status == "succeeded" else "[red]✗[/]"
    took = f" ({step.seconds:.1f}s)" if step.seconds is not None else ""
    line = f"{mark} {step.name}{took}"
    if step.error:
        line += f"  [red]{step.error}[/]" + (f": {step.cause[:200]}" if step.cause else "")
    console.print(line, highlight=False, soft_wrap=True)


_POLL_STATES = ("WaitFor", "Get", "Check", "Is", "Count")


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
    table = KeyValues()
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
