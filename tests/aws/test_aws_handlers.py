"""Lambda handlers (`jobs.aws.handlers`): malformed events fail with one clear line before any call
to MLflow or AWS; the endpoint system test passes a faithful endpoint and fails a wrong one; the
training-output lookup; approval tags read from a real MLflow server.

The happy paths of gate/system-test/promote inside the state machine are in
``tests/e2e/test_aws_pipeline.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import joblib
import numpy as np
import pytest
from moto import mock_aws

from jobs.aws import handlers
from jobs.core.errors import SourceError, UsageError
from jobs.core.golden import GOLDEN_ROWS
from jobs.core.schema import FEATURES
from jobs.core.synthetic import make_abalone
from jobs.promotion.invokers import CallableInvoker
from jobs.promotion.systemtest import run_system_test

GOOD_STATE = {
    "bucket": "data",
    "key": "raw/batch.csv",
    "context": {"stack": "dev", "data_bucket": "data", "execution_name": "e1"},
    "validation": {"Result": {"status": "accepted", "dataset_version": "ds-abc"}},
    "training": {"Status": "Completed", "ModelDataUrl": "s3://art/training/j/output/model.tar.gz"},
    "gate": {"output": {"decision": "continue", "model_version": "3"}},
    "system_test": {"output": {"passed": True, "reasons": ["ok"], "rmse": 2.0}},
}


def without(path: str) -> dict:
    state = json.loads(json.dumps(GOOD_STATE))
    *parents, leaf = path.split(".")
    node = state
    for part in parents:
        node = node[part]
    del node[leaf]
    return state


def replaced(path: str, value) -> dict:
    state = json.loads(json.dumps(GOOD_STATE))
    *parents, leaf = path.split(".")
    node = state
    for part in parents:
        node = node[part]
    node[leaf] = value
    return state


@pytest.fixture
def no_tracking(monkeypatch):
    """Handlers must fail on the event before they would look at the environment or MLflow."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


MALFORMED = [
    ("gate_handler", "not an object", "event must be a JSON object"),
    ("gate_handler", without("validation"), "validation"),
    ("gate_handler", replaced("validation.Result.status", "maybe"), "validation.Result.status"),
    ("gate_handler", without("training"), "needs training.ModelDataUrl or model_version"),
    ("gate_handler", replaced("training.ModelDataUrl", "/local/model.tar.gz"), "ModelDataUrl"),
    ("gate_handler", replaced("context.stack", "staging"), "context.stack"),
    ("system_test_handler", without("gate"), "needs gate.output.model_version"),
    ("system_test_handler", replaced("gate.output.model_version", "v1"), "model_version"),
    ("system_test_handler", {**GOOD_STATE, "endpoint_name": "bad name!"}, "endpoint_name"),
    ("system_test_handler", {**GOOD_STATE, "tolerance": -1}, "tolerance"),
    ("approval_handler", [1, 2], "event must be a JSON object"),
    ("approval_handler", replaced("gate.output", {"decision": "continue"}), "model_version"),
    ("approval_handler", {"model_version": 0}, "model_version"),
    ("promote_handler", without("system_test"), "system_test"),
    ("promote_handler", replaced("system_test.output.passed", "perhaps"), "passed"),
    ("promote_handler", without("validation"), "validation"),
]


@pytest.mark.parametrize(("name", "event", "message"), MALFORMED)
def test_malformed_events_fail_with_one_clear_line(no_tracking, name, event, message):
    with pytest.raises(UsageError) as info:
        getattr(handlers, name)(event, None)
    text = str(info.value)
    assert text.startswith(f"{name}:") and message in text and "\n" not in text


@pytest.mark.parametrize(
    "name", ["gate_handler", "system_test_handler", "approval_handler", "promote_handler"]
)
def test_missing_tracking_uri_is_a_clear_error(no_tracking, monkeypatch, name):
    monkeypatch.setenv("ABALONE_STAGING_ENDPOINT", "abalone-dev-staging")
    event = {**GOOD_STATE, "model_version": "3"}
    with pytest.raises(UsageError, match="MLFLOW_TRACKING_URI is not set"):
        getattr(handlers, name)(event, None)


def test_promote_refuses_to_run_without_the_stack_lock_table(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # never reached
    monkeypatch.delenv("ABALONE_PROMOTION_LOCK_TABLE", raising=False)
    with pytest.raises(UsageError, match="ABALONE_PROMOTION_LOCK_TABLE is not set") as info:
        handlers.promote_handler({**GOOD_STATE, "model_version": "3"}, None)
    assert "\n" not in str(info.value)


def test_approval_status_rules():
    assert handlers.approval_status({}) == ("pending", "no approval tag yet")
    assert handlers.approval_status({"approval": "approved"})[0] == "pending"
    assert handlers.approval_status({"approval": "approved", "approved_by": "ana"}) == (
        "approved",
        "approved by ana",
    )
    assert handlers.approval_status({"approval": "rejected", "approved_by": "ana"})[0] == "rejected"


def test_approval_handler_reads_tags_from_mlflow(mlflow_server, monkeypatch):
    from mlflow import MlflowClient

    from jobs.adapters.tracking import Registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    name = "abalone-age"
    with contextlib.suppress(Exception):  # shared session server: may exist already
        client.create_registered_model(name)
    version = client.create_model_version(name, source="s3://models/abalone/model").version
    event = {"context": {"stack": "prd", "data_bucket": "data"}, "model_version": str(version)}

    assert handlers.approval_handler(event, None)["status"] == "pending"
    Registry(mlflow_server).approve(version, by="ana")
    out = handlers.approval_handler(event, None)
    assert out == {
        "status": "approved",
        "reason": "approved by ana",
        "model_version": str(version),
        "approved_by": "ana",
    }
    client.set_model_version_tag(name, str(version), "approval", "rejected")
    assert handlers.approval_handler(event, None)["status"] == "rejected"


# ---- the endpoint system test core --------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A fitted model directory as jobs/train.py writes it, loaded by the SageMaker handler."""
    from jobs.core.evaluate import regression_metrics
    from jobs.core.model import build_model
    from jobs.serving.handlers import model_fn

    frame = make_abalone(700, seed=11)
    train, test = frame.iloc[:500], frame.iloc[500:].reset_index(drop=True)
    model = build_model(None).fit(train[list(FEATURES)], train["rings"])
    model_dir = tmp_path_factory.mktemp("model")
    joblib.dump(model, model_dir / "model.joblib")
    (model_dir / "metadata.json").write_text(json.dumps({"model_version": "1"}))
    rmse = regression_metrics(test["rings"].to_numpy(float), model.predict(test[list(FEATURES)]))[
        "rmse"
    ]
    return model_fn(model_dir), test, rmse


def container(model, *, shift: float = 0.0, accept_garbage: bool = False):
    """What the SageMaker container does per request, as an ``invoke`` function."""
    from jobs.serving.handlers import InvalidInput, input_fn, output_fn, predict_fn

    def invoke(body: bytes, content_type: str, accept: str) -> bytes:
        try:
            rows = input_fn(body.decode(), content_type)
        except InvalidInput:
            if accept_garbage:
                return json.dumps({"predictions": []}).encode()
            raise
        pred = predict_fn(rows, model)
        if shift:
            pred = type(pred)(rings=pred.rings + shift, model_version=pred.model_version)
        return output_fn(pred, accept)[0].encode()

    return invoke


def test_endpoint_system_test_passes_a_faithful_endpoint(served):
    model, test, rmse = served
    result = run_system_test(
        CallableInvoker(container(model), "stg"), test, expected_rmse=rmse, tolerance=0.01
    )
    assert result.passed, result.reasons
    assert result.rows == len(test) and result.rmse == pytest.approx(rmse, abs=1e-9)
    assert result.p50_ms is not None and result.p99_ms >= result.p50_ms
    tags = result.to_tags()
    assert tags["systemtest.passed"] == "true" and tags["systemtest.endpoint"] == "stg"


def test_endpoint_system_test_fails_when_served_rmse_drifts_from_logged(served):
    model, test, rmse = served
    result = run_system_test(
        CallableInvoker(container(model, shift=1.5)), test, expected_rmse=rmse, tolerance=0.05
    )
    assert not result.passed
    assert any("> tolerance" in r for r in result.reasons)


def test_endpoint_system_test_fails_a_broken_model_on_the_golden_rows(served):
    model, test, rmse = served
    result = run_system_test(
        CallableInvoker(container(model, shift=-25.0)), test, expected_rmse=rmse, tolerance=100.0
    )
    assert not result.passed
    assert any(r.startswith("golden row 'large adult female'") for r in result.reasons)


def test_endpoint_system_test_fails_when_garbage_is_answered(served):
    model, test, rmse = served
    result = run_system_test(
        CallableInvoker(container(model, accept_garbage=True)),
        test,
        expected_rmse=rmse,
        tolerance=0.05,
    )
    assert not result.passed
    assert "malformed request was answered as if valid" in result.reasons


def test_endpoint_system_test_reports_a_dead_endpoint(served):
    _, test, rmse = served

    def dead(body, content_type, accept):
        raise ConnectionError("endpoint abalone-dev-staging is not InService")

    result = run_system_test(CallableInvoker(dead), test, expected_rmse=rmse, tolerance=0.05)
    assert not result.passed and "not InService" in result.reasons[0]


# ---- which version a training job registered ----------------------------------------------------


def tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_version_from_training_output(monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="art")
        base = "training/abalone-dev-e1/output"
        s3.put_object(Bucket="art", Key=f"{base}/model.tar.gz", Body=tar_gz({"model.joblib": b"x"}))
        url = f"s3://art/{base}/model.tar.gz"
        with pytest.raises(SourceError, match=r"no metadata\.json with a run_id"):
            handlers.version_from_training_output(url, registry=None, s3=s3)
        s3.put_object(
            Bucket="art",
            Key=f"{base}/output.tar.gz",
            Body=tar_gz({"result.json": json.dumps({"model_version": "7"}).encode()}),
        )
        assert handlers.version_from_training_output(url, registry=None, s3=s3) == "7"
        with pytest.raises(SourceError, match="does not exist"):
            handlers.version_from_training_output("s3://art/none/model.tar.gz", None, s3=s3)


def test_golden_rows_are_eight_features():
    rows = [tuple(g.values) for g in GOLDEN_ROWS]
    assert rows and all(len(r) == 8 and r[0] in ("M", "F", "I") for r in rows)
    assert np.isfinite(np.asarray([r[1:] for r in rows], dtype=float)).all()
    assert Path(handlers.__file__).name == "handlers.py"


# ---- the gate's rejection path against a real MLflow server and moto S3 ------------------------


@pytest.mark.slow
def test_gate_rejects_above_the_ceiling_tags_why_and_moves_nothing(mlflow_server, monkeypatch):
    import mlflow
    import mlflow.sklearn

    from jobs.adapters.tracking import Registry
    from jobs.core.data import canonical_csv
    from jobs.core.model import build_model

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("ABALONE_ENV", "dev")
    frame = make_abalone(400, seed=31)
    model = build_model(None).fit(frame[list(FEATURES)], frame["rings"])
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("abalone-handlers-test")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
    registry = Registry(mlflow_server)
    version = registry.register(
        info.model_uri,
        run_id=run.info.run_id,
        model_id=info.model_id,
        tags={"dataset_version": "ds-handlertest", "test_rmse": "9.900000"},
    )
    before = registry.aliases()
    event = {
        "context": {"stack": "dev", "data_bucket": "gate-lake"},
        "validation": {"Result": {"status": "accepted", "dataset_version": "ds-handlertest"}},
        "model_version": version,
    }
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="gate-lake")
        s3.put_object(
            Bucket="gate-lake",
            Key="curated/ds-handlertest/test.csv",
            Body=canonical_csv(frame.iloc[:120]),
        )
        out = handlers.gate_handler(event, None)

    assert out["decision"] == "reject" and not out["passed"]
    assert any(
        r.startswith("FAIL rmse_ceiling: test rmse 9.9000 > ceiling 2.30") for r in out["reasons"]
    )
    tags = registry.tags(version)
    assert tags["gate.decision"] == "reject" and tags["gate.predeploy"] == "failed"
    assert "rmse_ceiling" in tags["gate.reasons"] and tags["gate.rule.rmse_ceiling"] == "failed"
    after = registry.aliases()
    assert (after.champion, after.previous) == (before.champion, before.previous)
    assert after.challenger == before.challenger


# ---- the scheduled drift job ----------------------------------------------------------------------


def _sagemaker_capture(frame, predictions, at) -> bytes:
    now = at.isoformat(timespec="seconds").replace("+00:00", "Z")
    body = frame[list(FEATURES)].to_csv(index=False, header=False, lineterminator="\n")
    out = json.dumps({"predictions": [{"rings": float(p)} for p in predictions]})
    record = {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": body,
                              "encoding": "CSV"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                               "data": out, "encoding": "JSON"},
        },
        "eventMetadata": {"eventId": "e1", "inferenceTime": now},
        "eventVersion": "0",
    }  # fmt: skip
    return (json.dumps(record) + "\n").encode()


@pytest.fixture
def drift_env(monkeypatch, tmp_path):
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        from jobs.core.profile import build_profile

        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("drift-data", "drift-reports"):
            s3.create_bucket(Bucket=bucket)
        machine = boto3.client("stepfunctions", region_name="us-east-1").create_state_machine(
            name="abalone-dev-pipeline",
            definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        reference = make_abalone(600, seed=41)
        profile = build_profile(reference[list(FEATURES)], reference["rings"].to_numpy(float))
        s3.put_object(Bucket="drift-reports", Key="ref/profile.json", Body=json.dumps(profile))
        s3.put_object(
            Bucket="drift-data",
            Key="curated/LATEST.json",
            Body=json.dumps({"dataset_version": "ds-drift"}),
        )
        s3.put_object(
            Bucket="drift-data",
            Key="curated/ds-drift/manifest.json",
            Body=json.dumps({"source": "s3://drift-data/raw/20261126-uploaded.csv"}),
        )
        env = {
            "ABALONE_CAPTURE_URI": "s3://drift-data/capture/",
            "ABALONE_REPORTS": "s3://drift-reports",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # unused: the reference is a JSON file
            "ABALONE_METRIC_NAMESPACE": "Abalone/dev",
            "ABALONE_STATE_MACHINE_ARN": machine,
            "ABALONE_HOME": str(tmp_path / "home"),
            "ABALONE_ENV": "dev",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield s3, machine


def test_drift_job_reports_publishes_the_score_and_retrains(drift_env):
    s3, machine = drift_env
    event = {
        "source": "schedule",
        "retrain": True,
        "reference": "s3://drift-reports/ref/profile.json",
    }
    assert handlers.drift_handler(event, None)["status"] == "no_data"

    live = make_abalone(300, seed=42)
    for col in ("whole_weight", "shucked_weight", "viscera_weight", "shell_weight"):
        live[col] = live[col] * 1.5  # heavier animals than the model was trained on
    # SageMaker writes capture under the UTC hour of the request: the job reads the last 24 h of
    # the real clock, so the traffic is an hour old whatever the date the suite runs on.
    served_at = datetime.now(UTC) - timedelta(hours=1)
    s3.put_object(
        Bucket="drift-data",
        Key=f"capture/abalone-dev-endpoint/AllTraffic/{served_at:%Y/%m/%d/%H}/a.jsonl",
        Body=_sagemaker_capture(live, live["rings"], served_at),
    )
    out = handlers.drift_handler(event, None)
    assert out["drift"] is True and out["rows"] == 300
    assert "whole_weight" in out["drifting_features"]
    run_keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket="drift-reports", Prefix="monitoring/")["Contents"]
    ]
    assert out["report"].startswith("s3://drift-reports/monitoring/")
    assert any(k.endswith("/report.html") for k in run_keys)
    assert any(k.endswith("/summary.json") for k in run_keys)
    metrics = boto3.client("cloudwatch", region_name="us-east-1").list_metrics(
        Namespace="Abalone/dev"
    )["Metrics"]
    assert [m["MetricName"] for m in metrics] == ["DriftScore"]
    assert out["retrain"]["started"] and out["retrain"]["source"] == (
        "s3://drift-data/raw/20261126-uploaded.csv"
    )
    (execution,) = boto3.client("stepfunctions", region_name="us-east-1").list_executions(
        stateMachineArn=machine
    )["executions"]
    assert execution["executionArn"] == out["retrain"]["execution_arn"]


def test_drift_job_rejects_malformed_events_and_missing_environment(drift_env, monkeypatch):
    with pytest.raises(UsageError, match="drift_handler: bad event field capture"):
        handlers.drift_handler({"capture": "/var/capture"}, None)
    with pytest.raises(UsageError, match="drift_handler: bad event field retrain"):
        handlers.drift_handler({"retrain": "sometimes"}, None)
    monkeypatch.delenv("ABALONE_REPORTS")
    with pytest.raises(UsageError, match="ABALONE_REPORTS not set"):
        handlers.drift_handler({}, None)
