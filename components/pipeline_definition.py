"""The training pipeline's Step Functions definition (Amazon States Language), built by a plain function.

No Pulumi types here: plain strings in, a ``dict`` out (``json.dumps`` it). The ``TrainingPipeline``
component calls it with resolved resource names, and the moto end-to-end test (issue 6) creates a
state machine from the very same function, so the two can never drift apart.

Layout: this module checks the inputs and joins the phases in order;
:mod:`components.pipeline_training_states` builds the check-input, validate (Glue) and train
(SageMaker) states, :mod:`components.pipeline_release_states` the gate, staging and production
deployments, system test, approval and promote states, and :mod:`components.pipeline_states`
the Task resources, retry policies and one-state builders they share. None imports Pulumi.

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

from components.pipeline_release_states import (
    Serving,
    approval_states,
    deploy_states,
    release_states,
)
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
    fail,
    literal,
    notify,
    promotion_wait_s,
)
from components.pipeline_training_states import (
    GLUE_FAILED_STATES,
    LANDED_KEY_PATTERN,
    VALIDATION_RESULT_KEY,
    intake_states,
    training_job_parameters,
    training_states,
    validation_states,
)

__all__ = [
    "ALLOWED_TASK_RESOURCES",
    "GLUE_FAILED_STATES",
    "GLUE_GET_RUN",
    "GLUE_START",
    "LAMBDA_INVOKE",
    "LAMBDA_KEYS",
    "LANDED_KEY_PATTERN",
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
    "VALIDATION_RESULT_KEY",
    "DefinitionError",
    "build_definition",
    "promotion_wait_s",
]

LAMBDA_KEYS = ("gate", "system_test", "approval", "promote")


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
    "deployment_config": <UpdateEndpoint DeploymentConfig, API casing> | None}``.
    ``lambda_arns`` needs the keys ``gate``, ``system_test``, ``approval`` and ``promote``.
    Raises :class:`DefinitionError` on bad input.
    """
    _check_inputs(
        lambda_arns=lambda_arns,
        poll_seconds=poll_seconds,
        approval_poll_seconds=approval_poll_seconds,
        require_approval=require_approval,
        approval_timeout_s=approval_timeout_s,
        promotion_retry_interval_s=promotion_retry_interval_s,
        promotion_retry_max_attempts=promotion_retry_max_attempts,
        capture_percentage=capture_percentage,
        endpoints=(staging_endpoint, production_endpoint),
        literals={
            "stack": stack,
            "data_bucket": data_bucket,
            "artifacts_bucket": artifacts_bucket,
            "code_s3_uri": code_s3_uri,
        },
    )
    alerts = {"stack": stack, "topic_arn": sns_topic_arn}
    container_env = {"ABALONE_ENV": stack, "MLFLOW_TRACKING_URI": tracking_server_arn}
    training_job = training_job_parameters(
        training_role_arn=training_role_arn,
        training_image_uri=training_image_uri,
        code_s3_uri=code_s3_uri,
        container_env=container_env,
        artifacts_bucket=artifacts_bucket,
        kms_key_arn=kms_key_arn,
        training_instance_type=training_instance_type,
        training_volume_gb=training_volume_gb,
        training_max_runtime_s=training_max_runtime_s,
    )
    serving = Serving(
        inference_image_uri=inference_image_uri,
        code_s3_uri=code_s3_uri,
        capture=_capture_config(data_bucket, kms_key_arn, capture_percentage),
        container_env=container_env,
        poll_seconds=poll_seconds,
        **alerts,
    )
    busy_wait = promotion_wait_s(promotion_retry_interval_s, promotion_retry_max_attempts)
    states: dict[str, dict[str, Any]] = {
        **intake_states(
            data_bucket=data_bucket,
            artifacts_bucket=artifacts_bucket,
            tracking_server_arn=tracking_server_arn,
            **alerts,
        ),
        **validation_states(
            glue_job_name=glue_job_name,
            data_bucket=data_bucket,
            poll_seconds=poll_seconds,
            **alerts,
        ),
        **training_states(training_job=training_job, poll_seconds=poll_seconds, **alerts),
        **release_states(
            lambda_arns=lambda_arns,
            require_approval=require_approval,
            promotion_retry_interval_s=promotion_retry_interval_s,
            promotion_retry_max_attempts=promotion_retry_max_attempts,
            **alerts,
        ),
        "Done": {"Type": "Succeed"},
        **_terminal_states(busy_wait_min=max(1, round(busy_wait / 60)), **alerts),
        **deploy_states(
            serving,
            prefix="Staging",
            endpoint=staging_endpoint,
            model_key="staging_model",
            config_key="staging_config",
            next_state="SystemTest",
        ),
        **deploy_states(
            serving,
            prefix="Production",
            endpoint=production_endpoint,
            model_key="production_model",
            config_key="production_config",
            next_state="Done",
        ),
    }
    if require_approval:
        states.update(
            approval_states(
                approval_arn=lambda_arns["approval"],
                approval_timeout_s=approval_timeout_s,
                approval_poll_seconds=approval_poll_seconds,
                **alerts,
            )
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


def _check_inputs(
    *,
    lambda_arns: dict[str, str],
    poll_seconds: int,
    approval_poll_seconds: int,
    require_approval: bool,
    approval_timeout_s: int,
    promotion_retry_interval_s: int,
    promotion_retry_max_attempts: int,
    capture_percentage: int,
    endpoints: tuple[dict[str, Any], ...],
    literals: dict[str, str],
) -> None:
    """Raise :class:`DefinitionError` naming the first input that cannot work (``literals``: the
    values embedded in intrinsic function strings)."""
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
    for endpoint in endpoints:
        if not endpoint.get("name") or not endpoint.get("model_role_arn"):
            raise DefinitionError("each endpoint needs a 'name' and a 'model_role_arn'")
        if not isinstance(endpoint.get("variant"), dict):
            raise DefinitionError(f"endpoint {endpoint['name']} needs a 'variant' dict")
    for name, value in literals.items():
        literal(name, value)


def _capture_config(data_bucket: str, kms_key_arn: str, percentage: int) -> dict[str, Any]:
    """The endpoints' DataCaptureConfig: requests and responses under ``capture/``, encrypted."""
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": percentage,
        "DestinationS3Uri": f"s3://{data_bucket}/capture/",
        "KmsKeyId": kms_key_arn,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
    }


def _terminal_states(*, stack: str, topic_arn: str, busy_wait_min: int) -> dict[str, Any]:
    """``NotifyFailure`` (every Task's catch-all) and the Fail states the run can end in."""
    return {
        "NotifyFailure": notify(topic_arn, stack, "pipeline step failed", "PipelineFailed"),
        "PipelineFailed": fail("PipelineFailed", "a step failed"),
        "InvalidInput": fail("InvalidInput", "execution input needs bucket and key"),
        "ValidationJobFailed": fail(
            "ValidationJobFailed", "the Glue validate+prepare run did not succeed"
        ),
        "DataQualityRejected": fail(
            "DataQualityRejected", "the batch failed critical expectations and was quarantined"
        ),
        "TrainingFailed": fail(
            "TrainingFailed", "the SageMaker training job failed or was stopped"
        ),
        "GateRejected": fail(
            "GateRejected", "the promotion gate rejected the candidate (see gate.reasons tags)"
        ),
        "PromotionBusy": fail(
            "PromotionBusy",
            "another promotion of this stack held the promotion lock for longer than "
            f"the promote step retried (~{busy_wait_min} min); nothing was promoted",
        ),
        "SystemTestFailed": fail("SystemTestFailed", "the staging endpoint failed the system test"),
        "DeploymentFailed": fail("DeploymentFailed", "the endpoint update failed"),
        "DeploymentRolledBack": fail(
            "DeploymentRolledBack", "the blue/green update was rolled back by an alarm"
        ),
    }
