"""The drift report as one self-contained HTML page (per-column table coloured by status,
reference-vs-live histograms drawn as inline SVG by :mod:`jobs.monitoring.charts`)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from jobs.adapters.capture_records import CaptureBatch
from jobs.core.drift import DRIFT, NA, OK, WARN, DriftResult
from jobs.core.profile import PREDICTION
from jobs.monitoring.charts import histogram_svg

_COLOURS = {DRIFT: "#c62828", WARN: "#ef8f00", OK: "#2e7d32", NA: "#757575"}
_BACKGROUNDS = {DRIFT: "#fdecea", WARN: "#fff4e0", OK: "#edf7ee", NA: "#f3f3f3"}


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not np.isfinite(value):
        return "-"
    if isinstance(value, float) and spec == "p":
        return "<1e-12" if value < 1e-12 else f"{value:.2g}"
    return format(value, spec)


def _rows_html(
    result: DriftResult, batch: CaptureBatch, profile: Mapping[str, Any]
) -> Iterable[str]:
    items = list(result.features.items())
    if result.prediction is not None:
        items.append((PREDICTION, result.prediction))
    for name, f in items:
        spec = profile[PREDICTION] if name == PREDICTION else profile["features"][name]
        if name == PREDICTION:
            live = batch.predictions
        elif name in batch.features.columns:
            column = batch.features[name]
            live = column.dropna().astype(str).to_numpy() if name == "sex" else column.to_numpy()
        else:
            live = np.empty(0)
        chart = histogram_svg(name, spec, live, _COLOURS.get(f.status, "#1565c0"))
        test = "χ²" if f.test == "chi2" else "KS"
        means = (
            f"{_fmt(f.reference_mean, '.4g')} → {_fmt(f.live_mean, '.4g')}"
            if f.kind == "numeric"
            else ""
        )
        yield (
            f'<tr style="background:{_BACKGROUNDS[f.status]}">'
            f"<td><b>{html.escape(name)}</b></td>"
            f'<td><span class="pill" style="background:{_COLOURS[f.status]}">'
            f"{html.escape(f.status)}</span></td>"
            f"<td>{_fmt(f.psi)}</td><td>{test} {_fmt(f.statistic)}</td>"
            f"<td>{html.escape(_fmt(f.pvalue, 'p'))}</td><td>{html.escape(means)}</td><td>{f.n:,}</td>"
            f"<td>{chart}</td>"
            f"<td>{html.escape(f.note)}</td></tr>"
        )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin-top:28px}
.banner{padding:14px 18px;border-radius:8px;color:#fff;font-size:18px;margin:14px 0}
table{border-collapse:collapse;font-size:13px} td,th{padding:6px 10px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:middle} th{background:#fafafa}
.pill{color:#fff;padding:2px 8px;border-radius:10px;font-size:12px}
.meta td{border:none;padding:2px 12px 2px 0} .muted{color:#666;font-size:12px}
"""


def render_html(
    summary: Mapping[str, Any],
    result: DriftResult,
    batch: CaptureBatch,
    profile: Mapping[str, Any],
) -> str:
    """The drift report as one self-contained HTML page (charts inline as SVG)."""
    status = result.status
    colour = {"drift": "#c62828", "ok": "#2e7d32"}.get(status, "#757575")
    headline = {
        "drift": "DRIFT DETECTED",
        "ok": "No drift",
        "insufficient_data": "Not enough data to judge",
    }.get(status, status)
    e = html.escape
    cap = summary["capture"]
    ref = summary["reference"]
    t = result.thresholds
    meta = [
        ("environment", summary["env"]),
        (
            "captured",
            f"{cap['rows']:,} rows in {cap['records']:,} records from {cap['files']} "
            f"file(s); {cap['skipped_lines']:,} unreadable lines skipped"
            + (
                f"; {cap['dropped_records']:,} records lost by data capture (the server could "
                "not write them, e.g. a full disk)"
                if cap.get("dropped_records")
                else ""
            ),
        ),
        (
            "sampled",
            (
                f"yes: KS tests, histograms and the data contract use a uniform random sample of "
                f"{cap['sampled_rows']:,} of {cap['rows']:,} rows (and {cap['sampled_predictions']:,}"
                f" of {cap['predictions']:,} predictions); PSI, χ² and means count every row"
            )
            if cap.get("sampled")
            else f"no: every row is used (sample limit {cap.get('sample_size') or 0:,} rows)",
        ),
        (
            "window",
            f"{cap['first'] or '?'} → {cap['last'] or '?'}"
            + (f" (since {cap['since']})" if cap["since"] else ""),
        ),
        ("source", cap["source"]),
        ("formats", ", ".join(f"{k}: {v}" for k, v in cap["formats"].items()) or "-"),
        (
            "served by",
            ", ".join(f"v{k} ({v:,} rows)" for k, v in cap["model_versions"].items()) or "unknown",
        ),
        (
            "reference",
            f"{ref['source']}"
            + (f" → version {ref['model_version']}" if ref["model_version"] else "")
            + f", {ref['n_rows']:,} training rows",
        ),
        (
            "rule",
            f"a column drifts when PSI > {t.drift_psi:g} and its test p-value < "
            f"{t.drift_ks_pvalue:g} / columns tested; at least {t.min_rows} live rows",
        ),
    ]
    if summary.get("note"):
        meta.append(("note", summary["note"]))
    quality = summary.get("data_quality")
    if quality:
        q_colour = _COLOURS[OK] if quality["status"] == "passed" else _COLOURS[DRIFT]
        problems = "".join(f"<li>{e(p)}</li>" for p in quality["problems"][:10])
        link = (
            f' — <a href="{e(str(quality["report_relative"]))}">Data Docs</a>'
            if quality.get("report_relative")
            else ""
        )
        quality_html = (
            f'<p><span class="pill" style="background:{q_colour}">{e(quality["status"])}</span> '
            f"{quality['rows_flagged']:,} of {quality['rows_total']:,} "
            f"{'sampled ' if cap.get('sampled') else ''}rows flagged"
            f"{link}</p>" + (f"<ul>{problems}</ul>" if problems else "")
        )
    else:
        quality_html = "<p class='muted'>not run</p>"
    rows = "\n".join(_rows_html(result, batch, profile))
    meta_html = "".join(f"<tr><td><b>{e(k)}</b></td><td>{e(str(v))}</td></tr>" for k, v in meta)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>abalone drift report {e(summary["run_id"])}</title><style>{_CSS}</style></head>
<body>
<h1>abalone-age drift report</h1>
<div class="muted">{e(summary["run_id"])} · created {e(summary["created_at"])}</div>
<div class="banner" style="background:{colour}">{e(headline)} — {e(result.message)}</div>
<table class="meta">{meta_html}</table>
<h2>Features and predictions</h2>
<p class="muted">Grey: training reference sample. Line: live traffic. PSI over the reference's
10 quantile bins; KS (numeric) or χ² (sex) as the significance test.</p>
<table>
<tr><th>column</th><th>status</th><th>PSI</th><th>test</th><th>p-value</th>
<th>mean ref → live</th><th>live n</th><th>reference vs live</th><th>note</th></tr>
{rows}
</table>
<h2>Data contract on the captured batch</h2>
{quality_html}
</body></html>
"""
