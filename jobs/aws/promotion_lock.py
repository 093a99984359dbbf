"""The stack's promotion lock: one item in the stack's DynamoDB lock table (DESIGN §6, §8, issue 12).

Two executions of the training pipeline may reach the promote step together (two uploads a
minute apart). The promote Lambda holds this lock from re-reading ``@champion`` to moving the
aliases (:func:`jobs.promotion.service.evaluate_gate`'s ``lock=``), so promotions of one stack run
one at a time and each candidate is gated against the champion it would replace.

The item (key ``lock`` = ``promotion/<registered model>``)::

    {"lock": "promotion/abalone-age", "owner": "<execution name>",
     "expires_at": <epoch seconds, also the table's TTL attribute>, "acquired_at": "<ISO time>"}

- **acquire** is one conditional ``PutItem``: it succeeds when there is no item, when the item's
  lease has expired, or when this owner already holds it (a retried invocation of the same
  execution). Otherwise :class:`PromotionBusy` names the holder; the state machine retries the
  promote step with backoff instead of keeping a Lambda waiting.
- **release** is a ``DeleteItem`` conditioned on ``owner``: nobody else's lock is ever removed.
- **the lease** outlives the Lambda's own timeout (the stack sets it to the promote function's
  timeout + 60 s), so a holder whose lease expired is certainly dead; a crashed holder blocks the
  next promotion for at most one lease. DynamoDB's TTL only tidies expired items away (it may take
  days); correctness rests on the condition ``expires_at < now``, not on TTL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from jobs.core.errors import ServiceError, UsageError
from jobs.core.policy import MODEL_NAME

log = logging.getLogger(__name__)

#: Partition key attribute and the lease attribute (the table's TTL attribute).
KEY_ATTRIBUTE = "lock"
EXPIRES_ATTRIBUTE = "expires_at"
DEFAULT_LEASE_S = 960  # Lambda's maximum timeout (900 s) + 60 s

__all__ = ["DEFAULT_LEASE_S", "EXPIRES_ATTRIBUTE", "KEY_ATTRIBUTE", "PromotionBusy", "StackLock"]


class PromotionBusy(ServiceError):
    """Another promotion of this stack holds the lock. The class name is the error name Step
    Functions sees (``errorType``), which the promote step's ``Retry`` matches."""

    def __init__(self, owner: str, expires_at: float | None, now: float) -> None:
        left = f"; its lease ends in {max(0, round(expires_at - now))} s" if expires_at else ""
        super().__init__(f"another promotion ({owner}) holds the stack's promotion lock{left}")
        self.owner = owner
        self.expires_at = expires_at


def lock_key(model_name: str = MODEL_NAME) -> str:
    return f"promotion/{model_name}"


class StackLock:
    """A context manager over the lock item; ``with StackLock(...):`` acquires and releases."""

    def __init__(
        self,
        table: str,
        owner: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        model_name: str = MODEL_NAME,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not table:
            raise UsageError("promotion lock: no table name")
        if not owner:
            raise UsageError("promotion lock: no owner")
        if not lease_s > 0:
            raise UsageError(f"promotion lock: lease must be > 0 s, got {lease_s}")
        self.table = table
        self.owner = owner
        self.lease_s = float(lease_s)
        self.key = lock_key(model_name)
        self._client = client
        self._clock = clock

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client

    def _item_key(self) -> dict[str, dict[str, str]]:
        return {KEY_ATTRIBUTE: {"S": self.key}}

    def acquire(self) -> None:
        """Take the lock or raise :class:`PromotionBusy` (nothing written then)."""
        now = self._clock()
        expires = int(now + self.lease_s) + 1
        item = {
            **self._item_key(),
            "owner": {"S": self.owner},
            EXPIRES_ATTRIBUTE: {"N": str(expires)},
            "acquired_at": {"S": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")},
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression=("attribute_not_exists(#k) OR #exp < :now OR #owner = :owner"),
                ExpressionAttributeNames={
                    "#k": KEY_ATTRIBUTE,
                    "#exp": EXPIRES_ATTRIBUTE,
                    "#owner": "owner",
                },
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now))},
                    ":owner": {"S": self.owner},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise self._service_error("acquire", err) from err
            held = err.response.get("Item") or self._holder()
            raise PromotionBusy(
                held.get("owner", {}).get("S", "unknown"), _number(held.get(EXPIRES_ATTRIBUTE)), now
            ) from None
        except BotoCoreError as err:
            raise self._service_error("acquire", err) from err
        log.info("promotion lock %s taken by %s until %s", self.key, self.owner, expires)

    def release(self) -> bool:
        """Delete the item if this owner still holds it; ``False`` (and an error in the log) when
        the lease had been lost, which the lease length is chosen to make impossible."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=self._item_key(),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": self.owner}},
            )
        except ClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise self._service_error("release", err) from err
            log.error(
                "promotion lock %s was no longer held by %s at release (lease of %.0f s exceeded)",
                self.key,
                self.owner,
                self.lease_s,
            )
            return False
        except BotoCoreError as err:
            raise self._service_error("release", err) from err
        log.info("promotion lock %s released by %s", self.key, self.owner)
        return True

    def holder(self) -> dict[str, Any] | None:
        """The current item as plain values (``owner``, ``expires_at``, ``acquired_at``) or None."""
        item = self._holder()
        if not item:
            return None
        return {
            "owner": item.get("owner", {}).get("S"),
            EXPIRES_ATTRIBUTE: _number(item.get(EXPIRES_ATTRIBUTE)),
            "acquired_at": item.get("acquired_at", {}).get("S"),
        }

    def _holder(self) -> dict[str, Any]:
        try:
            found = self.client.get_item(
                TableName=self.table, Key=self._item_key(), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as err:
            raise self._service_error("read", err) from err
        return found.get("Item") or {}

    def _service_error(self, what: str, err: Exception) -> ServiceError:
        return ServiceError(
            f"promotion lock: cannot {what} {self.key} in table {self.table}: {err}"
        )

    def __enter__(self) -> StackLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except ServiceError:
            if exc is None:
                raise
            # the step's own error is the one to report; the lease frees the lock anyway
            log.exception("promotion lock %s: release failed after an error", self.key)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _number(value: dict[str, str] | None) -> float | None:
    if not value or "N" not in value:
        return None
    return float(value["N"])
