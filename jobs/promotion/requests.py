"""What the system test sends: the golden rows in every request format of the contract, the
malformed requests that must be refused, and how an answer's predicted rings are read."""

from __future__ import annotations

import json
import math

from jobs.core.golden import GOLDEN_ROWS
from jobs.core.schema import AGE_OFFSET_YEARS, FEATURES, TARGET
from jobs.promotion.invokers import Reply

CSV = "text/csv"
JSON = "application/json"


def csv_line(values: tuple | list) -> str:
    return ",".join(v if isinstance(v, str) else repr(float(v)) for v in values)


def rings_of(reply: Reply, accept: str = JSON) -> list[float]:
    if reply.status != 200:
        raise ValueError(f"HTTP {reply.status}: {reply.body[:200].decode('utf-8', 'replace')}")
    if (reply.content_type or accept).startswith(CSV):
        return [float(line.split(",")[0]) for line in reply.body.decode().splitlines() if line]
    preds = json.loads(reply.body)["predictions"]
    for p in preds:
        if not math.isclose(p["age_years"], p["rings"] + AGE_OFFSET_YEARS, abs_tol=1e-9):
            raise ValueError(f"age_years {p['age_years']} is not rings + {AGE_OFFSET_YEARS}")
    return [float(p["rings"]) for p in preds]


def golden_formats() -> dict[str, tuple[str, bytes]]:
    """The golden rows in every request format the contract accepts."""
    rows = [g.values for g in GOLDEN_ROWS]
    records = [g.record() for g in GOLDEN_ROWS]
    header = ",".join(FEATURES)
    shuffled = [*FEATURES[::-1], TARGET]
    lines = "\n".join(csv_line(r) for r in rows)
    return {
        "csv (headerless, 8 fields)": (CSV, lines.encode()),
        "csv (headerless, 9 fields with rings)": (
            CSV,
            "\n".join(csv_line([*r, 10]) for r in rows).encode(),
        ),
        "csv (header)": (CSV, (header + "\n" + lines).encode()),
        "csv (header, other column order, rings)": (
            CSV,
            (
                ",".join(shuffled)
                + "\n"
                + "\n".join(csv_line([*[rec[c] for c in FEATURES[::-1]], 10]) for rec in records)
            ).encode(),
        ),
        "json instances (lists)": (
            JSON,
            json.dumps({"instances": [list(r) for r in rows]}).encode(),
        ),
        "json instances (records)": (JSON, json.dumps({"instances": records}).encode()),
        "json list of records": (JSON, json.dumps(records).encode()),
        "json dataframe_split": (
            JSON,
            json.dumps(
                {"dataframe_split": {"columns": list(FEATURES), "data": [list(r) for r in rows]}}
            ).encode(),
        ),
        "json dataframe_records": (JSON, json.dumps({"dataframe_records": records}).encode()),
    }


def error_cases(max_rows: int) -> list[tuple[str, str | None, bytes]]:
    good = csv_line(GOLDEN_ROWS[2].values)
    return [
        ("bad sex", CSV, b"X,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"),
        ("wrong field count", CSV, b"M,0.455,0.365,0.095"),
        ("bad JSON", JSON, b'{"instances": [["M", 0.4'),
        ("unsupported content type", "text/html", b"<p>hi</p>"),
        ("no content type", None, good.encode()),
        ("NaN value", JSON, b'{"instances": [["M", NaN, 0.3, 0.1, 0.5, 0.2, 0.1, 0.15]]}'),
        ("negative value", CSV, b"F,-0.455,0.365,0.095,0.514,0.2245,0.101,0.15"),
        ("not a number", CSV, b"F,abc,0.365,0.095,0.514,0.2245,0.101,0.15"),
        ("empty body", CSV, b""),
        ("too many rows", CSV, ("\n".join([good] * (max_rows + 1))).encode()),
    ]
