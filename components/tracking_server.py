"""TrackingServer: a SageMaker managed MLflow tracking server and its least-privilege role (§8).

The server stores artifacts under ``s3://<artifacts bucket>/mlflow/``; its role may read and write
that prefix only (and use the stack key for it). Jobs reach the server through its ARN
(``MLFLOW_TRACKING_URI=<arn>`` with the ``sagemaker-mlflow`` plugin); people open the UI through a
presigned URL (``aws sagemaker create-presigned-mlflow-tracking-server-url``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components import policies

ARTIFACT_PREFIX = "mlflow/"


@dataclass(frozen=True)
class TrackingServerArgs:
    artifacts_bucket: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    size: str = "Small"
    mlflow_version: str = "3.0"
    #: Monday 03:00 UTC by default, outside working hours in Europe and the Americas.
    maintenance_window: str = "Mon:03:00"
    tags: Mapping[str, str] = field(default_factory=dict)


class TrackingServer(pulumi.ComponentResource):
    role: aws.iam.Role
    server: aws.sagemaker.MlflowTrackingServer
    arn: pulumi.Output[str]
    url: pulumi.Output[str]
    server_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: TrackingServerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("abalone:index:TrackingServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        self.role = policies.service_role(
            name,
            service="sagemaker",
            description=f"{name}: MLflow tracking server artifact access",
            statements=[
                policies.objects(
                    ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    args.artifacts_bucket_arn,
                    ARTIFACT_PREFIX,
                    sid="ArtifactObjects",
                ),
                *policies.list_bucket(
                    args.artifacts_bucket_arn, ARTIFACT_PREFIX, sid="ListArtifacts"
                ),
                policies.kms_use(args.key_arn),
            ],
            tags=tags,
            opts=child,
        ).role
        self.server = aws.sagemaker.MlflowTrackingServer(
            f"{name}-server",
            tracking_server_name=name,
            artifact_store_uri=pulumi.Output.concat(
                "s3://", args.artifacts_bucket, "/", ARTIFACT_PREFIX
            ),
            role_arn=self.role.arn,
            tracking_server_size=args.size,
            mlflow_version=args.mlflow_version,
            automatic_model_registration=False,
            weekly_maintenance_window_start=args.maintenance_window,
            tags=tags,
            opts=child,
        )
        self.arn = self.server.arn
        self.url = self.server.tracking_server_url
        self.server_name = self.server.tracking_server_name
        self.register_outputs({"arn": self.arn, "url": self.url, "role_arn": self.role.arn})
