"""DynamoDB's documented atomicity of conditional writes, restored under moto.

DynamoDB evaluates a ``ConditionExpression`` and applies the write as one atomic step. moto's
backend checks and writes in plain Python without a lock, so two threads' conditional ``PutItem``
calls could interleave between check and write: a race the real service does not have. Tests
that contend for the promotion lock from several threads serialize the backend's item writes, so
they test our lock against the service's semantics, not against the emulator's gap.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_WRITE_LOCK = threading.RLock()


def atomic_conditional_writes(monkeypatch: Any) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "delete_item", "update_item"):
        original = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def serialized(self, *args, __original=original, **kwargs):
            with _WRITE_LOCK:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, serialized)
