"""Start, follow and inspect a stack's pipeline on AWS (what ``abalone run --target aws``,
``abalone status``, ``abalone ui --stack`` and ``abalone reports`` call).

Resource names are never hard-coded: they come from the SSM parameters the Pulumi program writes
under ``/abalone/<stack>/`` (``components/abalone_mlops.py``: one parameter per stack output, named
in kebab case, e.g. ``/abalone/dev/state-machine-arn``).

Starting a run: :func:`submit` uploads the batch to the data bucket's ``raw/`` prefix under a new,
flat key (``raw/<UTC stamp>-<name>``), which the stack's EventBridge rule turns into an execution;
it then finds that execution. With ``direct=True`` it starts the execution itself for an object
already in S3 (no upload, so no second, triggered run).

Nothing here prints: progress goes to a callback; the CLI renders it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from jobs.adapters.lake import Lake
from jobs.core.errors import ServiceError, SourceError, UsageError

log = logging.getLogger(__name__)

PARAMETER_ROOT = "/abalone"
#: SSM parameter (under /abalone/<stack>/) → StackResources field. Written by components/abalone_mlops.py.
PARAMETERS: dict[str, str] = {
    "data-bucket": "data_bucket",
    "artifacts-bucket": "artifacts_bucket",
    "reports-bucket": "reports_bucket",
    "state-machine-arn": "state_machine_arn",
    "tracking-server-arn": "tracking_server_arn",
    "tracking-server-name": "tracking_server_name",
    "tracking-server-url": "tracking_server_url",
    "staging-endpoint": "staging_endpoint",
    "production-endpoint": "production_endpoint",
    "alerts-topic-arn": "alerts_topic_arn",
    "dashboard-url": "dashboard_url",
}
REQUIRED = ("data-bucket", "reports-bucket", "state-machine-arn", "tracking-server-arn")
STACK_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")

Progress = Callable[["StateStep"], None]


# ---- stack resources ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackResources:
    stack: str
    data_bucket: str
    reports_bucket: str
    state_machine_arn: str
    tracking_server_arn: str
    artifacts_bucket: str | None = None
    tracking_server_name: str | None = None
    tracking_server_url: str | None = None
    staging_endpoint: str | None = None
    production_endpoint: str | None = None
    alerts_topic_arn: str | None = None
    dashboard_url: str | None = None

    @property
    def region(self) -> str | None:
        parts = self.state_machine_arn.split(":")
        return parts[3] if len(parts) > 3 and parts[3] else None


def _client(service: str, region: str | None = None):
    import boto3

    return boto3.client(service, region_name=region) if region else boto3.client(service)


def _aws_error(what: str, err: Exception) -> ServiceError:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return ServiceError(f"{what}: {error.get('Code', '?')}: {error.get('Message', '')}".strip())
    return ServiceError(f"{what}: {err}")


def _call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as err:
        raise _aws_error(what, err) from err


def resolve_stack(stack: str, *, ssm: Any = None) -> StackResources:
    """The stack's resources from its SSM parameters ``/abalone/<stack>/…``."""
    if not STACK_RE.match(stack or ""):
        raise UsageError(f"invalid stack name {stack!r}")
    ssm = ssm or _client("ssm")
    path = f"{PARAMETER_ROOT}/{stack}/"
    found: dict[str, str] = {}
    token = None
    while True:
        kwargs: dict[str, Any] = {"Path": path, "Recursive": False}
        if token:
            kwargs["NextToken"] = token
        page = _call(f"reading SSM parameters {path}", ssm.get_parameters_by_path, **kwargs)
        for param in page.get("Parameters", []):
            found[param["Name"][len(path) :]] = param["Value"]
        token = page.get("NextToken")
        if not token:
            break
    missing = [name for name in REQUIRED if not found.get(name)]
    if missing:
        raise UsageError(
            f"stack {stack!r} is not deployed or incomplete: missing SSM parameter(s) "
            f"{', '.join(path + m for m in missing)} (run `pulumi up -s {stack}`)"
        )
    values = {PARAMETERS[k]: v for k, v in found.items() if k in PARAMETERS}
    return StackResources(stack=stack, **values)


# ---- starting a run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    bucket: str
    key: str
    execution_arn: str
    uploaded: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def raw_key(name: str, now: datetime | None = None) -> str:
    """A new flat key under the lake's ``raw/`` trigger prefix (:meth:`Lake.upload_key`)."""
    return Lake.upload_key(name, now)


def upload_batch(
    resources: StackResources,
    source: str,
    *,
    s3: Any = None,
    max_bytes: int = 50 * 1024 * 1024,
) -> str:
    """Read ``source`` (path, URL or ``s3://``) and put it under the data bucket's ``raw/``."""
    from jobs.adapters.fetch import fetch
    from jobs.adapters.settings import FetchLimits

    s3 = s3 or _client("s3", resources.region)
    fetched = fetch(source, limits=FetchLimits(max_bytes=max_bytes), s3_client=s3)
    key = raw_key(fetched.name)
    _call(
        f"uploading to s3://{resources.data_bucket}/{key}",
        s3.put_object,
        Bucket=resources.data_bucket,
        Key=key,
        Body=fetched.data,
        IfNoneMatch="*",
        Metadata={"source-sha256": fetched.sha256},
    )
    log.info(
        "uploaded %s (%d bytes) to s3://%s/%s", source, fetched.size, resources.data_bucket, key
    )
    return key


def start_execution(
    resources: StackResources, bucket: str, key: str, *, sfn: Any = None, name: str | None = None
) -> str:
    """StartExecution with the input the EventBridge rule sends: ``{"bucket", "key"}``."""
    sfn = sfn or _client("stepfunctions", resources.region)
    kwargs: dict[str, Any] = {
        "stateMachineArn": resources.state_machine_arn,
        "input": json.dumps({"bucket": bucket, "key": key}),
    }
    if name:
        kwargs["name"] = name
    return _call("starting the pipeline", sfn.start_execution, **kwargs)["executionArn"]


def find_execution(
    resources: StackResources,
    key: str,
    *,
    sfn: Any = None,
    timeout_s: float = 120.0,
    poll_s: float = 2.0,
) -> str:
    """The execution the trigger started for ``key`` (waits up to ``timeout_s``)."""
    sfn = sfn or _client("stepfunctions", resources.region)
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    while True:
        page = _call(
            "listing executions",
            sfn.list_executions,
            stateMachineArn=resources.state_machine_arn,
            maxResults=50,
        )
        for ex in page.get("executions", []):
            arn = ex["executionArn"]
            if arn in seen:
                continue
            seen.add(arn)
            desc = _call("describing an execution", sfn.describe_execution, executionArn=arn)
            try:
                payload = json.loads(desc.get("input") or "{}")
            except ValueError:
                continue
            if payload.get("key") == key and payload.get("bucket") == resources.data_bucket:
                return arn
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"no execution of {resources.state_machine_arn} started for "
                f"s3://{resources.data_bucket}/{key} within {timeout_s:.0f}s; is the stack's "
                "EventBridge rule enabled? (or start it with --direct)"
            )
        time.sleep(poll_s)


def submit(
    resources: StackResources,
    source: str,
    *,
    direct: bool = False,
    s3: Any = None,
    sfn: Any = None,
    find_timeout_s: float = 120.0,
    poll_s: float = 2.0,
) -> Submitted:
    """Start the pipeline on ``source``.

    Default: upload it under ``raw/`` (any source: path, URL, ``s3://``) and return the execution
    the stack's trigger started. ``direct=True``: ``source`` must already be an ``s3://`` object in
    the data bucket; the execution is started directly, nothing is uploaded.
    """
    if direct:
        parsed = urlparse(source)
        key = parsed.path.lstrip("/")
        if parsed.scheme != "s3" or not key:
            raise UsageError("--direct needs an s3://bucket/key source already in S3")
        if parsed.netloc != resources.data_bucket:
            raise UsageError(
                f"--direct needs an object in the stack's data bucket {resources.data_bucket}, "
                f"not {parsed.netloc}"
            )
        arn = start_execution(resources, parsed.netloc, key, sfn=sfn)
        return Submitted(parsed.netloc, key, arn, uploaded=False)
    key = upload_batch(resources, source, s3=s3)
    arn = find_execution(resources, key, sfn=sfn, timeout_s=find_timeout_s, poll_s=poll_s)
    return Submitted(resources.data_bucket, key, arn, uploaded=True)


# ---- following and status ------------------------------------------------------------------------


@dataclass
class StateStep:
    """One state of an execution: entered, then succeeded or failed (poll loops appear once per pass)."""

    name: str
    status: str  # running | succeeded | failed
    entered_at: datetime | None = None
    exited_at: datetime | None = None
    error: str | None = None
    cause: str | None = None
    event_id: int = 0

    @property
    def seconds(self) -> float | None:
        if self.entered_at and self.exited_at:
            return (self.exited_at - self.entered_at).total_seconds()
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "entered_at": self.entered_at.isoformat() if self.entered_at else None,
            "exited_at": self.exited_at.isoformat() if self.exited_at else None,
            "seconds": self.seconds,
            "error": self.error,
            "cause": self.cause,
        }


@dataclass
class ExecutionStatus:
    arn: str
    name: str
    status: str
    started_at: datetime | None
    stopped_at: datetime | None
    steps: list[StateStep] = field(default_factory=list)
    error: str | None = None
    cause: str | None = None
    output: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == "SUCCEEDED"

    def summary(self) -> dict[str, Any]:
        """The figures people look for in the output: validation, model version, gate, champion."""
        out = self.output or {}
        result = (out.get("validation") or {}).get("Result") or {}
        promote = (out.get("promote") or {}).get("output") or {}
        gate = (out.get("gate") or {}).get("output") or {}
        system_test = (out.get("system_test") or {}).get("output") or {}
        return {
            "ingest_id": result.get("ingest_id"),
            "data_quality": result.get("status"),
            "dataset_version": result.get("dataset_version"),
            "report_html": result.get("report_html"),
            "model_version": promote.get("model_version") or gate.get("model_version"),
            "system_test_rmse": system_test.get("rmse"),
            "gate": promote.get("decision") or gate.get("decision"),
            "reasons": promote.get("reasons") or gate.get("reasons"),
            "champion_version": promote.get("champion_version"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_arn": self.arn,
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "error": self.error,
            "cause": self.cause,
            "states": [s.to_dict() for s in self.steps],
            "summary": self.summary() if self.output is not None else None,
        }


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = _call("reading the execution history", sfn.get_execution_history, **kwargs)
        events.extend(page.get("events", []))
        token = page.get("nextToken")
        if not token:
            return events


def steps_from_history(events: Iterable[dict[str, Any]]) -> list[StateStep]:
    """Entered/exited/failed events → one :class:`StateStep` per state visit, in order."""
    steps: list[StateStep] = []
    open_step: StateStep | None = None
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        kind = event.get("type", "")
        when = event.get("timestamp")
        if entered:
            open_step = StateStep(entered["name"], "running", entered_at=when, event_id=event["id"])
            steps.append(open_step)
        elif exited and open_step is not None and exited["name"] == open_step.name:
            if open_step.status == "running":
                open_step.status = "succeeded"
            open_step.exited_at = when
            open_step = None
        elif kind.endswith("Failed") and open_step is not None:
            # a task failure inside the state (a Catch may still route on): keep the reason
            details = next((v for k, v in event.items() if k.endswith("FailedEventDetails")), {})
            open_step.status = "failed"
            open_step.error = details.get("error")
            open_step.cause = (details.get("cause") or "")[:500] or None
    return steps


def status(execution_arn: str, *, sfn: Any = None) -> ExecutionStatus:
    """An execution's state and each state's progress."""
    if not execution_arn.startswith("arn:") or ":execution:" not in execution_arn:
        raise UsageError(f"not an execution ARN: {execution_arn!r}")
    region = execution_arn.split(":")[3] or None
    sfn = sfn or _client("stepfunctions", region)
    desc = _call(f"describing {execution_arn}", sfn.describe_execution, executionArn=execution_arn)
    output = None
    if desc.get("output"):
        try:
            output = json.loads(desc["output"])
        except ValueError:
            output = None
    steps = steps_from_history(_history(sfn, execution_arn))
    if desc["status"] in TERMINAL and steps and steps[-1].status == "running":
        steps[-1].status = "succeeded" if desc["status"] == "SUCCEEDED" else "failed"
        steps[-1].exited_at = desc.get("stopDate")
    return ExecutionStatus(
        arn=execution_arn,
        name=desc.get("name", ""),
        status=desc["status"],
        started_at=desc.get("startDate"),
        stopped_at=desc.get("stopDate"),
        steps=steps,
        error=desc.get("error"),
        cause=desc.get("cause"),
        output=output,
    )


def latest_execution(resources: StackResources, *, sfn: Any = None) -> str:
    """The most recently started execution of the stack's state machine."""
    sfn = sfn or _client("stepfunctions", resources.region)
    page = _call(
        "listing executions",
        sfn.list_executions,
        stateMachineArn=resources.state_machine_arn,
        maxResults=20,
    )
    executions = sorted(page.get("executions", []), key=lambda e: e["startDate"], reverse=True)
    if not executions:
        raise UsageError(f"stack {resources.stack!r} has no pipeline executions yet")
    return executions[0]["executionArn"]


def follow(
    execution_arn: str,
    *,
    sfn: Any = None,
    on_step: Progress | None = None,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
) -> ExecutionStatus:
    """Poll until the execution ends; ``on_step`` gets each state when it finishes (or fails)."""
    region = execution_arn.split(":")[3] if execution_arn.count(":") > 3 else None
    sfn = sfn or _client("stepfunctions", region or None)
    reported: set[int] = set()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        current = status(execution_arn, sfn=sfn)
        for step in current.steps:
            if step.status != "running" and step.event_id not in reported:
                reported.add(step.event_id)
                if on_step:
                    on_step(step)
        if current.done:
            return current
        if deadline is not None and time.monotonic() >= deadline:
            raise ServiceError(
                f"{execution_arn} still {current.status} after {timeout_s:.0f}s "
                f"(last state: {current.steps[-1].name if current.steps else 'none'})"
            )
        time.sleep(poll_s)


# ---- MLflow UI and reports ------------------------------------------------------------------------


def tracking_server_name(resources: StackResources) -> str:
    if resources.tracking_server_name:
        return resources.tracking_server_name
    arn = resources.tracking_server_arn
    if ":mlflow-tracking-server/" in arn:
        return arn.rsplit("/", 1)[-1]
    raise UsageError(
        f"stack {resources.stack!r}: tracking server {arn!r} is not a SageMaker MLflow ARN and no "
        "tracking-server-name parameter is set"
    )


def mlflow_ui_url(
    resources: StackResources,
    *,
    sagemaker: Any = None,
    expires_s: int = 300,
    session_s: int = 12 * 3600,
) -> str:
    """A presigned URL to the stack's MLflow UI (valid ``expires_s`` to open, ``session_s`` after)."""
    if not 5 <= expires_s <= 300:
        raise UsageError("the presigned MLflow URL must expire within 5..300 seconds")
    if not 1800 <= session_s <= 43200:
        raise UsageError("the MLflow UI session must last 1800..43200 seconds")
    sagemaker = sagemaker or _client("sagemaker", resources.region)
    response = _call(
        "creating a presigned MLflow UI URL",
        sagemaker.create_presigned_mlflow_tracking_server_url,
        TrackingServerName=tracking_server_name(resources),
        ExpiresInSeconds=expires_s,
        SessionExpirationDurationInSeconds=session_s,
    )
    return response["AuthorizedUrl"]


@dataclass(frozen=True)
class Report:
    ingest_id: str
    status: str | None
    rows_total: int | None
    dataset_version: str | None
    summary_url: str
    report_url: str | None
    problems: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_reports(
    resources: StackResources,
    *,
    s3: Any = None,
    limit: int = 20,
    expires_s: int = 3600,
) -> list[Report]:
    """The newest data-quality reports, with presigned links (the buckets stay private)."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    if not 60 <= expires_s <= 7 * 24 * 3600:
        raise UsageError("presigned links must expire within 60 s .. 7 days")
    s3 = s3 or _client("s3", resources.region)
    bucket = resources.reports_bucket
    summaries: list[str] = []
    docs: dict[str, str] = {}
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                parts = key.split("/")
                if len(parts) == 2 and parts[1] == "summary.json":
                    summaries.append(parts[0])
                elif len(parts) >= 3 and parts[1] == "data_docs" and parts[-1] == "index.html":
                    docs.setdefault(parts[0], key)
    except Exception as err:  # botocore errors from the paginator
        raise _aws_error(f"listing s3://{bucket}", err) from err

    def presign(key: str) -> str:
        return _call(
            f"presigning s3://{bucket}/{key}",
            s3.generate_presigned_url,
            ClientMethod="get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=expires_s,
        )

    reports = []
    for ingest_id in sorted(summaries, reverse=True)[:limit]:
        key = f"{ingest_id}/summary.json"
        try:
            body = _call(f"reading s3://{bucket}/{key}", s3.get_object, Bucket=bucket, Key=key)
            summary = json.loads(body["Body"].read())
        except (ServiceError, ValueError) as err:
            log.warning("summary %s unreadable: %s", key, err)
            summary = {}
        reports.append(
            Report(
                ingest_id=ingest_id,
                status=summary.get("status"),
                rows_total=summary.get("rows_total"),
                dataset_version=summary.get("dataset_version"),
                problems=len(summary.get("problems") or []) if summary else None,
                summary_url=presign(key),
                report_url=presign(docs[ingest_id]) if ingest_id in docs else None,
            )
        )
    return reports


def check_source_exists(source: str) -> None:
    """Fail early for a local source that does not exist (before any AWS call)."""
    parsed = urlparse(source)
    if parsed.scheme in ("", "file"):
        from pathlib import Path

        path = Path(parsed.path if parsed.scheme == "file" else source)
        if not path.is_file():
            raise SourceError(f"no such file: {path}")
