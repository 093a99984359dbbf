"""Drift statistics (jobs.drift): a replay from the same generator is quiet, real shifts are named."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jobs.adapters.settings import STACKS
from jobs.core.drift import Thresholds, assess, chi_square, ks_test, psi
from jobs.core.errors import UsageError
from jobs.core.profile import build_profile
from jobs.core.schema import NUMERIC_FEATURES
from jobs.core.synthetic import make_abalone

WEIGHTS = ["whole_weight", "shucked_weight", "viscera_weight", "shell_weight"]


def quick_model(frame):
    """A fast stand-in regressor for the predictions (drift does not depend on which model)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    pre = ColumnTransformer(
        [("sex", OneHotEncoder(handle_unknown="ignore"), ["sex"])], remainder="passthrough"
    )
    return Pipeline([("pre", pre), ("reg", Ridge(alpha=1e-3))]).fit(
        frame.drop(columns="rings"), frame["rings"]
    )


@pytest.fixture(scope="module")
def trained():
    train = make_abalone(2000, seed=0)
    feats = train.drop(columns="rings")
    model = quick_model(train)
    return model, build_profile(feats, model.predict(feats))


def _batch(model, frame):
    feats = frame.drop(columns="rings", errors="ignore")
    return feats, model.predict(feats)


def test_psi_basics():
    assert psi([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    assert psi([0.5, 0.5], [0.9, 0.1]) > 0.2
    # an empty bin is floored, not infinite
    assert math.isfinite(psi([0.5, 0.5], [1.0, 0.0]))
    with pytest.raises(UsageError, match="bins"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_ks_and_chi_square():
    rng = np.random.default_rng(0)
    stat, p = ks_test(rng.normal(size=500), rng.normal(size=500))
    assert p > 0.01 and 0 <= stat < 0.15
    stat, p = ks_test(rng.normal(size=500), rng.normal(1.0, size=500))
    assert p < 1e-6
    assert all(math.isnan(v) for v in ks_test([], [1.0]))
    _, p = chi_square({"M": 0.4, "F": 0.3, "I": 0.3}, {"M": 40, "F": 30, "I": 30})
    assert p > 0.5
    _, p = chi_square({"M": 0.4, "F": 0.3, "I": 0.3}, {"I": 100})
    assert p < 1e-10


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_replay_of_held_out_sample_shows_no_drift(trained, seed):
    model, profile = trained
    feats, preds = _batch(model, make_abalone(630, seed=seed))  # ~ a test split
    result = assess(profile, feats, preds, STACKS["dev"])
    assert result.status == "ok", result.message
    assert not result.drift
    assert result.drifting_features == []
    assert result.score is not None and result.score < 0.1
    assert all(f.status in ("ok", "warn") for f in result.features.values())


def test_small_replays_do_not_raise_false_alarms(trained):
    model, profile = trained
    alarms = [
        seed
        for seed in range(40, 70)
        if assess(profile, *_batch(model, make_abalone(60, seed=seed)), STACKS["dev"]).drift
    ]
    assert len(alarms) <= 1, alarms


def test_juveniles_only_batch_is_flagged(trained):
    model, profile = trained
    frame = make_abalone(1200, seed=21)
    juveniles = frame[frame["sex"] == "I"].head(300)
    result = assess(profile, *_batch(model, juveniles), STACKS["dev"])
    assert result.drift and result.status == "drift"
    assert "sex" in result.drifting_features
    assert {"length", "whole_weight"} <= set(result.drifting_features)
    assert result.prediction_drift
    assert "sex" in result.message


def test_weights_scaled_are_flagged_and_only_weights_named(trained):
    model, profile = trained
    frame = make_abalone(500, seed=22)
    frame[WEIGHTS] = frame[WEIGHTS] * 1.5
    result = assess(profile, *_batch(model, frame), STACKS["prd"])
    assert result.drift
    assert set(result.drifting_features) == set(WEIGHTS)
    for name in ("sex", "length", "diameter", "height"):
        assert result.features[name].status != "drift"
    ww = result.features["whole_weight"]
    assert ww.psi > STACKS["prd"].drift_psi and ww.pvalue < 1e-6
    assert ww.live_mean == pytest.approx(1.5 * ww.reference_mean, rel=0.15)


def test_too_few_rows_claims_nothing(trained):
    model, profile = trained
    frame = make_abalone(300, seed=23)
    frame[WEIGHTS] = frame[WEIGHTS] * 3  # a huge shift, but only 20 rows
    result = assess(profile, *_batch(model, frame.head(20)), STACKS["dev"])
    assert result.status == "insufficient_data"
    assert not result.drift and result.drifting_features == []
    assert "not enough data" in result.message and "20" in result.message


def test_thresholds_follow_the_stack_policy(trained):
    model, profile = trained
    frame = make_abalone(500, seed=24)
    frame["length"] = frame["length"] * 1.08  # a moderate shift
    feats, preds = _batch(model, frame)
    lax = assess(profile, feats, preds, Thresholds(drift_psi=5.0, drift_ks_pvalue=0.01))
    strict = assess(profile, feats, preds, Thresholds(drift_psi=0.05, drift_ks_pvalue=0.01))
    assert "length" not in lax.drifting_features
    assert "length" in strict.drifting_features


def test_missing_columns_and_unseen_categories_are_reported(trained):
    _model, profile = trained
    frame = make_abalone(200, seed=25).drop(columns=["rings", "height"])
    frame.loc[:9, "sex"] = "X"
    result = assess(profile, frame, None)
    assert result.features["height"].status == "n/a"
    assert "missing" in result.features["height"].note
    assert "X" in result.features["sex"].note
    assert result.prediction is None


def test_result_is_json_serialisable(trained):
    model, profile = trained
    result = assess(profile, *_batch(model, make_abalone(100, seed=26)))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(data["features"]) == {"sex", *NUMERIC_FEATURES}
    assert data["thresholds"]["drift_psi"] == 0.2
    assert len(data["features"]["length"]["expected"]) == len(data["features"]["length"]["actual"])


def test_bad_thresholds_raise():
    with pytest.raises(UsageError):
        Thresholds(drift_psi=0)
    with pytest.raises(UsageError):
        Thresholds(drift_ks_pvalue=1.5)


def test_real_data_test_split_replay_is_quiet_and_shifts_are_named(real_data_path):
    """On the UCI file: the test split of the seeded split shows no drift against a profile of the
    train split; juveniles only, or weights x1.5, are flagged with the right columns named."""
    import pandas as pd

    from jobs.core.data import split
    from jobs.core.schema import COLUMNS

    parts = split(pd.read_csv(real_data_path, header=None, names=list(COLUMNS)), seed=0)
    train = parts["train"].drop(columns="rings")
    model = quick_model(parts["train"])
    profile = build_profile(train, model.predict(train))
    test = parts["test"].drop(columns="rings")
    policy = STACKS["prd"]

    replay = assess(profile, test, model.predict(test), policy)
    assert replay.status == "ok", replay.message
    assert replay.score < 0.1

    juveniles = test[test["sex"] == "I"]
    shifted = assess(profile, juveniles, model.predict(juveniles), policy)
    assert {"sex", "length", "whole_weight"} <= set(shifted.drifting_features)

    heavy = test.copy()
    heavy[WEIGHTS] = heavy[WEIGHTS] * 1.5
    heavier = assess(profile, heavy, model.predict(heavy), policy)
    assert set(heavier.drifting_features) == set(WEIGHTS)
