"""The model (DESIGN §5): one scikit-learn Pipeline taking raw canonical rows.

Provisional SVR version (issue 3); tuned model to follow.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVR

from jobs.schema import NUMERIC_FEATURES

DEFAULT_PARAMS: dict = {"C": 10.0, "gamma": 0.1, "epsilon": 0.5}
PARAM_TYPES: dict = {"C": float, "gamma": float, "epsilon": float}


def build_model(params: dict | None = None) -> Pipeline:
    p = {**DEFAULT_PARAMS, **(params or {})}
    pre = ColumnTransformer(
        [
            ("sex", OneHotEncoder(categories=[["F", "I", "M"]], handle_unknown="ignore"), ["sex"]),
            ("num", StandardScaler(), list(NUMERIC_FEATURES)),
        ]
    )
    reg = SVR(C=float(p["C"]), gamma=float(p["gamma"]), epsilon=float(p["epsilon"]))
    return Pipeline([("pre", pre), ("reg", reg)])
