"""Lambda handlers of the training pipeline's state machine (DESIGN §6, §8); the paths the AWS stack
names (``jobs.aws.handlers.<name>``). Each is ``(event, context) -> dict``: parse the event
(:mod:`jobs.aws.events`), load settings, call the promotion service or the monitor, return what the
state machine reads.

- :func:`gate_handler` — rules 1-3 before anything is deployed → ``decision`` (``reject`` |
  ``continue``), ``model_version``, ``reasons``;
- :func:`system_test_handler` — THE system test (:mod:`jobs.promotion.systemtest`) against the
  staging endpoint through ``InvokeEndpoint`` → ``passed``, ``reasons``, ``rmse``, ``p50_ms``…;
- :func:`approval_handler` — rule 5 polling of the version tags → ``status`` (``approved`` |
  ``pending`` | ``rejected``);
- :func:`promote_handler` — the full gate under the stack's promotion lock
  (:mod:`jobs.aws.promotion_lock`; the champion is re-read and re-scored inside it), ``gate.*``
  tags, aliases moved on pass → ``decision``; :class:`PromotionBusy` while another execution
  promotes (the state machine retries the step);
- :func:`drift_handler` — the scheduled drift job (``abalone monitor`` on the endpoint's capture).

Environment: ``MLFLOW_TRACKING_URI`` (required), ``ABALONE_ENV``, ``ABALONE_LAKE`` (default
``s3://<context.data_bucket>``), ``ABALONE_STAGING_ENDPOINT``; the promote step also
``ABALONE_PROMOTION_LOCK_TABLE`` (required) and ``ABALONE_PROMOTION_LOCK_LEASE_S``; the drift job
also ``ABALONE_CAPTURE_URI``, ``ABALONE_REPORTS``, ``ABALONE_METRIC_NAMESPACE``,
``ABALONE_STATE_MACHINE_ARN``.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

from jobs.adapters.lake import Lake
from jobs.adapters.settings import Settings
from jobs.adapters.storage import open_store
from jobs.adapters.tracking import Registry, check_tracking
from jobs.aws.events import (
    ApprovalEvent,
    Context,
    DriftEvent,
    GateEvent,
    PromoteEvent,
    SystemTestEvent,
    lambda_settings,
    parse_event,
)
from jobs.aws.promotion_lock import DEFAULT_LEASE_S, PromotionBusy, StackLock
from jobs.core.errors import ServiceError, SourceError, StorageError, UsageError
from jobs.core.gate import approval_status
from jobs.core.policy import CHAMPION, MODEL_NAME, PREVIOUS
from jobs.monitoring.monitor import monitor
from jobs.promotion import service
from jobs.promotion.invokers import endpoint_invoker

log = logging.getLogger(__name__)

MAX_TAR_MEMBER_BYTES = 5 * 1024 * 1024
__all__ = ["PromotionBusy", "approval_status"]


def _settings(context: Context, handler: str) -> Settings:
    lake = f"s3://{context.data_bucket}" if context.data_bucket else None
    return lambda_settings(handler, lake=lake, stack=context.stack)


def _runtime(context: Context, handler: str) -> tuple[Settings, Registry]:
    settings = _settings(context, handler)
    check_tracking(settings.tracking_uri)
    return settings, Registry(settings.tracking_uri)


# ---- which version a training job registered ----------------------------------------------------


def _read_tar_member(data: bytes, name: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name == name:
                if member.size > MAX_TAR_MEMBER_BYTES:
                    raise SourceError(f"{name} in the training output is too large")
                handle = tar.extractfile(member)
                return handle.read() if handle else None
    return None


def _get_object(client: Any, uri: str) -> bytes | None:
    parsed = urlparse(uri)
    try:
        return client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise ServiceError(f"cannot read {uri}: {err}") from err


def version_from_training_output(model_data_url: str, registry: Any, s3: Any = None) -> str:
    """The registered version a training job produced: ``result.json`` in ``output.tar.gz`` (next
    to ``model.tar.gz``) names it; else ``metadata.json`` in the model names the run."""
    s3 = s3 or boto3.client("s3")
    base = model_data_url.rsplit("/", 1)[0]
    output = _get_object(s3, f"{base}/output.tar.gz")
    if output is not None:
        raw = _read_tar_member(output, "result.json")
        if raw and (version := json.loads(raw).get("model_version")):
            return str(version)
    model = _get_object(s3, model_data_url)
    if model is None:
        raise SourceError(f"training output {model_data_url} does not exist")
    raw = _read_tar_member(model, "metadata.json")
    run_id = json.loads(raw).get("run_id") if raw else None
    if not run_id:
        raise SourceError(f"{model_data_url} has no metadata.json with a run_id")
    version = registry.version_of_run(run_id)
    if version is None:
        raise SourceError(f"no registered version of {registry.name} from run {run_id}")
    return version


# ---- the state machine's steps --------------------------------------------------------------------


def gate_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Rules 1-3 before deployment; a rejection is tagged on the version with its reasons."""
    ev = parse_event(GateEvent, event, "gate_handler")
    settings, registry = _runtime(ev.context, "gate_handler")
    version = ev.model_version or version_from_training_output(
        ev.training.model_data_url,  # type: ignore[union-attr]
        registry,
    )
    result = ev.validation.result
    cand = service.candidate(settings, registry, version, data_quality=result.quality)
    if result.dataset_version and cand.dataset_version != result.dataset_version:
        raise UsageError(
            f"version {version} was trained on {cand.dataset_version}, not on this "
            f"execution's dataset {result.dataset_version}"
        )
    checked = service.predeploy(registry, settings, cand)
    champ = checked.decision.inputs.champion
    return {
        "decision": "continue" if checked.passed else "reject",
        "passed": checked.passed,
        "model_version": version,
        "run_id": registry.version(version).run_id,
        "dataset_version": cand.dataset_version,
        "test_rmse": cand.test_rmse,
        "champion_version": champ.champion_version if champ else None,
        "champion_rmse": champ.champion_rmse if champ else None,
        "reasons": checked.reasons,
    }


def system_test_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Rule 4 against the staging endpoint; the figures are also written as version tags."""
    ev = parse_event(SystemTestEvent, event, "system_test_handler")
    settings, registry = _runtime(ev.context, "system_test_handler")
    endpoint = ev.endpoint_name or settings.staging_endpoint
    if not endpoint:
        raise UsageError(
            "system_test_handler: no endpoint: pass endpoint_name or set ABALONE_STAGING_ENDPOINT"
        )
    cand = service.candidate(settings, registry, ev.version)
    tolerance = ev.tolerance if ev.tolerance is not None else settings.policy.system_test_tolerance
    result = service.system_test(
        registry,
        cand.version,
        cand.test_frame,
        expected_rmse=cand.test_rmse,
        tolerance=tolerance,
        invoker=endpoint_invoker(endpoint),
    )
    log.info("system test of v%s on %s: %s", cand.version, endpoint, result.passed)
    return {
        **result.to_dict(),
        "model_version": cand.version,
        "expected_rmse": cand.test_rmse,
        "tolerance": tolerance,
    }


def approval_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Read the version's approval tags (no writes)."""
    ev = parse_event(ApprovalEvent, event, "approval_handler")
    _, registry = _runtime(ev.context, "approval_handler")
    tags = registry.tags(ev.version)
    status, reason = approval_status(tags)
    return {
        "status": status,
        "reason": reason,
        "model_version": ev.version,
        "approved_by": tags.get("approved_by"),
    }


def promote_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The full gate; on pass ``@champion`` → this version, old champion → ``@previous``."""
    ev = parse_event(PromoteEvent, event, "promote_handler")
    settings = _settings(ev.context, "promote_handler")
    lock = promotion_lock(settings, MODEL_NAME, ev.context, context)  # before any call to MLflow
    check_tracking(settings.tracking_uri)
    registry = Registry(settings.tracking_uri, MODEL_NAME)
    version = ev.version
    registry.version(version)  # a clear error for an unknown version, before any write
    cand = service.candidate(settings, registry, version, ev.validation.result.quality)
    if ev.training is not None:
        record = {"sagemaker.model_data_url": ev.training.model_data_url}
        if ev.context.training_job:
            record["sagemaker.training_job"] = ev.context.training_job
        if ev.context.execution_name:
            record["sagemaker.pipeline_execution"] = ev.context.execution_name
        registry.set_tags(version, record)
    decision = service.evaluate_gate(
        registry,
        version,
        settings,
        ev.system_test.output,
        cand.data_quality,
        cand.test_frame,
        lock=lock,
    )
    return {
        "decision": decision.decision,
        "passed": decision.passed,
        "reasons": decision.reasons,
        "model_version": version,
        "champion_version": registry.alias(CHAMPION),
        "previous_version": registry.alias(PREVIOUS),
        "model_data_url": ev.training.model_data_url if ev.training else None,
    }


def promotion_lock(
    settings: Settings, model_name: str, ctx: Context, lambda_context: Any = None
) -> StackLock:
    """The stack's promotion lock, owned by this execution (its name; else this invocation).
    Without the table nothing is promoted: an unserialized promotion could displace another."""
    if not settings.promotion_lock_table:
        raise UsageError(
            "promote_handler: ABALONE_PROMOTION_LOCK_TABLE is not set on the function "
            "(the stack's promotion lock table)"
        )
    request = getattr(lambda_context, "aws_request_id", None) or uuid.uuid4().hex
    owner = ctx.execution_name or f"invocation-{request}"
    return StackLock(
        str(settings.promotion_lock_table),
        owner,
        lease_s=settings.promotion_lock_lease_s or DEFAULT_LEASE_S,
        model_name=model_name,
    )


# ---- scheduled drift job (DESIGN §7) --------------------------------------------------------------


def drift_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """``abalone monitor`` on the endpoint's data capture: the report goes under ``monitoring/`` in
    the reports bucket, ``DriftScore`` (largest PSI) to CloudWatch, and with ``retrain`` the
    pipeline starts again on the latest validated batch when drift is found."""
    ev = parse_event(DriftEvent, event, "drift_handler")
    overrides = {"capture_uri": ev.capture} if ev.capture else {}
    settings = lambda_settings(
        "drift_handler", required=("capture_uri", "reports", "tracking_uri"), **overrides
    )
    capture = str(settings.capture_uri)
    if not settings.lake.startswith("s3://"):  # default: the capture's bucket
        settings = settings.model_copy(update={"lake": f"s3://{urlparse(capture).netloc}"})
    try:
        outcome = monitor(settings, capture=capture, since=ev.since, reference=ev.reference)
    except SourceError as err:
        if "no capture found" not in str(err):
            raise
        log.info("drift job: %s", err)
        return {"status": "no_data", "drift": False, "score": None, "message": str(err)}
    summary = outcome.summary
    run_id = summary["run_id"]
    target = open_store(settings.reports).put_tree(
        f"monitoring/{run_id}", settings.monitoring_dir / run_id
    )
    score = summary.get("score")
    if settings.metric_namespace and score is not None:
        boto3.client("cloudwatch").put_metric_data(
            Namespace=settings.metric_namespace,
            MetricData=[{"MetricName": "DriftScore", "Value": float(score), "Unit": "None"}],
        )
    retrain = _retrain(settings) if outcome.drifting and ev.retrain else {"started": False}
    return {
        "status": summary["status"],
        "drift": bool(summary["drift"]),
        "score": score,
        "message": summary.get("message"),
        "drifting_features": summary.get("drifting_features"),
        "rows": summary["capture"]["rows"],
        "report": f"{target}/report.html",
        "retrain": retrain,
    }


def _retrain(settings: Settings) -> dict[str, Any]:
    """Start the state machine on the upload behind the newest accepted dataset."""
    if not settings.state_machine_arn:
        return {"started": False, "reason": "ABALONE_STATE_MACHINE_ARN not set"}
    try:
        source = urlparse(Lake.open(settings.lake).latest_batch().source or "")
    except StorageError as err:
        log.warning("no validated dataset to retrain on: %s", err)
        source = urlparse("")
    if source.scheme != "s3" or not source.path.strip("/"):
        return {"started": False, "reason": "no validated batch to retrain on"}
    bucket, key = source.netloc, source.path.lstrip("/")
    arn = boto3.client("stepfunctions").start_execution(
        stateMachineArn=settings.state_machine_arn,
        input=json.dumps({"bucket": bucket, "key": key}),
    )["executionArn"]
    return {"started": True, "execution_arn": arn, "source": f"s3://{bucket}/{key}"}
