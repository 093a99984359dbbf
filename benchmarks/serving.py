"""Serve one model two ways and compare: ``abalone serve`` vs ``mlflow models serve``.

    python benchmarks/serving.py [--data PATH | --model-uri URI] [--requests 500] [--json]

The model is an MLflow model directory (cloudpickle format): trained here with ``jobs.model``
on the real UCI data (classic split: first 3,133 rows; ``--data``, default ``$ABALONE_DATA`` or
the copy shipped in the package), or downloaded from ``--model-uri`` (e.g.
``models:/abalone-age@champion``, needs ``MLFLOW_TRACKING_URI``). Both servers load that same
directory, run as subprocesses on loopback with one worker each, and get the same request bodies
(MLflow's ``dataframe_split`` JSON, which both accept). Our server keeps data capture on (into a
temporary ``ABALONE_HOME``), so its figures include the capture cost.

Measured per server: sequential single-row latency (p50/p99 after a warm-up; stdlib keep-alive
client), a 100-row batch's latency, throughput with 8 and 32 concurrent keep-alive connections
(a small asyncio HTTP/1.1 client; bounded by request count and time), and the server's CPU time
per request during those runs (process tree, via psutil: a figure that background load barely
moves). Both servers run at once and are measured in alternating rounds, medians reported, so
they share the same background load; the client runs in this process on the same cores, so
note the load average printed with the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from _data import default_data as default_data_path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jobs.core.schema import COLUMNS, FEATURES  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(
        f"server on port {port} not ready after {timeout:.0f}s:\n{log.read_text()[-3000:]}"
    )


@contextlib.contextmanager
def running(
    cmd: list[str], port: int, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen]:
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            wait_ready(port, proc, log)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def build_model_dir(args: argparse.Namespace, workdir: Path) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    target = workdir / "model"
    if args.model_uri:
        local = mlflow.artifacts.download_artifacts(args.model_uri, dst_path=str(workdir / "dl"))
        return Path(local)
    from jobs.core.model import build_model

    frame = pd.read_csv(args.data, header=None, names=list(COLUMNS))
    train = frame.iloc[:3133]
    x, y = train[list(FEATURES)], train["rings"]
    started = time.perf_counter()
    pipeline = build_model().fit(x, y)
    print(f"trained jobs.model on {len(train)} rows in {time.perf_counter() - started:.1f}s")
    mlflow.sklearn.save_model(
        pipeline,
        str(target),
        serialization_format="cloudpickle",
        signature=infer_signature(x.head(20), pipeline.predict(x.head(20))),
    )
    return target


def sample_rows(args: argparse.Namespace, n: int) -> pd.DataFrame:
    if args.data and Path(args.data).is_file():
        frame = pd.read_csv(args.data, header=None, names=list(COLUMNS)).iloc[3133:]
    else:
        from jobs.core.synthetic import make_abalone

        frame = make_abalone(max(n, 200), seed=5)
    return frame[list(FEATURES)].head(n).reset_index(drop=True)


def split_body(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode()


def post(conn: http.client.HTTPConnection, body: bytes) -> None:
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise SystemExit(f"HTTP {resp.status}: {data[:300]!r}")


def sequential(port: int, bodies: list[bytes], n: int, warmup: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(warmup):
        post(conn, bodies[i % len(bodies)])
    times = []
    for i in range(n):
        start = time.perf_counter()
        post(conn, bodies[i % len(bodies)])
        times.append((time.perf_counter() - start) * 1000)
    conn.close()
    return times


async def _worker(port: int, requests: list[bytes], state: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while state["sent"] < state["limit"] and time.perf_counter() < state["deadline"]:
            state["sent"] += 1
            writer.write(requests[state["sent"] % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise SystemExit("benchmark client needs Content-Length responses")
            await reader.readexactly(length)
            if status == 200:
                state["ok"] += 1
            else:
                state["errors"] += 1
    finally:
        writer.close()


def throughput(
    port: int, bodies: list[bytes], concurrency: int, limit: int, seconds: float
) -> dict:
    requests = [
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(b)}\r\n\r\n".encode()
        + b
        for b in bodies
    ]
    state = {"sent": 0, "ok": 0, "errors": 0, "limit": limit, "deadline": 0.0}

    async def main() -> float:
        state["deadline"] = time.perf_counter() + seconds
        start = time.perf_counter()
        await asyncio.gather(*(_worker(port, requests, state) for _ in range(concurrency)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    return {"rps": state["ok"] / elapsed, "ok": state["ok"], "errors": state["errors"]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a server process and its children (MLflow forks its workers)."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def measure(servers: dict[str, tuple[int, int]], singles, batch, args) -> dict[str, dict]:
    """Alternate the servers round by round (A, B, A, B, ...) so both see the same background
    load, and report the median over rounds."""
    rounds: dict[str, dict[str, list[float]]] = {name: {} for name in servers}

    def add(name: str, key: str, value: float) -> None:
        rounds[name].setdefault(key, []).append(value)

    for port, _pid in servers.values():  # warm-up
        sequential(port, singles, 0, warmup=100)
        sequential(port, [batch], 0, warmup=5)
    per_round = max(1, args.requests // args.rounds)
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds} ...", flush=True)
        for name, (port, pid) in servers.items():
            times = sequential(port, singles, per_round, warmup=5)
            add(name, "single_p50_ms", float(np.percentile(times, 50)))
            add(name, "single_p99_ms", float(np.percentile(times, 99)))
            batch_times = sequential(port, [batch], max(1, args.batch_requests // args.rounds), 1)
            add(name, "batch100_p50_ms", float(np.percentile(batch_times, 50)))
            for c in args.concurrency:
                cpu_before = cpu_seconds(pid)
                res = throughput(port, singles, c, args.max_requests, args.seconds)
                cpu = cpu_seconds(pid) - cpu_before
                add(name, f"rps_c{c}", res["rps"])
                add(name, f"cpu_ms_per_req_c{c}", 1000 * cpu / max(res["ok"], 1))
                if res["errors"]:
                    add(name, f"errors_c{c}", res["errors"])
    return {
        name: {key: float(np.median(values)) for key, values in figures.items()}
        for name, figures in rounds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = str(default_data_path())
    parser.add_argument("--data", default=default_data, help="UCI abalone CSV (no header)")
    parser.add_argument("--model-uri", help="MLflow model URI instead of training here")
    parser.add_argument("--requests", type=int, default=500, help="sequential single-row requests")
    parser.add_argument("--batch-requests", type=int, default=50, help="100-row requests")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--max-requests", type=int, default=2000, help="per throughput run")
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if not args.model_uri and not Path(args.data).is_file():
        raise SystemExit(f"--data {args.data}: no such file (or pass --model-uri)")

    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1")
    rows = sample_rows(args, 200)
    singles = [split_body(rows.iloc[[i]]) for i in range(len(rows))]
    batch = split_body(rows.head(100))
    with tempfile.TemporaryDirectory(prefix="abalone-bench-") as tmp:
        workdir = Path(tmp)
        model_dir = build_model_dir(args, workdir)
        ours_port, mlflow_port = free_port(), free_port()
        ours_env = dict(env, ABALONE_HOME=str(workdir / "home"))
        ours_cmd = [
            sys.executable, "-m", "jobs", "serve", "--model", str(model_dir),
            "--port", str(ours_port),
        ]  # fmt: skip
        mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        mlflow_cmd = [
            mlflow_bin, "models", "serve", "-m", str(model_dir), "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(mlflow_port),
        ]  # fmt: skip
        with (
            running(ours_cmd, ours_port, ours_env, workdir / "ours.log") as ours_proc,
            running(mlflow_cmd, mlflow_port, env, workdir / "mlflow.log") as mlflow_proc,
        ):
            servers = {
                "abalone serve": (ours_port, ours_proc.pid),
                "mlflow models serve": (mlflow_port, mlflow_proc.pid),
            }
            results = measure(servers, singles, batch, args)
        captured = sum(1 for _ in (workdir / "home" / "capture").rglob("*.jsonl"))

    ours, theirs = results["abalone serve"], results["mlflow models serve"]
    labels = {
        "single_p50_ms": "single-row p50 (ms)",
        "single_p99_ms": "single-row p99 (ms)",
        "batch100_p50_ms": "100-row batch p50 (ms)",
        **{f"rps_c{c}": f"throughput c={c} (req/s)" for c in args.concurrency},
        **{f"cpu_ms_per_req_c{c}": f"server CPU/req c={c} (ms)" for c in args.concurrency},
    }
    load = os.getloadavg()
    print(
        f"\ncores: {os.cpu_count()}, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; "
        f"{args.requests} sequential requests in {args.rounds} alternating rounds (medians); "
        f"capture files written by ours: {captured}"
    )
    print(f"{'figure':<28}{'abalone serve':>15}{'mlflow serve':>15}{'ours/mlflow':>13}")
    for key, label in labels.items():
        ratio = ours[key] / theirs[key] if theirs[key] else float("nan")
        print(f"{label:<28}{ours[key]:>15.2f}{theirs[key]:>15.2f}{ratio:>13.3f}")
    for name, figures in results.items():
        errors = {k: v for k, v in figures.items() if k.startswith("errors")}
        if errors:
            print(f"{name}: non-200 answers during throughput runs: {errors}")
    if args.json:
        print(json.dumps({"results": results, "loadavg": load}, indent=2))


if __name__ == "__main__":
    main()
