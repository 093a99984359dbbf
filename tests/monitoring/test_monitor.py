"""``abalone monitor`` (jobs.monitor): capture readers (ours, SageMaker, local and S3), --since,
reference profiles (file, S3, MLflow registry), the drift verdict, reports and exit codes."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from jobs.adapters.capture import CaptureItem, CaptureWriter
from jobs.adapters.capture_reader import read_capture
from jobs.adapters.capture_records import parse_line
from jobs.adapters.settings import load_settings
from jobs.cli import app
from jobs.core.errors import SourceError, UsageError
from jobs.core.profile import PREDICTION, build_profile, dumps_profile
from jobs.core.schema import FEATURES, NUMERIC_FEATURES
from jobs.core.synthetic import make_abalone
from jobs.core.timewindow import parse_since
from jobs.monitoring.monitor import monitor
from jobs.monitoring.reference import resolve_reference
from jobs.pipeline import retrain_safely
from jobs.serving.handlers import Rows
from tests.core.test_drift import WEIGHTS, quick_model
from tests.html_assets import external_refs, missing_local_refs

# The injected clock: every test here passes `now=NOW` (or derives times from the real clock), so
# capture "from the last hour" stays recent whatever the date the suite runs on.
NOW = datetime(2026, 11, 26, 17, 30, tzinfo=UTC)


# Hand-written SageMaker Model Monitor data-capture lines, in the documented format: CSV and JSON
# payloads as text, and BASE64 payloads (whose observedContentType says what they decode to).
SAGEMAKER_SAMPLE = "\n".join(
    [
        '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
        '"data":"M,0.45,0.36,0.1,0.5,0.22,0.1,0.15\\nF,0.55,0.43,0.15,0.8,0.3,0.16,0.24\\n",'
        '"encoding":"CSV"},"endpointOutput":{"observedContentType":"text/csv; charset=utf-8",'
        '"mode":"OUTPUT","data":"9.5,11.0\\n7.25,8.75\\n","encoding":"CSV"}},'
        '"eventMetadata":{"eventId":"a1b2c3d4-0001","inferenceTime":"2026-11-26T17:05:01Z"},'
        '"eventVersion":"0"}',
        '{"captureData":{"endpointInput":{"observedContentType":"application/json","mode":"INPUT",'
        '"data":"{\\"instances\\": [[\\"F\\", 0.52, 0.41, 0.14, 0.7, 0.29, 0.15, 0.21]]}",'
        '"encoding":"JSON"},"endpointOutput":{"observedContentType":"application/json",'
        '"mode":"OUTPUT","data":"{\\"predictions\\":[{\\"rings\\":10.5,\\"age_years\\":12.0}],'
        '\\"model_version\\":\\"3\\"}","encoding":"JSON"}},'
        '"eventMetadata":{"eventId":"a1b2c3d4-0002","inferenceTime":"2026-11-26T17:06:00.250Z"},'
        '"eventVersion":"0"}',
        '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
        '"data":"SSwwLjMzLDAuMjUsMC4wOCwwLjIsMC4wOSwwLjA0LDAuMDY=","encoding":"BASE64"},'
        '"endpointOutput":{"observedContentType":"application/json","mode":"OUTPUT",'
        '"data":"eyJwcmVkaWN0aW9ucyI6W3sicmluZ3MiOjYuMCwiYWdlX3llYXJzIjo3LjV9XX0=",'
        '"encoding":"BASE64"}},'
        '"eventMetadata":{"eventId":"a1b2c3d4-0003","inferenceTime":"2026-11-26T17:07:00Z"},'
        '"eventVersion":"0"}',
        '{"captureData":{"endpointInput":{"observedContentType":"application/json","mode":"INPUT",'
        '"data":"eyJkYXRhZnJhbWVfc3BsaXQiOnsiY29sdW1ucyI6WyJzZXgiLCJsZW5ndGgiLCJkaWFtZXRlciIsImhl'
        "aWdodCIsIndob2xlX3dlaWdodCIsInNodWNrZWRfd2VpZ2h0IiwidmlzY2VyYV93ZWlnaHQiLCJzaGVsbF93ZWln"
        'aHQiXSwiZGF0YSI6W1siTSIsMC42LDAuNDcsMC4xNiwxLjEsMC40NSwwLjI0LDAuMzJdXX19",'
        '"encoding":"BASE64"},"endpointOutput":{"observedContentType":"text/csv","mode":"OUTPUT",'
        '"data":"OC4wLDkuNQo=","encoding":"BASE64"}},'
        '"eventMetadata":{"eventId":"a1b2c3d4-0004","inferenceTime":"2026-11-26T17:08:00Z"},'
        '"eventVersion":"0"}',
        "this line is not JSON",
        '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
        '"data":"X,0.45,0.36,0.1,0.5,0.22,0.1,0.15","encoding":"CSV"}},'
        '"eventMetadata":{"eventId":"a1b2c3d4-0006","inferenceTime":"2026-11-26T17:09:00Z"},'
        '"eventVersion":"0"}',
    ]
)
SAGEMAKER_ROWS = [
    ["M", 0.45, 0.36, 0.1, 0.5, 0.22, 0.1, 0.15],
    ["F", 0.55, 0.43, 0.15, 0.8, 0.3, 0.16, 0.24],
    ["F", 0.52, 0.41, 0.14, 0.7, 0.29, 0.15, 0.21],
    ["I", 0.33, 0.25, 0.08, 0.2, 0.09, 0.04, 0.06],
    ["M", 0.6, 0.47, 0.16, 1.1, 0.45, 0.24, 0.32],
]


# ---- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return quick_model(make_abalone(1500, seed=0))


@pytest.fixture(scope="module")
def profile(model):
    train = make_abalone(1500, seed=0).drop(columns="rings")
    return build_profile(train, model.predict(train))


@pytest.fixture(scope="module")
def profile_path(profile, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "reference_profile.json"
    path.write_text(dumps_profile(profile))
    return path


def _rows(frame: pd.DataFrame) -> Rows:
    return Rows(
        sex=frame["sex"].astype(str).to_numpy(dtype=object),
        numeric=frame[list(NUMERIC_FEATURES)].to_numpy(dtype=float),
    )


def write_own_capture(capture_dir: Path, model, frame: pd.DataFrame, when: datetime, per=5):
    """Capture records exactly as ``abalone serve`` writes them (jobs.capture.CaptureWriter)."""
    with CaptureWriter(capture_dir) as writer:
        for i in range(0, len(frame), per):
            part = frame.iloc[i : i + per]
            rows = _rows(part)
            writer.submit(
                CaptureItem(
                    timestamp=(when + timedelta(seconds=i)).timestamp(),
                    request_id=f"req-{i}",
                    content_type="text/csv",
                    rows=rows,
                    rings=model.predict(rows.to_frame()),
                    model_name="abalone-age",
                    model_version="1",
                    run_id=None,
                )
            )


def sagemaker_lines(model, frame: pd.DataFrame, when: datetime, per=5) -> str:
    """Data-capture lines as a SageMaker endpoint writes them (CSV in, JSON out, both base64)."""
    lines = []
    for i in range(0, len(frame), per):
        part = frame.iloc[i : i + per][list(FEATURES)]
        body = part.to_csv(index=False, header=False)
        preds = model.predict(part)
        out = json.dumps({"predictions": [{"rings": r, "age_years": r + 1.5} for r in preds]})
        record = {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "text/csv",
                    "mode": "INPUT",
                    "data": base64.b64encode(body.encode()).decode(),
                    "encoding": "BASE64",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": base64.b64encode(out.encode()).decode(),
                    "encoding": "BASE64",
                },
            },
            "eventMetadata": {
                "eventId": f"evt-{i}",
                "inferenceTime": (when + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "eventVersion": "0",
        }
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def _settings(home: Path):
    return load_settings("dev", home=str(home))


# ---- parsing --------------------------------------------------------------------------------------


def test_parse_since():
    assert parse_since("1h", NOW) == NOW - timedelta(hours=1)
    assert parse_since("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_since("30m", NOW) == NOW - timedelta(minutes=30)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-11-26T09:00:00Z", NOW) == datetime(2026, 11, 26, 9, tzinfo=UTC)
    assert parse_since("2026-11-26T10:00:00+01:00", NOW) == datetime(2026, 11, 26, 9, tzinfo=UTC)
    assert parse_since(None, NOW) is None
    with pytest.raises(UsageError, match="--since"):
        parse_since("yesterday", NOW)


def test_sagemaker_sample_is_read_correctly(tmp_path):
    path = tmp_path / "ep" / "AllTraffic" / "2026" / "11" / "26" / "17" / "capture-1.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(SAGEMAKER_SAMPLE + "\n")
    batch = read_capture(tmp_path)
    assert batch.rows == 5 and batch.records == 4
    assert batch.skipped == 2  # the non-JSON line and the row with sex "X"
    assert any("not JSON" in s for s in batch.skipped_examples)
    expected = pd.DataFrame(SAGEMAKER_ROWS, columns=list(FEATURES))
    pd.testing.assert_frame_equal(
        batch.features.reset_index(drop=True).astype({"sex": object}),
        expected.astype({"sex": object}),
        check_dtype=False,
    )
    assert batch.predictions.tolist() == [9.5, 7.25, 10.5, 6.0, 8.0]
    assert batch.formats == {"sagemaker": 4}
    assert batch.model_versions == {"3": 1}  # from the JSON answer of the second record
    assert batch.first == datetime(2026, 11, 26, 17, 5, 1, tzinfo=UTC)
    assert batch.last == datetime(2026, 11, 26, 17, 8, tzinfo=UTC)


def test_own_capture_record_is_read_exactly(tmp_path, model):
    frame = make_abalone(12, seed=4)
    write_own_capture(tmp_path / "capture", model, frame, NOW - timedelta(minutes=5), per=4)
    files = list((tmp_path / "capture").rglob("*.jsonl"))
    assert [p.relative_to(tmp_path / "capture").as_posix() for p in files] == [
        "2026/11/26/17.jsonl"
    ]
    record = parse_line(files[0].read_text().splitlines()[0])
    assert record.source_format == "abalone" and record.model_version == "1"
    assert record.timestamp == NOW - timedelta(minutes=5)
    batch = read_capture(tmp_path / "capture")
    assert batch.rows == 12 and batch.records == 3 and batch.skipped == 0
    with files[0].open("a") as fh:  # a torn write and a record with a nested value
        fh.write('{"timestamp": "2026-11-26T17:29:00Z", "inputs": [{"sex": {"x": 1}}]}\n')
        fh.write('{"timestamp": "2026-11-26T17:29:0')
    damaged = read_capture(tmp_path / "capture")
    assert damaged.rows == 12 and damaged.skipped == 2
    assert damaged.skipped_examples[0].startswith("2026/11/26/17.jsonl:4: ")
    np.testing.assert_allclose(
        batch.features[list(NUMERIC_FEATURES)].to_numpy(), frame[list(NUMERIC_FEATURES)]
    )
    assert batch.features["sex"].tolist() == frame["sex"].tolist()
    np.testing.assert_allclose(batch.predictions, model.predict(frame.drop(columns="rings")))
    assert batch.model_versions == {"1": 12}


def test_since_keeps_only_recent_records(tmp_path, model):
    cap = tmp_path / "capture"
    write_own_capture(cap, model, make_abalone(40, seed=5), NOW - timedelta(hours=3))
    write_own_capture(cap, model, make_abalone(30, seed=6), NOW - timedelta(minutes=20))
    assert read_capture(cap).rows == 70
    recent = read_capture(cap, since=parse_since("1h", NOW))
    assert recent.rows == 30
    assert recent.first >= NOW - timedelta(hours=1)
    assert read_capture(cap, since=parse_since("24h", NOW)).rows == 70


def test_missing_capture_is_a_clear_source_error(tmp_path):
    with pytest.raises(SourceError, match="no capture found"):
        read_capture(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no \.jsonl files"):
        read_capture(tmp_path / "empty")


# ---- the monitoring run ---------------------------------------------------------------------------


def test_replay_shows_no_drift_and_writes_reports(tmp_path, model, profile_path):
    home = tmp_path / "home"
    write_own_capture(home / "capture", model, make_abalone(400, seed=31), NOW - timedelta(hours=1))
    result = monitor(_settings(home), reference=str(profile_path), now=NOW)
    assert result.summary["status"] == "ok" and not result.drifting
    assert result.summary["drifting_features"] == []
    # reports: HTML with a coloured row and a plot per column, JSON summary, GX data docs
    run_dir = home / "monitoring" / "20261126T173000Z"
    assert Path(result.report_html) == run_dir / "report.html"
    page = (run_dir / "report.html").read_text()
    assert "No drift" in page
    # one inline SVG chart per column (8 features + predictions), named for screen readers
    charts = re.findall(r'<svg [^>]*role="img" aria-label="([^"]+)"', page)
    assert charts == [f"{name} reference vs live" for name in (*FEATURES, PREDICTION)]
    assert "data:image" not in page
    for name in FEATURES:
        assert f"<b>{name}</b>" in page
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["status"] == "ok" and saved["capture"]["rows"] == 400
    assert saved["data_quality"]["status"] == "passed"
    assert Path(saved["data_quality"]["report_html"]).is_file()
    assert set(saved["drift_detail"]["features"]) == set(FEATURES)
    assert not list(run_dir.rglob(".tmp-*"))
    # every page of the run (drift report, Data Docs) renders from local files only
    pages = [p for p in run_dir.rglob("*.html") if "static/vendor" not in p.as_posix()]
    assert len(pages) == 6  # report.html; Data Docs index, 2 suite and 2 validation pages
    assert [ref for p in pages for ref in external_refs(p)] == []
    assert [ref for p in pages for ref in missing_local_refs(p)] == []


def test_juveniles_from_s3_sagemaker_capture_are_flagged(aws_env, tmp_path, model, profile):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="capture-bucket")
    frame = make_abalone(900, seed=32)
    juveniles = frame[frame["sex"] == "I"].head(200)
    key = "datacapture/abalone-prd/AllTraffic/2026/11/26/17/part-0001.jsonl"
    s3.put_object(
        Bucket="capture-bucket", Key=key, Body=sagemaker_lines(model, juveniles, NOW).encode()
    )
    s3.put_object(Bucket="capture-bucket", Key="profiles/ref.json", Body=dumps_profile(profile))
    home = tmp_path / "home"
    result = monitor(
        _settings(home),
        capture="s3://capture-bucket/datacapture/abalone-prd",
        reference="s3://capture-bucket/profiles/ref.json",
        run_validation=False,
        now=NOW,
    )
    assert result.summary["capture"]["rows"] == 200
    assert result.summary["capture"]["formats"] == {"sagemaker": 40}
    assert result.drifting and result.summary["status"] == "drift"
    assert {"sex", "length", "whole_weight"} <= set(result.summary["drifting_features"])
    assert result.summary["prediction_drift"]
    page = Path(result.report_html).read_text()
    assert "DRIFT DETECTED" in page and "sex" in page


def test_too_few_rows_claims_no_drift(tmp_path, model, profile_path):
    home = tmp_path / "home"
    frame = make_abalone(20, seed=33)
    frame[WEIGHTS] = frame[WEIGHTS] * 3
    write_own_capture(home / "capture", model, frame, NOW - timedelta(minutes=3))
    result = monitor(
        _settings(home),
        reference=str(profile_path),
        run_validation=False,
        retrain_on_drift=True,
        now=NOW,
    )
    assert result.summary["status"] == "insufficient_data"
    assert result.summary["retrain"]["skipped"] == "not needed (insufficient_data)"
    assert not result.drifting and result.summary["drifting_features"] == []
    assert "not enough data" in result.summary["message"]
    assert "Not enough data" in Path(result.report_html).read_text()


def test_reference_from_the_registry_champion(mlflow_server, tmp_path, profile):
    import mlflow
    from mlflow import MlflowClient

    name = "abalone-age-monitor-test"
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    experiment = client.create_experiment(f"monitor-test-{datetime.now(UTC):%H%M%S%f}")
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_dict(profile, "reference_profile.json")
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    settings = load_settings("dev", home=str(tmp_path / "home"), tracking_uri=mlflow_server)

    ref = resolve_reference(f"models:/{name}@champion", settings)
    assert ref.profile == profile
    assert ref.model_version == str(version.version) and ref.run_id == run.info.run_id
    assert resolve_reference(f"models:/{name}/{version.version}", settings).profile == profile
    with pytest.raises(UsageError, match="no @nobody version"):
        resolve_reference(f"models:/{name}@nobody", settings)


def test_retrain_without_validated_data_reports_why(tmp_path):
    outcome = retrain_safely(_settings(tmp_path / "home"))
    assert outcome["ok"] is False
    assert "no curated dataset" in outcome["error"]


# ---- the command line -----------------------------------------------------------------------------


@pytest.fixture
def runner(abalone_home):
    return CliRunner()


def test_cli_exit_1_on_drift_with_json(runner, abalone_home, model, profile_path):
    frame = make_abalone(300, seed=34)
    frame[WEIGHTS] = frame[WEIGHTS] * 1.5
    when = datetime.now(UTC) - timedelta(minutes=10)
    write_own_capture(abalone_home / "capture", model, frame, when)
    result = runner.invoke(
        app, ["monitor", "--reference", str(profile_path), "--since", "1h", "--json"]
    )
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert set(summary["drifting_features"]) == set(WEIGHTS)
    assert Path(summary["report_html"]).is_file() and Path(summary["summary_json"]).is_file()


def test_cli_exit_0_without_drift_and_2_without_capture(runner, abalone_home, model, profile_path):
    missing = runner.invoke(app, ["monitor", "--reference", str(profile_path)])
    assert missing.exit_code == 2
    assert "no capture found" in missing.output
    write_own_capture(abalone_home / "capture", model, make_abalone(20, seed=35), datetime.now(UTC))
    few = runner.invoke(app, ["monitor", "--reference", str(profile_path), "--json"])
    assert few.exit_code == 0, few.output
    assert json.loads(few.stdout)["status"] == "insufficient_data"
    bad = runner.invoke(app, ["monitor", "--reference", str(profile_path), "--since", "soon"])
    assert bad.exit_code == 2 and "--since" in bad.output
