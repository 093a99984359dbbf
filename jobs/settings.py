"""Typed settings, loaded once at the edge (CLI, job entry) from flags and environment.

Environment variables:

- ``ABALONE_HOME`` (default ``./.mlops``): the embedded local default (DESIGN §4).
- ``ABALONE_LAKE``: lake root; a directory or ``s3://bucket/prefix`` (default ``$ABALONE_HOME/lake``).
- ``ABALONE_REPORTS``: where data-quality reports go (default ``$ABALONE_HOME/reports`` for a local
  lake, ``<lake>/reports`` for an S3 lake).
- ``MLFLOW_TRACKING_URI``: tracking/registry store (default ``sqlite:///$ABALONE_HOME/mlflow.db``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UCI_ABALONE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/abalone/abalone.data"
MODEL_NAME = "abalone-age"

Env = Literal["dev", "prd"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StackPolicy(_Frozen):
    """Per-stack thresholds (DESIGN §6, §7). Stack differences live only here and in Pulumi.<stack>.yaml."""

    rmse_ceiling: float = Field(
        gt=0, description="Gate rule 2: candidate test RMSE must be ≤ this."
    )
    champion_tolerance: float = Field(
        ge=0, description="Gate rule 3: candidate may be worse than champion by at most this RMSE."
    )
    require_approval: bool = Field(description="Gate rule 5: a person must approve the version.")
    system_test_tolerance: float = Field(
        default=0.05, ge=0, description="Gate rule 4: served RMSE may differ from logged by this."
    )
    max_warning_fraction: float = Field(
        default=0.02, ge=0, le=1, description="Ingest: largest fraction of warning rows accepted."
    )
    drift_psi: float = Field(default=0.2, gt=0, description="Monitor: PSI above this is drift.")
    drift_ks_pvalue: float = Field(default=0.01, gt=0, lt=1, description="Monitor: KS p-value.")


STACKS: dict[str, StackPolicy] = {
    "dev": StackPolicy(rmse_ceiling=2.30, champion_tolerance=0.05, require_approval=False),
    "prd": StackPolicy(rmse_ceiling=2.20, champion_tolerance=0.02, require_approval=True),
}


class FetchLimits(_Frozen):
    timeout_s: float = Field(default=30.0, gt=0)
    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)


class Settings(_Frozen):
    """Everything a job needs to know about where things live. Build with :func:`load_settings`."""

    home: Path
    lake: str
    reports: str
    tracking_uri: str
    env: Env = "dev"
    seed: int = 0
    fetch: FetchLimits = FetchLimits()

    @property
    def policy(self) -> StackPolicy:
        return STACKS[self.env]

    @property
    def experiment_name(self) -> str:
        return f"abalone-{self.env}"

    @property
    def capture_dir(self) -> Path:
        return self.home / "capture"

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"


def load_settings(env: Env = "dev", environ: dict[str, str] | None = None, **overrides) -> Settings:
    """Resolve settings from the environment (``environ`` defaults to ``os.environ``) and overrides."""
    environ = dict(os.environ if environ is None else environ)
    home = Path(overrides.pop("home", None) or environ.get("ABALONE_HOME") or ".mlops").absolute()
    lake = overrides.pop("lake", None) or environ.get("ABALONE_LAKE") or str(home / "lake")
    if lake.startswith("s3://"):
        default_reports = lake.rstrip("/") + "/reports"
    else:
        lake = str(Path(lake).absolute())
        default_reports = str(home / "reports")
    reports = overrides.pop("reports", None) or environ.get("ABALONE_REPORTS") or default_reports
    tracking = (
        overrides.pop("tracking_uri", None)
        or environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{home / 'mlflow.db'}"
    )
    if env not in STACKS:
        from jobs.errors import UsageError

        raise UsageError(f"unknown stack {env!r}; choose one of {', '.join(STACKS)}")
    return Settings(
        home=home, lake=lake, reports=reports, tracking_uri=tracking, env=env, **overrides
    )
