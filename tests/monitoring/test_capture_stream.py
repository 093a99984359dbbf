"""The streaming capture reader and the bounded statistics of a monitoring run (issue 14).

The column-wise reader must keep, skip and report exactly what the line-by-line reader did: it is
compared here, line for line, with a reference loop over :func:`parse_line` (the per-line parser,
unchanged) on a capture mixing every request/answer shape SageMaker and ``abalone serve`` write,
good and bad, across block boundaries.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs.adapters import capture_reader
from jobs.adapters.capture_arrow import _typed
from jobs.adapters.capture_blocks import _plain_lines
from jobs.adapters.capture_kernels import _blocks
from jobs.adapters.capture_reader import CaptureScan, read_capture
from jobs.adapters.capture_records import RecordError, _path_hour, parse_line
from jobs.adapters.settings import load_settings
from jobs.core.drift import assess
from jobs.core.drift_stream import LiveStatistics, Reservoir
from jobs.core.profile import build_profile
from jobs.core.schema import FEATURES, NUMERIC_FEATURES
from jobs.core.synthetic import make_abalone
from jobs.monitoring.monitor import monitor

NOW = datetime(2026, 11, 26, 17, 30, tzinfo=UTC)
ROW = ["M", 0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15]


def _payload(data: str, content_type: str | None, encoding: str | None, mode: str) -> dict:
    block = {"mode": mode, "data": data}
    if content_type is not None:
        block["observedContentType"] = content_type
    if encoding is not None:
        block["encoding"] = encoding
    return block


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _sagemaker(inp: dict, out: dict | None, when: str | None, **extra) -> str:
    capture = {"endpointInput": inp}
    if out is not None:
        capture["endpointOutput"] = out
    meta = {"eventId": "e"} if when is None else {"eventId": "e", "inferenceTime": when}
    return json.dumps({"captureData": capture, "eventMetadata": meta, "eventVersion": "0", **extra})


def _csv(row) -> str:
    return ",".join(str(v) for v in row)


def _line_kinds(rng: random.Random, when: datetime) -> list[str]:
    """One line of each kind (values varied by ``rng``), good and bad, both capture formats."""
    row = [rng.choice("MFI")] + [round(rng.uniform(0.01, 1.2), 4) for _ in range(7)]
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    answer = json.dumps({"predictions": [{"rings": 9.5, "age_years": 11.0}], "model_version": "3"})
    out_json = _payload(answer, "application/json", "JSON", "OUTPUT")
    out_csv = _payload("9.5,11.0\n", "text/csv; charset=utf-8", "CSV", "OUTPUT")
    csv_in = _payload(_csv(row) + "\n", "text/csv", "CSV", "INPUT")
    json_in = _payload(json.dumps({"instances": [row]}), "application/json", "JSON", "INPUT")
    lines = [
        _sagemaker(csv_in, out_json, stamp),
        _sagemaker(csv_in, out_csv, stamp),
        _sagemaker(csv_in, None, stamp),
        _sagemaker(csv_in, out_json, None),
        _sagemaker(_payload(_b64(_csv(row)), "text/csv", "BASE64", "INPUT"), out_json, stamp),
        _sagemaker(json_in, out_json, stamp),
        _sagemaker(
            _payload(json.dumps({"instances": [[*row, 10]]}), "application/json", "JSON", "INPUT"),
            out_json,
            stamp,
        ),
        _sagemaker(
            _payload(
                json.dumps({"instances": [dict(zip(FEATURES, row, strict=True))]}),
                "application/json",
                "JSON",
                "INPUT",
            ),
            out_json,
            stamp,
        ),
        _sagemaker(_payload(f" {_csv(row)} , 7 ", None, "CSV", "INPUT"), out_csv, stamp),
        _sagemaker(
            _payload(f"{_csv(row)}\n{_csv(row)}\n", "text/csv", "CSV", "INPUT"),
            _payload("9.5\n8.5\n", "text/csv", "CSV", "OUTPUT"),
            stamp,
        ),
        _sagemaker(
            _payload(f"{_csv(row)}\n{_csv(row)}\n", "text/csv", "CSV", "INPUT"), out_json, stamp
        ),
        _sagemaker(
            _payload(",".join(FEATURES) + "\n" + _csv(row), "text/csv", "CSV", "INPUT"),
            out_json,
            stamp,
        ),
        _sagemaker(_payload(_csv(["X", *row[1:]]), "text/csv", "CSV", "INPUT"), out_json, stamp),
        _sagemaker(_payload(_csv([*row[:7], 11.5]), "text/csv", "CSV", "INPUT"), out_json, stamp),
        _sagemaker(_payload(_csv([*row[:7], "nan"]), "text/csv", "CSV", "INPUT"), out_json, stamp),
        _sagemaker(_payload(_csv([*row, 2000]), "text/csv", "CSV", "INPUT"), out_json, stamp),
        _sagemaker(_payload(_csv(row[:6]), "text/csv", "CSV", "INPUT"), out_json, stamp),
        _sagemaker(
            _payload('"M",0.4,0.3,0.1,0.5,0.2,0.1,0.1', "text/csv", "CSV", "INPUT"), out_json, stamp
        ),
        _sagemaker(_payload("\ufeff" + _csv(row), "text/csv", "CSV", "INPUT"), out_json, stamp),
        _sagemaker(_payload(_csv(row), "text/csv", None, "INPUT"), out_json, stamp),
        _sagemaker(
            {
                "mode": "INPUT",
                "data": _csv(row),
                "encoding": None,
                "observedContentType": "text/csv",
            },
            out_json,
            stamp,
        ),
        _sagemaker(_payload(_csv(row), "text/csv", "GZIP", "INPUT"), out_json, stamp),
        _sagemaker(_payload(_csv(row), "text/plain", "CSV", "INPUT"), out_json, stamp),
        _sagemaker(_payload("!!notbase64", "text/csv", "BASE64", "INPUT"), out_json, stamp),
        _sagemaker(_payload(_csv(row), "", "", "INPUT"), out_json, stamp),
        _sagemaker(csv_in, _payload("not json", "application/json", "JSON", "OUTPUT"), stamp),
        _sagemaker(
            csv_in,
            _payload('{"predictions":[{"rings":true}]}', "application/json", "JSON", "OUTPUT"),
            stamp,
        ),
        _sagemaker(
            csv_in,
            _payload('{"predictions":[{"age_years":3}]}', "application/json", "JSON", "OUTPUT"),
            stamp,
        ),
        _sagemaker(
            csv_in,
            _payload(
                '{"predictions":[9.25],"model_version":7}', "application/json", "JSON", "OUTPUT"
            ),
            stamp,
        ),
        _sagemaker(
            csv_in, _payload('[{"rings":[8.0]}]', "application/json", "JSON", "OUTPUT"), stamp
        ),
        _sagemaker(csv_in, _payload(_b64(answer), "application/json", "BASE64", "OUTPUT"), stamp),
        _sagemaker(csv_in, _payload("9.5\n8.5\n", "text/csv", "CSV", "OUTPUT"), stamp),
        _sagemaker(csv_in, _payload("abc", "text/csv", "CSV", "OUTPUT"), stamp),
        _sagemaker(csv_in, out_json, "2026-11-26T17:05:01"),
        _sagemaker(csv_in, out_json, "2026-11-26T18:05:01+01:00"),
        _sagemaker(csv_in, out_json, "yesterday"),
        _sagemaker(csv_in, out_json, "2026-13-26T17:05:01Z"),
        json.dumps({"captureData": {"endpointInput": {"data": 5}}}),
        json.dumps({"captureData": None}),
        json.dumps({"captureData": {"endpointInput": csv_in}, "eventMetadata": "x"}),
        json.dumps({"something": "else"}),
        json.dumps([1, 2]),
        "this line is not JSON",
        '{"captureData": {"endpointInput": ',
        json.dumps(
            {
                "timestamp": stamp,
                "model_version": "2",
                "inputs": [dict(zip(FEATURES, row, strict=True))],
                "outputs": [{"rings": 9.0, "age_years": 10.5}],
            }
        ),
        json.dumps({"timestamp": stamp, "inputs": [row, row], "outputs": [{"rings": 1.0}]}),
        json.dumps({"timestamp": stamp, "inputs": [{"sex": {"x": 1}}]}),
        json.dumps({"inputs": [{"sex": "M", "length": "abc"}]}),
        "   ",
    ]
    return lines


def _capture(path: Path, n_lines: int, seed: int, when: datetime, crlf: bool = False) -> None:
    rng = random.Random(seed)
    common = None
    out = []
    for i in range(n_lines):
        kinds = _line_kinds(rng, when + timedelta(seconds=i))
        common = common or kinds[0]
        # mostly the common shape (as in production), every other kind sprinkled in
        out.append(kinds[0] if rng.random() < 0.6 else rng.choice(kinds))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n" if crlf else "\n").join(out).encode() + b"\n")


def _line_by_line(source: Path, since: datetime | None = None) -> dict:
    """The reference: every line through parse_line, as the reader before streaming did."""
    rows, preds, skipped, examples = [], [], 0, []
    formats, versions, stamps, records = Counter(), Counter(), [], 0
    for path in sorted(source.rglob("*.jsonl")):
        key = path.relative_to(source).as_posix()
        hour = _path_hour(key)
        if since is not None and hour is not None and hour + timedelta(hours=1) <= since:
            continue  # an hourly file that ends before the window: not opened
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = parse_line(line)
            except RecordError as err:
                skipped += 1
                if len(examples) < 5:
                    examples.append(f"{key}:{number}: {err}")
                continue
            if since is not None and (record.timestamp is None or record.timestamp < since):
                continue
            records += 1
            formats[record.source_format] += 1
            if record.model_version is not None:
                versions[record.model_version] += len(record.rows)
            if record.timestamp is not None:
                stamps.append(record.timestamp)
            rows.extend(record.rows)
            preds.extend(record.predictions or [])
    return {
        "features": _typed(rows),
        "predictions": np.asarray(preds, float),
        "records": records,
        "skipped": skipped,
        "examples": examples,
        "formats": dict(formats),
        "versions": dict(versions),
        "first": min(stamps, default=None),
        "last": max(stamps, default=None),
    }


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("since", [None, NOW - timedelta(minutes=10)])
def test_streaming_reader_keeps_and_skips_exactly_what_the_line_reader_did(
    tmp_path, monkeypatch, since, crlf
):
    start = NOW - timedelta(minutes=20)
    root = tmp_path / "ep" / "AllTraffic" / "2026" / "11" / "26"
    _capture(root / "16" / "a.jsonl", 1500, seed=1, when=start - timedelta(hours=1), crlf=crlf)
    _capture(root / "17" / "a.jsonl", 2500, seed=2, when=start, crlf=crlf)
    expected = _line_by_line(tmp_path, since)
    # small blocks: lines of both files cross block boundaries, bad blocks are halved
    one_by_one = []
    monkeypatch.setattr(  # count the lines the column-wise path leaves to parse_line
        capture_reader, "parse_line", lambda line: one_by_one.append(line) or parse_line(line)
    )
    scan = CaptureScan(tmp_path, since=since, block_bytes=64 * 1024)
    chunks = list(scan)
    assert len(one_by_one) < 0.5 * 4000  # most lines went column-wise
    assert len(chunks) > 4
    features = pd.concat([f for f, _ in chunks], ignore_index=True)
    predictions = np.concatenate([p for _, p in chunks])
    batch = scan.batch
    assert expected["records"] > 1000 and expected["skipped"] > 300  # the test means something
    pd.testing.assert_frame_equal(features, expected["features"])
    np.testing.assert_array_equal(predictions, expected["predictions"])
    assert batch.records == expected["records"]
    assert batch.skipped == expected["skipped"]
    assert batch.skipped_examples == expected["examples"]
    assert batch.formats == expected["formats"]
    assert batch.model_versions == expected["versions"]
    assert (batch.first, batch.last) == (expected["first"], expected["last"])
    whole = read_capture(tmp_path, since=since)  # default blocks: the same result
    pd.testing.assert_frame_equal(whole.features, expected["features"])
    assert whole.skipped == expected["skipped"]


def test_a_capture_of_clean_blocks_is_read_as_the_line_reader_read_it(tmp_path):
    """Blocks with no blank line and no CR are parsed as they are, never split into lines unless
    one is needed: kept and skipped lines are still exactly the line-by-line reader's."""
    root = tmp_path / "ep" / "AllTraffic" / "2026" / "11" / "26" / "17"
    _capture(root / "a.jsonl", 3000, seed=5, when=NOW - timedelta(minutes=20))
    path = root / "a.jsonl"
    path.write_bytes(
        b"".join(line + b"\n" for line in path.read_bytes().split(b"\n") if line.strip())
    )
    expected = _line_by_line(tmp_path)
    scan = CaptureScan(tmp_path, block_bytes=64 * 1024)
    chunks = list(scan)
    assert len(chunks) > 4 and expected["skipped"] > 300
    features = pd.concat([f for f, _ in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(features, expected["features"])
    np.testing.assert_array_equal(np.concatenate([p for _, p in chunks]), expected["predictions"])
    assert (scan.batch.records, scan.batch.skipped) == (expected["records"], expected["skipped"])
    assert scan.batch.skipped_examples == expected["examples"]


def test_file_blocks_are_the_stream_blocks_and_clean_blocks_split_as_splitlines():
    rng = random.Random(4)
    for _ in range(2000):
        data = b"".join(
            rng.choice([b"", b" ", b"\t", b"\r"]) * (rng.random() < 0.1)
            + b"x" * rng.choice([0, 1, 5, 30, 90])
            + (b"\n" if rng.random() < 0.9 else b"\r\n" if rng.random() < 0.5 else b"")
            for _ in range(rng.randint(0, 30))
        )
        size = rng.choice([1, 4, 16, 64])
        unbuffered = type("Body", (), {"read": io.BytesIO(data).read})()  # S3 bodies: no readinto
        blocks = list(_blocks(io.BytesIO(data), size))
        assert blocks == list(_blocks(unbuffered, size)) and b"".join(blocks) == data
        for block in blocks:
            lines = _plain_lines(block)
            if lines is not None:
                assert list(lines) == block.splitlines() and len(lines) == len(block.splitlines())
                assert all(line.strip() and not line[:1].isspace() for line in lines)
            else:
                split = block.splitlines()
                assert (
                    b"\r" in block
                    or not block.endswith(b"\n")
                    or any(not line.strip() or line[:1].isspace() for line in split)
                )


def test_reservoir_is_every_row_in_order_until_full_then_uniform():
    small = Reservoir(100, seed=3)
    small.add({"i": np.arange(60)})
    small.add({"i": np.arange(60, 90)})
    assert small.column("i").tolist() == list(range(90))

    size, total = 5_000, 200_000
    res = Reservoir(size, seed=7)
    for lo in range(0, total, 7_919):  # uneven chunks
        res.add({"i": np.arange(lo, min(lo + 7_919, total))})
    kept = res.column("i")
    assert res.seen == total and len(kept) == size and len(set(kept.tolist())) == size
    deciles = np.bincount(kept * 10 // total, minlength=10)
    assert deciles.min() > 0.85 * size / 10 and deciles.max() < 1.15 * size / 10
    again = Reservoir(size, seed=7)
    for lo in range(0, total, 7_919):
        again.add({"i": np.arange(lo, min(lo + 7_919, total))})
    assert again.column("i").tolist() == kept.tolist()  # seeded: the same report every run


def test_live_statistics_count_every_row_and_sample_a_bounded_few():
    train = make_abalone(1500, seed=0)
    profile = build_profile(train.drop(columns="rings"), train["rings"].to_numpy(float))
    live = make_abalone(6000, seed=8)
    features, preds = live.drop(columns="rings"), live["rings"].to_numpy(float)
    stats = LiveStatistics(profile, sample_rows=1000, seed=0)
    for lo in range(0, 6000, 700):
        stats.add(features.iloc[lo : lo + 700], preds[lo : lo + 700])
    assert stats.sampled and stats.rows == 6000 and stats.predictions == 6000
    sample = stats.sample_features()
    assert list(sample.columns) == list(FEATURES) and len(sample) == 1000
    assert len(stats.sample_predictions()) == 1000
    everything = assess(profile, features, preds)
    streamed = assess(profile, sample, stats.sample_predictions(), live=stats)
    assert streamed.n_rows == 6000
    for name in ("sex", *NUMERIC_FEATURES):
        full, part = everything.features[name], streamed.features[name]
        assert part.n == full.n and part.psi == pytest.approx(full.psi, rel=1e-12)
        assert part.actual == pytest.approx(full.actual, rel=1e-12)
        if name != "sex":
            assert part.live_mean == pytest.approx(full.live_mean, rel=1e-9)
    assert streamed.prediction.psi == pytest.approx(everything.prediction.psi, rel=1e-12)
    assert streamed.features["sex"].pvalue == pytest.approx(everything.features["sex"].pvalue)


def test_monitor_samples_a_capture_larger_than_its_sample_and_says_so(tmp_path):
    train = make_abalone(1500, seed=0)
    profile = build_profile(train.drop(columns="rings"), train["rings"].to_numpy(float))
    ref = tmp_path / "reference_profile.json"
    ref.write_text(json.dumps(profile))
    hour = tmp_path / "capture" / "ep" / "AllTraffic" / "2026" / "11" / "26" / "17" / "c.jsonl"
    live = make_abalone(900, seed=5)
    lines = []
    for i, row in enumerate(live[list(FEATURES)].itertuples(index=False)):
        stamp = (NOW - timedelta(minutes=20, seconds=-i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = _payload(_csv(list(row)) + "\n", "text/csv", "CSV", "INPUT")
        out = _payload(f"{live['rings'].iloc[i]}\n", "text/csv", "CSV", "OUTPUT")
        lines.append(_sagemaker(body, out, stamp))
    lines.append("not json")
    hour.parent.mkdir(parents=True)
    hour.write_text("\n".join(lines) + "\n")
    settings = load_settings("dev", home=str(tmp_path / "home"))
    full = monitor(settings, capture=str(tmp_path / "capture"), reference=str(ref), now=NOW)
    part = monitor(
        settings,
        capture=str(tmp_path / "capture"),
        reference=str(ref),
        now=NOW + timedelta(seconds=1),
        sample_rows=200,
    )
    cap = part.summary["capture"]
    assert (cap["records"], cap["rows"], cap["skipped_lines"]) == (900, 900, 1)
    assert cap["sampled"] and cap["sampled_rows"] == 200 and cap["sample_size"] == 200
    assert part.summary["data_quality"]["rows_total"] == 200  # the contract ran on the sample
    assert not full.summary["capture"]["sampled"] and full.summary["capture"]["sampled_rows"] == 900
    for name, f in full.drift.features.items():  # PSI counts every row either way
        assert part.drift.features[name].psi == pytest.approx(f.psi, rel=1e-12)
        assert part.drift.features[name].n == f.n
    page = (tmp_path / "home" / "monitoring" / part.summary["run_id"] / "report.html").read_text()
    assert "uniform random sample of 200 of 900 rows" in page
    assert "1 unreadable lines skipped" in page
    full_page = Path(full.report_html.removeprefix("file://")).read_text()
    assert "no: every row is used" in full_page
