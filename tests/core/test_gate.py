"""The promotion gate (DESIGN §6) as a pure function: one pass and one fail test per rule."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from jobs.adapters.settings import STACKS
from jobs.core.gate import MAX_TAG_CHARS, ChampionComparison, GateInputs, decide


@dataclass
class FakeSystemTest:
    """Plain data with the shape of a system-test result (the gate only reads it)."""

    passed: bool = True
    reasons: list[str] = field(default_factory=lambda: ["5 golden rows answered"])
    rmse: float | None = 2.05


def champion(mean_diff: float, version: str = "3") -> ChampionComparison:
    return ChampionComparison.from_bootstrap(
        champion_version=version,
        champion_rmse=2.10,
        candidate_rmse=2.10 + mean_diff,
        bootstrap={
            "diff": mean_diff,
            "diff_mean": mean_diff + 0.001,
            "ci_low": mean_diff - 0.03,
            "ci_high": mean_diff + 0.03,
            "p_worse": 0.9 if mean_diff > 0 else 0.2,
        },
        n_rows=627,
    )


def good(env: str = "dev", **changes) -> GateInputs:
    base = GateInputs(
        candidate_version="4",
        candidate_test_rmse=2.05,
        data_quality="passed",
        policy=STACKS[env],
        champion=None,
        system_test=FakeSystemTest(),
        approval=None,
        approved_by=None,
        env=env,
        evaluated_at="2026-11-26T12:00:00+00:00",
    )
    return replace(base, **changes)


def rule(decision, name):
    return next(r for r in decision.rules if r.rule == name)


def test_all_rules_pass_promotes_and_lists_every_reason():
    d = decide(good())
    assert d.decision == "promote" and d.passed
    assert len(d.reasons) == 5 and all(r.startswith("PASS") for r in d.reasons)
    assert any("rmse 2.0500 ≤ ceiling 2.30" in r for r in d.reasons)


# rule 1: data quality
def test_rule1_data_quality_passed():
    assert rule(decide(good()), "data_quality").passed


@pytest.mark.parametrize("status", ["failed", "unknown", "rejected"])
def test_rule1_data_quality_not_passed_rejects(status):
    d = decide(good(data_quality=status))
    assert d.decision == "reject"
    assert not rule(d, "data_quality").passed
    assert status in rule(d, "data_quality").reason


# rule 2: ceiling
def test_rule2_rmse_at_ceiling_passes():
    d = decide(good(candidate_test_rmse=2.30))
    assert rule(d, "rmse_ceiling").passed and d.decision == "promote"


def test_rule2_rmse_above_ceiling_rejects():
    d = decide(good(candidate_test_rmse=2.31))
    assert d.decision == "reject"
    assert "2.3100 > ceiling 2.30" in rule(d, "rmse_ceiling").reason


def test_rule2_prd_ceiling_is_stricter():
    d = decide(good("prd", candidate_test_rmse=2.25, approval="approved", approved_by="ann"))
    assert d.decision == "reject" and "ceiling 2.20" in rule(d, "rmse_ceiling").reason


def test_rule2_nan_rmse_rejects():
    assert decide(good(candidate_test_rmse=float("nan"))).decision == "reject"


# rule 3: champion comparison
def test_rule3_no_champion_passes():
    d = decide(good(champion=None))
    assert rule(d, "champion").passed and "no champion" in rule(d, "champion").reason


def test_rule3_candidate_already_champion_passes():
    d = decide(good(champion=None, candidate_is_champion=True))
    assert rule(d, "champion").passed and "already is the champion" in rule(d, "champion").reason


def test_rule3_within_tolerance_passes_and_records_bootstrap():
    d = decide(good(champion=champion(0.04)))  # dev tolerance 0.05
    r = rule(d, "champion")
    assert r.passed and d.decision == "promote"
    assert "v3" in r.reason and "diff +0.0400 ≤ tolerance 0.05" in r.reason and "95% CI" in r.reason
    tags = d.to_tags()
    assert tags["gate.champion_version"] == "3"
    assert tags["gate.rmse_diff"] == "0.0400"
    assert tags["gate.rmse_diff_ci"] == "[0.0100, 0.0700]"
    assert tags["gate.rmse_diff_boot_mean"] == "0.0410"


def test_rule3_worse_than_champion_beyond_tolerance_rejects():
    d = decide(good(champion=champion(0.06)))
    assert d.decision == "reject" and not rule(d, "champion").passed
    assert "> tolerance 0.05" in rule(d, "champion").reason


def test_rule3_better_than_champion_passes():
    assert decide(good(champion=champion(-0.2))).decision == "promote"


# rule 4: system test
def test_rule4_system_test_passed():
    r = rule(decide(good()), "system_test")
    assert r.passed and "golden rows" in r.reason


def test_rule4_system_test_failed_rejects_with_its_reasons():
    st = FakeSystemTest(passed=False, reasons=["test split rmse 3.1 differs from logged 2.05"])
    d = decide(good(system_test=st))
    assert d.decision == "reject"
    assert "differs from logged" in rule(d, "system_test").reason


def test_rule4_system_test_missing_rejects():
    d = decide(good(system_test=None))
    assert d.decision == "reject" and "not run" in rule(d, "system_test").reason


# rule 5: approval
def test_rule5_not_required_on_dev():
    r = rule(decide(good("dev")), "approval")
    assert r.passed and "not required" in r.reason


def test_rule5_prd_without_approval_awaits():
    d = decide(good("prd"))
    assert d.decision == "awaiting_approval" and not d.passed
    assert "approval required on prd" in rule(d, "approval").reason


def test_rule5_prd_with_approval_promotes():
    d = decide(good("prd", approval="approved", approved_by="ann"))
    assert d.decision == "promote"
    assert "approved by ann" in rule(d, "approval").reason


def test_rule5_approved_without_name_still_awaits():
    assert decide(good("prd", approval="approved", approved_by=" ")).decision == "awaiting_approval"


def test_rule5_explicit_refusal_rejects():
    d = decide(good("prd", approval="rejected", approved_by="bob"))
    assert d.decision == "reject"


def test_approval_never_rescues_a_failed_rule():
    d = decide(good("prd", data_quality="failed", approval="approved", approved_by="ann"))
    assert d.decision == "reject"


def test_awaiting_only_when_everything_else_passed():
    assert decide(good("prd", candidate_test_rmse=2.5)).decision == "reject"


# tags
def test_tags_carry_decision_reasons_and_figures():
    d = decide(good(champion=champion(0.01)))
    tags = d.to_tags()
    assert tags["gate.decision"] == "promote"
    assert tags["gate.reasons"].count("\n") == 4
    assert tags["gate.evaluated_at"] == "2026-11-26T12:00:00+00:00"
    assert tags["gate.candidate_rmse"] == "2.0500"
    assert tags["gate.rmse_ceiling"] == "2.3000"
    assert tags["gate.system_test"] == "passed"
    assert tags["gate.rule.champion"] == "passed"
    assert all(isinstance(v, str) for v in tags.values())


def test_tags_without_champion_overwrite_stale_figures():
    tags = decide(good()).to_tags()
    assert tags["gate.champion_version"] == "none" and tags["gate.rmse_diff"] == "none"


def test_reasons_tag_is_bounded():
    st = FakeSystemTest(passed=False, reasons=["x" * 3000, "y" * 3000])
    tags = decide(good(system_test=st)).to_tags()
    assert len(tags["gate.reasons"]) <= MAX_TAG_CHARS


def test_decide_is_pure():
    inputs = good(champion=champion(0.02))
    assert decide(inputs) == decide(inputs)
