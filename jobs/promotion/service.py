"""THE gate orchestration (DESIGN §6), used by the CLI, the local pipeline and the Lambda handlers.

The order is the state machine's: rules 1-3 before deployment (:func:`predeploy`), the system test
of the deployed candidate (:func:`system_test` on loopback, or an endpoint invoker on AWS), then
the full gate (:func:`evaluate_gate`: rules 1-5, ``gate.*`` tags, ``@champion``/``@previous`` moved
on pass). The rules themselves are the pure :mod:`jobs.core.gate`; this module gathers their inputs
from the registry and the lake and writes the outcome back as version tags.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from jobs.adapters.lake import Lake
from jobs.adapters.locking import store_lock
from jobs.adapters.settings import Settings
from jobs.adapters.tracking import Aliases, Registry, check_tracking
from jobs.adapters.tracking_runs import recover_store
from jobs.core.errors import UsageError
from jobs.core.evaluate import paired_bootstrap_rmse_diff, regression_metrics
from jobs.core.gate import (
    ChampionComparison,
    GateDecision,
    GateInputs,
    Predeploy,
    SystemTestLike,
    decide,
)
from jobs.core.gate import (
    predeploy as predeploy_rules,
)
from jobs.core.policy import CHALLENGER, CHAMPION
from jobs.core.schema import FEATURES, TARGET
from jobs.promotion.invokers import Invoker
from jobs.promotion.systemtest import (
    ENDPOINT_PLAN,
    SystemTestResult,
    run_system_test,
    serve_and_test,
)

log = logging.getLogger(__name__)

N_BOOT = 1000


@dataclass(frozen=True)
class Candidate:
    """A registered version with what the gate needs from the lake: its test split and the
    data-quality status of its dataset."""

    version: str
    dataset_version: str
    test_frame: pd.DataFrame
    data_quality: str
    test_rmse: float


def candidate(
    settings: Settings, registry: Registry, version: str | int, data_quality: str | None = None
) -> Candidate:
    """Look up ``version``: its dataset's test split and data-quality status (``data_quality``, when
    the caller knows it, e.g. the execution's validation result, wins over the tags)."""
    version = str(version)
    tags = registry.tags(version)
    dataset = tags.get("dataset_version")
    if not dataset:
        raise UsageError(
            f"version {version} has no dataset_version tag; cannot find its test split"
        )
    lake = Lake.open(settings.lake)
    quality = (
        data_quality
        or tags.get("data_quality")
        or lake.manifest(dataset).get("data_quality", "unknown")
    )
    return Candidate(
        version=version,
        dataset_version=dataset,
        test_frame=lake.read_split(dataset, "test"),
        data_quality=quality,
        test_rmse=registry.test_rmse(version),
    )


def compare_with_champion(
    registry: Registry,
    version: str | int,
    test_frame: pd.DataFrame,
    *,
    seed: int = 0,
    candidate_model: Any = None,
) -> ChampionComparison | None:
    """Re-score the current champion and the candidate on the same rows; paired bootstrap of the
    RMSE difference. ``None`` when there is no champion or the candidate already is it."""
    champion = registry.alias(CHAMPION)
    if champion is None or champion == str(version):
        return None
    X = test_frame[list(FEATURES)]
    y = test_frame[TARGET].to_numpy(dtype=float)
    model = candidate_model if candidate_model is not None else registry.load_model(version)
    pred_cand = model.predict(X)
    pred_champ = registry.load_model(champion).predict(X)
    boot = paired_bootstrap_rmse_diff(y, pred_cand, pred_champ, n_boot=N_BOOT, seed=seed)
    return ChampionComparison.from_bootstrap(
        champion_version=champion,
        champion_rmse=regression_metrics(y, pred_champ)["rmse"],
        candidate_rmse=regression_metrics(y, pred_cand)["rmse"],
        bootstrap=boot,
        n_rows=len(y),
    )


def _inputs(
    registry: Registry,
    settings: Settings,
    cand: Candidate,
    system_test_result: SystemTestLike | None,
    champion: ChampionComparison | None,
) -> GateInputs:
    tags = registry.tags(cand.version)
    return GateInputs(
        candidate_version=cand.version,
        candidate_test_rmse=cand.test_rmse,
        data_quality=cand.data_quality,
        policy=settings.policy,
        champion=champion,
        system_test=system_test_result,
        approval=tags.get("approval"),
        approved_by=tags.get("approved_by"),
        env=settings.env,
        candidate_is_champion=registry.alias(CHAMPION) == cand.version,
    )


def predeploy(registry: Registry, settings: Settings, cand: Candidate) -> Predeploy:
    """Rules 1-3 before the candidate is deployed; tags the version (a rejection is final)."""
    champion = compare_with_champion(registry, cand.version, cand.test_frame, seed=settings.seed)
    result = predeploy_rules(_inputs(registry, settings, cand, None, champion))
    registry.set_tags(cand.version, result.to_tags())
    log.info(
        "gate (rules 1-3) for v%s: %s", cand.version, "continue" if result.passed else "reject"
    )
    return result


def system_test(
    registry: Registry,
    version: str,
    test_frame: pd.DataFrame,
    *,
    expected_rmse: float,
    tolerance: float,
    model_dir: Path | None = None,
    invoker: Invoker | None = None,
) -> SystemTestResult:
    """Rule 4 for a registered version, recorded as ``systemtest.*`` tags. With ``invoker`` (the
    staging endpoint) the deployed model is tested; otherwise the version is served on loopback:
    ``model_dir`` if given (the training job's ``SM_MODEL_DIR``), else what the registry holds
    for it (its SageMaker model directory, or the registered MLflow model)."""
    if invoker is not None:
        result = run_system_test(invoker, test_frame, expected_rmse, tolerance, **ENDPOINT_PLAN)
    elif model_dir is not None:
        result = serve_and_test(model_dir, test_frame, expected_rmse, tolerance)
    else:
        with tempfile.TemporaryDirectory(prefix=f"abalone-v{version}-") as tmp:
            served = registry.download_model_dir(version, Path(tmp))
            result = serve_and_test(served, test_frame, expected_rmse, tolerance)
    registry.set_tags(version, result.to_tags())
    return result


def evaluate_gate(
    registry: Registry,
    version: str | int,
    settings: Settings,
    system_test_result: SystemTestLike | None,
    dq_status: str,
    test_frame: pd.DataFrame,
    *,
    champion: ChampionComparison | None = None,
    lock: AbstractContextManager[object] | None = None,
) -> GateDecision:
    """The full gate (rules 1-5): decide, tag the version, promote on pass. The champion is
    re-scored unless ``champion`` holds a comparison with the current one.

    ``lock`` (the store's promotion lock locally, the stack's lock item on AWS) is held from
    re-reading the champion to moving the aliases, so a candidate is always gated against the
    champion it would replace. Under a lock, a promotion or rollback a crash interrupted is first
    finished or undone (:meth:`Registry.repair`); without one it is left alone (it may be live).
    The gate's tags of a passing candidate are written as part of the promotion, so no version is
    left tagged ``promote`` without having become champion."""
    version = str(version)
    with lock if lock is not None else nullcontext():
        if lock is not None and (repaired := registry.repair()):
            log.warning("%s", repaired)
        current = registry.alias(CHAMPION)
        if champion is None or champion.champion_version != current:
            champion = compare_with_champion(registry, version, test_frame, seed=settings.seed)
        cand = Candidate(version, "", test_frame, dq_status, registry.test_rmse(version))
        decision = decide(_inputs(registry, settings, cand, system_test_result, champion))
        to_tags = getattr(system_test_result, "to_tags", None)  # the system test's own figures
        tags = {**(to_tags() if callable(to_tags) else {}), **decision.to_tags()}
        log.info("gate for %s v%s: %s", registry.name, version, decision.decision)
        if decision.passed:
            registry.promote(version, tags)
        else:
            registry.set_tags(version, tags)
    return decision


def reevaluate(
    settings: Settings, version: str | int | None = None, *, model_dir: Path | None = None
) -> tuple[GateDecision | Predeploy, Aliases]:
    """``abalone promote`` / ``abalone run``: the gate for a version (default ``@challenger``) in
    the state machine's order: rules 1-3, the system test on loopback, the full gate."""
    check_tracking(settings.tracking_uri)
    recover_store(settings)  # an interrupted promotion is repaired even if rules 1-3 reject
    registry = Registry.from_settings(settings)
    if version is None:
        version = registry.alias(CHALLENGER)
        if version is None:
            raise UsageError(
                f"no @{CHALLENGER} version of {registry.name}; train one first or pass --version"
            )
    lock = store_lock(settings.tracking_uri, settings.home)
    cand = candidate(settings, registry, version)
    before = predeploy(registry, settings, cand)
    if not before.passed:
        with lock:
            return before, registry.aliases()
    st = system_test(
        registry,
        cand.version,
        cand.test_frame,
        expected_rmse=cand.test_rmse,
        tolerance=settings.policy.system_test_tolerance,
        model_dir=None if model_dir is None else Path(model_dir),
    )
    decision = evaluate_gate(
        registry,
        cand.version,
        settings,
        st,
        cand.data_quality,
        cand.test_frame,
        champion=before.decision.inputs.champion,
        lock=lock,
    )
    with lock:  # a consistent view, never one taken in the middle of another promotion
        return decision, registry.aliases()
