"""Regression metrics on hand-computed examples and the gate's paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jobs.core.errors import UsageError
from jobs.core.evaluate import MetricsInputError, paired_bootstrap_rmse_diff, regression_metrics


def test_metrics_match_hand_computed_values():
    y = [1.0, 2.0, 3.0, 4.0]
    p = [2.0, 2.0, 3.0, 2.0]  # errors 1, 0, 0, -2
    m = regression_metrics(y, p)
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 4))
    assert m["mae"] == pytest.approx(3 / 4)
    assert m["r2"] == pytest.approx(1 - 5 / 5)  # ss_tot = 2.25+0.25+0.25+2.25 = 5
    expected_rmsle = math.sqrt(
        ((math.log(3) - math.log(2)) ** 2 + (math.log(3) - math.log(5)) ** 2) / 4
    )
    assert m["rmsle"] == pytest.approx(expected_rmsle)


def test_perfect_predictions_score_zero_error_and_r2_one():
    m = regression_metrics([5, 7, 9], [5, 7, 9])
    assert m == {"rmse": 0.0, "mae": 0.0, "r2": 1.0, "rmsle": 0.0}


def test_constant_labels_give_nan_r2_not_a_crash():
    assert math.isnan(regression_metrics([3, 3], [3, 4])["r2"])


@pytest.mark.parametrize(("y", "p"), [([1, 2], [1]), ([], [])])
def test_metrics_reject_mismatched_or_empty_arrays(y, p):
    with pytest.raises(MetricsInputError, match="equal non-empty"):
        regression_metrics(y, p)
    assert issubclass(MetricsInputError, UsageError)


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(1)
    y = rng.integers(3, 20, size=500).astype(float)
    good = y + rng.normal(0, 2.0, size=y.size)
    return y, good, rng


def test_identical_predictions_give_zero_difference(labels):
    y, good, _ = labels
    out = paired_bootstrap_rmse_diff(y, good, good.copy(), n_boot=300)
    assert out["diff"] == 0.0
    assert out["diff_mean"] == pytest.approx(0.0, abs=1e-12)
    assert out["ci_low"] <= 0.0 <= out["ci_high"]
    assert out["p_worse"] == pytest.approx(0.5)
    assert out["rmse_candidate"] == out["rmse_champion"]
    assert out["n_boot"] == 300


def test_clearly_worse_candidate_is_flagged(labels):
    y, good, rng = labels
    worse = y + rng.normal(0, 3.0, size=y.size)
    out = paired_bootstrap_rmse_diff(y, worse, good, n_boot=500)
    assert out["diff"] > 0.5
    assert out["ci_low"] > 0
    assert out["p_worse"] > 0.99
    flipped = paired_bootstrap_rmse_diff(y, good, worse, n_boot=500)
    assert flipped["p_worse"] < 0.01
    assert flipped["ci_high"] < 0


def test_bootstrap_is_deterministic_per_seed_and_ci_brackets_the_mean(labels):
    y, good, rng = labels
    other = good + rng.normal(0, 0.3, size=y.size)
    a = paired_bootstrap_rmse_diff(y, other, good, n_boot=400, seed=7)
    b = paired_bootstrap_rmse_diff(y, other, good, n_boot=400, seed=7)
    c = paired_bootstrap_rmse_diff(y, other, good, n_boot=400, seed=8)
    assert a == b
    assert a != c
    assert a["ci_low"] <= a["diff_mean"] <= a["ci_high"]
    assert a["diff"] == pytest.approx(
        regression_metrics(y, other)["rmse"] - regression_metrics(y, good)["rmse"]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pred_champion": np.ones(3)}, "equal non-empty"),
        ({"n_boot": 0}, "n_boot"),
        ({"pred_candidate": np.array([1.0, np.nan, 1.0, 1.0])}, "finite"),
    ],
)
def test_bootstrap_rejects_bad_input(kwargs, message):
    args = {
        "y_true": np.arange(4.0),
        "pred_candidate": np.arange(4.0),
        "pred_champion": np.arange(4.0),
    } | kwargs
    with pytest.raises(MetricsInputError, match=message):
        paired_bootstrap_rmse_diff(**args)
