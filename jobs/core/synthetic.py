"""Plausible synthetic abalone measurements, for tests on a fresh clone and for demos.

The generator follows the shape of the UCI data (allometric weights, rings rising with size and
shell weight) so models trained on it behave sensibly; it is not the real data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.core.schema import COLUMNS


def make_abalone(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """``n`` rows in canonical column order, all inside the data contract."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array(["M", "F", "I"]), size=n, p=[0.37, 0.31, 0.32])
    base = rng.beta(5, 3, size=n) * 0.6 + 0.12  # length in mm/200
    length = np.where(sex == "I", base * 0.85, base)
    length = np.clip(length, 0.08, 0.8)
    diameter = np.clip(length * rng.normal(0.79, 0.02, n), 0.05, length)
    height = np.clip(length * rng.normal(0.27, 0.025, n), 0.01, 0.25)
    whole = np.clip(4.8 * length**3 * rng.normal(1.0, 0.08, n), 0.002, 2.8)
    shucked = whole * np.clip(rng.normal(0.43, 0.04, n), 0.25, 0.6)
    viscera = whole * np.clip(rng.normal(0.22, 0.02, n), 0.12, 0.3)
    shell = whole * np.clip(rng.normal(0.29, 0.03, n), 0.18, 0.35)
    rings = 3 + 14 * shell / (shell + 0.25) + 4 * (length - 0.5) + rng.normal(0, 1.6, n)
    rings = np.where(sex == "I", rings - 1.5, rings)
    rings = np.clip(np.rint(rings), 1, 29).astype(int)
    frame = pd.DataFrame(
        {
            "sex": sex,
            "length": length.round(3),
            "diameter": diameter.round(3),
            "height": height.round(3),
            "whole_weight": whole.round(4),
            "shucked_weight": shucked.round(4),
            "viscera_weight": viscera.round(4),
            "shell_weight": shell.round(4),
            "rings": rings,
        }
    )
    return frame[list(COLUMNS)]


def to_csv_bytes(frame: pd.DataFrame, header: bool = False) -> bytes:
    """Serialise as the UCI file is published (headerless by default)."""
    return frame.to_csv(index=False, header=header).encode()
