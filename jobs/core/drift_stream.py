"""Drift statistics over a capture of any size, folded in chunk by chunk (pure, bounded memory):
exact per-bin and per-category counts and means over every row for PSI and χ², and a seeded uniform
reservoir sample for the KS tests, the report's histograms and the data contract.
:func:`jobs.core.drift.assess` takes the result as ``live``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jobs.core.errors import UsageError
from jobs.core.profile import PREDICTION, bin_counts, load_profile
from jobs.core.schema import NUMERIC_FEATURES

DEFAULT_SAMPLE_ROWS = 100_000


class Reservoir:
    """A uniform random sample of at most ``size`` rows of a stream (Algorithm R, seeded).

    While fewer than ``size`` rows were seen it holds all of them, in order, so a small capture is
    judged on every row exactly as before.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < 1:
            raise UsageError(f"sample size must be ≥ 1, got {size}")
        self.size = size
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._columns: dict[str, np.ndarray] = {}

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        """Offer the rows of equally long ``columns`` (same names every call)."""
        m = len(next(iter(columns.values()))) if columns else 0
        if m == 0:
            return
        if not self._columns:
            self._columns = {
                k: np.empty((self.size, *np.shape(v)[1:]), dtype=np.asarray(v).dtype)
                for k, v in columns.items()
            }
        index = np.arange(self.seen, self.seen + m)
        fill = index < self.size
        # row i of the stream replaces slot j ~ U{0..i} when j < size (later rows win a slot)
        slot = index.copy()
        rest = ~fill
        if rest.any():
            slot[rest] = self._rng.integers(0, index[rest] + 1)
        take = slot < self.size
        rows, slots = np.flatnonzero(take), slot[take]
        last = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
        rows, slots = rows[last], slots[last]
        for k, v in columns.items():
            self._columns[k][slots] = np.asarray(v)[rows]
        self.seen += m

    def column(self, name: str) -> np.ndarray:
        n = min(self.seen, self.size)
        if name not in self._columns:
            return np.empty(0)
        return self._columns[name][:n]


@dataclass
class _Exact:
    """Exact streaming statistics of one column: bin (or category) counts, n and sum."""

    counts: Any
    n: int = 0
    total: float = 0.0


class LiveStatistics:
    """Live traffic folded in chunk by chunk against a reference profile: exact per-bin counts for
    PSI (and exact category counts for χ²) and means over every row, a uniform reservoir sample of
    ``sample_rows`` rows (and of the predictions) for the KS test, the report's histograms and the
    data contract. Memory is bounded by the sample, whatever the capture's size."""

    def __init__(
        self, profile: Mapping[str, Any], sample_rows: int = DEFAULT_SAMPLE_ROWS, seed: int = 0
    ) -> None:
        self.profile = load_profile(profile)
        self.sample_rows = sample_rows
        specs = self.profile["features"]
        self.rows = 0
        self.columns: set[str] = set()
        self.exact: dict[str, _Exact] = {
            name: _Exact(np.zeros(len(specs[name]["edges"]) + 1, dtype=np.int64))
            for name in NUMERIC_FEATURES
        }
        self.exact["sex"] = _Exact({})
        self.exact[PREDICTION] = _Exact(
            np.zeros(len(self.profile[PREDICTION]["edges"]) + 1, dtype=np.int64)
        )
        self.predictions = 0
        self._rows = Reservoir(sample_rows, seed)
        self._preds = Reservoir(sample_rows, seed + 1)
        self._names: list[str] = []

    def _numeric(self, name: str, values: np.ndarray, edges: list[float]) -> None:
        values = values[np.isfinite(values)]
        stat = self.exact[name]
        stat.counts += bin_counts(values, edges)
        stat.n += int(values.size)
        stat.total += float(values.sum())

    def add(self, features: pd.DataFrame, predictions: Any = None) -> None:
        """Fold in one chunk: live features (FEATURES columns) and predicted rings."""
        specs = self.profile["features"]
        if len(features):
            self.rows += len(features)
            self.columns.update(features.columns)
            if not self._names:
                self._names = list(features.columns)
            sample: dict[str, np.ndarray] = {}
            for name in self._names:
                column = features[name]
                if name == "sex":
                    present = column.dropna().astype(str)
                    counts = self.exact["sex"].counts
                    for cat, k in present.value_counts().items():
                        counts[cat] = counts.get(cat, 0) + int(k)
                    self.exact["sex"].n += int(present.size)
                    sample[name] = column.to_numpy(dtype=object)
                elif name in self.exact:
                    values = pd.to_numeric(column, errors="coerce").to_numpy(float)
                    self._numeric(name, values, specs[name]["edges"])
                    sample[name] = values
            self._rows.add(sample)
        if predictions is not None:
            raw = np.asarray(predictions)
            if (
                raw.dtype.kind == "f"
            ):  # numbers already (the capture reader's): no object round trip
                preds = raw.astype(float).ravel()
            else:
                preds = pd.to_numeric(
                    pd.Series(np.asarray(predictions, dtype=object).ravel(), dtype=object),
                    errors="coerce",
                ).to_numpy(float)
            if preds.size:
                self.predictions += int(preds.size)
                self._numeric(PREDICTION, preds, self.profile[PREDICTION]["edges"])
                self._preds.add({PREDICTION: preds})

    @property
    def sampled(self) -> bool:
        return self.rows > self.sample_rows or self.predictions > self.sample_rows

    def sample_features(self) -> pd.DataFrame:
        """The sampled rows (every row of a capture no larger than the sample), FEATURES columns."""
        frame = pd.DataFrame({n: self._rows.column(n) for n in self._names if n != "sex"})
        if "sex" in self._names:
            frame.insert(
                self._names.index("sex"), "sex", pd.Series(self._rows.column("sex"), dtype="str")
            )
        return frame[self._names] if self._names else frame

    def sample_predictions(self) -> np.ndarray:
        return self._preds.column(PREDICTION).astype(float)

    def describe(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "predictions": self.predictions,
            "sample_rows": self.sample_rows,
            "sampled_rows": min(self.rows, self.sample_rows),
            "sampled_predictions": min(self.predictions, self.sample_rows),
            "sampled": self.sampled,
        }
