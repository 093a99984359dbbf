"""The SageMaker script-mode contract of the training job (DESIGN §5): channels, lineage,
hyperparameters as strings, and where results and failures go.

- ``SM_CHANNEL_TRAIN``, ``SM_CHANNEL_VALIDATION``, ``SM_CHANNEL_TEST``: directories holding
  ``train.csv``, ``validation.csv``, ``test.csv`` (header row, canonical columns);
- ``SM_MODEL_DIR``: receives ``model.joblib``, ``metadata.json``, ``reference_profile.json``;
- ``SM_OUTPUT_DATA_DIR``: receives ``result.json`` or, on failure, ``error.json``.

Lineage comes from ``--dataset-version``-style flags, else ``ABALONE_DATASET_VERSION``-style
variables, else ``manifest.json`` next to ``train.csv``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from jobs.core import model as model_lib
from jobs.core.data import canonical_frame, check_enough_rows
from jobs.core.errors import RejectedError, SourceError, UsageError
from jobs.core.redact import redact
from jobs.core.schema import SPLITS

LINEAGE_FLAGS = {
    "dataset_version": "ABALONE_DATASET_VERSION",
    "ingest_id": "ABALONE_INGEST_ID",
    "data_quality": "ABALONE_DATA_QUALITY",
    "report_path": "ABALONE_REPORT_PATH",
    "summary_json": "ABALONE_SUMMARY_JSON",
}
CHANNEL_ENV = {
    "train": "SM_CHANNEL_TRAIN",
    "validation": "SM_CHANNEL_VALIDATION",
    "test": "SM_CHANNEL_TEST",
}


@dataclass(frozen=True)
class Channels:
    train: Path
    validation: Path
    test: Path

    @classmethod
    def single(cls, directory: Path) -> Channels:
        """All three channels in one directory (a curated dataset version)."""
        return cls(Path(directory), Path(directory), Path(directory))

    def path(self, split: str) -> Path:
        return Path(getattr(self, split)) / f"{split}.csv"


@dataclass(frozen=True)
class Lineage:
    dataset_version: str | None = None
    ingest_id: str | None = None
    data_quality: str | None = None
    report_path: str | None = None
    summary_json: str | None = None


@dataclass
class TrainResult:
    run_id: str
    model_version: str | None
    metrics: dict[str, float]
    params: dict[str, Any]
    dataset_version: str
    data_quality: str
    experiment_id: str
    experiment_name: str
    model_uri: str | None
    model_dir: str
    duration_s: float
    fit_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``--name value`` / ``--name=value`` pairs → (hyperparameters, lineage overrides)."""
    raw: dict[str, str] = {}
    lineage: dict[str, str] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or len(item) == 2:
            raise UsageError(f"unexpected argument {item!r}; use --name value")
        if "=" in item:
            key, value = item[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items) or items[i + 1].startswith("--"):
                raise UsageError(f"argument {item} needs a value")
            key, value = item[2:], items[i + 1]
            i += 2
        key = key.replace("-", "_")
        if key in LINEAGE_FLAGS:
            lineage[key] = value
        else:
            raw[key] = value
    return model_lib.parse_params(raw), lineage


def read_split(channels: Channels, split: str) -> pd.DataFrame:
    path = channels.path(split)
    return canonical_frame(_read_csv(path, split), str(path))


def read_splits(channels: Channels) -> dict[str, pd.DataFrame]:
    """The three splits, checked and typed; fewer than ``MIN_DATASET_ROWS`` rows in all is a
    :class:`SourceError` saying so ("not enough rows to train"), before any split is judged."""
    raw = {split: _read_csv(channels.path(split), split) for split in SPLITS}
    try:
        check_enough_rows(sum(len(frame) for frame in raw.values()), "training data")
    except RejectedError as err:
        raise SourceError(str(err)) from None
    return {split: canonical_frame(raw[split], str(channels.path(split))) for split in SPLITS}


def _read_csv(path: Path, split: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError as err:
        raise SourceError(f"{split} channel has no {path.name}: {path}") from err
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise SourceError(f"cannot read {path}: {err}") from err


def resolve_lineage(
    channels: Channels,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Lineage:
    """Flags, then environment, then ``manifest.json`` beside ``train.csv``."""
    environ = environ or {}
    manifest: dict[str, Any] = {}
    mpath = Path(channels.train) / "manifest.json"
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as err:
            raise SourceError(f"cannot read {mpath}: {err}") from err
    from_manifest = {
        "dataset_version": manifest.get("dataset_version"),
        "ingest_id": manifest.get("ingest_id"),
        "data_quality": manifest.get("data_quality"),
        "report_path": manifest.get("report_html"),
        "summary_json": manifest.get("summary_json"),
    }
    values = {
        key: (overrides or {}).get(key) or environ.get(var) or from_manifest.get(key)
        for key, var in LINEAGE_FLAGS.items()
    }
    return Lineage(**values)


def channels_from_env(environ: Mapping[str, str]) -> tuple[Channels, Path, Path]:
    needed = [*CHANNEL_ENV.values(), "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR"]
    missing = [var for var in needed if not environ.get(var)]
    if missing:
        raise UsageError(
            f"missing environment variable(s) {', '.join(missing)} (SageMaker script mode)"
        )
    channels = Channels(*(Path(environ[CHANNEL_ENV[s]]) for s in SPLITS))
    return channels, Path(environ["SM_MODEL_DIR"]), Path(environ["SM_OUTPUT_DATA_DIR"])


def write_failure(err: BaseException, environ: Mapping[str, str]) -> None:
    message = redact(str(err))  # no URL credentials in the failure files
    payload = {
        "type": type(err).__name__,
        "message": message,
        "exit_code": getattr(err, "exit_code", 1),
    }
    try:
        if environ.get("SM_OUTPUT_DATA_DIR"):
            write_json(Path(environ["SM_OUTPUT_DATA_DIR"]) / "error.json", payload)
        if environ.get("SM_OUTPUT_DIR"):  # SageMaker shows this file as the failure reason
            Path(environ["SM_OUTPUT_DIR"], "failure").write_text(f"{payload['type']}: {message}\n")
    except OSError:
        pass


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)
