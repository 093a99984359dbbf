"""Run by ``test_capture_full_disk`` in a child process (``python -m tests.serving.full_disk_child
MODE MODEL_DIR CAPTURE_DIR EXPORT_DIR``): serve a model with data capture on loopback, make the
capture writes fail with a real OS error, then let them succeed again, and print what the requests
and ``/ping`` answered in each phase as one JSON object on stdout.

- ``efbig``: ``RLIMIT_FSIZE`` set a little above the capture file's size, so the next write is cut
  short by the kernel and fails with ``EFBIG``; raised again to recover.
- ``enospc``: run under ``unshare --user --map-root-user --mount``; the capture directory is a
  256 KiB tmpfs mounted here, filled by a filler file so the next write is cut short and fails with
  ``ENOSPC``; the filler is deleted to recover. The tmpfs vanishes with this process, so the
  capture is copied to ``EXPORT_DIR`` at the end.

Phases ``p1`` (before), ``p2`` (failing), ``p3`` (after); request ids ``pN-NNN`` have one width so
every capture line of a phase has the same length.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from jobs.serving.handlers import model_fn
from jobs.serving.server import serve_in_thread

ROW = "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"
PAGE = 4096
FAILING = 5
AFTER = 10


def _away_from_the_hour() -> None:
    """Capture files are per UTC hour: keep the whole run inside one hour."""
    now = datetime.now(UTC)
    left = 3600 - (now.minute * 60 + now.second)
    if left < 90:
        time.sleep(left + 1)


def _capture_file(capture_dir: Path) -> Path:
    (path,) = [p for p in capture_dir.rglob("*.jsonl")]
    return path


def _fill(directory: Path) -> Path:
    """Write a filler file until the filesystem is full (ENOSPC)."""
    filler = directory / "filler.bin"
    chunk = b"\0" * PAGE
    with filler.open("wb", buffering=0) as fh:
        while True:
            try:
                fh.write(chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                return filler


def main(mode: str, model_dir: Path, capture_dir: Path, export_dir: Path) -> dict:
    if mode == "enospc":
        capture_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(capture_dir)], check=True
        )
    _away_from_the_hour()
    model = model_fn(model_dir)
    out: dict = {"mode": mode, "sent": {}, "statuses": {}, "ping": {}}
    with (
        serve_in_thread(model, capture_dir) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):

        def send(phase: str, n: int) -> None:
            for _ in range(n):
                rid = f"{phase}-{len(out['sent'].setdefault(phase, [])):03d}"
                resp = client.post(
                    "/invocations",
                    content=ROW,
                    headers={"Content-Type": "text/csv", "X-Request-Id": rid},
                )
                out["sent"][phase].append(rid)
                out["statuses"].setdefault(phase, []).append(resp.status_code)

        def settle(key: str, value: int) -> dict:
            deadline = time.monotonic() + 30
            while True:
                ping = client.get("/ping").json()
                if (ping.get("capture") or {}).get(key) == value:
                    return ping
                if time.monotonic() > deadline:
                    raise SystemExit(f"capture {key} never reached {value}: {ping}")
                time.sleep(0.02)

        send("p1", 3)
        out["ping"]["p1"] = settle("written", 3)
        path = _capture_file(capture_dir)
        line = len(path.read_bytes().splitlines()[0]) + 1
        if mode == "efbig":
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            limit = path.stat().st_size + line // 3  # the next write gets a third of a line in
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        else:
            while not 0 < (-path.stat().st_size) % PAGE < line:  # the tail page: < one line free
                send("p1", 1)
                settle("written", len(out["sent"]["p1"]))
            filler = _fill(capture_dir)
        out["size_before_failure"] = path.stat().st_size
        send("p2", FAILING)
        out["ping"]["p2"] = settle("dropped", FAILING)
        out["size_after_failure"] = path.stat().st_size
        if mode == "efbig":
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        else:
            filler.unlink()
        send("p3", AFTER)
        out["ping"]["p3"] = settle("written", len(out["sent"]["p1"]) + AFTER)
    (export_dir / "capture").mkdir(parents=True, exist_ok=True)
    shutil.copytree(capture_dir, export_dir / "capture", dirs_exist_ok=True)
    return out


if __name__ == "__main__":
    mode, model_dir, capture_dir, export_dir = sys.argv[1:5]
    result = main(mode, Path(model_dir), Path(capture_dir), Path(export_dir))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)
