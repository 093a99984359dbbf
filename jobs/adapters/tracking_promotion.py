"""Crash-safe moves of ``@champion`` (issue 12), part of :class:`jobs.adapters.tracking.Registry`.

Every promotion or rollback writes an *intent* first (registered-model tag ``promotion.intent``:
JSON ``{op, version, replaces, started_at, …}``), then the version's tags, then the aliases
(``@previous`` before ``@champion``), then clears the intent. While the intent exists the aliases
are in flight, never final; :meth:`CrashSafePromotion.repair`, run under the store lock before the
next gate, finishes or undoes the move. A promotion's commit point is the version's
``champion.promoted_at`` tag equal to the intent's ``started_at``, written after the gate's tags
and before any alias moves: committed → finished; not committed → undone (no alias had moved).
Only MLflow registry calls are used, so this works on any store (SQLite, a server, SageMaker).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException

from jobs.adapters.locking import crash_point
from jobs.adapters.tracking_store import first_line
from jobs.core.errors import ServiceError, UsageError
from jobs.core.policy import CHAMPION, PREVIOUS

if TYPE_CHECKING:
    from jobs.adapters.tracking import Aliases

log = logging.getLogger(__name__)

INTENT_TAG = "promotion.intent"


class CrashSafePromotion:
    """``promote``/``rollback``/``repair`` over the registry primitives of ``Registry``."""

    name: str
    client: Any
    # provided by Registry
    _call: Any
    version: Any
    alias: Any
    aliases: Any
    set_alias: Any
    delete_alias: Any
    tags: Any
    set_tags: Any
    _exists: Any

    def intent(self) -> dict[str, Any] | None:
        """The interrupted (or in-flight) promotion or rollback, ``None`` when there is none."""
        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return None
            raise ServiceError(f"MLflow read of {self.name} failed: {first_line(err)}") from err
        raw = (model.tags or {}).get(INTENT_TAG)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            log.warning("ignoring an unreadable %s tag on %s: %r", INTENT_TAG, self.name, raw)
            return None

    def _write_intent(self, intent: dict[str, Any]) -> None:
        self._call(
            f"set tag {INTENT_TAG}",
            self.client.set_registered_model_tag,
            self.name,
            INTENT_TAG,
            json.dumps(intent, sort_keys=True),
        )

    def _clear_intent(self) -> None:
        self._call(
            f"delete tag {INTENT_TAG}",
            self.client.delete_registered_model_tag,
            self.name,
            INTENT_TAG,
        )

    def promote(self, version: str | int, tags: dict[str, Any] | None = None) -> Aliases:
        """``@champion`` → ``version``, the old champion → ``@previous``; ``tags`` (the gate's)
        are written on the version as part of the promotion. Call under the store lock."""
        version = str(version)
        self.version(version)
        old = self.alias(CHAMPION)
        if old == version:
            if tags:
                self.set_tags(version, tags)
            return self.aliases()
        intent = {
            "op": "promote",
            "version": version,
            "replaces": old,
            "prior_replaced": self.tags(version).get("champion.replaced"),
            "started_at": _now(),
        }
        self._write_intent(intent)
        crash_point("promote.intent")
        version_tags = {**(tags or {})}
        if old is not None:
            version_tags["champion.replaced"] = old
        self.set_tags(version, version_tags)
        if old is None:
            self._delete_tag(version, "champion.replaced")
        self.set_tags(version, {"champion.promoted_at": intent["started_at"]})  # commit point
        crash_point("promote.committed")
        self._move_promoted(intent)
        return self.aliases()

    def _move_promoted(self, intent: dict[str, Any]) -> None:
        if intent["replaces"] is not None:
            self.set_alias(PREVIOUS, intent["replaces"])
        crash_point("promote.previous")
        self.set_alias(CHAMPION, intent["version"])
        crash_point("promote.champion")
        self._clear_intent()

    def rollback(self) -> Aliases:
        """``@champion`` → ``@previous``; ``@previous`` → the version the restored one had replaced.
        Call under the store lock."""
        target = self.alias(PREVIOUS)
        if target is None:
            raise UsageError(f"no @{PREVIOUS} version of {self.name} to roll back to")
        current = self.alias(CHAMPION)
        before = self.tags(target).get("champion.replaced")
        keep = bool(before) and before not in (target, current) and self._exists(str(before))
        intent = {
            "op": "rollback",
            "version": target,
            "replaces": current,
            "previous": before if keep else None,
            "started_at": _now(),
        }
        self._write_intent(intent)
        self._move_rolled_back(intent)
        return self.aliases()

    def _move_rolled_back(self, intent: dict[str, Any]) -> None:
        target, current = intent["version"], intent["replaces"]
        self.set_alias(CHAMPION, target)
        crash_point("rollback.champion")
        if current is not None and current != target:
            self.set_tags(
                current, {"rolled_back_at": intent["started_at"], "rolled_back_to": target}
            )
        if intent["previous"]:
            self.set_alias(PREVIOUS, intent["previous"])
        else:
            self.delete_alias(PREVIOUS)
        self._clear_intent()

    def repair(self) -> str | None:
        """Finish or undo what a crash interrupted; what was done, or ``None``. Only under the
        store lock (an intent seen without it may be a live promotion). A rollback is finished (a
        person asked for it). A promotion past its commit point is finished: its gate decided
        under the lock and every tag is written. One before it is undone: no alias had moved; the
        version is tagged ``gate.decision=interrupted`` (re-gate it with ``abalone promote``)."""
        intent = self.intent()
        if intent is None:
            return None
        version, replaces = str(intent.get("version")), intent.get("replaces")
        if intent.get("op") == "rollback":
            self._move_rolled_back(intent)
            return f"finished the interrupted rollback to v{version}"
        champion = self.alias(CHAMPION)
        committed = self.tags(version).get("champion.promoted_at") == intent.get("started_at")
        if committed and champion in (replaces, version):
            self._move_promoted(intent)
            return f"finished the interrupted promotion of v{version} (replacing v{replaces})"
        undo: dict[str, Any] = {
            "gate.decision": "interrupted",
            "gate.reasons": "the promotion was interrupted before it completed (the process "
            f"died) and was undone; run `abalone promote --version {version}` to gate it again",
        }
        if intent.get("prior_replaced"):
            undo["champion.replaced"] = intent["prior_replaced"]
        self.set_tags(version, undo)
        if not intent.get("prior_replaced"):
            self._delete_tag(version, "champion.replaced")
        if champion == version and replaces is not None:  # moved by hand meanwhile: put back
            self.set_alias(CHAMPION, replaces)
        self._clear_intent()
        return f"undid the interrupted promotion of v{version} (@champion: v{self.alias(CHAMPION)})"

    def _delete_tag(self, version: str, key: str) -> None:
        if key in self.tags(version):
            self._call(
                f"delete tag {key} of version {version}",
                self.client.delete_model_version_tag,
                self.name,
                version,
                key,
            )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
