"""The data contract (DESIGN §3) on the real UCI file, generated data and each kind of bad input.

Everything runs the real Great Expectations suites and builds a real Data Docs site.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from jobs.core.schema import COLUMNS, FEATURES
from jobs.core.synthetic import make_abalone, to_csv_bytes
from validation import BatchValidation, validate_batch, validate_frame

HEADER = ",".join(COLUMNS) + "\n"


def run(data: bytes, tmp_path: Path, fraction: float = 0.02) -> BatchValidation:
    return validate_batch(
        data,
        ingest_id="test-ingest",
        source={"source": "test"},
        max_warning_fraction=fraction,
        docs_dir=tmp_path / "docs",
    )


def lines_of(n: int, seed: int = 7) -> list[str]:
    return to_csv_bytes(make_abalone(n, seed=seed)).decode().splitlines()


def with_cell(lines: list[str], index: int, column: str, value: str) -> bytes:
    out = list(lines)
    fields = out[index].split(",")
    fields[COLUMNS.index(column)] = value
    out[index] = ",".join(fields)
    return ("\n".join(out) + "\n").encode()


def failed(result: BatchValidation) -> set[str]:
    return set(result.failed_expectations)


def problems(result: BatchValidation) -> str:
    return "\n".join(result.problems)


# --- the real file and generated data ---------------------------------------------------------


@pytest.fixture(scope="module")
def real(real_data_path, tmp_path_factory) -> BatchValidation:
    return run(real_data_path.read_bytes(), tmp_path_factory.mktemp("real"))


@pytest.mark.realdata
def test_real_file_is_accepted_and_every_row_is_accounted_for(real):
    assert real.status == "accepted"
    assert real.rows_total == 4177
    assert len(real.accepted) + len(real.quarantined) == 4177
    assert list(real.accepted.columns) == list(COLUMNS)
    assert real.accepted["rings"].dtype == "int64"
    assert real.accepted["length"].dtype == "float64"
    assert not any("critical" in p for p in real.problems)


@pytest.mark.realdata
def test_real_file_quarantines_the_known_anomalies_with_reasons(real):
    q = real.quarantined.set_index("row_number")
    # the two height == 0 rows of the UCI file (lines 1258 and 3997)
    zero_height = q[q["height"] == "0"]
    assert sorted(zero_height.index) == [1258, 3997]
    assert all("height" in reason for reason in zero_height["reasons"])
    # the implausible heights 0.515 and 1.13 and the row with diameter > length
    assert "above the plausible maximum 0.5" in q.loc[2052, "reasons"]
    assert "diameter 0.375 > length 0.185" in q.loc[1211, "reasons"]
    assert "shucked_weight 0.435 exceeds whole_weight 0.1055" in q.loc[1217, "reasons"]
    assert len(q) < 0.02 * 4177
    assert "row 1258, column 'height': height=0 is not > 0" in problems(real)
    assert "expect_column_values_to_be_between(height)" in failed(real)
    height = next(
        e
        for e in real.expectations
        if e["expectation"] == "expect_column_values_to_be_between" and e["column"] == "height"
    )
    assert height["severity"] == "warning"
    assert height["unexpected_count"] == 4
    assert set(height["unexpected_rows"]) == {1258, 1418, 2052, 3997}


@pytest.mark.realdata
def test_real_file_report_is_a_data_docs_site_listing_the_expectations(real):
    html = real.report_html
    assert html.name == "index.html" and html.is_file()
    pages = list(html.parent.glob("validations/**/*.html"))
    assert len(pages) == 2  # the critical and the warning suite results
    text = "\n".join(p.read_text() for p in pages)
    assert "expect_column_values_to_be_between" in text or "values must be" in text
    assert "height" in text and "1258" in text


def test_generated_batch_is_accepted_whole(tmp_path):
    data = to_csv_bytes(make_abalone(300, seed=11))
    result = run(data, tmp_path)
    assert result.status == "accepted", result.problems
    assert result.failed_expectations == []
    assert len(result.accepted) == 300 and result.quarantined.empty
    pd.testing.assert_frame_equal(result.accepted, make_abalone(300, seed=11), check_dtype=False)
    assert result.report_html.is_file()
    assert {e["severity"] for e in result.expectations} == {"critical", "warning"}
    assert all(e["success"] for e in result.expectations)


def test_header_row_is_recognised_case_and_space_insensitively(tmp_path):
    lines = lines_of(40)
    header = (
        "Sex, Length,Diameter,Height,Whole weight,Shucked Weight,Viscera weight,Shell weight,Rings"
    )
    data = ("\n".join([header, *lines]) + "\n").encode()
    result = run(with_cell([header, *lines], 5, "sex", "X"), tmp_path)
    assert result.status == "rejected"
    # with a header the sixth line is the fifth data row: row numbers are lines in the file
    assert "row 6, column 'sex': 'X' not in {M,F,I}" in problems(result)
    assert run(data, tmp_path).status == "accepted"


# --- bad inputs -------------------------------------------------------------------------------


def test_empty_file_is_rejected(tmp_path):
    result = run(b"", tmp_path)
    assert result.status == "rejected"
    assert result.rows_total == 0
    assert "file is empty" in problems(result)
    assert "expect_table_row_count_to_be_between" in failed(result)
    assert result.report_html.is_file()


def test_header_only_is_rejected_for_row_count(tmp_path):
    result = run(HEADER.encode(), tmp_path)
    assert result.status == "rejected"
    assert failed(result) == {"expect_table_row_count_to_be_between"}
    assert "not enough rows to train (0 < 20)" in problems(result)


@pytest.mark.parametrize("width", [8, 10])
def test_wrong_column_count_is_rejected(tmp_path, width):
    lines = lines_of(30)
    if width == 8:
        rows = [",".join(line.split(",")[:8]) for line in lines]
    else:
        rows = [line + ",1" for line in lines]
    result = run(("\n".join(rows) + "\n").encode(), tmp_path)
    assert result.status == "rejected"
    assert "expect_table_columns_to_match_ordered_list" in failed(result)
    assert f"columns do not match the contract: found {width}" in problems(result)
    assert result.accepted.empty
    assert result.report_html.is_file()


def test_non_numeric_measurement_is_rejected_naming_row_and_column(tmp_path):
    result = run(with_cell(lines_of(30), 6, "diameter", "abc"), tmp_path)
    assert result.status == "rejected"
    assert failed(result) == {"expect_column_values_to_match_regex(diameter)"}
    assert "row 7, column 'diameter': 'abc' is not a number" in problems(result)
    assert result.accepted.empty
    assert result.quarantined["row_number"].tolist() == [7]
    assert result.quarantined["diameter"].tolist() == ["abc"]  # raw value kept as text


def test_unknown_sex_is_rejected(tmp_path):
    result = run(with_cell(lines_of(30), 6, "sex", "X"), tmp_path)
    assert result.status == "rejected"
    assert failed(result) == {"expect_column_values_to_be_in_set(sex)"}
    assert "row 7, column 'sex': 'X' not in {M,F,I}" in problems(result)


def test_one_negative_weight_in_a_large_batch_is_quarantined(tmp_path):
    lines = lines_of(400)
    result = run(with_cell(lines, 99, "whole_weight", "-0.2"), tmp_path)
    assert result.status == "accepted"
    assert failed(result) == {"expect_column_values_to_be_between(whole_weight)"}
    assert len(result.accepted) == 399
    assert result.quarantined["row_number"].tolist() == [100]
    assert "whole_weight=-0.2 is not > 0" in result.quarantined["reasons"].iloc[0]
    assert "row 100, column 'whole_weight'" in problems(result)


def test_negative_weight_above_the_warning_fraction_rejects_a_small_batch(tmp_path):
    result = run(with_cell(lines_of(20), 3, "whole_weight", "-0.2"), tmp_path)
    assert result.status == "rejected"
    assert result.accepted.empty
    assert "1 of 20 rows (5.0%) have warning anomalies, above the limit of 2.0%" in problems(result)


def test_rings_zero_is_a_warning(tmp_path):
    result = run(with_cell(lines_of(100), 9, "rings", "0"), tmp_path)
    assert result.status == "accepted"
    assert failed(result) == {"expect_column_values_to_be_between(rings)"}
    assert "row 10, column 'rings': rings=0 is not >= 1" in problems(result)
    assert len(result.accepted) == 99


def test_fractional_rings_is_critical(tmp_path):
    result = run(with_cell(lines_of(100), 9, "rings", "2.5"), tmp_path)
    assert result.status == "rejected"
    assert failed(result) == {"expect_column_values_to_match_regex(rings)"}
    assert "row 10, column 'rings': '2.5' is not an integer" in problems(result)


def test_all_null_column_is_rejected(tmp_path):
    rows = []
    for line in lines_of(30):
        fields = line.split(",")
        fields[COLUMNS.index("height")] = ""
        rows.append(",".join(fields))
    result = run(("\n".join(rows) + "\n").encode(), tmp_path)
    assert result.status == "rejected"
    assert failed(result) == {"expect_column_values_to_not_be_null(height)"}
    assert "row 1, column 'height': missing value" in problems(result)
    record = next(e for e in result.expectations if e["column"] == "height" and not e["success"])
    assert record["unexpected_count"] == 30 and len(record["unexpected_rows"]) == 20


def test_binary_garbage_is_rejected_not_raised(tmp_path):
    garbage = bytes(range(256)) * 20 + os.urandom(2048)
    result = run(garbage, tmp_path)
    assert result.status == "rejected"
    assert "file_parses_as_csv" in failed(result)
    assert "expect_table_columns_to_match_ordered_list" in failed(result)
    assert "file is binary, not CSV text" in problems(result)
    assert result.report_html.is_file()


def test_undecodable_text_is_rejected(tmp_path):
    result = run("M,0.4,0.3,0.1,0.5,0.2,0.1,0.15,9\n".encode("utf-16"), tmp_path)
    assert result.status == "rejected"
    assert "file_parses_as_csv" in failed(result)


def test_ragged_row_is_rejected_naming_the_row(tmp_path):
    lines = lines_of(30)
    lines[4] = ",".join(lines[4].split(",")[:7])
    result = run(("\n".join(lines) + "\n").encode(), tmp_path)
    assert result.status == "rejected"
    assert "row 5: 7 fields, expected 9" in problems(result)
    assert {"file_parses_as_csv", "expect_column_values_to_not_be_null(rings)"} <= failed(result)


# --- in-memory frames (drift monitoring on captured inputs) ------------------------------------


def test_validate_frame_on_features_without_target():
    features = make_abalone(60, seed=5)[list(FEATURES)]
    result = validate_frame(features, with_target=False)
    assert result.status == "accepted", result.problems
    assert list(result.accepted.columns) == list(FEATURES)
    assert result.report_html is None

    bad = features.copy()
    bad.loc[3, "sex"] = "Q"
    bad.loc[4, "height"] = float("nan")
    result = validate_frame(bad, with_target=False)
    assert result.status == "rejected"
    assert "row 4, column 'sex': 'Q' not in {M,F,I}" in problems(result)
    assert "row 5, column 'height': missing value" in problems(result)


def test_validate_frame_reports_wrong_columns():
    result = validate_frame(make_abalone(10, seed=1), with_target=False)
    assert result.status == "rejected"
    assert "expect_table_columns_to_match_ordered_list" in failed(result)


def test_file_over_the_row_limit_is_rejected_without_parsing(tmp_path):
    result = run(b"M,0.4,0.3,0.1,0.5,0.2,0.1,0.15,9\n" * 1_000_002, tmp_path)
    assert result.status == "rejected"
    assert result.rows_total == 1_000_002
    assert "file has 1,000,002 lines, more than the 1,000,000-row limit" in problems(result)
    assert "expect_table_row_count_to_be_between" in failed(result)
    assert "row count 1000002 outside [20, 1,000,000]" in problems(result)


def test_oversized_field_is_rejected_not_raised(tmp_path):
    result = run(b"M," + b"1" * 200_000 + b"\n", tmp_path)
    assert result.status == "rejected"
    assert "row 1: not readable as CSV" in problems(result)


def test_file_over_the_byte_limit_is_rejected_without_parsing(tmp_path):
    line = b"M,0.4,0.3,0.1,0.5,0.2,0.1,0.15,9" + b" " * 200 + b"\n"
    result = run(line * 600_000, tmp_path)  # 139 MB, fewer lines than the row limit
    assert result.status == "rejected"
    assert "bytes, more than the 128,000,000-byte limit" in problems(result)
    assert "file_parses_as_csv" in failed(result)


def test_component_weight_tolerance_and_diameter_rule(tmp_path):
    frame = make_abalone(200, seed=3)
    whole = frame.loc[10, "whole_weight"]
    frame.loc[10, "shell_weight"] = round(whole * 1.03, 4)  # within the 5% tolerance
    frame.loc[20, "shucked_weight"] = round(frame.loc[20, "whole_weight"] * 1.2, 4)  # beyond
    frame.loc[30, "diameter"] = frame.loc[30, "length"] + 0.05
    result = run(to_csv_bytes(frame), tmp_path)
    assert result.status == "accepted"
    assert result.quarantined["row_number"].tolist() == [21, 31]
    assert failed(result) == {
        "expect_column_values_to_be_between(shucked_to_whole_ratio)",
        "expect_column_pair_values_a_to_be_greater_than_b(length,diameter)",
    }
    reasons = result.quarantined.set_index("row_number")["reasons"]
    assert "shucked_weight" in reasons[21] and "by more than 5%" in reasons[21]
    assert "diameter" in reasons[31] and "> length" in reasons[31]


def test_rejection_for_too_many_warnings_explains_the_fraction_first(tmp_path):
    lines = lines_of(20)
    data = with_cell(lines, 3, "height", "0")
    data = with_cell(data.decode().splitlines(), 8, "rings", "0")
    result = run(data, tmp_path, fraction=0.05)
    assert result.status == "rejected"
    assert result.problems[0] == (
        "2 of 20 rows (10.0%) have warning anomalies, above the limit of 5.0% (max_warning_fraction)"
    )
    assert sorted(result.quarantined["row_number"]) == [4, 9]


def test_validation_without_data_docs_gives_the_same_outcome(tmp_path):
    # docs_dir=None validates through Batch.validate, with docs through the checkpoint
    frame = make_abalone(120, seed=9)
    frame.loc[5, "height"] = 0.0
    frame.loc[7, "sex"] = "X"
    frame.loc[9, "rings"] = 0
    with_docs = validate_frame(frame, docs_dir=tmp_path / "docs", max_warning_fraction=0.05)
    without = validate_frame(frame, max_warning_fraction=0.05)
    assert with_docs.report_html.is_file() and without.report_html is None
    assert without.status == with_docs.status == "rejected"
    assert without.expectations == with_docs.expectations
    assert without.problems == with_docs.problems
    pd.testing.assert_frame_equal(without.quarantined, with_docs.quarantined)
    assert "row 8, column 'sex': 'X' not in {M,F,I}" in problems(without)
    assert sorted(without.quarantined["row_number"]) == [6, 8, 10]


def test_too_few_rows_left_after_quarantine_reject_the_batch(tmp_path):
    """With a permissive warning limit, quarantining may leave fewer rows than a dataset needs."""
    result = run(with_cell(lines_of(20), 3, "height", "0"), tmp_path, fraction=0.1)
    assert result.status == "rejected" and result.accepted.empty
    assert result.problems[0].startswith(
        "not enough rows to train (19 < 20) after quarantining 1 of 20"
    )
    assert "rows_left_to_train" in failed(result)
    assert run(with_cell(lines_of(21), 3, "height", "0"), tmp_path, fraction=0.1).ok


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("\u0660.\u0664", "ARABIC-INDIC"),
        ("\uff10.\uff14", "FULLWIDTH"),
        ("0_4", "underscores"),
        ("infinity", "spelled out"),
    ],
)
def test_a_measurement_outside_the_number_grammar_rejects_the_batch(tmp_path, value, why):
    result = run(with_cell(lines_of(30), 6, "diameter", value), tmp_path)
    assert result.status == "rejected"
    assert "expect_column_values_to_match_regex(diameter)" in failed(result)
    assert f"row 7, column 'diameter': {value!r} is not a number" in problems(result)
    assert why in problems(result)
