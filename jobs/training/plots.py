"""Diagnostic plots logged with each training run (DESIGN §5): residuals and predicted vs actual.

Uses matplotlib's object API with the Agg canvas directly (no pyplot global state, no display).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def residual_plot(y_true, y_pred, path: Path, title: str = "Residuals") -> Path:
    """Scatter of residuals (predicted - actual rings) against predictions, plus their histogram."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    resid = p - y
    fig = Figure(figsize=(9, 4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.scatter(p, resid, s=8, alpha=0.5)
    ax1.axhline(0.0, color="black", linewidth=1)
    ax1.set_xlabel("predicted rings")
    ax1.set_ylabel("residual (predicted - actual)")
    ax1.set_title(title)
    ax2.hist(resid, bins=30)
    ax2.set_xlabel("residual")
    ax2.set_ylabel("rows")
    ax2.set_title(f"mean {resid.mean():+.2f}, sd {resid.std():.2f}")
    return _save(fig, path)


def predicted_vs_actual_plot(
    y_true, y_pred, path: Path, title: str = "Predicted vs actual"
) -> Path:
    """Predicted against actual rings with the identity line."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(y, p, s=8, alpha=0.5)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
    ax.set_xlabel("actual rings")
    ax.set_ylabel("predicted rings")
    ax.set_title(title)
    return _save(fig, path)
