"""The local launcher of the training job (``abalone train``, ``abalone run``): copy a curated
dataset version into channel directories and run ``python -m jobs.train`` as a subprocess with the
SageMaker script-mode environment: the identical file and contract a SageMaker training job runs.

The job never outlives its launcher: it runs in its own process group with ``PR_SET_PDEATHSIG``
(the kernel kills it when the launcher dies, ``kill -9`` included; Linux), and SIGTERM, Ctrl-C or an
error in the launcher stop the group (SIGINT, then SIGKILL after ``STOP_GRACE_S``) before it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
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
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            process_group=0,  # its own group: stopped as a whole, not by the terminal's Ctrl-C
            preexec_fn=_die_with(os.getpid()),
        )
        try:
            with _signals_stop(proc):
                code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            _stop(proc)
            raise ServiceError(f"training exceeded {timeout_s:.0f}s; log: {log_path}") from err
        except BaseException:  # Ctrl-C, SIGTERM, any error here: the job must not outlive us
            _stop(proc)
            raise
    if code != 0:
        raise _job_error(output_dir / "error.json", code, log_path)
    result = json.loads((output_dir / "result.json").read_text())
    return TrainResult(**result)


STOP_GRACE_S = 20.0
PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> Callable[[], None] | None:
    """``preexec_fn`` for the job (Linux): the kernel sends it ``SIGKILL`` when its parent dies,
    ``kill -9`` included (``PR_SET_PDEATHSIG``); a parent already gone by then ends it at once.
    ``prctl`` is looked up before the fork: the child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class _Terminated(BaseException):
    """SIGTERM while the job runs: stop it, then die of the same signal."""


@contextlib.contextmanager
def _signals_stop(proc: subprocess.Popen) -> Iterator[None]:
    """While the job runs, SIGTERM stops it before this process ends (re-delivered after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except _Terminated:
        _stop(proc)
        signal.signal(signal.SIGTERM, old)
        os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt from None  # when SIGTERM is handled or ignored upstream
    finally:
        signal.signal(signal.SIGTERM, old)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the job's process group: SIGINT first (the job records its failure and ends its MLflow
    run), SIGKILL after ``STOP_GRACE_S`` or for whatever of the group is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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
