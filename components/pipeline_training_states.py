"""The first half of the training pipeline's states: check the input, validate + prepare, train.

Plain functions (no Pulumi) returning ordered ``{state name: state}`` dicts that
:func:`components.pipeline_definition.build_definition` joins into the whole state machine. The
Glue run and the training job both run start + poll (no ``.sync``), see that module's docstring.
"""

from __future__ import annotations

from typing import Any

from components.pipeline_states import (
    GLUE_GET_RUN,
    GLUE_START,
    S3_GET_OBJECT,
    SAGEMAKER_CREATE_TRAINING,
    SAGEMAKER_DESCRIBE_TRAINING,
    catch,
    notify,
    task,
    wait,
)

GLUE_FAILED_STATES = ("FAILED", "ERROR", "TIMEOUT", "STOPPED")
VALIDATION_RESULT_KEY = "runs/{}/ingest_result.json"
LANDED_KEY_PATTERN = "raw/*T*Z-*/*"
EXEC_NAME = "$$.Execution.Name"


def intake_states(
    *,
    stack: str,
    topic_arn: str,
    data_bucket: str,
    artifacts_bucket: str,
    tracking_server_arn: str,
) -> dict[str, dict[str, Any]]:
    """Check the execution input, skip objects an ingest landed, and set up ``$.context``."""
    return {
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
        "NotifyInvalidInput": notify(topic_arn, stack, "invalid execution input", "InvalidInput"),
        "Init": {
            "Type": "Pass",
            "Parameters": _context(stack, data_bucket, artifacts_bucket, tracking_server_arn),
            "ResultPath": "$.context",
            "Next": "StartValidation",
        },
    }


def _context(
    stack: str, data_bucket: str, artifacts_bucket: str, tracking_server_arn: str
) -> dict[str, Any]:
    """``$.context``: the stack's names and the SageMaker names this execution creates."""
    per_run = f"States.Format('abalone-{stack}-{{}}', {EXEC_NAME})"
    staging = f"States.Format('abalone-{stack}-stg-{{}}', {EXEC_NAME})"
    production = f"States.Format('abalone-{stack}-prod-{{}}', {EXEC_NAME})"
    return {
        "stack": stack,
        "data_bucket": data_bucket,
        "artifacts_bucket": artifacts_bucket,
        "tracking_server_arn": tracking_server_arn,
        "execution_name.$": EXEC_NAME,
        "source_uri.$": "States.Format('s3://{}/{}', $.bucket, $.key)",
        "validation_result_key.$": f"States.Format('{VALIDATION_RESULT_KEY}', {EXEC_NAME})",
        "training_job.$": per_run,
        "staging_model.$": staging,
        "staging_config.$": staging,
        "production_model.$": production,
        "production_config.$": production,
    }


def validation_states(
    *, stack: str, topic_arn: str, glue_job_name: str, data_bucket: str, poll_seconds: int
) -> dict[str, dict[str, Any]]:
    """Run the Glue validate+prepare job, poll it, read its result and branch on it."""
    return {
        "StartValidation": task(
            GLUE_START,
            {
                "JobName": glue_job_name,
                "Arguments": {"--source.$": "$.context.source_uri", "--run_id.$": EXEC_NAME},
            },
            "WaitForValidation",
            ResultSelector={"JobRunId.$": "$.JobRunId"},
            ResultPath="$.glue",
        ),
        "WaitForValidation": wait(poll_seconds, "GetValidationRun"),
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
            topic_arn, stack, "validation job failed", "ValidationJobFailed"
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
            topic_arn, stack, "batch rejected by data quality", "DataQualityRejected"
        ),
    }


def training_states(
    *,
    stack: str,
    topic_arn: str,
    poll_seconds: int,
    training_job: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Start the SageMaker training job (``training_job``: its CreateTrainingJob parameters),
    poll it until it ends, then read the model artifact's URL."""
    return {
        "StartTraining": task(
            SAGEMAKER_CREATE_TRAINING, training_job, "WaitForTraining", ResultPath=None
        ),
        "WaitForTraining": wait(poll_seconds, "GetTrainingJob"),
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
        "NotifyTrainingFailed": notify(topic_arn, stack, "training job failed", "TrainingFailed"),
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
    }


def training_job_parameters(
    *,
    training_role_arn: str,
    training_image_uri: str,
    code_s3_uri: str,
    container_env: dict[str, str],
    artifacts_bucket: str,
    kms_key_arn: str,
    training_instance_type: str,
    training_volume_gb: int,
    training_max_runtime_s: int,
) -> dict[str, Any]:
    """CreateTrainingJob parameters: ``train.py`` from ``code_s3_uri`` in the scikit-learn
    container, the accepted batch's channels, its lineage in the environment."""
    return {
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
        "InputDataConfig": [_split_channel(s) for s in ("train", "validation", "test")],
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
    }


def _split_channel(split: str) -> dict[str, Any]:
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
