"""The second half of the training pipeline's states: gate → staging → system test → (approval)
→ promote → production.

Plain functions (no Pulumi) returning ordered ``{state name: state}`` dicts that
:func:`components.pipeline_definition.build_definition` joins into the whole state machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.pipeline_states import (
    SAGEMAKER_CREATE_ENDPOINT,
    SAGEMAKER_CREATE_ENDPOINT_CONFIG,
    SAGEMAKER_CREATE_MODEL,
    SAGEMAKER_DESCRIBE_ENDPOINT,
    SAGEMAKER_UPDATE_ENDPOINT,
    SNS_PUBLISH,
    catch,
    fail,
    lambda_task,
    notify,
    promote,
    task,
    wait,
)


def release_states(
    *,
    stack: str,
    topic_arn: str,
    lambda_arns: dict[str, str],
    require_approval: bool,
    promotion_retry_interval_s: int,
    promotion_retry_max_attempts: int,
) -> dict[str, dict[str, Any]]:
    """The gate (rules 1-3), the system test (rule 4) and the promotion (all rules, moves
    ``@champion``); the staging and production deployments are :func:`deploy_states`."""
    return {
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
        "NotifyGateRejected": notify(topic_arn, stack, "gate rejected", "GateRejected"),
        "SystemTest": lambda_task(
            lambda_arns["system_test"], "$.system_test", "IsSystemTestPassed"
        ),
        "IsSystemTestPassed": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.system_test.output.passed",
                    "BooleanEquals": True,
                    "Next": "NotifyApprovalNeeded" if require_approval else "Promote",
                }
            ],
            "Default": "NotifySystemTestFailed",
        },
        "NotifySystemTestFailed": notify(
            topic_arn, stack, "system test failed", "SystemTestFailed"
        ),
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
            topic_arn, stack, "promotion refused by gate", "GateRejected"
        ),
        "NotifyPromotionBusy": notify(
            topic_arn, stack, "promotion lock stayed busy", "PromotionBusy"
        ),
    }


def approval_states(
    *,
    stack: str,
    topic_arn: str,
    approval_arn: str,
    approval_timeout_s: int,
    approval_poll_seconds: int,
) -> dict[str, dict[str, Any]]:
    """Ask for approval (SNS), then poll the approval Lambda until the model version is approved
    (→ ``Promote``), rejected, or ``approval_timeout_s`` has passed."""
    return {
        "NotifyApprovalNeeded": {
            "Type": "Task",
            "Resource": SNS_PUBLISH,
            "Parameters": {
                "TopicArn": topic_arn,
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
        "CheckApproval": lambda_task(approval_arn, "$.approval", "IsApproved"),
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
        "WaitForApproval": wait(approval_poll_seconds, "CountApprovalWait"),
        "CountApprovalWait": {
            "Type": "Pass",
            "Parameters": {
                "elapsed_s.$": f"States.MathAdd($.approval_wait.elapsed_s, {approval_poll_seconds})"
            },
            "ResultPath": "$.approval_wait",
            "Next": "CheckApproval",
        },
        "NotifyApprovalRejected": notify(topic_arn, stack, "approval rejected", "ApprovalRejected"),
        "NotifyApprovalTimedOut": notify(
            topic_arn, stack, "approval timed out", "ApprovalTimedOut"
        ),
        "ApprovalRejected": fail("ApprovalRejected", "a reviewer rejected the model version"),
        "ApprovalTimedOut": fail(
            "ApprovalTimedOut", "no approval within the stack's approval timeout"
        ),
    }


@dataclass(frozen=True)
class Serving:
    """What the staging and the production deployment share."""

    inference_image_uri: str
    code_s3_uri: str
    capture: dict[str, Any]  # the endpoint config's DataCaptureConfig
    container_env: dict[str, str]
    poll_seconds: int
    stack: str
    topic_arn: str


def deploy_states(
    serving: Serving,
    *,
    prefix: str,
    endpoint: dict[str, Any],
    model_key: str,
    config_key: str,
    next_state: str,
) -> dict[str, dict[str, Any]]:
    """Create model + endpoint config, create-or-update the endpoint, poll until InService."""
    env = dict(serving.container_env)
    env.update(
        {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": serving.code_s3_uri}
    )
    variant = dict(endpoint["variant"])
    variant["ModelName.$"] = f"$.context.{model_key}"
    return {
        f"Create{prefix}Model": task(
            SAGEMAKER_CREATE_MODEL,
            {
                "ModelName.$": f"$.context.{model_key}",
                "ExecutionRoleArn": endpoint["model_role_arn"],
                "PrimaryContainer": {
                    "Image": serving.inference_image_uri,
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
                "DataCaptureConfig": serving.capture,
            },
            f"Find{prefix}Endpoint",
            ResultPath=None,
        ),
        **_rollout_states(
            serving, prefix=prefix, endpoint=endpoint, config_key=config_key, next_state=next_state
        ),
    }


def _rollout_states(
    serving: Serving, *, prefix: str, endpoint: dict[str, Any], config_key: str, next_state: str
) -> dict[str, dict[str, Any]]:
    """Create the endpoint, or update it (blue/green with the endpoint's ``deployment_config``),
    then poll until it is InService on this execution's config; a rollback or a failed
    deployment ends the run in its notify → Fail pair."""
    name = endpoint["name"]
    status = f"$.{prefix.lower()}_endpoint"
    update_params: dict[str, Any] = {
        "EndpointName": name,
        "EndpointConfigName.$": f"$.context.{config_key}",
    }
    if endpoint.get("deployment_config"):
        update_params["DeploymentConfig"] = endpoint["deployment_config"]
    return {
        # DescribeEndpoint fails when the endpoint does not exist yet: then create it.
        f"Find{prefix}Endpoint": task(
            SAGEMAKER_DESCRIBE_ENDPOINT,
            {"EndpointName": name},
            f"Update{prefix}Endpoint",
            ResultSelector={"Status.$": "$.EndpointStatus"},
            ResultPath=status,
            Catch=[
                {
                    "ErrorEquals": ["States.TaskFailed"],
                    "ResultPath": status,
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
        f"WaitFor{prefix}Endpoint": wait(serving.poll_seconds, f"Check{prefix}Endpoint"),
        f"Check{prefix}Endpoint": task(
            SAGEMAKER_DESCRIBE_ENDPOINT,
            {"EndpointName": name},
            f"Is{prefix}EndpointReady",
            ResultSelector={
                "Status.$": "$.EndpointStatus",
                "EndpointConfigName.$": "$.EndpointConfigName",
            },
            ResultPath=status,
        ),
        f"Is{prefix}EndpointReady": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {
                            "Variable": f"{status}.Status",
                            "StringEquals": "InService",
                        },
                        {
                            "Variable": f"{status}.EndpointConfigName",
                            "StringEqualsPath": f"$.context.{config_key}",
                        },
                    ],
                    "Next": next_state,
                },
                {
                    # InService on another config: blue/green rolled the update back.
                    "Variable": f"{status}.Status",
                    "StringEquals": "InService",
                    "Next": f"Notify{prefix}RolledBack",
                },
                {
                    "Variable": f"{status}.Status",
                    "StringEquals": "Failed",
                    "Next": f"Notify{prefix}DeploymentFailed",
                },
            ],
            "Default": f"WaitFor{prefix}Endpoint",
        },
        f"Notify{prefix}RolledBack": notify(
            serving.topic_arn,
            serving.stack,
            f"{prefix.lower()} deployment rolled back",
            "DeploymentRolledBack",
        ),
        f"Notify{prefix}DeploymentFailed": notify(
            serving.topic_arn,
            serving.stack,
            f"{prefix.lower()} deployment failed",
            "DeploymentFailed",
        ),
    }
