"""Reference-vs-live charts of the drift report as inline SVG (numpy and string building only).

One chart per column, 306 by 171 px: the column name as title, a legend, and

- numeric columns: 24 equal-width bins between the smallest and largest finite value of the
  reference sample and the live values together; the reference as filled grey bars, the live
  values as a step outline in the column's status colour; each series normalised to its own total
  (with equal-width bins that is the density up to one common factor, so the picture is the same);
  the axis labelled at its ends (the bins' outer edges) and middle, or at the value when there is
  only one;
- categorical columns: the share of each category (the profile's, then categories seen only live,
  the rarest beyond :data:`MAX_CATEGORIES` merged into "other"), reference and live side by side.

Non-finite values are left out; a series with no values draws nothing and the chart says so. All
text is escaped; the SVG is well-formed XML with ``role="img"``, an ``aria-label`` and a
``<title>`` ("NAME reference vs live"), and needs no external resource.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

WIDTH, HEIGHT = 306, 171
REFERENCE_COLOUR = "#90a4ae"
BINS = 24  # 25 edges
MAX_CATEGORIES = 12
_TEXT = 'font-family="system-ui,sans-serif" fill="#333"'
_TOP, _BOTTOM = 34, HEIGHT - 20  # plot area, y
_LEFT_NUMERIC, _LEFT_CATEGORICAL, _RIGHT = 10, 34, WIDTH - 10


def histogram_svg(name: str, spec: Mapping[str, Any], live: Any, colour: str) -> str:
    """The chart of column ``name``: reference ``spec`` (a profile entry) against ``live`` values."""
    colour = html.escape(colour)
    if spec.get("type") == "categorical":
        body = _categorical(spec, live, colour)
    else:
        body = _numeric(spec, live, colour)
    label = html.escape(f"{name} reference vs live")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
        f"<title>{label}</title>"
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
        f'<text x="{WIDTH / 2:g}" y="13" text-anchor="middle" font-size="11" {_TEXT}>'
        f"{html.escape(name)}</text>"
        f"{_legend(colour)}{body}</svg>"
    )


def finite_values(values: Any) -> np.ndarray:
    """``values`` as a float array without NaN, ±inf and anything that is not a number."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        arr = arr.astype(float, copy=False).ravel()
    else:
        try:
            arr = arr.astype(float).ravel()
        except (TypeError, ValueError):
            arr = np.array([_to_float(v) for v in arr.ravel()], dtype=float)
    return arr[np.isfinite(arr)]


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def bin_edges(ref: np.ndarray, live: np.ndarray) -> np.ndarray:
    """25 equal-width edges over both series' range. A single value (or values too close together
    for 24 bins) gets an interval around it: ±5 % of its size, at least ±0.5."""
    both = [a for a in (ref, live) if a.size]
    if not both:
        return np.linspace(0.0, 1.0, BINS + 1)
    lo = float(min(a.min() for a in both))
    hi = float(max(a.max() for a in both))
    edges = _spread(lo, hi)
    if not (np.diff(edges) > 0).all():
        pad = max(abs(lo) * 0.05, abs(hi) * 0.05, 0.5)
        if not np.isfinite(hi + pad):  # next to the largest float: widen downwards only
            lo, hi = lo - 2 * pad, hi
        elif not np.isfinite(lo - pad):
            lo, hi = lo, hi + 2 * pad
        else:
            lo, hi = lo - pad, hi + pad
        edges = _spread(lo, hi)
    return edges


def _spread(lo: float, hi: float) -> np.ndarray:
    t = np.linspace(0.0, 1.0, BINS + 1)
    return lo * (1.0 - t) + hi * t  # not lo + (hi - lo) * t: that overflows for ±1e308


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each bin's share of ``values`` (all inside ``edges``' range)."""
    if not values.size:
        return np.zeros(len(edges) - 1)
    lo, hi = float(edges[0]), float(edges[-1])
    if np.isfinite(hi - lo):
        counts, _ = np.histogram(values, bins=len(edges) - 1, range=(lo, hi))
    else:
        counts, _ = np.histogram(values, bins=edges)
    return counts / values.size


def _numeric(spec: Mapping[str, Any], live: Any, colour: str) -> str:
    ref = finite_values(spec.get("sample", []))
    cur = finite_values(live)
    edges = bin_edges(ref, cur)
    ref_share, cur_share = shares(ref, edges), shares(cur, edges)
    top = max(float(ref_share.max()), float(cur_share.max())) or 1.0
    xs = np.linspace(_LEFT_NUMERIC, _RIGHT, len(edges))
    ref_y = _BOTTOM - (_BOTTOM - _TOP) * ref_share / top
    cur_y = _BOTTOM - (_BOTTOM - _TOP) * cur_share / top
    bars = "".join(
        f'<rect x="{xs[i]:.1f}" y="{ref_y[i]:.1f}" width="{xs[i + 1] - xs[i]:.1f}" '
        f'height="{_BOTTOM - ref_y[i]:.1f}"/>'
        for i in np.flatnonzero(ref_share)
    )
    parts = [
        _axis(_LEFT_NUMERIC),
        f'<g class="reference" fill="{REFERENCE_COLOUR}" fill-opacity="0.7">{bars}</g>',
    ]
    if cur.size:
        steps = " ".join(
            f"{xs[i]:.1f},{y:.1f} {xs[i + 1]:.1f},{y:.1f}" for i, y in enumerate(cur_y)
        )
        parts.append(
            f'<polyline class="live" points="{xs[0]:.1f},{_BOTTOM} {steps} {xs[-1]:.1f},{_BOTTOM}" '
            f'fill="none" stroke="{colour}" stroke-width="1.6"/>'
        )
    present = [a for a in (ref, cur) if a.size]
    if present and min(a.min() for a in present) == max(a.max() for a in present):
        ticks = [((_LEFT_NUMERIC + _RIGHT) / 2, float(present[0][0]), "middle")]
    else:
        mid = float(edges[0]) / 2 + float(edges[-1]) / 2
        ticks = [(xs[0], float(edges[0]), "start"), ((xs[0] + xs[-1]) / 2, mid, "middle")]
        ticks.append((xs[-1], float(edges[-1]), "end"))
    parts += [
        f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" font-size="9" '
        f"{_TEXT}>{html.escape(f'{value:.4g}')}</text>"
        for x, value, anchor in ticks
    ]
    parts.append(_missing(ref.size, cur.size, _LEFT_NUMERIC, "reference sample"))
    return "".join(parts)


def categories(spec: Mapping[str, Any], counts: Counter[str]) -> list[str]:
    """The profile's categories, then live-only ones by count (capped, see MAX_CATEGORIES)."""
    known = [str(c) for c in spec.get("categories", [])]
    seen = set(known)
    unseen = sorted((c for c in counts if c not in seen), key=lambda c: (-counts[c], c))
    room = max(MAX_CATEGORIES - len(known), 1)
    return known + (unseen if len(unseen) <= room else unseen[: room - 1])


def _categorical(spec: Mapping[str, Any], live: Any, colour: str) -> str:
    counts: Counter[str] = Counter()
    for value, n in Counter(np.asarray(live, dtype=object).ravel().tolist()).items():
        counts[str(value)] += n
    total = sum(counts.values())
    cats = categories(spec, counts)
    expected_of = spec.get("expected", {})
    expected = [_share(expected_of.get(c, 0.0)) for c in cats]
    actual = [counts.get(c, 0) / total if total else 0.0 for c in cats]
    labels = list(cats)
    others = total - sum(counts.get(c, 0) for c in cats)
    fallback = {}
    if others:  # live-only categories beyond the cap
        n_other = len(counts) - len([c for c in cats if c in counts])
        labels.append(f"other ({n_other})")
        fallback[labels[-1]] = f"+{n_other}"
        expected.append(0.0)
        actual.append(others / total)
    top = max([*expected, *actual]) or 1.0
    slot = (_RIGHT - _LEFT_CATEGORICAL) / max(len(labels), 1)
    font = 9 if len(labels) <= 6 else 7
    parts = [_axis(_LEFT_CATEGORICAL)]
    for i, label in enumerate(labels):
        x = _LEFT_CATEGORICAL + slot * i
        for offset, share, attrs in (
            (0.1, expected[i], f'class="reference" fill="{REFERENCE_COLOUR}" fill-opacity="0.7"'),
            (0.5, actual[i], f'class="live" fill="{colour}"'),
        ):
            height = (_BOTTOM - _TOP) * share / top
            parts.append(
                f'<rect {attrs} x="{x + slot * offset:.1f}" y="{_BOTTOM - height:.1f}" '
                f'width="{slot * 0.4:.1f}" height="{height:.1f}"/>'
            )
        fits = max(int(slot / (font * 0.62)), 2)  # characters of about 0.6 em
        short = label if len(label) <= fits else fallback.get(label, label[: fits - 1] + "…")
        parts.append(
            f'<text class="tick" x="{x + slot / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" '
            f'font-size="{font}" {_TEXT}>{html.escape(short)}</text>'
        )
    parts.append(
        f'<text x="{_LEFT_CATEGORICAL - 3}" y="{_TOP + 4}" text-anchor="end" font-size="8" '
        f"{_TEXT}>{top:.0%}</text>"
        f'<text x="{_LEFT_CATEGORICAL - 3}" y="{_BOTTOM}" text-anchor="end" font-size="8" '
        f"{_TEXT}>0</text>"
        f'<text x="{_LEFT_CATEGORICAL - 3}" y="{(_TOP + _BOTTOM) / 2 + 3:.0f}" '
        f'text-anchor="end" font-size="8" {_TEXT}>share</text>'
    )
    parts.append(_missing(sum(expected), total, _LEFT_CATEGORICAL, "reference shares"))
    return "".join(parts)


def _share(value: Any) -> float:
    share = _to_float(value)
    return share if np.isfinite(share) and share > 0 else 0.0


def _axis(left: float) -> str:
    return (
        f'<line x1="{left}" y1="{_BOTTOM}" x2="{_RIGHT}" y2="{_BOTTOM}" stroke="#999" '
        'stroke-width="1"/>'
    )


def _legend(colour: str) -> str:
    x = WIDTH - 120
    return (
        f'<rect x="{x}" y="20" width="10" height="7" fill="{REFERENCE_COLOUR}" '
        'fill-opacity="0.7"/>'
        f'<text x="{x + 13}" y="27" font-size="9" {_TEXT}>reference</text>'
        f'<line x1="{x + 64}" y1="24" x2="{x + 76}" y2="24" stroke="{colour}" stroke-width="2"/>'
        f'<text x="{x + 79}" y="27" font-size="9" {_TEXT}>live</text>'
    )


def _missing(reference: float, live: float, left: float, what: str) -> str:
    absent: Sequence[str] = [
        text for text, n in ((f"no {what}", reference), ("no live values", live)) if not n
    ]
    if not absent:
        return ""
    return (
        f'<text class="note" x="{(left + _RIGHT) / 2:.1f}" y="{(_TOP + _BOTTOM) / 2:.0f}" '
        'text-anchor="middle" font-size="10" fill="#757575" stroke="#fff" stroke-width="3" '
        f'paint-order="stroke" font-family="system-ui,sans-serif">'
        f"{html.escape(' · '.join(absent))}</text>"
    )
