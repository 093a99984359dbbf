"""``abalone monitor`` (DESIGN §7): stream captured traffic (:mod:`jobs.adapters.capture_reader`)
into bounded statistics (:class:`jobs.core.drift.LiveStatistics`: exact counts over every row, a
seeded uniform sample for the KS test, the plots and the data contract), compare it with the
training reference profile (:mod:`jobs.monitoring.reference`, statistics in
:mod:`jobs.core.drift`), run the data contract on it, and write ``report.html`` (see
:mod:`jobs.monitoring.report`), ``summary.json`` and the batch's GX Data Docs under
``$ABALONE_HOME/monitoring/<YYYYMMDDTHHMMSSZ>/``. Retraining on drift is a step the caller passes in.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from jobs.adapters.capture_reader import CaptureScan
from jobs.adapters.capture_records import iso
from jobs.adapters.settings import Settings
from jobs.adapters.storage import LocalStore, Store
from jobs.core.drift import DriftResult, Thresholds, assess
from jobs.core.drift_stream import DEFAULT_SAMPLE_ROWS, LiveStatistics
from jobs.core.errors import SourceError
from jobs.core.timewindow import parse_since
from jobs.monitoring.reference import DEFAULT_REFERENCE, resolve_reference
from jobs.monitoring.report import render_html
from validation import validate_frame

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
Retrain = Callable[[], dict[str, Any]]


@dataclass
class MonitorResult:
    summary: dict[str, Any]
    drift: DriftResult
    report_html: str | None
    summary_json: str | None

    @property
    def drifting(self) -> bool:
        return self.drift.drift


def _data_quality(frame: pd.DataFrame, settings: Settings, docs_dir: Path) -> dict[str, Any]:
    """The GX data contract (inputs only, no ``rings``) on the captured batch."""
    result = validate_frame(
        frame,
        with_target=False,
        max_warning_fraction=settings.policy.max_warning_fraction,
        docs_dir=docs_dir,
        run_name="capture",
    )
    return {
        "status": "passed" if result.ok else "failed",
        "batch_status": result.status,
        "rows_total": result.rows_total,
        "rows_flagged": len(result.quarantined),
        "warning_fraction": round(float(result.warning_fraction), 6),
        "failed_expectations": list(result.failed_expectations),
        "problems": list(result.problems)[:20],
        "report_html": result.report_html,
    }


def monitor(
    settings: Settings,
    *,
    capture: str | None = None,
    since: str | None = None,
    reference: str | None = None,
    now: datetime | None = None,
    thresholds: Thresholds | None = None,
    run_validation: bool = True,
    retrain_on_drift: bool = False,
    retrain: Retrain | None = None,
    progress: Progress | None = None,
    s3_client: Any = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
) -> MonitorResult:
    """Stream capture → drift statistics → GX suite → HTML + JSON report.

    The capture is read block by block (never whole): PSI, χ² and means count every row; the KS
    test, the histograms and the data contract use a seeded uniform sample of ``sample_rows`` rows
    (every row when the capture is no larger). Memory stays bounded whatever the capture's size.
    """
    step = progress or (lambda _msg: None)
    now = now or datetime.now(UTC)
    since_at = parse_since(since, now)
    source = capture or str(settings.capture_dir)
    t = thresholds or Thresholds.from_policy(settings.policy)

    scan = CaptureScan(source, since=since_at, s3_client=s3_client)  # no capture: fail first

    step(f"loading the reference profile ({reference or DEFAULT_REFERENCE})")
    ref = resolve_reference(reference, settings, s3_client=s3_client)

    step(f"reading captured traffic from {source}")
    live = LiveStatistics(ref.profile, sample_rows=sample_rows)
    for features, predictions in scan:
        live.add(features, predictions)
    batch = scan.batch
    batch.features, batch.predictions = live.sample_features(), live.sample_predictions()
    batch.total_rows, batch.total_predictions = live.rows, live.predictions
    batch.sample_size = sample_rows
    if batch.rows == 0:
        window = f" since {iso(since_at)}" if since_at else ""
        raise SourceError(
            f"no capture found: {batch.files} file(s) under {source} hold no readable "
            f"records{window}" + (f" ({batch.skipped} unreadable lines)" if batch.skipped else "")
        )

    step(f"comparing {batch.rows:,} live rows with the reference")
    preds = batch.predictions if len(batch.predictions) else None
    result = assess(ref.profile, batch.features, preds, t, live=live if live.sampled else None)

    store = LocalStore(settings.monitoring_dir)
    run_id = stamp = now.strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while store.exists(f"{run_id}/summary.json"):  # two runs in the same second
        n += 1
        run_id = f"{stamp}-{n}"

    quality: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="abalone-monitor-") as tmp:
        if run_validation:
            step(
                "running the data contract on the captured "
                + (f"sample of {len(batch.features):,} rows" if batch.sampled else "batch")
                + " (Great Expectations)"
            )
            docs = Path(tmp) / "data_docs"
            quality = _data_quality(batch.features, settings, docs)
            if quality["report_html"] is not None:
                rel = Path(quality["report_html"]).relative_to(docs).as_posix()
                store.put_tree(f"{run_id}/data_docs", docs)
                quality["report_html"] = store.uri(f"{run_id}/data_docs/{rel}")
                quality["report_relative"] = f"data_docs/{rel}"  # link from report.html

    step("writing the drift report")
    summary = {
        "run_id": run_id,
        "created_at": iso(now),
        "env": settings.env,
        "status": result.status,
        "drift": result.drift,
        "message": result.message,
        "drifting_features": result.drifting_features,
        "prediction_drift": result.prediction_drift,
        "score": result.score,
        "capture": batch.describe(),
        "reference": ref.describe(),
        "data_quality": quality,
        "drift_detail": result.to_dict(),
        "report_html": store.uri(f"{run_id}/report.html"),
        "summary_json": store.uri(f"{run_id}/summary.json"),
    }
    if (
        batch.model_versions
        and ref.model_version
        and set(batch.model_versions) != {ref.model_version}
    ):
        summary["note"] = (
            f"captured traffic was served by version(s) {', '.join(sorted(batch.model_versions))}; "
            f"the reference is version {ref.model_version}"
        )
    page = render_html(summary, result, batch, ref.profile)
    store.put_bytes(f"{run_id}/report.html", page.encode())
    _write_summary(store, run_id, summary)
    if retrain_on_drift:
        if result.drift:
            step("drift found: retraining on the latest validated data")
            summary["retrain"] = (
                retrain() if retrain else {"ok": False, "error": "no retrain step configured"}
            )
        else:
            summary["retrain"] = {"ok": None, "skipped": f"not needed ({result.status})"}
        _write_summary(store, run_id, summary)
    log.info("monitor %s: %s", run_id, result.message)
    return MonitorResult(summary, result, summary["report_html"], summary["summary_json"])


def _write_summary(store: Store, run_id: str, summary: Mapping[str, Any]) -> None:
    text = json.dumps(summary, indent=2, default=str, allow_nan=False) + "\n"
    store.put_bytes(f"{run_id}/summary.json", text.encode())
