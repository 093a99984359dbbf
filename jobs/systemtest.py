"""The staging system test (gate rule 4, DESIGN §6, §7): the candidate served for real, over HTTP.

:func:`run_system_test` loads the model directory with ``model_fn``, serves it with the real
``abalone serve`` application on a free loopback port (data capture to a temporary directory), and
checks, over HTTP:

1. ``GET /ping`` answers 200;
2. golden rows (:mod:`jobs.golden`) give predictions inside their hand-checked ranges and in the
   expected order, and every request format (headerless CSV with 8 and 9 fields, CSV with a header,
   JSON ``instances`` lists and records, a bare list of records, ``dataframe_split``,
   ``dataframe_records``) gives the same predictions; JSON and CSV answers agree;
3. the test split sent as CSV batches gives an RMSE within ``tolerance`` of ``expected_rmse`` (the
   offline metric logged at training) and the same predictions as the pipeline in memory;
4. error paths answer 4xx with a JSON error (bad sex, wrong field count, bad JSON, unsupported
   content type, NaN, negative value, empty body, too many rows) and ``/ping`` still answers;
5. p50/p99 latency of sequential single-row requests is recorded (not a pass/fail criterion);
6. the capture directory holds exactly one record per successful request.

Any failed check adds a human-readable reason; ``passed`` is true only with no reasons.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.errors import AbaloneError
from jobs.golden import GOLDEN_ROWS, ORDERINGS
from jobs.schema import AGE_OFFSET_YEARS, FEATURES, TARGET

log = logging.getLogger(__name__)

CSV = "text/csv"
JSON = "application/json"


@dataclass
class SystemTestResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    rmse: float | None = None
    expected_rmse: float | None = None
    tolerance: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    golden_ok: bool = False
    error_paths_ok: bool = False
    n_rows: int = 0
    max_abs_diff: float | None = None  # served vs in-memory predictions on the test split
    requests: int = 0
    captured: int = 0

    def to_tags(self) -> dict[str, str]:
        """MLflow model-version tags (``systemtest.*``), all strings."""

        def num(x: float | None, digits: int = 4) -> str:
            return "" if x is None else f"{x:.{digits}f}"

        return {
            "systemtest.passed": str(self.passed).lower(),
            "systemtest.rmse": num(self.rmse),
            "systemtest.expected_rmse": num(self.expected_rmse),
            "systemtest.tolerance": num(self.tolerance),
            "systemtest.p50_ms": num(self.p50_ms, 3),
            "systemtest.p99_ms": num(self.p99_ms, 3),
            "systemtest.golden_ok": str(self.golden_ok).lower(),
            "systemtest.error_paths_ok": str(self.error_paths_ok).lower(),
            "systemtest.n_rows": str(self.n_rows),
            "systemtest.max_abs_diff": ""
            if self.max_abs_diff is None
            else f"{self.max_abs_diff:.3g}",
            "systemtest.reasons": "; ".join(self.reasons)[:4000],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "rmse": self.rmse,
            "expected_rmse": self.expected_rmse,
            "tolerance": self.tolerance,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "golden_ok": self.golden_ok,
            "error_paths_ok": self.error_paths_ok,
            "n_rows": self.n_rows,
            "max_abs_diff": self.max_abs_diff,
            "requests": self.requests,
            "captured": self.captured,
        }


class _Client:
    """A keep-alive HTTP/1.1 client (stdlib) that counts successful invocations."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.ok = 0

    def call(
        self, body: bytes, content_type: str | None, accept: str = JSON, method: str = "POST"
    ) -> tuple[int, bytes, str]:
        headers = {"Accept": accept}
        if content_type is not None:
            headers["Content-Type"] = content_type
        path = "/invocations" if method == "POST" else "/ping"
        try:
            self.conn.request(
                method, path, body=body if method == "POST" else None, headers=headers
            )
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnect once: the server may close after an error
            self.conn.request(
                method, path, body=body if method == "POST" else None, headers=headers
            )
            resp = self.conn.getresponse()
            data = resp.read()
        if method == "POST" and resp.status == 200:
            self.ok += 1
        return resp.status, data, resp.getheader("content-type", "")

    def close(self) -> None:
        self.conn.close()


def _csv_line(values: tuple | list) -> str:
    return ",".join(v if isinstance(v, str) else repr(float(v)) for v in values)


def _rings_from(status: int, data: bytes, ctype: str) -> list[float]:
    if status != 200:
        raise ValueError(f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}")
    if ctype.startswith(CSV):
        return [float(line.split(",")[0]) for line in data.decode().splitlines() if line]
    doc = json.loads(data)
    preds = doc["predictions"]
    for p in preds:
        if not math.isclose(p["age_years"], p["rings"] + AGE_OFFSET_YEARS, abs_tol=1e-9):
            raise ValueError(f"age_years {p['age_years']} is not rings + {AGE_OFFSET_YEARS}")
    return [float(p["rings"]) for p in preds]


def _golden_formats() -> dict[str, tuple[str, bytes]]:
    rows = [g.values for g in GOLDEN_ROWS]
    records = [g.record() for g in GOLDEN_ROWS]
    header = ",".join(FEATURES)
    shuffled = [*FEATURES[::-1], TARGET]
    return {
        "csv (headerless, 8 fields)": (CSV, "\n".join(_csv_line(r) for r in rows).encode()),
        "csv (headerless, 9 fields with rings)": (
            CSV,
            "\n".join(_csv_line([*r, 10]) for r in rows).encode(),
        ),
        "csv (header)": (CSV, (header + "\n" + "\n".join(_csv_line(r) for r in rows)).encode()),
        "csv (header, other column order, rings)": (
            CSV,
            (
                ",".join(shuffled)
                + "\n"
                + "\n".join(_csv_line([*[rec[c] for c in FEATURES[::-1]], 10]) for rec in records)
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


def _error_cases(max_rows: int) -> list[tuple[str, str | None, bytes]]:
    good = _csv_line(GOLDEN_ROWS[2].values)
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


def run_system_test(
    model_dir: str | Path,
    test_frame: pd.DataFrame,
    expected_rmse: float,
    tolerance: float,
    *,
    latency_requests: int = 200,
    batch_rows: int = 1000,
) -> SystemTestResult:
    """Serve ``model_dir`` on loopback and test it end to end; never raises for a bad model."""
    from jobs.inference import model_fn
    from jobs.serve import ServeLimits, serve_in_thread

    result = SystemTestResult(passed=False, expected_rmse=expected_rmse, tolerance=tolerance)
    reasons = result.reasons
    missing = [c for c in (*FEATURES, TARGET) if c not in test_frame.columns]
    if missing:
        reasons.append(f"test split lacks column(s) {', '.join(missing)}")
        return result
    if len(test_frame) == 0:
        reasons.append("test split is empty")
        return result
    try:
        model = model_fn(model_dir)
    except AbaloneError as err:
        reasons.append(f"model did not load: {err}")
        return result
    except Exception as err:
        reasons.append(f"model did not load: {type(err).__name__}: {err}")
        return result

    limits = ServeLimits(max_rows=max(batch_rows, 1000))
    with tempfile.TemporaryDirectory(prefix="abalone-systemtest-") as tmp:
        capture_dir = Path(tmp) / "capture"
        try:
            with serve_in_thread(model, capture_dir, limits) as server:
                client = _Client(server.port)
                try:
                    _check_all(
                        client, model, test_frame, limits, result, latency_requests, batch_rows
                    )
                finally:
                    client.close()
                    result.requests = client.ok
        except AbaloneError as err:
            reasons.append(f"server failed: {err}")
        except (OSError, http.client.HTTPException) as err:
            reasons.append(f"server stopped answering: {type(err).__name__}: {err}")
        from jobs.capture import iter_records

        result.captured = sum(1 for _ in iter_records(capture_dir))
        if result.captured != result.requests:
            reasons.append(
                f"data capture wrote {result.captured} record(s) for {result.requests} "
                "successful request(s)"
            )
    result.passed = not reasons
    log.info("system test %s: %s", "passed" if result.passed else "failed", reasons or "ok")
    return result


def _check_all(
    client: _Client,
    model: Any,
    test_frame: pd.DataFrame,
    limits: Any,
    result: SystemTestResult,
    latency_requests: int,
    batch_rows: int,
) -> None:
    reasons = result.reasons
    status, _, _ = client.call(b"", None, method="GET")
    if status != 200:
        reasons.append(f"/ping answered {status}")
        return
    result.golden_ok = _check_golden(client, reasons)
    _check_test_split(client, model, test_frame, result, batch_rows)
    result.error_paths_ok = _check_errors(client, limits, reasons)
    _measure_latency(client, result, latency_requests)


def _check_golden(client: _Client, reasons: list[str]) -> bool:
    before = len(reasons)
    answers: dict[str, list[float]] = {}
    for name, (ctype, body) in _golden_formats().items():
        try:
            answers[name] = _rings_from(*client.call(body, ctype))
        except (ValueError, KeyError, TypeError) as err:
            reasons.append(f"golden rows as {name}: {err}")
    try:
        ctype, body = _golden_formats()["csv (header)"]
        answers["csv answer (Accept: text/csv)"] = _rings_from(*client.call(body, ctype, CSV))
    except (ValueError, KeyError, TypeError) as err:
        reasons.append(f"golden rows with Accept: text/csv: {err}")
    if not answers:
        return False
    reference_name, reference = next(iter(answers.items()))
    for name, got in answers.items():
        if len(got) != len(GOLDEN_ROWS) or not np.allclose(got, reference, rtol=0, atol=1e-9):
            reasons.append(f"golden rows: {name} disagrees with {reference_name}")
    if len(reference) == len(GOLDEN_ROWS):
        by_name = dict(zip((g.name for g in GOLDEN_ROWS), reference, strict=True))
        for g in GOLDEN_ROWS:
            value = by_name[g.name]
            if not (g.lo <= value <= g.hi):
                reasons.append(f"golden row '{g.name}': {value:.2f} rings outside [{g.lo}, {g.hi}]")
        for small, large in ORDERINGS:
            if not by_name[small] < by_name[large]:
                reasons.append(
                    f"golden rows: '{small}' ({by_name[small]:.2f}) not below "
                    f"'{large}' ({by_name[large]:.2f})"
                )
    return len(reasons) == before


def _check_test_split(
    client: _Client, model: Any, frame: pd.DataFrame, result: SystemTestResult, batch_rows: int
) -> None:
    features = frame[list(FEATURES)]
    served: list[float] = []
    for start in range(0, len(features), batch_rows):
        chunk = features.iloc[start : start + batch_rows]
        body = "\n".join(_csv_line(row) for row in chunk.itertuples(index=False)).encode()
        try:
            served.extend(_rings_from(*client.call(body, CSV)))
        except (ValueError, KeyError, TypeError) as err:
            result.reasons.append(f"test split rows {start + 1}-{start + len(chunk)}: {err}")
            return
    result.n_rows = len(served)
    if len(served) != len(frame):
        result.reasons.append(f"test split: {len(served)} predictions for {len(frame)} rows")
        return
    y = frame[TARGET].to_numpy(dtype=float)
    p = np.asarray(served)
    result.rmse = float(np.sqrt(np.mean((p - y) ** 2)))
    if not math.isfinite(result.rmse) or abs(result.rmse - result.expected_rmse) > result.tolerance:
        result.reasons.append(
            f"served RMSE {result.rmse:.4f} differs from the logged {result.expected_rmse:.4f} "
            f"by more than {result.tolerance:g}"
        )
    offline = np.asarray(model.pipeline.predict(features), dtype=float).reshape(-1)
    result.max_abs_diff = float(np.max(np.abs(offline - p)))
    if not result.max_abs_diff <= 1e-6:
        result.reasons.append(
            f"served predictions differ from the in-memory pipeline by up to {result.max_abs_diff:.3g}"
        )


def _check_errors(client: _Client, limits: Any, reasons: list[str]) -> bool:
    before = len(reasons)
    for name, ctype, body in _error_cases(limits.max_rows):
        status, data, _ = client.call(body, ctype)
        try:
            message = json.loads(data).get("error")
        except (ValueError, AttributeError):
            message = None
        if not 400 <= status < 500 or not message:
            reasons.append(f"error path '{name}' answered {status} {data[:120]!r} (expected 4xx)")
    status, _, _ = client.call(b"", None, method="GET")
    if status != 200:
        reasons.append(f"/ping answered {status} after the error paths")
    return len(reasons) == before


def _measure_latency(client: _Client, result: SystemTestResult, n: int) -> None:
    if n <= 0:
        return
    bodies = [_csv_line(g.values).encode() for g in GOLDEN_ROWS]
    for i in range(min(20, n)):  # warm-up
        client.call(bodies[i % len(bodies)], CSV)
    times = []
    for i in range(n):
        start = time.perf_counter()
        status, _, _ = client.call(bodies[i % len(bodies)], CSV)
        times.append((time.perf_counter() - start) * 1000)
        if status != 200:
            result.reasons.append(f"single-row request answered {status} during the latency run")
            return
    result.p50_ms = float(np.percentile(times, 50))
    result.p99_ms = float(np.percentile(times, 99))
