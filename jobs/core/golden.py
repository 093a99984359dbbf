"""Golden rows for the system test (gate rule 4): hand-checked inputs with plausible answers.

The ranges are wide on purpose: they catch a broken model (constant, inverted, scaled, columns
swapped), not a slightly different one. How they were checked, with the reference predictions:
docs/MODEL.md. Orderings that must hold: each pair ``(smaller, larger)`` in :data:`ORDERINGS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.core.schema import FEATURES


@dataclass(frozen=True)
class GoldenRow:
    name: str
    values: tuple  # canonical FEATURES order
    lo: float  # inclusive bounds on predicted rings
    hi: float

    def record(self) -> dict:
        return dict(zip(FEATURES, self.values, strict=True))


GOLDEN_ROWS: tuple[GoldenRow, ...] = (
    GoldenRow("tiny infant", ("I", 0.075, 0.055, 0.010, 0.002, 0.001, 0.0005, 0.0015), 1, 6),
    GoldenRow("small juvenile", ("I", 0.30, 0.22, 0.07, 0.15, 0.06, 0.03, 0.045), 1, 9),
    GoldenRow(
        "first UCI row (male)", ("M", 0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15), 6, 13
    ),
    GoldenRow("mid-size adult male", ("M", 0.60, 0.47, 0.16, 1.10, 0.45, 0.24, 0.33), 8, 16),
    GoldenRow("large adult female", ("F", 0.70, 0.55, 0.20, 2.00, 0.80, 0.40, 0.60), 9, 20),
)

ORDERINGS: tuple[tuple[str, str], ...] = (
    ("tiny infant", "first UCI row (male)"),
    ("tiny infant", "large adult female"),
    ("small juvenile", "mid-size adult male"),
    ("first UCI row (male)", "large adult female"),
)
