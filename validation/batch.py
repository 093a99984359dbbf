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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from jobs.core.schema import NUMERIC_FEATURES, TARGET
from validation import suite as contract
from validation.explain import MAX_UNEXPECTED_ROWS, Explainer, expectation_name
from validation.parse import ParsedBatch, empty_frame, frame_to_text, parse_bytes
from validation.runner import SuiteRun, runtime

log = logging.getLogger(__name__)

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

    explainer = Explainer(text, runs)
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
        failed_expectations=[expectation_name(r) for r in records if not r["success"]],
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
