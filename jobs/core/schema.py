"""The canonical abalone columns (DESIGN §3). Pure constants, importable anywhere (Glue, Lambda, SageMaker)."""

from __future__ import annotations

COLUMNS: tuple[str, ...] = (
    "sex",
    "length",
    "diameter",
    "height",
    "whole_weight",
    "shucked_weight",
    "viscera_weight",
    "shell_weight",
    "rings",
)
FEATURES: tuple[str, ...] = COLUMNS[:-1]
NUMERIC_FEATURES: tuple[str, ...] = COLUMNS[1:-1]
TARGET = "rings"
SEX_VALUES: tuple[str, ...] = ("M", "F", "I")
AGE_OFFSET_YEARS = 1.5  # age = rings + 1.5
SPLITS: tuple[str, ...] = ("train", "validation", "test")
