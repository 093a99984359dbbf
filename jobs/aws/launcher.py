"""Start, follow and inspect a stack's pipeline on AWS (what ``abalone run --target aws`` and
``abalone status`` call; ``abalone ui --stack`` and ``abalone reports``: :mod:`jobs.aws.reports`).

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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from jobs.adapters.fetch import fetch
from jobs.adapters.lake import Lake
from jobs.adapters.settings import FetchLimits
from jobs.aws.executions import TERMINAL, ExecutionStatus, StateStep, steps_from_history
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
    return boto3.client(service, region_name=region) if region else boto3.client(service)


def _aws_error(what: str, err: Exception) -> ServiceError:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return ServiceError(f"{what}: {error.get('Code', '?')}: {error.get('Message', '')}".strip())
    return ServiceError(f"{what}: {err}")


def _call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
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


def check_source_exists(source: str) -> None:
    """Fail early for a local source that does not exist (before any AWS call)."""
    parsed = urlparse(source)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else source)
        if not path.is_file():
            raise SourceError(f"no such file: {path}")
