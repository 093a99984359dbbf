"""Local orchestration of the same steps as the AWS state machine (DESIGN §1, §8):

    check MLflow → ingest (validate) → train (script-mode subprocess) → system test → gate → promote

Training runs ``python -m jobs.train`` as a subprocess with the SageMaker script-mode environment
(``SM_CHANNEL_*``, ``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``MLFLOW_TRACKING_URI``): the identical
file and contract a SageMaker training job runs, not a different code path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import RejectedError, ServiceError, StorageError
from jobs.schema import SPLITS
from jobs.settings import Settings
from jobs.storage import LocalStore, open_store

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class TrainingFailed(ServiceError):
    """The training job exited non-zero; nothing was registered."""

    exit_code = 1


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
            key = self._current.split(" ", 1)[0]  # stable step names: "fetching", "training", …
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - self._started
            self._current = None


def _channels(settings: Settings, dataset_version: str, workdir: Path) -> dict[str, Path]:
    """Local directories holding each split (and the manifest), as SageMaker would mount them."""
    lake = open_store(settings.lake)
    prefix = f"curated/{dataset_version}"
    if not lake.exists(f"{prefix}/manifest.json"):
        raise StorageError(
            f"dataset {dataset_version} is not in the lake {lake.root} (incomplete or unknown)"
        )
    if isinstance(lake, LocalStore):
        base = lake.path(prefix)
        return {name: base for name in SPLITS}
    base = workdir / "channels" / dataset_version
    base.mkdir(parents=True, exist_ok=True)
    for name in (*SPLITS, "manifest"):
        fname = f"{name}.json" if name == "manifest" else f"{name}.csv"
        (base / fname).write_bytes(lake.get_bytes(f"{prefix}/{fname}"))
    return {name: base for name in SPLITS}


def launch_training(
    settings: Settings,
    dataset_version: str,
    *,
    hyperparameters: dict[str, str] | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the training entry point as SageMaker would; returns its ``result.json``.

    The model directory is kept under ``$ABALONE_HOME/models/<dataset_version>/<stamp>``.
    """
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    job_dir = workdir or settings.home / "models" / dataset_version / stamp
    model_dir, output_dir = job_dir / "model", job_dir / "output"
    model_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="abalone-train-") as tmp:
        channels = _channels(settings, dataset_version, Path(tmp))
        env = {
            **os.environ,
            "SM_CHANNEL_TRAIN": str(channels["train"]),
            "SM_CHANNEL_VALIDATION": str(channels["validation"]),
            "SM_CHANNEL_TEST": str(channels["test"]),
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DATA_DIR": str(output_dir),
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "ABALONE_ENV": settings.env,
            "ABALONE_HOME": str(settings.home),
            "ABALONE_LAKE": settings.lake,
            "ABALONE_REPORTS": settings.reports,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        args = [sys.executable, "-m", "jobs.train"]
        for key, value in (hyperparameters or {}).items():
            args += [f"--{key}", str(value)]
        log.info("training: %s", " ".join(args))
        proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(job_dir, ignore_errors=True)
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise TrainingFailed(
            f"training failed (nothing registered): {reason.removeprefix('error: ')}"
        )
    result_file = output_dir / "result.json"
    if not result_file.is_file():
        raise TrainingFailed(f"training finished without writing {result_file}")
    result = json.loads(result_file.read_text())
    result["model_dir"] = str(model_dir)
    return result


def run_pipeline(
    settings: Settings,
    source: str,
    *,
    refresh: bool = False,
    hyperparameters: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """``abalone run``: ingest → train → system test → gate → promote. Raises RejectedError (exit 1)
    for a rejected batch, ServiceError (exit 2) when MLflow is unreachable — before any training."""
    from jobs.ingest import ingest, rejection_reason
    from jobs.registry import CHAMPION, PREVIOUS, Registry, check_tracking, reevaluate

    timer = _StepTimer(progress)
    step = timer.step
    step(f"checking MLflow at {settings.tracking_uri}")
    check_tracking(settings.tracking_uri)

    ingested = ingest(settings, source, refresh=refresh, progress=step)
    summary = ingested.summary
    result = RunResult(ingest=summary, tracking_uri=settings.tracking_uri, timings=timer.timings)
    if not ingested.ok:
        first = rejection_reason(summary)
        err = RejectedError(f"batch {summary['ingest_id']} rejected, nothing trained: {first}")
        err.result = result  # type: ignore[attr-defined]
        raise err

    version = summary["dataset_version"]
    step(f"training on {version} (SageMaker script mode, subprocess)")
    trained = launch_training(settings, version, hyperparameters=hyperparameters)
    result.run_id = trained.get("run_id")
    result.model_version = str(trained.get("model_version"))
    result.metrics = trained.get("metrics", {})
    result.model_dir = trained.get("model_dir")

    step(f"system test and promotion gate for version {result.model_version}")
    decision, aliases = reevaluate(settings, result.model_version)
    result.gate = decision.to_dict()
    registry = Registry.from_settings(settings)
    result.champion_version = registry.alias(CHAMPION)
    result.previous_version = registry.alias(PREVIOUS)
    del aliases
    timer.stop()
    return result
