"""The drift report's reference-vs-live charts (jobs.monitoring.charts, inline SVG): well-formed,
named for screen readers, escaped, self-contained, drawn from the data, and robust to empty,
non-finite, single-valued and huge inputs; and the page render_html builds from them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from itertools import pairwise

import numpy as np
import pytest

from jobs.adapters.capture_records import CaptureBatch
from jobs.core.drift import DRIFT, assess
from jobs.core.profile import PREDICTION, build_profile
from jobs.core.schema import FEATURES
from jobs.core.synthetic import make_abalone
from jobs.monitoring.charts import HEIGHT, MAX_CATEGORIES, REFERENCE_COLOUR, histogram_svg
from jobs.monitoring.report import _COLOURS, render_html

SVG = "{http://www.w3.org/2000/svg}"
RED = "#c62828"
NUMERIC = {"type": "numeric", "sample": [float(v) for v in np.linspace(0.1, 0.8, 200)]}
SEX = {
    "type": "categorical",
    "categories": ["M", "F", "I"],
    "expected": {"M": 0.5, "F": 0.25, "I": 0.25},
}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    return root


def reference_bars(root: ET.Element) -> list[ET.Element]:
    grouped = [r for g in root.iter(f"{SVG}g") if g.get("class") == "reference" for r in g]
    return grouped + [r for r in root.iter(f"{SVG}rect") if r.get("class") == "reference"]


def live_bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "live"]


def live_steps(root: ET.Element) -> list[tuple[float, float, float]]:
    """The live outline's horizontal segments as (x0, x1, y), left to right."""
    (line,) = [p for p in root.iter(f"{SVG}polyline") if p.get("class") == "live"]
    points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    return [(a[0], b[0], a[1]) for a, b in pairwise(points) if a[1] == b[1] and a[0] < b[0]]


def has_live_outline(root: ET.Element) -> bool:
    return any(p.get("class") == "live" for p in root.iter(f"{SVG}polyline"))


def texts(root: ET.Element, cls: str | None = None) -> list[str]:
    return [t.text for t in root.iter(f"{SVG}text") if cls is None or t.get("class") == cls]


def numbers(root: ET.Element) -> list[float]:
    found = []
    for el in root.iter():
        for key in ("x", "y", "width", "height", "x1", "x2", "y1", "y2"):
            if el.get(key) is not None:
                found.append(float(el.get(key)))
        if el.get("points"):
            found += [float(v) for p in el.get("points").split() for v in p.split(",")]
    return found


# ---- numeric columns --------------------------------------------------------------------------------


def test_a_chart_is_named_for_screen_readers_and_needs_nothing_external():
    svg = histogram_svg("length", NUMERIC, np.linspace(0.2, 0.6, 500), RED)
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "length reference vs live"
    assert root.find(f"{SVG}title").text == "length reference vs live"
    assert (root.get("width"), root.get("height")) == ("306", "171")
    assert "length" in texts(root)  # the visible title
    assert {"reference", "live"} <= set(texts(root))  # the legend
    assert not re.search(r"href|url\(|https?://(?!www\.w3\.org/2000/svg)", svg)


def test_text_is_escaped():
    name = "<script>alert('x')</script> & \"more\""
    root = parse(histogram_svg(name, SEX, np.array(["M", "<i>&"], dtype=object), RED))
    assert root.get("aria-label") == f"{name} reference vs live"
    assert name in texts(root)
    assert "<i>&" in texts(root, "tick")
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))


def test_live_values_in_one_bin_draw_one_tall_step_there():
    live = np.full(1000, 0.45)
    root = parse(histogram_svg("length", NUMERIC, live, RED))
    steps = live_steps(root)
    assert len(steps) == 24  # one per bin
    baseline = max(y for *_, y in steps)
    raised = [(x0, x1, y) for x0, x1, y in steps if y < baseline]
    assert len(raised) == 1
    # 0.45 lies at (0.45 - 0.1) / 0.7 of the axis (x from 10 to 296)
    x0, x1, top = raised[0]
    assert x0 <= 10 + 286 * 0.35 / 0.7 <= x1
    assert top < min(float(r.get("y")) for r in reference_bars(root))  # the tallest thing drawn
    # the stroke is the status colour; the reference stays grey behind it
    (line,) = root.iter(f"{SVG}polyline")
    assert line.get("stroke") == RED
    assert all(b.get("class") != "live" for b in reference_bars(root))
    (group,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "reference"]
    assert group.get("fill") == REFERENCE_COLOUR


def test_bar_heights_are_each_series_share_so_sizes_do_not_matter():
    spec = {"type": "numeric", "sample": [0.0, 1.0, 1.0, 1.0]}
    live = np.array([0.0] * 100 + [1.0] * 300)  # 100x the reference, same shape
    root = parse(histogram_svg("x", spec, live, RED))
    bars = sorted(reference_bars(root), key=lambda r: float(r.get("x")))
    assert len(bars) == 2  # bins 0 and 23, nothing drawn for the empty ones
    low, high = (float(b.get("height")) for b in bars)
    assert low == pytest.approx(high / 3, abs=0.1)
    steps = live_steps(root)
    base = max(y for *_, y in steps)
    assert [base - steps[0][2], base - steps[-1][2]] == pytest.approx([low, high], abs=0.1)


@pytest.mark.parametrize("live", [np.array([]), np.full(20, np.nan)], ids=["empty", "all-nan"])
def test_no_live_values_draw_the_reference_and_say_so(live):
    root = parse(histogram_svg("height", NUMERIC, live, RED))
    assert reference_bars(root)
    assert not has_live_outline(root)
    assert texts(root, "note") == ["no live values"]
    assert texts(root, "tick") == ["0.1", "0.45", "0.8"]  # the reference's range


def test_an_empty_reference_sample_draws_live_only_and_says_so():
    root = parse(histogram_svg("height", {"type": "numeric", "sample": []}, np.arange(5.0), RED))
    assert not reference_bars(root)
    assert has_live_outline(root)
    assert texts(root, "note") == ["no reference sample"]
    assert texts(root, "tick") == ["0", "2", "4"]


def test_nothing_at_all_still_draws_a_chart():
    root = parse(histogram_svg("height", {"type": "numeric"}, np.array([np.nan]), RED))
    assert texts(root, "note") == ["no reference sample · no live values"]


def test_a_single_value_is_one_bar_in_the_middle_labelled_with_the_value():
    spec = {"type": "numeric", "sample": [2.0, 2.0]}
    root = parse(histogram_svg("rings", spec, np.array([2.0, 2.0, 2.0]), RED))
    (bar,) = reference_bars(root)
    x, width = float(bar.get("x")), float(bar.get("width"))
    assert x <= 153 <= x + width + 0.1  # the middle of the axis
    (raised,) = [s for s in live_steps(root) if s[2] < max(y for *_, y in live_steps(root))]
    assert raised[0] == pytest.approx(x, abs=0.1)
    assert texts(root, "tick") == ["2"]


def test_non_finite_values_are_left_out():
    spec = {"type": "numeric", "sample": [1.0, 2.0, float("inf")]}
    live = np.array([np.inf, -np.inf, np.nan, 1.0, 2.0, 2.0])
    root = parse(histogram_svg("weight", spec, live, RED))
    assert texts(root, "tick") == ["1", "1.5", "2"]
    assert all(np.isfinite(numbers(root)))
    # live: 1 of 3 finite values in the first bin, 2 in the last
    steps = live_steps(root)
    base = max(y for *_, y in steps)
    assert (base - steps[0][2]) * 2 == pytest.approx(base - steps[-1][2], abs=0.2)


def test_values_that_are_not_numbers_are_left_out():
    live = np.array([0.3, None, "x", 0.5], dtype=object)
    root = parse(histogram_svg("length", NUMERIC, live, RED))
    raised = [s for s in live_steps(root) if s[2] < max(y for *_, y in live_steps(root))]
    assert len(raised) == 2


def test_extreme_values_and_huge_counts_give_finite_coordinates():
    spec = {"type": "numeric", "sample": [-1e308, 1e308]}
    live = np.full(3_000_000, 1.7e308)
    root = parse(histogram_svg("weight", spec, live, RED))
    assert all(np.isfinite(numbers(root)))
    assert texts(root, "tick") == ["-1e+308", "3.5e+307", "1.7e+308"]
    steps = live_steps(root)
    assert steps[-1][2] == min(y for *_, y in steps) < HEIGHT / 2  # all in the last bin
    single = parse(histogram_svg("w", {"type": "numeric", "sample": []}, np.full(3, 1.79e308), RED))
    assert all(np.isfinite(numbers(single)))
    assert texts(single, "tick") == ["1.79e+308"]


def test_values_too_close_for_24_bins_are_drawn_in_a_wider_interval():
    close = np.array([1.0, np.nextafter(1.0, 2.0)])
    root = parse(histogram_svg("w", {"type": "numeric", "sample": [1.0]}, close, RED))
    assert texts(root, "tick") == ["0.5", "1", "1.5"]
    assert len(reference_bars(root)) == 1


# ---- categorical columns ----------------------------------------------------------------------------


def test_categories_side_by_side_with_unseen_live_ones_added():
    live = np.array(["I"] * 30 + ["X"] * 10, dtype=object)
    root = parse(histogram_svg("sex", SEX, live, RED))
    assert texts(root, "tick") == ["M", "F", "I", "X"]
    ref = [float(r.get("height")) for r in reference_bars(root)]
    cur = [float(r.get("height")) for r in live_bars(root)]
    # shares: reference .5 .25 .25 0, live 0 0 .75 .25; the tallest (.75) is the full height
    full = cur[2]
    assert ref == pytest.approx([full * 2 / 3, full / 3, full / 3, 0], abs=0.1)
    assert cur == pytest.approx([0, 0, full, full / 3], abs=0.1)
    assert {r.get("fill") for r in live_bars(root)} == {RED}
    assert {r.get("fill") for r in reference_bars(root)} == {REFERENCE_COLOUR}
    # each live bar sits right of its reference bar
    for r, c in zip(reference_bars(root), live_bars(root), strict=True):
        assert float(r.get("x")) < float(c.get("x"))


def test_many_unseen_categories_are_capped_into_other():
    live = np.array([f"c{i:02d}" for i in range(40)] + ["M"] * 10, dtype=object)
    root = parse(histogram_svg("sex", SEX, live, RED))
    labels = texts(root, "tick")
    assert len(labels) == MAX_CATEGORIES
    assert labels[:3] == ["M", "F", "I"]
    assert labels[-1] in ("other (32)", "+32")
    # every live row is drawn somewhere: shares add up to 1
    cur = [float(r.get("height")) for r in live_bars(root)]
    full = max(cur)  # M holds 10 of 50 rows; "other" 32 of 50
    assert cur[-1] == full and cur[0] == pytest.approx(full * 10 / 32, abs=0.1)


def test_no_live_categories_draw_the_reference_and_say_so():
    root = parse(histogram_svg("sex", SEX, np.array([], dtype=object), RED))
    assert [float(r.get("height")) for r in live_bars(root)] == [0, 0, 0]
    assert max(float(r.get("height")) for r in reference_bars(root)) > 0
    assert texts(root, "note") == ["no live values"]


# ---- the page ---------------------------------------------------------------------------------------


def test_the_report_has_one_well_formed_chart_per_column_in_its_status_colour():
    train = make_abalone(800, seed=1)
    profile = build_profile(train[list(FEATURES)], train["whole_weight"] * 20)
    live = make_abalone(800, seed=2)
    live = live[live["sex"] == "I"].reset_index(drop=True)  # juveniles only: drift
    preds = live["whole_weight"].to_numpy() * 20
    batch = CaptureBatch(source="test", features=live[list(FEATURES)], predictions=preds)
    result = assess(profile, batch.features, preds)
    assert result.features["sex"].status == DRIFT
    summary = {
        "run_id": "r1",
        "created_at": "-",
        "env": "dev",
        "capture": batch.describe(),
        "reference": {"source": "test", "model_version": None, "n_rows": 800},
    }
    page = render_html(summary, result, batch, profile)
    charts = [parse(svg) for svg in re.findall(r"<svg .*?</svg>", page, flags=re.S)]
    names = [c.get("aria-label") for c in charts]
    assert names == [f"{n} reference vs live" for n in (*FEATURES, PREDICTION)]
    statuses = {n: f.status for n, f in result.features.items()}
    statuses[PREDICTION] = result.prediction.status
    for name, chart in zip((*FEATURES, PREDICTION), charts, strict=True):
        colours = {r.get("fill") for r in live_bars(chart)} | {
            p.get("stroke") for p in chart.iter(f"{SVG}polyline")
        }
        assert colours == {_COLOURS[statuses[name]]}, name
    assert "data:image" not in page and "<img" not in page
