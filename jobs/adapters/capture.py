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

A failed write (a full disk, ``ENOSPC``; a file-size limit, ``EFBIG``) never leaves part of a line:
the file is truncated back to where the write began, and a file found not ending in a newline (a
crash in the middle of a write) gets one before the next record, so that record stays whole. The
records of a failed write are dropped and counted (:attr:`CaptureWriter.lost`, shown by ``/ping``);
the next successful write first appends one marker line ``{"timestamp": …, "capture_dropped": N,
"first_dropped": …, "reason": …}`` that the monitoring reader adds up (``dropped_records``). One
server process per capture directory (the truncation assumes no other writer of the same file).
"""

from __future__ import annotations

import errno
import json
import logging
import os
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
    return {
        "timestamp": _iso(item.timestamp),
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
        self._unreported = 0  # lost records not yet written as a marker line
        self._first_lost: float | None = None
        self._last_lost: float | None = None
        self._reason = ""
        self._lost_lock = threading.Lock()
        self._whole: set[Path] = set()  # files this writer left ending in a newline

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

    @property
    def lost(self) -> int:
        """Records not captured: dropped from a full queue or by a failed write."""
        return self.dropped + self.failed

    def status(self) -> dict[str, int]:
        """Counts for ``/ping``: records written and lost so far by this server."""
        return {"written": self.written, "dropped": self.lost}

    def submit(self, item: CaptureItem) -> None:
        """Queue one record; never blocks (drops and counts when the queue is full)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            self._note_lost(1, item.timestamp, "capture queue full")
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
                if self._unreported:  # the last writes failed: one more try to record the loss
                    self._write_marker(capture_path(self.capture_dir, datetime.now(UTC)))
                return

    def _note_lost(self, n: int, when: float, reason: str) -> None:
        with self._lost_lock:  # the request path (queue full) and the writer thread
            self._unreported += n
            first, last = self._first_lost, self._last_lost
            self._first_lost = when if first is None else min(first, when)
            self._last_lost = when if last is None else max(last, when)
            self._reason = reason

    def _reported(self, n: int) -> None:
        with self._lost_lock:
            self._unreported -= n
            if not self._unreported:
                self._first_lost = self._last_lost = None
        log.warning("capture resumed after %d lost record(s)", n)

    def _write_marker(self, path: Path) -> None:
        marker = self._marker()
        if marker is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._append(path, (marker + "\n").encode())
        except OSError as err:
            log.error("capture loss of %d record(s) not recorded: %s", self._unreported, err)
            return
        self._reported(json.loads(marker)["capture_dropped"])

    def _marker(self) -> str | None:
        """The line recording the records lost since the last one, or None."""
        if not self._unreported:
            return None
        return json.dumps(
            {
                "timestamp": _iso(self._last_lost or 0.0),
                "capture_dropped": self._unreported,
                "first_dropped": _iso(self._first_lost or 0.0),
                "reason": self._reason,
            },
            separators=(",", ":"),
        )

    def _write(self, items: list[CaptureItem]) -> None:
        by_file: dict[Path, list[str]] = {}
        stamps: dict[Path, float] = {}
        for item in items:
            try:
                when = datetime.fromtimestamp(item.timestamp, tz=UTC)
                line = json.dumps(to_record(item), separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as err:  # never expected: inputs were validated
                self.failed += 1
                self._note_lost(1, item.timestamp, f"record not serialisable: {err}")
                log.error("capture record %s not serialisable: %s", item.request_id, err)
                continue
            path = capture_path(self.capture_dir, when)
            by_file.setdefault(path, []).append(line)
            stamps[path] = max(stamps.get(path, item.timestamp), item.timestamp)
        for path, lines in by_file.items():
            with self._lost_lock:
                marker = self._marker()
                reported = self._unreported
            data = "\n".join(([marker] if marker else []) + lines) + "\n"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._append(path, data.encode("utf-8"))
            except OSError as err:
                self.failed += len(lines)
                reason = errno.errorcode.get(err.errno or 0, "") + f" {err.strerror or err}"
                self._note_lost(len(lines), stamps[path], reason.strip())
                if self.failed == len(lines) or self.failed % 1000 < len(lines):
                    log.error(
                        "capture write to %s failed: %s (%d record(s) lost so far)",
                        path,
                        err,
                        self.failed,
                    )
                continue
            self.written += len(lines)
            if marker:
                self._reported(reported)

    def _append(self, path: Path, data: bytes) -> None:
        """Append whole lines or nothing: a failed write is truncated back to where it began."""
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            if start and path not in self._whole and os.pread(fd, 1, start - 1) != b"\n":
                data = b"\n" + data  # a fragment left by a crash: end it, keep the next line whole
            self._whole.discard(path)
            view = memoryview(data)
            done = 0
            try:
                while done < len(data):
                    done += os.write(fd, view[done:])
            except OSError:
                if done:
                    try:
                        os.ftruncate(fd, start)
                    except OSError as err:  # the next write ends the fragment with a newline
                        log.error("capture file %s left with a partial line: %s", path, err)
                raise
            self._whole.add(path)
        finally:
            os.close(fd)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iter_records(capture_dir: Path) -> Iterator[dict[str, Any]]:
    """Every capture record under ``capture_dir``, in file (hour) order (loss markers and lines
    that are not JSON objects are left out; the monitoring reader counts those)."""
    for path in sorted(Path(capture_dir).glob("*/*/*/*.jsonl")):
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(record, dict) and "capture_dropped" not in record:
                    yield record
