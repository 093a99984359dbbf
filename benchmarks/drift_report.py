"""The drift report's rendering cost: ``render_html`` on a 100,000-row live sample.

    python benchmarks/drift_report.py [--rows 100000] [--runs 5] [--baseline-ref REF] [--json]

The reference profile is built from the real UCI file (``--data``, default ``$ABALONE_DATA`` or
the copy shipped in the package; its rings stand in for the predictions); the live sample is
``--rows`` rows drawn from it with replacement, the numeric columns shrunk by 10 % (so some
columns drift and every status colour can appear). Each run is a fresh child process pinned to one
CPU (like the drift Lambda's one vCPU) that builds the inputs, then times ``render_html`` twice:
the first call (what the drift job pays once: it includes whatever the report imports lazily) and a
second, warm call. ``--baseline-ref`` also measures the report of another commit (its ``jobs/``
extracted with ``git archive``) in the same way, alternating with this tree, medians printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _data import REPO
from _data import default_data as default_data_path
from monitor_scale import baseline_code


def child(code: str, data: str, rows: int, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    sys.path.insert(0, code)
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__name__.lower()]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__name__", "")]
    import numpy as np
    import pandas as pd

    from jobs.adapters.capture_records import CaptureBatch
    from jobs.core.drift import assess
    from jobs.core.profile import build_profile
    from jobs.core.schema import COLUMNS, FEATURES, NUMERIC_FEATURES
    from jobs.monitoring.report import render_html

    loaded = Path(sys.modules[render_html.__module__].__file__).resolve()
    if not loaded.is_relative_to(Path(code).resolve()):
        raise SystemExit(f"measured the wrong code: {loaded} is not under {code}")
    frame = pd.read_csv(data, header=None, names=list(COLUMNS))
    profile = build_profile(frame[list(FEATURES)], frame["rings"].to_numpy(float))
    rng = np.random.default_rng(7)
    live = frame.iloc[rng.integers(0, len(frame), rows)].reset_index(drop=True)
    live[list(NUMERIC_FEATURES)] *= 0.9
    preds = live["rings"].to_numpy(float) + rng.normal(0, 1.5, rows)
    batch = CaptureBatch(source="benchmark", features=live[list(FEATURES)], predictions=preds)
    result = assess(profile, batch.features, preds)
    summary = {
        "run_id": "benchmark",
        "created_at": "-",
        "env": "dev",
        "capture": batch.describe(),
        "reference": {"source": data, "model_version": None, "n_rows": len(frame)},
        "data_quality": None,
    }
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        page = render_html(summary, result, batch, profile)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"first_s": times[0], "warm_s": times[1], "page_kb": len(page) / 1024}))


def measure(code: Path, data: str, rows: int, cpu: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(code)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(code), data, str(rows)]
    out = subprocess.run([*cmd, str(cpu)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"render failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(default_data_path()), help="UCI abalone CSV")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-ref", help="also measure the report of this git ref")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cpu = min(os.sched_getaffinity(0))
    codes = {"this tree": REPO}
    with tempfile.TemporaryDirectory(prefix="abalone-report-bench-") as tmp:
        if args.baseline_ref:
            codes[args.baseline_ref] = baseline_code(args.baseline_ref, Path(tmp) / "baseline")
        runs: dict[str, list[dict]] = {name: [] for name in codes}
        for _ in range(args.runs):  # alternate, so both see the same background load
            for name, code in codes.items():
                runs[name].append(measure(code, args.data, args.rows, cpu))
    table = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("first_s", "warm_s", "page_kb")}
        for name, rs in runs.items()
    }
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(f"render_html, {args.rows:,} live rows, median of {args.runs} runs, one CPU")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"{'code':<24}{'first call':>12}{'warm call':>12}{'page':>10}")
    for name, row in table.items():
        print(
            f"{name:<24}{row['first_s'] * 1000:>10.0f}ms{row['warm_s'] * 1000:>10.0f}ms"
            f"{row['page_kb']:>8.0f}KB"
        )


if __name__ == "__main__":
    main()
