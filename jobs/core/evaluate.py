"""Regression metrics and the paired bootstrap used by the promotion gate (pure functions of arrays)."""

from __future__ import annotations

import numpy as np

from jobs.core.errors import UsageError


class MetricsInputError(UsageError, ValueError):
    """Labels/predictions that cannot be scored: different lengths, empty, non-finite."""


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    if y.shape != p.shape or y.size == 0:
        raise MetricsInputError(
            f"need two equal non-empty arrays, got {np.shape(y_true)} and {np.shape(y_pred)}"
        )
    return y, p


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """``rmse, mae, r2, rmsle`` of predictions against the true rings."""
    y, p = _pair(y_true, y_pred)
    err = p - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": float(1 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "rmsle": float(np.sqrt(np.mean((np.log1p(np.clip(p, 0, None)) - np.log1p(y)) ** 2))),
    }


def paired_bootstrap_rmse_diff(
    y_true, pred_candidate, pred_champion, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Paired bootstrap of ``RMSE(candidate) - RMSE(champion)`` on the same rows.

    Each replicate resamples row indices with replacement and scores both models on the same
    resample, so row difficulty cancels out. Returns ``rmse_candidate``, ``rmse_champion``,
    ``diff`` (observed difference on all rows), ``diff_mean`` (mean over replicates),
    ``ci_low``/``ci_high`` (95 % percentile interval), ``p_worse`` (share of replicates where the
    candidate's RMSE is higher; ties count half) and ``n_boot``. Positive differences mean the
    candidate is worse.
    """
    y, pc = _pair(y_true, pred_candidate)
    _, ph = _pair(y_true, pred_champion)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise MetricsInputError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not (np.isfinite(y).all() and np.isfinite(pc).all() and np.isfinite(ph).all()):
        raise MetricsInputError("labels and predictions must be finite for the bootstrap")
    se_c = (pc - y) ** 2
    se_h = (ph - y) ** 2
    rng = np.random.default_rng(seed)
    n = y.size
    diffs = np.empty(n_boot)
    # Chunked so memory stays bounded for large test sets.
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        diffs[start:stop] = np.sqrt(se_c[idx].mean(axis=1)) - np.sqrt(se_h[idx].mean(axis=1))
    rmse_c = float(np.sqrt(se_c.mean()))
    rmse_h = float(np.sqrt(se_h.mean()))
    return {
        "rmse_candidate": rmse_c,
        "rmse_champion": rmse_h,
        "diff": rmse_c - rmse_h,
        "diff_mean": float(diffs.mean()),
        "ci_low": float(np.percentile(diffs, 2.5)),
        "ci_high": float(np.percentile(diffs, 97.5)),
        "p_worse": float((diffs > 0).mean() + 0.5 * (diffs == 0).mean()),
        "n_boot": int(n_boot),
    }
