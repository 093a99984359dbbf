"""Measure ingest speed on the real UCI file.

Prints the median wall time of the whole CLI (`abalone ingest --source FILE --json`, a fresh
ABALONE_HOME each run, so every run lands, validates, curates and publishes a report) and of the
in-process validation step alone (`validation.validate_batch`, after one warm-up; with and without
building the Data Docs site), next to the targets from issue 2.

    python benchmarks/ingest.py [--data PATH] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _data import default_data

TARGET_VALIDATE_S = 0.5
TARGET_CLI_S = 6.0


def time_cli(data: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "ABALONE_HOME": home}
            env.pop("ABALONE_LAKE", None)
            env.pop("ABALONE_REPORTS", None)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "jobs", "ingest", "--source", str(data), "--json"],
                env=env,
                capture_output=True,
                check=False,
            )
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise SystemExit(
                    f"ingest failed ({proc.returncode}): {proc.stderr.decode()[-500:]}"
                )
    return times


def time_validation(data: Path, runs: int, docs: bool = True) -> list[float]:
    from validation import validate_batch

    payload = data.read_bytes()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs + 1):
            start = time.perf_counter()
            validate_batch(
                payload,
                ingest_id=f"bench-{i}",
                source={"source": str(data)},
                max_warning_fraction=0.02,
                docs_dir=Path(tmp) / f"docs-{i}" if docs else None,
            )
            if i:  # the first run is the warm-up (imports, GX context)
                times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"no data file at {args.data} (use --data or ABALONE_DATA)")
    print(
        f"data: {args.data} ({args.data.stat().st_size:,} bytes), runs: {args.runs}, cores: {os.cpu_count()}"
    )
    val = time_validation(args.data, args.runs)
    val_only = time_validation(args.data, args.runs, docs=False)
    cli = time_cli(args.data, args.runs)
    print(f"{'measure':44} {'median s':>9} {'min s':>7} {'max s':>7} {'target s':>9}")
    for name, times, target in (
        ("validation in process (parse + GX suites)", val_only, TARGET_VALIDATE_S),
        ("validate_batch in process (+ Data Docs site)", val, TARGET_VALIDATE_S),
        ("abalone ingest CLI (cold process)", cli, TARGET_CLI_S),
    ):
        med = statistics.median(times)
        flag = "ok" if med <= target else "OVER"
        print(f"{name:44} {med:9.3f} {min(times):7.3f} {max(times):7.3f} {target:9.1f}  {flag}")


if __name__ == "__main__":
    main()
