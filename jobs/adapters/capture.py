"""Data capture for ``abalone serve``: one JSON line per successful request, rotated by hour.

Files: ``<capture_dir>/YYYY/MM/DD/HH.jsonl`` (UTC hour of the request). Each line::

    {"timestamp": "2026-11-26T17:40:01.123456Z", "request_id": "9f1c...", "model_name": "abalone-age",
     "model_version": "3", "run_id": "...", "content_type": "text/csv",
     "inputs": [{"sex": "M", "length": 0.455, ..., "shell_weight": 0.15}, ...],
     "outputs": [{"rings": 9.12, "age_years": 10.62}, ...]}

The request path only enqueues Python objects (:meth:`CaptureWriter.submit`, no I/O, no JSON);
a daemon thread serialises and appends them, batching whatever is queued into one write per file.
:meth:`CaptureWriter.close` drains the queue and flushes (the server calls it on shutdown). When the
queue is full (the disk cannot keep up) records are dropped and counted, never blocking a response.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.core.errors import StorageError
from jobs.core.schema import AGE_OFFSET_YEARS

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True)
class CaptureItem:
    """What the request path hands over; turned into a JSON line by the writer thread."""

    timestamp: float  # POSIX seconds, UTC
    request_id: str
    content_type: str
    rows: Any  # jobs.inference.Rows
    rings: Any  # numpy array of predictions
    model_name: str | None
    model_version: str | None
    run_id: str | None


def capture_path(capture_dir: Path, when: datetime) -> Path:
    """``capture_dir/YYYY/MM/DD/HH.jsonl`` for a UTC time."""
    return capture_dir / f"{when:%Y}" / f"{when:%m}" / f"{when:%d}" / f"{when:%H}.jsonl"


def to_record(item: CaptureItem) -> dict[str, Any]:
    when = datetime.fromtimestamp(item.timestamp, tz=UTC)
    return {
        "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "request_id": item.request_id,
        "model_name": item.model_name,
        "model_version": item.model_version,
        "run_id": item.run_id,
        "content_type": item.content_type,
        "inputs": item.rows.records(),
        "outputs": [{"rings": r, "age_years": r + AGE_OFFSET_YEARS} for r in item.rings.tolist()],
    }


class CaptureWriter:
    """Background JSONL appender. Use as a context manager or call :meth:`start`/:meth:`close`."""

    def __init__(self, capture_dir: Path, max_queue: int = 100_000) -> None:
        self.capture_dir = Path(capture_dir)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def start(self) -> CaptureWriter:
        with self._lock:
            if self._thread is None:
                try:
                    self.capture_dir.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise StorageError(
                        f"cannot create capture dir {self.capture_dir}: {err}"
                    ) from err
                self._thread = threading.Thread(
                    target=self._run, name="abalone-capture", daemon=True
                )
                self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None

    def submit(self, item: CaptureItem) -> None:
        """Queue one record; never blocks (drops and counts when the queue is full)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("capture queue full: %d record(s) dropped so far", self.dropped)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued so far, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("capture writer did not finish within %.0fs", timeout)

    def __enter__(self) -> CaptureWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            self._write([item for item in batch if item is not _STOP])
            if stop:
                return

    def _write(self, items: list[CaptureItem]) -> None:
        by_file: dict[Path, list[str]] = {}
        for item in items:
            try:
                when = datetime.fromtimestamp(item.timestamp, tz=UTC)
                line = json.dumps(to_record(item), separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as err:  # never expected: inputs were validated
                self.failed += 1
                log.error("capture record %s not serialisable: %s", item.request_id, err)
                continue
            by_file.setdefault(capture_path(self.capture_dir, when), []).append(line)
        for path, lines in by_file.items():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")
                self.written += len(lines)
            except OSError as err:
                self.failed += len(lines)
                log.error("capture write to %s failed: %s", path, err)


def iter_records(capture_dir: Path) -> Iterator[dict[str, Any]]:
    """Every capture record under ``capture_dir``, in file (hour) order."""
    for path in sorted(Path(capture_dir).glob("*/*/*/*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
