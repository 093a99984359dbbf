"""Lambda handlers of the training pipeline's state machine (DESIGN §6, §8).

Each handler is ``(event, context) -> dict``. The state machine (``components.pipeline_definition``)
passes its whole state object as the event (``"Payload.$": "$"``), so events are parsed leniently
(unknown keys are ignored) but every field a handler needs is typed and checked *before* any call to
MLflow or AWS: a malformed event raises :class:`jobs.errors.UsageError` with one line naming the
field, and nothing is written. The Lambda runtime reports it as ``errorType: UsageError``; the state
machine's ``Catch`` sends it to the failure notification.

Handlers and what the definition reads from their result:

- :func:`gate_handler` — rules 1-3 before anything is deployed (data quality of this execution's
  batch, RMSE ceiling, paired comparison with the champion on the same test rows). Returns
  ``decision`` (``reject`` | ``continue``), ``model_version``, ``reasons``.
- :func:`system_test_handler` — rule 4 against the *staging endpoint* through
  ``sagemaker-runtime:InvokeEndpoint``: golden rows in three request formats, the whole test split,
  RMSE within tolerance of the logged one, a malformed request answered 4xx. Returns ``passed``,
  ``reasons``, ``rmse``, ``p50_ms``, ``p99_ms``; the figures are also written as version tags.
- :func:`approval_handler` — rule 5 polling: reads the version tags ``approval``/``approved_by``
  (set in the MLflow UI or with ``abalone approve``). Returns ``status`` (``approved`` | ``pending``
  | ``rejected``).
- :func:`promote_handler` — the full gate (rules 1-5, champion re-scored again: it may have changed
  while waiting for approval), writes ``gate.*`` tags, moves ``@champion``/``@previous`` on pass and
  records the SageMaker model data URI on the version (tag ``sagemaker.model_data_url``). Returns
  ``decision`` (``promote`` | ``reject`` | ``awaiting_approval``).

Environment (set by the ``TrainingPipeline`` component on each function):

- ``MLFLOW_TRACKING_URI`` (required): the tracking server ARN on AWS (sagemaker-mlflow plugin), or
  any MLflow URI;
- ``ABALONE_ENV``: ``dev``/``prd`` (default: the event's ``context.stack``, else ``dev``);
- ``ABALONE_LAKE``: lake root (default ``s3://<context.data_bucket>``);
- ``ABALONE_STAGING_ENDPOINT``: the staging endpoint name for the system test (an event field
  ``endpoint_name`` wins).
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobs.errors import ServiceError, SourceError, UsageError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
MAX_TAR_MEMBER_BYTES = 5 * 1024 * 1024
TEST_BATCH_ROWS = 1000


# ---- events ---------------------------------------------------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _s3_uri(value: str | None) -> str | None:
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"must be an s3://bucket/key URI, got {value!r}")
    return value


def _version_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"must be a positive model version number, got {value!r}")
    return str(int(text))


class Context(_Lenient):
    stack: Literal["dev", "prd"] | None = None
    data_bucket: str | None = Field(default=None, min_length=3)
    execution_name: str | None = None
    training_job: str | None = None


class ValidationResult(_Lenient):
    status: Literal["accepted", "rejected"]
    data_quality: str | None = None
    dataset_version: str | None = None
    ingest_id: str | None = None
    report_html: str | None = None

    @property
    def quality(self) -> str:
        return self.data_quality or ("passed" if self.status == "accepted" else "failed")


class Validation(_Lenient):
    result: ValidationResult = Field(alias="Result")


class Training(_Lenient):
    status: str | None = Field(default=None, alias="Status")
    model_data_url: str = Field(alias="ModelDataUrl")

    @field_validator("model_data_url")
    @classmethod
    def _url(cls, v: str) -> str | None:
        return _s3_uri(v)


class GateOutput(_Lenient):
    model_version: str
    decision: str | None = None

    @field_validator("model_version", mode="before")
    @classmethod
    def _v(cls, v: Any) -> str | None:
        return _version_str(v)


class Wrapped(_Lenient):
    output: GateOutput


class SystemTestOutput(_Lenient):
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    rmse: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None


class WrappedSystemTest(_Lenient):
    output: SystemTestOutput


class GateEvent(_Lenient):
    context: Context = Context()
    validation: Validation
    training: Training | None = None
    model_version: str | None = None

    @field_validator("model_version", mode="before")
    @classmethod
    def _v(cls, v: Any) -> str | None:
        return _version_str(v)

    def check(self) -> GateEvent:
        if self.training is None and self.model_version is None:
            raise ValueError("needs training.ModelDataUrl or model_version")
        return self


class VersionEvent(_Lenient):
    """Events that act on the version the gate chose (``gate.output.model_version``) or a given one."""

    context: Context = Context()
    gate: Wrapped | None = None
    model_version: str | None = None

    @field_validator("model_version", mode="before")
    @classmethod
    def _v(cls, v: Any) -> str | None:
        return _version_str(v)

    @property
    def version(self) -> str:
        version = self.model_version or (self.gate.output.model_version if self.gate else None)
        if version is None:  # check() refuses such events; kept for direct construction
            raise UsageError("event needs gate.output.model_version or model_version")
        return version

    def check(self) -> VersionEvent:
        if self.model_version is None and self.gate is None:
            raise ValueError("needs gate.output.model_version or model_version")
        return self


class SystemTestEvent(VersionEvent):
    endpoint_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    tolerance: float | None = Field(default=None, ge=0)


class ApprovalEvent(VersionEvent):
    pass


class PromoteEvent(VersionEvent):
    validation: Validation
    system_test: WrappedSystemTest
    training: Training | None = None


def parse_event(model: type[M], event: Any, handler: str) -> M:
    """Parse ``event`` into ``model``; one clear :class:`UsageError` line for anything malformed."""
    if not isinstance(event, Mapping):
        raise UsageError(f"{handler}: event must be a JSON object, got {type(event).__name__}")
    try:
        parsed = model.model_validate(dict(event))
        check = getattr(parsed, "check", None)
        return check() if check else parsed
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        msg = first["msg"].removeprefix("Value error, ")
        raise UsageError(f"{handler}: bad event field {where}: {msg}") from err
    except ValueError as err:
        raise UsageError(f"{handler}: bad event: {err}") from err


# ---- environment ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """Settings and clients a handler works with (built once per invocation, at the edge)."""

    settings: Any
    registry: Any

    @classmethod
    def load(
        cls, context: Context, handler: str, environ: Mapping[str, str] | None = None
    ) -> Runtime:
        from jobs.registry import Registry, check_tracking
        from jobs.settings import load_settings

        environ = os.environ if environ is None else environ
        tracking = environ.get("MLFLOW_TRACKING_URI")
        if not tracking:
            raise UsageError(f"{handler}: MLFLOW_TRACKING_URI is not set on the function")
        env = environ.get("ABALONE_ENV") or context.stack or "dev"
        lake = environ.get("ABALONE_LAKE") or (
            f"s3://{context.data_bucket}" if context.data_bucket else None
        )
        if not lake:
            raise UsageError(f"{handler}: no lake: set ABALONE_LAKE or pass context.data_bucket")
        home = Path(environ.get("ABALONE_HOME") or Path(tempfile.gettempdir()) / "abalone")
        settings = load_settings(
            env,  # type: ignore[arg-type]
            environ={},
            home=home,
            lake=lake,
            reports=environ.get("ABALONE_REPORTS") or lake.rstrip("/") + "/reports",
            tracking_uri=tracking,
        )
        check_tracking(tracking)
        return cls(settings=settings, registry=Registry(tracking))


def _s3_client():
    import boto3

    return boto3.client("s3")


# ---- model version from the training job's outputs ------------------------------------------------


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
    from botocore.exceptions import ClientError

    parsed = urlparse(uri)
    try:
        return client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise ServiceError(f"cannot read {uri}: {err}") from err


def version_from_training_output(model_data_url: str, registry: Any, s3: Any = None) -> str:
    """The registered version a training job produced.

    SageMaker puts ``model.tar.gz`` (``SM_MODEL_DIR``) and ``output.tar.gz`` (``SM_OUTPUT_DATA_DIR``)
    side by side. ``result.json`` in the latter names the version; else ``metadata.json`` in the
    former names the run, and the version is the one registered from that run.
    """
    s3 = s3 or _s3_client()
    base = model_data_url.rsplit("/", 1)[0]
    output = _get_object(s3, f"{base}/output.tar.gz")
    if output is not None:
        raw = _read_tar_member(output, "result.json")
        if raw:
            version = json.loads(raw).get("model_version")
            if version:
                return str(version)
    model = _get_object(s3, model_data_url)
    if model is None:
        raise SourceError(f"training output {model_data_url} does not exist")
    raw = _read_tar_member(model, "metadata.json")
    run_id = json.loads(raw).get("run_id") if raw else None
    if not run_id:
        raise SourceError(f"{model_data_url} has no metadata.json with a run_id")
    found = registry._call(
        f"search versions of run {run_id}",
        registry.client.search_model_versions,
        f"name='{registry.name}' and run_id='{run_id}'",
    )
    if not found:
        raise SourceError(f"no registered version of {registry.name} from run {run_id}")
    return str(max(int(v.version) for v in found))


def _test_frame(runtime: Runtime, version: str):
    from jobs.registry import read_curated

    dataset = runtime.registry.tags(version).get("dataset_version")
    if not dataset:
        raise UsageError(
            f"version {version} has no dataset_version tag; cannot find its test split"
        )
    return read_curated(runtime.settings, dataset, "test")


# ---- gate (rules 1-3) -----------------------------------------------------------------------------


def gate_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Rules 1-3 before deployment; tags the version with the reasons when it is rejected."""
    from jobs.gate import GateInputs, decide
    from jobs.registry import _test_rmse, compare_with_champion

    ev = parse_event(GateEvent, event, "gate_handler")
    runtime = Runtime.load(ev.context, "gate_handler")
    registry = runtime.registry
    version = ev.model_version or version_from_training_output(
        ev.training.model_data_url,
        registry,  # type: ignore[union-attr]
    )
    tags = registry.tags(version)
    result = ev.validation.result
    if result.dataset_version and tags.get("dataset_version") not in (None, result.dataset_version):
        raise UsageError(
            f"version {version} was trained on {tags.get('dataset_version')}, not on this "
            f"execution's dataset {result.dataset_version}"
        )
    test_frame = _test_frame(runtime, version)
    inputs = GateInputs(
        candidate_version=version,
        candidate_test_rmse=_test_rmse(registry, version),
        data_quality=result.quality,
        policy=runtime.settings.policy,
        champion=compare_with_champion(registry, version, test_frame, seed=runtime.settings.seed),
        system_test=None,
        env=runtime.settings.env,
    )
    decision = decide(inputs)
    rules = decision.rules[:3]
    passed = all(r.passed for r in rules)
    reasons = [f"{'PASS' if r.passed else 'FAIL'} {r.rule}: {r.reason}" for r in rules]
    if passed:
        registry.set_tags(
            version, {"gate.predeploy": "passed", "gate.predeploy.reasons": "\n".join(reasons)}
        )
    else:
        tags_out = decision.to_tags()
        tags_out.update(
            {
                "gate.decision": "reject",
                "gate.reasons": "\n".join(
                    [*reasons, "system test not run: rejected before deployment"]
                ),
                "gate.predeploy": "failed",
                "gate.system_test": "not run",
            }
        )
        tags_out.pop("gate.rule.system_test", None)
        tags_out.pop("gate.rule.approval", None)
        registry.set_tags(version, tags_out)
    log.info("gate (rules 1-3) for v%s: %s", version, "continue" if passed else "reject")
    champ = inputs.champion
    return {
        "decision": "continue" if passed else "reject",
        "passed": passed,
        "model_version": version,
        "run_id": registry.version(version).run_id,
        "dataset_version": tags.get("dataset_version"),
        "test_rmse": inputs.candidate_test_rmse,
        "champion_version": champ.champion_version if champ else None,
        "champion_rmse": champ.champion_rmse if champ else None,
        "reasons": reasons,
    }


# ---- system test against the staging endpoint (rule 4) --------------------------------------------


@dataclass
class EndpointSystemTestResult:
    """Rule 4 measured through ``InvokeEndpoint`` (the same shape the gate reads)."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    rmse: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    rows: int = 0
    endpoint: str = ""

    def to_tags(self) -> dict[str, str]:
        def fmt(value: float | None, digits: int) -> str:
            return "none" if value is None else f"{value:.{digits}f}"

        return {
            "systemtest.passed": str(self.passed).lower(),
            "systemtest.kind": "sagemaker-endpoint",
            "systemtest.endpoint": self.endpoint,
            "systemtest.rows": str(self.rows),
            "systemtest.rmse": fmt(self.rmse, 4),
            "systemtest.p50_ms": fmt(self.p50_ms, 2),
            "systemtest.p99_ms": fmt(self.p99_ms, 2),
            "systemtest.reasons": "\n".join(self.reasons)[:4900],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "rmse": self.rmse,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "rows": self.rows,
            "endpoint": self.endpoint,
        }


def golden_rows() -> list[tuple]:
    """The hand-checked golden rows of the serving system test (:mod:`jobs.golden`)."""
    from jobs.golden import GOLDEN_ROWS

    return [tuple(g.values) for g in GOLDEN_ROWS]


def _fmt_row(row: tuple) -> str:
    return ",".join(str(v) for v in row)


def run_endpoint_system_test(
    invoke: Callable[[bytes, str, str], bytes],
    test_frame: Any,
    *,
    expected_rmse: float,
    tolerance: float,
    endpoint: str = "",
) -> EndpointSystemTestResult:
    """Golden rows (headerless CSV, CSV with header, JSON instances must agree and be plausible),
    the whole test split (RMSE within ``tolerance`` of ``expected_rmse``), and a malformed request
    that must be refused. ``invoke(body, content_type, accept) -> body`` raises on an error answer.
    """
    from jobs.evaluate import regression_metrics
    from jobs.schema import FEATURES, TARGET

    reasons: list[str] = []
    ok = True
    golden = golden_rows()
    header = ",".join(FEATURES)

    def predictions(body: bytes) -> np.ndarray:
        payload = json.loads(body)
        return np.asarray([p["rings"] for p in payload["predictions"]], dtype=float)

    timings: list[float] = []
    singles: list[float] = []
    try:
        for row in golden:
            start = time.perf_counter()
            out = invoke(_fmt_row(row).encode(), "text/csv", "application/json")
            timings.append((time.perf_counter() - start) * 1000)
            singles.extend(predictions(out).tolist())
        csv_plain = predictions(
            invoke("\n".join(_fmt_row(r) for r in golden).encode(), "text/csv", "application/json")
        )
        csv_header = predictions(
            invoke(
                (header + "\n" + "\n".join(_fmt_row(r) for r in golden)).encode(),
                "text/csv",
                "application/json",
            )
        )
        as_json = predictions(
            invoke(
                json.dumps({"instances": [list(r) for r in golden]}).encode(),
                "application/json",
                "application/json",
            )
        )
    except Exception as err:  # any failed call is a failed system test, with its reason
        return EndpointSystemTestResult(
            False, [f"golden rows: endpoint call failed: {_one_line(err)}"], endpoint=endpoint
        )
    variants = {
        "csv": csv_plain,
        "csv+header": csv_header,
        "json": as_json,
        "single-row": np.asarray(singles),
    }
    shapes_ok = all(v.shape == (len(golden),) and np.all(np.isfinite(v)) for v in variants.values())
    if not shapes_ok:
        ok = False
        reasons.append(f"golden rows: expected {len(golden)} finite predictions per request format")
    elif not all(np.allclose(v, csv_plain, rtol=1e-6, atol=1e-6) for v in variants.values()):
        ok = False
        reasons.append(
            "golden rows: request formats disagree: "
            + ", ".join(f"{k} {np.round(v, 3).tolist()}" for k, v in variants.items())
        )
    else:
        problems = _golden_problems(csv_plain)
        if problems:
            ok = False
            reasons.extend(problems)
        else:
            reasons.append(
                f"{len(golden)} golden rows within their hand-checked ranges and orderings, "
                "identical across CSV, CSV+header, JSON and single-row requests"
            )

    X = test_frame[list(FEATURES)]
    y = test_frame[TARGET].to_numpy(dtype=float)
    preds: list[float] = []
    rmse = None
    try:
        for start in range(0, len(X), TEST_BATCH_ROWS):
            chunk = X.iloc[start : start + TEST_BATCH_ROWS]
            body = chunk.to_csv(index=False, header=False, lineterminator="\n").encode()
            preds.extend(predictions(invoke(body, "text/csv", "application/json")).tolist())
    except Exception as err:
        ok = False
        reasons.append(f"test split: endpoint call failed: {_one_line(err)}")
    else:
        if len(preds) != len(y):
            ok = False
            reasons.append(f"test split: {len(preds)} predictions for {len(y)} rows")
        else:
            rmse = regression_metrics(y, np.asarray(preds))["rmse"]
            diff = abs(rmse - expected_rmse)
            within = diff <= tolerance
            ok = ok and within
            reasons.append(
                f"test split ({len(y)} rows) served rmse {rmse:.4f} vs logged {expected_rmse:.4f}: "
                f"|diff| {diff:.4f} {'≤' if within else '>'} tolerance {tolerance:.4f}"
            )

    try:
        invoke(b"X,not-a-number\n", "text/csv", "application/json")
    except Exception as err:  # the endpoint must refuse it (ModelError carrying a 4xx)
        status = _original_status(err)
        if status is not None and not 400 <= status < 500:
            ok = False
            reasons.append(f"malformed request answered {status}, expected 4xx")
        else:
            reasons.append("malformed request refused" + (f" ({status})" if status else ""))
    else:
        ok = False
        reasons.append("malformed request was answered as if valid")

    p50 = float(np.percentile(timings, 50)) if timings else None
    p99 = float(np.percentile(timings, 99)) if timings else None
    return EndpointSystemTestResult(
        passed=ok,
        reasons=reasons,
        rmse=rmse,
        p50_ms=p50,
        p99_ms=p99,
        rows=len(y),
        endpoint=endpoint,
    )


def _golden_problems(predicted: np.ndarray) -> list[str]:
    """Hand-checked bounds and orderings of :mod:`jobs.golden` on the predicted rings."""
    from jobs.golden import GOLDEN_ROWS, ORDERINGS

    by_name = dict(zip((g.name for g in GOLDEN_ROWS), predicted.tolist(), strict=True))
    problems = [
        f"golden row '{g.name}': {by_name[g.name]:.2f} rings outside [{g.lo}, {g.hi}]"
        for g in GOLDEN_ROWS
        if not g.lo <= by_name[g.name] <= g.hi
    ]
    problems += [
        f"golden rows: '{small}' ({by_name[small]:.2f}) not below '{large}' ({by_name[large]:.2f})"
        for small, large in ORDERINGS
        if not by_name[small] < by_name[large]
    ]
    return problems


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def _original_status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("OriginalStatusCode")
    if status is None:
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def endpoint_invoker(endpoint: str, client: Any = None) -> Callable[[bytes, str, str], bytes]:
    """``invoke(body, content_type, accept)`` over ``sagemaker-runtime:InvokeEndpoint``."""
    if client is None:
        import boto3

        client = boto3.client("sagemaker-runtime")

    def invoke(body: bytes, content_type: str, accept: str) -> bytes:
        resp = client.invoke_endpoint(
            EndpointName=endpoint, Body=body, ContentType=content_type, Accept=accept
        )
        return resp["Body"].read()

    return invoke


def system_test_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Rule 4 against the staging endpoint; records the figures as version tags."""
    from jobs.registry import _test_rmse

    ev = parse_event(SystemTestEvent, event, "system_test_handler")
    endpoint = ev.endpoint_name or os.environ.get("ABALONE_STAGING_ENDPOINT")
    if not endpoint:
        raise UsageError(
            "system_test_handler: no endpoint: pass endpoint_name or set ABALONE_STAGING_ENDPOINT"
        )
    runtime = Runtime.load(ev.context, "system_test_handler")
    version = ev.version
    expected = _test_rmse(runtime.registry, version)
    tolerance = (
        ev.tolerance if ev.tolerance is not None else runtime.settings.policy.system_test_tolerance
    )
    test_frame = _test_frame(runtime, version)
    result = run_endpoint_system_test(
        endpoint_invoker(endpoint),
        test_frame,
        expected_rmse=expected,
        tolerance=tolerance,
        endpoint=endpoint,
    )
    runtime.registry.set_tags(version, result.to_tags())
    log.info(
        "system test of v%s on %s: %s", version, endpoint, "passed" if result.passed else "failed"
    )
    return {
        **result.to_dict(),
        "model_version": version,
        "expected_rmse": expected,
        "tolerance": tolerance,
    }


# ---- approval (rule 5 polling) --------------------------------------------------------------------


def approval_status(tags: Mapping[str, str]) -> tuple[str, str]:
    """``(status, reason)`` from the version tags: approved | rejected | pending."""
    approval = (tags.get("approval") or "").strip()
    by = (tags.get("approved_by") or "").strip()
    if approval == "approved" and by:
        return "approved", f"approved by {by}"
    if approval == "approved":
        return "pending", "approval=approved but approved_by is missing"
    if approval:
        return "rejected", f"approval is {approval!r}"
    return "pending", "no approval tag yet"


def approval_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Read the version's approval tags (no writes)."""
    ev = parse_event(ApprovalEvent, event, "approval_handler")
    runtime = Runtime.load(ev.context, "approval_handler")
    tags = runtime.registry.tags(ev.version)
    status, reason = approval_status(tags)
    return {
        "status": status,
        "reason": reason,
        "model_version": ev.version,
        "approved_by": tags.get("approved_by"),
    }


# ---- promote (rules 1-5, aliases) -----------------------------------------------------------------


def promote_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The full gate; on pass ``@champion`` → this version, old champion → ``@previous``."""
    from jobs.registry import CHAMPION, PREVIOUS, evaluate_gate

    ev = parse_event(PromoteEvent, event, "promote_handler")
    runtime = Runtime.load(ev.context, "promote_handler")
    registry = runtime.registry
    version = ev.version
    registry.version(version)  # a clear error for an unknown version, before any write
    test_frame = _test_frame(runtime, version)
    if ev.training is not None:
        record = {"sagemaker.model_data_url": ev.training.model_data_url}
        if ev.context.training_job:
            record["sagemaker.training_job"] = ev.context.training_job
        if ev.context.execution_name:
            record["sagemaker.pipeline_execution"] = ev.context.execution_name
        registry.set_tags(version, record)
    system_test = ev.system_test.output
    decision = evaluate_gate(
        registry,
        version,
        runtime.settings,
        system_test,
        ev.validation.result.quality,
        test_frame,
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


# ---- scheduled drift job (DESIGN §7) --------------------------------------------------------------


class DriftEvent(_Lenient):
    """What the EventBridge Scheduler schedule sends (``{"source": "schedule", "retrain": true}``);
    every field is optional."""

    source: str | None = None
    retrain: bool = False
    since: str | None = Field(default="24h", max_length=40)
    capture: str | None = None
    reference: str | None = None

    @field_validator("capture")
    @classmethod
    def _capture(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("s3://"):
            raise ValueError(f"must be an s3:// capture prefix, got {v!r}")
        return v


def latest_upload(lake: Any) -> tuple[str, str] | None:
    """``(bucket, key)`` of the batch behind the newest accepted dataset, as uploaded under ``raw/``
    (the key that starts the pipeline; the ingest's own ``raw/<ingest_id>/`` copies are ignored)."""
    from jobs.errors import StorageError

    try:
        latest = json.loads(lake.get_bytes("curated/LATEST.json"))
        manifest = json.loads(lake.get_bytes(f"curated/{latest['dataset_version']}/manifest.json"))
    except (StorageError, KeyError, ValueError) as err:
        log.warning("no validated dataset to retrain on: %s", err)
        return None
    source = urlparse(str(manifest.get("source") or ""))
    if source.scheme != "s3" or not source.path.strip("/"):
        log.warning("the latest dataset's source %r is not an S3 upload", manifest.get("source"))
        return None
    return source.netloc, source.path.lstrip("/")


def drift_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Compare the endpoint's data capture with the champion's training profile (``abalone
    monitor``), store the report under ``monitoring/`` in the reports bucket, publish ``DriftScore``
    (largest PSI) to CloudWatch, and with ``retrain`` start the pipeline on the latest validated
    batch when drift is found.

    Environment: ``ABALONE_CAPTURE_URI``, ``ABALONE_REPORTS``, ``MLFLOW_TRACKING_URI`` (required);
    ``ABALONE_METRIC_NAMESPACE``, ``ABALONE_STATE_MACHINE_ARN``, ``ABALONE_LAKE`` (default: the
    capture's bucket), ``ABALONE_ENV``.
    """
    import boto3

    from jobs.monitor import monitor
    from jobs.settings import load_settings
    from jobs.storage import open_store

    ev = parse_event(DriftEvent, event, "drift_handler")
    environ = os.environ
    capture = ev.capture or environ.get("ABALONE_CAPTURE_URI")
    reports = environ.get("ABALONE_REPORTS")
    tracking = environ.get("MLFLOW_TRACKING_URI")
    missing = [
        name
        for name, value in (
            ("ABALONE_CAPTURE_URI", capture),
            ("ABALONE_REPORTS", reports),
            ("MLFLOW_TRACKING_URI", tracking),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"drift_handler: {', '.join(missing)} not set on the function")
    capture, reports, tracking = str(capture), str(reports), str(tracking)
    lake = environ.get("ABALONE_LAKE") or f"s3://{urlparse(capture).netloc}"
    home = Path(environ.get("ABALONE_HOME") or Path(tempfile.gettempdir()) / "abalone")
    settings = load_settings(
        environ.get("ABALONE_ENV") or "dev",  # type: ignore[arg-type]
        environ={},
        home=home,
        lake=lake,
        reports=reports,
        tracking_uri=tracking,
    )
    try:
        outcome = monitor(settings, capture=capture, since=ev.since, reference=ev.reference)
    except SourceError as err:
        if "no capture found" not in str(err):
            raise
        log.info("drift job: %s", err)
        return {"status": "no_data", "drift": False, "score": None, "message": str(err)}
    summary = outcome.summary
    run_id = summary["run_id"]
    target = open_store(reports).put_tree(f"monitoring/{run_id}", settings.monitoring_dir / run_id)
    score = summary.get("score")
    namespace = environ.get("ABALONE_METRIC_NAMESPACE")
    if namespace and score is not None:
        boto3.client("cloudwatch").put_metric_data(
            Namespace=namespace,
            MetricData=[{"MetricName": "DriftScore", "Value": float(score), "Unit": "None"}],
        )
    retrain: dict[str, Any] = {"started": False}
    machine = environ.get("ABALONE_STATE_MACHINE_ARN")
    if outcome.drifting and ev.retrain:
        upload = latest_upload(open_store(lake))
        if not machine:
            retrain["reason"] = "ABALONE_STATE_MACHINE_ARN not set"
        elif upload is None:
            retrain["reason"] = "no validated batch to retrain on"
        else:
            bucket, key = upload
            arn = boto3.client("stepfunctions").start_execution(
                stateMachineArn=machine, input=json.dumps({"bucket": bucket, "key": key})
            )["executionArn"]
            retrain = {"started": True, "execution_arn": arn, "source": f"s3://{bucket}/{key}"}
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
