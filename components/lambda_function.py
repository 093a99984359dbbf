"""A Python Lambda function with its own role, inline policy and encrypted log group.

Used by the components that run ``jobs/aws/handlers.py`` (``TrainingPipeline``, ``Monitoring``).
Resources are created as children of ``parent`` with names ``f"{name}-…"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies

HANDLER_MODULE = "jobs.aws.handlers"
RUNTIME = "python3.11"


@dataclass(frozen=True)
class FunctionSpec:
    handler: str
    statements: Sequence[dict[str, Any]]
    environment: Mapping[str, pulumi.Input[str]]
    description: str
    timeout_s: int = 300
    memory_mb: int = 1024
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionContext:
    stack: str
    region: str
    account_id: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    code: pulumi.Archive
    layer_arn: pulumi.Input[str]
    log_retention_days: int
    tags: Mapping[str, str]


def python_function(
    parent: pulumi.Resource, name: str, spec: FunctionSpec, ctx: FunctionContext
) -> aws.lambda_.Function:
    child = pulumi.ResourceOptions(parent=parent)
    tags = dict(ctx.tags)
    log_group_name = f"/abalone/{ctx.stack}/lambda/{name}"
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-logs",
        name=log_group_name,
        retention_in_days=ctx.log_retention_days,
        kms_key_id=ctx.key_arn,
        tags=tags,
        opts=child,
    )
    role = aws.iam.Role(
        f"{name}-role",
        description=f"{name}: {spec.description}",
        assume_role_policy=policies.assume_role_policy("lambda"),
        tags=tags,
        opts=child,
    )
    policy = aws.iam.RolePolicy(
        f"{name}-role-policy",
        role=role.id,
        policy=policies.document(
            [
                policies.statement(
                    ["logs:CreateLogStream", "logs:PutLogEvents"],
                    [pulumi.Output.concat(log_group.arn, ":*")],
                    sid="WriteOwnLogs",
                ),
                policies.kms_use(ctx.key_arn),
                *spec.statements,
            ]
        ),
        opts=child,
    )
    return aws.lambda_.Function(
        f"{name}-function",
        description=spec.description,
        runtime=RUNTIME,
        handler=f"{HANDLER_MODULE}.{spec.handler}",
        code=ctx.code,
        layers=[ctx.layer_arn],
        role=role.arn,
        timeout=spec.timeout_s,
        memory_size=spec.memory_mb,
        environment=aws.lambda_.FunctionEnvironmentArgs(
            variables={
                "ABALONE_ENV": ctx.stack,
                "ABALONE_HOME": "/tmp/abalone",  # noqa: S108 - Lambda's only writable path
                "MLFLOW_DISABLE_TELEMETRY": "true",
                **spec.environment,
            }
        ),
        kms_key_arn=ctx.key_arn,
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(
            log_format="JSON", log_group=log_group.name
        ),
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[policy]),
        **spec.extra,
    )
