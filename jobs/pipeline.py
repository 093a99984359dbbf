"""Local orchestration of the AWS state machine's steps, in its order (DESIGN §1, §8):

    check MLflow (+ recover) → ingest (validate + prepare) → train (script-mode subprocess)
      → gate rules 1-3 → system test (served on loopback) → full gate + promote

Training runs ``python -m jobs.train`` with the SageMaker script-mode environment
(:mod:`jobs.training.launcher`); each job's directory is kept under
``$ABALONE_HOME/jobs/train-<timestamp>/``. The gate steps are :mod:`jobs.promotion.service`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.adapters.lake import Lake
from jobs.adapters.settings import Settings
from jobs.adapters.tracking import check_tracking
from jobs.adapters.tracking_runs import recover_store
from jobs.core.errors import AbaloneError, RejectedError, StorageError
from jobs.core.redact import redact
from jobs.ingestion.ingest import ingest, rejection_reason
from jobs.promotion.service import reevaluate
from jobs.training.launcher import prepare_channels, run_subprocess

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class RunResult:
    """What ``abalone run`` reports (``to_dict`` is the ``--json`` payload)."""

    ingest: dict[str, Any]
    run_id: str | None = None
    model_version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    champion_version: str | None = None
    previous_version: str | None = None
    model_dir: str | None = None
    tracking_uri: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.ingest.get("status") == "accepted"
            and bool(self.gate)
            and self.gate["decision"] == "promote"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ingest": self.ingest,
            "run_id": self.run_id,
            "model_version": self.model_version,
            "metrics": self.metrics,
            "gate": self.gate,
            "champion_version": self.champion_version,
            "previous_version": self.previous_version,
            "model_dir": self.model_dir,
            "tracking_uri": self.tracking_uri,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


class _StepTimer:
    """Forwards progress messages and records how long each step took (``RunResult.timings``)."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._current: str | None = None
        self._started = 0.0

    def step(self, message: str) -> None:
        self.stop()
        self._current, self._started = message, time.perf_counter()
        if self.progress:
            self.progress(message)

    def stop(self) -> None:
        if self._current is not None:
            # stable step names: the first word ("fetching", "training", "gate", …)
            key = self._current.split(" ", 1)[0]
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - self._started
            self._current = None


def run_pipeline(
    settings: Settings,
    source: str,
    *,
    refresh: bool = False,
    hyperparameters: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """``abalone run``: ingest → train → gate → system test → promote. Raises RejectedError (exit 1)
    for a rejected batch, ServiceError (exit 2) when MLflow is unreachable — before any training."""

    timer = _StepTimer(progress)
    step = timer.step
    step(f"checking MLflow at {redact(settings.tracking_uri)}")
    check_tracking(settings.tracking_uri)
    recover_store(settings)  # an interrupted promotion, runs a killed job left RUNNING

    ingested = ingest(settings, source, refresh=refresh, progress=step)
    summary = ingested.summary
    result = RunResult(
        ingest=summary, tracking_uri=redact(settings.tracking_uri), timings=timer.timings
    )
    if not ingested.ok:
        first = rejection_reason(summary)
        err = RejectedError(f"batch {summary['ingest_id']} rejected, nothing trained: {first}")
        err.result = result  # type: ignore[attr-defined]
        raise err

    version = summary["dataset_version"]
    step(f"training on {version} (SageMaker script mode, subprocess)")
    workdir = settings.home / "jobs" / f"train-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    channels = prepare_channels(settings, version, workdir)
    trained = run_subprocess(settings, channels, workdir=workdir, params=hyperparameters)
    result.run_id = trained.run_id
    result.model_version = trained.model_version
    result.metrics = trained.metrics
    result.model_dir = trained.model_dir

    step(f"gate (champion comparison, system test) for version {result.model_version}")
    decision, aliases = reevaluate(
        settings, result.model_version, model_dir=Path(trained.model_dir)
    )
    result.gate = decision.to_dict()
    result.champion_version, result.previous_version = aliases.champion, aliases.previous
    timer.stop()
    return result


def retrain(settings: Settings, progress: Progress | None = None) -> dict[str, Any]:
    """Run the pipeline again on the latest validated data: re-ingesting the accepted batch's
    immutable raw bytes revalidates it and yields the same dataset version."""
    lake = Lake.open(settings.lake)
    latest = lake.latest_batch()
    if not latest.raw:
        raise StorageError(
            f"the raw batch of dataset {latest.dataset_version} is missing from {lake.root}"
        )
    run = run_pipeline(settings, latest.raw, progress=progress)
    payload = run.to_dict()
    payload["retrained_on"] = {"dataset_version": latest.dataset_version, "source": latest.raw}
    payload["ok"] = run.ok
    return payload


def retrain_safely(settings: Settings, progress: Progress | None = None) -> dict[str, Any]:
    """:func:`retrain`, with an expected failure reported in the result instead of raised."""
    try:
        return retrain(settings, progress)
    except AbaloneError as err:
        partial = getattr(err, "result", None)
        return {
            "ok": False,
            "error": str(err),
            **({"run": partial.to_dict()} if partial is not None else {}),
        }
