"""Pure data operations on validated batches: dataset digest and the deterministic split."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from jobs.core.errors import RejectedError, SourceError
from jobs.core.schema import COLUMNS, FEATURES, SPLITS, TARGET

SPLIT_FRACTIONS = {"train": 0.70, "validation": 0.15, "test": 0.15}
#: The fewest rows a dataset version may have: its split then has at least 12 training, 4
#: validation and 4 test rows, and the model's early stopping (10 % of the training rows held out,
#: at least 2) can run. Ingest rejects smaller batches; :func:`split` refuses them too.
MIN_DATASET_ROWS = 20


def canonical_csv(frame: pd.DataFrame) -> bytes:
    """The curated serialisation: header row, canonical column order, rings as int."""
    out = frame.loc[:, list(COLUMNS)].copy()
    out[TARGET] = out[TARGET].astype(int)
    return out.to_csv(index=False, lineterminator="\n").encode()


def dataset_version(frame: pd.DataFrame) -> str:
    """Content digest of the accepted rows: same rows, same version."""
    return "ds-" + hashlib.sha256(canonical_csv(frame)).hexdigest()[:12]


def rings_bins(rings: pd.Series, max_bins: int = 10, min_per_bin: int = 10) -> np.ndarray:
    """Quantile bins of rings for stratification (fewer bins for small data)."""
    n_bins = int(max(1, min(max_bins, len(rings) // min_per_bin)))
    ranks = rings.rank(method="first").to_numpy()
    return np.minimum(((ranks - 1) * n_bins / max(len(rings), 1)).astype(int), n_bins - 1)


def check_enough_rows(rows: int, where: str = "dataset") -> None:
    """:class:`RejectedError` when ``rows`` is below :data:`MIN_DATASET_ROWS`."""
    if rows < MIN_DATASET_ROWS:
        raise RejectedError(
            f"{where}: not enough rows to train ({rows} < {MIN_DATASET_ROWS}): a dataset needs "
            f"at least {MIN_DATASET_ROWS} rows to be split into train, validation and test"
        )


def split(frame: pd.DataFrame, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Seeded train/validation/test split stratified on rings bins (70/15/15).

    Deterministic for the same rows and seed, so a dataset version's test split never changes.
    Fewer than :data:`MIN_DATASET_ROWS` rows: :class:`RejectedError`.
    """
    check_enough_rows(len(frame))
    frame = frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    bins = rings_bins(frame[TARGET])
    parts: dict[str, list[int]] = {name: [] for name in SPLIT_FRACTIONS}
    for b in np.unique(bins):
        idx = np.flatnonzero(bins == b)
        idx = idx[rng.permutation(len(idx))]
        n_val = round(len(idx) * SPLIT_FRACTIONS["validation"])
        n_test = round(len(idx) * SPLIT_FRACTIONS["test"])
        parts["test"].extend(idx[:n_test])
        parts["validation"].extend(idx[n_test : n_test + n_val])
        parts["train"].extend(idx[n_test + n_val :])
    return {name: frame.iloc[sorted(rows)].reset_index(drop=True) for name, rows in parts.items()}


def splits_version(frames: dict[str, pd.DataFrame]) -> str:
    """A version for splits that came without one (digest of the three canonical CSVs)."""
    digest = hashlib.sha256()
    for name in SPLITS:
        digest.update(canonical_csv(frames[name]))
    return "ds-" + digest.hexdigest()[:12]


def canonical_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check and type a curated split: canonical columns, ``sex`` text, floats, ``rings`` int."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SourceError(f"{where}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise SourceError(f"{where}: no rows")
    frame = frame[list(COLUMNS)].copy()
    try:
        for col in FEATURES[1:]:
            frame[col] = frame[col].astype(float)
        frame[TARGET] = frame[TARGET].astype(int)
    except (TypeError, ValueError) as err:
        raise SourceError(f"{where}: non-numeric values ({err})") from err
    frame["sex"] = frame["sex"].astype(object)
    return frame
