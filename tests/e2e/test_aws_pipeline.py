"""The AWS runtime path end to end, against emulated AWS (moto, in-process) and a real MLflow server.

What is real
    The state machine is created from ``components.pipeline_definition.build_definition`` — the
    function the ``TrainingPipeline`` component uses — and *executed* by moto's Step Functions
    interpreter (``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``): every
    Choice, Wait, Catch, intrinsic function, ``aws-sdk`` and optimised integration runs as written.
    S3, SNS, SSM, IAM, Glue/SageMaker/Lambda *control planes* are moto's. The code each task runs is
    the project's real code: the Glue script, ``python -m jobs.train`` (SageMaker script mode), the
    Lambda handlers, and the SageMaker inference handlers. MLflow is the session's real
    ``mlflow server`` subprocess (HTTP).

What the harness adds (moto has control planes but cannot run task bodies)
    * **EventBridge → Step Functions**: moto routes S3 "Object Created" events to EventBridge rules
      but has no Step Functions target. ``Rule.send_to_targets`` is wrapped: for a ``states`` target
      the rule's pattern and InputTransformer (as the component declares them) are applied and the
      execution is started, like EventBridge would. So uploading a batch to ``raw/`` starts the run,
      and the ingest's own landings under ``raw/<ingest_id>/`` start runs that must end in
      ``IgnoreObject``.
    * **Glue job runs**: ``FakeJob.start_job_run`` is wrapped to run
      ``jobs.aws.glue_ingest.main([...merged job arguments...])`` in a thread; ``GetJobRun`` reports
      ``RUNNING`` until it returns, then ``SUCCEEDED`` (or ``FAILED`` with the error message).
    * **SageMaker training jobs**: ``CreateTrainingJob`` is wrapped: the channels' S3 prefixes are
      downloaded into ``input/data/<channel>/``, ``python -m jobs.train`` runs as a subprocess with the
      SM_* contract, the request's ``Environment`` and its non-``sagemaker_`` hyperparameters as
      ``--name value``; ``model.tar.gz``/``output.tar.gz`` are uploaded where SageMaker puts them;
      ``DescribeTrainingJob`` says ``InProgress`` then ``Completed`` (or ``Failed``).
    * **Lambda invokes**: ``LambdaFunction._invoke_lambda`` (moto would start Docker) calls the
      function's configured handler (``jobs.aws.handlers.<fn>``) in-process with the function's
      environment variables; an exception becomes a handled function error, as in Lambda (its
      class name is the ``errorType`` Step Functions' ``Retry``/``Catch`` match). One at a time
      by default; in parallel with ``Harness.concurrent_lambdas``
      (``test_aws_concurrent_promotion.py``).
    * **DynamoDB conditional writes** are atomic, as the service documents
      (``tests/aws/dynamodb_atomic.py``: moto's backend would check and write unlocked).
    * **SageMaker UpdateEndpoint** (moto has none) points the endpoint at the new config at once.
    * **SageMaker endpoint invocations**: ``sagemaker-runtime:InvokeEndpoint`` resolves endpoint →
      endpoint config → model → ``ModelDataUrl``, unpacks ``model.tar.gz`` and answers through
      ``jobs.inference`` (``model_fn``/``input_fn``/``predict_fn``/``output_fn``), as the SageMaker
      scikit-learn container does; a bad request becomes ``ModelError`` with ``OriginalStatusCode``.
      With data capture enabled on the endpoint config, each call writes a SageMaker data-capture
      JSONL object under its ``DestinationS3Uri``.
    * The tracking server ARN handed to ``build_definition`` is the MLflow server's URL (on AWS the
      sagemaker-mlflow plugin resolves the ARN to the server).

Data: the real UCI file (``ABALONE_DATA`` or the copy shipped in the package).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest

from components.pipeline_definition import build_definition
from tests.aws.dynamodb_atomic import atomic_conditional_writes

pytestmark = [pytest.mark.slow, pytest.mark.monotonic_waits]

REGION = "us-east-1"
ACCOUNT = "123456789012"
REPO = Path(__file__).resolve().parents[2]
EXECUTION_TIMEOUT_S = 150


def _data_bytes() -> tuple[bytes, str]:
    from tests.conftest import real_data_file

    return real_data_file().read_bytes(), "real UCI file"


def _bad_bytes() -> bytes:
    from jobs.core.synthetic import make_abalone, to_csv_bytes

    frame = make_abalone(300, seed=22)
    frame["sex"] = "X"  # critical expectation: sex in {M, F, I}
    return to_csv_bytes(frame)


# ---- the harness --------------------------------------------------------------------------------


class Harness:
    """Emulates the parts of AWS that run code (see the module docstring); one per test."""

    def __init__(self, workdir: Path, moto_endpoint: str) -> None:
        self.workdir = workdir
        self.moto_endpoint = moto_endpoint
        self.glue_runs: dict[str, dict[str, Any]] = {}
        self.threads: list[threading.Thread] = []
        self.env_lock = threading.Lock()
        self.models: dict[str, Any] = {}
        self.training_logs: list[Path] = []
        self.invocations = 0
        self.errors: list[str] = []
        # Lambda runs each invocation in its own sandbox, so invocations may overlap. By default
        # the harness runs them one at a time (each under its function's environment, scoped);
        # with ``concurrent_lambdas`` the test has set the functions' environment for the whole
        # process (they must agree) and invocations run in parallel, as on AWS.
        self.concurrent_lambdas = False
        #: called with (handler name, event) before each invocation, outside any lock
        self.before_invoke: Any = None

    # -- EventBridge -> Step Functions
    def patch_events(self, stack: contextlib.ExitStack) -> None:
        from moto.events.models import Rule

        original = Rule.send_to_targets
        harness = self

        def send_to_targets(rule_self, original_event, transform_input=True):
            with contextlib.suppress(NotImplementedError):  # moto: "no such target type"
                original(rule_self, original_event, transform_input)
            if not rule_self.event_pattern.matches_event(original_event):
                return
            for target in rule_self.targets:
                if ":states:" not in target["Arn"]:
                    continue
                body = _input_transform(target.get("InputTransformer"), original_event)
                harness._start(
                    lambda arn=target["Arn"], body=body: boto3.client(
                        "stepfunctions", region_name=REGION
                    ).start_execution(stateMachineArn=arn, name=str(uuid.uuid4()), input=body)
                )

        stack.enter_context(mock.patch.object(Rule, "send_to_targets", send_to_targets))

    # -- aws-sdk integrations return payload bodies as text (moto hands back the stream)
    def patch_sdk_bodies(self, stack: contextlib.ExitStack) -> None:
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
            state_task_service_aws_sdk as sdk,
        )

        original = sdk.StateTaskServiceAwsSdk._eval_service_task

        def _eval_service_task(task_self, env, *args, **kwargs):
            original(task_self, env, *args, **kwargs)
            response = env.stack[-1]
            if isinstance(response, dict):
                for key, value in list(response.items()):
                    if hasattr(value, "read"):
                        response[key] = value.read().decode("utf-8")

        stack.enter_context(
            mock.patch.object(sdk.StateTaskServiceAwsSdk, "_eval_service_task", _eval_service_task)
        )

    # -- Glue job runs
    def patch_glue(self, stack: contextlib.ExitStack) -> None:
        from moto.glue.models import FakeJob, FakeJobRun

        harness = self
        original_start = FakeJob.start_job_run
        original_as_dict = FakeJobRun.as_dict

        def start_job_run(job_self, **kwargs):
            run_id = original_start(job_self, **kwargs)
            run = next(r for r in job_self.job_runs if r.job_run_id == run_id)
            argv: list[str] = []
            for key, value in (run.arguments or {}).items():
                argv += [key, str(value)]
            state = harness.glue_runs[run_id] = {"state": "RUNNING", "error": None, "argv": argv}

            def body() -> None:
                from jobs.aws import glue_ingest

                try:
                    glue_ingest.main(argv, s3_client=boto3.client("s3", region_name=REGION))
                except Exception as err:  # the Glue run fails with the job's message
                    state.update(state="FAILED", error=f"{type(err).__name__}: {err}")
                else:
                    state.update(state="SUCCEEDED")

            harness._start(body)
            return run_id

        def as_dict(run_self):
            out = original_as_dict(run_self)
            state = harness.glue_runs.get(run_self.job_run_id)
            if state:
                out["JobRunState"] = state["state"]
                if state["error"]:
                    out["ErrorMessage"] = state["error"]
            return out

        stack.enter_context(mock.patch.object(FakeJob, "start_job_run", start_job_run))
        stack.enter_context(mock.patch.object(FakeJobRun, "as_dict", as_dict))

    # -- SageMaker training jobs
    def patch_training(self, stack: contextlib.ExitStack) -> None:
        from moto.sagemaker.responses import SageMakerResponse

        harness = self
        original = SageMakerResponse.create_training_job

        def create_training_job(resp_self):
            result = original(resp_self)
            name = resp_self._get_param("TrainingJobName")
            env = resp_self._get_param("Environment") or {}
            hyper = resp_self._get_param("HyperParameters") or {}
            channels = resp_self._get_param("InputDataConfig") or []
            output = resp_self._get_param("OutputDataConfig")["S3OutputPath"]
            job = resp_self.sagemaker_backend.training_jobs[name]
            job.training_job_status = "InProgress"
            job.secondary_status = "Training"
            harness._start(lambda: harness._train(job, name, env, hyper, channels, output))
            return result

        stack.enter_context(
            mock.patch.object(SageMakerResponse, "create_training_job", create_training_job)
        )

    def _train(self, job, name, env, hyper, channels, output) -> None:
        s3 = boto3.client("s3", region_name=REGION)
        root = self.workdir / "sagemaker" / name
        try:
            for channel in channels:
                uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
                bucket, _, prefix = uri.removeprefix("s3://").partition("/")
                target = root / "input" / "data" / channel["ChannelName"]
                target.mkdir(parents=True, exist_ok=True)
                listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
                for obj in listing:
                    rel = obj["Key"][len(prefix) :].lstrip("/") or Path(obj["Key"]).name
                    (target / rel).parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, obj["Key"], str(target / rel))
            model_dir, out_dir = root / "model", root / "output" / "data"
            model_dir.mkdir(parents=True)
            out_dir.mkdir(parents=True)
            run_env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
            run_env.update({k: str(v) for k, v in env.items()})
            run_env.update(
                # The job runs in a subprocess, outside the in-process mock: it reaches the same
                # moto state through the moto server thread of this process (shared backends).
                AWS_ENDPOINT_URL=self.moto_endpoint,
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                AWS_DEFAULT_REGION=REGION,
                PYTHONPATH=str(REPO),
                SM_MODEL_DIR=str(model_dir),
                SM_OUTPUT_DATA_DIR=str(out_dir),
                SM_OUTPUT_DIR=str(root / "output"),
                MLFLOW_DISABLE_TELEMETRY="true",
                ABALONE_HOME=str(root / "home"),
            )
            for channel in channels:
                key = f"SM_CHANNEL_{channel['ChannelName'].upper()}"
                run_env[key] = str(root / "input" / "data" / channel["ChannelName"])
            argv = [sys.executable, "-m", "jobs.train"]
            for key, value in hyper.items():
                if not key.startswith("sagemaker_"):
                    argv += [f"--{key}", str(value)]
            log_path = root / "train.log"
            self.training_logs.append(log_path)
            with open(log_path, "wb") as log:
                code = subprocess.run(
                    argv, env=run_env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, check=False
                ).returncode
            bucket, _, prefix = output.removeprefix("s3://").partition("/")
            base = f"{prefix.rstrip('/')}/{name}/output"
            s3.put_object(Bucket=bucket, Key=f"{base}/output.tar.gz", Body=_tar_gz(out_dir))
            if code != 0:
                failure = root / "output" / "failure"
                reason = failure.read_text().strip() if failure.exists() else f"exit {code}"
                job.failure_reason = reason
                job.training_job_status = "Failed"
                return
            s3.put_object(Bucket=bucket, Key=f"{base}/model.tar.gz", Body=_tar_gz(model_dir))
            job.training_job_status = "Completed"
            job.secondary_status = "Completed"
        except Exception as err:  # the job fails with the harness's reason
            job.failure_reason = f"harness: {type(err).__name__}: {err}"
            job.training_job_status = "Failed"

    # -- Lambda invokes
    def patch_lambda(self, stack: contextlib.ExitStack) -> None:
        import importlib

        from moto.awslambda.models import LambdaFunction

        harness = self

        def _invoke_lambda(fn_self, event=None):
            module_name, _, func_name = fn_self.handler.rpartition(".")
            handler = getattr(importlib.import_module(module_name), func_name)
            payload = event if event is not None else {}
            if harness.before_invoke is not None:
                harness.before_invoke(func_name, payload)
            env = {k: str(v) for k, v in (fn_self.environment_vars or {}).items()}
            if harness.concurrent_lambdas:
                differs = sorted(k for k, v in env.items() if os.environ.get(k) != v)
                scope = contextlib.nullcontext()
                if differs:  # the test must give every function's environment to the process
                    message = f"harness: environment of {func_name} not set: {differs}"
                    return json.dumps({"errorMessage": message, "errorType": "Harness"}), True, ""
            else:
                scope = contextlib.ExitStack()
                scope.enter_context(harness.env_lock)
                scope.enter_context(_environ(env))
            with scope:
                try:
                    result = handler(payload, None)
                except Exception as err:  # Lambda: a handled function error
                    return (
                        json.dumps({"errorMessage": str(err), "errorType": type(err).__name__}),
                        True,
                        "",
                    )
            return json.dumps(result, default=str), False, ""

        stack.enter_context(mock.patch.object(LambdaFunction, "_invoke_lambda", _invoke_lambda))

    # -- SageMaker endpoint invocations (the scikit-learn serving container)
    def patch_runtime(self, stack: contextlib.ExitStack) -> None:
        from moto.sagemaker.models import sagemaker_backends
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        harness = self

        def invoke_endpoint(resp_self):
            from jobs.serving.handlers import InvalidInput, input_fn, output_fn, predict_fn

            name = resp_self._get_param("EndpointName") or resp_self.path.split("/")[2]
            backend = sagemaker_backends[resp_self.current_account][resp_self.region]
            endpoint = backend.endpoints.get(name)
            if endpoint is None:
                return _error(400, "ValidationError", f"Endpoint {name} not found.")
            config = backend.endpoint_configs[endpoint.endpoint_config_name]
            variant = config.production_variants[0]
            model_url = backend._models[variant["ModelName"]].primary_container["ModelDataUrl"]
            model = harness._model(model_url)
            content_type = resp_self.headers.get("Content-Type", "")
            accept = resp_self.headers.get("Accept", "application/json")
            body = resp_self.body
            text = body.decode() if isinstance(body, bytes) else body
            harness.invocations += 1
            try:
                rows = input_fn(text, content_type)
                prediction = predict_fn(rows, model)
                out, out_type = output_fn(prediction, accept)
            except InvalidInput as err:
                return _error(
                    424,
                    "ModelError",
                    "Received client error from primary with message: " + err.message,
                    OriginalStatusCode=err.status_code,
                    OriginalMessage=err.message,
                )
            capture = config.data_capture_config or {}
            if capture.get("EnableCapture"):
                harness._capture(
                    capture["DestinationS3Uri"], name, variant, text, content_type, out, out_type
                )
            return (
                200,
                {
                    "Content-Type": out_type,
                    "x-Amzn-Invoked-Production-Variant": variant["VariantName"],
                },
                out,
            )

        stack.enter_context(
            mock.patch.object(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
        )

    # -- SageMaker UpdateEndpoint (moto 5.2 has none): point the endpoint at the new config
    def patch_update_endpoint(self, stack: contextlib.ExitStack) -> None:
        from moto.core.responses import ActionResult
        from moto.core.utils import utcnow
        from moto.sagemaker.exceptions import AWSValidationException
        from moto.sagemaker.responses import SageMakerResponse

        def update_endpoint(resp_self):
            backend = resp_self.sagemaker_backend
            name = resp_self._get_param("EndpointName")
            config_name = resp_self._get_param("EndpointConfigName")
            endpoint = backend.endpoints.get(name)
            if endpoint is None:
                raise AWSValidationException(f'Could not find endpoint "{name}".')
            config = backend.describe_endpoint_config(config_name)
            endpoint.endpoint_config_name = config_name
            endpoint.production_variants = endpoint._process_production_variants(
                config["ProductionVariants"]
            )
            endpoint.data_capture_config = config.get("DataCaptureConfig")
            endpoint.last_modified_time = utcnow()
            return ActionResult({"EndpointArn": endpoint.arn})

        stack.enter_context(
            mock.patch.object(SageMakerResponse, "update_endpoint", update_endpoint, create=True)
        )

    def _model(self, model_url: str):
        from jobs.serving.handlers import model_fn

        if model_url not in self.models:
            bucket, _, key = model_url.removeprefix("s3://").partition("/")
            data = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)
            target = Path(tempfile.mkdtemp(prefix="abalone-endpoint-", dir=self.workdir))
            with tarfile.open(fileobj=io.BytesIO(data["Body"].read()), mode="r:gz") as tar:
                tar.extractall(target, filter="data")
            self.models[model_url] = model_fn(target)
        return self.models[model_url]

    def _capture(self, destination, endpoint, variant, text, ctype, out, out_type) -> None:
        now = datetime.now(UTC)
        bucket, _, prefix = destination.removeprefix("s3://").partition("/")
        key = (
            f"{prefix.rstrip('/')}/{endpoint}/{variant['VariantName']}/"
            f"{now:%Y/%m/%d/%H}/{uuid.uuid4()}.jsonl"
        ).lstrip("/")
        record = {
            "captureData": {
                "endpointInput": {
                    "observedContentType": ctype,
                    "mode": "INPUT",
                    "data": text,
                    "encoding": "CSV" if "csv" in ctype else "JSON",
                },
                "endpointOutput": {
                    "observedContentType": out_type,
                    "mode": "OUTPUT",
                    "data": out,
                    "encoding": "JSON" if "json" in out_type else "CSV",
                },
            },
            "eventMetadata": {
                "eventId": str(uuid.uuid4()),
                "inferenceTime": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            },
            "eventVersion": "0",
        }
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=bucket, Key=key, Body=(json.dumps(record) + "\n").encode()
        )

    def _start(self, fn) -> None:
        def run() -> None:
            try:
                fn()
            except BaseException as err:  # surfaced by the tests' assertion messages
                self.errors.append(f"{type(err).__name__}: {err}")
                raise

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))


def _input_transform(transformer: dict | None, event: dict) -> str:
    """EventBridge's InputTransformer: ``$.a.b`` paths into ``<name>`` placeholders (as JSON)."""
    if not transformer:
        return json.dumps(event)
    template = transformer["InputTemplate"]
    for name, path in transformer.get("InputPathsMap", {}).items():
        value: Any = event
        for part in path.removeprefix("$.").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        template = template.replace(f"<{name}>", json.dumps(value))
    return template


def _error(status: int, code: str, message: str, **extra: Any):
    body = {"__type": code, "message": message, **extra}
    headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json", "status": str(status)}
    return status, headers, json.dumps(body)


def _environ(values: dict[str, str]):
    from jobs.adapters.settings import scoped_environ

    return scoped_environ(**{k: str(v) for k, v in values.items()})


def _tar_gz(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buf.getvalue()


def _zip_handler() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "code is jobs/aws/handlers.py, run in-process by the harness")
    return buf.getvalue()


# ---- the stack --------------------------------------------------------------------------------


class Stack:
    """The resources the Pulumi program creates that the pipeline touches, created in moto."""

    def __init__(
        self, harness: Harness, name: str, tracking_uri: str, *, require_approval: bool
    ) -> None:
        self.harness = harness
        self.name = name
        self.data_bucket = f"abalone-{name}-data-e2e"
        self.artifacts_bucket = f"abalone-{name}-artifacts-e2e"
        self.reports_bucket = f"abalone-{name}-reports-e2e"
        self.staging_endpoint = f"abalone-{name}-staging"
        self.production_endpoint = f"abalone-{name}-endpoint"
        self.glue_job = f"abalone-{name}-validate-prepare"
        self.lock_table = f"abalone-{name}-promotion-lock"
        self.tracking_uri = tracking_uri
        self.require_approval = require_approval
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)

    def create(self) -> None:
        for bucket in (self.data_bucket, self.artifacts_bucket, self.reports_bucket):
            self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_notification_configuration(
            Bucket=self.data_bucket,
            NotificationConfiguration={"EventBridgeConfiguration": {}},
        )
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(
            RoleName=f"abalone-{self.name}-e2e",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        self.topic_arn = boto3.client("sns", region_name=REGION).create_topic(
            Name=f"abalone-{self.name}-alerts"
        )["TopicArn"]
        glue = boto3.client("glue", region_name=REGION)
        glue.create_job(
            Name=self.glue_job,
            Role=role,
            Command={
                "Name": "glueetl",
                "ScriptLocation": f"s3://{self.artifacts_bucket}/code/glue_ingest.py",
                "PythonVersion": "3",
            },
            GlueVersion="5.0",
            DefaultArguments={
                "--tracking_server_arn": self.tracking_uri,
                "--enable-metrics": "true",
            },
            NonOverridableArguments={
                "--lake": f"s3://{self.data_bucket}",
                "--reports": f"s3://{self.reports_bucket}",
                "--env": self.name,
            },
        )
        from components.promotion_lock import EXPIRES_ATTRIBUTE, KEY_ATTRIBUTE

        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(  # components.promotion_lock.PromotionLock
            TableName=self.lock_table,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
        )
        ddb.update_time_to_live(
            TableName=self.lock_table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRES_ATTRIBUTE},
        )
        lam = boto3.client("lambda", region_name=REGION)
        env = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "ABALONE_ENV": self.name,
            "ABALONE_LAKE": f"s3://{self.data_bucket}",
            "ABALONE_REPORTS": f"s3://{self.reports_bucket}",
            "ABALONE_HOME": tempfile.mkdtemp(prefix="abalone-lambda-"),
        }
        arns = {}
        self.function_env: dict[str, dict[str, str]] = {}
        for key in ("gate", "system_test", "approval", "promote"):
            fn_env = self.function_env[key] = dict(env)
            if key == "system_test":
                fn_env["ABALONE_STAGING_ENDPOINT"] = self.staging_endpoint
            if (
                key == "promote"
            ):  # components.training_pipeline: the promote function's timeout + 60
                fn_env["ABALONE_PROMOTION_LOCK_TABLE"] = self.lock_table
                fn_env["ABALONE_PROMOTION_LOCK_LEASE_S"] = "360"
            arns[key] = lam.create_function(
                FunctionName=f"abalone-{self.name}-{key.replace('_', '-')}",
                Runtime="python3.12",  # components.lambda_function.RUNTIME
                Role=role,
                Handler=f"jobs.aws.handlers.{key}_handler",
                Code={"ZipFile": _zip_handler()},
                Environment={"Variables": fn_env},
                Timeout=300,
            )["FunctionArn"]
        variant = {
            "VariantName": "AllTraffic",
            "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large",
        }
        definition = build_definition(
            stack=self.name,
            glue_job_name=self.glue_job,
            training_role_arn=role,
            training_image_uri="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
            training_instance_type="ml.m5.large",
            code_s3_uri=f"s3://{self.artifacts_bucket}/code/source.tar.gz",
            data_bucket=self.data_bucket,
            artifacts_bucket=self.artifacts_bucket,
            tracking_server_arn=self.tracking_uri,
            lambda_arns=arns,
            sns_topic_arn=self.topic_arn,
            inference_image_uri="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
            kms_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/e2e",
            staging_endpoint={
                "name": self.staging_endpoint,
                "model_role_arn": role,
                "variant": variant,
                "deployment_config": None,
            },
            production_endpoint={
                "name": self.production_endpoint,
                "model_role_arn": role,
                "variant": variant,
                "deployment_config": None,
            },
            require_approval=self.require_approval,
            approval_timeout_s=120,
            poll_seconds=1,
            approval_poll_seconds=1,
            promotion_retry_interval_s=1,
            promotion_retry_max_attempts=12,
        )
        self.definition = definition
        self.state_machine_arn = self.sfn.create_state_machine(
            name=f"abalone-{self.name}-pipeline", definition=json.dumps(definition), roleArn=role
        )["stateMachineArn"]
        events = boto3.client("events", region_name=REGION)
        rule = f"abalone-{self.name}-raw-object-created"
        events.put_rule(
            Name=rule,
            EventPattern=json.dumps(
                {
                    "source": ["aws.s3"],
                    "detail-type": ["Object Created"],
                    "detail": {
                        "bucket": {"name": [self.data_bucket]},
                        "object": {"key": [{"prefix": "raw/"}]},
                    },
                }
            ),
        )
        events.put_targets(
            Rule=rule,
            Targets=[
                {
                    "Id": "pipeline",
                    "Arn": self.state_machine_arn,
                    "RoleArn": role,
                    "InputTransformer": {
                        "InputPathsMap": {
                            "bucket": "$.detail.bucket.name",
                            "key": "$.detail.object.key",
                        },
                        "InputTemplate": '{"bucket": <bucket>, "key": <key>}',
                    },
                }
            ],
        )
        ssm = boto3.client("ssm", region_name=REGION)
        for key, value in {
            "data-bucket": self.data_bucket,
            "artifacts-bucket": self.artifacts_bucket,
            "reports-bucket": self.reports_bucket,
            "state-machine-arn": self.state_machine_arn,
            "tracking-server-arn": self.tracking_uri,
            "tracking-server-name": f"abalone-{self.name}",
            "staging-endpoint": self.staging_endpoint,
            "production-endpoint": self.production_endpoint,
            "alerts-topic-arn": self.topic_arn,
        }.items():
            ssm.put_parameter(Name=f"/abalone/{self.name}/{key}", Value=value, Type="String")

    # -- observing executions
    def executions(self) -> list[dict]:
        return self.sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]

    def execution_for(self, key: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ex in self.executions():
                desc = self.sfn.describe_execution(executionArn=ex["executionArn"])
                if json.loads(desc["input"]).get("key") == key:
                    return ex["executionArn"]
            time.sleep(0.2)
        raise AssertionError(f"no execution started for {key}: {self.harness.errors}")

    def wait(self, arn: str, timeout: float = EXECUTION_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            desc = self.sfn.describe_execution(executionArn=arn)
            if desc["status"] != "RUNNING":
                return desc
            time.sleep(0.5)
        raise AssertionError(f"{arn} still running after {timeout}s: {self.states(arn)}")

    def history(self, arn: str) -> list[dict]:
        return self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]

    def states(self, arn: str) -> list[str]:
        """State names in the order entered, consecutive poll-loop repeats collapsed."""
        names = [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history(arn)
            if "stateEnteredEventDetails" in e
        ]
        collapsed: list[str] = []
        for name in names:
            if name in collapsed[-4:] and (
                name.startswith(("WaitFor", "Get", "Is", "Check", "Count"))
            ):
                # a poll loop going round again
                continue
            collapsed.append(name)
        return collapsed

    def state_output(self, arn: str, name: str) -> dict | None:
        """The output of the last exit of state ``name`` (None if it never exited)."""
        found = None
        for event in self.history(arn):
            details = event.get("stateExitedEventDetails") or {}
            if details.get("name") == name:
                found = json.loads(details["output"])
        return found

    def explain(self, arn: str) -> str:
        """What a failed assertion should show: the path taken, the last outputs, harness errors."""
        outputs = {}
        for name in ("Gate", "SystemTest", "CheckApproval", "Promote"):
            out = self.state_output(arn, name)
            key = "".join(c if c.islower() else "_" + c.lower() for c in name).lstrip("_")
            if out and isinstance(out.get(key.replace("check_", "")), dict):
                outputs[name] = out[key.replace("check_", "")]
        failed = [e for e in self.history(arn) if e["type"].endswith("Failed")][-2:]
        return json.dumps(
            {
                "states": self.states(arn),
                "lambda_outputs": outputs,
                "failures": failed,
                "harness_errors": self.harness.errors,
                "training_logs": [
                    p.read_text()[-2000:] for p in self.harness.training_logs if p.exists()
                ],
            },
            indent=1,
            default=str,
        )[-6000:]

    def sns_messages(self) -> list[tuple[str, str]]:
        from moto.sns.models import sns_backends

        topic = sns_backends[ACCOUNT][REGION].topics[self.topic_arn]
        return [(subject or "", message) for _id, message, subject, *_ in topic.sent_notifications]

    def upload(self, name: str, data: bytes) -> str:
        key = f"raw/{name}"
        self.s3.put_object(Bucket=self.data_bucket, Key=key, Body=data)
        return key

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture
def aws(tmp_path, monkeypatch, moto_endpoint):
    """moto in-process with Step Functions execution on, and the harness patches installed."""
    from moto import mock_aws

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    harness = Harness(tmp_path, moto_endpoint)
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        harness.patch_events(stack)
        harness.patch_sdk_bodies(stack)
        harness.patch_glue(stack)
        harness.patch_training(stack)
        harness.patch_lambda(stack)
        harness.patch_runtime(stack)
        harness.patch_update_endpoint(stack)
        atomic_conditional_writes(monkeypatch)
        yield harness
        harness.join(30)


def registry_snapshot(tracking_uri: str) -> tuple[set[str], str | None]:
    from jobs.adapters.tracking import CHAMPION, Registry

    reg = Registry(tracking_uri)
    versions = {str(v.version) for v in reg.client.search_model_versions(f"name='{reg.name}'")}
    return versions, reg.alias(CHAMPION)


EXPECTED_DEV = [
    "CheckInput", "Init", "StartValidation", "WaitForValidation", "GetValidationRun",
    "IsValidationDone", "ReadValidationResult", "IsBatchAccepted", "StartTraining",
    "WaitForTraining", "GetTrainingJob", "IsTrainingDone", "GetTrainedModel", "Gate",
    "IsGatePassed", "CreateStagingModel", "CreateStagingEndpointConfig", "FindStagingEndpoint",
    "CreateStagingEndpoint", "WaitForStagingEndpoint", "CheckStagingEndpoint",
    "IsStagingEndpointReady", "SystemTest", "IsSystemTestPassed", "Promote", "IsPromoted",
    "CreateProductionModel", "CreateProductionEndpointConfig", "FindProductionEndpoint",
    "CreateProductionEndpoint", "WaitForProductionEndpoint", "CheckProductionEndpoint",
    "IsProductionEndpointReady", "Done",
]  # fmt: skip


def test_upload_to_raw_runs_the_pipeline_to_a_new_champion(
    aws, mlflow_server, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from jobs.adapters.capture_reader import read_capture
    from jobs.adapters.tracking import CHAMPION, Registry
    from jobs.aws import launcher
    from jobs.aws import reports as aws_reports
    from jobs.cli import app

    stack = Stack(aws, "dev", mlflow_server, require_approval=False)
    stack.create()
    data, _what = _data_bytes()
    batch = tmp_path / "abalone.csv"
    batch.write_bytes(data)

    # What `abalone run --target aws --stack dev --source abalone.csv` does: resolve the stack from
    # SSM, upload under raw/ (the EventBridge rule starts the execution), find it and follow it.
    resources = launcher.resolve_stack("dev")
    submitted = launcher.submit(resources, str(batch), poll_s=0.2, find_timeout_s=30)
    followed: list[str] = []
    done = launcher.follow(
        submitted.execution_arn,
        on_step=lambda step: followed.append(step.name),
        poll_s=0.5,
        timeout_s=EXECUTION_TIMEOUT_S,
    )
    arn = submitted.execution_arn
    assert done.status == "SUCCEEDED", stack.explain(arn)
    assert stack.states(arn) == EXPECTED_DEV
    assert followed[0] == "CheckInput" and followed[-1] == "Done" and "SystemTest" in followed

    output = done.output
    version = output["promote"]["output"]["model_version"]
    registry = Registry(mlflow_server)
    assert registry.alias(CHAMPION) == version == done.summary()["champion_version"]
    tags = registry.tags(version)
    assert tags["gate.decision"] == "promote"
    assert tags["systemtest.kind"] == "sagemaker-endpoint" and tags["systemtest.passed"] == "true"
    assert tags["sagemaker.model_data_url"] == output["training"]["ModelDataUrl"]
    assert tags["dataset_version"] == output["validation"]["Result"]["dataset_version"]

    # The data-quality report is in the reports bucket, listed with a presigned link that opens.
    ingest_id = output["validation"]["Result"]["ingest_id"]
    assert f"{ingest_id}/summary.json" in stack.keys(stack.reports_bucket, ingest_id)
    (report,) = [r for r in aws_reports.list_reports(resources) if r.ingest_id == ingest_id]
    assert report.status == "accepted" and report.report_url
    import requests

    assert "<html" in requests.get(report.report_url, timeout=10).text.lower()

    # The ingest's own landings under raw/<ingest_id>/ also fired the rule: those runs are ignored.
    landed = stack.keys(stack.data_bucket, f"raw/{ingest_id}/")
    assert landed
    for landed_key in landed:
        other = stack.wait(stack.execution_for(landed_key))
        assert other["status"] == "SUCCEEDED"
        assert stack.states(other["executionArn"]) == ["CheckInput", "IgnoreObject"]
    assert stack.sns_messages() == []

    # The staging endpoint captured the system test's traffic in SageMaker's data-capture format;
    # `abalone monitor --capture s3://…` reads it against the new champion's reference profile.
    capture_uri = f"s3://{stack.data_bucket}/capture/"
    test_rows = output["validation"]["Result"]["splits"]["test"]
    captured = read_capture(capture_uri)
    assert captured.rows == test_rows + 4 * 5  # golden rows: single, CSV, CSV+header, JSON
    monkeypatch.setenv("ABALONE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    result = CliRunner().invoke(app, ["monitor", "--capture", capture_uri, "--json"])
    assert result.exit_code in (0, 1), result.output
    assert json.loads(result.stdout)["capture"]["rows"] == captured.rows


def test_bad_batch_takes_the_failure_branch(aws, mlflow_server):
    stack = Stack(aws, "dev", mlflow_server, require_approval=False)
    stack.create()
    before = registry_snapshot(mlflow_server)
    key = stack.upload("bad-batch.csv", _bad_bytes())
    arn = stack.execution_for(key)
    desc = stack.wait(arn)
    states = stack.states(arn)
    assert desc["status"] == "FAILED" and desc["error"] == "DataQualityRejected", states
    assert states[-2:] == ["NotifyDataQualityRejected", "DataQualityRejected"]
    assert "StartTraining" not in states and "Promote" not in states

    quarantined = stack.keys(stack.data_bucket, "quarantine/")
    assert any(k.endswith("batch.json") for k in quarantined)
    assert not stack.keys(stack.data_bucket, "curated/")
    subjects = [subject for subject, _ in stack.sns_messages()]
    assert subjects == ["abalone-dev: batch rejected by data quality"]
    assert "sex" in stack.sns_messages()[0][1]
    sm = boto3.client("sagemaker", region_name=REGION)
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []
    assert registry_snapshot(mlflow_server) == before


def test_prd_waits_for_approval_then_promotes(aws, mlflow_server):
    from jobs.adapters.tracking import CHAMPION, Registry

    stack = Stack(aws, "prd", mlflow_server, require_approval=True)
    stack.create()
    champion_before = Registry(mlflow_server).alias(CHAMPION)
    data, _ = _data_bytes()
    arn = stack.execution_for(stack.upload("abalone-batch.csv", data))

    # Wait until the execution is polling for approval, then approve like a person would.
    deadline = time.monotonic() + EXECUTION_TIMEOUT_S
    version = None
    while time.monotonic() < deadline and version is None:
        for event in stack.history(arn):
            details = event.get("stateExitedEventDetails") or {}
            if details.get("name") == "CheckApproval":
                version = json.loads(details["output"])["approval"]["output"]["model_version"]
        desc = stack.sfn.describe_execution(executionArn=arn)
        assert desc["status"] == "RUNNING", stack.states(arn)
        time.sleep(0.5)
    assert version is not None, stack.states(arn)
    registry = Registry(mlflow_server)
    time.sleep(2)  # a few more polls: still waiting, nothing promoted
    assert stack.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    assert registry.alias(CHAMPION) == champion_before
    registry.approve(version, by="e2e-reviewer")

    desc = stack.wait(arn)
    states = stack.states(arn)
    assert desc["status"] == "SUCCEEDED", states
    assert states.index("SystemTest") < states.index("CheckApproval") < states.index("Promote")
    assert "WaitForApproval" in states
    assert registry.alias(CHAMPION) == version
    assert registry.tags(version)["gate.decision"] == "promote"
    subjects = [subject for subject, _ in stack.sns_messages()]
    assert subjects == ["abalone-prd: model awaits approval"]
