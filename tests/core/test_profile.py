"""The reference profile logged at training time (jobs.profile)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobs.core.errors import SourceError, UsageError
from jobs.core.profile import (
    bin_counts,
    build_profile,
    dumps_profile,
    load_profile,
    loads_profile,
)
from jobs.core.schema import NUMERIC_FEATURES
from jobs.core.synthetic import make_abalone


@pytest.fixture(scope="module")
def train():
    return make_abalone(2500, seed=3)


@pytest.fixture(scope="module")
def profile(train):
    return build_profile(train.drop(columns="rings"), train["rings"].to_numpy(float) + 0.25)


def test_profile_is_json_and_round_trips(profile, tmp_path):
    text = dumps_profile(profile)
    path = tmp_path / "reference_profile.json"
    path.write_text(text)
    again = load_profile(path)
    assert again == json.loads(text)
    assert again["n_rows"] == 2500
    assert again["schema_version"] == 1
    assert set(again["features"]) == {"sex", *NUMERIC_FEATURES}


def test_numeric_bins_cover_training_data_evenly(profile, train):
    for name in NUMERIC_FEATURES:
        spec = profile["features"][name]
        assert len(spec["expected"]) == len(spec["edges"]) + 1
        assert sum(spec["expected"]) == pytest.approx(1.0, abs=1e-4)
        # quantile bins: no bin holds much more than its share of rows
        assert max(spec["expected"]) < 0.2, name
        assert spec["edges"] == sorted(spec["edges"])
        assert spec["min"] <= spec["quantiles"]["0.5"] <= spec["max"]
        assert spec["mean"] == pytest.approx(train[name].mean(), rel=1e-4)


def test_outer_bins_are_open_ended(profile):
    edges = profile["features"]["whole_weight"]["edges"]
    counts = bin_counts(np.array([-5.0, 1e6]), edges)
    assert counts[0] == 1 and counts[-1] == 1


def test_sample_is_bounded_and_seeded(train):
    feats = train.drop(columns="rings")
    a = build_profile(feats, train["rings"], sample_size=200, seed=7)
    b = build_profile(feats, train["rings"], sample_size=200, seed=7)
    assert len(a["features"]["length"]["sample"]) == 200
    assert a["features"]["length"]["sample"] == b["features"]["length"]["sample"]
    assert len(a["prediction"]["sample"]) == 200


def test_sex_proportions(profile, train):
    expected = profile["features"]["sex"]["expected"]
    assert sum(expected.values()) == pytest.approx(1.0, abs=1e-4)
    assert expected["I"] == pytest.approx((train["sex"] == "I").mean(), abs=1e-5)


def test_prediction_profile(profile, train):
    assert profile["prediction"]["mean"] == pytest.approx(train["rings"].mean() + 0.25, rel=1e-4)


def test_bad_inputs_raise_specific_errors(train, tmp_path):
    feats = train.drop(columns="rings")
    with pytest.raises(UsageError, match="missing feature columns"):
        build_profile(feats.drop(columns="height"), train["rings"])
    with pytest.raises(UsageError, match="predictions for"):
        build_profile(feats, train["rings"][:10])
    with pytest.raises(SourceError, match="not found"):
        load_profile(tmp_path / "nope.json")
    with pytest.raises(UsageError, match="not valid JSON"):
        loads_profile("{nope")
    with pytest.raises(UsageError, match="not an abalone reference profile"):
        load_profile({"kind": "other"})
