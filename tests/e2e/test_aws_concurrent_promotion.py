"""Two executions of the real state machine started together end with one consistent champion
lineage (issue 12, "What to deliver" 1 and 4), on moto with the harness of ``test_aws_pipeline``.

Two different batches are uploaded at once; both executions validate and train in parallel. The
harness then picks the worst timing for promotion: the first execution to reach ``Promote`` waits
there until the second one arrives, so the two promote Lambdas start together, in parallel (as two
Lambda sandboxes would). To keep the shared staging endpoint out of this test (it is one endpoint
per stack), the second execution's gate step starts only once the first one is waiting to promote.

Before the promotion lock, both promote steps read the same ``@champion`` and both promoted: one
version was gated against a champion it did not replace, or displaced without a trace.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.e2e.test_aws_pipeline import EXECUTION_TIMEOUT_S, Stack, _data_bytes
from tests.e2e.test_aws_pipeline import aws as moto_aws  # noqa: F401 - the harness fixture

pytestmark = [pytest.mark.slow, pytest.mark.monotonic_waits]

RENDEZVOUS_TIMEOUT_S = 120


class PromoteTogether:
    """``Harness.before_invoke``: the choreography described in the module docstring."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gates: list[str] = []
        self.first_waiting = threading.Event()
        self.promote_started: set[str] = set()
        self.barrier = threading.Barrier(2)
        self.notes: list[str] = []

    def __call__(self, handler: str, event: dict) -> None:
        execution = (event.get("context") or {}).get("execution_name", "?")
        if handler == "gate_handler":
            with self.lock:
                self.gates.append(execution)
                second = len(self.gates) == 2
            if second and not self.first_waiting.wait(RENDEZVOUS_TIMEOUT_S):
                self.notes.append("the first execution never reached Promote")
        elif handler == "promote_handler":
            with self.lock:
                first_call = execution not in self.promote_started
                self.promote_started.add(execution)
            if first_call:
                self.first_waiting.set()
                try:
                    self.barrier.wait(RENDEZVOUS_TIMEOUT_S)
                except threading.BrokenBarrierError:
                    self.notes.append(f"{execution} reached Promote alone")


def _batches() -> tuple[bytes, bytes]:
    lines = _data_bytes()[0].decode().splitlines(keepends=True)
    return "".join(lines[:3600]).encode(), "".join(lines[577:]).encode()


def test_two_executions_started_together_leave_one_consistent_lineage(
    moto_aws,  # noqa: F811 - the fixture imported above
    fresh_mlflow_server,
    monkeypatch,
):
    aws, mlflow_server = moto_aws, fresh_mlflow_server  # a registry of its own: no champion yet
    from jobs.adapters.tracking import CHAMPION, Registry

    stack = Stack(aws, "dev", mlflow_server, require_approval=False)
    stack.create()
    registry = Registry(mlflow_server)
    before = registry.alias(CHAMPION)
    # Every function's environment for the whole process (they agree), then parallel invokes.
    for env in stack.function_env.values():
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    aws.concurrent_lambdas = True
    choreography = aws.before_invoke = PromoteTogether()

    first, second = _batches()
    keys = [stack.upload("batch-a.csv", first), stack.upload("batch-b.csv", second)]
    arns = [stack.execution_for(key) for key in keys]
    deadline = time.monotonic() + 2 * EXECUTION_TIMEOUT_S + RENDEZVOUS_TIMEOUT_S
    done = [stack.wait(arn, timeout=max(1.0, deadline - time.monotonic())) for arn in arns]
    explain = json.dumps(
        {"notes": choreography.notes, "runs": [stack.explain(arn) for arn in arns]}
    )[-8000:]
    assert choreography.notes == [], explain
    assert choreography.promote_started == {d["name"] for d in done}, explain

    # Each execution either promoted and deployed, or was refused by the full gate: never a
    # pipeline failure, never a candidate promoted and then silently displaced.
    outputs = {}
    for desc in done:
        arn = desc["executionArn"]
        out = stack.state_output(arn, "Promote")
        assert out is not None, stack.explain(arn)
        outputs[desc["name"]] = out["promote"]["output"]
        decision = outputs[desc["name"]]["decision"]
        if decision == "promote":
            assert desc["status"] == "SUCCEEDED", stack.explain(arn)
        else:
            assert (desc["status"], desc.get("error")) == ("FAILED", "GateRejected"), explain
    # The lock was contended: one promote step was retried after PromotionBusy.
    history = json.dumps([stack.history(arn) for arn in arns], default=str)
    assert "PromotionBusy" in history, explain

    versions = {o["model_version"] for o in outputs.values()}
    assert len(versions) == 2
    promoted = [v for v in versions if registry.tags(v)["gate.decision"] == "promote"]
    assert promoted, explain
    # The lineage: each promoted version replaced exactly the champion it was gated against.
    replaced = {}
    for version in promoted:
        tags = registry.tags(version)
        replaced[version] = tags.get("champion.replaced")
        gated_against = tags["gate.champion_version"]
        assert gated_against == (replaced[version] or "none"), (version, tags, explain)
        assert "champion.promoted_at" in tags
    order = [v for v in promoted if replaced[v] == before]
    assert len(order) == 1, (replaced, explain)  # one chain, starting at the old champion
    while len(order) < len(promoted):
        successors = [v for v in promoted if replaced[v] == order[-1]]
        assert len(successors) == 1, (replaced, explain)
        order.append(successors[0])

    aliases = registry.aliases()
    assert aliases.champion == order[-1]
    assert aliases.previous == replaced[order[-1]]
    for alias in (aliases.champion, aliases.previous):
        if alias is not None and alias != before:
            assert registry.tags(alias)["gate.decision"] == "promote"
            assert registry.version(alias).status == "READY"
    # A refused candidate was refused against the champion of its time: the winner.
    for version in versions - set(promoted):
        tags = registry.tags(version)
        assert tags["gate.decision"] == "reject"
        assert tags["gate.champion_version"] == order[-1], (tags, explain)
    # The lock is free again.
    import boto3

    item = boto3.client("dynamodb").scan(TableName=stack.lock_table)["Items"]
    assert item == []
