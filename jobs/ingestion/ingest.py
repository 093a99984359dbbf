"""Ingest one batch: fetch → land raw (immutable) → validate (GX) → curate or quarantine → report.

The same function runs locally (lake directory) and against S3 (``ABALONE_LAKE=s3://…``); the Glue
entry point calls it too. Where things go is the :class:`~jobs.adapters.lake.Lake`'s business.
"""

from __future__ import annotations

import json
import logging
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from jobs.adapters.fetch import Fetched, fetch
from jobs.adapters.lake import Lake
from jobs.adapters.settings import Settings
from jobs.adapters.storage import Store, open_store
from jobs.core.data import dataset_version
from jobs.core.redact import redact
from validation import validate_batch

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def new_ingest_id(now: datetime | None = None) -> str:
    """Time-sortable, unique: ``20261126T172508123456Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


@dataclass
class IngestResult:
    """What an ingest produced; ``summary`` is the JSON written to the report location."""

    summary: dict[str, Any]
    accepted: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def ok(self) -> bool:
        return self.status == "accepted"


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, default=str) + "\n").encode()


def ingest(
    settings: Settings,
    source: str,
    *,
    refresh: bool = False,
    progress: Progress | None = None,
    lake: Lake | None = None,
    reports: Store | None = None,
    fetched: Fetched | None = None,
) -> IngestResult:
    """Run one ingest. Raises SourceError/StorageError for source and storage problems;
    a batch that fails validation is *returned* with status ``rejected`` (and quarantined)."""
    step = progress or (lambda _msg: None)
    lake = lake or Lake.open(settings.lake)
    reports = reports or open_store(settings.reports)
    ingest_id = new_ingest_id()

    step(f"fetching {redact(source)}")
    if fetched is None:
        fetched = fetch(
            source,
            limits=settings.fetch,
            cache_dir=settings.cache_dir / "downloads",
            refresh=refresh,
        )
    lineage = {**fetched.lineage(), "ingest_id": ingest_id}

    step(f"landing raw batch ({fetched.size:,} bytes)")
    raw_uri = lake.land(ingest_id, fetched.name, fetched.data, lineage)

    step("validating with the data contract (Great Expectations)")
    with tempfile.TemporaryDirectory(prefix="abalone-docs-") as tmp:
        docs_dir = Path(tmp) / "data_docs"
        result = validate_batch(
            fetched.data,
            ingest_id=ingest_id,
            source=lineage,
            max_warning_fraction=settings.policy.max_warning_fraction,
            docs_dir=docs_dir,
        )
        step("publishing data-quality report")
        report_rel = Path(result.report_html).relative_to(docs_dir).as_posix()
        reports.put_tree(f"{ingest_id}/data_docs", docs_dir)
    report_html = reports.uri(f"{ingest_id}/data_docs/{report_rel}")
    summary_uri = reports.uri(f"{ingest_id}/summary.json")

    quarantine_uri = None
    if len(result.quarantined):
        quarantine_uri = lake.quarantine_rows(ingest_id, result.quarantined)
    version = None
    rows = None
    if result.status == "accepted":
        step("writing curated dataset version and splits")
        version = dataset_version(result.accepted)
        rows = lake.write_curated(
            version,
            result.accepted,
            settings.seed,
            {
                "dataset_version": version,
                "ingest_id": ingest_id,
                "source_sha256": fetched.sha256,
                "source": fetched.source,
                "data_quality": "passed",
                "report_html": report_html,
                "summary_json": summary_uri,
                "rows_quarantined": len(result.quarantined),
            },
        )
        lake.set_latest(version, ingest_id, summary_uri)
    else:
        quarantine_uri = lake.quarantine_batch(
            ingest_id,
            {
                "ingest_id": ingest_id,
                "status": "rejected",
                "raw": raw_uri,
                "failed_expectations": result.failed_expectations,
                "reasons": result.problems,
            },
        )

    summary = {
        "ingest_id": ingest_id,
        "status": result.status,
        "env": settings.env,
        "source": lineage,
        "raw_uri": raw_uri,
        "rows_total": result.rows_total,
        "rows_accepted": len(result.accepted) if result.status == "accepted" else 0,
        "rows_quarantined": len(result.quarantined),
        "dataset_version": version,
        "splits": rows,
        "curated_uri": lake.curated_uri(version) if version else None,
        "quarantine_uri": quarantine_uri,
        "failed_expectations": result.failed_expectations,
        "problems": result.problems,
        "expectations": result.expectations,
        "report_html": report_html,
        "summary_json": summary_uri,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    reports.put_bytes(f"{ingest_id}/summary.json", _json(summary))
    log.info("ingest %s %s (%s rows)", ingest_id, result.status, result.rows_total)
    return IngestResult(summary=summary, accepted=result.accepted if version else None)


def rejection_reason(summary: dict[str, Any]) -> str:
    """One line naming why a batch was rejected: the deciding problem, and the first offending row
    when the deciding problem is a summary (e.g. too many warning rows)."""
    problems = summary.get("problems") or ["batch failed the data contract"]
    first = problems[0]
    if not first.startswith("row ") and len(problems) > 1 and problems[1].startswith("row "):
        return f"{first}; first: {problems[1]}"
    return first
