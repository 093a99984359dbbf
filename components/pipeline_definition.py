"""The training pipeline's Step Functions definition (Amazon States Language), built by a plain function.

No Pulumi types here: plain strings in, a ``dict`` out (``json.dumps`` it). The ``TrainingPipeline``
component calls it with resolved resource names, and the moto end-to-end test (issue 6) creates a
state machine from the very same function, so the two can never drift apart.

Execution input
    ``{"bucket": "<data bucket>", "key": "raw/<file>"}`` — what the EventBridge rule on
    ``Object Created`` under ``raw/`` sends (input transformer), or what a direct
    ``StartExecution`` passes. Objects an ingest itself lands under ``raw/<ingest_id>/`` (the
    immutable copy and ``_lineage.json``) also fire the rule; those runs end at once in the
    ``IgnoreObject`` Succeed state (the Glue job refuses to re-ingest them anyway). Execution names must be valid SageMaker name parts
    (``[A-Za-z0-9-]``, at most 46 characters); EventBridge-started executions use UUIDs.

State data as it grows (each Lambda receives the whole state object as its event)
    ``context``      stack, execution name, tracking server ARN, buckets, the SageMaker names this
                     execution creates (``training_job``, ``staging_model``, ``staging_config``,
                     ``production_model``, ``production_config``), the validation result key.
    ``glue``         ``{"JobRunId", "State"}`` of the validate+prepare Glue run.
    ``validation``   ``{"Result": <runs/<execution name>/ingest_result.json in the data bucket>}``,
                     written by ``jobs/aws/glue_ingest.py`` (also when it rejects the batch and the
                     run ends FAILED): ``status`` ("accepted"/"rejected"), ``ingest_id``,
                     ``dataset_version``, ``data_quality``, ``report_html``, ``summary_json``,
                     ``channels`` (``train``/``validation``/``test`` S3 prefixes), ….
    ``training``     ``{"Status"}`` then ``{"ModelDataUrl"}`` (``s3://…/model.tar.gz``).
    ``gate``         ``{"output": <gate_handler result>}``; ``output.decision == "reject"`` fails
                     the run (GateRejected); anything else continues to staging.
    ``system_test``  ``{"output": <system_test_handler result>}``; ``output.passed`` must be true.
    ``approval``     (only when approval is required) ``{"output": <approval_handler result>}``;
                     ``output.status`` is ``approved`` | ``pending`` | ``rejected``.
    ``promote``      ``{"output": <promote_handler result>}``; ``output.decision`` must be
                     ``promote``. One promotion per stack at a time: while another execution
                     holds the promotion lock the step fails with ``PromotionBusy`` and is
                     retried (``promotion_retry_*``: interval, backoff rate 1.5, at most 120 s
                     apart); when the retries run out the run ends in ``PromotionBusy``.
    ``error``        set by a ``Catch``: ``{"Error", "Cause"}``.

Glue job arguments per run: ``--source s3://bucket/key`` and ``--run_id <execution name>``; the
job's default arguments (set by the ``DataQualityEtl`` component) are ``--lake``, ``--reports``,
``--env`` and the tracking server. A FAILED run with a ``rejected`` result is a data-quality
rejection (DataQualityRejected); a failed run without a readable result is ValidationJobFailed.

Training job: the SageMaker scikit-learn container runs ``train.py`` (a shim that runs
``python -m jobs.train``) from ``code_s3_uri`` with channels ``train``/``validation``/``test``
pointing at the result's ``channels`` and environment ``MLFLOW_TRACKING_URI`` = the tracking
server ARN, ``ABALONE_ENV``, ``ABALONE_DATASET_VERSION``, ``ABALONE_INGEST_ID``,
``ABALONE_DATA_QUALITY``, ``ABALONE_REPORT_PATH``, ``ABALONE_SUMMARY_JSON`` (``jobs/train.py``).

Every Task has a ``Catch`` on ``States.ALL`` to ``NotifyFailure`` (SNS publish) → ``PipelineFailed``
(Fail); every business rejection (data quality, gate, system test, approval, deployment rollback)
has its own notify → Fail pair. Only start + poll patterns are used (no ``.sync``), so the definition
runs unchanged on AWS and under moto's Step Functions interpreter. One moto 5.2 gap: its AWS SDK
integrations return ``s3:getObject``'s ``Body`` as a stream where AWS returns a string, so
``ReadValidationResult`` needs the small patch in
``tests/components/test_pipeline_definition.py::patch_moto_sdk_bodies`` under moto.
"""

from __future__ import annotations

from typing import Any

from components.pipeline_states import (
    ALLOWED_TASK_RESOURCES,
    GLUE_GET_RUN,
    GLUE_START,
    LAMBDA_INVOKE,
    PROMOTION_BUSY,
    PROMOTION_RETRY_BACKOFF,
    PROMOTION_RETRY_MAX_DELAY_S,
    S3_GET_OBJECT,
    SAGEMAKER_CREATE_ENDPOINT,
    SAGEMAKER_CREATE_ENDPOINT_CONFIG,
    SAGEMAKER_CREATE_MODEL,
    SAGEMAKER_CREATE_TRAINING,
    SAGEMAKER_DESCRIBE_ENDPOINT,
    SAGEMAKER_DESCRIBE_TRAINING,
    SAGEMAKER_UPDATE_ENDPOINT,
    SNS_PUBLISH,
    DefinitionError,
    catch,
    lambda_task,
    literal,
    notify,
    promote,
    promotion_wait_s,
    task,
)

__all__ = [
    "ALLOWED_TASK_RESOURCES",
    "GLUE_GET_RUN",
    "GLUE_START",
    "LAMBDA_INVOKE",
    "PROMOTION_BUSY",
    "PROMOTION_RETRY_BACKOFF",
    "PROMOTION_RETRY_MAX_DELAY_S",
    "S3_GET_OBJECT",
    "SAGEMAKER_CREATE_ENDPOINT",
    "SAGEMAKER_CREATE_ENDPOINT_CONFIG",
    "SAGEMAKER_CREATE_MODEL",
    "SAGEMAKER_CREATE_TRAINING",
    "SAGEMAKER_DESCRIBE_ENDPOINT",
    "SAGEMAKER_DESCRIBE_TRAINING",
    "SAGEMAKER_UPDATE_ENDPOINT",
    "SNS_PUBLISH",
    "DefinitionError",
    "build_definition",
    "promotion_wait_s",
]

LAMBDA_KEYS = ("gate", "system_test", "approval", "promote")
GLUE_FAILED_STATES = ("FAILED", "ERROR", "TIMEOUT", "STOPPED")
VALIDATION_RESULT_KEY = "runs/{}/ingest_result.json"
LANDED_KEY_PATTERN = "raw/*T*Z-*/*"


def _deploy_states(
    *,
    prefix: str,
    endpoint: dict[str, Any],
    model_key: str,
    config_key: str,
    inference_image_uri: str,
    code_s3_uri: str,
    capture: dict[str, Any],
    container_env: dict[str, str],
    poll_seconds: int,
    next_state: str,
    stack: str,
    topic_arn: str,
) -> dict[str, dict[str, Any]]:
    """Create model + endpoint config, create-or-update the endpoint, poll until InService."""
    name = endpoint["name"]
    variant = dict(endpoint["variant"])
    variant["ModelName.$"] = f"$.context.{model_key}"
    update_params: dict[str, Any] = {
        "EndpointName": name,
        "EndpointConfigName.$": f"$.context.{config_key}",
    }
    if endpoint.get("deployment_config"):
        update_params["DeploymentConfig"] = endpoint["deployment_config"]
    env = dict(container_env)
    env.update({"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": code_s3_uri})
    states = {
        f"Create{prefix}Model": task(
            SAGEMAKER_CREATE_MODEL,
            {
                "ModelName.$": f"$.context.{model_key}",
                "ExecutionRoleArn": endpoint["model_role_arn"],
                "PrimaryContainer": {
                    "Image": inference_image_uri,
                    "ModelDataUrl.$": "$.training.ModelDataUrl",
                    "Environment": env,
                },
            },
            f"Create{prefix}EndpointConfig",
            ResultPath=None,
        ),
        f"Create{prefix}EndpointConfig": task(
            SAGEMAKER_CREATE_ENDPOINT_CONFIG,
            {
                "EndpointConfigName.$": f"$.context.{config_key}",
                "ProductionVariants": [variant],
                "DataCaptureConfig": capture,
            },
            f"Find{prefix}Endpoint",
            ResultPath=None,
        ),
        # DescribeEndpoint fails when the endpoint does not exist yet: then create it.
        f"Find{prefix}Endpoint": task(
            SAGEMAKER_DESCRIBE_ENDPOINT,
            {"EndpointName": name},
            f"Update{prefix}Endpoint",
            ResultSelector={"Status.$": "$.EndpointStatus"},
            ResultPath=f"$.{prefix.lower()}_endpoint",
            Catch=[
                {
                    "ErrorEquals": ["States.TaskFailed"],
                    "ResultPath": f"$.{prefix.lower()}_endpoint",
                    "Next": f"Create{prefix}Endpoint",
                },
                *catch(),
            ],
        ),
        f"Create{prefix}Endpoint": task(
            SAGEMAKER_CREATE_ENDPOINT,
            {"EndpointName": name, "EndpointConfigName.$": f"$.context.{config_key}"},
            f"WaitFor{prefix}Endpoint",
            ResultPath=None,
        ),
        f"Update{prefix}Endpoint": task(
            SAGEMAKER_UPDATE_ENDPOINT, update_params, f"WaitFor{prefix}Endpoint", ResultPath=None
        ),
        f"WaitFor{prefix}Endpoint": {
            "Type": "Wait",
            "Seconds": poll_seconds,
            "Next": f"Check{prefix}Endpoint",
        },
        f"Check{prefix}Endpoint": task(
            SAGEMAKER_DESCRIBE_ENDPOINT,
            {"EndpointName": name},
            f"Is{prefix}EndpointReady",
            ResultSelector={
                "Status.$": "$.EndpointStatus",
                "EndpointConfigName.$": "$.EndpointConfigName",
            },
            ResultPath=f"$.{prefix.lower()}_endpoint",
        ),
        f"Is{prefix}EndpointReady": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {
                            "Variable": f"$.{prefix.lower()}_endpoint.Status",
                            "StringEquals": "InService",
                        },
                        {
                            "Variable": f"$.{prefix.lower()}_endpoint.EndpointConfigName",
                            "StringEqualsPath": f"$.context.{config_key}",
                        },
                    ],
                    "Next": next_state,
                },
                {
                    # InService on another config: blue/green rolled the update back.
                    "Variable": f"$.{prefix.lower()}_endpoint.Status",
                    "StringEquals": "InService",
                    "Next": f"Notify{prefix}RolledBack",
                },
                {
                    "Variable": f"$.{prefix.lower()}_endpoint.Status",
                    "StringEquals": "Failed",
                    "Next": f"Notify{prefix}DeploymentFailed",
                },
            ],
            "Default": f"WaitFor{prefix}Endpoint",
        },
        f"Notify{prefix}RolledBack": notify(
            topic_arn, stack, f"{prefix.lower()} deployment rolled back", "DeploymentRolledBack"
        ),
        f"Notify{prefix}DeploymentFailed": notify(
            topic_arn, stack, f"{prefix.lower()} deployment failed", "DeploymentFailed"
        ),
    }
    return states


def build_definition(
    *,
    stack: str,
    glue_job_name: str,
    training_role_arn: str,
    training_image_uri: str,
    training_instance_type: str,
    code_s3_uri: str,
    data_bucket: str,
    artifacts_bucket: str,
    tracking_server_arn: str,
    lambda_arns: dict[str, str],
    sns_topic_arn: str,
    inference_image_uri: str,
    kms_key_arn: str,
    staging_endpoint: dict[str, Any],
    production_endpoint: dict[str, Any],
    require_approval: bool,
    approval_timeout_s: int,
    poll_seconds: int = 60,
    approval_poll_seconds: int = 300,
    capture_percentage: int = 100,
    training_max_runtime_s: int = 3600,
    training_volume_gb: int = 10,
    promotion_retry_interval_s: int = 15,
    promotion_retry_max_attempts: int = 12,
) -> dict[str, Any]:
    """Return the ASL definition (a dict) of the training pipeline for one stack.

    ``staging_endpoint`` / ``production_endpoint``: ``{"name": str, "model_role_arn": str,
    "variant": <one SageMaker ProductionVariant without ModelName, API casing>,
    "deployment_config": <UpdateEndpoint DeploymentConfig, API casing> | None}``. ``lambda_arns`` needs the keys ``gate``,
    ``system_test``, ``approval`` and ``promote``. Raises :class:`DefinitionError` on bad input.
    """
    missing = [key for key in LAMBDA_KEYS if not lambda_arns.get(key)]
    if missing:
        raise DefinitionError(f"lambda_arns is missing {', '.join(missing)}")
    if poll_seconds < 1 or approval_poll_seconds < 1:
        raise DefinitionError("poll_seconds and approval_poll_seconds must be ≥ 1")
    if require_approval and approval_timeout_s < approval_poll_seconds:
        raise DefinitionError("approval_timeout_s must be at least one approval poll interval")
    if promotion_retry_interval_s < 1 or promotion_retry_max_attempts < 1:
        raise DefinitionError(
            "promotion_retry_interval_s and promotion_retry_max_attempts must be ≥ 1"
        )
    if not 0 <= capture_percentage <= 100:
        raise DefinitionError(f"capture_percentage={capture_percentage} is not within 0..100")
    for endpoint in (staging_endpoint, production_endpoint):
        if not endpoint.get("name") or not endpoint.get("model_role_arn"):
            raise DefinitionError("each endpoint needs a 'name' and a 'model_role_arn'")
        if not isinstance(endpoint.get("variant"), dict):
            raise DefinitionError(f"endpoint {endpoint['name']} needs a 'variant' dict")
    stack = literal("stack", stack)
    data_bucket = literal("data_bucket", data_bucket)
    artifacts_bucket = literal("artifacts_bucket", artifacts_bucket)
    literal("code_s3_uri", code_s3_uri)

    exec_name = "$$.Execution.Name"
    busy_wait = promotion_wait_s(promotion_retry_interval_s, promotion_retry_max_attempts)
    busy_wait_min = max(1, round(busy_wait / 60))
    result_key = f"States.Format('{VALIDATION_RESULT_KEY}', {exec_name})"
    container_env = {"ABALONE_ENV": stack, "MLFLOW_TRACKING_URI": tracking_server_arn}
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": capture_percentage,
        "DestinationS3Uri": f"s3://{data_bucket}/capture/",
        "KmsKeyId": kms_key_arn,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
    }

    def split_channel(split: str) -> dict[str, Any]:
        return {
            "ChannelName": split,
            "ContentType": "text/csv",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3DataDistributionType": "FullyReplicated",
                    "S3Uri.$": f"$.validation.Result.channels.{split}",
                }
            },
        }

    after_system_test = "NotifyApprovalNeeded" if require_approval else "Promote"
    states: dict[str, dict[str, Any]] = {
        "CheckInput": {
            "Type": "Choice",
            "Choices": [
                {
                    "Or": [
                        {"Not": {"Variable": "$.bucket", "IsPresent": True}},
                        {"Not": {"Variable": "$.key", "IsPresent": True}},
                    ],
                    "Next": "NotifyInvalidInput",
                },
                {
                    "Variable": "$.key",
                    "StringMatches": LANDED_KEY_PATTERN,
                    "Next": "IgnoreObject",
                },
            ],
            "Default": "Init",
        },
        "IgnoreObject": {"Type": "Succeed", "Comment": "an object an ingest landed, not a batch"},
        "NotifyInvalidInput": notify(
            sns_topic_arn, stack, "invalid execution input", "InvalidInput"
        ),
        "Init": {
            "Type": "Pass",
            "Parameters": {
                "stack": stack,
                "data_bucket": data_bucket,
                "artifacts_bucket": artifacts_bucket,
                "tracking_server_arn": tracking_server_arn,
                "execution_name.$": exec_name,
                "source_uri.$": "States.Format('s3://{}/{}', $.bucket, $.key)",
                "validation_result_key.$": result_key,
                "training_job.$": f"States.Format('abalone-{stack}-{{}}', {exec_name})",
                "staging_model.$": f"States.Format('abalone-{stack}-stg-{{}}', {exec_name})",
                "staging_config.$": f"States.Format('abalone-{stack}-stg-{{}}', {exec_name})",
                "production_model.$": f"States.Format('abalone-{stack}-prod-{{}}', {exec_name})",
                "production_config.$": f"States.Format('abalone-{stack}-prod-{{}}', {exec_name})",
            },
            "ResultPath": "$.context",
            "Next": "StartValidation",
        },
        # ---- validate + prepare (Glue) ------------------------------------------------------
        "StartValidation": task(
            GLUE_START,
            {
                "JobName": glue_job_name,
                "Arguments": {"--source.$": "$.context.source_uri", "--run_id.$": exec_name},
            },
            "WaitForValidation",
            ResultSelector={"JobRunId.$": "$.JobRunId"},
            ResultPath="$.glue",
        ),
        "WaitForValidation": {"Type": "Wait", "Seconds": poll_seconds, "Next": "GetValidationRun"},
        "GetValidationRun": task(
            GLUE_GET_RUN,
            {"JobName": glue_job_name, "RunId.$": "$.glue.JobRunId"},
            "IsValidationDone",
            ResultSelector={"JobRunId.$": "$.JobRun.Id", "State.$": "$.JobRun.JobRunState"},
            ResultPath="$.glue",
        ),
        "IsValidationDone": {
            "Type": "Choice",
            "Choices": [
                {
                    # a rejected batch ends the Glue run FAILED after writing its result
                    "Or": [
                        {"Variable": "$.glue.State", "StringEquals": s}
                        for s in ("SUCCEEDED", *GLUE_FAILED_STATES)
                    ],
                    "Next": "ReadValidationResult",
                },
            ],
            "Default": "WaitForValidation",
        },
        "NotifyValidationJobFailed": notify(
            sns_topic_arn, stack, "validation job failed", "ValidationJobFailed"
        ),
        "ReadValidationResult": task(
            S3_GET_OBJECT,
            {"Bucket": data_bucket, "Key.$": "$.context.validation_result_key"},
            "IsBatchAccepted",
            ResultSelector={"Result.$": "States.StringToJson($.Body)"},
            ResultPath="$.validation",
            Catch=catch("NotifyValidationJobFailed"),
        ),
        "IsBatchAccepted": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.glue.State", "StringEquals": "SUCCEEDED"},
                        {"Variable": "$.validation.Result.status", "StringEquals": "accepted"},
                        {"Variable": "$.validation.Result.dataset_version", "IsString": True},
                        {"Variable": "$.validation.Result.channels.train", "IsString": True},
                    ],
                    "Next": "StartTraining",
                },
                {
                    "Variable": "$.validation.Result.status",
                    "StringEquals": "rejected",
                    "Next": "NotifyDataQualityRejected",
                },
            ],
            "Default": "NotifyValidationJobFailed",
        },
        "NotifyDataQualityRejected": notify(
            sns_topic_arn, stack, "batch rejected by data quality", "DataQualityRejected"
        ),
        # ---- train (SageMaker training job, start + poll) ---------------------------------
        "StartTraining": task(
            SAGEMAKER_CREATE_TRAINING,
            {
                "TrainingJobName.$": "$.context.training_job",
                "RoleArn": training_role_arn,
                "AlgorithmSpecification": {
                    "TrainingImage": training_image_uri,
                    "TrainingInputMode": "File",
                },
                "HyperParameters": {
                    "sagemaker_program": "train.py",
                    "sagemaker_submit_directory": code_s3_uri,
                    "sagemaker_container_log_level": "20",
                },
                "Environment": {
                    **container_env,
                    "PYTHONPATH": "/opt/ml/code",
                    "ABALONE_DATASET_VERSION.$": "$.validation.Result.dataset_version",
                    "ABALONE_INGEST_ID.$": "$.validation.Result.ingest_id",
                    "ABALONE_DATA_QUALITY.$": "$.validation.Result.data_quality",
                    "ABALONE_REPORT_PATH.$": "$.validation.Result.report_html",
                    "ABALONE_SUMMARY_JSON.$": "$.validation.Result.summary_json",
                },
                "InputDataConfig": [split_channel(s) for s in ("train", "validation", "test")],
                "OutputDataConfig": {
                    "S3OutputPath": f"s3://{artifacts_bucket}/training/",
                    "KmsKeyId": kms_key_arn,
                },
                "ResourceConfig": {
                    "InstanceType": training_instance_type,
                    "InstanceCount": 1,
                    "VolumeSizeInGB": training_volume_gb,
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": training_max_runtime_s},
            },
            "WaitForTraining",
            ResultPath=None,
        ),
        "WaitForTraining": {"Type": "Wait", "Seconds": poll_seconds, "Next": "GetTrainingJob"},
        "GetTrainingJob": task(
            SAGEMAKER_DESCRIBE_TRAINING,
            {"TrainingJobName.$": "$.context.training_job"},
            "IsTrainingDone",
            ResultSelector={"Status.$": "$.TrainingJobStatus"},
            ResultPath="$.training",
        ),
        "IsTrainingDone": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.training.Status",
                    "StringEquals": "Completed",
                    "Next": "GetTrainedModel",
                },
                {
                    "Or": [
                        {"Variable": "$.training.Status", "StringEquals": "Failed"},
                        {"Variable": "$.training.Status", "StringEquals": "Stopped"},
                    ],
                    "Next": "NotifyTrainingFailed",
                },
            ],
            "Default": "WaitForTraining",
        },
        "NotifyTrainingFailed": notify(
            sns_topic_arn, stack, "training job failed", "TrainingFailed"
        ),
        "GetTrainedModel": task(
            SAGEMAKER_DESCRIBE_TRAINING,
            {"TrainingJobName.$": "$.context.training_job"},
            "Gate",
            ResultSelector={
                "Status.$": "$.TrainingJobStatus",
                "ModelDataUrl.$": "$.ModelArtifacts.S3ModelArtifacts",
            },
            ResultPath="$.training",
        ),
        # ---- gate (rules 1-3) --------------------------------------------------------------
        "Gate": lambda_task(lambda_arns["gate"], "$.gate", "IsGatePassed"),
        "IsGatePassed": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.gate.output.decision",
                    "StringEquals": "reject",
                    "Next": "NotifyGateRejected",
                }
            ],
            "Default": "CreateStagingModel",
        },
        "NotifyGateRejected": notify(sns_topic_arn, stack, "gate rejected", "GateRejected"),
        # ---- system test (rule 4) ------------------------------------------------------------
        "SystemTest": lambda_task(
            lambda_arns["system_test"], "$.system_test", "IsSystemTestPassed"
        ),
        "IsSystemTestPassed": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.system_test.output.passed",
                    "BooleanEquals": True,
                    "Next": after_system_test,
                }
            ],
            "Default": "NotifySystemTestFailed",
        },
        "NotifySystemTestFailed": notify(
            sns_topic_arn, stack, "system test failed", "SystemTestFailed"
        ),
        # ---- promote (all rules, moves @champion) -------------------------------------------
        "Promote": promote(
            lambda_arns["promote"],
            interval_s=promotion_retry_interval_s,
            max_attempts=promotion_retry_max_attempts,
        ),
        "IsPromoted": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.promote.output.decision",
                    "StringEquals": "promote",
                    "Next": "CreateProductionModel",
                }
            ],
            "Default": "NotifyPromotionRefused",
        },
        "NotifyPromotionRefused": notify(
            sns_topic_arn, stack, "promotion refused by gate", "GateRejected"
        ),
        "NotifyPromotionBusy": notify(
            sns_topic_arn, stack, "promotion lock stayed busy", "PromotionBusy"
        ),
        "Done": {"Type": "Succeed"},
        # ---- terminal failures -----------------------------------------------------------
        "NotifyFailure": notify(sns_topic_arn, stack, "pipeline step failed", "PipelineFailed"),
        "PipelineFailed": {"Type": "Fail", "Error": "PipelineFailed", "Cause": "a step failed"},
        "InvalidInput": {
            "Type": "Fail",
            "Error": "InvalidInput",
            "Cause": "execution input needs bucket and key",
        },
        "ValidationJobFailed": {
            "Type": "Fail",
            "Error": "ValidationJobFailed",
            "Cause": "the Glue validate+prepare run did not succeed",
        },
        "DataQualityRejected": {
            "Type": "Fail",
            "Error": "DataQualityRejected",
            "Cause": "the batch failed critical expectations and was quarantined",
        },
        "TrainingFailed": {
            "Type": "Fail",
            "Error": "TrainingFailed",
            "Cause": "the SageMaker training job failed or was stopped",
        },
        "GateRejected": {
            "Type": "Fail",
            "Error": "GateRejected",
            "Cause": "the promotion gate rejected the candidate (see gate.reasons tags)",
        },
        "PromotionBusy": {
            "Type": "Fail",
            "Error": "PromotionBusy",
            "Cause": "another promotion of this stack held the promotion lock for longer than "
            f"the promote step retried (~{busy_wait_min} min); nothing was promoted",
        },
        "SystemTestFailed": {
            "Type": "Fail",
            "Error": "SystemTestFailed",
            "Cause": "the staging endpoint failed the system test",
        },
        "DeploymentFailed": {
            "Type": "Fail",
            "Error": "DeploymentFailed",
            "Cause": "the endpoint update failed",
        },
        "DeploymentRolledBack": {
            "Type": "Fail",
            "Error": "DeploymentRolledBack",
            "Cause": "the blue/green update was rolled back by an alarm",
        },
    }
    common = {
        "inference_image_uri": inference_image_uri,
        "code_s3_uri": code_s3_uri,
        "capture": capture,
        "container_env": container_env,
        "poll_seconds": poll_seconds,
        "stack": stack,
        "topic_arn": sns_topic_arn,
    }
    states.update(
        _deploy_states(
            prefix="Staging",
            endpoint=staging_endpoint,
            model_key="staging_model",
            config_key="staging_config",
            next_state="SystemTest",
            **common,
        )
    )
    states.update(
        _deploy_states(
            prefix="Production",
            endpoint=production_endpoint,
            model_key="production_model",
            config_key="production_config",
            next_state="Done",
            **common,
        )
    )
    if require_approval:
        states.update(
            {
                "NotifyApprovalNeeded": {
                    "Type": "Task",
                    "Resource": SNS_PUBLISH,
                    "Parameters": {
                        "TopicArn": sns_topic_arn,
                        "Subject": f"abalone-{stack}: model awaits approval",
                        "Message.$": "States.Format('Execution {} passed the system test. "
                        "Approve the model version in the MLflow UI (tag approval=approved) "
                        "or with abalone approve. State: {}', $$.Execution.Name, "
                        "States.JsonToString($.gate))",
                    },
                    "ResultPath": None,
                    "Next": "StartApprovalWait",
                    "Catch": catch(),
                },
                "StartApprovalWait": {
                    "Type": "Pass",
                    "Result": {"elapsed_s": 0},
                    "ResultPath": "$.approval_wait",
                    "Next": "CheckApproval",
                },
                "CheckApproval": lambda_task(lambda_arns["approval"], "$.approval", "IsApproved"),
                "IsApproved": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Variable": "$.approval.output.status",
                            "StringEquals": "approved",
                            "Next": "Promote",
                        },
                        {
                            "Variable": "$.approval.output.status",
                            "StringEquals": "rejected",
                            "Next": "NotifyApprovalRejected",
                        },
                        {
                            "Variable": "$.approval_wait.elapsed_s",
                            "NumericGreaterThanEquals": approval_timeout_s,
                            "Next": "NotifyApprovalTimedOut",
                        },
                    ],
                    "Default": "WaitForApproval",
                },
                "WaitForApproval": {
                    "Type": "Wait",
                    "Seconds": approval_poll_seconds,
                    "Next": "CountApprovalWait",
                },
                "CountApprovalWait": {
                    "Type": "Pass",
                    "Parameters": {
                        "elapsed_s.$": "States.MathAdd($.approval_wait.elapsed_s, "
                        f"{approval_poll_seconds})"
                    },
                    "ResultPath": "$.approval_wait",
                    "Next": "CheckApproval",
                },
                "NotifyApprovalRejected": notify(
                    sns_topic_arn, stack, "approval rejected", "ApprovalRejected"
                ),
                "NotifyApprovalTimedOut": notify(
                    sns_topic_arn, stack, "approval timed out", "ApprovalTimedOut"
                ),
                "ApprovalRejected": {
                    "Type": "Fail",
                    "Error": "ApprovalRejected",
                    "Cause": "a reviewer rejected the model version",
                },
                "ApprovalTimedOut": {
                    "Type": "Fail",
                    "Error": "ApprovalTimedOut",
                    "Cause": "no approval within the stack's approval timeout",
                },
            }
        )
    return {
        "Comment": f"abalone-{stack}: validate → train → gate → staging → system test"
        + (" → approval" if require_approval else "")
        + " → promote → production",
        "StartAt": "CheckInput",
        "TimeoutSeconds": training_max_runtime_s
        + (approval_timeout_s if require_approval else 0)
        + 6 * 3600,
        "States": states,
    }
