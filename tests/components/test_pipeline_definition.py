"""The state machine definition as a plain function: structure, failure paths, choices.

``build_definition`` is called here with plain strings (no Pulumi), exactly as the moto end-to-end
test calls it; ``test_program.py`` checks the definition the Pulumi program actually deploys.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from typing import Any

import pytest

from components.pipeline_definition import (
    GLUE_GET_RUN,
    GLUE_START,
    LAMBDA_INVOKE,
    SAGEMAKER_CREATE_TRAINING,
    SAGEMAKER_DESCRIBE_TRAINING,
    SNS_PUBLISH,
    DefinitionError,
    build_definition,
)
from tests.components import asl
from tests.components.harness import REPO

ACCT = "123456789012"


def endpoint(name: str, *, blue_green: bool) -> dict[str, Any]:
    return {
        "name": name,
        "model_role_arn": f"arn:aws:iam::{ACCT}:role/{name}-role",
        "variant": {
            "VariantName": "AllTraffic",
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 2,
            "InitialVariantWeight": 1.0,
        },
        "deployment_config": {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}}
        if blue_green
        else None,
    }


def plain_inputs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "stack": "prd",
        "glue_job_name": "abalone-prd-validate",
        "training_role_arn": f"arn:aws:iam::{ACCT}:role/train",
        "training_image_uri": "111.dkr.ecr.us-east-1.amazonaws.com/sklearn:1",
        "training_instance_type": "ml.m5.large",
        "code_s3_uri": "s3://artifacts/code/sagemaker/sourcedir.tar.gz",
        "data_bucket": "data-bucket",
        "artifacts_bucket": "artifacts-bucket",
        "tracking_server_arn": f"arn:aws:sagemaker:us-east-1:{ACCT}:mlflow-tracking-server/x",
        "lambda_arns": {
            k: f"arn:aws:lambda:us-east-1:{ACCT}:function:{k}"
            for k in ("gate", "system_test", "approval", "promote")
        },
        "sns_topic_arn": f"arn:aws:sns:us-east-1:{ACCT}:alerts",
        "inference_image_uri": "111.dkr.ecr.us-east-1.amazonaws.com/sklearn:1",
        "kms_key_arn": f"arn:aws:kms:us-east-1:{ACCT}:key/k",
        "staging_endpoint": endpoint("abalone-prd-staging", blue_green=False),
        "production_endpoint": endpoint("abalone-prd-production", blue_green=True),
        "require_approval": True,
        "approval_timeout_s": 72 * 3600,
        "poll_seconds": 30,
    }
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(params=[True, False], ids=["approval", "no-approval"])
def definition(request) -> dict[str, Any]:
    return build_definition(**plain_inputs(require_approval=request.param))


# ---- a small evaluator of Choice rules (dotted JSONPath only) --------------------------------------
_MISSING = object()


def path(data: dict, expr: str) -> Any:
    value: Any = data
    for part in expr.removeprefix("$.").split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def rule_matches(rule: dict, data: dict) -> bool:
    if "And" in rule:
        return all(rule_matches(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(rule_matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not rule_matches(rule["Not"], data)
    value = path(data, rule["Variable"])
    if "IsPresent" in rule:
        return (value is not _MISSING) == rule["IsPresent"]
    if value is _MISSING:
        return False
    if "IsString" in rule:
        return isinstance(value, str) == rule["IsString"]
    if "StringEquals" in rule:
        return value == rule["StringEquals"]
    if "StringEqualsPath" in rule:
        return value == path(data, rule["StringEqualsPath"])
    if "BooleanEquals" in rule:
        return value is rule["BooleanEquals"]
    if "NumericGreaterThanEquals" in rule:
        return value >= rule["NumericGreaterThanEquals"]
    if "StringMatches" in rule:
        import fnmatch

        return fnmatch.fnmatchcase(value, rule["StringMatches"])
    raise NotImplementedError(rule)


def choose(definition: dict, state: str, data: dict) -> str:
    choice = definition["States"][state]
    assert choice["Type"] == "Choice"
    for rule in choice["Choices"]:
        if rule_matches(rule, data):
            return rule["Next"]
    return choice["Default"]


def ends_in(definition: dict, state: str) -> str:
    """Follow a notify state to the Fail it ends in; returns the Fail's Error."""
    states = definition["States"]
    assert states[state]["Resource"] == SNS_PUBLISH, f"{state} does not notify SNS"
    fail = states[states[state]["Next"]]
    assert fail["Type"] == "Fail"
    return fail["Error"]


# ---- tests --------------------------------------------------------------------------------------
def test_definition_is_json_with_valid_targets_and_failure_paths(definition):
    text = json.dumps(definition)
    assert json.loads(text) == definition
    assert asl.all_problems(definition) == []


def test_start_and_poll_loops_only_no_sync_integrations(definition):
    text = json.dumps(definition)
    assert ".sync" not in text and ".waitForTaskToken" not in text
    states = definition["States"]
    assert states["StartValidation"]["Resource"] == GLUE_START
    assert states["GetValidationRun"]["Resource"] == GLUE_GET_RUN
    assert states["WaitForValidation"] == {
        "Type": "Wait",
        "Seconds": 30,
        "Next": "GetValidationRun",
    }
    assert choose(definition, "IsValidationDone", {"glue": {"State": "RUNNING"}}) == (
        "WaitForValidation"
    )
    assert states["StartTraining"]["Resource"] == SAGEMAKER_CREATE_TRAINING
    assert states["GetTrainingJob"]["Resource"] == SAGEMAKER_DESCRIBE_TRAINING
    assert choose(definition, "IsTrainingDone", {"training": {"Status": "InProgress"}}) == (
        "WaitForTraining"
    )
    for name in ("Gate", "SystemTest", "Promote"):
        assert states[name]["Resource"] == LAMBDA_INVOKE


def test_the_stages_run_in_the_designed_order(definition):
    states = definition["States"]
    order = ["Init", "StartValidation", "WaitForValidation", "GetValidationRun"]
    for a, b in itertools.pairwise(order):
        assert states[a]["Next"] == b
    accepted = {
        "glue": {"State": "SUCCEEDED"},
        "validation": {
            "Result": {
                "status": "accepted",
                "dataset_version": "ds-1",
                "channels": {"train": "s3://d/runs/x/dataset/"},
            }
        },
    }
    assert choose(definition, "IsBatchAccepted", accepted) == "StartTraining"
    assert choose(definition, "IsTrainingDone", {"training": {"Status": "Completed"}}) == (
        "GetTrainedModel"
    )
    assert states["GetTrainedModel"]["Next"] == "Gate"
    assert choose(definition, "IsGatePassed", {"gate": {"output": {"decision": "continue"}}}) == (
        "CreateStagingModel"
    )
    ready = {
        "staging_endpoint": {"Status": "InService", "EndpointConfigName": "c"},
        "context": {"staging_config": "c"},
    }
    assert choose(definition, "IsStagingEndpointReady", ready) == "SystemTest"
    after_test = choose(
        definition, "IsSystemTestPassed", {"system_test": {"output": {"passed": True}}}
    )
    if "CheckApproval" in states:
        assert after_test == "NotifyApprovalNeeded"
        approved = {
            "approval": {"output": {"status": "approved"}},
            "approval_wait": {"elapsed_s": 0},
        }
        assert choose(definition, "IsApproved", approved) == "Promote"
    else:
        assert after_test == "Promote"
    assert choose(definition, "IsPromoted", {"promote": {"output": {"decision": "promote"}}}) == (
        "CreateProductionModel"
    )
    ready = {
        "production_endpoint": {"Status": "InService", "EndpointConfigName": "p"},
        "context": {"production_config": "p"},
    }
    assert choose(definition, "IsProductionEndpointReady", ready) == "Done"
    assert states["Done"]["Type"] == "Succeed"


def test_rejections_notify_then_fail_with_a_named_error(definition):
    rejected = {"glue": {"State": "FAILED"}, "validation": {"Result": {"status": "rejected"}}}
    assert ends_in(definition, choose(definition, "IsBatchAccepted", rejected)) == (
        "DataQualityRejected"
    )
    no_result = {"glue": {"State": "FAILED"}, "validation": {"Result": {}}}
    assert ends_in(definition, choose(definition, "IsBatchAccepted", no_result)) == (
        "ValidationJobFailed"
    )
    gate = {"gate": {"output": {"decision": "reject"}}}
    assert ends_in(definition, choose(definition, "IsGatePassed", gate)) == "GateRejected"
    failed = {"system_test": {"output": {"passed": False}}}
    assert ends_in(definition, choose(definition, "IsSystemTestPassed", failed)) == (
        "SystemTestFailed"
    )
    training = {"training": {"Status": "Failed"}}
    assert ends_in(definition, choose(definition, "IsTrainingDone", training)) == "TrainingFailed"
    rolled_back = {
        "production_endpoint": {"Status": "InService", "EndpointConfigName": "old"},
        "context": {"production_config": "new"},
    }
    assert ends_in(definition, choose(definition, "IsProductionEndpointReady", rolled_back)) == (
        "DeploymentRolledBack"
    )
    refused = {"promote": {"output": {"decision": "awaiting_approval"}}}
    assert ends_in(definition, choose(definition, "IsPromoted", refused)) == "GateRejected"


def test_input_check_ignores_landed_copies_and_rejects_missing_fields(definition):
    assert choose(definition, "CheckInput", {"bucket": "b", "key": "raw/batch.csv"}) == "Init"
    landed = {"bucket": "b", "key": "raw/20261126T101010123456Z-abc123/batch.csv"}
    assert choose(definition, "CheckInput", landed) == "IgnoreObject"
    lineage = {"bucket": "b", "key": "raw/20261126T101010123456Z-abc123/_lineage.json"}
    assert choose(definition, "CheckInput", lineage) == "IgnoreObject"
    assert ends_in(definition, choose(definition, "CheckInput", {"bucket": "b"})) == "InvalidInput"


def test_prd_waits_for_approval_with_a_timeout_and_dev_does_not():
    prd = build_definition(**plain_inputs(require_approval=True, approval_timeout_s=7200))
    states = prd["States"]
    pending = {"approval": {"output": {"status": "pending"}}, "approval_wait": {"elapsed_s": 600}}
    assert choose(prd, "IsApproved", pending) == "WaitForApproval"
    assert states["WaitForApproval"]["Next"] == "CountApprovalWait"
    assert states["CountApprovalWait"]["Next"] == "CheckApproval"
    assert "States.MathAdd($.approval_wait.elapsed_s, 300)" in json.dumps(
        states["CountApprovalWait"]
    )
    late = {"approval": {"output": {"status": "pending"}}, "approval_wait": {"elapsed_s": 7200}}
    assert ends_in(prd, choose(prd, "IsApproved", late)) == "ApprovalTimedOut"
    no = {"approval": {"output": {"status": "rejected"}}, "approval_wait": {"elapsed_s": 0}}
    assert ends_in(prd, choose(prd, "IsApproved", no)) == "ApprovalRejected"
    dev = build_definition(**plain_inputs(require_approval=False, stack="dev"))
    assert not {"CheckApproval", "IsApproved", "WaitForApproval"} & set(dev["States"])


def test_task_parameters_name_the_resources_they_were_given():
    d = build_definition(**plain_inputs())
    s = d["States"]
    assert s["StartValidation"]["Parameters"]["JobName"] == "abalone-prd-validate"
    assert s["StartValidation"]["Parameters"]["Arguments"] == {
        "--source.$": "$.context.source_uri",
        "--run_id.$": "$$.Execution.Name",
    }
    assert s["ReadValidationResult"]["Parameters"]["Bucket"] == "data-bucket"
    train = s["StartTraining"]["Parameters"]
    assert train["RoleArn"].endswith(":role/train")
    assert train["Environment"]["MLFLOW_TRACKING_URI"].endswith("mlflow-tracking-server/x")
    assert train["HyperParameters"]["sagemaker_submit_directory"].endswith("sourcedir.tar.gz")
    assert train["OutputDataConfig"]["KmsKeyId"].endswith(":key/k")
    assert {c["ChannelName"] for c in train["InputDataConfig"]} == {"train", "validation", "test"}
    assert s["Gate"]["Parameters"]["FunctionName"].endswith(":function:gate")
    config = s["CreateProductionEndpointConfig"]["Parameters"]
    assert config["DataCaptureConfig"]["KmsKeyId"].endswith(":key/k")
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://data-bucket/capture/"
    assert s["UpdateProductionEndpoint"]["Parameters"]["DeploymentConfig"]
    assert "DeploymentConfig" not in s["UpdateStagingEndpoint"]["Parameters"]
    for name, state in s.items():
        if state.get("Resource") == SNS_PUBLISH:
            assert state["Parameters"]["TopicArn"].endswith(":alerts"), name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lambda_arns": {"gate": "x"}}, "missing system_test, approval, promote"),
        ({"poll_seconds": 0}, "poll_seconds"),
        ({"approval_timeout_s": 10}, "approval_timeout_s"),
        ({"data_bucket": "bad'bucket"}, "data_bucket"),
        ({"capture_percentage": 101}, "capture_percentage"),
        ({"staging_endpoint": {"name": "x"}}, "model_role_arn"),
    ],
)
def test_bad_inputs_raise_a_definition_error_naming_the_input(overrides, message):
    with pytest.raises(DefinitionError, match=message):
        build_definition(**plain_inputs(**overrides))


def test_module_imports_without_pulumi():
    code = (
        "import sys; sys.modules['pulumi'] = None; sys.modules['pulumi_aws'] = None\n"
        "from components.pipeline_definition import build_definition\nprint('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# ---- the definition executes under moto's Step Functions interpreter -----------------------------
def patch_moto_sdk_bodies(monkeypatch) -> None:
    """moto 5.2 hands AWS SDK integrations the raw boto response, so ``s3:getObject`` returns
    ``Body`` as a stream; Step Functions on AWS returns it as a string (hence
    ``States.StringToJson($.Body)`` in the definition). Read streams into strings, as AWS does."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as sdk,
    )

    original = sdk.StateTaskServiceAwsSdk._eval_service_task

    def eval_service_task(self, env, *args, **kwargs):
        original(self, env, *args, **kwargs)
        response = env.stack[-1]
        if isinstance(response, dict):
            for key, value in list(response.items()):
                if hasattr(value, "read"):
                    response[key] = value.read().decode()

    monkeypatch.setattr(sdk.StateTaskServiceAwsSdk, "_eval_service_task", eval_service_task)


@pytest.fixture
def moto_pipeline(monkeypatch):
    """A state machine from ``build_definition`` in moto (in-process), with the Glue job, the data
    bucket and the SNS topic it names. Returns a function running one execution to its end."""
    import time

    import boto3
    from moto import mock_aws

    for var, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    patch_moto_sdk_bodies(monkeypatch)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3, glue = boto3.client("s3"), boto3.client("glue")
        s3.create_bucket(Bucket="data-bucket")
        glue.create_job(
            Name="abalone-prd-validate",
            Role="arn:aws:iam::123456789012:role/g",
            Command={"Name": "glueetl", "ScriptLocation": "s3://a/s.py"},
        )
        topic = boto3.client("sns").create_topic(Name="alerts")["TopicArn"]
        sfn = boto3.client("stepfunctions")
        definition = build_definition(**plain_inputs(sns_topic_arn=topic, poll_seconds=1))
        machine = sfn.create_state_machine(
            name="pipeline",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/states",
        )["stateMachineArn"]

        def run(name: str, execution_input: dict, result: dict | None = None) -> tuple[dict, list]:
            if result is not None:
                s3.put_object(
                    Bucket="data-bucket",
                    Key=f"runs/{name}/ingest_result.json",
                    Body=json.dumps(result).encode(),
                )
            arn = sfn.start_execution(
                stateMachineArn=machine, name=name, input=json.dumps(execution_input)
            )["executionArn"]
            deadline = time.monotonic() + 30
            while (done := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
                assert time.monotonic() < deadline, "execution did not finish"
                time.sleep(0.1)
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            entered = [
                e["stateEnteredEventDetails"]["name"]
                for e in events
                if "stateEnteredEventDetails" in e
            ]
            return done, entered

        yield run


@pytest.mark.monotonic_waits
def test_moto_runs_the_input_check_and_the_rejection_branch(moto_pipeline):
    done, states = moto_pipeline("no-key", {"bucket": "data-bucket"})
    assert (done["status"], done.get("error")) == ("FAILED", "InvalidInput")
    assert states == ["CheckInput", "NotifyInvalidInput", "InvalidInput"]

    landed = {"bucket": "data-bucket", "key": "raw/20261126T101010123456Z-abc123/b.csv"}
    done, states = moto_pipeline("landed", landed)
    assert done["status"] == "SUCCEEDED" and states == ["CheckInput", "IgnoreObject"]

    rejected = {"status": "rejected", "ingest_id": "i", "dataset_version": None}
    done, states = moto_pipeline(
        "bad-batch", {"bucket": "data-bucket", "key": "raw/b.csv"}, result=rejected
    )
    assert (done["status"], done.get("error")) == ("FAILED", "DataQualityRejected")
    assert states[:4] == ["CheckInput", "Init", "StartValidation", "WaitForValidation"]
    assert states[-3:] == ["IsBatchAccepted", "NotifyDataQualityRejected", "DataQualityRejected"]
    assert "StartTraining" not in states
