"""A Python Lambda function with its own role, inline policy and encrypted log group.

Used by the components that run ``jobs/aws/handlers.py`` (``TrainingPipeline``, ``Monitoring``).
Resources are created as children of ``parent`` with names ``f"{name}-…"``.

Two packagings, chosen by the stack config ``lambdaImageUri``:

- **container image** (``image_uri`` set): ``package_type="Image"`` from the stack's ECR repository
  (image built from ``components/lambda_image/Dockerfile``), the handler chosen per function with
  ``image_config.commands``. Needed in practice: the handlers load scikit-learn models through
  MLflow and the drift job runs GX + scipy + matplotlib, which exceed the 250 MB unzipped limit of a
  zip function with its layers (container images may be up to 10 GB).
- **zip + layer** (``image_uri`` unset): the ``jobs``/``validation`` archive as code and a layer
  built from ``components/lambda-requirements.txt``.

The execution role gets no ECR permission in either case: Lambda itself pulls the image when the
function is created or updated, authorised by the repository policy (``lambda.amazonaws.com`` may
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
    code: pulumi.Archive
    layer_arn: pulumi.Input[str] | None
    log_retention_days: int
    tags: Mapping[str, str]
    image_uri: str | None = None  # set: container-image functions; unset: zip + layer

    def __post_init__(self) -> None:
        if not self.image_uri and self.layer_arn is None:
            raise ValueError("a zip Lambda function needs the dependency layer (or an image_uri)")


def packaging_args(handler: str, ctx: FunctionContext) -> dict[str, Any]:
    """The ``aws.lambda_.Function`` arguments that differ between image and zip packaging."""
    entry = f"{HANDLER_MODULE}.{handler}"
    if ctx.image_uri:
        return {
            "package_type": "Image",
            "image_uri": ctx.image_uri,
            "image_config": aws.lambda_.FunctionImageConfigArgs(commands=[entry]),
        }
    return {
        "package_type": "Zip",
        "runtime": RUNTIME,
        "handler": entry,
        "code": ctx.code,
        "layers": [ctx.layer_arn],
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
                "MPLCONFIGDIR": "/tmp/matplotlib",  # noqa: S108 - the drift report's plots
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
