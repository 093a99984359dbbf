"""Per-stack thresholds and the registry's names (DESIGN §6, §7). Pure constants and a frozen model;
stack differences live only here and in ``Pulumi.<stack>.yaml``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_NAME = "abalone-age"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"

Env = Literal["dev", "prd"]


class StackPolicy(BaseModel):
    """Thresholds of one stack (``dev`` or ``prd``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
