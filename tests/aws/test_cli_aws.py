"""`abalone run --target aws` and `abalone ui --stack` over the launcher, against moto in-process.

The stack (SSM parameters, buckets, a small state machine executed by moto) comes from the
launcher tests' fixture; the full pipeline on AWS is tests/e2e/test_aws_pipeline.py.
"""

from __future__ import annotations

import json

import boto3
from typer.testing import CliRunner

from jobs.cli import app
from tests.aws.test_launcher import REGION, stack  # noqa: F401  (fixture)

runner = CliRunner()


def test_run_target_aws_direct_follows_the_execution_to_its_end(stack):  # noqa: F811
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket="dev-data", Key="raw/good-batch.csv", Body=b"M,1,1,1,1,1,1,1,9\n")
    result = runner.invoke(
        app,
        ["run", "--target", "aws", "--stack", "dev", "--direct", "--source",
         "s3://dev-data/raw/good-batch.csv", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["status"] == "SUCCEEDED"
    assert [s["name"] for s in payload["states"]] == ["Check", "Work", "Done"]


def test_run_target_aws_failed_execution_exits_1_naming_the_error(stack):  # noqa: F811
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket="dev-data", Key="raw/bad-batch.csv", Body=b"x")
    result = runner.invoke(
        app,
        ["run", "--target", "aws", "--stack", "dev", "--direct", "--source",
         "s3://dev-data/raw/bad-batch.csv"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "DataQualityRejected" in result.output


def test_run_target_aws_unknown_stack_and_target_are_usage_errors(stack):  # noqa: F811
    missing = runner.invoke(app, ["run", "--target", "aws", "--stack", "prd", "--source", "x.csv"])
    assert missing.exit_code == 2 and "missing SSM parameter" in missing.output
    bad = runner.invoke(app, ["run", "--target", "gcp"])
    assert bad.exit_code == 2 and "choose local or aws" in bad.output


def test_ui_stack_prints_a_presigned_url(stack, monkeypatch):  # noqa: F811
    # moto has no SageMaker MLflow API: botocore's Stubber answers that one call
    from botocore.stub import Stubber

    from jobs.aws import launcher

    client = boto3.client("sagemaker", region_name=REGION)
    url = "https://abalone-dev.mlflow.sagemaker.us-east-1.app.aws/auth?authToken=x"
    real_client = launcher._client
    monkeypatch.setattr(
        launcher,
        "_client",
        lambda service, region=None: (
            client if service == "sagemaker" else real_client(service, region)
        ),
    )
    with Stubber(client) as stub:
        stub.add_response("create_presigned_mlflow_tracking_server_url", {"AuthorizedUrl": url})
        result = runner.invoke(app, ["ui", "--stack", "dev"])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == url
        stub.add_client_error(
            "create_presigned_mlflow_tracking_server_url",
            service_error_code="ResourceNotFound",
            service_message="Tracking server abalone-dev not found",
        )
        failed = runner.invoke(app, ["ui", "--stack", "dev"])
        assert failed.exit_code == 2 and "ResourceNotFound" in failed.output
        assert "Traceback" not in failed.output
