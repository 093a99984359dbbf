"""THE system test (gate rule 4, DESIGN §6, §7): a served candidate checked through the inference
contract, the same checks whether it is served on loopback (local gate) or by the staging endpoint
(AWS pipeline); see :mod:`jobs.promotion.invokers`. Checks, each failure a reason:

1. ``/ping`` answers 200 (when the invoker offers it);
2. golden rows (:mod:`jobs.core.golden`) land inside their hand-checked ranges and orderings, and
   every request format, single-row requests and CSV answers give the same predictions;
3. the test split, sent as CSV batches, scores within ``tolerance`` of the logged RMSE (and, given
   the model, matches the in-memory pipeline);
4. malformed requests are refused with a 4xx and a message;
5. p50/p99 latency of single-row requests is recorded (not a criterion);
6. data capture holds one record per successful request (when the invoker can see it).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.adapters.locking import crash_point
from jobs.core.errors import AbaloneError
from jobs.core.golden import GOLDEN_ROWS, ORDERINGS
from jobs.core.schema import FEATURES, TARGET
from jobs.promotion.invokers import InvokeError, Invoker, Reply, serve_on_loopback
from jobs.promotion.requests import CSV, JSON, csv_line, error_cases, golden_formats, rings_of
from jobs.serving.handlers import model_fn

log = logging.getLogger(__name__)

REFUSED_AS_VALID = "malformed request was answered as if valid"
#: The lighter plan for a deployed endpoint: each request there is billed and lands in its data
#: capture (the monitor's input), so three formats, single rows (also the latency sample), no
#: separate latency run.
ENDPOINT_PLAN = {
    "formats": ("csv (headerless, 8 fields)", "csv (header)", "json instances (lists)"),
    "csv_answer": False,
    "latency_requests": 0,
}


@dataclass
class SystemTestResult:
    """Outcome of :func:`run_system_test`; ``reasons`` are the failed checks (empty on a pass)."""

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
    captured: int | None = None
    endpoint: str = ""
    kind: str = ""  # loopback | sagemaker-endpoint

    @property
    def rows(self) -> int:
        return self.n_rows

    def to_tags(self) -> dict[str, str]:
        """MLflow model-version tags (``systemtest.*``), all strings (``none`` when unknown)."""

        def num(x: float | None, digits: int = 4) -> str:
            return "none" if x is None else f"{x:.{digits}f}"

        return {
            "systemtest.passed": str(self.passed).lower(),
            "systemtest.kind": self.kind,
            "systemtest.endpoint": self.endpoint,
            "systemtest.rmse": num(self.rmse),
            "systemtest.expected_rmse": num(self.expected_rmse),
            "systemtest.tolerance": num(self.tolerance),
            "systemtest.p50_ms": num(self.p50_ms, 3),
            "systemtest.p99_ms": num(self.p99_ms, 3),
            "systemtest.golden_ok": str(self.golden_ok).lower(),
            "systemtest.error_paths_ok": str(self.error_paths_ok).lower(),
            "systemtest.n_rows": str(self.n_rows),
            "systemtest.max_abs_diff": "none"
            if self.max_abs_diff is None
            else f"{self.max_abs_diff:.3g}",
            "systemtest.reasons": "\n".join(self.reasons)[:4900],
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
            "rows": self.n_rows,
            "max_abs_diff": self.max_abs_diff,
            "requests": self.requests,
            "captured": self.captured,
            "endpoint": self.endpoint,
            "kind": self.kind,
        }


def run_system_test(
    invoker: Invoker,
    test_frame: pd.DataFrame,
    expected_rmse: float,
    tolerance: float,
    *,
    model: Any = None,
    latency_requests: int = 200,
    batch_rows: int = 1000,
    formats: tuple[str, ...] | None = None,
    csv_answer: bool = True,
) -> SystemTestResult:
    """Check the model behind ``invoker``; never raises for a bad model or a dead endpoint.

    ``model`` (a ``ServingModel``), when given, is the in-memory pipeline the served predictions
    must match exactly. ``formats`` (names of :func:`golden_formats`, default all) and
    ``csv_answer`` choose the golden requests; ``latency_requests=0`` takes p50/p99 from the
    single-row golden requests.
    """
    result = SystemTestResult(
        passed=False,
        expected_rmse=expected_rmse,
        tolerance=tolerance,
        endpoint=invoker.name,
        kind=invoker.kind,
    )
    missing = [c for c in (*FEATURES, TARGET) if c not in test_frame.columns]
    if missing:
        result.reasons.append(f"test split lacks column(s) {', '.join(missing)}")
        return result
    if len(test_frame) == 0:
        result.reasons.append("test split is empty")
        return result
    try:
        plan = (formats, csv_answer, latency_requests, batch_rows)
        _check_all(invoker, model, test_frame, result, plan)
    except (InvokeError, AbaloneError) as err:
        result.reasons.append(f"the served model stopped answering: {err}")
    result.requests = getattr(invoker, "ok", result.requests)
    result.captured = invoker.captured()
    if result.captured is not None and result.captured != result.requests:
        result.reasons.append(
            f"data capture wrote {result.captured} record(s) for {result.requests} "
            "successful request(s)"
        )
    result.passed = not result.reasons
    log.info("system test %s: %s", "passed" if result.passed else "failed", result.reasons or "ok")
    return result


def serve_and_test(
    model_dir: str | Path,
    test_frame: pd.DataFrame,
    expected_rmse: float,
    tolerance: float,
    **kw: Any,
) -> SystemTestResult:
    """Load ``model_dir`` as the SageMaker container does, serve it on loopback with the real
    server (capture on) and run :func:`run_system_test` against it."""
    try:
        model = model_fn(model_dir)
    except Exception as err:  # a model that does not load is a failed system test, not a crash
        detail = str(err) if isinstance(err, AbaloneError) else f"{type(err).__name__}: {err}"
        return SystemTestResult(
            False,
            [f"model did not load: {detail}"],
            expected_rmse=expected_rmse,
            tolerance=tolerance,
        )
    try:
        with serve_on_loopback(model, max_rows=max(kw.get("batch_rows", 1000), 1000)) as invoker:
            crash_point("systemtest.serving")
            return run_system_test(invoker, test_frame, expected_rmse, tolerance, model=model, **kw)
    except AbaloneError as err:
        return SystemTestResult(
            False, [f"server failed: {err}"], expected_rmse=expected_rmse, tolerance=tolerance
        )


def _check_all(
    invoker: Invoker, model: Any, frame: pd.DataFrame, result: SystemTestResult, plan: tuple
) -> None:
    formats, csv_answer, latency_requests, batch_rows = plan
    status = invoker.ping()
    if status is not None and status != 200:
        result.reasons.append(f"/ping answered {status}")
        return
    timings: list[float] = []
    result.golden_ok = _check_golden(invoker, result.reasons, formats, csv_answer, timings)
    _check_test_split(invoker, model, frame, result, batch_rows)
    result.error_paths_ok = _check_errors(invoker, result.reasons)
    if latency_requests > 0:
        _measure_latency(invoker, result, latency_requests)
    elif timings:
        result.p50_ms = float(np.percentile(timings, 50))
        result.p99_ms = float(np.percentile(timings, 99))


def _call_rings(invoker: Invoker, body: bytes, ctype: str, accept: str = JSON) -> list[float]:
    try:
        return rings_of(invoker.invoke(body, ctype, accept), accept)
    except InvokeError as err:
        raise ValueError(str(err)) from err


def _check_golden(
    invoker: Invoker,
    reasons: list[str],
    only: tuple[str, ...] | None,
    csv_answer: bool,
    timings: list[float],
) -> bool:
    before = len(reasons)
    answers: dict[str, list[float]] = {}
    formats = golden_formats()
    for name, (ctype, body) in formats.items():
        if only is not None and name not in only:
            continue
        try:
            answers[name] = _call_rings(invoker, body, ctype)
        except (ValueError, KeyError, TypeError) as err:
            reasons.append(f"golden rows as {name}: {err}")
    try:
        if csv_answer:
            ctype, body = formats["csv (header)"]
            answers["csv answer (Accept: text/csv)"] = _call_rings(invoker, body, ctype, CSV)
        singles = []
        for g in GOLDEN_ROWS:
            start = time.perf_counter()
            singles.append(_call_rings(invoker, csv_line(g.values).encode(), CSV)[0])
            timings.append((time.perf_counter() - start) * 1000)
        answers["single-row requests"] = singles
    except (ValueError, KeyError, TypeError, IndexError) as err:
        reasons.append(f"golden rows with Accept: text/csv or one per request: {err}")
    if not answers:
        return False
    reference_name, reference = next(iter(answers.items()))
    for name, got in answers.items():
        if len(got) != len(GOLDEN_ROWS) or not np.allclose(got, reference, rtol=0, atol=1e-9):
            reasons.append(f"golden rows: {name} disagrees with {reference_name}")
    if len(reference) == len(GOLDEN_ROWS):
        reasons.extend(golden_problems(reference))
    return len(reasons) == before


def golden_problems(predicted: list[float]) -> list[str]:
    """Hand-checked bounds and orderings of the golden rows on the predicted rings."""
    by_name = dict(zip((g.name for g in GOLDEN_ROWS), predicted, strict=True))
    problems = [
        f"golden row '{g.name}': {by_name[g.name]:.2f} rings outside [{g.lo}, {g.hi}]"
        for g in GOLDEN_ROWS
        if not g.lo <= by_name[g.name] <= g.hi
    ]
    problems += [
        f"golden rows: '{small}' ({by_name[small]:.2f}) not below '{large}' ({by_name[large]:.2f})"
        for small, large in ORDERINGS
        if not by_name[small] < by_name[large]
    ]
    return problems


def _check_test_split(
    invoker: Invoker, model: Any, frame: pd.DataFrame, result: SystemTestResult, batch_rows: int
) -> None:
    features = frame[list(FEATURES)]
    served: list[float] = []
    for start in range(0, len(features), batch_rows):
        chunk = features.iloc[start : start + batch_rows]
        body = "\n".join(csv_line(row) for row in chunk.itertuples(index=False)).encode()
        try:
            served.extend(_call_rings(invoker, body, CSV))
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
    diff = abs(result.rmse - result.expected_rmse)
    if not math.isfinite(result.rmse) or diff > result.tolerance:
        result.reasons.append(
            f"served RMSE {result.rmse:.4f} on the test split ({len(y)} rows) differs from the "
            f"logged {result.expected_rmse:.4f}: |diff| {diff:.4f} > tolerance {result.tolerance:g}"
        )
    if model is not None:
        offline = np.asarray(model.pipeline.predict(features), dtype=float).reshape(-1)
        result.max_abs_diff = float(np.max(np.abs(offline - p)))
        if not result.max_abs_diff <= 1e-6:
            result.reasons.append(
                "served predictions differ from the in-memory pipeline by up to "
                f"{result.max_abs_diff:.3g}"
            )


def _check_errors(invoker: Invoker, reasons: list[str]) -> bool:
    before = len(reasons)
    answered: list[str] = []
    for name, ctype, body in error_cases(invoker.max_rows):
        try:
            reply = invoker.invoke(body, ctype, JSON)
        except InvokeError as err:
            reasons.append(f"error path '{name}': no answer ({err})")
            continue
        if reply.status < 300:
            answered.append(name)
        elif not 400 <= reply.status < 500 or not _message(reply):
            reasons.append(
                f"error path '{name}' answered {reply.status} {reply.body[:120]!r} (expected 4xx)"
            )
    if answered:
        reasons.append(REFUSED_AS_VALID)
        reasons.append(f"answered as if valid: {', '.join(answered)}")
    status = invoker.ping()
    if status is not None and status != 200:
        reasons.append(f"/ping answered {status} after the error paths")
    return len(reasons) == before


def _message(reply: Reply) -> str:
    """The refusal's message: ``{"error": …}`` from our server, the text from an endpoint."""
    try:
        doc = json.loads(reply.body)
    except ValueError:
        return reply.body.decode("utf-8", "replace").strip()
    return str(doc.get("error") or "") if isinstance(doc, dict) else ""


def _measure_latency(invoker: Invoker, result: SystemTestResult, n: int) -> None:
    if n <= 0:
        return
    bodies = [csv_line(g.values).encode() for g in GOLDEN_ROWS]
    for i in range(min(20, n)):  # warm-up
        invoker.invoke(bodies[i % len(bodies)], CSV, JSON)
    times = []
    for i in range(n):
        start = time.perf_counter()
        reply = invoker.invoke(bodies[i % len(bodies)], CSV, JSON)
        times.append((time.perf_counter() - start) * 1000)
        if reply.status != 200:
            result.reasons.append(
                f"single-row request answered {reply.status} during the latency run"
            )
            return
    result.p50_ms = float(np.percentile(times, 50))
    result.p99_ms = float(np.percentile(times, 99))
