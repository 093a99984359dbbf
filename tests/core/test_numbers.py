"""The one number grammar (jobs.core.numbers) that ingest, serving and monitoring all read with."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.core.numbers import (
    INTEGER_REGEX,
    NUMBER_REGEX,
    NotANumber,
    is_integer,
    is_number,
    looks_numeric,
    parse_number,
)
from validation.suite import to_numbers

# Every script's decimal digits that Python's float() reads (Arabic-Indic, Devanagari, full-width…)
FOREIGN_DIGITS = [chr(c) for c in range(0x80, 0x10000) if chr(c).isdecimal()]


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.455", 0.455), (" 1e-3\t", 0.001), (".5", 0.5), ("5.", 5.0), ("-2", -2.0), ("+7E2", 700.0)],
)
def test_ascii_numbers_parse_as_float_does(text, value):
    assert is_number(text)
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0_5", "underscores"),
        ("\u0660.\u0664\u0665", "ARABIC-INDIC"),
        ("\uff10.\uff15", "FULLWIDTH"),
        ("\u0967\u0968", "DEVANAGARI"),
        ("nan", "spelled out"),
        ("-Infinity", "spelled out"),
        ("inf", "spelled out"),
        ("0x1p-2", "not a number"),
        ("0.5\u00a0", "ASCII"),
        ("", "empty"),
        ("1,5", "not a number"),
    ],
)
def test_what_float_or_pandas_read_is_not_a_number_here(text, why):
    assert not is_number(text)
    with pytest.raises(NotANumber) as info:
        parse_number(text)
    assert repr(text) in str(info.value) and why in str(info.value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_a_client_writes_is_a_number(x):
    for text in (repr(x), f"{x:.6g}", f"{x:e}"):
        assert parse_number(text) == float(text)


@given(st.text(alphabet=st.sampled_from(FOREIGN_DIGITS + list("0123456789.")), min_size=1))
def test_a_digit_of_another_script_is_never_a_number(text):
    foreign = any(not ch.isascii() for ch in text)
    if foreign:
        assert not is_number(text)
        assert not re.match(NUMBER_REGEX, text) and not re.match(INTEGER_REGEX, text)


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=12) | st.from_regex(NUMBER_REGEX))
def test_parsing_accepts_exactly_what_the_regex_matches(text):
    matches = re.fullmatch(NUMBER_REGEX[1:-1], text.strip(" \t\n\r\f\v")) is not None
    try:
        value = parse_number(text)
    except NotANumber:
        assert not matches
    else:
        assert matches and value == float(text.strip())


def test_regexes_are_the_same_grammar():
    for text in ["1", "1.0", "9.", "0_5", "\u0661", "nan", "1e3"]:
        assert bool(re.match(NUMBER_REGEX, text)) == is_number(text)
    assert is_integer("15") and is_integer("15.0") and not is_integer("15.5")
    assert not is_integer("\u0661\u0665")


def test_column_wise_parse_gives_nan_outside_the_grammar():
    column = pd.Series(["0.4", "\u0663", None, "0_5", " 2 ", "inf", "1e999"], dtype="str")
    got = to_numbers(column).tolist()
    assert got[0] == 0.4 and got[4] == 2.0 and got[6] == math.inf
    assert all(math.isnan(v) for v in (got[1], got[2], got[3], got[5]))


def test_a_first_row_of_foreign_digits_still_looks_like_data():
    assert looks_numeric("\u0660.\u0664\u0665") and looks_numeric("0.45") and looks_numeric("0_5")
    assert not looks_numeric("whole_weight") and not looks_numeric("Whole weight (g/200)")
