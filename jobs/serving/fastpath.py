"""A numpy-only equivalent of ``Pipeline.predict`` for the served model (DESIGN §7 latency).

``Pipeline.predict`` on a one-row DataFrame costs milliseconds, mostly DataFrame handling. For
``jobs.core.model``'s pipeline (its featurizer's own :meth:`~jobs.core.model.AbaloneFeatures.encode`
is called, not re-implemented) and for dense ``ColumnTransformer`` heads of one-hot ``sex`` and
scalers, :func:`compile_fast_path` builds the same computation on arrays. It is checked at load time
to give bit-identical predictions on probe rows; any other structure, or any mismatch, falls back to
``pipeline.predict(DataFrame)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sklearn
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import VotingRegressor
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    StandardScaler,
)
from sklearn.svm import SVR, NuSVR

from jobs.core.contract import Rows
from jobs.core.schema import FEATURES, NUMERIC_FEATURES, SEX_VALUES

log = logging.getLogger(__name__)


def compile_fast_path(
    pipeline: Any,
) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """A numpy-only equivalent of ``pipeline.predict(frame)`` or ``None`` when not applicable.

    Applies to a ``Pipeline`` whose first step is ``jobs.model.AbaloneFeatures`` or a fitted dense
    ``ColumnTransformer`` made of a ``OneHotEncoder`` on ``sex`` and ``StandardScaler``/
    ``MinMaxScaler``/``"passthrough"``/``"drop"`` on measurement columns. Later steps: scalers are
    replicated in numpy, known estimators (TransformedTargetRegressor, VotingRegressor, SVR,
    MLPRegressor, linear models) are called without their per-call input validation, anything
    else through its own ``transform``/``predict`` (finiteness checks skipped: inputs were
    validated). The result is compared with ``pipeline.predict`` on probe rows; a path that is
    not bit-identical is discarded (first the deep one, then the shallow one).
    """
    for deep in (True, False):  # deep: estimators compiled too; shallow: their own predict()
        try:
            fast = _build_fast_path(pipeline, deep=deep)
        except Exception as err:  # an unexpected structure is not an error: use the slow path
            log.info("fast path not built (%s: %s)", type(err).__name__, err)
            continue
        if fast is None:
            return None
        try:
            if _same_predictions(pipeline, fast):
                fast.deep = deep  # type: ignore[attr-defined]  # which variant (tests, logs)
                return fast
            log.warning("fast path (deep=%s) differs from Pipeline.predict; not used", deep)
        except Exception as err:
            log.warning("fast path (deep=%s) self-check failed (%s); not used", deep, err)
    return None


Head = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _build_fast_path(
    pipeline: Any, deep: bool = True
) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:

    if type(pipeline) is not Pipeline or len(pipeline.steps) < 2:
        return None
    head = _compile_head(pipeline.steps[0][1])
    if head is None:
        return None
    tail = [step for _, step in pipeline.steps[1:] if step not in (None, "passthrough")]
    if not tail or any(hasattr(step, "feature_names_in_") for step in tail):
        return None  # later steps fitted on named columns: keep sklearn's own path
    final = tail[-1]
    if not hasattr(final, "predict") or any(not hasattr(s, "transform") for s in tail[:-1]):
        return None
    transforms: list[Callable[[np.ndarray], np.ndarray]] = []
    for step in tail[:-1]:
        if type(step) is StandardScaler:
            scale = _standard(step, None)
            transforms.append(lambda x, scale=scale: scale(None, x))
        else:
            transforms.append(step.transform)

    final_predict = (_compile_estimator(final) if deep else None) or final.predict

    def predict(sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        x = head(sex, numeric)
        with sklearn.config_context(assume_finite=True):
            for transform in transforms:
                x = transform(x)
            return final_predict(x)

    return predict


Predictor = Callable[[np.ndarray], np.ndarray]


def _compile_estimator(est: Any) -> Predictor | None:
    """``est.predict`` minus the per-call input validation, for estimators whose predict is a thin
    shell around a documented computation; ``None`` for anything else. Each replica mirrors the
    scikit-learn source of ``predict`` (checked against 1.9) and is verified bit-for-bit at load."""

    kind = type(est)
    if kind is TransformedTargetRegressor:
        inner = _compile_estimator(est.regressor_) or est.regressor_.predict
        transformer = est.transformer_
        if type(transformer) is FunctionTransformer and not transformer.validate:
            func = transformer.inverse_func or (lambda y: y)
            kwargs = transformer.inv_kw_args or {}

            def inverse(y: np.ndarray) -> np.ndarray:
                return func(y, **kwargs)
        else:
            inverse = transformer.inverse_transform
        squeeze = getattr(est, "_training_dim", None) == 1

        def ttr(x: np.ndarray) -> np.ndarray:
            pred = inner(x)
            out = inverse(pred.reshape(-1, 1) if pred.ndim == 1 else pred)
            if squeeze and out.ndim == 2 and out.shape[1] == 1:
                out = out.squeeze(axis=1)
            return out

        return ttr
    if kind is VotingRegressor:
        parts = [_compile_estimator(e) or e.predict for e in est.estimators_]
        weights = est._weights_not_none
        return lambda x: np.average(np.asarray([p(x) for p in parts]).T, axis=1, weights=weights)
    if kind in (SVR, NuSVR) and not est._sparse and not callable(est.kernel):
        dense_predict = est._dense_predict
        return lambda x: dense_predict(np.ascontiguousarray(x, dtype=np.float64))
    if kind is MLPRegressor:
        return lambda x: est._predict(x, check_input=False)
    if kind in (LinearRegression, Ridge, Lasso, ElasticNet) and np.ndim(est.coef_) == 1:
        coef, intercept = est.coef_, est.intercept_
        return lambda x: x @ coef.T + intercept
    return None


def _compile_head(step: Any) -> Head | None:
    """The first pipeline step (the one that takes the DataFrame) as a numpy function."""

    if type(step) is ColumnTransformer:
        return _column_transformer(step)
    if type(step).__name__ == "AbaloneFeatures":  # jobs.core.model's own feature step
        return _abalone_features(step)
    return None


def _abalone_features(step: Any) -> Head | None:
    """``jobs.core.model.AbaloneFeatures``: its own ``encode`` on the validated request arrays."""
    encode = getattr(step, "encode", None)
    return encode if callable(encode) else None


def _column_transformer(pre: Any) -> Head | None:

    if getattr(pre, "sparse_output_", True):
        return None
    names_in = [str(c) for c in getattr(pre, "feature_names_in_", [])]
    if sorted(names_in) != sorted(FEATURES):
        return None
    numeric_pos = {name: i for i, name in enumerate(NUMERIC_FEATURES)}
    parts: list[Head] = []
    for _name, trans, columns in pre.transformers_:
        cols = _column_names(columns, names_in)
        if cols is None:
            return None
        if trans == "drop" or not cols:
            continue
        if isinstance(trans, str) and trans != "passthrough":
            return None
        if cols == ["sex"]:
            if type(trans) is not OneHotEncoder:
                return None
            parts.append(_one_hot(trans))
            continue
        if "sex" in cols:
            return None
        idx = np.array([numeric_pos[c] for c in cols])
        if type(trans) is FunctionTransformer and trans.func is None:  # remainder="passthrough"
            trans = "passthrough"
        if trans == "passthrough":
            parts.append(lambda sex, num, idx=idx: num[:, idx])
        elif type(trans) is StandardScaler:
            parts.append(_standard(trans, idx))
        elif type(trans) is MinMaxScaler and not trans.clip:
            parts.append(_minmax(trans, idx))
        else:
            return None

    def transform(sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        return np.hstack([part(sex, numeric) for part in parts])

    return transform


def _column_names(columns: Any, names_in: list[str]) -> list[str] | None:
    if isinstance(columns, str | int | np.integer):
        columns = [columns]
    if isinstance(columns, slice) or not isinstance(columns, Sequence | np.ndarray):
        return None
    out = []
    for c in columns:
        if isinstance(c, bool | np.bool_):
            return None
        if isinstance(c, int | np.integer):
            out.append(names_in[int(c)])
        elif isinstance(c, str):
            out.append(c)
        else:
            return None
    return out


def _one_hot(enc: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if (
        getattr(enc, "drop_idx_", None) is not None
        or getattr(enc, "_infrequent_enabled", False)
        or len(enc.categories_) != 1
    ):
        raise ValueError("one-hot encoder with drop/infrequent categories")
    categories = [str(c) for c in enc.categories_[0]]
    if not set(SEX_VALUES) <= set(categories) and enc.handle_unknown == "error":
        raise ValueError("one-hot encoder would reject a valid sex value")
    dtype = np.dtype(enc.dtype)
    table = {s: np.zeros(len(categories), dtype=dtype) for s in SEX_VALUES}
    for s, vec in table.items():
        if s in categories:
            vec[categories.index(s)] = 1
    eye = np.stack([table[s] for s in SEX_VALUES])
    code = {s: i for i, s in enumerate(SEX_VALUES)}

    def encode(sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        return eye[[code[s] for s in sex]]

    return encode


def _standard(scaler: Any, idx: np.ndarray | None) -> Head:
    """``StandardScaler.transform`` on columns ``idx`` of the second argument (all when None)."""
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def transform(sex: Any, numeric: np.ndarray) -> np.ndarray:
        x = numeric[:, idx] if idx is not None else np.array(numeric, dtype=np.float64)
        if mean is not None:
            x -= mean
        if scale is not None:
            x /= scale
        return x

    return transform


def _minmax(scaler: Any, idx: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def transform(sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        x = numeric[:, idx]
        x *= scaler.scale_
        x += scaler.min_
        return x

    return transform


def probe_rows(n: int = 200, seed: int = 20260) -> Rows:
    """Plausible rows covering every sex and the measurement range, for self-checks and tests."""
    rng = np.random.default_rng(seed)
    sex = np.array([SEX_VALUES[i % 3] for i in range(n)], dtype=object)
    length = rng.uniform(0.05, 0.8, n)
    numeric = np.column_stack(
        [
            length,
            length * rng.uniform(0.7, 0.85, n),
            length * rng.uniform(0.0, 0.35, n),
            4.8 * length**3 * rng.uniform(0.8, 1.2, n),
            2.0 * length**3 * rng.uniform(0.8, 1.2, n),
            1.0 * length**3 * rng.uniform(0.8, 1.2, n),
            1.4 * length**3 * rng.uniform(0.8, 1.2, n),
        ]
    ).round(4)
    return Rows(sex=sex, numeric=numeric)


def _same_predictions(pipeline: Any, fast: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> bool:
    probe = probe_rows()
    expected = np.asarray(pipeline.predict(probe.to_frame()), dtype=np.float64).reshape(-1)
    got = np.asarray(fast(probe.sex, probe.numeric), dtype=np.float64).reshape(-1)
    if not np.array_equal(expected, got):
        return False
    for i in range(3):  # single rows take other code paths (BLAS kernels) in some estimators
        one = Rows(sex=probe.sex[i : i + 1], numeric=probe.numeric[i : i + 1])
        single = np.asarray(pipeline.predict(one.to_frame()), dtype=np.float64).reshape(-1)
        if not np.array_equal(single, np.asarray(fast(one.sex, one.numeric)).reshape(-1)):
            return False
    return True
