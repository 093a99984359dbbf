"""The AWS launcher (`jobs.aws.launcher`) against moto in-process: stack resolution from SSM,
uploading a batch under raw/ and finding the execution it started, direct starts, per-state
status of real (moto-executed) state machines, presigned report links that open, and the
presigned MLflow UI URL (moto has no SageMaker MLflow API: botocore's Stubber answers that call).

The full pipeline run through the launcher is in tests/e2e/test_aws_pipeline.py.
"""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest
import requests
from botocore.stub import Stubber
from moto import mock_aws

from jobs.aws import launcher
from jobs.aws import reports as aws_reports
from jobs.core.errors import ServiceError, SourceError, UsageError

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sfn"

PIPELINE = {
    "StartAt": "Check",
    "States": {
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.key", "StringMatches": "*bad*", "Next": "Rejected"}],
            "Default": "Work",
        },
        "Work": {"Type": "Pass", "Result": {"ok": True}, "ResultPath": "$.work", "Next": "Done"},
        "Done": {"Type": "Succeed"},
        "Rejected": {"Type": "Fail", "Error": "DataQualityRejected", "Cause": "bad batch"},
    },
}


@pytest.fixture
def stack(monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("dev-data", "dev-reports"):
            s3.create_bucket(Bucket=bucket)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name="abalone-dev-pipeline", definition=json.dumps(PIPELINE), roleArn=ROLE
        )["stateMachineArn"]
        ssm = boto3.client("ssm", region_name=REGION)
        for name, value in {
            "data-bucket": "dev-data",
            "reports-bucket": "dev-reports",
            "state-machine-arn": arn,
            "tracking-server-arn": f"arn:aws:sagemaker:{REGION}:123456789012:mlflow-tracking-server/abalone-dev",
            "staging-endpoint": "abalone-dev-staging",
            "unrelated-output": "ignored",
        }.items():
            ssm.put_parameter(Name=f"/abalone/dev/{name}", Value=value, Type="String")
        yield launcher.resolve_stack("dev")


def test_resolve_stack_reads_the_ssm_parameters(stack):
    assert stack.data_bucket == "dev-data" and stack.reports_bucket == "dev-reports"
    assert stack.state_machine_arn.endswith(":stateMachine:abalone-dev-pipeline")
    assert stack.staging_endpoint == "abalone-dev-staging" and stack.region == REGION
    assert aws_reports.tracking_server_name(stack) == "abalone-dev"


def test_resolve_stack_names_missing_parameters_and_bad_stack_names(stack):
    with pytest.raises(UsageError, match=r"missing SSM parameter.*/abalone/prd/data-bucket"):
        launcher.resolve_stack("prd")
    with pytest.raises(UsageError, match="invalid stack name"):
        launcher.resolve_stack("../dev")


def test_upload_lands_a_flat_raw_key_and_finds_the_triggered_execution(stack, tmp_path):
    batch = tmp_path / "my batch.csv"
    batch.write_bytes(b"M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15\n")
    sfn = boto3.client("stepfunctions", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    real_put = s3.put_object

    def put_and_trigger(**kwargs):  # what the stack's EventBridge rule does on the upload
        out = real_put(**kwargs)

        def trigger_later():  # plain sleep, not threading.Timer: see README "Development"
            time.sleep(0.3)
            sfn.start_execution(
                stateMachineArn=stack.state_machine_arn,
                input=json.dumps({"bucket": kwargs["Bucket"], "key": kwargs["Key"]}),
            )

        threading.Thread(target=trigger_later, daemon=True).start()
        return out

    s3.put_object = put_and_trigger
    submitted = launcher.submit(stack, str(batch), s3=s3, sfn=sfn, poll_s=0.1, find_timeout_s=10)
    assert submitted.uploaded and submitted.bucket == "dev-data"
    key = submitted.key
    assert key.startswith("raw/") and key.count("/") == 1 and key.endswith("-my_batch.csv")
    assert s3.get_object(Bucket="dev-data", Key=key)["Body"].read() == batch.read_bytes()

    done = launcher.follow(submitted.execution_arn, sfn=sfn, poll_s=0.1, timeout_s=30)
    assert done.ok
    assert [s.name for s in done.steps] == ["Check", "Work", "Done"]
    assert all(s.status == "succeeded" for s in done.steps)


def test_find_execution_times_out_with_a_hint(stack):
    with pytest.raises(ServiceError, match=r"no execution .* started .*EventBridge rule"):
        launcher.find_execution(stack, "raw/nothing.csv", timeout_s=0.3, poll_s=0.1)


def test_direct_start_status_and_failure_details(stack):
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket="dev-data", Key="raw/bad-batch.csv", Body=b"x")
    submitted = launcher.submit(stack, "s3://dev-data/raw/bad-batch.csv", direct=True)
    assert not submitted.uploaded
    seen: list[str] = []
    done = launcher.follow(
        submitted.execution_arn, on_step=lambda s: seen.append(s.name), poll_s=0.1, timeout_s=30
    )
    assert done.status == "FAILED" and done.error == "DataQualityRejected"
    assert seen == ["Check", "Rejected"]
    assert done.steps[-1].status == "failed"
    again = launcher.status(launcher.latest_execution(stack))
    assert again.arn == submitted.execution_arn and again.to_dict()["status"] == "FAILED"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/tmp/local.csv", "needs an s3://bucket/key"),
        ("s3://other-bucket/raw/x.csv", "stack's data bucket dev-data"),
    ],
)
def test_direct_start_needs_an_object_in_the_data_bucket(stack, source, message):
    with pytest.raises(UsageError, match=message):
        launcher.submit(stack, source, direct=True)
    assert (
        boto3.client("stepfunctions", region_name=REGION).list_executions(
            stateMachineArn=stack.state_machine_arn
        )["executions"]
        == []
    )


def test_missing_local_source_is_a_source_error_and_uploads_nothing(stack, tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        launcher.submit(stack, str(tmp_path / "missing.csv"))
    assert "Contents" not in boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket="dev-data"
    )


def test_status_rejects_a_non_execution_arn():
    with pytest.raises(UsageError, match="not an execution ARN"):
        launcher.status("abalone-dev-pipeline")


def test_reports_are_listed_newest_first_with_links_that_open(stack):
    s3 = boto3.client("s3", region_name=REGION)
    for ingest_id, status in (
        ("20261126T100000000000Z-aaaaaa", "accepted"),
        ("20261126T110000000000Z-bbbbbb", "rejected"),
    ):
        summary = {"status": status, "rows_total": 10, "dataset_version": None, "problems": ["p"]}
        s3.put_object(
            Bucket="dev-reports", Key=f"{ingest_id}/summary.json", Body=json.dumps(summary)
        )
        s3.put_object(
            Bucket="dev-reports",
            Key=f"{ingest_id}/data_docs/index.html",
            Body=f"<html>{ingest_id}</html>".encode(),
        )
    reports = aws_reports.list_reports(stack, limit=5, expires_s=600)
    assert [r.ingest_id for r in reports] == [
        "20261126T110000000000Z-bbbbbb",
        "20261126T100000000000Z-aaaaaa",
    ]
    assert reports[0].status == "rejected" and reports[0].problems == 1
    assert "Signature" in reports[0].report_url and "Expires" in reports[0].report_url
    assert requests.get(reports[1].report_url, timeout=5).text == (
        "<html>20261126T100000000000Z-aaaaaa</html>"
    )
    assert len(aws_reports.list_reports(stack, limit=1)) == 1
    with pytest.raises(UsageError, match="--limit"):
        aws_reports.list_reports(stack, limit=0)


def test_presigned_mlflow_ui_url(stack):
    client = boto3.client("sagemaker", region_name=REGION)
    url = "https://abalone-dev.mlflow.sagemaker.us-east-1.app.aws/auth?authToken=x"
    with Stubber(client) as stub:
        stub.add_response(
            "create_presigned_mlflow_tracking_server_url",
            {"AuthorizedUrl": url},
            {
                "TrackingServerName": "abalone-dev",
                "ExpiresInSeconds": 300,
                "SessionExpirationDurationInSeconds": 43200,
            },
        )
        assert aws_reports.mlflow_ui_url(stack, sagemaker=client) == url
        stub.add_client_error(
            "create_presigned_mlflow_tracking_server_url",
            service_error_code="ResourceNotFound",
            service_message="Tracking server abalone-dev not found",
        )
        with pytest.raises(ServiceError, match="ResourceNotFound: Tracking server"):
            aws_reports.mlflow_ui_url(stack, sagemaker=client)
    with pytest.raises(UsageError, match=r"5\.\.300"):
        aws_reports.mlflow_ui_url(stack, sagemaker=client, expires_s=900)


def test_raw_keys_are_flat_unique_and_safe():
    a, b = launcher.raw_key("../../etc/passwd"), launcher.raw_key("batch.csv")
    time.sleep(0.001)
    assert a.startswith("raw/") and a.count("/") == 1 and a.endswith("-passwd")
    assert b != launcher.raw_key("batch.csv")


# ---- the CLI commands over the launcher ---------------------------------------------------------


def test_cli_status_and_reports(stack):
    from typer.testing import CliRunner

    from jobs.cli import app

    runner = CliRunner()
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket="dev-data", Key="raw/bad-batch.csv", Body=b"x")
    arn = launcher.submit(stack, "s3://dev-data/raw/bad-batch.csv", direct=True).execution_arn
    launcher.follow(arn, poll_s=0.1, timeout_s=30)

    result = runner.invoke(app, ["status", "--stack", "dev", "--json"])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["execution_arn"] == arn and payload["error"] == "DataQualityRejected"
    assert [s["name"] for s in payload["states"]] == ["Check", "Rejected"]

    human = runner.invoke(app, ["status", "--execution", arn])
    assert human.exit_code == 1 and "DataQualityRejected" in human.output

    missing = runner.invoke(app, ["status", "--stack", "prd"])
    assert missing.exit_code == 2 and "missing SSM parameter" in missing.output

    s3.put_object(
        Bucket="dev-reports",
        Key="20261126T120000000000Z-cccccc/summary.json",
        Body=json.dumps({"status": "accepted", "rows_total": 4177, "dataset_version": "ds-1"}),
    )
    listed = runner.invoke(app, ["reports", "--stack", "dev", "--json"])
    assert listed.exit_code == 0, listed.output
    (report,) = json.loads(listed.stdout)
    assert report["ingest_id"] == "20261126T120000000000Z-cccccc" and report["report_url"] is None
    assert "Signature" in report["summary_url"]


def test_reports_download_copies_the_newest_site_whole(stack, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from jobs.cli import app
    from jobs.core.synthetic import make_abalone, to_csv_bytes

    runner = CliRunner()
    monkeypatch.setenv("ABALONE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ABALONE_REPORTS", "s3://dev-reports")
    batch = tmp_path / "batch.csv"
    batch.write_bytes(to_csv_bytes(make_abalone(300, seed=3)))
    ingested = runner.invoke(app, ["ingest", "--source", str(batch), "--json"])
    assert ingested.exit_code == 0, ingested.output
    ingest_id = json.loads(ingested.stdout)["ingest_id"]

    got = runner.invoke(app, ["reports", "--stack", "dev", "--download", str(tmp_path / "r")])
    assert got.exit_code == 0, got.output
    page = tmp_path / "r" / ingest_id / "data_docs" / "index.html"
    assert str(page) in got.output.replace("\n", "")
    assert ingest_id in page.read_text()
    assert list(page.parent.glob("static/vendor/*")), "the vendored styles and scripts came along"
    again = runner.invoke(
        app, ["reports", "--stack", "dev", "--download", str(tmp_path / "r"), "--ingest", ingest_id]
    )
    assert again.exit_code == 0 and page.is_file()  # a second copy replaces the first whole
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.startswith(".")]

    for bad, message in (("../etc", "invalid ingest id"), ("20990101T0Z-x", "no report")):
        out = runner.invoke(
            app, ["reports", "--stack", "dev", "--download", str(tmp_path / "r"), "--ingest", bad]
        )
        assert out.exit_code == 2 and message in out.output, out.output
