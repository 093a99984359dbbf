"""Data capture when the disk is full (issue 12): real OS errors in a child process serving on
loopback (``tests.serving.full_disk_child``): ``EFBIG`` from a file-size limit, and ``ENOSPC`` on a
real full tmpfs (in a user + mount namespace, where ``unshare`` allows it).

After the failure every request still answered 200, no partial line is left, no good record is
lost once space returns, and the lost records are counted in ``/ping`` and in the monitor report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from typer.testing import CliRunner

from jobs.adapters.capture import CaptureItem, CaptureWriter, capture_path
from jobs.adapters.capture_reader import read_capture
from jobs.cli import app
from jobs.core.contract import Rows
from jobs.core.profile import build_profile, dumps_profile
from jobs.core.schema import FEATURES
from jobs.core.synthetic import make_abalone
from tests.core.test_drift import quick_model
from tests.serving.full_disk_child import AFTER, FAILING
from tests.serving.test_inference import make_model_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    pipeline = clone(quick_model(make_abalone(500, seed=0)))  # fitted again by make_model_dir
    return make_model_dir(tmp_path_factory.mktemp("model"), pipeline=pipeline, model_version="7")


@pytest.fixture(scope="module")
def profile_path(model_dir, tmp_path_factory) -> Path:
    import joblib

    model = joblib.load(model_dir / "model.joblib")
    features = make_abalone(500, seed=0)[list(FEATURES)]
    path = tmp_path_factory.mktemp("reference") / "reference_profile.json"
    path.write_text(dumps_profile(build_profile(features, model.predict(features))))
    return path


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


def _run_child(mode: str, model_dir: Path, work: Path) -> dict:
    args = [sys.executable, "-m", "tests.serving.full_disk_child", mode, str(model_dir)]
    args += [str(work / "mnt" if mode == "enospc" else work / "capture"), str(work / "export")]
    if mode == "enospc":
        args = ["unshare", "--user", "--map-root-user", "--mount", *args]
    proc = subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["efbig", "enospc"])
def test_a_failed_capture_write_loses_only_its_own_records_and_says_so(
    mode, model_dir, profile_path, tmp_path, abalone_home
):
    if mode == "enospc" and not _unshare_works():
        pytest.skip("no user + mount namespaces here (unshare): the EFBIG case covers the writer")
    out = _run_child(mode, model_dir, tmp_path)
    sent = out["sent"]
    # capture never fails a request (as SageMaker): every one answered 200
    assert {code for codes in out["statuses"].values() for code in codes} == {200}
    # the first failing write got part of a line in before the error: it was cut back
    assert out["size_after_failure"] == out["size_before_failure"]
    assert out["ping"]["p2"]["capture"] == {"written": len(sent["p1"]), "dropped": FAILING}
    assert out["ping"]["p3"]["capture"] == {"written": len(sent["p1"]) + AFTER, "dropped": FAILING}

    capture = tmp_path / "export" / "capture"
    lines = [
        line for path in sorted(capture.rglob("*.jsonl")) for line in path.read_text().splitlines()
    ]
    records = [json.loads(line) for line in lines]  # every line whole: no fragment anywhere
    captured = [r["request_id"] for r in records if "request_id" in r]
    assert captured == sent["p1"] + sent["p3"]  # no good record lost, before or after
    markers = [r for r in records if "capture_dropped" in r]
    assert [m["capture_dropped"] for m in markers] == [FAILING]
    assert records.index(markers[0]) == len(sent["p1"])  # written first when space returned
    assert markers[0]["reason"].startswith("EFBIG" if mode == "efbig" else "ENOSPC")

    result = CliRunner().invoke(
        app,
        ["monitor", "--capture", str(capture), "--reference", str(profile_path), "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["capture"]["dropped_records"] == FAILING
    assert summary["capture"]["skipped_lines"] == 0
    assert summary["capture"]["records"] == len(sent["p1"]) + AFTER
    page = Path(summary["report_html"]).read_text()
    assert f"{FAILING} records lost by data capture" in page


def test_a_line_cut_by_a_crash_is_ended_before_the_next_record(tmp_path):
    """A server killed in the middle of a write leaves a fragment: the next server's first record
    starts on a line of its own, and the reader counts the fragment as one unreadable line."""
    rows = Rows(
        sex=np.array(["M"], dtype=object),
        numeric=np.array([[0.45, 0.36, 0.1, 0.5, 0.2, 0.1, 0.15]]),
    )
    now = time.time()

    def item(request_id: str) -> CaptureItem:
        return CaptureItem(
            now, request_id, "text/csv", rows, np.array([9.5]), "abalone-age", "7", None
        )

    with CaptureWriter(tmp_path) as writer:
        writer.submit(item("before-the-crash"))
    path = capture_path(tmp_path, datetime.fromtimestamp(now, UTC))
    whole = path.read_bytes()
    path.write_bytes(whole + whole[: len(whole) // 2])  # the crash: half a line, no newline
    with CaptureWriter(tmp_path) as writer:
        writer.submit(item("after-the-restart"))
    lines = path.read_bytes().splitlines()
    assert lines[1] == whole[: len(whole) // 2]  # the fragment is kept, on its own line
    assert json.loads(lines[2])["request_id"] == "after-the-restart"
    batch = read_capture(tmp_path)
    assert (batch.records, batch.skipped, len(batch.features)) == (2, 1, 2)
