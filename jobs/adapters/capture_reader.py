"""Reader of captured traffic in both formats (DESIGN §7): a local file or directory, or an
``s3://bucket/prefix``; every ``*.jsonl`` below it, one record per line:

- **this project's capture record** (:mod:`jobs.adapters.capture`, files ``YYYY/MM/DD/HH.jsonl``);
- **SageMaker data capture** (``<prefix>/<endpoint>/<variant>/YYYY/MM/DD/HH/*.jsonl``:
  ``captureData.endpointInput``/``endpointOutput`` with ``encoding`` CSV, JSON or BASE64).

Files are streamed (local files or S3 bodies read in blocks of :data:`BLOCK_BYTES`, never whole) and
each block is parsed column-wise by pyarrow: the JSON lines by ``pyarrow.json``, the common one-row
request bodies (CSV, BASE64 CSV, ``{"instances": [[…]]}``) and answers (CSV value, our JSON answer) by
Arrow compute kernels, applying the same checks as the endpoint's parser. Every line those kernels
cannot vouch for (other shapes, bad values, a block pyarrow rejects - halved until it is small) is
read on its own by :func:`parse_line`, so what is kept, skipped and reported is exactly what the
line-by-line reader gave: request bodies are parsed by :func:`jobs.core.contract.parse_request`, the
parser the endpoint ran; a line that cannot be read is skipped and counted (never fatal). ``since``
keeps records at or after a time and skips whole hourly files that end before it.

:class:`CaptureScan` yields the rows chunk by chunk (the monitoring run folds them into bounded
statistics); :func:`read_capture` collects them all (small captures, tests).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from jobs.adapters.capture_arrow import (
    _EPOCH,
    _merge,
    _micros,
    _records_part,
    _typed,
    _vectorised,
)
from jobs.adapters.capture_blocks import _plain_lines
from jobs.adapters.capture_kernels import (
    BLOCK_BYTES,
    _blocks,
    _open_stream,
)
from jobs.adapters.capture_records import (
    CaptureBatch,
    CaptureRecord,
    RecordError,
    _path_hour,
    parse_line,
)
from jobs.adapters.storage import LocalStore, Store, open_store
from jobs.core.errors import SourceError

log = logging.getLogger(__name__)


def _open_capture(source: str, s3_client: Any = None) -> tuple[Store, list[str]]:
    """The store holding the capture and the ``.jsonl`` keys to read (a file or a tree)."""
    parsed = urlparse(source)
    if parsed.scheme == "s3":
        store = open_store(source, s3_client=s3_client)
        keys = [k for k in store.list() if k.endswith(".jsonl")]
        if not keys and source.rstrip("/").endswith(".jsonl"):
            parent, _, name = source.rstrip("/").rpartition("/")
            store = open_store(parent, s3_client=s3_client)
            keys = [name] if store.exists(name) else []
        return store, keys
    path = Path(parsed.path if parsed.scheme == "file" else source)
    if path.is_file():
        return LocalStore(path.parent), [path.name]
    if not path.exists():
        raise SourceError(f"no capture found: {path} does not exist")
    store = LocalStore(path)
    return store, [k for k in store.list() if k.endswith(".jsonl")]


class CaptureScan:
    """Capture under ``source`` read block by block: iterate for ``(features, predictions)`` chunks
    (features: FEATURES columns, ``sex`` text and measurements float); :attr:`batch` holds the
    counts (records, files, skipped lines, formats, versions, first/last) once iteration ends."""

    def __init__(
        self,
        source: str | Path,
        *,
        since: datetime | None = None,
        s3_client: Any = None,
        max_examples: int = 5,
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        self.source = str(source)
        self.since = since
        self.max_examples = max_examples
        self.block_bytes = block_bytes
        self.store, keys = _open_capture(self.source, s3_client)
        if not keys:
            raise SourceError(f"no capture found: no .jsonl files under {self.source}")
        if since is not None:
            keys = [
                k for k in keys if (h := _path_hour(k)) is None or h + timedelta(hours=1) > since
            ]
        self.keys = keys
        self.batch = CaptureBatch(
            source=self.source, features=_typed([]), predictions=np.empty(0), since=since
        )
        self._formats: Counter[str] = Counter()
        self._versions: Counter[str] = Counter()
        self._rows = 0

    @property
    def rows(self) -> int:
        return self._rows

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        buffer = bytearray()  # read buffer, reused from file to file
        for key in self.keys:
            self.batch.files += 1
            stream = _open_stream(self.store, key)
            try:
                number = 0
                for block in _blocks(stream, self.block_bytes, buffer):
                    lines: Sequence[bytes] | None = _plain_lines(block)  # the common case
                    if lines is not None:
                        numbers = range(number + 1, number + len(lines) + 1)
                        number += len(lines)
                        yield from self._block(key, lines, numbers)
                        continue
                    split = block.splitlines()
                    if b"" in split or any(map(bytes.isspace, split)):  # blank lines: dropped
                        numbers = [number + i for i, line in enumerate(split, 1) if line.strip()]
                        lines = [split[n - number - 1] for n in numbers]
                    else:
                        numbers, lines = range(number + 1, number + len(split) + 1), split
                    number += len(split)
                    yield from self._block(key, lines, numbers)
            finally:
                stream.close()
        self._finish()

    def _block(self, key: str, lines: Sequence[bytes], numbers: Sequence[int]) -> Iterator[tuple]:
        """The rows of one block's non-blank ``lines`` (``numbers``: their line numbers)."""
        if not lines:
            return
        since_us = None if self.since is None else _micros(self.since)
        slow, part, meta = _vectorised(lines, since_us)
        pieces = [part]
        records = []
        for i in np.flatnonzero(slow):
            record = self._record(key, numbers[i], lines[i])
            if record is not None:
                records.append((int(i), record))
        if records:
            pieces.append(_records_part(records))
        if meta["records"]:
            self.batch.records += meta["records"]
            self._formats["sagemaker"] += meta["records"]
            self._versions.update(meta["versions"])
        for value in (meta["first"], meta["last"]):
            if value is not None:
                self._seen(_EPOCH + timedelta(microseconds=value))
        chunk = _merge(pieces)
        if chunk is not None:
            self._rows += len(chunk[0])
            yield chunk

    def _record(self, key: str, number: int, line: bytes) -> CaptureRecord | None:
        """One line read as before (:func:`parse_line`): skipped and counted if unreadable."""
        try:
            record = parse_line(line)
        except RecordError as err:
            self.batch.skipped += 1
            if len(self.batch.skipped_examples) < self.max_examples:
                self.batch.skipped_examples.append(f"{key}:{number}: {err}")
            return None
        stamp = record.timestamp
        if self.since is not None and (stamp is None or stamp < self.since):
            return None
        if (
            record.source_format == "loss"
        ):  # a loss marker: records the server could not write, no rows
            self.batch.dropped += record.dropped
            return None
        self.batch.records += 1
        self._formats[record.source_format] += 1
        if record.model_version is not None:
            self._versions[record.model_version] += len(record.rows)
        if stamp is not None:
            self._seen(stamp)
        return record

    def _seen(self, stamp: datetime) -> None:
        b = self.batch
        b.first = stamp if b.first is None else min(b.first, stamp)
        b.last = stamp if b.last is None else max(b.last, stamp)

    def _finish(self) -> None:
        b = self.batch
        if b.skipped:
            log.warning(
                "%d capture lines could not be read (first: %s)",
                b.skipped,
                b.skipped_examples[0] if b.skipped_examples else "?",
            )
        if b.dropped:
            log.warning("%d records were not captured (the server could not write them)", b.dropped)
        b.formats = dict(self._formats)
        b.model_versions = dict(self._versions)


def read_capture(
    source: str | Path,
    *,
    since: datetime | None = None,
    s3_client: Any = None,
    max_examples: int = 5,
) -> CaptureBatch:
    """Every capture record under ``source`` (at or after ``since``) in one batch, all rows in
    memory: for small captures and tests; the monitoring run streams with :class:`CaptureScan`."""
    scan = CaptureScan(source, since=since, s3_client=s3_client, max_examples=max_examples)
    frames, preds = [], []
    for frame, pred in scan:
        frames.append(frame)
        preds.append(pred)
    batch = scan.batch
    if frames:
        batch.features = pd.concat(frames, ignore_index=True)
        batch.predictions = np.concatenate(preds)
    return batch
