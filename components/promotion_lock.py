"""PromotionLock: the stack's DynamoDB lock table, one promotion at a time (DESIGN §6, §8, issue 12).

The promote Lambda (``jobs.aws.promotion_lock``) takes the item ``promotion/<registered model>``
with a conditional ``PutItem`` before it re-reads ``@champion``, and deletes it (conditioned on
being its owner) after the aliases moved. The table holds that one short-lived item: on-demand
capacity (no idle cost), encrypted with the stack key, point-in-time recovery on, and a TTL on the
lease attribute so an item left by a crashed holder is eventually tidied away (the lock itself
treats an expired lease as free at once). There is no resource policy: nothing outside the
account can reach it, and inside it only the promote function's role is granted item access
(:meth:`PromotionLock.item_access`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies

#: Attribute names the runtime uses (``jobs.aws.promotion_lock``; a test keeps them equal).
KEY_ATTRIBUTE = "lock"
EXPIRES_ATTRIBUTE = "expires_at"
LOCK_KEY_PREFIX = "promotion/"
#: What the lock item needs: take (conditional put), read the holder, release (conditional delete).
ITEM_ACTIONS = ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem")


@dataclass(frozen=True)
class PromotionLockArgs:
    key_arn: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)


class PromotionLock(pulumi.ComponentResource):
    table: aws.dynamodb.Table
    table_name: pulumi.Output[str]
    table_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: PromotionLockArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("abalone:index:PromotionLock", name, None, opts)
        self.table = aws.dynamodb.Table(
            f"{name}-table",
            name=name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=KEY_ATTRIBUTE,
            attributes=[aws.dynamodb.TableAttributeArgs(name=KEY_ATTRIBUTE, type="S")],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=EXPIRES_ATTRIBUTE, enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(
                enabled=True, kms_key_arn=args.key_arn
            ),
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.table_name = self.table.name
        self.table_arn = self.table.arn
        self.register_outputs({"table_name": self.table_name, "table_arn": self.table_arn})

    def item_access(self, *, sid: str = "PromotionLock") -> dict[str, Any]:
        """The IAM statement of the promote function: the lock items of this table only (the
        partition key must start with ``promotion/``), no scans, no table administration."""
        return policies.statement(
            list(ITEM_ACTIONS),
            [self.table_arn],
            sid=sid,
            conditions={
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{LOCK_KEY_PREFIX}*"]}
            },
        )
