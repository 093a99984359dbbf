"""AbaloneMlops: the whole AWS stack of one environment (DESIGN §8), and :func:`build`.

Graph::

    AbaloneMlops
    ├── DataLake            data / artifacts / reports buckets, the stack KMS key
    ├── TrackingServer      SageMaker managed MLflow + role (artifacts bucket, mlflow/ only)
    ├── DataQualityEtl      Glue 5.0 job: jobs/aws/glue_ingest.py + jobs/ + validation/
    ├── (code objects)      sourcedir.tar.gz (SageMaker script mode), seed model (built by
    │                       the program when absent, components/seed_model.py)
    ├── ModelEndpoint (2) staging and production endpoints (data capture, prd autoscaling,
    │                       blue/green with auto-rollback)
    ├── (Lambda image)      ECR repository + the Lambda container image, built and pushed
    │                       by the program (pulumi-docker-build), functions pinned to its digest
    ├── PromotionLock       DynamoDB table: one promotion at a time (the promote Lambda's lock)
    ├── TrainingPipeline    state machine, gate/system-test/approval/promote Lambdas, SNS,
    │                       EventBridge trigger on raw/
    ├── Monitoring          dashboard, alarms → SNS, scheduled drift job
    ├── Delivery            CodePipeline V2 + CodeBuild (only where deliveryEnabled)
    └── (SSM parameters)    /abalone/<stack>/<name> for the CLI

``__main__.py`` only reads the stack config and calls :func:`build`; tests call :func:`build` with a
config object under Pulumi mocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import StackConfig
from components.data_lake import DataLake, DataLakeArgs
from components.data_quality_etl import DataQualityEtl, DataQualityEtlArgs
from components.delivery import Delivery, DeliveryArgs
from components.image_repository import ImageRepositoryArgs, LambdaImage, lambda_image
from components.model_endpoint import ModelEndpoint, ModelEndpointArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.packaging import ProgramAssets
from components.promotion_lock import PromotionLock, PromotionLockArgs
from components.tracking_server import TrackingServer, TrackingServerArgs
from components.training_pipeline import TrainingPipeline, TrainingPipelineArgs

SOURCEDIR_KEY = "code/sagemaker/sourcedir.tar.gz"
SEED_MODEL_KEY = "serving/seed/model.tar.gz"


@dataclass(frozen=True)
class AbaloneMlopsArgs:
    config: StackConfig
    assets: ProgramAssets
    account_id: pulumi.Input[str]


class AbaloneMlops(pulumi.ComponentResource):
    lake: DataLake
    tracking: TrackingServer
    etl: DataQualityEtl
    staging: ModelEndpoint
    production: ModelEndpoint
    promotion_lock: PromotionLock
    pipeline: TrainingPipeline
    monitoring: Monitoring
    lambda_image: LambdaImage
    delivery: Delivery | None
    outputs: dict[str, pulumi.Output]

    def __init__(
        self, name: str, args: AbaloneMlopsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("abalone:index:AbaloneMlops", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        tags = cfg.tags

        self.lake = DataLake(
            f"{name}-lake",
            DataLakeArgs(
                region=cfg.region,
                account_id=args.account_id,
                tags=tags,
                noncurrent_version_days=cfg.noncurrent_version_days,
                kms_deletion_window_days=cfg.kms_deletion_window_days,
                force_destroy=cfg.force_destroy_buckets,
            ),
            opts=child,
        )
        lake = self.lake
        self.tracking = TrackingServer(
            f"{name}-mlflow",
            TrackingServerArgs(
                artifacts_bucket=lake.artifacts_bucket,
                artifacts_bucket_arn=lake.artifacts_bucket_arn,
                key_arn=lake.key_arn,
                size=cfg.tracking_server_size,
                mlflow_version=cfg.mlflow_version,
                tags=tags,
            ),
            opts=child,
        )
        self.etl = DataQualityEtl(
            f"{name}-validate",
            DataQualityEtlArgs(
                stack=cfg.stack,
                region=cfg.region,
                account_id=args.account_id,
                data_bucket=lake.data_bucket,
                data_bucket_arn=lake.data_bucket_arn,
                reports_bucket=lake.reports_bucket,
                reports_bucket_arn=lake.reports_bucket_arn,
                artifacts_bucket=lake.artifacts_bucket,
                artifacts_bucket_arn=lake.artifacts_bucket_arn,
                key_arn=lake.key_arn,
                tracking_server_arn=self.tracking.arn,
                script=args.assets.glue_script,
                libraries=args.assets.code,
                worker_type=cfg.glue_worker_type,
                number_of_workers=cfg.glue_number_of_workers,
                timeout_minutes=cfg.glue_timeout_minutes,
                tags=tags,
            ),
            opts=child,
        )

        sourcedir = aws.s3.BucketObjectv2(
            f"{name}-sourcedir",
            bucket=lake.artifacts_bucket,
            key=SOURCEDIR_KEY,
            source=args.assets.sourcedir,
            content_type="application/gzip",
            server_side_encryption="aws:kms",
            kms_key_id=lake.key_arn,
            tags=tags,
            opts=child,
        )
        seed = aws.s3.BucketObjectv2(
            f"{name}-seed-model",
            bucket=lake.artifacts_bucket,
            key=SEED_MODEL_KEY,
            source=args.assets.seed_model,
            content_type="application/gzip",
            server_side_encryption="aws:kms",
            kms_key_id=lake.key_arn,
            tags=tags,
            opts=child,
        )
        code_uri = pulumi.Output.concat("s3://", sourcedir.bucket, "/", sourcedir.key)
        seed_uri = pulumi.Output.concat("s3://", seed.bucket, "/", seed.key)

        def endpoint(role: str, **sizing) -> ModelEndpoint:
            return ModelEndpoint(
                f"{name}-{role}",
                ModelEndpointArgs(
                    endpoint_name=f"{cfg.prefix}-{role}",
                    stack=cfg.stack,
                    region=cfg.region,
                    account_id=args.account_id,
                    image_uri=cfg.inference_image_uri,
                    code_uri=code_uri,
                    seed_model_uri=seed_uri,
                    data_bucket=lake.data_bucket,
                    data_bucket_arn=lake.data_bucket_arn,
                    artifacts_bucket_arn=lake.artifacts_bucket_arn,
                    key_arn=lake.key_arn,
                    capture_percentage=cfg.capture_sampling_percentage,
                    latency_p99_alarm_ms=cfg.latency_p99_alarm_ms,
                    error_5xx_alarm_threshold=cfg.error_5xx_alarm_threshold,
                    tags=tags,
                    **sizing,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[sourcedir, seed]),
            )

        self.staging = endpoint(
            "staging", instance_type=cfg.staging_instance_type, instance_count=1, max_capacity=1
        )
        self.production = endpoint(
            "production",
            instance_type=cfg.endpoint_instance_type,
            instance_count=cfg.endpoint_instance_count,
            max_capacity=cfg.autoscaling_max_capacity,
            target_invocations_per_instance=cfg.autoscaling_target_invocations,
            blue_green=cfg.blue_green,
        )
        self.lambda_image = lambda_image(
            self,
            f"{name}-lambda-images",
            ImageRepositoryArgs(
                stack=cfg.stack,
                region=cfg.region,
                account_id=args.account_id,
                force_delete=cfg.force_destroy_buckets,
                tags=tags,
            ),
        )
        self.promotion_lock = PromotionLock(
            f"{name}-promotion-lock",
            PromotionLockArgs(key_arn=lake.key_arn, tags=tags),
            opts=child,
        )
        self.pipeline = TrainingPipeline(
            f"{name}-pipeline",
            TrainingPipelineArgs(
                stack=cfg.stack,
                region=cfg.region,
                account_id=args.account_id,
                key_arn=lake.key_arn,
                data_bucket=lake.data_bucket,
                data_bucket_arn=lake.data_bucket_arn,
                artifacts_bucket=lake.artifacts_bucket,
                artifacts_bucket_arn=lake.artifacts_bucket_arn,
                reports_bucket=lake.reports_bucket,
                tracking_server_arn=self.tracking.arn,
                glue_job_name=self.etl.job_name,
                glue_job_arn=self.etl.job_arn,
                code_uri=code_uri,
                lambda_image_uri=self.lambda_image.uri,
                training_image_uri=cfg.training_image_uri,
                inference_image_uri=cfg.inference_image_uri,
                training_instance_type=cfg.training_instance_type,
                staging=self.staging,
                production=self.production,
                promotion_lock=self.promotion_lock,
                alert_email=cfg.alert_email,
                require_approval=cfg.require_approval,
                approval_timeout_s=cfg.approval_timeout_hours * 3600,
                poll_seconds=cfg.poll_seconds,
                training_max_runtime_s=cfg.training_max_runtime_minutes * 60,
                capture_percentage=cfg.capture_sampling_percentage,
                log_retention_days=cfg.log_retention_days,
                tags=tags,
            ),
            opts=child,
        )
        self.monitoring = Monitoring(
            f"{name}-monitoring",
            MonitoringArgs(
                stack=cfg.stack,
                region=cfg.region,
                account_id=args.account_id,
                key_arn=lake.key_arn,
                topic_arn=self.pipeline.topic_arn,
                state_machine_arn=self.pipeline.state_machine_arn,
                pipeline_log_group=self.pipeline.log_group_name,
                production_endpoint=self.production.endpoint_name,
                staging_endpoint=self.staging.endpoint_name,
                data_bucket=lake.data_bucket,
                data_bucket_arn=lake.data_bucket_arn,
                reports_bucket=lake.reports_bucket,
                reports_bucket_arn=lake.reports_bucket_arn,
                artifacts_bucket_arn=lake.artifacts_bucket_arn,
                tracking_server_arn=self.tracking.arn,
                lambda_image_uri=self.lambda_image.uri,
                drift_psi_threshold=cfg.drift_psi_threshold,
                drift_schedule=cfg.drift_schedule,
                latency_p99_alarm_ms=cfg.latency_p99_alarm_ms,
                error_5xx_alarm_threshold=cfg.error_5xx_alarm_threshold,
                log_retention_days=cfg.log_retention_days,
                tags=tags,
            ),
            opts=child,
        )
        self.delivery = None
        if cfg.delivery_enabled:
            self.delivery = Delivery(
                f"{name}-cicd",
                DeliveryArgs(
                    region=cfg.region,
                    account_id=args.account_id,
                    key_arn=lake.key_arn,
                    artifacts_bucket=lake.artifacts_bucket,
                    artifacts_bucket_arn=lake.artifacts_bucket_arn,
                    topic_arn=self.pipeline.topic_arn,
                    source_provider=cfg.source_provider,
                    repository=cfg.repository,
                    branch=cfg.branch,
                    deploy_role_arn=cfg.deploy_role_arn,
                    connection_arn=cfg.connection_arn,
                    pulumi_backend_url=cfg.pulumi_backend_url,
                    pulumi_access_token_parameter=cfg.pulumi_access_token_parameter,
                    log_retention_days=cfg.log_retention_days,
                    tags=tags,
                ),
                opts=child,
            )

        self.outputs = {
            "dataBucket": lake.data_bucket,
            "artifactsBucket": lake.artifacts_bucket,
            "reportsBucket": lake.reports_bucket,
            "kmsKeyArn": lake.key_arn,
            "trackingServerArn": self.tracking.arn,
            "trackingServerName": self.tracking.server_name,
            "trackingServerUrl": self.tracking.url,
            "glueJobName": self.etl.job_name,
            "stateMachineArn": self.pipeline.state_machine_arn,
            "promotionLockTable": self.promotion_lock.table_name,
            "alertsTopicArn": self.pipeline.topic_arn,
            "stagingEndpoint": self.staging.endpoint_name,
            "productionEndpoint": self.production.endpoint_name,
            "dashboardUrl": self.monitoring.dashboard_url,
            "lambdaImageRepositoryUrl": self.lambda_image.repository.repository_url,
            "lambdaImageUri": self.lambda_image.uri,
        }
        if self.delivery is not None:
            self.outputs["deliveryPipeline"] = self.delivery.pipeline_name
        for key, value in self.outputs.items():
            aws.ssm.Parameter(
                f"{name}-param-{key}",
                name=f"/abalone/{cfg.stack}/{_kebab(key)}",
                type="String",
                insecure_value=value,  # names and ARNs, not secrets: keep them readable
                description=f"abalone-mlops {cfg.stack}: {key} (read by the abalone CLI)",
                tags=tags,
                opts=child,
            )
        self.register_outputs(dict(self.outputs))


def _kebab(key: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in key)


def build(config: StackConfig, assets: ProgramAssets) -> AbaloneMlops:
    """Build the stack for ``config``; exports the outputs the CLI and people need."""
    identity = aws.get_caller_identity_output()
    app = AbaloneMlops(
        config.prefix,
        AbaloneMlopsArgs(config=config, assets=assets, account_id=identity.account_id),
    )
    for key, value in app.outputs.items():
        pulumi.export(key, value)
    return app
