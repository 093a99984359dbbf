"""The Glue entry point (`jobs.aws.glue_ingest`) against moto S3 (in-process): Glue-style arguments,
what lands where for a good and a bad batch, and malformed arguments failing with one clear line
before anything is written.

Real Great Expectations and the real ingest core; only S3 is emulated.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from jobs.aws import glue_ingest
from jobs.core.errors import RejectedError, SourceError, StorageError, UsageError
from jobs.core.synthetic import make_abalone, to_csv_bytes

DATA, REPORTS = "abalone-data-test", "abalone-reports-test"


@pytest.fixture
def s3(monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=DATA)
        client.create_bucket(Bucket=REPORTS)
        yield client


def keys(client, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def args(**over: str) -> list[str]:
    values = {
        "--source": f"s3://{DATA}/raw/batch.csv",
        "--lake": f"s3://{DATA}/lake",
        "--reports": f"s3://{REPORTS}",
        "--env": "dev",
        "--run_id": "exec-0001",
    }
    values.update({f"--{k}": v for k, v in over.items()})
    argv = ["--JOB_NAME", "abalone-dev-ingest", "--TempDir", "s3://tmp/x"]  # Glue's own, ignored
    for key, value in values.items():
        if value is not None:
            argv += [key, value]
    return argv


def read_json(client, bucket: str, key: str) -> dict:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_accepted_batch_lands_curated_splits_reports_and_result(s3):
    s3.put_object(Bucket=DATA, Key="raw/batch.csv", Body=to_csv_bytes(make_abalone(300, seed=3)))
    result = glue_ingest.main(args(), s3_client=s3)

    assert result["status"] == "accepted" and result["data_quality"] == "passed"
    version = result["dataset_version"]
    assert version.startswith("ds-")
    lake = keys(s3, DATA)
    for split in ("train", "validation", "test"):
        assert f"lake/curated/{version}/{split}.csv" in lake
    assert f"lake/curated/{version}/manifest.json" in lake
    assert any(k.startswith(f"lake/raw/{result['ingest_id']}/") for k in lake)
    assert "raw/batch.csv" in lake  # the uploaded object is left as it was

    channel = f"s3://{DATA}/lake/curated/{version}/"
    assert result["channels"] == {"train": channel, "validation": channel, "test": channel}
    recorded = read_json(s3, DATA, "lake/runs/exec-0001/ingest_result.json")
    assert recorded == result
    assert recorded["run_id"] == "exec-0001" and recorded["problems_total"] >= 0
    assert len(json.dumps(recorded)) < 16_000  # carried in the state machine's 256 KB state
    reports = keys(s3, REPORTS)
    assert f"{result['ingest_id']}/summary.json" in reports
    assert any(
        k.startswith(f"{result['ingest_id']}/data_docs/") and k.endswith(".html") for k in reports
    )
    manifest = read_json(s3, DATA, f"lake/curated/{version}/manifest.json")
    assert sum(manifest["rows"].values()) == result["rows_accepted"]


def test_rejected_batch_is_quarantined_recorded_and_fails_the_run(s3):
    frame = make_abalone(200, seed=4)
    frame["sex"] = "X"  # critical: category outside {M, F, I}
    s3.put_object(Bucket=DATA, Key="raw/bad.csv", Body=to_csv_bytes(frame))
    with pytest.raises(RejectedError, match="rejected and quarantined") as info:
        glue_ingest.main(args(source=f"s3://{DATA}/raw/bad.csv", run_id="exec-bad"), s3_client=s3)
    assert "sex" in str(info.value)

    lake = keys(s3, DATA)
    assert not any(k.startswith("lake/curated/") for k in lake)
    batch = [k for k in lake if k.startswith("lake/quarantine/") and k.endswith("batch.json")]
    assert len(batch) == 1
    recorded = read_json(s3, DATA, "lake/runs/exec-bad/ingest_result.json")
    assert recorded["status"] == "rejected" and recorded["data_quality"] == "failed"
    assert recorded["dataset_version"] is None and recorded["channels"] is None
    assert recorded["problems"] and recorded["quarantine_uri"].endswith("batch.json")


def test_result_uri_overrides_where_the_result_goes(s3):
    s3.put_object(Bucket=DATA, Key="raw/batch.csv", Body=to_csv_bytes(make_abalone(120, seed=8)))
    target = f"s3://{REPORTS}/pipeline/exec-0002/validation.json"
    result = glue_ingest.main(
        args(run_id="exec-0002", result_uri=target, source_uri=None), s3_client=s3
    )
    assert result["result_uri"] == target
    assert read_json(s3, REPORTS, "pipeline/exec-0002/validation.json") == result
    assert not any(k.startswith("lake/runs/") for k in keys(s3, DATA))


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"source": None}, "missing job argument.*--source"),
        ({"lake": None}, "missing job argument.*--lake"),
        ({"source": "/tmp/local.csv"}, "--source must be an s3:// URI"),
        ({"source": f"s3://{DATA}"}, "must name an object"),
        ({"lake": "https://example.invalid/lake"}, "--lake must be an s3:// URI"),
        ({"result_uri": f"s3://{REPORTS}/"}, "--result_uri must name an object"),
        ({"env": "staging"}, "--env"),
        ({"run_id": "bad id with spaces"}, "--run_id"),
        ({"max_mb": "-3"}, "--max_mb"),
        ({"source_uri": f"s3://{DATA}/raw/other.csv"}, "conflicting values"),
    ],
)
def test_malformed_arguments_fail_clearly_and_write_nothing(s3, over, message):
    s3.put_object(Bucket=DATA, Key="raw/batch.csv", Body=b"irrelevant")
    before = keys(s3, DATA), keys(s3, REPORTS)
    with pytest.raises(UsageError, match=message) as info:
        glue_ingest.main(args(**over), s3_client=s3)
    assert "\n" not in str(info.value)
    assert (keys(s3, DATA), keys(s3, REPORTS)) == before


def test_missing_source_object_and_missing_bucket_fail_before_any_write(s3):
    with pytest.raises(SourceError, match=r"no such object|cannot read"):
        glue_ingest.main(args(source=f"s3://{DATA}/raw/missing.csv"), s3_client=s3)
    assert keys(s3, DATA) == [] and keys(s3, REPORTS) == []

    s3.put_object(Bucket=DATA, Key="raw/batch.csv", Body=to_csv_bytes(make_abalone(50, seed=5)))
    with pytest.raises(StorageError, match="reports bucket 'no-such-reports'"):
        glue_ingest.main(args(reports="s3://no-such-reports"), s3_client=s3)
    assert keys(s3, DATA) == ["raw/batch.csv"]


def test_refuses_to_reingest_a_landed_raw_batch(s3):
    key = "lake/raw/20261126T172508123456Z-1a2b3c/batch.csv"
    s3.put_object(Bucket=DATA, Key=key, Body=to_csv_bytes(make_abalone(50, seed=6)))
    with pytest.raises(UsageError, match="already landed"):
        glue_ingest.main(args(source=f"s3://{DATA}/{key}"), s3_client=s3)
    assert keys(s3, DATA) == [key]


def test_hyphenated_flags_are_accepted():
    parsed = glue_ingest.parse_args(
        [
            "--source",
            "s3://b/k.csv",
            "--lake",
            "s3://b/lake/",
            "--reports",
            "s3://r",
            "--run-id",
            "x1",
        ]
    )
    assert parsed.run_id == "x1" and parsed.lake == "s3://b/lake" and parsed.env == "dev"
