"""The seed model the endpoints start with, built by the program when absent.

Pulumi owns the staging and production endpoints (their data capture, autoscaling, blue/green
rollback alarms, and their removal on ``pulumi destroy``), and a SageMaker endpoint cannot exist
without a model, so the first ``pulumi up`` needs one before any pipeline run. Rather than create
the endpoints at first promotion (outside Pulumi's state, so ``destroy`` would leave them running
and billing), the program trains a seed model itself: ``abalone run`` (``python -m jobs run
--json``, the same local pipeline a newcomer runs: validate, train, gate) in a throwaway
``ABALONE_HOME``, on the CLI's default source (the UCI abalone file) or a given one (config
``seedModelSource``), then packs the model directory ``jobs/train.py`` wrote as ``model.tar.gz``
(sorted entries, zero mtimes). The seed is never registered in the stack's MLflow; the first
promoted model replaces it through the pipeline's ``UpdateEndpoint``.

Cached by content: ``<build dir>/seed-model-<key>.tar.gz``, where the key digests every file of
``jobs/`` and ``validation/`` (the training code and any data shipped with it), the model-runtime
pins, the Python version and the source. An unchanged tree reuses the file; training is seeded, so
a rebuild gives the same model (``model.joblib`` byte for byte; ``metadata.json`` and the
reference profile carry the run's id and time).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from components.packaging import REPO_ROOT, reproducible_targz, runtime_constraints, tree_files

TIMEOUT_S = 900


class SeedModelError(RuntimeError):
    """The seed model could not be built (the message says which step failed and why)."""


def seed_key(root: Path = REPO_ROOT, source: str | None = None) -> str:
    digest = hashlib.sha256()
    for rel in tree_files(root):
        digest.update(rel.encode() + b"\0")
        digest.update((root / rel).read_bytes())
    digest.update("\n".join(runtime_constraints()).encode())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    if source:
        local = Path(source)
        digest.update(local.read_bytes() if local.is_file() else source.encode())
    return digest.hexdigest()[:16]


def seed_model_file(configured: str, source: str, *, root: Path = REPO_ROOT) -> Path:
    """The seed model of a deployment: config ``seedModelPath`` when set (relative to the
    repository), else the one built for this tree under ``<root>/build``."""
    if configured:
        return root / configured
    return seed_model(root / "build", root=root, source=source or None)


def seed_model(build_dir: Path, *, root: Path = REPO_ROOT, source: str | None = None) -> Path:
    """The cached seed ``model.tar.gz`` for this tree, built first if absent."""
    target = build_dir / f"seed-model-{seed_key(root, source)}.tar.gz"
    if target.is_file():
        return target
    build_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="abalone-seed-") as home:
        model_dir = _train(Path(home), root, source)
        data = _pack(model_dir)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, target)  # never a half-written seed under the final name
    return target


def _train(home: Path, root: Path, source: str | None) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ABALONE_", "MLFLOW_TRACKING"))}
    env.update(
        ABALONE_HOME=str(home),
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        GX_ANALYTICS_ENABLED="false",
    )
    command = [sys.executable, "-m", "jobs", "run", "--json", "--env", "dev"]
    if source:
        command += ["--source", source]
    try:
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as err:
        raise SeedModelError(f"seed model: `abalone run` took over {TIMEOUT_S} s") from err
    try:
        model_dir = json.loads(done.stdout)["model_dir"]
    except (ValueError, KeyError, TypeError):
        model_dir = None
    if not model_dir or not Path(model_dir).is_dir():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SeedModelError(
            f"seed model: `abalone run` (exit {done.returncode}) trained no model: "
            + " | ".join(tail)
        )
    return Path(model_dir)


def _pack(model_dir: Path) -> bytes:
    """``model_dir``'s files as a reproducible ``model.tar.gz`` (SageMaker's model archive)."""
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    return reproducible_targz((p.relative_to(model_dir).as_posix(), p.read_bytes()) for p in files)
