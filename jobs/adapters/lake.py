"""The lake: the one owner of every lake key (layout in docs/CONTRACTS.md "Lake layout").

``raw/`` (batches as received, never modified), ``quarantine/`` (rejected batches and rows),
``curated/`` (dataset versions: splits + manifest, and ``LATEST.json``) and ``runs/`` (the Glue job's
result per pipeline execution). Everything else asks a :class:`Lake` for a key, a URI or a frame,
so the layout is written down once.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from jobs.adapters.storage import Store, open_store
from jobs.core.data import canonical_csv, canonical_frame, split
from jobs.core.errors import StorageError, UsageError
from jobs.core.schema import SPLITS

RAW, QUARANTINE, CURATED, RUNS = "raw", "quarantine", "curated", "runs"
LATEST = f"{CURATED}/LATEST.json"
LINEAGE = "_lineage.json"
INGEST_ID_RE = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, default=str) + "\n").encode()


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit("/", 1)[-1]).strip("._")
    return cleaned[:100] or "batch.csv"


@dataclass(frozen=True)
class LatestBatch:
    """The batch behind the newest accepted dataset: as uploaded (``source``, which starts the
    AWS pipeline again) and as landed (``raw``, immutable, which a local re-ingest reads)."""

    dataset_version: str
    ingest_id: str | None
    source: str | None
    raw: str | None


class Lake:
    """Typed access to one lake root (a directory or ``s3://bucket/prefix``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def open(cls, uri: str, *, s3_client: Any = None) -> Lake:
        return cls(open_store(uri, s3_client=s3_client))

    @property
    def root(self) -> str:
        return self.store.root

    # ---- raw ------------------------------------------------------------------------------------

    @staticmethod
    def upload_key(name: str, now: datetime | None = None) -> str:
        """A new flat key under ``raw/`` (the trigger prefix); never one of an ingest's
        ``raw/<ingest_id>/…`` landings, which the state machine ignores."""
        now = now or datetime.now(UTC)
        return f"{RAW}/{now:%Y%m%d-%H%M%S-%f}-{_safe_name(name)}"

    def landed_ingest(self, uri: str) -> str | None:
        """The ingest id when ``uri`` is a batch an ingest already landed (``raw/<ingest_id>/…``)."""
        prefix = self.root.rstrip("/") + f"/{RAW}/"
        if not uri.startswith(prefix):
            return None
        first = uri[len(prefix) :].split("/", 1)[0]
        return first if INGEST_ID_RE.match(first) else None

    def land(self, ingest_id: str, name: str, data: bytes, lineage: dict[str, Any]) -> str:
        """Write a batch as received, once (never overwritten), with its lineage; returns its URI."""
        uri = self.store.put_bytes(f"{RAW}/{ingest_id}/{name}", data, overwrite=False)
        self.store.put_bytes(f"{RAW}/{ingest_id}/{LINEAGE}", _json(lineage), overwrite=False)
        return uri

    def landed_batch(self, ingest_id: str) -> str | None:
        keys = [
            k
            for k in self.store.list(f"{RAW}/{ingest_id}/")
            if not k.rsplit("/", 1)[-1].startswith("_")
        ]
        return self.store.uri(keys[0]) if keys else None

    # ---- quarantine -----------------------------------------------------------------------------

    def quarantine_rows(self, ingest_id: str, rows: pd.DataFrame) -> str:
        data = rows.to_csv(index=False, lineterminator="\n").encode()
        return self.store.put_bytes(f"{QUARANTINE}/{ingest_id}/rows.csv", data)

    def quarantine_batch(self, ingest_id: str, record: dict[str, Any]) -> str:
        return self.store.put_bytes(f"{QUARANTINE}/{ingest_id}/batch.json", _json(record))

    # ---- curated --------------------------------------------------------------------------------

    def _curated(self, version: str, name: str = "") -> str:
        return f"{CURATED}/{version}" + (f"/{name}" if name else "")

    def curated_uri(self, version: str) -> str:
        """The prefix holding a dataset version's splits and manifest."""
        return self.store.uri(self._curated(version))

    def write_curated(
        self, version: str, frame: pd.DataFrame, seed: int, manifest: dict[str, Any]
    ) -> dict[str, int]:
        """Write the splits then the manifest (last: it marks the version complete). Idempotent:
        an existing version is left as it is and its row counts returned."""
        key = self._curated(version, "manifest.json")
        if self.store.exists(key):
            return json.loads(self.store.get_bytes(key))["rows"]
        parts = split(frame, seed=seed)
        for name, part in parts.items():
            self.store.put_bytes(self._curated(version, f"{name}.csv"), canonical_csv(part))
        rows = {name: len(part) for name, part in parts.items()}
        self.store.put_bytes(key, _json({**manifest, "rows": rows, "seed": seed}))
        return rows

    def set_latest(self, version: str, ingest_id: str, summary_json: str) -> None:
        record = {"dataset_version": version, "ingest_id": ingest_id, "summary_json": summary_json}
        self.store.put_bytes(LATEST, _json(record))

    def latest_dataset(self) -> str:
        """The dataset version of the most recent accepted ingest."""
        try:
            return json.loads(self.store.get_bytes(LATEST))["dataset_version"]
        except StorageError as err:
            raise StorageError(
                f"no curated dataset in {self.root}: run `abalone ingest` first"
            ) from err

    def manifest(self, version: str) -> dict[str, Any]:
        """A dataset version's manifest, ``{}`` when it has none."""
        key = self._curated(version, "manifest.json")
        if not self.store.exists(key):
            return {}
        return json.loads(self.store.get_bytes(key))

    def split_bytes(self, version: str, name: str) -> bytes:
        key = self._curated(version, f"{name}.csv")
        if not self.store.exists(key):
            raise UsageError(f"unknown dataset version {version}: no {key} in {self.root}")
        return self.store.get_bytes(key)

    def read_split(self, version: str, name: str) -> pd.DataFrame:
        """A curated split (checked and typed: canonical columns, floats, integer rings)."""
        key = self._curated(version, f"{name}.csv")
        try:
            data = self.store.get_bytes(key)
        except StorageError as err:
            raise UsageError(
                f"dataset {version} has no {name} split in {self.root}: {err}"
            ) from err
        return canonical_frame(pd.read_csv(io.BytesIO(data)), f"{self.root}/{key}")

    def channel_files(self, version: str) -> dict[str, bytes]:
        """``{file name: bytes}`` of a dataset version as a training channel (splits + manifest)."""
        files = {f"{name}.csv": self.split_bytes(version, name) for name in SPLITS}
        manifest = self._curated(version, "manifest.json")
        if self.store.exists(manifest):
            files["manifest.json"] = self.store.get_bytes(manifest)
        return files

    def latest_batch(self) -> LatestBatch:
        """The batch behind ``curated/LATEST.json`` (the one rule for "the latest batch")."""
        version = self.latest_dataset()
        try:
            manifest = json.loads(self.store.get_bytes(self._curated(version, "manifest.json")))
        except (StorageError, json.JSONDecodeError) as err:
            raise StorageError(
                f"dataset {version} has no readable manifest in {self.root}"
            ) from err
        ingest_id = manifest.get("ingest_id")
        return LatestBatch(
            dataset_version=version,
            ingest_id=ingest_id,
            source=manifest.get("source"),
            raw=self.landed_batch(ingest_id) if ingest_id else None,
        )

    # ---- runs -----------------------------------------------------------------------------------

    @staticmethod
    def run_result_key(run_id: str) -> str:
        """Where the Glue job writes a pipeline execution's ingest result (the state machine's
        ``VALIDATION_RESULT_KEY`` with the lake at the data bucket's root)."""
        return f"{RUNS}/{run_id}/ingest_result.json"
