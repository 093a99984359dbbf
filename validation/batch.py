"""``validate_batch`` / ``validate_frame``: parse, run the GX suites, decide, explain.

The decision (DESIGN §3):

- any failed *critical* expectation (or an unreadable / ragged file) → ``rejected``;
- rows failing *warning* expectations are quarantined with per-row reasons; the batch is
  ``accepted`` while ``quarantined / rows_total <= max_warning_fraction``, else ``rejected``.

Row numbers are 1-based line numbers in the file (a header row is line 1), so a user can open the
file at the line a problem names.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from jobs.core.numbers import why_not
from jobs.core.schema import NUMERIC_FEATURES, SEX_VALUES, TARGET
from validation import suite as contract
from validation.parse import ParsedBatch, empty_frame, frame_to_text, parse_bytes
from validation.runner import SuiteRun, runtime

log = logging.getLogger(__name__)

MAX_UNEXPECTED_ROWS = 20  # row numbers listed per expectation
MAX_PROBLEMS_PER_EXPECTATION = 5
PARSE_CHECK = "file_parses_as_csv"
ENOUGH_ROWS_CHECK = "rows_left_to_train"  # after quarantine (decided here, not a GX expectation)


@dataclass
class BatchValidation:
    """The outcome of validating one batch (see docs/CONTRACTS.md, "Validation")."""

    status: str
    rows_total: int
    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    expectations: list[dict[str, Any]]
    failed_expectations: list[str]
    problems: list[str]
    report_html: Path | None
    warning_fraction: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "accepted"


def validate_batch(
    data: bytes,
    *,
    ingest_id: str,
    source: dict | None = None,
    max_warning_fraction: float,
    docs_dir: Path | None,
) -> BatchValidation:
    """Validate raw bytes (header row or not) against the data contract; never raises on bad data.

    Builds the Data Docs site into ``docs_dir``; ``report_html`` is its ``index.html`` (``None``
    when ``docs_dir`` is ``None``: validation only, no report site).
    """
    parsed = parse_bytes(data, contract.expected_columns(True), contract.MAX_ROWS)
    result = _validate(
        parsed,
        with_target=True,
        run_name=ingest_id,
        max_warning_fraction=max_warning_fraction,
        docs_dir=docs_dir,
    )
    result.extra["source"] = dict(source or {})
    log.info(
        "batch %s %s: %d rows, %d quarantined",
        ingest_id,
        result.status,
        result.rows_total,
        len(result.quarantined),
    )
    return result


def validate_frame(
    df: pd.DataFrame,
    *,
    with_target: bool = True,
    max_warning_fraction: float = 1.0,
    docs_dir: Path | None = None,
    run_name: str = "frame",
) -> BatchValidation:
    """The same suites on an in-memory frame (rows numbered 1..n in frame order).

    ``with_target=False`` validates model inputs (the eight features, no ``rings``), as captured
    by the endpoint. Data Docs are built only when ``docs_dir`` is given.
    """
    return _validate(
        frame_to_text(df),
        with_target=with_target,
        run_name=run_name,
        max_warning_fraction=max_warning_fraction,
        docs_dir=docs_dir,
    )


def _validate(
    parsed: ParsedBatch,
    *,
    with_target: bool,
    run_name: str,
    max_warning_fraction: float,
    docs_dir: Path | None,
) -> BatchValidation:
    expected = contract.expected_columns(with_target)
    text = parsed.frame
    structure_ok = parsed.readable and list(text.columns) == expected
    runs = [
        SuiteRun(
            name=contract.suite_name(contract.CRITICAL, with_target, not structure_ok),
            expectations=lambda: contract.critical_expectations(expected, not structure_ok),
            frame=text,
            notes=contract.SUITE_NOTES[contract.CRITICAL],
        )
    ]
    if structure_ok:
        runs.append(
            SuiteRun(
                name=contract.suite_name(contract.WARNING, with_target),
                expectations=lambda: contract.warning_expectations(with_target),
                frame=contract.numeric_frame(text, with_target),
                notes=contract.SUITE_NOTES[contract.WARNING],
            )
        )
    gx_results = runtime().run(runs, run_name=run_name, docs_dir=docs_dir)

    explainer = _Explainer(text, runs)
    records = [_parse_record(parsed)]
    for suite_result in gx_results:
        for res in suite_result.results:
            records.append(explainer.record(res))

    rows_total = len(text)
    critical_failed = bool(explainer.errors) or any(
        not r["success"] and r["severity"] == contract.CRITICAL for r in records
    )
    # most decisive first: what makes the batch unreadable, critical failures, the fraction rule
    problems = list(parsed.problems) + explainer.problems[contract.CRITICAL]
    warning_rows = set(explainer.rows[contract.WARNING])
    fraction = len(warning_rows) / rows_total if rows_total else 0.0
    too_many = fraction > max_warning_fraction
    if too_many:
        problems.append(
            f"{len(warning_rows)} of {rows_total} rows ({fraction:.1%}) have warning anomalies, "
            f"above the limit of {max_warning_fraction:.1%} (max_warning_fraction)"
        )
    problems += explainer.problems[contract.WARNING]
    status = "rejected" if critical_failed or too_many or not structure_ok else "accepted"

    quarantine_rows = sorted(set(explainer.reasons) | set(parsed.ragged_rows))
    left = rows_total - len(quarantine_rows)
    if with_target and status == "accepted" and left < contract.MIN_BATCH_ROWS:
        status = "rejected"  # the rows that would be curated: too few to split and train on
        problems.insert(0, _too_few_left(left, rows_total))
        records.append(
            {
                "expectation": ENOUGH_ROWS_CHECK,
                "column": None,
                "severity": contract.CRITICAL,
                "success": False,
                "observed": f"{left} rows left after quarantining {rows_total - left}",
                "unexpected_count": rows_total - left,
                "unexpected_rows": quarantine_rows[:MAX_UNEXPECTED_ROWS],
                "rule": f"at least {contract.MIN_BATCH_ROWS} rows to curate",
            }
        )
    quarantined = _quarantine_frame(text, expected, quarantine_rows, explainer.reasons, parsed)
    if status == "accepted":
        keep = text.index.difference(pd.Index(quarantine_rows))
        accepted = _typed(text.loc[keep], with_target, runs[1].frame.loc[keep])
    else:
        accepted = _typed(empty_frame(expected), with_target)

    return BatchValidation(
        status=status,
        rows_total=rows_total,
        accepted=accepted,
        quarantined=quarantined,
        expectations=records,
        failed_expectations=[_name(r) for r in records if not r["success"]],
        problems=problems,
        report_html=(docs_dir / "index.html") if docs_dir is not None else None,
        warning_fraction=fraction,
    )


def _too_few_left(left: int, total: int) -> str:
    return (
        f"not enough rows to train ({left} < {contract.MIN_BATCH_ROWS}) after quarantining "
        f"{total - left} of {total}: a dataset needs at least {contract.MIN_BATCH_ROWS} rows to "
        "be split into train, validation and test"
    )


def _name(record: dict[str, Any]) -> str:
    column = record["column"]
    return f"{record['expectation']}({column})" if column else record["expectation"]


def _parse_record(parsed: ParsedBatch) -> dict[str, Any]:
    ok = parsed.readable and not parsed.ragged_rows
    if not parsed.readable:
        observed = parsed.problems[0] if parsed.problems else "unreadable"
    elif parsed.ragged_rows:
        observed = f"{len(parsed.ragged_rows)} rows with a different number of fields"
    else:
        observed = (
            f"{len(parsed.frame)} rows, header row {'present' if parsed.header else 'absent'}"
        )
    return {
        "expectation": PARSE_CHECK,
        "column": None,
        "severity": contract.CRITICAL,
        "success": ok,
        "observed": observed,
        "unexpected_count": len(parsed.ragged_rows),
        "unexpected_rows": parsed.ragged_rows[:MAX_UNEXPECTED_ROWS],
        "rule": "UTF-8 CSV text, one row per line, same number of fields in every row",
    }


def _typed(
    text: pd.DataFrame, with_target: bool, numeric: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Canonical typed columns: sex str, measurements float64, rings int64; index 0..n-1.

    ``numeric`` (the warning suite's frame for the same rows, when it ran) saves re-parsing."""
    if numeric is None:
        numeric = contract.numeric_frame(text, with_target)
    data: dict[str, pd.Series] = {"sex": text["sex"].astype("str")}
    for c in NUMERIC_FEATURES:
        data[c] = numeric[c]
    if with_target:
        data[TARGET] = numeric[TARGET].round().astype("int64")
    return pd.DataFrame(data).reset_index(drop=True)


def _quarantine_frame(
    text: pd.DataFrame,
    expected: list[str],
    rows: list[int],
    reasons: dict[int, list[str]],
    parsed: ParsedBatch,
) -> pd.DataFrame:
    columns = [*expected, "row_number", "reasons"]
    if not rows or list(text.columns) != expected:
        return pd.DataFrame({c: pd.Series([], dtype="str") for c in columns}).assign(
            row_number=pd.Series([], dtype="int64")
        )[columns]
    frame = text.loc[rows, expected].copy()
    frame["row_number"] = frame.index.astype("int64")
    ragged = set(parsed.ragged_rows)
    frame["reasons"] = [
        "; ".join(
            (["wrong number of fields"] if r in ragged else []) + list(dict.fromkeys(reasons[r]))
        )
        for r in rows
    ]
    return frame.reset_index(drop=True)[columns]


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


class _Explainer:
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
                f"{_name(record)} could not be evaluated: {info.get('exception_message')}",
            )
        elif not res.success:
            self._explain(record, kwargs, rows)
        return record

    def _explain(self, record: dict[str, Any], kwargs: dict, rows: list[int]) -> None:
        kind, severity = record["expectation"], record["severity"]
        name = _name(record)
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
