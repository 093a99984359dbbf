"""TrainingPipeline: the Step Functions state machine that turns a new batch into a served model.

validate + prepare (Glue) → train (SageMaker training job) → gate (Lambda) → deploy staging → system
test (Lambda) → [approval wait loop, when the stack requires it] → promote (Lambda; one at a time
per stack under the ``PromotionLock`` table's item, a busy lock retried by the state machine) →
deploy production. The definition comes from
:func:`components.pipeline_definition.build_definition`, a plain function also used by the moto
end-to-end test. An EventBridge rule starts an execution for
every object created under ``raw/`` in the data bucket; failures and approval requests go to the
stack's SNS topic (e-mail subscription from config). Execution logs go to an encrypted log group.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from components import policies
from components.lambda_function import FunctionContext, FunctionSpec, python_function
from components.pipeline_definition import build_definition

if TYPE_CHECKING:
    from components.model_endpoint import ModelEndpoint
    from components.promotion_lock import PromotionLock

RAW_PREFIX = "raw/"
PROMOTE_TIMEOUT_S = 300
#: The promotion lock's lease outlives the promote function (Lambda stops it at its timeout), so
#: an expired lease always belongs to a holder that is no longer running.
PROMOTION_LEASE_MARGIN_S = 60


@dataclass(frozen=True)
class TrainingPipelineArgs:
    stack: str
    region: str
    account_id: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    data_bucket: pulumi.Input[str]
    data_bucket_arn: pulumi.Input[str]
    artifacts_bucket: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    reports_bucket: pulumi.Input[str]
    tracking_server_arn: pulumi.Input[str]
    glue_job_name: pulumi.Input[str]
    glue_job_arn: pulumi.Input[str]
    code_uri: pulumi.Input[str]
    lambda_image_uri: pulumi.Input[str]  # the stack's Lambda image, by digest
    training_image_uri: str
    inference_image_uri: str
    training_instance_type: str
    staging: ModelEndpoint
    production: ModelEndpoint
    promotion_lock: PromotionLock
    alert_email: str
    require_approval: bool = True
    approval_timeout_s: int = 3 * 24 * 3600
    poll_seconds: int = 60
    training_max_runtime_s: int = 3600
    capture_percentage: int = 100
    log_retention_days: int = 90
    tags: Mapping[str, str] = field(default_factory=dict)


class TrainingPipeline(pulumi.ComponentResource):
    topic: aws.sns.Topic
    topic_arn: pulumi.Output[str]
    functions: dict[str, aws.lambda_.Function]
    training_role: aws.iam.Role
    state_machine: aws.sfn.StateMachine
    state_machine_arn: pulumi.Output[str]
    state_machine_name: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    definition: pulumi.Output[str]

    def __init__(
        self, name: str, args: TrainingPipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("abalone:index:TrainingPipeline", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        self._args = args

        # ---- notifications ---------------------------------------------------------------------
        self.topic = aws.sns.Topic(
            f"{name}-alerts",
            display_name=f"abalone {args.stack} alerts",
            kms_master_key_id=args.key_arn,
            tags=tags,
            opts=child,
        )
        self.topic_arn = self.topic.arn
        aws.sns.TopicPolicy(
            f"{name}-alerts-policy",
            arn=self.topic.arn,
            policy=policies.document(
                [
                    {
                        "Sid": "AlarmsAndEventsPublish",
                        "Effect": "Allow",
                        "Principal": {
                            "Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
                        },
                        "Action": "sns:Publish",
                        "Resource": self.topic.arn,
                        "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}},
                    },
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "sns:Publish",
                        "Resource": self.topic.arn,
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                ]
            ),
            opts=child,
        )
        aws.sns.TopicSubscription(
            f"{name}-alerts-email",
            topic=self.topic.arn,
            protocol="email",
            endpoint=args.alert_email,
            opts=child,
        )

        # ---- Lambda functions (gate, system test, approval, promote) --------------------------
        # All run the stack's Lambda container image (they share jobs.aws.handlers).
        ctx = FunctionContext(
            stack=args.stack,
            region=args.region,
            account_id=args.account_id,
            key_arn=args.key_arn,
            log_retention_days=args.log_retention_days,
            tags=tags,
            image_uri=args.lambda_image_uri,
        )
        self.functions = {
            key: python_function(self, f"{name}-{key.replace('_', '-')}", spec, ctx)
            for key, spec in self._function_specs().items()
        }

        # ---- training role ---------------------------------------------------------------------
        self.training_role = policies.service_role(
            f"{name}-training",
            service="sagemaker",
            description=f"{name}: SageMaker training jobs",
            statements=[
                policies.objects(
                    ["s3:GetObject"], args.data_bucket_arn, "runs/", sid="ReadDataset"
                ),
                *policies.list_bucket(args.data_bucket_arn, "runs/", sid="ListDataset"),
                policies.objects(
                    ["s3:GetObject"], args.artifacts_bucket_arn, "code/", sid="ReadCode"
                ),
                policies.objects(
                    ["s3:GetObject", "s3:PutObject"],
                    args.artifacts_bucket_arn,
                    "training/",
                    "mlflow/",
                    sid="WriteModelAndMlflowArtifacts",
                ),
                *policies.list_bucket(
                    args.artifacts_bucket_arn, "training/", "mlflow/", sid="ListArtifacts"
                ),
                policies.kms_use(args.key_arn),
                *policies.ecr_pull([args.training_image_uri]),
                policies.write_logs(args.region, args.account_id, "/aws/sagemaker/TrainingJobs"),
                policies.metrics(["/aws/sagemaker/TrainingJobs"]),
                *policies.mlflow(
                    args.tracking_server_arn, write=True, log_models=True, sid="TrackAndRegister"
                ),
            ],
            tags=tags,
            opts=child,
        ).role

        # ---- state machine -----------------------------------------------------------------------
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/vendedlogs/states/{name}",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.key_arn,
            tags=tags,
            opts=child,
        )
        self.log_group_name = log_group.name
        state_machine_role, sm_policy = policies.service_role(
            f"{name}-states",
            service="states",
            description=f"{name}: run the training pipeline",
            statements=self._state_machine_statements(),
            tags=tags,
            opts=child,
        )
        self.definition = pulumi.Output.from_input(
            {
                "stack": args.stack,
                "glue_job_name": args.glue_job_name,
                "training_role_arn": self.training_role.arn,
                "training_image_uri": args.training_image_uri,
                "training_instance_type": args.training_instance_type,
                "code_s3_uri": args.code_uri,
                "data_bucket": args.data_bucket,
                "artifacts_bucket": args.artifacts_bucket,
                "tracking_server_arn": args.tracking_server_arn,
                "lambda_arns": {key: fn.arn for key, fn in self.functions.items()},
                "sns_topic_arn": self.topic.arn,
                "inference_image_uri": args.inference_image_uri,
                "kms_key_arn": args.key_arn,
                "staging_endpoint": args.staging.pipeline_spec,
                "production_endpoint": args.production.pipeline_spec,
                "require_approval": args.require_approval,
                "approval_timeout_s": args.approval_timeout_s,
                "poll_seconds": args.poll_seconds,
                "capture_percentage": args.capture_percentage,
                "training_max_runtime_s": args.training_max_runtime_s,
            }
        ).apply(lambda kwargs: json.dumps(build_definition(**kwargs), indent=1))
        self.state_machine = aws.sfn.StateMachine(
            f"{name}-state-machine",
            name=name,
            type="STANDARD",
            role_arn=state_machine_role.arn,
            definition=self.definition,
            logging_configuration=aws.sfn.StateMachineLoggingConfigurationArgs(
                level="ERROR",
                include_execution_data=True,
                log_destination=pulumi.Output.concat(log_group.arn, ":*"),
            ),
            encryption_configuration=aws.sfn.StateMachineEncryptionConfigurationArgs(
                type="CUSTOMER_MANAGED_KMS_KEY",
                kms_key_id=args.key_arn,
                kms_data_key_reuse_period_seconds=300,
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[sm_policy]),
        )
        self.state_machine_arn = self.state_machine.arn
        self.state_machine_name = self.state_machine.name

        # ---- trigger: new objects under raw/ ------------------------------------------------------
        events_role = policies.service_role(
            f"{name}-events",
            service="events",
            description=f"{name}: start the pipeline on new raw objects",
            statements=[
                policies.statement(
                    ["states:StartExecution"], [self.state_machine.arn], sid="StartPipeline"
                ),
                policies.kms_use(args.key_arn),
            ],
            tags=tags,
            opts=child,
        ).role
        rule = aws.cloudwatch.EventRule(
            f"{name}-raw-object-created",
            description=f"Start {name} for every object created under {RAW_PREFIX}",
            event_pattern=pulumi.Output.json_dumps(
                {
                    "source": ["aws.s3"],
                    "detail-type": ["Object Created"],
                    "detail": {
                        "bucket": {"name": [args.data_bucket]},
                        "object": {"key": [{"prefix": RAW_PREFIX}]},
                    },
                }
            ),
            tags=tags,
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-raw-object-created-target",
            rule=rule.name,
            arn=self.state_machine.arn,
            role_arn=events_role.arn,
            input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
                input_paths={"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"},
                input_template='{"bucket": <bucket>, "key": <key>}',
            ),
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=3600, maximum_retry_attempts=10
            ),
            opts=child,
        )
        self.register_outputs(
            {
                "state_machine_arn": self.state_machine_arn,
                "topic_arn": self.topic_arn,
                "training_role_arn": self.training_role.arn,
            }
        )

    # ---- helpers ---------------------------------------------------------------------------------
    def _function_specs(self) -> dict[str, FunctionSpec]:
        a = self._args
        mlflow_read = policies.mlflow(a.tracking_server_arn, write=False, sid="ReadRegistry")
        mlflow_write = policies.mlflow(a.tracking_server_arn, write=True, sid="UseTrackingServer")
        read_dataset = policies.objects(
            ["s3:GetObject"], a.data_bucket_arn, "runs/", "curated/", sid="ReadDataset"
        )
        list_dataset = policies.list_bucket(
            a.data_bucket_arn, "runs/", "curated/", sid="ListDataset"
        )
        read_models = policies.objects(
            ["s3:GetObject"], a.artifacts_bucket_arn, "mlflow/", "training/", sid="ReadModels"
        )
        # MLflow's S3 artifact client lists before it downloads (models:/, run artifacts)
        list_models = policies.list_bucket(
            a.artifacts_bucket_arn, "mlflow/", "training/", sid="ListModels"
        )
        env = {
            "MLFLOW_TRACKING_URI": a.tracking_server_arn,
            "ABALONE_LAKE": pulumi.Output.concat("s3://", a.data_bucket),
            "ABALONE_REPORTS": pulumi.Output.concat("s3://", a.reports_bucket),
            "ABALONE_REQUIRE_APPROVAL": "true" if a.require_approval else "false",
        }
        staging_arn = a.staging.endpoint_arn
        return {
            "gate": FunctionSpec(
                handler="gate_handler",
                description="promotion gate rules 1-3 (data quality, ceiling, champion)",
                statements=[*mlflow_write, read_dataset, *list_dataset, read_models, *list_models],
                environment=env,
                timeout_s=300,
                memory_mb=2048,
            ),
            "system_test": FunctionSpec(
                handler="system_test_handler",
                description="gate rule 4: system test of the staging endpoint",
                statements=[
                    *mlflow_write,
                    read_dataset,
                    *list_dataset,
                    policies.statement(
                        ["sagemaker:InvokeEndpoint"], [staging_arn], sid="InvokeStaging"
                    ),
                ],
                environment={**env, "ABALONE_STAGING_ENDPOINT": a.staging.endpoint_name},
                timeout_s=600,
                memory_mb=2048,
            ),
            "approval": FunctionSpec(
                handler="approval_handler",
                description="gate rule 5: read the approval tag of the candidate",
                statements=[*mlflow_read],
                environment=env,
                timeout_s=60,
                memory_mb=512,
            ),
            "promote": FunctionSpec(
                handler="promote_handler",
                description="re-check the gate and move @champion / @previous",
                statements=[
                    *mlflow_write,
                    read_dataset,
                    *list_dataset,
                    read_models,
                    *list_models,
                    a.promotion_lock.item_access(),
                ],
                environment={
                    **env,
                    "ABALONE_PROMOTION_LOCK_TABLE": a.promotion_lock.table_name,
                    "ABALONE_PROMOTION_LOCK_LEASE_S": str(
                        PROMOTE_TIMEOUT_S + PROMOTION_LEASE_MARGIN_S
                    ),
                },
                timeout_s=PROMOTE_TIMEOUT_S,
                memory_mb=2048,
            ),
        }

    def _state_machine_statements(self) -> list[dict[str, Any]]:
        a = self._args
        sagemaker_arn = f"arn:aws:sagemaker:{a.region}:"
        prefix = f"abalone-{a.stack}-"

        def sm(kind: str, name: pulumi.Input[str]) -> pulumi.Output[str]:
            return pulumi.Output.concat(sagemaker_arn, a.account_id, f":{kind}/", name)

        endpoint_arns = [a.staging.endpoint_arn, a.production.endpoint_arn]
        return [
            policies.statement(
                ["glue:GetJobRun", "glue:StartJobRun"], [a.glue_job_arn], sid="RunValidation"
            ),
            policies.objects(
                ["s3:GetObject"], a.data_bucket_arn, "runs/", sid="ReadValidationResult"
            ),
            policies.statement(
                ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob"],
                [sm("training-job", f"{prefix}*")],
                sid="Train",
            ),
            policies.statement(
                ["sagemaker:CreateModel"], [sm("model", f"{prefix}*")], sid="CreateModels"
            ),
            policies.statement(
                ["sagemaker:CreateEndpointConfig"],
                [sm("endpoint-config", f"{prefix}*")],
                sid="CreateEndpointConfigs",
            ),
            policies.statement(
                ["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"],
                [*endpoint_arns, sm("endpoint-config", f"{prefix}*")],
                sid="DeployEndpoints",
            ),
            policies.statement(["sagemaker:DescribeEndpoint"], endpoint_arns, sid="WatchEndpoints"),
            policies.statement(
                ["iam:PassRole"],
                [self.training_role.arn, a.staging.role_arn, a.production.role_arn],
                sid="PassSageMakerRoles",
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            policies.statement(
                ["lambda:InvokeFunction"],
                [fn.arn for fn in self.functions.values()],
                sid="InvokeGateFunctions",
            ),
            policies.statement(["sns:Publish"], [self.topic.arn], sid="Notify"),
            policies.kms_use(a.key_arn),
            policies.sfn_log_delivery(),
        ]
