"""`abalone ingest` end to end through the CLI: exit codes, messages, what lands where.

Real Great Expectations, real files; the HTTP sources come from a loopback server and the S3 lake
from a moto server on loopback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.core.synthetic import make_abalone, to_csv_bytes
from tests.adapters.test_storage_fetch import http_base  # noqa: F401  (fixture)

runner = CliRunner()
HEADER = (
    "sex,length,diameter,height,whole_weight,shucked_weight,viscera_weight,shell_weight,rings\n"
)


def run(*args: str):
    return runner.invoke(app, ["ingest", *args])


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def raw_batches(home: Path) -> list[Path]:
    return [p for p in files_under(home / "lake" / "raw") if p.name != "_lineage.json"]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def good_rows(n: int = 400, seed: int = 7) -> str:
    return to_csv_bytes(make_abalone(n, seed=seed)).decode()


def test_accepts_generated_batch_and_publishes_report(abalone_home, tmp_path):
    src = write(tmp_path, "batch.csv", good_rows().encode())
    result = run("--source", str(src), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "accepted"
    assert summary["rows_total"] == 400
    assert summary["rows_accepted"] + summary["rows_quarantined"] == 400
    assert summary["dataset_version"].startswith("ds-")
    assert summary["failed_expectations"] == []
    for key in ("ingest_id", "report_html", "summary_json"):
        assert summary[key]
    assert Path(summary["report_html"]).is_file()
    assert (
        json.loads(Path(summary["summary_json"]).read_text())["ingest_id"] == summary["ingest_id"]
    )
    curated = abalone_home / "lake" / "curated" / summary["dataset_version"]
    assert {p.name for p in curated.iterdir()} == {
        "train.csv",
        "validation.csv",
        "test.csv",
        "manifest.json",
    }
    (raw,) = raw_batches(abalone_home)
    assert raw.read_bytes() == src.read_bytes()


def test_header_row_is_accepted_and_same_rows_give_same_version(abalone_home, tmp_path):
    body = good_rows(300, seed=8)
    plain = json.loads(
        run("--source", str(write(tmp_path, "a.csv", body.encode())), "--json").stdout
    )
    headed = json.loads(
        run("--source", str(write(tmp_path, "b.csv", (HEADER + body).encode())), "--json").stdout
    )
    assert plain["status"] == headed["status"] == "accepted"
    assert plain["dataset_version"] == headed["dataset_version"]
    assert plain["ingest_id"] != headed["ingest_id"]
    assert len(raw_batches(abalone_home)) == 2  # both batches kept as received


def test_human_summary_names_report(abalone_home, tmp_path):
    result = run("--source", str(write(tmp_path, "c.csv", good_rows(200).encode())))
    assert result.exit_code == 0
    assert "accepted" in result.stderr and "index.html" in result.stderr


BAD_BATCHES = {
    "empty": (b"", r"empty|no rows"),
    "header_only": (HEADER.encode(), r"not enough rows to train \(0 < 20\)"),
    "eight_columns": (b"M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15\n" * 30, r"column"),
    "ten_columns": (b"M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15,3\n" * 30, r"column"),
    "non_numeric": (None, r"row 5.*length|length.*row 5"),
    "sex_x": (None, r"row 5.*sex|sex.*row 5"),
    "negative_weight": (None, r"whole_weight"),
    "rings_zero": (None, r"rings"),
    "rings_fraction": (None, r"row 5.*rings|rings.*row 5"),
    "all_null_column": (None, r"shell_weight"),
    "binary_garbage": (bytes(range(256)) * 40, r"not .*text|UTF-8|binary|decode"),
    # digits of other scripts and float()-only spellings: not numbers in the contract's grammar
    "arabic_indic_length": (None, r"row 5, column 'length': '\u0660.\u0664\u0665' .*ARABIC-INDIC"),
    "fullwidth_height": (None, r"row 5, column 'height': '\uff10.\uff11' .*FULLWIDTH"),
    "arabic_indic_rings": (None, r"row 5, column 'rings': '\u0661\u0665' is not an integer"),
    "fullwidth_rings": (None, r"row 5, column 'rings': '\uff19' is not an integer"),
    "underscore_weight": (None, r"row 5, column 'whole_weight': '0_5' .*underscores"),
    # too few rows to split and train on (jobs.core.data.MIN_DATASET_ROWS)
    "one_row": (None, r"not enough rows to train \(1 < 20\)"),
    "two_rows": (None, r"not enough rows to train \(2 < 20\)"),
    "three_rows": (None, r"not enough rows to train \(3 < 20\)"),
    "header_and_one_row": (None, r"not enough rows to train \(1 < 20\)"),
    "nineteen_rows": (None, r"not enough rows to train \(19 < 20\)"),
}
TINY = {"one_row": 1, "two_rows": 2, "three_rows": 3, "header_and_one_row": 1, "nineteen_rows": 19}
FOREIGN = {
    "arabic_indic_length": (1, "\u0660.\u0664\u0665"),
    "fullwidth_height": (3, "\uff10.\uff11"),
    "arabic_indic_rings": (8, "\u0661\u0665"),
    "fullwidth_rings": (8, "\uff19"),
    "underscore_weight": (4, "0_5"),
}


def _mutate(kind: str) -> bytes:
    rows = good_rows(20, seed=9).splitlines()
    if kind in TINY:
        head = HEADER if kind == "header_and_one_row" else ""
        return (head + "\n".join(rows[: TINY[kind]]) + "\n").encode()
    fields = [r.split(",") for r in rows]
    if kind in FOREIGN:
        column, value = FOREIGN[kind]
        fields[4][column] = value
    if kind == "non_numeric":
        fields[4][1] = "abc"
    elif kind == "sex_x":
        fields[4][0] = "X"
    elif kind == "negative_weight":
        fields[4][4] = "-0.5"
    elif kind == "rings_zero":
        fields[4][8] = "0"
    elif kind == "rings_fraction":
        fields[4][8] = "2.5"
    elif kind == "all_null_column":
        for f in fields:
            f[7] = ""
    return ("\n".join(",".join(f) for f in fields) + "\n").encode()


@pytest.mark.parametrize("kind", sorted(BAD_BATCHES))
def test_bad_batch_is_rejected_clearly_and_nothing_is_curated(kind, abalone_home, tmp_path):
    data, pattern = BAD_BATCHES[kind]
    data = _mutate(kind) if data is None else data
    src = write(tmp_path, f"{kind}.csv", data)
    result = run("--source", str(src), "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "rejected"
    assert summary["dataset_version"] is None
    assert summary["failed_expectations"]
    assert re.search(pattern, result.stderr, re.IGNORECASE | re.DOTALL), result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no crash
    assert not files_under(abalone_home / "lake" / "curated")
    (raw,) = raw_batches(abalone_home)
    assert raw.read_bytes() == data  # kept exactly as received
    batch = json.loads(
        (abalone_home / "lake" / "quarantine" / summary["ingest_id"] / "batch.json").read_text()
    )
    assert batch["reasons"]
    assert Path(summary["summary_json"]).is_file()


def test_the_smallest_batch_is_accepted_and_split_into_every_part(abalone_home, tmp_path):
    src = write(tmp_path, "twenty.csv", good_rows(20, seed=9).encode())
    result = run("--source", str(src), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "accepted"
    assert summary["splits"] == {"train": 12, "validation": 4, "test": 4}


def test_one_anomalous_row_in_a_large_batch_is_quarantined_not_rejected(abalone_home, tmp_path):
    rows = good_rows(400, seed=10).splitlines()
    fields = rows[10].split(",")
    fields[4] = "-0.5"  # negative whole weight on line 11
    rows[10] = ",".join(fields)
    src = write(tmp_path, "one_bad.csv", ("\n".join(rows) + "\n").encode())
    result = run("--source", str(src), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows_accepted"] == 399 and summary["rows_quarantined"] == 1
    quarantined = (
        abalone_home / "lake" / "quarantine" / summary["ingest_id"] / "rows.csv"
    ).read_text()
    assert "whole_weight" in quarantined and "-0.5" in quarantined
    assert any("row 11" in p for p in summary["problems"])


@pytest.mark.parametrize(
    ("make_source", "pattern"),
    [
        (lambda tmp, base: str(tmp / "missing.csv"), r"no such file: .*missing\.csv"),
        (lambda tmp, base: f"{base}/missing.csv", r"HTTP 404"),
        (lambda tmp, base: f"{base}/truncated.csv", r"truncated"),
    ],
    ids=["missing_path", "url_404", "truncated_download"],
)
def test_source_errors_exit_2_and_write_nothing(
    make_source,
    pattern,
    abalone_home,
    tmp_path,
    http_base,  # noqa: F811
):
    result = run("--source", make_source(tmp_path, http_base))
    assert result.exit_code == 2, result.output
    assert re.search(pattern, result.stderr), result.stderr
    assert "Traceback" not in result.output
    assert not files_under(abalone_home / "lake")


def test_200_mb_file_is_refused_quickly_without_reading_it(abalone_home, tmp_path):
    big = tmp_path / "big.csv"
    with big.open("wb") as fh:
        fh.truncate(200 * 1024 * 1024)
    result = run("--source", str(big))
    assert result.exit_code == 2
    assert "200.0 MB, above the 50.0 MB batch limit" in result.stderr
    assert not files_under(abalone_home / "lake")


def test_lake_on_s3_has_the_same_layout(abalone_home, tmp_path, aws_env, monkeypatch):
    boto3.client("s3").create_bucket(Bucket="abalone-lake")
    monkeypatch.setenv("ABALONE_LAKE", "s3://abalone-lake/dev")
    src = write(tmp_path, "batch.csv", good_rows(300, seed=11).encode())
    result = run("--source", str(src), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="abalone-lake")["Contents"]]
    iid, ver = summary["ingest_id"], summary["dataset_version"]
    assert f"dev/raw/{iid}/batch.csv" in keys
    assert f"dev/raw/{iid}/_lineage.json" in keys
    for name in ("train", "validation", "test"):
        assert f"dev/curated/{ver}/{name}.csv" in keys
    assert f"dev/reports/{iid}/summary.json" in keys
    assert f"dev/reports/{iid}/data_docs/index.html" in keys
    assert summary["report_html"].startswith("s3://abalone-lake/dev/reports/")
    assert not files_under(abalone_home / "lake")


@pytest.mark.realdata
def test_real_uci_file(real_data_path, abalone_home):
    first = run("--source", str(real_data_path), "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["status"] == "accepted"
    assert summary["rows_total"] == 4177
    assert summary["rows_accepted"] + summary["rows_quarantined"] == 4177
    quarantine = abalone_home / "lake" / "quarantine" / summary["ingest_id"] / "rows.csv"
    text = quarantine.read_text()
    # the two UCI rows with height 0 (file lines 1258 and 3997) are quarantined as warnings
    height_zero = [line for line in text.splitlines() if ",0.0," in line or "height" in line]
    assert len([p for p in summary["problems"] if "height" in p]) >= 1
    assert "1258" in text and "3997" in text, height_zero[:5]
    html = Path(summary["report_html"]).read_text()
    assert "height" in html
    second = json.loads(run("--source", str(real_data_path), "--json").stdout)
    assert second["dataset_version"] == summary["dataset_version"]
    assert second["ingest_id"] != summary["ingest_id"]
