"""The stack's promotion lock (``jobs.aws.promotion_lock``) against moto's DynamoDB.

The table is created as the ``PromotionLock`` component declares it (key and TTL attribute names
are the component's). Time is an injected clock, so lease expiry needs no sleeping.
"""

from __future__ import annotations

import threading

import boto3
import pytest
from moto import mock_aws

from components import promotion_lock as component
from jobs.aws import promotion_lock
from jobs.aws.promotion_lock import PromotionBusy, StackLock
from jobs.core.errors import ServiceError, UsageError
from tests.aws.dynamodb_atomic import atomic_conditional_writes

TABLE = "abalone-dev-promotion-lock"


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ddb(monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    atomic_conditional_writes(monkeypatch)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": component.KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": component.KEY_ATTRIBUTE, "AttributeType": "S"}],
        )
        client.update_time_to_live(
            TableName=TABLE,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": component.EXPIRES_ATTRIBUTE},
        )
        yield client


def lock(client, owner: str, clock: Clock, lease_s: float = 360) -> StackLock:
    return StackLock(TABLE, owner, lease_s=lease_s, client=client, clock=clock)


def test_runtime_and_component_agree_on_the_item_layout():
    assert promotion_lock.KEY_ATTRIBUTE == component.KEY_ATTRIBUTE
    assert promotion_lock.EXPIRES_ATTRIBUTE == component.EXPIRES_ATTRIBUTE
    assert promotion_lock.lock_key().startswith(component.LOCK_KEY_PREFIX)


def test_one_holder_at_a_time_and_release_frees_it(ddb):
    clock = Clock()
    first, second = lock(ddb, "exec-a", clock), lock(ddb, "exec-b", clock)
    first.acquire()
    holder = first.holder()
    assert holder is not None
    assert holder["owner"] == "exec-a"
    assert holder["expires_at"] == pytest.approx(clock.now + 360, abs=2)

    clock.now += 100
    with pytest.raises(PromotionBusy) as busy:
        second.acquire()
    assert busy.value.owner == "exec-a"
    assert "exec-a" in str(busy.value) and "lease ends in 26" in str(busy.value)
    assert first.holder()["owner"] == "exec-a"  # a refused acquire writes nothing

    assert first.release() is True
    assert first.holder() is None
    second.acquire()
    assert second.holder()["owner"] == "exec-b"


def test_the_same_execution_may_take_it_again(ddb):
    """A retried invocation of the execution that holds the lock (e.g. after a Lambda timeout)
    continues instead of waiting for its own lease."""
    clock = Clock()
    lock(ddb, "exec-a", clock).acquire()
    clock.now += 30
    again = lock(ddb, "exec-a", clock)
    again.acquire()
    assert again.holder()["expires_at"] == pytest.approx(clock.now + 360, abs=2)


def test_an_expired_lease_is_free_and_the_late_holder_cannot_release_it(ddb):
    clock = Clock()
    crashed, waiting = lock(ddb, "exec-crashed", clock, 60), lock(ddb, "exec-b", clock, 60)
    crashed.acquire()
    clock.now += 59
    with pytest.raises(PromotionBusy):
        waiting.acquire()
    clock.now += 3  # the lease has run out: the holder is certainly gone
    waiting.acquire()
    assert waiting.holder()["owner"] == "exec-b"
    assert crashed.release() is False  # refused: not the owner any more
    assert waiting.holder()["owner"] == "exec-b"


def test_a_non_owner_never_removes_the_lock(ddb):
    clock = Clock()
    lock(ddb, "exec-a", clock).acquire()
    assert lock(ddb, "exec-b", clock).release() is False
    assert lock(ddb, "exec-a", clock).holder()["owner"] == "exec-a"


def test_context_manager_releases_also_when_the_block_fails(ddb):
    clock = Clock()
    with pytest.raises(RuntimeError, match="boom"), lock(ddb, "exec-a", clock):
        assert lock(ddb, "exec-b", clock).holder()["owner"] == "exec-a"
        raise RuntimeError("boom")
    assert lock(ddb, "exec-b", clock).holder() is None


def test_threads_contending_at_once_get_exactly_one_holder(ddb):
    clock = Clock()
    start = threading.Barrier(6)
    won: list[str] = []
    busy: list[str] = []

    def contend(owner: str) -> None:
        mine = lock(boto3.client("dynamodb", region_name="us-east-1"), owner, clock)
        start.wait(10)
        try:
            mine.acquire()
        except PromotionBusy as err:
            busy.append(err.owner)
        else:
            won.append(owner)

    threads = [threading.Thread(target=contend, args=(f"exec-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 1 and len(busy) == 5
    assert set(busy) == set(won)


def test_a_missing_table_is_a_clear_service_error(ddb):
    absent = StackLock("no-such-table", "exec-a", client=ddb, clock=Clock())
    with pytest.raises(ServiceError, match="cannot acquire promotion/abalone-age in table no-such"):
        absent.acquire()


@pytest.mark.parametrize(
    ("table", "owner", "lease", "message"),
    [("", "e", 10, "no table"), ("t", "", 10, "no owner"), ("t", "e", 0, "lease must be > 0")],
)
def test_bad_arguments_are_usage_errors(table, owner, lease, message):
    with pytest.raises(UsageError, match=message):
        StackLock(table, owner, lease_s=lease)
