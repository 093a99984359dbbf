"""The promotion gate (DESIGN §6): a pure function of its inputs, returning a decision with every reason.

Rules, in order (each contributes one reason, passed or failed):

1. the dataset the candidate trained on passed data quality;
2. the candidate's test RMSE is ≤ the stack's ceiling;
3. there is no champion, or the candidate is not worse than the champion re-scored on the same test
   rows by more than the stack's tolerance: the observed ``rmse(candidate) - rmse(champion)`` on
   those rows must be ≤ ``champion_tolerance``; the paired bootstrap of that difference (95%
   interval, mean, probability that the candidate is worse) is recorded with it;
4. the system test passed;
5. when the stack requires approval: the version carries ``approval=approved`` and ``approved_by``.

Decision: ``reject`` if any of rules 1-4 fails or the version was explicitly not approved
(``approval`` set to anything other than ``approved``); ``awaiting_approval`` if rules 1-4 pass and
the required approval is missing; ``promote`` otherwise.

No I/O here: :mod:`jobs.registry` gathers the inputs and writes :meth:`GateDecision.to_tags`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from jobs.core.policy import StackPolicy

Decision = Literal["promote", "reject", "awaiting_approval"]
MAX_TAG_CHARS = 5000


class SystemTestLike(Protocol):
    """What the gate needs from a system-test result (``jobs.systemtest.SystemTestResult`` or the
    interim one): whether it passed and why. Optional figures: ``rmse``, ``p50_ms``, ``p99_ms``."""

    passed: bool
    reasons: list[str]


@dataclass(frozen=True)
class ChampionComparison:
    """The current champion re-scored on the candidate's test rows, with the paired bootstrap of
    ``rmse(candidate) - rmse(champion)`` (positive = candidate worse). ``rmse_diff`` is the observed
    difference on all rows (the criterion); ``boot_mean_diff``, ``ci_low``/``ci_high`` (95%) and
    ``p_worse`` come from the bootstrap replicates and are recorded."""

    champion_version: str
    champion_rmse: float
    candidate_rmse: float
    rmse_diff: float
    ci_low: float
    ci_high: float
    p_worse: float
    n_rows: int = 0
    boot_mean_diff: float | None = None

    @classmethod
    def from_bootstrap(
        cls,
        champion_version: str,
        champion_rmse: float,
        candidate_rmse: float,
        bootstrap: dict[str, float],
        n_rows: int = 0,
    ) -> ChampionComparison:
        """From ``jobs.evaluate.paired_bootstrap_rmse_diff`` output (``diff``, ``diff_mean``,
        ``ci_low``, ``ci_high``, ``p_worse``; ``mean_diff`` is accepted for ``diff_mean``)."""
        boot_mean = bootstrap.get("diff_mean", bootstrap.get("mean_diff"))
        observed = bootstrap.get("diff", float(candidate_rmse) - float(champion_rmse))
        return cls(
            champion_version=str(champion_version),
            champion_rmse=float(bootstrap.get("rmse_champion", champion_rmse)),
            candidate_rmse=float(bootstrap.get("rmse_candidate", candidate_rmse)),
            rmse_diff=float(observed),
            ci_low=float(bootstrap["ci_low"]),
            ci_high=float(bootstrap["ci_high"]),
            p_worse=float(bootstrap["p_worse"]),
            n_rows=int(n_rows),
            boot_mean_diff=None if boot_mean is None else float(boot_mean),
        )


@dataclass(frozen=True)
class GateInputs:
    """Everything the gate looks at. ``champion`` is ``None`` when there is no champion (or the
    candidate already is the champion); ``system_test`` is ``None`` when it was not run."""

    candidate_version: str
    candidate_test_rmse: float
    data_quality: str
    policy: StackPolicy
    champion: ChampionComparison | None = None
    system_test: SystemTestLike | None = None
    approval: str | None = None
    approved_by: str | None = None
    env: str = "dev"
    candidate_is_champion: bool = False
    evaluated_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class GateDecision:
    decision: Decision
    rules: tuple[RuleResult, ...]
    inputs: GateInputs

    @property
    def passed(self) -> bool:
        return self.decision == "promote"

    @property
    def reasons(self) -> list[str]:
        return [f"{'PASS' if r.passed else 'FAIL'} {r.rule}: {r.reason}" for r in self.rules]

    def to_tags(self) -> dict[str, str]:
        """Model-version tags; every key is always written so a re-evaluation replaces stale figures."""
        inp = self.inputs
        champ = inp.champion
        st = inp.system_test
        reasons = "\n".join(self.reasons)
        if len(reasons) > MAX_TAG_CHARS:
            reasons = reasons[: MAX_TAG_CHARS - 1] + "…"
        tags = {
            "gate.decision": self.decision,
            "gate.reasons": reasons,
            "gate.evaluated_at": inp.evaluated_at,
            "gate.env": inp.env,
            "gate.candidate_rmse": _fmt(inp.candidate_test_rmse),
            "gate.rmse_ceiling": _fmt(inp.policy.rmse_ceiling),
            "gate.data_quality": inp.data_quality,
            "gate.champion_version": champ.champion_version if champ else "none",
            "gate.champion_rmse": _fmt(champ.champion_rmse) if champ else "none",
            "gate.rmse_diff": _fmt(champ.rmse_diff) if champ else "none",
            "gate.rmse_diff_boot_mean": _fmt(champ.boot_mean_diff) if champ else "none",
            "gate.rmse_diff_ci": f"[{_fmt(champ.ci_low)}, {_fmt(champ.ci_high)}]"
            if champ
            else "none",
            "gate.p_worse": _fmt(champ.p_worse, 3) if champ else "none",
            "gate.champion_tolerance": _fmt(inp.policy.champion_tolerance),
            "gate.system_test": "none" if st is None else ("passed" if st.passed else "failed"),
            "gate.system_test_rmse": _fmt(getattr(st, "rmse", None)),
            "gate.approval_required": str(inp.policy.require_approval).lower(),
        }
        for rule in self.rules:
            tags[f"gate.rule.{rule.rule}"] = "passed" if rule.passed else "failed"
        return tags

    def to_dict(self) -> dict[str, Any]:
        champ = self.inputs.champion
        return {
            "decision": self.decision,
            "passed": self.passed,
            "reasons": self.reasons,
            "candidate_version": self.inputs.candidate_version,
            "champion_version": champ.champion_version if champ else None,
            "figures": {
                "candidate_rmse": self.inputs.candidate_test_rmse,
                "rmse_ceiling": self.inputs.policy.rmse_ceiling,
                "champion_rmse": champ.champion_rmse if champ else None,
                "rmse_diff": champ.rmse_diff if champ else None,
                "rmse_diff_ci": [champ.ci_low, champ.ci_high] if champ else None,
                "p_worse": champ.p_worse if champ else None,
            },
            "evaluated_at": self.inputs.evaluated_at,
        }


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "none"
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def _rule_data_quality(inp: GateInputs) -> RuleResult:
    ok = inp.data_quality == "passed"
    why = "dataset passed data quality" if ok else f"dataset data quality is {inp.data_quality!r}"
    return RuleResult("data_quality", ok, why)


def _rule_ceiling(inp: GateInputs) -> RuleResult:
    rmse, ceiling = inp.candidate_test_rmse, inp.policy.rmse_ceiling
    ok = math.isfinite(rmse) and rmse <= ceiling
    op = "≤" if ok else ">"
    return RuleResult(
        "rmse_ceiling", ok, f"test rmse {rmse:.4f} {op} ceiling {ceiling:.2f} ({inp.env})"
    )


def _rule_champion(inp: GateInputs) -> RuleResult:
    champ, tol = inp.champion, inp.policy.champion_tolerance
    if champ is None:
        if inp.candidate_is_champion:
            return RuleResult("champion", True, f"v{inp.candidate_version} already is the champion")
        return RuleResult("champion", True, "no champion to compare with")
    ok = math.isfinite(champ.rmse_diff) and champ.rmse_diff <= tol
    op = "≤" if ok else ">"
    return RuleResult(
        "champion",
        ok,
        f"vs champion v{champ.champion_version} on the same {champ.n_rows} test rows: "
        f"rmse {champ.candidate_rmse:.4f} vs {champ.champion_rmse:.4f}, diff "
        f"{champ.rmse_diff:+.4f} {op} tolerance {tol:.2f} (paired bootstrap 95% CI "
        f"{champ.ci_low:+.4f}..{champ.ci_high:+.4f}, P(worse) {champ.p_worse:.2f})",
    )


def _rule_system_test(inp: GateInputs) -> RuleResult:
    st = inp.system_test
    if st is None:
        return RuleResult("system_test", False, "system test was not run")
    detail = "; ".join(st.reasons) if st.reasons else ""
    verdict = "system test passed" if st.passed else "system test failed"
    return RuleResult("system_test", bool(st.passed), f"{verdict}{': ' + detail if detail else ''}")


ApprovalStatus = Literal["approved", "pending", "rejected"]


def approval_status(tags: Mapping[str, str]) -> tuple[ApprovalStatus, str]:
    """Rule 5's reading of a version's tags: ``approved`` (``approval=approved`` and a name in
    ``approved_by``), ``rejected`` (any other ``approval`` value) or ``pending``."""
    approval = (tags.get("approval") or "").strip()
    by = (tags.get("approved_by") or "").strip()
    if approval == "approved" and by:
        return "approved", f"approved by {by}"
    if approval == "approved":
        return "pending", "approval=approved but approved_by is missing"
    if approval:
        return "rejected", f"approval is {approval!r}, not 'approved'"
    return "pending", "no approval tag yet"


def _rule_approval(inp: GateInputs) -> RuleResult:
    if not inp.policy.require_approval:
        return RuleResult("approval", True, f"approval not required on {inp.env}")
    status, reason = approval_status(
        {"approval": inp.approval or "", "approved_by": inp.approved_by or ""}
    )
    if status == "pending" and not inp.approval:
        reason = f"approval required on {inp.env} and not yet given"
    return RuleResult("approval", status == "approved", reason)


def decide(inputs: GateInputs) -> GateDecision:
    """Apply rules 1-5 to ``inputs``; pure (no clock, no I/O: ``evaluated_at`` comes with the inputs)."""
    rules = (
        _rule_data_quality(inputs),
        _rule_ceiling(inputs),
        _rule_champion(inputs),
        _rule_system_test(inputs),
        _rule_approval(inputs),
    )
    core_ok = all(r.passed for r in rules[:4])
    approval = rules[4]
    refused = approval_status({"approval": inputs.approval or ""})[0] == "rejected"
    if not core_ok or (not approval.passed and refused):
        decision: Decision = "reject"
    elif not approval.passed:
        decision = "awaiting_approval"
    else:
        decision = "promote"
    return GateDecision(decision=decision, rules=rules, inputs=inputs)


#: Rules the AWS pipeline checks before it deploys a candidate to staging (and the local pipeline
#: before it serves one on loopback): nothing about the served model or a person's approval.
PREDEPLOY_RULES = ("data_quality", "rmse_ceiling", "champion")


@dataclass(frozen=True)
class Predeploy:
    """Rules 1-3 of a decision: whether the candidate may be deployed for its system test."""

    decision: GateDecision

    @property
    def inputs(self) -> GateInputs:
        return self.decision.inputs

    @property
    def rules(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.decision.rules if r.rule in PREDEPLOY_RULES)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def reasons(self) -> list[str]:
        return [f"{'PASS' if r.passed else 'FAIL'} {r.rule}: {r.reason}" for r in self.rules]

    def to_tags(self) -> dict[str, str]:
        """Tags after rules 1-3: a pass is noted; a rejection is the gate's final word."""
        if self.passed:
            return {"gate.predeploy": "passed", "gate.predeploy.reasons": "\n".join(self.reasons)}
        tags = self.decision.to_tags()
        tags.update(
            {
                "gate.decision": "reject",
                "gate.reasons": "\n".join(
                    [*self.reasons, "system test not run: rejected before deployment"]
                ),
                "gate.predeploy": "failed",
                "gate.system_test": "not run",
            }
        )
        tags.pop("gate.rule.system_test", None)
        tags.pop("gate.rule.approval", None)
        return tags

    def to_dict(self) -> dict[str, Any]:
        """The gate summary of a candidate rejected before deployment (``reject``), else of the
        rules that passed (``continue``)."""
        out = self.decision.to_dict()
        out.update(
            decision="continue" if self.passed else "reject",
            passed=False,
            reasons=self.reasons
            + ([] if self.passed else ["system test not run: rejected before deployment"]),
        )
        return out


def predeploy(inputs: GateInputs) -> Predeploy:
    """Rules 1-3 on ``inputs`` (the system test and approval are judged after deployment)."""
    return Predeploy(decide(inputs))
