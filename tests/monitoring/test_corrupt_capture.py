"""Corrupt capture lines (issue 12): a pathologically nested JSON line or a 4,400-digit number,
in either capture format, is one unreadable line skipped and counted - by the per-line parser,
by the streaming reader and by ``abalone monitor``, whose exit code keeps its meaning (0: no drift).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from jobs.adapters.capture_reader import CaptureScan
from jobs.adapters.capture_records import RecordError, parse_line
from jobs.cli import app
from jobs.core.profile import build_profile, dumps_profile
from jobs.core.synthetic import make_abalone
from tests.core.test_drift import quick_model
from tests.monitoring.test_monitor import sagemaker_lines, write_own_capture

WHEN = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # no --since below: any fixed time will do
DEEP = 100_000
HUGE = "1" * 4400  # beyond Python's 4,300-digit limit for int(): json.loads raises ValueError
ROW = ["M", 0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15]
STAMP = "2026-11-26T16:30:00Z"


def _sagemaker(data: str, content_type: str, output: dict | None = None) -> str:
    capture = {
        "endpointInput": {"observedContentType": content_type, "encoding": "CSV", "data": data}
    }
    if output is not None:
        capture["endpointOutput"] = output
    return json.dumps({"captureData": capture, "eventMetadata": {"inferenceTime": STAMP}})


# each is one line that cannot be read; all are skipped and counted
UNREADABLE = {
    "nested_array": "[" * DEEP + "]" * DEEP,
    "nested_objects": '{"x":' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
    "own_nested_inputs": '{"timestamp":"' + STAMP + '","inputs":' + "[" * DEEP + "]" * DEEP + "}",
    "own_huge_number": '{"timestamp":"'
    + STAMP
    + '","inputs":[{"sex":"M","length":'
    + HUGE
    + ',"diameter":0.3,"height":0.1,"whole_weight":0.5,"shucked_weight":0.2,'
    '"viscera_weight":0.1,"shell_weight":0.15}]}',
    "own_big_integer": json.dumps(  # read by json.loads, too large for a float
        {"timestamp": STAMP, "inputs": [{"sex": "M", "length": int("1" * 4000)}]}
    ),
    "own_foreign_digits": json.dumps(
        {"timestamp": STAMP, "inputs": [{"sex": "M", "length": "\u0660.\u0664\u0665"}]}
    ),
    "own_underscore": json.dumps({"timestamp": STAMP, "inputs": [{"sex": "M", "length": "0_5"}]}),
    "sagemaker_nested": '{"captureData":{"endpointInput":{"data":'
    + "[" * DEEP
    + "]" * DEEP
    + '}},"eventMetadata":{"inferenceTime":"'
    + STAMP
    + '"}}',
    "sagemaker_nested_payload": _sagemaker("[" * DEEP + "]" * DEEP, "application/json"),
    "sagemaker_huge_payload": _sagemaker(
        '{"instances": [["M", ' + HUGE + ", 0.3, 0.1, 0.5, 0.2, 0.1, 0.15]]}", "application/json"
    ),
    "sagemaker_huge_csv": _sagemaker("M," + HUGE + ",0.3,0.1,0.5,0.2,0.1,0.15", "text/csv"),
    "sagemaker_foreign_digits": _sagemaker("M,\uff10.\uff14,0.3,0.1,0.5,0.2,0.1,0.15", "text/csv"),
    "sagemaker_underscore": _sagemaker("M,0_4,0.3,0.1,0.5,0.2,0.1,0.15", "text/csv"),
}
# a corrupt *answer* only costs the record its predictions; its input rows are kept
BAD_ANSWERS = {
    "nested_answer": "[" * DEEP + "]" * DEEP,
    "huge_answer": '{"predictions":[{"rings":' + HUGE + "}]}",
}


@pytest.fixture(scope="module")
def model():
    return quick_model(make_abalone(1500, seed=0))


@pytest.fixture(scope="module")
def profile_path(model, tmp_path_factory):
    train = make_abalone(1500, seed=0).drop(columns="rings")
    path = tmp_path_factory.mktemp("reference") / "reference_profile.json"
    path.write_text(dumps_profile(build_profile(train, model.predict(train))))
    return path


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_an_unreadable_line_is_a_record_error(kind):
    with pytest.raises(RecordError):
        parse_line(UNREADABLE[kind])


@pytest.mark.parametrize("kind", sorted(BAD_ANSWERS))
def test_a_corrupt_answer_drops_only_the_predictions(kind):
    output = {"observedContentType": "application/json", "encoding": "JSON"}
    record = parse_line(
        _sagemaker(",".join(map(str, ROW)), "text/csv", output | {"data": BAD_ANSWERS[kind]})
    )
    assert record.rows and record.predictions is None


def _capture(tmp_path, model):
    """A clean capture in both formats (300 rows), with every corrupt line among it."""
    root = tmp_path / "capture"
    frame = make_abalone(300, seed=61)
    write_own_capture(root / "own", model, frame.iloc[:150], WHEN)
    (own_file,) = (root / "own").rglob("*.jsonl")
    clean = own_file.read_text().splitlines()
    own_file.write_text("\n".join(clean[:10] + list(UNREADABLE.values()) + clean[10:]) + "\n")
    sagemaker = sagemaker_lines(model, frame.iloc[150:], WHEN + timedelta(minutes=5)).splitlines()
    output = {"observedContentType": "application/json", "encoding": "JSON"}
    bad_answers = [
        _sagemaker(",".join(map(str, ROW)), "text/csv", output | {"data": text})
        for text in BAD_ANSWERS.values()
    ]
    path = root / "ep" / "AllTraffic" / "2026" / "11" / "26" / "16" / "a.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(
        "\n".join(sagemaker[:5] + bad_answers + list(UNREADABLE.values()) + sagemaker[5:]) + "\n"
    )
    return root, len(clean) + len(sagemaker) + len(bad_answers)


def test_the_streaming_reader_skips_and_counts_them(tmp_path, model):
    root, records = _capture(tmp_path, model)
    scan = CaptureScan(root, block_bytes=64 * 1024)  # corrupt lines across block boundaries
    rows = sum(len(features) for features, _ in scan)
    assert scan.batch.skipped == 2 * len(UNREADABLE)
    assert scan.batch.records == records
    assert rows == 300 + len(BAD_ANSWERS)


def test_monitor_on_an_otherwise_clean_capture_exits_0(tmp_path, model, profile_path, abalone_home):
    root, records = _capture(tmp_path, model)
    result = CliRunner().invoke(
        app, ["monitor", "--capture", str(root), "--reference", str(profile_path), "--json"]
    )
    assert result.exit_code == 0, result.output  # 1 would say "drift"
    summary = json.loads(result.stdout)
    assert summary["status"] == "ok"
    assert summary["capture"]["skipped_lines"] == 2 * len(UNREADABLE)
    assert summary["capture"]["records"] == records
    assert summary["capture"]["dropped_records"] == 0
