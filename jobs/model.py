"""The model (DESIGN §5): one scikit-learn Pipeline taking raw canonical rows.

BASELINE — to be replaced by the tuned model (issue 3). Interface:
``build_model(params: dict | None) -> sklearn.pipeline.Pipeline`` fitted on a DataFrame with
``FEATURES`` columns (``sex`` as str, measurements as float) and target ``rings``.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from jobs.schema import NUMERIC_FEATURES

DEFAULT_PARAMS: dict = {}


def build_model(params: dict | None = None) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("sex", OneHotEncoder(categories=[["F", "I", "M"]], handle_unknown="ignore"), ["sex"]),
            ("num", StandardScaler(), list(NUMERIC_FEATURES)),
        ]
    )
    return Pipeline([("pre", pre), ("reg", LinearRegression())])
