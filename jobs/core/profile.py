"""The reference profile drift monitoring compares live traffic with (DESIGN §5, §7). Pure.

Built at training time from the training features and the model's predictions on them, logged on the
MLflow run as ``reference_profile.json`` and written next to the model. Per numeric feature (and for
the predictions) it holds quantile bin edges with the expected proportion of rows in each bin (for
PSI), summary statistics, and a bounded, seeded random sample of the values (for the two-sample KS
test). For ``sex`` it holds the category proportions.

Binning: ``edges`` are the *inner* edges ``e_1 < … < e_k`` (training quantiles, duplicates dropped);
the bins are ``(-inf, e_1], (e_1, e_2], …, (e_k, +inf)`` — the outer bins are open-ended, so live
values outside the training range still land in a bin. :func:`bin_proportions` is the one place that
rule lives; the drift statistics use it on live data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.core.errors import SourceError, UsageError
from jobs.core.schema import NUMERIC_FEATURES, SEX_VALUES

PROFILE_KIND = "abalone-reference-profile"
PROFILE_SCHEMA_VERSION = 1
DEFAULT_BINS = 10
DEFAULT_SAMPLE_SIZE = 1000
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
PREDICTION = "prediction"


def _finite(values: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(pd.to_numeric(pd.Series(values, dtype=object), errors="raise"), float)
    except (TypeError, ValueError) as err:
        raise UsageError(f"{what}: values must be numeric ({err})") from err
    return arr[np.isfinite(arr)]


def bin_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> list[float]:
    """Inner quantile edges for ``bins`` equal-frequency bins (duplicates from ties dropped)."""
    if values.size == 0:
        return []
    qs = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(values, qs))
    return [float(e) for e in edges]


def bin_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts per bin ``(-inf, e_1], (e_1, e_2], …, (e_k, +inf)``; length ``len(edges) + 1``."""
    idx = np.searchsorted(np.asarray(edges, float), values, side="left")
    return np.bincount(idx, minlength=len(edges) + 1)


def bin_proportions(values: np.ndarray, edges: list[float]) -> np.ndarray:
    counts = bin_counts(values, edges)
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def numeric_profile(
    values: Any,
    *,
    what: str,
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> dict[str, Any]:
    """Profile of one numeric column: edges, expected proportions, statistics, bounded sample."""
    arr = _finite(values, what)
    if arr.size == 0:
        raise UsageError(f"{what}: no finite values to profile")
    edges = bin_edges(arr, bins)
    rng = np.random.default_rng(seed)
    sample = arr if arr.size <= sample_size else rng.choice(arr, size=sample_size, replace=False)
    return {
        "type": "numeric",
        "count": int(arr.size),
        "edges": edges,
        "expected": [_round(p) for p in bin_proportions(arr, edges)],
        "mean": _round(float(arr.mean())),
        "std": _round(float(arr.std(ddof=1))) if arr.size > 1 else 0.0,
        "min": _round(float(arr.min())),
        "max": _round(float(arr.max())),
        "quantiles": {str(q): _round(float(np.quantile(arr, q))) for q in QUANTILES},
        "sample": [float(v) for v in np.sort(sample)],
    }


def categorical_profile(values: Any, *, categories: tuple[str, ...] = SEX_VALUES) -> dict[str, Any]:
    series = pd.Series(values).dropna().astype(str)
    if series.empty:
        raise UsageError("sex: no values to profile")
    counts = series.value_counts()
    total = int(counts.sum())
    cats = list(categories) + sorted(set(counts.index) - set(categories))
    return {
        "type": "categorical",
        "count": total,
        "categories": cats,
        "expected": {c: _round(float(counts.get(c, 0)) / total) for c in cats},
    }


def build_profile(
    features: pd.DataFrame,
    predictions: Any,
    *,
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> dict[str, Any]:
    """The JSON-serialisable reference profile of ``features`` (FEATURES) and ``predictions``."""
    if not isinstance(features, pd.DataFrame):
        raise UsageError("build_profile: features must be a pandas DataFrame")
    missing = [c for c in ("sex", *NUMERIC_FEATURES) if c not in features.columns]
    if missing:
        raise UsageError(f"build_profile: missing feature columns {missing}")
    if len(features) == 0:
        raise UsageError("build_profile: no rows to profile")
    preds = np.asarray(predictions, dtype=float).ravel()
    if preds.size != len(features):
        raise UsageError(
            f"build_profile: {preds.size} predictions for {len(features)} feature rows"
        )
    profiled: dict[str, Any] = {"sex": categorical_profile(features["sex"])}
    for i, name in enumerate(NUMERIC_FEATURES):
        profiled[name] = numeric_profile(
            features[name], what=name, bins=bins, sample_size=sample_size, seed=seed + i
        )
    return {
        "kind": PROFILE_KIND,
        "schema_version": PROFILE_SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "n_rows": len(features),
        "bins": bins,
        "sample_size": sample_size,
        "seed": seed,
        "features": profiled,
        PREDICTION: numeric_profile(
            preds, what="predictions", bins=bins, sample_size=sample_size, seed=seed + 100
        ),
    }


def _check(profile: Mapping[str, Any], origin: str) -> dict[str, Any]:
    if not isinstance(profile, Mapping) or profile.get("kind") != PROFILE_KIND:
        raise UsageError(f"{origin} is not an abalone reference profile")
    version = profile.get("schema_version")
    if version != PROFILE_SCHEMA_VERSION:
        raise UsageError(
            f"{origin}: reference profile schema_version {version!r} is not supported "
            f"(expected {PROFILE_SCHEMA_VERSION})"
        )
    feats = profile.get("features")
    if not isinstance(feats, Mapping):
        raise UsageError(f"{origin}: reference profile has no features")
    missing = [c for c in ("sex", *NUMERIC_FEATURES) if c not in feats]
    if missing or PREDICTION not in profile:
        raise UsageError(f"{origin}: reference profile lacks {missing or [PREDICTION]}")
    for name in NUMERIC_FEATURES:
        spec = feats[name]
        if len(spec.get("expected", [])) != len(spec.get("edges", [])) + 1:
            raise UsageError(f"{origin}: reference profile bins for {name} are inconsistent")
    return dict(profile)


def load_profile(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A checked reference profile from a dict, a JSON file path, or JSON text bytes/str."""
    if isinstance(source, Mapping):
        return _check(source, "profile")
    path = Path(source)
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise SourceError(f"reference profile not found: {path}") from err
    except OSError as err:
        raise SourceError(f"cannot read reference profile {path}: {err.strerror or err}") from err
    return loads_profile(text, origin=str(path))


def loads_profile(text: str | bytes, *, origin: str = "profile") -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{origin} is not valid JSON: {err}") from err
    return _check(data, origin)


def dumps_profile(profile: Mapping[str, Any]) -> str:
    """Stable JSON text for a profile (rejects NaN/inf, which JSON cannot carry)."""
    for value in _walk_numbers(profile):
        if not math.isfinite(value):
            raise UsageError("reference profile contains a non-finite number")
    return json.dumps(profile, indent=1, sort_keys=True, allow_nan=False)


def _walk_numbers(obj: Any):
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _walk_numbers(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _walk_numbers(v)
