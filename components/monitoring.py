"""Monitoring: dashboard, alarms → SNS, and the scheduled drift job (DESIGN §7, §8).

Alarms (all notify the stack's SNS topic): production endpoint 5XX errors, production p99 model
latency, failed pipeline executions, data-quality rejections (a metric filter on the pipeline's
execution log: executions failing with ``DataQualityRejected``) and the drift score the drift job
publishes. The drift job is a Lambda function (``jobs.aws.handlers.drift_handler``) run by an
EventBridge Scheduler schedule; it reads SageMaker data capture under ``capture/``, writes its
report under ``monitoring/`` in the reports bucket, publishes ``DriftScore`` (largest PSI) to the
``Abalone/<stack>`` namespace and may start the pipeline to retrain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components import policies
from components.lambda_function import FunctionContext, FunctionSpec, python_function
from components.model_endpoint import VARIANT, health_alarm_args

DRIFT_METRIC = "DriftScore"
DATA_QUALITY_METRIC = "DataQualityRejections"


# The drift job streams the capture (memory bounded by a 100,000-row sample, not by the capture).
# Measured with benchmarks/monitor_scale.py on one core: 10.8 M SageMaker capture records (a day at
# the seed ceiling of 10 instances x 750 invocations/min, 5.2 GB) in 59 s at 390 MB peak RSS
# (median of 2, 2026-11-30; 90 s and 460 MB before the start-up and reader speed-ups).
# 1,769 MB is the size at which Lambda gives one full vCPU (the benchmark's one core), ~4.5x the
# measured memory; 600 s is ~10x the measured time, room for reading 5 GB from S3 and a noisy
# neighbour. README "Cost" has the figures.
DRIFT_MEMORY_MB = 1769
DRIFT_TIMEOUT_S = 600


def metric_namespace(stack: str) -> str:
    return f"Abalone/{stack}"


def drift_statements(args: MonitoringArgs, namespace: str) -> list[dict]:
    """What ``jobs.aws.handlers.drift_handler`` does on AWS, one statement per need:

    - list and read the endpoint's data capture (``capture/`` in the data bucket);
    - read ``curated/LATEST.json`` and the dataset manifest to find the upload to retrain on
      (listing ``curated/`` too, so a missing object is a 404, not a 403);
    - resolve ``@champion`` on the tracking server and download its ``reference_profile.json``:
      SageMaker managed MLflow does not proxy artifacts, the client reads them from the artifact
      store (``mlflow/`` in the artifacts bucket) with its own credentials;
    - write the drift report under ``monitoring/`` in the reports bucket;
    - publish ``DriftScore`` to the stack's metric namespace only;
    - start the training pipeline (retraining) — nothing else.
    The stack key (all buckets, the state machine) is added by :func:`python_function`.
    """
    return [
        policies.objects(["s3:GetObject"], args.data_bucket_arn, "capture/", sid="ReadCapture"),
        policies.objects(
            ["s3:GetObject"], args.data_bucket_arn, "curated/", sid="ReadLatestDataset"
        ),
        *policies.list_bucket(
            args.data_bucket_arn, "capture/", "curated/", sid="ListCaptureAndDatasets"
        ),
        policies.objects(
            ["s3:GetObject"], args.artifacts_bucket_arn, "mlflow/", sid="ReadReferenceProfile"
        ),
        *policies.list_bucket(args.artifacts_bucket_arn, "mlflow/", sid="ListMlflowArtifacts"),
        policies.objects(
            ["s3:PutObject"], args.reports_bucket_arn, "monitoring/", sid="WriteDriftReports"
        ),
        *policies.mlflow(args.tracking_server_arn, write=False, sid="ReadChampionFromRegistry"),
        policies.metrics([namespace], sid="PublishDrift"),
        policies.statement(["states:StartExecution"], [args.state_machine_arn], sid="Retrain"),
    ]


@dataclass(frozen=True)
class MonitoringArgs:
    stack: str
    region: str
    account_id: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    topic_arn: pulumi.Input[str]
    state_machine_arn: pulumi.Input[str]
    pipeline_log_group: pulumi.Input[str]
    production_endpoint: pulumi.Input[str]
    staging_endpoint: pulumi.Input[str]
    data_bucket: pulumi.Input[str]
    data_bucket_arn: pulumi.Input[str]
    reports_bucket: pulumi.Input[str]
    reports_bucket_arn: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]  # MLflow artifacts: the champion's reference profile
    tracking_server_arn: pulumi.Input[str]
    lambda_image_uri: pulumi.Input[str]  # the stack's Lambda image, by digest
    drift_psi_threshold: float = 0.2
    drift_schedule: str = "rate(1 day)"
    latency_p99_alarm_ms: int = 500
    error_5xx_alarm_threshold: int = 5
    log_retention_days: int = 90
    tags: Mapping[str, str] = field(default_factory=dict)


class Monitoring(pulumi.ComponentResource):
    dashboard: aws.cloudwatch.Dashboard
    dashboard_name: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]
    alarms: dict[str, aws.cloudwatch.MetricAlarm]
    drift_function: aws.lambda_.Function

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("abalone:index:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        namespace = metric_namespace(args.stack)

        aws.cloudwatch.LogMetricFilter(
            f"{name}-data-quality-rejections",
            log_group_name=args.pipeline_log_group,
            pattern='{ ($.type = "ExecutionFailed") && ($.details.error = "DataQualityRejected") }',
            metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                name=DATA_QUALITY_METRIC, namespace=namespace, value="1", default_value="0"
            ),
            opts=child,
        )
        endpoint_health = health_alarm_args(
            args.production_endpoint,
            error_5xx_threshold=args.error_5xx_alarm_threshold,
            latency_p99_ms=args.latency_p99_alarm_ms,
        )
        alarm_specs = {
            "endpoint-5xx": dict(
                alarm_description="production endpoint answers 5XX",
                period=300,
                evaluation_periods=1,
                **endpoint_health["5xx"],
            ),
            "endpoint-latency-p99": dict(
                alarm_description="production endpoint p99 model latency too high",
                period=300,
                evaluation_periods=3,
                **endpoint_health["latency-p99"],
            ),
            "pipeline-failed": dict(
                alarm_description="a training pipeline execution failed",
                namespace="AWS/States",
                metric_name="ExecutionsFailed",
                dimensions={"StateMachineArn": args.state_machine_arn},
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
            ),
            "data-quality-rejected": dict(
                alarm_description="a batch was rejected by the data contract",
                namespace=namespace,
                metric_name=DATA_QUALITY_METRIC,
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
            ),
            "drift": dict(
                alarm_description="production inputs drifted from the training profile",
                namespace=namespace,
                metric_name=DRIFT_METRIC,
                statistic="Maximum",
                period=86400,
                evaluation_periods=1,
                threshold=args.drift_psi_threshold,
                comparison_operator="GreaterThanThreshold",
            ),
        }
        self.alarms = {
            key: aws.cloudwatch.MetricAlarm(
                f"{name}-{key}",
                name=f"{name}-{key}",
                alarm_actions=[args.topic_arn],
                ok_actions=[args.topic_arn],
                treat_missing_data="notBreaching",
                tags=tags,
                opts=child,
                **spec,
            )
            for key, spec in alarm_specs.items()
        }

        # ---- scheduled drift job ------------------------------------------------------------------
        ctx = FunctionContext(
            stack=args.stack,
            region=args.region,
            account_id=args.account_id,
            key_arn=args.key_arn,
            log_retention_days=args.log_retention_days,
            tags=tags,
            image_uri=args.lambda_image_uri,
        )
        self.drift_function = python_function(
            self,
            f"{name}-drift",
            FunctionSpec(
                handler="drift_handler",
                description="compare captured traffic with the training profile",
                statements=drift_statements(args, namespace),
                environment={
                    "MLFLOW_TRACKING_URI": args.tracking_server_arn,
                    "ABALONE_CAPTURE_URI": pulumi.Output.concat(
                        "s3://", args.data_bucket, "/capture/"
                    ),
                    "ABALONE_REPORTS": pulumi.Output.concat("s3://", args.reports_bucket),
                    "ABALONE_LAKE": pulumi.Output.concat("s3://", args.data_bucket),
                    "ABALONE_METRIC_NAMESPACE": namespace,
                    "ABALONE_STATE_MACHINE_ARN": args.state_machine_arn,
                },
                timeout_s=DRIFT_TIMEOUT_S,
                memory_mb=DRIFT_MEMORY_MB,
            ),
            ctx,
        )
        scheduler_role = policies.service_role(
            f"{name}-scheduler",
            service="scheduler",
            description=f"{name}: run the drift job on schedule",
            statements=[
                policies.statement(
                    ["lambda:InvokeFunction"], [self.drift_function.arn], sid="RunDriftJob"
                ),
                policies.kms_use(args.key_arn),  # the schedule is encrypted with the stack key
            ],
            tags=tags,
            opts=child,
        ).role
        aws.scheduler.Schedule(
            f"{name}-drift-schedule",
            description="daily drift check of the production endpoint",
            schedule_expression=args.drift_schedule,
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(
                mode="FLEXIBLE", maximum_window_in_minutes=60
            ),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=self.drift_function.arn,
                role_arn=scheduler_role.arn,
                input=json.dumps({"source": "schedule", "retrain": True}),
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_retry_attempts=2, maximum_event_age_in_seconds=3600
                ),
            ),
            kms_key_arn=args.key_arn,
            opts=child,
        )

        # ---- dashboard ----------------------------------------------------------------------------
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=name,
            dashboard_body=pulumi.Output.json_dumps(self._dashboard_body(args, namespace)),
            opts=child,
        )
        self.dashboard_name = self.dashboard.dashboard_name
        self.dashboard_url = pulumi.Output.concat(
            f"https://{args.region}.console.aws.amazon.com/cloudwatch/home?region={args.region}"
            "#dashboards:name=",
            self.dashboard.dashboard_name,
        )
        self.register_outputs(
            {"dashboard_url": self.dashboard_url, "drift_function": self.drift_function.name}
        )

    @staticmethod
    def _dashboard_body(args: MonitoringArgs, namespace: str) -> dict:
        def widget(title: str, metrics: list, x: int, y: int, stat: str = "Sum") -> dict:
            return {
                "type": "metric",
                "x": x,
                "y": y,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "region": args.region,
                    "stat": stat,
                    "period": 300,
                    "metrics": metrics,
                },
            }

        def endpoint(metric: str, name: pulumi.Input[str]) -> list:
            return ["AWS/SageMaker", metric, "EndpointName", name, "VariantName", VARIANT]

        sfn = ["StateMachineArn", args.state_machine_arn]
        return {
            "widgets": [
                widget(
                    "Pipeline executions",
                    [
                        ["AWS/States", "ExecutionsStarted", *sfn],
                        ["AWS/States", "ExecutionsSucceeded", *sfn],
                        ["AWS/States", "ExecutionsFailed", *sfn],
                    ],
                    0,
                    0,
                ),
                widget(
                    "Data quality rejections and drift",
                    [
                        [namespace, DATA_QUALITY_METRIC],
                        [namespace, DRIFT_METRIC, {"stat": "Maximum", "yAxis": "right"}],
                    ],
                    12,
                    0,
                ),
                widget(
                    "Endpoint invocations and errors",
                    [
                        endpoint("Invocations", args.production_endpoint),
                        endpoint("Invocation4XXErrors", args.production_endpoint),
                        endpoint("Invocation5XXErrors", args.production_endpoint),
                        endpoint("Invocations", args.staging_endpoint),
                    ],
                    0,
                    6,
                ),
                widget(
                    "Production model latency p99 (µs)",
                    [endpoint("ModelLatency", args.production_endpoint)],
                    12,
                    6,
                    stat="p99",
                ),
            ]
        }
