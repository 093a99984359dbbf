"""The model pipeline (DESIGN §5): raw canonical rows in, rings out, deterministic, picklable."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pytest

from jobs.core.errors import RejectedError
from jobs.core.evaluate import regression_metrics
from jobs.core.model import DEFAULT_PARAMS, PARAM_TYPES, ModelInputError, build_model, parse_params
from jobs.core.schema import FEATURES, TARGET
from jobs.core.synthetic import make_abalone


@pytest.fixture(scope="module")
def frames():
    train = make_abalone(500, seed=1)
    test = make_abalone(120, seed=2)
    return train, test


@pytest.fixture(scope="module")
def fitted(frames):
    train, _ = frames
    return build_model().fit(train[list(FEATURES)], train[TARGET])


def test_predicts_one_float_per_row_and_beats_the_mean(fitted, frames):
    train, test = frames
    pred = fitted.predict(test[list(FEATURES)])
    assert pred.shape == (len(test),)
    assert pred.dtype.kind == "f"
    ours = regression_metrics(test[TARGET], pred)["rmse"]
    mean_only = regression_metrics(test[TARGET], np.full(len(test), train[TARGET].mean()))["rmse"]
    assert ours < 0.8 * mean_only


def test_takes_raw_rows_with_header_names_in_any_order_and_extra_columns(fitted, frames):
    _, test = frames
    rows = test.iloc[:5]  # includes the rings column
    shuffled = rows[list(reversed(rows.columns))]
    np.testing.assert_allclose(fitted.predict(shuffled), fitted.predict(rows[list(FEATURES)]))
    one = fitted.predict(test[list(FEATURES)].iloc[[0]])
    assert one.shape == (1,)


def test_predictions_clipped_to_the_ring_range(fitted, frames):
    _, test = frames
    tiny = test[list(FEATURES)].iloc[[0]].copy()
    tiny[list(FEATURES[1:])] = 0.0
    huge = test[list(FEATURES)].iloc[[0]].copy()
    huge[list(FEATURES[1:])] = 50.0
    lo, hi = fitted.predict(tiny)[0], fitted.predict(huge)[0]
    assert DEFAULT_PARAMS["clip_min"] <= lo <= DEFAULT_PARAMS["clip_max"]
    assert DEFAULT_PARAMS["clip_min"] <= hi <= DEFAULT_PARAMS["clip_max"]


def test_unknown_sex_is_rejected_with_a_clear_error(fitted, frames):
    _, test = frames
    rows = test[list(FEATURES)].iloc[:3].copy()
    rows["sex"] = rows["sex"].astype(object)
    rows.iloc[1, 0] = "X"
    with pytest.raises(ModelInputError, match=r"unknown sex value\(s\) \['X'\] in 1 row"):
        fitted.predict(rows)
    assert issubclass(ModelInputError, RejectedError)


def test_lowercase_sex_is_accepted(fitted, frames):
    _, test = frames
    rows = test[list(FEATURES)].iloc[:3].copy()
    lower = rows.assign(sex=rows["sex"].str.lower())
    np.testing.assert_allclose(fitted.predict(lower), fitted.predict(rows))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.drop(columns=["height"]), r"lack column\(s\) \['height'\]"),
        (lambda r: r.assign(height=np.nan), "non-finite measurements"),
        (lambda r: r.assign(height="tall"), "must be numeric"),
        (lambda r: r.to_numpy(), "takes a DataFrame"),
    ],
)
def test_bad_rows_raise_model_input_error(fitted, frames, mutate, message):
    _, test = frames
    with pytest.raises(ModelInputError, match=message):
        fitted.predict(mutate(test[list(FEATURES)].iloc[:2].copy()))


def test_same_seed_same_model_and_pickles(frames, fitted):
    train, test = frames
    again = build_model().fit(train[list(FEATURES)], train[TARGET])
    x = test[list(FEATURES)]
    np.testing.assert_array_equal(again.predict(x), fitted.predict(x))
    buf = io.BytesIO()
    joblib.dump(fitted, buf)
    buf.seek(0)
    np.testing.assert_array_equal(joblib.load(buf).predict(x), fitted.predict(x))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict(x), fitted.predict(x))


def test_params_override_defaults_and_parse_cli_strings(frames):
    parsed = parse_params({"svr_C": "3", "mlp_count": "2", "numeric_transform": "log"})
    assert parsed == {"svr_C": 3.0, "mlp_count": 2, "numeric_transform": "log"}
    assert set(PARAM_TYPES) == set(DEFAULT_PARAMS)
    model = build_model(parsed)
    assert model.named_steps["features"].numeric_transform == "log"
    train, _ = frames
    svr_only = build_model({"estimators": "svr"}).fit(train[list(FEATURES)], train[TARGET])
    assert svr_only.predict(train[list(FEATURES)].iloc[:2]).shape == (2,)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"svr_C": "ten"}, "svr_C"),
        ({"no_such": "1"}, "unknown hyperparameter"),
        ({"estimators": "svr,xgb"}, "estimators"),
        ({"numeric_transform": "sqrt"}, "numeric_transform"),
        ({"svr_weight": "1.5"}, "svr_weight"),
    ],
)
def test_bad_params_are_rejected(raw, message):
    from jobs.core.errors import UsageError

    with pytest.raises(UsageError, match=message):
        build_model(parse_params(raw))
