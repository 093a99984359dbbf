"""The local launcher of the training job (``abalone train``, ``abalone run``): copy a curated
dataset version into channel directories and run ``python -m jobs.train`` as a subprocess with the
SageMaker script-mode environment: the identical file and contract a SageMaker training job runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobs.adapters.lake import Lake
from jobs.adapters.settings import Settings, environment
from jobs.core import errors
from jobs.core.errors import AbaloneError, ServiceError
from jobs.training.contract import Channels, TrainResult


def prepare_channels(settings: Settings, dataset_version: str, workdir: Path) -> Channels:
    """Copy a curated dataset version (splits + manifest) from the lake into ``workdir/data``."""
    files = Lake.open(settings.lake).channel_files(dataset_version)
    target = Path(workdir) / "data"
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)
    return Channels.single(target)


def run_subprocess(
    settings: Settings,
    channels: Channels,
    *,
    workdir: Path,
    params: Mapping[str, Any] | None = None,
    lineage: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> TrainResult:
    """Run ``python -m jobs.train`` with the SageMaker environment contract; returns its result.

    Outputs go to ``workdir/model`` and ``workdir/output``; the job's log to ``workdir/train.log``.
    A failure is re-raised as the job's own error class (from ``output/error.json``).
    """
    workdir = Path(workdir)
    model_dir, output_dir = workdir / "model", workdir / "output"
    for d in (model_dir, output_dir):
        d.mkdir(parents=True, exist_ok=True)
    (output_dir / "error.json").unlink(missing_ok=True)
    (output_dir / "result.json").unlink(missing_ok=True)
    env = environment()
    env.update(
        SM_CHANNEL_TRAIN=str(channels.train),
        SM_CHANNEL_VALIDATION=str(channels.validation),
        SM_CHANNEL_TEST=str(channels.test),
        SM_MODEL_DIR=str(model_dir),
        SM_OUTPUT_DATA_DIR=str(output_dir),
        MLFLOW_TRACKING_URI=settings.tracking_uri,
        ABALONE_ENV=settings.env,
        ABALONE_HOME=str(settings.home),
        ABALONE_LAKE=settings.lake,
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    argv = [sys.executable, "-m", "jobs.train"]
    for key, value in {**(params or {})}.items():
        argv += [f"--{key}", str(value)]
    for key, value in (lineage or {}).items():
        if value:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    log_path = workdir / "train.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            proc.terminate()
            proc.wait(timeout=30)
            raise ServiceError(f"training exceeded {timeout_s:.0f}s; log: {log_path}") from err
        except KeyboardInterrupt:
            proc.wait(timeout=60)  # the job got the same SIGINT and cleans up
            raise
    if code != 0:
        raise _job_error(output_dir / "error.json", code, log_path)
    result = json.loads((output_dir / "result.json").read_text())
    return TrainResult(**result)


def _job_error(error_json: Path, code: int, log_path: Path) -> AbaloneError:
    try:
        payload = json.loads(error_json.read_text())
    except (OSError, ValueError):
        tail = (
            log_path.read_text(errors="replace").strip().splitlines()[-1:]
            if log_path.exists()
            else []
        )
        return ServiceError(
            f"training failed (exit {code}): {tail[0] if tail else 'no output'}; log: {log_path}"
        )
    cls = getattr(errors, str(payload.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, AbaloneError)):
        cls = ServiceError
    return cls(payload.get("message") or f"training failed (exit {code})")
