"""Building blocks of the training pipeline's Step Functions definition (plain, no Pulumi).

The Task resources the definition may use, the retry/catch policies every Task shares, and small
builders for one state each (a Task with the default ``Catch``, a Lambda invoke, the promote step,
an SNS notify that ends in a Fail state, a Fail state). :mod:`components.pipeline_definition`
assembles them into the whole state machine; its docstring describes the state data.
"""

from __future__ import annotations

import re
from typing import Any

GLUE_START = "arn:aws:states:::glue:startJobRun"
GLUE_GET_RUN = "arn:aws:states:::aws-sdk:glue:getJobRun"
S3_GET_OBJECT = "arn:aws:states:::aws-sdk:s3:getObject"
SAGEMAKER_CREATE_TRAINING = "arn:aws:states:::sagemaker:createTrainingJob"
SAGEMAKER_DESCRIBE_TRAINING = "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob"
SAGEMAKER_CREATE_MODEL = "arn:aws:states:::sagemaker:createModel"
SAGEMAKER_CREATE_ENDPOINT_CONFIG = "arn:aws:states:::sagemaker:createEndpointConfig"
SAGEMAKER_CREATE_ENDPOINT = "arn:aws:states:::sagemaker:createEndpoint"
SAGEMAKER_UPDATE_ENDPOINT = "arn:aws:states:::sagemaker:updateEndpoint"
SAGEMAKER_DESCRIBE_ENDPOINT = "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
SNS_PUBLISH = "arn:aws:states:::sns:publish"

#: Every Task resource the definition may use (tests assert nothing else appears).
ALLOWED_TASK_RESOURCES = frozenset(
    {
        GLUE_START,
        GLUE_GET_RUN,
        S3_GET_OBJECT,
        SAGEMAKER_CREATE_TRAINING,
        SAGEMAKER_DESCRIBE_TRAINING,
        SAGEMAKER_CREATE_MODEL,
        SAGEMAKER_CREATE_ENDPOINT_CONFIG,
        SAGEMAKER_CREATE_ENDPOINT,
        SAGEMAKER_UPDATE_ENDPOINT,
        SAGEMAKER_DESCRIBE_ENDPOINT,
        LAMBDA_INVOKE,
        SNS_PUBLISH,
    }
)

LAMBDA_RETRY = [
    {
        "ErrorEquals": [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        ],
        "IntervalSeconds": 2,
        "MaxAttempts": 3,
        "BackoffRate": 2.0,
    }
]
#: The promote step while another execution of the stack holds the promotion lock
#: (``jobs.aws.promotion_lock.PromotionBusy``): retried with backoff instead of a Lambda waiting.
PROMOTION_BUSY = "PromotionBusy"
PROMOTION_RETRY_BACKOFF = 1.5
PROMOTION_RETRY_MAX_DELAY_S = 120
_SAFE_LITERAL = re.compile(r"^[A-Za-z0-9._:/@+=-]*$")


class DefinitionError(ValueError):
    """An input to :func:`components.pipeline_definition.build_definition` cannot produce a valid
    state machine."""


def literal(name: str, value: str) -> str:
    """A value embedded inside an intrinsic function string literal must not need escaping."""
    if not isinstance(value, str) or not value or not _SAFE_LITERAL.match(value):
        raise DefinitionError(f"{name}={value!r} is empty or has characters unsafe in ASL literals")
    return value


def catch(next_state: str = "NotifyFailure") -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": next_state}]


def task(resource: str, parameters: dict, next_state: str, **extra: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"Type": "Task", "Resource": resource, "Parameters": parameters}
    state.update(extra)
    state["Next"] = next_state
    state.setdefault("Catch", catch())
    return state


def lambda_task(
    function_arn: str, result_path: str, next_state: str, **extra: Any
) -> dict[str, Any]:
    return task(
        LAMBDA_INVOKE,
        {"FunctionName": function_arn, "Payload.$": "$"},
        next_state,
        ResultSelector={"output.$": "$.Payload"},
        ResultPath=result_path,
        **{"Retry": LAMBDA_RETRY, **extra},
    )


def promote(function_arn: str, *, interval_s: int, max_attempts: int) -> dict[str, Any]:
    """The promote step: one promotion per stack at a time (the Lambda's lock item); while
    another execution holds it the step fails with ``PromotionBusy`` and is retried with backoff;
    when the retries run out the execution ends in the ``PromotionBusy`` Fail state."""
    busy = {
        "ErrorEquals": [PROMOTION_BUSY],
        "IntervalSeconds": interval_s,
        "MaxAttempts": max_attempts,
        "BackoffRate": PROMOTION_RETRY_BACKOFF,
        "MaxDelaySeconds": max(interval_s, PROMOTION_RETRY_MAX_DELAY_S),
    }
    return lambda_task(
        function_arn,
        "$.promote",
        "IsPromoted",
        Retry=[busy, *LAMBDA_RETRY],
        Catch=[
            {
                "ErrorEquals": [PROMOTION_BUSY],
                "ResultPath": "$.error",
                "Next": "NotifyPromotionBusy",
            },
            *catch(),
        ],
    )


def promotion_wait_s(interval_s: int, max_attempts: int) -> float:
    """How long the promote step keeps retrying a busy lock before the execution fails."""
    max_delay = max(interval_s, PROMOTION_RETRY_MAX_DELAY_S)
    return sum(
        min(interval_s * PROMOTION_RETRY_BACKOFF**attempt, max_delay)
        for attempt in range(max_attempts)
    )


def notify(topic_arn: str, stack: str, subject: str, fail_state: str) -> dict[str, Any]:
    """An SNS publish that always ends in ``fail_state`` (also when the publish itself fails)."""
    if re.search(r"[{}'\\]", subject):
        raise DefinitionError(f"subject {subject!r} has characters unsafe in ASL literals")
    return {
        "Type": "Task",
        "Resource": SNS_PUBLISH,
        "Parameters": {
            "TopicArn": topic_arn,
            "Subject": f"abalone-{stack}: {subject}"[:100],
            "Message.$": f"States.Format('Execution {{}} ended: {subject}. State: {{}}', "
            "$$.Execution.Name, States.JsonToString($))",
        },
        "ResultPath": None,
        "Next": fail_state,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": fail_state}],
    }


def fail(error: str, cause: str) -> dict[str, Any]:
    """A Fail state: the execution ends with ``error`` (its name is the state's name)."""
    return {"Type": "Fail", "Error": error, "Cause": cause}


def wait(seconds: int, next_state: str) -> dict[str, Any]:
    return {"Type": "Wait", "Seconds": seconds, "Next": next_state}
