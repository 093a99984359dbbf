"""The stack's promotion lock as the program declares it (dev and prd, under the Pulumi mocks):
the DynamoDB table, the one role that may touch its items, the promote function's settings, and
the promote step's retry of a busy lock."""

from __future__ import annotations

import json

from components.pipeline_definition import PROMOTION_BUSY, promotion_wait_s
from components.promotion_lock import EXPIRES_ATTRIBUTE, KEY_ATTRIBUTE
from tests.components.harness import Program
from tests.components.test_program import policy_documents

TABLE = "aws:dynamodb/table:Table"


def lock_table(program: Program):
    (table,) = program.of_type(TABLE)
    return table


def test_one_encrypted_on_demand_table_with_pitr_and_a_lease_ttl(program):
    table = lock_table(program).inputs
    assert table["name"] == program.outputs["promotionLockTable"]
    assert table["billingMode"] == "PAY_PER_REQUEST"
    assert table["hashKey"] == KEY_ATTRIBUTE
    assert table["attributes"] == [{"name": KEY_ATTRIBUTE, "type": "S"}]
    assert table["ttl"] == {"attributeName": EXPIRES_ATTRIBUTE, "enabled": True}
    assert table["pointInTimeRecovery"]["enabled"] is True
    sse = table["serverSideEncryption"]
    assert sse["enabled"] is True and sse["kmsKeyArn"] == program.outputs["kmsKeyArn"]
    # nothing grants access from outside the account: no resource policy on the table
    assert not [r for r in program.resources if r.typ.startswith("aws:dynamodb/resourcePolicy")]
    assert lock_table(program).parents[-1] == "abalone:index:PromotionLock"


def test_only_the_promote_role_may_touch_the_lock_items(program):
    table_arn = (
        f"arn:aws:dynamodb:us-east-1:123456789012:table/{program.outputs['promotionLockTable']}"
    )
    grants = []
    for name, doc in policy_documents(program):
        for stmt in doc["Statement"]:
            actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
            if any(a.startswith("dynamodb:") for a in actions):
                grants.append((name, stmt))
    assert [name for name, _ in grants] == [f"{program.config.prefix}-pipeline-promote-role-policy"]
    (_, stmt) = grants[0]
    assert stmt["Effect"] == "Allow"
    assert sorted(stmt["Action"]) == ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"]
    assert stmt["Resource"] == [table_arn]
    assert stmt["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["promotion/*"]}
    }


def test_the_promote_function_knows_the_table_and_a_lease_longer_than_its_timeout(program):
    fn = next(
        r
        for r in program.of_type("aws:lambda/function:Function")
        if r.name.endswith("-promote-function")
    )
    env = fn.inputs["environment"]["variables"]
    assert env["ABALONE_PROMOTION_LOCK_TABLE"] == program.outputs["promotionLockTable"]
    lease = float(env["ABALONE_PROMOTION_LOCK_LEASE_S"])
    assert lease > fn.inputs["timeout"]
    for other in program.of_type("aws:lambda/function:Function"):
        if other is not fn:
            assert "ABALONE_PROMOTION_LOCK_TABLE" not in json.dumps(other.inputs.get("environment"))


def test_a_busy_lock_is_retried_longer_than_a_crashed_holders_lease(program):
    promote = program.definition["States"]["Promote"]
    busy, *others = promote["Retry"]
    assert busy["ErrorEquals"] == [PROMOTION_BUSY]
    assert all(PROMOTION_BUSY not in r["ErrorEquals"] for r in others)
    waited = promotion_wait_s(busy["IntervalSeconds"], busy["MaxAttempts"])
    fn = next(
        r
        for r in program.of_type("aws:lambda/function:Function")
        if r.name.endswith("-promote-function")
    )
    lease = float(fn.inputs["environment"]["variables"]["ABALONE_PROMOTION_LOCK_LEASE_S"])
    # a waiting execution outlasts a crashed holder's lease plus one full promotion
    assert waited > lease + fn.inputs["timeout"]
    # out of retries: its own notification and Fail state, not the generic "a step failed"
    first_catch = promote["Catch"][0]
    assert first_catch["ErrorEquals"] == [PROMOTION_BUSY]
    notify = program.definition["States"][first_catch["Next"]]
    fail = program.definition["States"][notify["Next"]]
    assert fail["Type"] == "Fail" and fail["Error"] == PROMOTION_BUSY
    assert "nothing was promoted" in fail["Cause"]
