"""The Lambda handlers' events (DESIGN §8) and the settings each invocation runs with.

The state machine passes its whole state object as the event (``"Payload.$": "$"``), so events are
parsed leniently (unknown keys are ignored) but every field a handler needs is typed and checked
before any call to MLflow or AWS: a malformed event raises :class:`UsageError` with one line naming
the field, and nothing is written.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobs.adapters.settings import MissingSetting, Settings, load_settings
from jobs.core.errors import UsageError

M = TypeVar("M", bound=BaseModel)


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


def lambda_settings(
    handler: str,
    *,
    lake: str | None = None,
    stack: str | None = None,
    required: tuple[str, ...] = ("tracking_uri", "lake"),
    **overrides: Any,
) -> Settings:
    """Settings of one invocation: the function's environment (``MLFLOW_TRACKING_URI`` required;
    ``ABALONE_ENV``, ``ABALONE_LAKE``, ``ABALONE_REPORTS``, …), then the event's ``lake``; the home
    directory defaults to Lambda's writable ``/tmp``."""
    defaults: dict[str, Any] = {"home": Path(tempfile.gettempdir()) / "abalone"}
    if lake:
        defaults["lake"] = lake
    if stack:
        defaults["env"] = stack
    try:
        return load_settings(None, defaults=defaults, required=required, **overrides)
    except MissingSetting as err:
        if err.names == ["ABALONE_LAKE"]:
            raise UsageError(
                f"{handler}: no lake: set ABALONE_LAKE or pass context.data_bucket"
            ) from err
        verb = "is not" if err.names == ["MLFLOW_TRACKING_URI"] else "not"
        raise UsageError(f"{handler}: {', '.join(err.names)} {verb} set on the function") from err
