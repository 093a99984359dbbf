"""Training runs a killed job left ``RUNNING``, and the recovery step before a run (issue 12).

A training job tags its MLflow run with the process that owns it (``abalone.pid``, ``abalone.host``,
``abalone.pid_start``: the process's start time, so a reused pid is not mistaken for it). The next
``abalone run``/``abalone train`` on the store, under the store lock, marks ``FAILED`` every
``RUNNING`` run of the stack's experiment whose owner on this host is gone, and finishes or undoes
a promotion a crash interrupted. A run owned by a live process, by another host, or without owner
tags (a SageMaker training job, an older run) is left alone.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from jobs.adapters.locking import store_lock
from jobs.adapters.settings import Settings
from jobs.adapters.tracking import Registry
from jobs.core.errors import ServiceError

log = logging.getLogger(__name__)

OWNER_PID, OWNER_HOST, OWNER_START = "abalone.pid", "abalone.host", "abalone.pid_start"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), ``None`` elsewhere
    or when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 overall; the name may hold spaces


def owner_tags() -> dict[str, str]:
    """Run tags naming this process as the run's owner."""
    tags = {OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname()}
    if (started := _start_time(os.getpid())) is not None:
        tags[OWNER_START] = started
    return tags


def owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process that owns a run still lives; ``None`` when this host cannot tell."""
    if tags.get(OWNER_HOST) != socket.gethostname() or not tags.get(OWNER_PID, "").isdigit():
        return None
    pid = int(tags[OWNER_PID])
    if Path("/proc").is_dir():
        started = _start_time(pid)
        return started is not None and started == tags.get(OWNER_START, started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_stale_runs(client: MlflowClient, experiment_name: str) -> list[str]:
    """Mark ``FAILED`` the ``RUNNING`` runs whose owner on this host is dead; their ids."""
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        return []
    failed = []
    runs = client.search_runs(
        [exp.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    for run in runs:
        tags = dict(run.data.tags or {})
        if owner_alive(tags) is not False:
            continue
        client.set_tag(
            run.info.run_id,
            "abalone.failed_reason",
            f"its training process (pid {tags[OWNER_PID]} on {tags[OWNER_HOST]}) died",
        )
        client.set_terminated(run.info.run_id, "FAILED")
        failed.append(run.info.run_id)
    return failed


def recover_store(settings: Settings) -> list[str]:
    """Under the store lock: finish or undo an interrupted promotion, fail stale runs. Returns
    what was done, one line each (also logged as warnings)."""
    done = []
    registry = Registry.from_settings(settings)
    try:
        with store_lock(settings.tracking_uri, settings.home):
            if repaired := registry.repair():
                done.append(repaired)
            for run_id in fail_stale_runs(registry.client, settings.experiment_name):
                done.append(f"marked run {run_id} FAILED: its training process had died")
    except MlflowException as err:
        raise ServiceError(f"MLflow recovery step failed: {err}") from err
    for line in done:
        log.warning("%s", line)
    return done
