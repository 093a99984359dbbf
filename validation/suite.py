"""The abalone data contract as Great Expectations suites (DESIGN §3).

Two suites, because they look at two views of the same rows:

- ``critical`` runs on the *text* frame (every value as read): exact column order, row-count
  bounds (a training batch needs :data:`MIN_BATCH_ROWS` rows to be split and trained on),
  non-null everywhere, ``sex`` in {M, F, I}, measurements that are numbers of the one number
  grammar (:mod:`jobs.core.numbers`: ASCII digits only, no ``0_5``, no ``nan``/``inf``), ``rings``
  an integer. Any failure rejects the batch.
- ``warning`` runs on the *numeric* frame (measurements as floats plus three derived
  component-to-whole weight ratios): plausible ranges, ``diameter <= length``, component weights
  not heavier than the whole animal beyond a tolerance. Failing rows are quarantined with reasons;
  the batch is accepted while the anomalous fraction stays within the configured limit.

Every expectation carries its severity both in GX's own ``severity`` field and in ``meta``. The
Data Docs show it to a reader (a data steward must not read "Failed" on the warning suite as a
rejected batch): the suite names end in what a failure does (``…_critical_rejects_batch``,
``…_warning_quarantines_rows``), and each suite's notes (:data:`SUITE_NOTES`) say it on the suite
page and, under the status, on every validation page (``validation.docs_views``).

Bounds and tolerances (units as published: mm/200 and g/200), chosen against the real UCI file
(max length 0.815, diameter 0.65, whole weight 2.83, rings 29) with a generous margin:

- all measurements > 0 (the two ``height == 0`` rows of the UCI file are flagged);
- upper bounds in ``UPPER_BOUNDS``: ``height <= 0.5`` flags the UCI outliers 0.515 and 1.13;
- ``1 <= rings <= 40``;
- ``diameter <= length`` (the shell is longer than it is wide; one UCI row violates it);
- each of shucked, viscera and shell weight ``<= whole_weight * (1 + COMPONENT_TOLERANCE)``:
  a part cannot outweigh the whole animal. 5 % absorbs scale rounding on small animals; the UCI
  rows it flags (4 shucked, 1 shell) exceed the whole by 49-370 %. A *sum*-of-parts check is deliberately not part of the
  contract: water and blood lost while shucking make the parts sum past the whole in 155 UCI rows
  at zero tolerance, which is normal, not an anomaly.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from jobs.core.data import MIN_DATASET_ROWS
from jobs.core.numbers import INTEGER_REGEX, NUMBER_REGEX, is_number, parse_number
from jobs.core.schema import COLUMNS, FEATURES, NUMERIC_FEATURES, SEX_VALUES, TARGET

MIN_ROWS = 1  # captured model inputs (monitoring): any non-empty batch
MIN_BATCH_ROWS = MIN_DATASET_ROWS  # a training batch: enough rows to split and train on
MAX_ROWS = 1_000_000
UPPER_BOUNDS: dict[str, float] = {
    "length": 1.0,
    "diameter": 0.8,
    "height": 0.5,
    "whole_weight": 3.5,
    "shucked_weight": 2.0,
    "viscera_weight": 1.0,
    "shell_weight": 1.5,
}
RINGS_MIN, RINGS_MAX = 1, 40
COMPONENTS: tuple[str, ...] = ("shucked_weight", "viscera_weight", "shell_weight")
COMPONENT_TOLERANCE = 0.05

CRITICAL = "critical"
WARNING = "warning"
#: What a failure does: the end of each suite name, and the suite's notes (markdown).
CONSEQUENCE = {CRITICAL: "rejects_batch", WARNING: "quarantines_rows"}
SUITE_NOTES = {
    CRITICAL: (
        "**Severity: critical.** Any failed expectation in this suite rejects the whole batch."
    ),
    WARNING: (
        "**Severity: warning.** Rows failing these expectations are quarantined with their "
        "reasons and the rest of the batch is accepted, unless the quarantined rows are more than "
        "the policy's `max_warning_fraction` of the batch. *Failed* on this suite means that rows "
        "were quarantined, not by itself that the batch was rejected."
    ),
}


def expected_columns(with_target: bool = True) -> list[str]:
    return list(COLUMNS if with_target else FEATURES)


def ratio_column(component: str) -> str:
    """``shucked_weight`` → ``shucked_to_whole_ratio``."""
    return f"{component.removesuffix('_weight')}_to_whole_ratio"


def suite_name(kind: str, with_target: bool, structure_only: bool = False) -> str:
    """``abalone_batch_critical_rejects_batch``, ``abalone_features_warning_quarantines_rows``…"""
    scope = "batch" if with_target else "features"
    structure = "_structure" if structure_only else ""
    return f"abalone_{scope}_{kind}{structure}_{CONSEQUENCE[kind]}"


def _meta(severity: str, rule: str) -> dict:
    return {"severity": severity, "rule": rule}


def critical_expectations(columns: Sequence[str], structure_only: bool) -> list:
    """Schema, nulls, categories and types: failures reject the batch.

    ``structure_only`` (the columns do not match) keeps just the table-level expectations, since
    column-level ones would only repeat that the columns are wrong.
    """
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    sev = FailureSeverity.CRITICAL
    least = MIN_BATCH_ROWS if TARGET in columns else MIN_ROWS
    out = [
        gxe.ExpectTableColumnsToMatchOrderedList(
            column_list=list(columns),
            severity=sev,
            meta=_meta(CRITICAL, "exact canonical column set and order"),
        ),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=least,
            max_value=MAX_ROWS,
            severity=sev,
            meta=_meta(CRITICAL, f"between {least} and {MAX_ROWS:,} rows"),
        ),
    ]
    if structure_only:
        return out
    out += [
        gxe.ExpectColumnValuesToNotBeNull(
            column=c, severity=sev, meta=_meta(CRITICAL, "no missing values")
        )
        for c in columns
    ]
    if "sex" in columns:
        out.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="sex",
                value_set=list(SEX_VALUES),
                severity=sev,
                meta=_meta(CRITICAL, "sex is one of M, F, I"),
            )
        )
    out += [
        gxe.ExpectColumnValuesToMatchRegex(
            column=c, regex=NUMBER_REGEX, severity=sev, meta=_meta(CRITICAL, "a number")
        )
        for c in NUMERIC_FEATURES
        if c in columns
    ]
    if TARGET in columns:
        out.append(
            gxe.ExpectColumnValuesToMatchRegex(
                column=TARGET,
                regex=INTEGER_REGEX,
                severity=sev,
                meta=_meta(CRITICAL, "rings is an integer"),
            )
        )
    return out


def warning_expectations(with_target: bool) -> list:
    """Row anomalies: failing rows are quarantined, the batch survives up to a fraction."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    sev = FailureSeverity.WARNING
    out: list = [
        gxe.ExpectColumnValuesToBeBetween(
            column=c,
            min_value=0,
            strict_min=True,
            max_value=UPPER_BOUNDS[c],
            severity=sev,
            meta=_meta(WARNING, f"0 < {c} <= {UPPER_BOUNDS[c]}"),
        )
        for c in NUMERIC_FEATURES
    ]
    if with_target:
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=TARGET,
                min_value=RINGS_MIN,
                max_value=RINGS_MAX,
                severity=sev,
                meta=_meta(WARNING, f"{RINGS_MIN} <= rings <= {RINGS_MAX}"),
            )
        )
    out.append(
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="length",
            column_B="diameter",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            severity=sev,
            meta=_meta(WARNING, "diameter <= length"),
        )
    )
    limit = round(1 + COMPONENT_TOLERANCE, 6)
    out += [
        gxe.ExpectColumnValuesToBeBetween(
            column=ratio_column(c),
            max_value=limit,
            severity=sev,
            meta=_meta(
                WARNING,
                f"{c} <= whole_weight * {limit} (tolerance {COMPONENT_TOLERANCE:.0%})",
            ),
        )
        for c in COMPONENTS
    ]
    return out


def numeric_frame(text: pd.DataFrame, with_target: bool = True) -> pd.DataFrame:
    """The warning suite's view: measurements (and rings) as floats, values that do not parse as
    NaN (the critical suite reports those), plus the component-to-whole ratios."""
    columns = list(NUMERIC_FEATURES) + ([TARGET] if with_target else [])
    frame = pd.DataFrame(
        {c: to_numbers(text[c]) for c in columns},
        index=text.index,
    )
    whole = frame["whole_weight"].where(frame["whole_weight"] > 0)
    for c in COMPONENTS:
        frame[ratio_column(c)] = frame[c] / whole
    return frame


def to_numbers(values: pd.Series) -> pd.Series:
    """A text column as float64, column-wise with Arrow kernels and the grammar of
    :mod:`jobs.core.numbers`: NaN where a value is missing or not a number (the critical
    expectations say which). Keeps the column's index."""
    import pyarrow as pa  # lazy: importing this module stays cheap
    import pyarrow.compute as pc

    text = pc.ascii_trim_whitespace(pa.array(values.astype("str"), type=pa.string()))
    ok = pc.fill_null(pc.match_substring_regex(text, NUMBER_REGEX), False)
    try:  # Arrow's cast reads every number of the grammar as float() does
        numbers = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # never expected: one by one
        column = [
            parse_number(v) if v is not None and is_number(v) else None for v in text.to_pylist()
        ]
        numbers = pa.array(column, type=pa.float64())
    out = numbers.to_numpy(zero_copy_only=False)
    return pd.Series(out, index=values.index, dtype="float64")
