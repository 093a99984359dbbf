"""The model (DESIGN §5): one scikit-learn Pipeline taking raw canonical rows.

``build_model(params)`` returns an unfitted ``Pipeline``: ``features`` (:class:`AbaloneFeatures`:
one-hot ``sex`` + transformed measurements; bad rows raise :class:`ModelInputError`), ``scale``
(``StandardScaler``) and ``regressor`` (RBF SVR averaged with small MLPs, predictions clipped to
``[clip_min, clip_max]`` rings). Plain scikit-learn, deterministic for a ``seed``; unpickling needs
this package importable (``jobs.model.AbaloneFeatures`` is kept as an alias for older pickles).
Hyperparameters: ``DEFAULT_PARAMS``/``PARAM_TYPES``; their meaning and how the defaults were chosen
are in docs/MODEL.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import VotingRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVR

from jobs.core.errors import RejectedError, UsageError
from jobs.core.schema import FEATURES, NUMERIC_FEATURES

SEX_CATEGORIES: tuple[str, ...] = ("F", "I", "M")
NUMERIC_TRANSFORMS = ("none", "cbrt", "log")


class ModelInputError(RejectedError, ValueError):
    """Rows the model cannot score: missing columns, unknown sex, non-numeric or missing values."""


class AbaloneFeatures(TransformerMixin, BaseEstimator):
    """Raw canonical rows (DataFrame) → numeric matrix: one-hot ``sex`` + transformed measurements."""

    def __init__(self, numeric_transform: str = "cbrt"):
        self.numeric_transform = numeric_transform

    def fit(self, X, y=None):
        if self.numeric_transform not in NUMERIC_TRANSFORMS:
            raise UsageError(
                f"numeric_transform must be one of {NUMERIC_TRANSFORMS}, "
                f"got {self.numeric_transform!r}"
            )
        self.transform(X)
        self.n_features_in_ = len(FEATURES)
        self.feature_names_in_ = np.asarray(FEATURES, dtype=object)
        return self

    def transform(self, X) -> np.ndarray:
        if not isinstance(X, pd.DataFrame):
            raise ModelInputError(
                f"the model takes a DataFrame with columns {list(FEATURES)}, got {type(X).__name__}"
            )
        missing = [c for c in FEATURES if c not in X.columns]
        if missing:
            raise ModelInputError(f"input rows lack column(s) {missing}")
        # Column-wise numpy access: a single-row predict stays well under a millisecond here.
        raw_sex = X["sex"].to_numpy()
        sex = np.char.upper(np.char.strip(raw_sex.astype(str)))
        unknown = ~np.isin(sex, SEX_CATEGORIES)
        if unknown.any():
            bad = sorted({str(v) for v in raw_sex[unknown]})[:5]
            raise ModelInputError(
                f"unknown sex value(s) {bad} in {int(unknown.sum())} row(s); "
                f"expected one of {list(SEX_CATEGORIES)}"
            )
        try:
            num = np.column_stack([X[c].to_numpy(dtype=float) for c in NUMERIC_FEATURES])
        except (TypeError, ValueError) as err:
            raise ModelInputError(f"measurement columns must be numeric: {err}") from err
        if not np.isfinite(num).all():
            rows = np.flatnonzero(~np.isfinite(num).all(axis=1))[:5].tolist()
            raise ModelInputError(f"missing or non-finite measurements in row(s) {rows}")
        return self.encode(sex, num)

    def encode(self, sex: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        """The featurizer on checked arrays (``sex`` upper-case M/F/I, measurements finite): one-hot
        ``sex`` + transformed measurements. The serving fast path calls this very method."""
        onehot = np.column_stack([sex == s for s in SEX_CATEGORIES]).astype(float)
        if self.numeric_transform == "cbrt":
            numeric = np.cbrt(numeric)
        elif self.numeric_transform == "log":
            numeric = np.log(np.clip(numeric, 1e-3, None))
        return np.hstack([onehot, numeric])

    def get_feature_names_out(self, input_features=None):
        return np.asarray(
            [f"sex_{s}" for s in SEX_CATEGORIES] + list(NUMERIC_FEATURES), dtype=object
        )


DEFAULT_PARAMS: dict = {
    "numeric_transform": "cbrt",
    "estimators": "svr,mlp",
    "svr_C": 30.0,
    "svr_gamma": 0.1,
    "svr_epsilon": 1.5,
    "mlp_hidden": "32,16",
    "mlp_alpha": 0.01,
    "mlp_count": 3,
    "svr_weight": 0.5,
    "clip_min": 1.0,
    "clip_max": 29.0,
    "seed": 0,
}
PARAM_TYPES: dict = {
    "numeric_transform": str,
    "estimators": str,
    "svr_C": float,
    "svr_gamma": float,
    "svr_epsilon": float,
    "mlp_hidden": str,
    "mlp_alpha": float,
    "mlp_count": int,
    "svr_weight": float,
    "clip_min": float,
    "clip_max": float,
    "seed": int,
}


ESTIMATORS = ("svr", "mlp")


def parse_params(raw: Mapping[str, Any] | None) -> dict:
    """Hyperparameters as given on a command line or by SageMaker (strings, possibly JSON-quoted;
    ``"3.0"`` for an int) → the types of ``PARAM_TYPES``. Only the keys present are returned, so
    ``build_model(parse_params(args))`` overrides just those; unknown names are usage errors."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(PARAM_TYPES))
    if unknown:
        raise UsageError(
            f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(sorted(PARAM_TYPES))}"
        )
    return {key: _coerce(key, value, PARAM_TYPES[key]) for key, value in raw.items()}


def _coerce(name: str, raw: Any, kind: type) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':  # JSON-encoded by some SageMaker SDKs
        text = text[1:-1]
    try:
        if kind is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        return kind(text)
    except (TypeError, ValueError) as err:
        raise UsageError(f"hyperparameter {name}={raw!r} is not a valid {kind.__name__}") from err


def resolve_params(params: dict | None = None) -> dict:
    """``DEFAULT_PARAMS`` overridden by ``params``, type-coerced and range-checked."""
    p = {**DEFAULT_PARAMS, **parse_params({k: v for k, v in (params or {}).items()})}
    names = [s.strip() for s in p["estimators"].split(",") if s.strip()]
    if not names or any(n not in ESTIMATORS for n in names) or len(set(names)) != len(names):
        raise UsageError(
            f"estimators must be a comma list of distinct {ESTIMATORS}, got {p['estimators']!r}"
        )
    if p["numeric_transform"] not in NUMERIC_TRANSFORMS:
        raise UsageError(
            f"numeric_transform must be one of {NUMERIC_TRANSFORMS}, got {p['numeric_transform']!r}"
        )
    positive = ("svr_C", "svr_gamma", "mlp_count")
    for key in positive:
        if not p[key] > 0:
            raise UsageError(f"hyperparameter {key} must be > 0, got {p[key]!r}")
    for key in ("svr_epsilon", "mlp_alpha"):
        if not p[key] >= 0:
            raise UsageError(f"hyperparameter {key} must be >= 0, got {p[key]!r}")
    if not 0.0 <= p["svr_weight"] <= 1.0:
        raise UsageError(f"hyperparameter svr_weight must be in [0, 1], got {p['svr_weight']!r}")
    if not p["clip_min"] < p["clip_max"]:
        raise UsageError(
            f"clip_min must be below clip_max, got {p['clip_min']!r} and {p['clip_max']!r}"
        )
    try:
        hidden = [int(h) for h in p["mlp_hidden"].split(",")]
    except ValueError as err:
        raise UsageError(
            f"mlp_hidden must be comma-separated layer sizes, got {p['mlp_hidden']!r}"
        ) from err
    if not hidden or min(hidden) < 1:
        raise UsageError(f"mlp_hidden must be positive layer sizes, got {p['mlp_hidden']!r}")
    p["estimators"] = ",".join(names)
    return p


def _estimators(p: dict) -> list[tuple[str, object]]:
    out = []
    for name in p["estimators"].split(","):
        if name == "svr":
            est = SVR(C=p["svr_C"], gamma=p["svr_gamma"], epsilon=p["svr_epsilon"])
        else:  # "mlp": mlp_count networks with consecutive seeds, averaged
            hidden = tuple(int(h) for h in str(p["mlp_hidden"]).split(",") if h.strip())
            for k in range(p["mlp_count"]):
                out.append(
                    (
                        f"mlp{k}",
                        MLPRegressor(
                            hidden_layer_sizes=hidden,
                            alpha=p["mlp_alpha"],
                            learning_rate_init=3e-3,
                            max_iter=1000,
                            early_stopping=True,
                            n_iter_no_change=30,
                            random_state=int(p["seed"]) + k,
                        ),
                    )
                )
            continue
        out.append((name, est))
    return out


def build_model(params: dict | None = None) -> Pipeline:
    p = resolve_params(params)
    ests = _estimators(p)
    if len(ests) == 1:
        reg = ests[0][1]
    elif p["estimators"].startswith("svr") or ",svr" in p["estimators"]:
        share = p["svr_weight"]
        n_mlp = len(ests) - 1
        weights = [share if name == "svr" else (1 - share) / n_mlp for name, _ in ests]
        reg = VotingRegressor(ests, weights=weights)
    else:
        reg = VotingRegressor(ests)
    clip = FunctionTransformer(
        inverse_func=np.clip,
        inv_kw_args={"a_min": p["clip_min"], "a_max": p["clip_max"]},
        check_inverse=False,
    )
    reg = TransformedTargetRegressor(regressor=reg, transformer=clip, check_inverse=False)
    return Pipeline(
        [
            ("features", AbaloneFeatures(p["numeric_transform"])),
            ("scale", StandardScaler()),
            ("regressor", reg),
        ]
    )
