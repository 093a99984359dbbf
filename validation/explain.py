"""From Great Expectations results to what a person reads: one record per expectation, per-row
quarantine reasons and one-line problems naming row, column, value and rule (used by
:mod:`validation.batch`)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pandas as pd

from jobs.core.numbers import why_not
from jobs.core.schema import SEX_VALUES
from validation import suite as contract
from validation.runner import SuiteRun

MAX_UNEXPECTED_ROWS = 20  # row numbers listed per expectation
MAX_PROBLEMS_PER_EXPECTATION = 5


def expectation_name(record: dict[str, Any]) -> str:
    column = record["column"]
    return f"{record['expectation']}({column})" if column else record["expectation"]


def _row_number(entry: Any) -> int:
    """GX lists unexpected rows as index values, or as dicts that include the named index."""
    if isinstance(entry, dict):
        return int(entry["row_number"])
    return int(entry)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "missing"
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class Explainer:
    """Turns GX results into records, per-row reasons and human problem lines."""

    def __init__(self, text: pd.DataFrame, runs: list[SuiteRun]) -> None:
        self.text = text
        self.frames = {run.name: run.frame for run in runs}
        self.numeric = runs[1].frame if len(runs) > 1 else None
        self.reasons: dict[int, list[str]] = defaultdict(list)
        self.rows: dict[str, set[int]] = {contract.CRITICAL: set(), contract.WARNING: set()}
        self.problems: dict[str, list[str]] = {contract.CRITICAL: [], contract.WARNING: []}
        self.errors: list[str] = []

    def record(self, res: Any) -> dict[str, Any]:
        config = res.expectation_config
        kind = config.type
        kwargs = dict(config.kwargs)
        meta = dict(config.meta or {})
        severity = meta.get("severity") or str(getattr(config, "severity", "critical"))
        result = dict(res.result or {})
        column = kwargs.get("column")
        if "column_A" in kwargs:
            column = f"{kwargs['column_A']},{kwargs['column_B']}"
        rows = [_row_number(i) for i in result.get("unexpected_index_list") or []]
        count = int(result.get("unexpected_count") or len(rows))
        observed = result.get("observed_value")
        if observed is None and "element_count" in result:
            pct = result.get("unexpected_percent") or 0.0
            observed = f"{count} of {result['element_count']} rows unexpected ({pct:.2f}%)"
        info = res.exception_info or {}
        if not res.success and info.get("raised_exception"):
            observed = f"error: {info.get('exception_message')}"
            self.errors.append(kind)
        record = {
            "expectation": kind,
            "column": column,
            "severity": severity,
            "success": bool(res.success),
            "observed": _json_safe(observed),
            "unexpected_count": count,
            "unexpected_rows": rows[:MAX_UNEXPECTED_ROWS],
            "rule": meta.get("rule"),
        }
        if not res.success and info.get("raised_exception"):
            self._problem(
                contract.CRITICAL,
                f"{expectation_name(record)} could not be evaluated: {info.get('exception_message')}",
            )
        elif not res.success:
            self._explain(record, kwargs, rows)
        return record

    def _explain(self, record: dict[str, Any], kwargs: dict, rows: list[int]) -> None:
        kind, severity = record["expectation"], record["severity"]
        name = expectation_name(record)
        if not rows:  # table-level (or an expectation that raised)
            self._problem(severity, f"{self._table_message(kind, kwargs, record)} ({name})")
            return
        shown = 0
        for row in rows:
            what, reason = self._row_message(kind, kwargs, row)
            self.reasons[row].append(f"{what}: {reason} ({kind}, {severity})")
            self.rows[severity].add(row)
            if shown < MAX_PROBLEMS_PER_EXPECTATION:
                self._problem(severity, f"row {row}, {what}: {reason} ({name}, {severity})")
                shown += 1
        if len(rows) > shown:
            self._problem(severity, f"... and {len(rows) - shown} more rows failing {name}")

    def _problem(self, severity: str, line: str) -> None:
        key = contract.WARNING if severity == contract.WARNING else contract.CRITICAL
        self.problems[key].append(line)

    def _table_message(self, kind: str, kwargs: dict, record: dict[str, Any]) -> str:
        observed = record["observed"]
        if kind == "expect_table_columns_to_match_ordered_list":
            cols = observed if isinstance(observed, list) else []
            want = kwargs.get("column_list", [])
            return (
                f"columns do not match the contract: found {len(cols)} {cols}, "
                f"expected {len(want)} {want}"
            )
        if kind == "expect_table_row_count_to_be_between":
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            if isinstance(observed, int) and low is not None and observed < low:
                return (
                    f"not enough rows to train ({observed} < {low}): a batch needs at least "
                    f"{low} rows to be split into train, validation and test"
                )
            return f"row count {observed} outside [{low}, {high:,}]"
        column = f"column '{record['column']}': " if record["column"] else ""
        return f"{column}{observed}"

    def _number(self, column: str, row: int) -> Any:
        if self.numeric is not None and column in self.numeric.columns:
            return float(self.numeric.at[row, column])
        return self._value(column, row)

    def _value(self, column: str, row: int) -> Any:
        if column in self.text.columns:
            value = self.text.at[row, column]
            return None if pd.isna(value) else value
        if self.numeric is not None and column in self.numeric.columns:
            return self.numeric.at[row, column]
        return None

    def _row_message(self, kind: str, kwargs: dict, row: int) -> tuple[str, str]:
        """(``column 'x'``, ``'X' not in {M,F,I}``) for one unexpected row."""
        if "column_A" in kwargs:
            a, b = kwargs["column_A"], kwargs["column_B"]
            return (
                f"columns '{b}' and '{a}'",
                f"{b} {_fmt(self._number(b, row))} > {a} {_fmt(self._number(a, row))}",
            )
        column = kwargs["column"]
        value = self._value(column, row)
        if kind == "expect_column_values_to_not_be_null":
            return f"column '{column}'", "missing value"
        if kind == "expect_column_values_to_be_in_set":
            allowed = ",".join(kwargs.get("value_set") or SEX_VALUES)
            return f"column '{column}'", f"{_fmt(value)} not in {{{allowed}}}"
        if kind == "expect_column_values_to_match_regex":
            noun = "an integer" if kwargs.get("regex") == contract.INTEGER_REGEX else "a number"
            why = why_not(str(value))
            detail = f" ({why})" if why != "not a number" else ""
            return f"column '{column}'", f"{_fmt(value)} is not {noun}{detail}"
        if column.endswith("_to_whole_ratio"):
            component = next(c for c in contract.COMPONENTS if contract.ratio_column(c) == column)
            part, whole = self._number(component, row), self._number("whole_weight", row)
            return (
                f"column '{component}'",
                f"{component} {_fmt(part)} exceeds whole_weight {_fmt(whole)} "
                f"by more than {contract.COMPONENT_TOLERANCE:.0%}",
            )
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        number = float(self.numeric.at[row, column]) if self.numeric is not None else math.nan
        if low is not None and (number < low or (kwargs.get("strict_min") and number <= low)):
            rel = "> " if kwargs.get("strict_min") else ">= "
            return f"column '{column}'", f"{column}={_fmt(number)} is not {rel}{_fmt(low)}"
        if high is not None and number > high:
            return (
                f"column '{column}'",
                f"{column}={_fmt(number)} is above the plausible maximum {_fmt(high)}",
            )
        return f"column '{column}'", f"{column}={_fmt(value)} is out of range"
