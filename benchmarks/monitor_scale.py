"""The drift job at production scale: a day of SageMaker data capture, run as the Lambda runs it.

    python benchmarks/monitor_scale.py [--records 10800000] [--baseline-records 1000000]
        [--runs 3] [--big-runs 1] [--baseline-ref 6045488] [--cache /tmp/abalone-monitor-scale]
        [--clean] [--json]

Generates ``N`` SageMaker data-capture records (one row each) as 24 hourly files
``capture/abalone-prd/AllTraffic/YYYY/MM/DD/HH/capture.jsonl`` - 80 % ``text/csv`` bodies
(encoding CSV), 10 % ``application/json`` ``{"instances": [[…]]}`` (encoding JSON), 10 % CSV
captured as BASE64; every answer our JSON body ``{"predictions": [{"rings", "age_years"}],
"model_version"}`` - plus a few unreadable lines per file. They are written once into a cache
directory and reused (``--clean`` deletes it at the end; 10.8 M records are ~4.8 GB).

Each run is a fresh child process doing what ``jobs.aws.handlers.drift_handler`` does: ``monitor``
over the capture with ``since="24h"`` (``now`` = the end of the generated day), the data contract
on (GX), the HTML + JSON report written - against a local directory instead of S3, with the
reference profile as a file instead of the registry's champion. The child is pinned to one CPU
(``os.sched_setaffinity``; BLAS/Arrow thread pools to one thread), like a 1,769 MB Lambda's one
vCPU. Measured per run: wall time (parent clock), CPU time and peak RSS (``os.wait4``'s rusage of
that child alone: ``ru_maxrss`` is its high-water mark). The median of ``--runs`` runs is printed,
with the fastest and slowest run's wall time.

"today" is the implementation before streaming (the line-by-line reader that builds every row in
memory): the code of ``--baseline-ref`` is extracted with ``git archive`` into a temporary
directory and run the same way, at ``--baseline-records`` only (it cannot hold 10.8 M). The default
is pinned to :data:`PRE_STREAMING`, commit 6045488 - the first parent of the merge of the streaming
reader (3c1daa9), i.e. main just before it - since ``main`` itself now is the streaming code.
The machine is shared: the load average before and after is printed with the table.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
HOURS = 24
DAY_END = datetime(2026, 1, 2, tzinfo=UTC)  # the generated day; runs pass it as `now`
FORMAT_VERSION = "v1"
BAD_LINES_PER_FILE = 3
# "today": main just before the streaming reader was merged (first parent of merge 3c1daa9)
PRE_STREAMING = "604548896edd10159844868101cca9979f556c2d"
SEX = np.array(["M", "F", "I"])

_OUT = (
    '"endpointOutput":{"observedContentType":"application/json","mode":"OUTPUT",'
    '"data":"{\\"predictions\\":[{\\"rings\\":%.4f,\\"age_years\\":%.4f}],'
    '\\"model_version\\":\\"1\\"}","encoding":"JSON"}},'
    '"eventMetadata":{"eventId":"%08x-0000-4000-8000-%012x","inferenceTime":"%s"},'
    '"eventVersion":"0"}\n'
)
_CSV = (
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"%s\\n","encoding":"CSV"},' + _OUT
)
_B64 = (
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"%s","encoding":"BASE64"},' + _OUT
)
_JSON = (
    '{"captureData":{"endpointInput":{"observedContentType":"application/json","mode":"INPUT",'
    '"data":"{\\"instances\\": [[\\"%s\\", %s]]}","encoding":"JSON"},' + _OUT
)
_BAD = [
    "this line is not JSON\n",
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"X,0.45,0.36,0.1,0.5,0.22,0.1,0.15","encoding":"CSV"}},'
    '"eventMetadata":{"inferenceTime":"%s"},"eventVersion":"0"}\n',
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"M,0.45,0.36,0.1,0.5,0.22,0.1,99","encoding":"CSV"}},'
    '"eventMetadata":{"inferenceTime":"%s"},"eventVersion":"0"}\n',
]


def _features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sex, 7 measurements and predicted rings, abalone-like (jobs.core.synthetic's shapes)."""
    sys.path.insert(0, str(REPO))
    from jobs.core.synthetic import make_abalone

    frame = make_abalone(n, seed=seed)
    numeric = frame.iloc[:, 1:8].to_numpy(float)
    rings = 3.0 + 25.0 * numeric[:, 6] + 2.0 * numeric[:, 0]  # any smooth function will do
    return frame["sex"].astype(str).to_numpy(), numeric, rings


def generate(root: Path, records: int) -> Path:
    """The capture tree for ``records`` records (reused when complete)."""
    target = root / f"{records}-{FORMAT_VERSION}"
    if (target / "COMPLETE").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    start = DAY_END - timedelta(hours=HOURS)
    per_hour = [records // HOURS + (1 if h < records % HOURS else 0) for h in range(HOURS)]
    event = 0
    for hour in range(HOURS):
        t0 = start + timedelta(hours=hour)
        folder = target / "capture/abalone-prd/AllTraffic" / t0.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        n = per_hour[hour]
        rng = np.random.default_rng(hour)
        with (folder / "capture.jsonl").open("w") as fh:
            for lo in range(0, n, 100_000):
                m = min(100_000, n - lo)
                sex, numeric, rings = _features(m, seed=hour * 1000 + lo // 100_000)
                kind = rng.random(m)
                millis = ((lo + np.arange(m)) * 3_600_000 // n).astype("timedelta64[ms]")
                stamps = np.datetime_as_string(
                    np.datetime64(t0.replace(tzinfo=None), "ms") + millis, unit="ms"
                )
                lines = []
                for i in range(m):
                    values = "%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f" % tuple(numeric[i])  # noqa: UP031
                    tail = (rings[i], rings[i] + 1.5, event >> 48, event, stamps[i] + "Z")
                    if kind[i] < 0.8:
                        lines.append(_CSV % (f"{sex[i]},{values}", *tail))
                    elif kind[i] < 0.9:
                        body = base64.b64encode(f"{sex[i]},{values}".encode()).decode()
                        lines.append(_B64 % (body, *tail))
                    else:
                        lines.append(_JSON % (sex[i], values.replace(",", ", "), *tail))
                    event += 1
                fh.write("".join(lines))
            stamp = (t0 + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for bad in _BAD[:BAD_LINES_PER_FILE]:
                fh.write(bad.replace("%s", stamp))
    (target / "COMPLETE").write_text(f"{records}\n")
    return target


def build_reference(path: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from jobs.core.profile import build_profile, dumps_profile

    sex, numeric, rings = _features(4000, seed=99)
    import pandas as pd

    frame = pd.DataFrame(numeric, columns=[f"c{i}" for i in range(7)])
    from jobs.core.schema import NUMERIC_FEATURES

    frame.columns = list(NUMERIC_FEATURES)
    frame.insert(0, "sex", sex)
    path.write_text(dumps_profile(build_profile(frame, rings)))
    return path


# ---- one measured run (child process) ---------------------------------------------------------------


def child(code: str, capture: str, reference: str, cpu: int) -> None:
    """The drift job, as ``drift_handler`` calls it, on one CPU; prints the summary's counts."""
    os.sched_setaffinity(0, {cpu})
    sys.path.insert(0, code)
    # an editable install's import hook would fill in modules the other checkout lacks from this one
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__name__.lower()]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__name__", "")]
    import logging

    logging.disable(logging.WARNING)
    try:  # this branch's layout
        from jobs.adapters.settings import load_settings
        from jobs.monitoring.monitor import monitor
    except ImportError:  # the code before the layers (today's main)
        from jobs.monitor import monitor
        from jobs.settings import load_settings

    loaded = Path(sys.modules[monitor.__module__].__file__).resolve()
    if not loaded.is_relative_to(Path(code).resolve()):
        raise SystemExit(f"measured the wrong code: {loaded} is not under {code}")
    with tempfile.TemporaryDirectory(prefix="abalone-scale-home-") as home:
        settings = load_settings("dev", home=home)
        out = monitor(settings, capture=capture, since="24h", reference=reference, now=DAY_END)
        cap = out.summary["capture"]
        print(
            json.dumps(
                {
                    "status": out.summary["status"],
                    "records": cap["records"],
                    "rows": cap["rows"],
                    "skipped": cap["skipped_lines"],
                    "sampled_rows": cap.get("sampled_rows", cap["rows"]),
                    "data_quality_rows": (out.summary.get("data_quality") or {}).get("rows_total"),
                    "code": str(loaded.parent.parent),
                }
            )
        )


def measure(code: Path, capture: Path, reference: Path, cpu: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(MLFLOW_DISABLE_TELEMETRY="true", GX_ANALYTICS_ENABLED="false", DO_NOT_TRACK="true")
    env["PYTHONPATH"] = str(code)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(code), str(capture)]
    cmd += [str(reference), str(cpu)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"drift job failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result.update(
        wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024
    )
    return result


def baseline_code(ref: str, into: Path) -> Path:
    """Today's implementation: ``jobs/`` and ``validation/`` of ``ref``, extracted."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "jobs", "validation"],
        check=True,
        capture_output=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _median(runs: list[dict]) -> dict:
    keys = ("wall_s", "cpu_s", "peak_rss_mb")
    row = dict(runs[0])
    row.update({k: statistics.median(r[k] for r in runs) for k in keys})
    walls = [r["wall_s"] for r in runs]
    row.update(runs=len(runs), wall_min=min(walls), wall_max=max(walls))
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_800_000)
    parser.add_argument("--baseline-records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure at baseline size")
    parser.add_argument("--big-runs", type=int, default=1, help="runs at --records")
    parser.add_argument("--baseline-runs", type=int, default=1, help="runs of today's code")
    parser.add_argument(
        "--baseline-ref",
        default=PRE_STREAMING,
        help="git ref of today's (pre-streaming) implementation (default: main before 3c1daa9)",
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "abalone-monitor-scale"
    )
    parser.add_argument(
        "--clean", action="store_true", help="delete the generated capture at the end"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cpu = max(os.sched_getaffinity(0))
    args.cache.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="abalone-scale-") as tmp:
        reference = build_reference(Path(tmp) / "reference_profile.json")
        sizes = [args.baseline_records, args.records] if args.baseline_records else [args.records]
        for records in dict.fromkeys(sizes):
            t0 = time.perf_counter()
            data = generate(args.cache, records)
            made = time.perf_counter() - t0
            capture = data / "capture"
            size = sum(p.stat().st_size for p in capture.rglob("*.jsonl"))
            print(f"capture: {records:,} records, {size / 1e6:,.0f} MB ({made:.0f} s to make)")
            runs = args.runs if records == args.baseline_records else args.big_runs
            streaming = [measure(REPO, capture, reference, cpu) for _ in range(runs)]
            if streaming:  # --runs 0 / --big-runs 0: that size is only generated
                rows.append(
                    {
                        "impl": "streaming",
                        "records": records,
                        "mb": size / 1e6,
                        **_median(streaming),
                    }
                )
            if records == args.baseline_records and not args.no_baseline and args.baseline_runs:
                old = baseline_code(args.baseline_ref, Path(tmp) / "baseline")
                today = [measure(old, capture, reference, cpu) for _ in range(args.baseline_runs)]
                rows.append(
                    {
                        "impl": f"today ({args.baseline_ref[:7]})",
                        "records": records,
                        "mb": size / 1e6,
                        **_median(today),
                    }
                )
    load_after = os.getloadavg()
    if args.clean:
        shutil.rmtree(args.cache, ignore_errors=True)
    if args.json:
        print(json.dumps({"rows": rows, "load_before": load_before, "load_after": load_after}))
        return
    print(
        f"\nmachine: {os.cpu_count()} cores (shared), child pinned to CPU {cpu}; "
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    head = (
        f"{'implementation':<16}{'records':>12}{'on disk':>10}{'wall s':>9}{'min-max':>13}"
        f"{'CPU s':>8}{'peak RSS':>11}{'runs':>6}  read / skipped / sampled"
    )
    print(head)
    for r in rows:
        print(
            f"{r['impl']:<16}{r['records']:>12,}{r['mb']:>8,.0f}MB{r['wall_s']:>9.1f}"
            f"{r['wall_min']:>8.1f}-{r['wall_max']:<4.1f}{r['cpu_s']:>8.1f}"
            f"{r['peak_rss_mb']:>8,.0f} MB{r['runs']:>6}  {r['rows']:,} / {r['skipped']:,} / "
            f"{r['sampled_rows']:,}"
        )
    by = {(r["impl"], r["records"]): r for r in rows}
    new, old = (
        by.get(("streaming", args.baseline_records)),
        next((r for r in rows if r["impl"].startswith("today")), None),
    )
    if new and old:
        print(
            f"speed-up at {args.baseline_records:,} records: {old['wall_s'] / new['wall_s']:.1f}x wall"
        )


if __name__ == "__main__":
    main()
