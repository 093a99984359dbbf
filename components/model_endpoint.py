"""ModelEndpoint: a SageMaker model, endpoint configuration and endpoint (DESIGN §7, §8).

The endpoint serves ``jobs/inference.py`` in the SageMaker scikit-learn container (the code comes from
the stack's ``sourcedir.tar.gz``) and captures requests and responses to
``s3://<data bucket>/capture/`` encrypted with the stack key. Pulumi creates it from a *seed* model;
afterwards the training pipeline rolls new models out with ``UpdateEndpoint`` (new model + endpoint
config per execution), so Pulumi ignores later changes of ``endpoint_config_name``.

Production sizing (from config): ≥ 2 instances, target-tracking autoscaling on invocations per
instance, and a blue/green canary update that rolls back automatically when the endpoint's 5XX or
p99 latency alarm fires. The pipeline receives the same deployment configuration
(:attr:`pipeline_spec`) for its updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies

VARIANT = "AllTraffic"
CAPTURE_PREFIX = "capture/"
MODEL_READ_PREFIXES = ("code/", "training/", "serving/")
#: Blue/green canary update: Pulumi's endpoint and the pipeline's ``UpdateEndpoint`` use the same.
CANARY_PERCENT = 50
CANARY_WAIT_S = 300
TERMINATION_WAIT_S = 300
MAX_EXECUTION_S = 3600


def health_alarm_args(
    endpoint_name: pulumi.Input[str], *, error_5xx_threshold: int, latency_p99_ms: int
) -> dict[str, dict[str, Any]]:
    """What "the endpoint is unhealthy" means, as ``aws.cloudwatch.MetricAlarm`` arguments.

    ``"5xx"``: model 5XX errors at or above the threshold; ``"latency-p99"``: p99 model latency
    above the limit. Used by the blue/green rollback alarms here and the production alarms of
    :mod:`components.monitoring`; callers add names, descriptions, windows and actions.
    """
    dims = {"EndpointName": endpoint_name, "VariantName": VARIANT}
    return {
        "5xx": dict(
            namespace="AWS/SageMaker",
            metric_name="Invocation5XXErrors",
            dimensions=dims,
            statistic="Sum",
            threshold=error_5xx_threshold,
            comparison_operator="GreaterThanOrEqualToThreshold",
        ),
        "latency-p99": dict(
            namespace="AWS/SageMaker",
            metric_name="ModelLatency",
            dimensions=dims,
            extended_statistic="p99",
            threshold=latency_p99_ms * 1000,  # ModelLatency is reported in microseconds
            comparison_operator="GreaterThanThreshold",
        ),
    }


@dataclass(frozen=True)
class ModelEndpointArgs:
    endpoint_name: str
    stack: str
    region: str
    account_id: pulumi.Input[str]
    image_uri: str
    code_uri: pulumi.Input[str]
    seed_model_uri: pulumi.Input[str]
    data_bucket: pulumi.Input[str]
    data_bucket_arn: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    max_capacity: int = 1
    target_invocations_per_instance: int = 200
    blue_green: bool = False
    capture_percentage: int = 100
    latency_p99_alarm_ms: int = 500
    error_5xx_alarm_threshold: int = 5
    tags: Mapping[str, str] = field(default_factory=dict)


class ModelEndpoint(pulumi.ComponentResource):
    role: aws.iam.Role
    model: aws.sagemaker.Model
    endpoint_config: aws.sagemaker.EndpointConfiguration
    endpoint: aws.sagemaker.Endpoint
    alarms: list[aws.cloudwatch.MetricAlarm]
    endpoint_name: pulumi.Output[str]
    endpoint_arn: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    pipeline_spec: pulumi.Output[dict[str, Any]]

    def __init__(
        self, name: str, args: ModelEndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("abalone:index:ModelEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        self._name = name

        self.role = policies.service_role(
            name,
            service="sagemaker",
            description=f"{name}: serve the abalone model, write data capture",
            statements=[
                policies.objects(
                    ["s3:GetObject"],
                    args.artifacts_bucket_arn,
                    *MODEL_READ_PREFIXES,
                    sid="ReadModelAndCode",
                ),
                policies.objects(
                    ["s3:PutObject"], args.data_bucket_arn, CAPTURE_PREFIX, sid="WriteDataCapture"
                ),
                policies.kms_use(args.key_arn),
                *policies.ecr_pull([args.image_uri]),
                policies.write_logs(args.region, args.account_id, "/aws/sagemaker/Endpoints/"),
                policies.metrics(["/aws/sagemaker/Endpoints"]),
            ],
            tags=tags,
            opts=child,
        ).role
        self.role_arn = self.role.arn
        environment = {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": args.code_uri,
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "ABALONE_ENV": args.stack,
        }
        self.model = aws.sagemaker.Model(
            f"{name}-seed-model",
            execution_role_arn=self.role.arn,
            primary_container=aws.sagemaker.ModelPrimaryContainerArgs(
                image=args.image_uri,
                model_data_url=args.seed_model_uri,
                environment=environment,
            ),
            tags=tags,
            opts=child,
        )
        variant = aws.sagemaker.EndpointConfigurationProductionVariantArgs(
            variant_name=VARIANT,
            model_name=self.model.name,
            instance_type=args.instance_type,
            initial_instance_count=args.instance_count,
            initial_variant_weight=1.0,
        )
        capture_uri = pulumi.Output.concat("s3://", args.data_bucket, "/", CAPTURE_PREFIX)
        self.endpoint_config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            production_variants=[variant],
            data_capture_config=aws.sagemaker.EndpointConfigurationDataCaptureConfigArgs(
                enable_capture=True,
                initial_sampling_percentage=args.capture_percentage,
                destination_s3_uri=capture_uri,
                kms_key_id=args.key_arn,
                capture_options=[
                    aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureOptionArgs(
                        capture_mode="Input"
                    ),
                    aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureOptionArgs(
                        capture_mode="Output"
                    ),
                ],
                capture_content_type_header=aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureContentTypeHeaderArgs(
                    csv_content_types=["text/csv"], json_content_types=["application/json"]
                ),
            ),
            tags=tags,
            opts=child,
        )
        self.alarms = self._rollback_alarms(args, tags)
        deployment = self._deployment_config(args) if args.blue_green else None
        self.endpoint = aws.sagemaker.Endpoint(
            f"{name}-endpoint",
            name=args.endpoint_name,
            endpoint_config_name=self.endpoint_config.name,
            deployment_config=deployment,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["endpoint_config_name"]),
        )
        self.endpoint_name = self.endpoint.name
        self.endpoint_arn = self.endpoint.arn
        if args.max_capacity > 1:
            self._autoscaling(args)

        alarm_names = [alarm.name for alarm in self.alarms]
        self.pipeline_spec = pulumi.Output.all(
            self.endpoint.name, self.role.arn, *alarm_names
        ).apply(lambda values: self._spec(args, values[0], values[1], list(values[2:])))
        self.register_outputs(
            {
                "endpoint_name": self.endpoint_name,
                "endpoint_arn": self.endpoint_arn,
                "role_arn": self.role_arn,
            }
        )

    def _rollback_alarms(
        self, args: ModelEndpointArgs, tags: dict[str, str]
    ) -> list[aws.cloudwatch.MetricAlarm]:
        health = health_alarm_args(
            args.endpoint_name,
            error_5xx_threshold=args.error_5xx_alarm_threshold,
            latency_p99_ms=args.latency_p99_alarm_ms,
        )
        # key → (what it watches, evaluation periods of one minute)
        rollback = {"5xx": ("model 5XX errors", 2), "latency-p99": ("p99 model latency", 3)}
        return [
            aws.cloudwatch.MetricAlarm(
                f"{self._name}-{key}",
                name=f"{args.endpoint_name}-{key}",
                alarm_description=f"{args.endpoint_name}: {what} (blue/green rollback)",
                period=60,
                evaluation_periods=evaluation_periods,
                treat_missing_data="notBreaching",
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
                **health[key],
            )
            for key, (what, evaluation_periods) in rollback.items()
        ]

    def _deployment_config(
        self, args: ModelEndpointArgs
    ) -> aws.sagemaker.EndpointDeploymentConfigArgs:
        sm = aws.sagemaker
        return sm.EndpointDeploymentConfigArgs(
            blue_green_update_policy=sm.EndpointDeploymentConfigBlueGreenUpdatePolicyArgs(
                traffic_routing_configuration=sm.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgs(
                    type="CANARY",
                    wait_interval_in_seconds=CANARY_WAIT_S,
                    canary_size=sm.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationCanarySizeArgs(
                        type="CAPACITY_PERCENT", value=CANARY_PERCENT
                    ),
                ),
                termination_wait_in_seconds=TERMINATION_WAIT_S,
                maximum_execution_timeout_in_seconds=MAX_EXECUTION_S,
            ),
            auto_rollback_configuration=sm.EndpointDeploymentConfigAutoRollbackConfigurationArgs(
                alarms=[
                    sm.EndpointDeploymentConfigAutoRollbackConfigurationAlarmArgs(alarm_name=a.name)
                    for a in self.alarms
                ]
            ),
        )

    def _autoscaling(self, args: ModelEndpointArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        target = aws.appautoscaling.Target(
            f"{self._name}-scaling-target",
            service_namespace="sagemaker",
            resource_id=pulumi.Output.concat("endpoint/", self.endpoint.name, "/variant/", VARIANT),
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=args.instance_count,
            max_capacity=args.max_capacity,
            tags=dict(args.tags),
            opts=child,
        )
        aws.appautoscaling.Policy(
            f"{self._name}-scaling-policy",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                target_value=args.target_invocations_per_instance,
                predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type="SageMakerVariantInvocationsPerInstance"
                ),
                scale_in_cooldown=300,
                scale_out_cooldown=60,
            ),
            opts=child,
        )

    @staticmethod
    def _spec(
        args: ModelEndpointArgs, endpoint_name: str, role_arn: str, alarm_names: list[str]
    ) -> dict[str, Any]:
        """The plain description ``build_definition`` takes for this endpoint (API casing)."""
        deployment = None
        if args.blue_green:
            deployment = {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "CANARY",
                        "WaitIntervalInSeconds": CANARY_WAIT_S,
                        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": CANARY_PERCENT},
                    },
                    "TerminationWaitInSeconds": TERMINATION_WAIT_S,
                    "MaximumExecutionTimeoutInSeconds": MAX_EXECUTION_S,
                },
                "AutoRollbackConfiguration": {
                    "Alarms": [{"AlarmName": name} for name in alarm_names]
                },
            }
        return {
            "name": endpoint_name,
            "model_role_arn": role_arn,
            "variant": {
                "VariantName": VARIANT,
                "InstanceType": args.instance_type,
                "InitialInstanceCount": args.instance_count,
                "InitialVariantWeight": 1.0,
            },
            "deployment_config": deployment,
        }
