"""Measure `abalone run` on the real UCI file: median wall time, cold and warm ABALONE_HOME.

cold: a fresh ABALONE_HOME each run (new MLflow SQLite store, first version becomes champion).
warm: the same ABALONE_HOME as the previous run (existing store and champion; the gate re-scores it).
Each run is the CLI in a new process (`python -m jobs run --source FILE --json`); the per-step
breakdown comes from the run's own `timings_s` (median per step), next to the 30 s warm target.

    python benchmarks/pipeline.py [--data PATH] [--runs 3]
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

from _data import default_data

TARGET_WARM_S = 30.0


def run_once(data: Path, home: Path) -> tuple[float, dict]:
    env = {**os.environ, "ABALONE_HOME": str(home), "MLFLOW_DISABLE_TELEMETRY": "true"}
    for var in ("ABALONE_LAKE", "ABALONE_REPORTS", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jobs", "run", "--source", str(data), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"abalone run failed ({proc.returncode}): {proc.stderr[-800:]}")
    return wall, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"no data file at {args.data} (use --data or ABALONE_DATA)")
    print(f"data: {args.data}, runs: {args.runs} cold + {args.runs} warm, cores: {os.cpu_count()}")
    results: dict[str, list[tuple[float, dict]]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as warm_home:
        run_once(args.data, Path(warm_home))  # prime the warm home (first champion)
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as cold_home:
                results["cold"].append(run_once(args.data, Path(cold_home)))
            results["warm"].append(run_once(args.data, Path(warm_home)))
    steps = list(
        dict.fromkeys(k for runs in results.values() for _, r in runs for k in r["timings_s"])
    )
    print(f"\n{'measure':28} {'cold s':>8} {'warm s':>8}")
    med = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    print(
        f"{'abalone run (wall, median)':28} {med['cold']:8.2f} {med['warm']:8.2f}   target warm ≤ {TARGET_WARM_S:.0f} s"
    )
    for step in steps:
        vals = {
            k: statistics.median(r["timings_s"].get(step, 0.0) for _, r in v)
            for k, v in results.items()
        }
        print(f"  {step:26} {vals['cold']:8.2f} {vals['warm']:8.2f}")
    last = results["warm"][-1][1]
    print(
        f"\nlast warm run: v{last['model_version']} gate={last['gate']['decision'] if last['gate'] else None} "
        f"test_rmse={last['metrics'].get('test_rmse', float('nan')):.3f} champion=v{last['champion_version']}"
    )


if __name__ == "__main__":
    main()
