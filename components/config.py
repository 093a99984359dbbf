"""The stack configuration as one typed, frozen object.

``__main__.py`` reads the Pulumi config once and calls :func:`load_stack_config`; components receive
plain values from it and never read ``pulumi.Config`` themselves. Every key is declared (with its
description, and a default when stacks share the value) in ``Pulumi.yaml``; stack differences live
only in ``Pulumi.<stack>.yaml``. No value here is a secret: nothing the stack needs is confidential
(the Pulumi access token for CI/CD, if any, is referenced by the *name* of an SSM SecureString).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel, to_snake

PROJECT = "abalone-mlops"
CONFIG_NAMESPACE = "abalone-mlops"
#: ``arn:<partition>:<service>:<region>:<account>:connection/<id>``: connections made since the
#: CodeStar Connections → CodeConnections rename (2024) have ``codeconnections`` ARNs, older ones
#: ``codestar-connections``.
CONNECTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):"
    r"[a-z0-9-]+:[0-9]{12}:connection/[\w-]+$"
)


class ConfigError(ValueError):
    """The stack configuration is missing a key or has a value outside its allowed range."""


class StackConfig(BaseModel):
    """Everything that may differ between stacks. Field ``foo_bar`` is config key ``fooBar``."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    stack: Literal["dev", "prd"]
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    alert_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    # data lake
    kms_deletion_window_days: int = Field(ge=7, le=30)
    noncurrent_version_days: int = Field(ge=1)
    force_destroy_buckets: bool
    log_retention_days: int = Field(ge=1)
    # tracking server
    tracking_server_size: Literal["Small", "Medium", "Large"]
    mlflow_version: str
    # validate + prepare (Glue)
    glue_worker_type: Literal["G.1X", "G.2X", "G.4X"]
    glue_number_of_workers: int = Field(ge=2, le=100)
    glue_timeout_minutes: int = Field(ge=1, le=2880)
    # training
    #: "" = the SageMaker scikit-learn image of the region (components.framework_image)
    training_image_uri: str
    training_instance_type: str = Field(pattern=r"^ml\.")
    training_max_runtime_minutes: int = Field(ge=1, le=7200)
    # serving
    inference_image_uri: str
    staging_instance_type: str = Field(pattern=r"^ml\.")
    endpoint_instance_type: str = Field(pattern=r"^ml\.")
    endpoint_instance_count: int = Field(ge=1)
    autoscaling_max_capacity: int = Field(ge=1)
    autoscaling_target_invocations: int = Field(ge=1)
    blue_green: bool
    capture_sampling_percentage: int = Field(ge=0, le=100)
    #: "" = the program builds the seed model (components.seed_model); else a model.tar.gz to use
    seed_model_path: str
    #: data the built seed model trains on: "" = abalone run's default source, else a path or URL
    seed_model_source: str
    # pipeline and gate
    require_approval: bool
    approval_timeout_hours: int = Field(ge=1, le=24 * 30)
    poll_seconds: int = Field(ge=5, le=3600)
    # monitoring
    latency_p99_alarm_ms: int = Field(ge=1)
    error_5xx_alarm_threshold: int = Field(ge=1, alias="error5xxAlarmThreshold")
    drift_psi_threshold: float = Field(gt=0)
    drift_schedule: str = Field(pattern=r"^(rate|cron)\(.+\)$")
    # delivery (CI/CD)
    delivery_enabled: bool
    source_provider: Literal["CodeConnections", "CodeCommit"]
    connection_arn: str
    repository: str
    branch: str = Field(min_length=1)
    deploy_role_arn: str
    pulumi_backend_url: str
    pulumi_access_token_parameter: str

    @model_validator(mode="before")
    @classmethod
    def _framework_images(cls, values: Any) -> Any:
        """Empty or absent image URIs become the scikit-learn framework image of the region."""
        if not isinstance(values, dict) or not values.get("region"):
            return values
        from components.framework_image import FrameworkImageError, sklearn_image_uri

        filled = dict(values)
        for key, scope in (("trainingImageUri", "training"), ("inferenceImageUri", "inference")):
            if not filled.get(key) and not filled.get(to_snake(key)):
                try:
                    filled[key] = sklearn_image_uri(values["region"], scope)
                except FrameworkImageError as err:
                    raise ValueError(f"{key}: {err}") from err
        return filled

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        if self.autoscaling_max_capacity < self.endpoint_instance_count:
            raise ValueError("autoscalingMaxCapacity must be ≥ endpointInstanceCount")
        if self.delivery_enabled:
            if not self.repository:
                raise ValueError("deliveryEnabled needs repository")
            if self.source_provider == "CodeConnections" and not CONNECTION_ARN.match(
                self.connection_arn
            ):
                raise ValueError(
                    "sourceProvider CodeConnections needs connectionArn, the ARN of a "
                    "codeconnections (or older codestar-connections) connection"
                )
            if not self.deploy_role_arn.startswith("arn:"):
                raise ValueError("deliveryEnabled needs deployRoleArn (the role CI assumes)")
            if not self.pulumi_backend_url and not self.pulumi_access_token_parameter:
                raise ValueError("deliveryEnabled needs pulumiBackendUrl or a token parameter")
        return self

    @classmethod
    def config_keys(cls) -> list[str]:
        """The project config keys (camelCase) this object reads, without ``stack``/``region``."""
        return [
            field.alias or name
            for name, field in cls.model_fields.items()
            if name not in ("stack", "region")
        ]

    @property
    def tags(self) -> dict[str, str]:
        """Tags every taggable resource carries (passed explicitly: mocks do not see
        provider ``default_tags``)."""
        return {"project": PROJECT, "stack": self.stack, "managed-by": "pulumi"}

    @property
    def prefix(self) -> str:
        """Logical-name prefix of every resource of this stack (``abalone-dev``)."""
        return f"abalone-{self.stack}"

    @property
    def autoscaling_enabled(self) -> bool:
        """Production autoscaling is on when the stack allows more than one instance."""
        return self.autoscaling_max_capacity > 1


def load_stack_config(stack: str, region: str | None, values: Mapping[str, Any]) -> StackConfig:
    """Validate raw config values (strings from the Pulumi engine, or YAML-typed values) into a
    :class:`StackConfig`; raise :class:`ConfigError` naming the key at fault."""
    known = set(StackConfig.config_keys())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)} for stack {stack}")
    try:
        return StackConfig.model_validate({"stack": stack, "region": region, **values})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(
            f"stack {stack}: config {where}: {first['msg']} (got {first.get('input')!r})"
        ) from err
