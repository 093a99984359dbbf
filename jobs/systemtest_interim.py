"""Interim system test for gate rule 4 (issue 3), until ``jobs.systemtest`` serves the model through
the inference contract: load the registered version through ``models:/``, score golden rows and the
test split, and check the test RMSE is within tolerance of the RMSE logged at training.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from jobs.evaluate import regression_metrics
from jobs.schema import FEATURES, TARGET

# A few rows of the published UCI file (sex, 7 measurements), covering the three sexes and the size range.
GOLDEN_ROWS: tuple[tuple, ...] = (
    ("M", 0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15),
    ("F", 0.53, 0.42, 0.135, 0.677, 0.2565, 0.1415, 0.21),
    ("I", 0.33, 0.255, 0.08, 0.205, 0.0895, 0.0395, 0.055),
    ("M", 0.71, 0.555, 0.195, 1.9485, 0.9455, 0.3765, 0.495),
    ("I", 0.075, 0.055, 0.01, 0.002, 0.001, 0.0005, 0.0015),
)
PLAUSIBLE_RINGS = (0.0, 40.0)


def golden_frame() -> pd.DataFrame:
    frame = pd.DataFrame(list(GOLDEN_ROWS), columns=list(FEATURES))
    frame["sex"] = frame["sex"].astype(object)
    return frame


@dataclass
class InterimSystemTestResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    rmse: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None

    def to_tags(self) -> dict[str, str]:
        return {
            "systemtest.passed": str(self.passed).lower(),
            "systemtest.kind": "interim-models-uri",
            "systemtest.rmse": "none" if self.rmse is None else f"{self.rmse:.4f}",
            "systemtest.p50_ms": "none" if self.p50_ms is None else f"{self.p50_ms:.2f}",
            "systemtest.p99_ms": "none" if self.p99_ms is None else f"{self.p99_ms:.2f}",
        }


def check_model(
    model, test_frame: pd.DataFrame, *, expected_rmse: float, tolerance: float
) -> InterimSystemTestResult:
    """The checks on an already-loaded model (pure apart from timing)."""
    reasons: list[str] = []
    ok = True
    golden = golden_frame()
    pred = np.asarray(model.predict(golden), dtype=float)
    lo, hi = PLAUSIBLE_RINGS
    if pred.shape != (len(golden),) or not np.all(np.isfinite(pred)):
        ok = False
        reasons.append(
            f"golden rows: expected {len(golden)} finite predictions, got {pred.tolist()}"
        )
    elif np.any((pred < lo) | (pred > hi)):
        ok = False
        reasons.append(
            f"golden rows: predictions outside {lo:g}..{hi:g} rings: {np.round(pred, 2).tolist()}"
        )
    else:
        timings = []
        singles = []
        for i in range(len(golden)):
            start = time.perf_counter()
            singles.append(float(model.predict(golden.iloc[[i]])[0]))
            timings.append((time.perf_counter() - start) * 1000)
        if not np.allclose(singles, pred, rtol=1e-9, atol=1e-9):
            ok = False
            reasons.append("golden rows: single-row predictions differ from the batch predictions")
        else:
            reasons.append(
                f"{len(golden)} golden rows answered ({np.round(pred, 1).tolist()} rings)"
            )
    p50 = p99 = None
    if ok:
        p50 = float(np.percentile(timings, 50))
        p99 = float(np.percentile(timings, 99))
    test_pred = np.asarray(model.predict(test_frame[list(FEATURES)]), dtype=float)
    rmse = regression_metrics(test_frame[TARGET].to_numpy(dtype=float), test_pred)["rmse"]
    gap = abs(rmse - expected_rmse)
    if math.isfinite(rmse) and gap <= tolerance:
        reasons.append(
            f"test split rmse {rmse:.4f} within {tolerance:g} of logged {expected_rmse:.4f} ({len(test_frame)} rows)"
        )
    else:
        ok = False
        reasons.append(
            f"test split rmse {rmse:.4f} differs from logged {expected_rmse:.4f} by {gap:.4f} > {tolerance:g}"
        )
    return InterimSystemTestResult(passed=ok, reasons=reasons, rmse=rmse, p50_ms=p50, p99_ms=p99)


def run_interim_system_test(
    registry, version: str, test_frame: pd.DataFrame, *, expected_rmse: float, tolerance: float
) -> InterimSystemTestResult:
    """Load ``models:/<name>/<version>`` through the registry and run :func:`check_model`."""
    from jobs.errors import ServiceError

    try:
        model = registry.load_model(version)
    except ServiceError as err:
        return InterimSystemTestResult(passed=False, reasons=[f"cannot load the model: {err}"])
    return check_model(model, test_frame, expected_rmse=expected_rmse, tolerance=tolerance)
