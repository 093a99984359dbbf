"""Drift statistics (DESIGN §7): live inputs and predictions against the training reference profile.

Pure functions, no I/O. How drift is decided, per feature (numeric features, ``sex`` and the
predictions alike):

- **PSI** (population stability index) over the reference's quantile bins measures *how much* the
  distribution moved: ``Σ (a - e) · ln(a / e)`` with empty bins floored at ``EPSILON``.
- A **significance test** says whether the move is more than sampling noise: the two-sample
  Kolmogorov-Smirnov test against the reference sample for numeric values, Pearson's chi-square
  against the reference proportions for ``sex``.
- A feature **drifts** when ``PSI > drift_psi`` **and** the test's ``p < drift_ks_pvalue / m``, where
  ``m`` is the number of columns tested together (Bonferroni: the 8 features + the predictions, so
  the stack's p-value is the chance of *any* false alarm per run, not per column). Each rule alone
  raises false alarms: with a few hundred live rows PSI carries sampling noise of roughly
  ``(bins - 1) / n`` (≈ 0.18 at 50 rows), and with many thousands of rows KS flags differences too
  small to matter. Requiring both keeps a replay of the test split quiet and still names real shifts.
  One rule alone marks the feature ``warn`` (reported, not drift).
- Below ``min_rows`` live rows nothing is claimed: the status is ``insufficient_data``.

The overall ``score`` is the largest PSI over the features and the predictions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from jobs.core.errors import UsageError
from jobs.core.profile import PREDICTION, bin_counts, load_profile
from jobs.core.schema import NUMERIC_FEATURES

if TYPE_CHECKING:  # annotations only: drift_stream builds on this module
    from jobs.core.drift_stream import LiveStatistics, _Exact

EPSILON = 1e-4
DEFAULT_MIN_ROWS = 50

OK, WARN, DRIFT, NA = "ok", "warn", "drift", "n/a"
STATUS_OK, STATUS_DRIFT, STATUS_INSUFFICIENT = "ok", "drift", "insufficient_data"


@dataclass(frozen=True)
class Thresholds:
    """When a feature drifts. Build from the stack policy with :meth:`from_policy`."""

    drift_psi: float = 0.2
    drift_ks_pvalue: float = 0.01
    min_rows: int = DEFAULT_MIN_ROWS

    def __post_init__(self) -> None:
        if not self.drift_psi > 0:
            raise UsageError(f"drift_psi must be > 0, got {self.drift_psi}")
        if not 0 < self.drift_ks_pvalue < 1:
            raise UsageError(f"drift_ks_pvalue must be in (0, 1), got {self.drift_ks_pvalue}")
        if self.min_rows < 1:
            raise UsageError(f"min_rows must be ≥ 1, got {self.min_rows}")

    @classmethod
    def from_policy(cls, policy: Any, *, min_rows: int = DEFAULT_MIN_ROWS) -> Thresholds:
        """From a ``jobs.settings.StackPolicy`` (or anything with ``drift_psi``/``drift_ks_pvalue``)."""
        return cls(
            drift_psi=float(policy.drift_psi),
            drift_ks_pvalue=float(policy.drift_ks_pvalue),
            min_rows=int(getattr(policy, "min_rows", min_rows)),
        )


def psi(expected: Any, actual: Any, eps: float = EPSILON) -> float:
    """Population stability index of ``actual`` proportions against ``expected`` proportions."""
    e = np.clip(np.asarray(expected, float), eps, None)
    a = np.clip(np.asarray(actual, float), eps, None)
    if e.shape != a.shape:
        raise UsageError(f"psi: {e.size} expected bins but {a.size} actual bins")
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def ks_test(reference_sample: Any, live: Any) -> tuple[float, float]:
    """Two-sample KS statistic and p-value (``nan, nan`` when either side is empty)."""
    ref = np.asarray(reference_sample, float)
    cur = np.asarray(live, float)
    if ref.size == 0 or cur.size == 0:
        return math.nan, math.nan
    res = stats.ks_2samp(ref, cur)
    return float(res.statistic), float(res.pvalue)


def chi_square(expected: Mapping[str, float], observed: Mapping[str, int]) -> tuple[float, float]:
    """Pearson chi-square of observed category counts against expected proportions."""
    cats = list(dict.fromkeys([*expected, *observed]))
    obs = np.array([observed.get(c, 0) for c in cats], float)
    total = obs.sum()
    if total == 0:
        return math.nan, math.nan
    exp = np.clip(np.array([expected.get(c, 0.0) for c in cats], float), EPSILON, None)
    exp = exp / exp.sum() * total
    res = stats.chisquare(obs, exp)
    return float(res.statistic), float(res.pvalue)


@dataclass
class FeatureDrift:
    """Drift statistics of one feature (or of the predictions)."""

    name: str
    kind: str  # numeric | categorical
    status: str  # ok | warn | drift | n/a
    n: int
    psi: float | None = None
    test: str = ""  # ks | chi2
    statistic: float | None = None
    pvalue: float | None = None
    reference_mean: float | None = None
    live_mean: float | None = None
    bins: list[str] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)
    actual: list[float] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


@dataclass
class DriftResult:
    """The outcome of :func:`assess`; ``drift`` is what the exit code and alarms follow."""

    status: str  # ok | drift | insufficient_data
    drift: bool
    n_rows: int
    score: float | None
    drifting_features: list[str]
    prediction_drift: bool
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None
    thresholds: Thresholds
    message: str

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "status": self.status,
                "drift": self.drift,
                "n_rows": self.n_rows,
                "score": self.score,
                "drifting_features": self.drifting_features,
                "prediction_drift": self.prediction_drift,
                "message": self.message,
                "thresholds": asdict(self.thresholds),
                "features": {k: v.to_dict() for k, v in self.features.items()},
                "prediction": self.prediction.to_dict() if self.prediction else None,
            }
        )


def _clean(obj: Any) -> Any:
    """JSON-safe: non-finite floats become ``None``, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _status(psi_value: float, pvalue: float, t: Thresholds, tests: int = 1) -> str:
    big = psi_value > t.drift_psi
    significant = not math.isnan(pvalue) and pvalue < t.drift_ks_pvalue / max(tests, 1)
    if big and significant:
        return DRIFT
    if big or significant:
        return WARN
    return OK


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"≤ {edges[0]:.4g}"]
    labels += [f"{lo:.4g} to {hi:.4g}" for lo, hi in itertools.pairwise(edges)]
    return [*labels, f"> {edges[-1]:.4g}"]


def numeric_drift(
    name: str, spec: Mapping[str, Any], live: Any, t: Thresholds, exact: _Exact | None = None
) -> FeatureDrift:
    """PSI and KS of one numeric column; with ``exact`` (streaming counts over every row) ``live``
    is a sample used for the KS test only."""
    values = pd.to_numeric(pd.Series(live, dtype=object), errors="coerce").to_numpy(float)
    values = values[np.isfinite(values)]
    n = int(values.size) if exact is None else exact.n
    edges = list(spec["edges"])
    expected = [float(p) for p in spec["expected"]]
    base = FeatureDrift(
        name=name,
        kind="numeric",
        status=NA,
        n=n,
        test="ks",
        reference_mean=float(spec["mean"]),
        bins=_bin_labels(edges),
        expected=expected,
    )
    if n == 0:
        base.note = "no numeric values in the live data"
        return base
    counts = bin_counts(values, edges) if exact is None else exact.counts
    actual = counts / counts.sum()
    base.actual = [float(p) for p in actual]
    base.live_mean = float(values.mean()) if exact is None else exact.total / n
    base.psi = psi(expected, actual)
    base.statistic, base.pvalue = ks_test(spec.get("sample", []), values)
    base.status = _status(base.psi, base.pvalue, t)
    return base


def categorical_drift(
    name: str, spec: Mapping[str, Any], live: Any, t: Thresholds, exact: _Exact | None = None
) -> FeatureDrift:
    """PSI and χ² of ``sex``; with ``exact`` the category counts over every row are used."""
    series = pd.Series(live, dtype=object).dropna().astype(str)
    expected_map = {str(k): float(v) for k, v in spec["expected"].items()}
    counts = series.value_counts() if exact is None else pd.Series(exact.counts, dtype="int64")
    size = int(series.size) if exact is None else exact.n
    cats = list(dict.fromkeys([*expected_map, *sorted(counts.index)]))
    base = FeatureDrift(
        name=name,
        kind="categorical",
        status=NA,
        n=size,
        test="chi2",
        bins=cats,
        expected=[expected_map.get(c, 0.0) for c in cats],
    )
    if size == 0:
        base.note = "no values in the live data"
        return base
    observed = {c: int(counts.get(c, 0)) for c in cats}
    base.actual = [observed[c] / size for c in cats]
    base.psi = psi(base.expected, base.actual)
    base.statistic, base.pvalue = chi_square(expected_map, observed)
    base.status = _status(base.psi, base.pvalue, t)
    unseen = [c for c in cats if c not in expected_map]
    if unseen:
        base.note = f"categories not seen in training: {', '.join(unseen)}"
    return base


def assess(
    profile: Mapping[str, Any],
    live_features: pd.DataFrame,
    live_predictions: Any = None,
    thresholds: Any = None,
    live: LiveStatistics | None = None,
) -> DriftResult:
    """Compare live features (FEATURES columns) and predictions with the reference ``profile``.

    ``thresholds`` is a :class:`Thresholds` or a ``StackPolicy`` (``drift_psi``, ``drift_ks_pvalue``).
    With ``live`` (a capture folded in by :class:`LiveStatistics`), ``live_features`` and
    ``live_predictions`` are its samples: PSI, χ², means and counts come from every row, the KS
    test from the sample.
    """
    profile = load_profile(profile)
    if thresholds is None:
        t = Thresholds()
    elif isinstance(thresholds, Thresholds):
        t = thresholds
    else:
        t = Thresholds.from_policy(thresholds)
    if not isinstance(live_features, pd.DataFrame):
        raise UsageError("assess: live_features must be a pandas DataFrame")
    n_rows = len(live_features) if live is None else live.rows
    specs = profile["features"]

    def exact(name: str) -> _Exact | None:
        return None if live is None else live.exact[name]

    features: dict[str, FeatureDrift] = {}
    for name in ("sex", *NUMERIC_FEATURES):
        if name not in live_features.columns:
            features[name] = FeatureDrift(
                name=name,
                kind="categorical" if name == "sex" else "numeric",
                status=NA,
                n=0,
                note="column missing from the live data",
            )
        elif name == "sex":
            features[name] = categorical_drift(
                name, specs[name], live_features[name], t, exact(name)
            )
        else:
            features[name] = numeric_drift(name, specs[name], live_features[name], t, exact(name))

    prediction = None
    if live_predictions is not None:
        preds = np.asarray(live_predictions, dtype=object).ravel()
        if preds.size:
            prediction = numeric_drift(PREDICTION, profile[PREDICTION], preds, t, exact(PREDICTION))

    tested = [f for f in [*features.values(), prediction] if f is not None and f.psi is not None]
    for f in tested:  # the significance level is shared by every column tested together
        f.status = _status(f.psi, f.pvalue, t, tests=len(tested))
    score = max(f.psi for f in tested) if tested else None

    if n_rows < t.min_rows:
        for f in [*features.values(), prediction]:
            if f is not None and f.status != NA:
                f.status = NA
                f.note = f.note or "not enough live rows to judge"
        return DriftResult(
            status=STATUS_INSUFFICIENT,
            drift=False,
            n_rows=n_rows,
            score=score,
            drifting_features=[],
            prediction_drift=False,
            features=features,
            prediction=prediction,
            thresholds=t,
            message=(
                f"not enough data: {n_rows} live rows, at least {t.min_rows} are needed "
                "to judge drift; no drift claimed"
            ),
        )

    drifting = [name for name, f in features.items() if f.status == DRIFT]
    prediction_drift = prediction is not None and prediction.status == DRIFT
    drift = bool(drifting) or prediction_drift
    if drift:
        named = drifting + ([PREDICTION] if prediction_drift else [])
        message = (
            f"drift in {', '.join(named)} over {n_rows} live rows "
            f"(PSI > {t.drift_psi:g} and p < {t.drift_ks_pvalue:g}/{len(tested)})"
        )
    else:
        message = (
            f"no drift over {n_rows} live rows (max PSI {score:.3f})"
            if score is not None
            else (f"no drift over {n_rows} live rows")
        )
    return DriftResult(
        status=STATUS_DRIFT if drift else STATUS_OK,
        drift=drift,
        n_rows=n_rows,
        score=score,
        drifting_features=drifting,
        prediction_drift=prediction_drift,
        features=features,
        prediction=prediction,
        thresholds=t,
        message=message,
    )
