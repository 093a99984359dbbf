"""A Python Lambda function with its own role, inline policy and encrypted log group.

Used by the components that run ``jobs/aws/handlers.py`` (``TrainingPipeline``, ``Monitoring``).
Resources are created as children of ``parent`` with names ``f"{name}-…"``.

Every function runs the stack's Lambda container image (:mod:`components.image_repository`, built
from ``components/lambda_image/Dockerfile`` by the program itself), pinned to the pushed digest,
with its handler chosen by ``image_config.commands``. A container image because the handlers load
scikit-learn models through MLflow and the drift job runs GX + scipy + pyarrow: ~615 MB unzipped
when measured (with matplotlib's 36 MB, since dropped: the drift report's charts are inline SVG),
over the 250 MB limit of a zip function with its layers (images may be up to 10 GB).

The execution role gets no ECR permission: Lambda itself pulls the image when the function is
created or updated, authorised by the repository policy (``lambda.amazonaws.com`` may
``ecr:BatchGetImage``/``ecr:GetDownloadUrlForLayer``) and by the deployer's own ECR permissions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies

HANDLER_MODULE = "jobs.aws.handlers"
#: Python 3.12 (Amazon Linux 2023, glibc 2.34): the pinned numpy/scipy/scikit-learn/pandas wheels
#: are manylinux_2_27/2_28, which the python3.11 runtime (Amazon Linux 2, glibc 2.26) cannot load;
#: the SageMaker training image (scikit-learn 1.4-2-py312) runs Python 3.12 as well.
RUNTIME = "python3.12"
BASE_IMAGE = f"public.ecr.aws/lambda/python:{RUNTIME.removeprefix('python')}"


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
    log_retention_days: int
    tags: Mapping[str, str]
    image_uri: pulumi.Input[str]  # <repository>@sha256:<digest>


def packaging_args(handler: str, ctx: FunctionContext) -> dict[str, Any]:
    """The ``aws.lambda_.Function`` arguments of the container image and the handler."""
    return {
        "package_type": "Image",
        "image_uri": ctx.image_uri,
        "image_config": aws.lambda_.FunctionImageConfigArgs(
            commands=[f"{HANDLER_MODULE}.{handler}"]
        ),
    }


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
    role, policy = policies.service_role(
        name,
        service="lambda",
        description=f"{name}: {spec.description}",
        statements=[
            policies.statement(
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                [pulumi.Output.concat(log_group.arn, ":*")],
                sid="WriteOwnLogs",
            ),
            policies.kms_use(ctx.key_arn),
            *spec.statements,
        ],
        tags=tags,
        opts=child,
    )
    return aws.lambda_.Function(
        f"{name}-function",
        description=spec.description,
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
        **packaging_args(spec.handler, ctx),
        **spec.extra,
    )
