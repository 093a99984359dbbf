"""The local store lock: one promotion (and one store creation) at a time per tracking store.

``abalone run``, ``abalone promote`` and ``abalone rollback`` on one machine take an exclusive
``fcntl.flock`` on a lock file beside the store, held from re-reading ``@champion`` through the gate
to moving the aliases; the first open of a new SQLite store (MLflow's schema migration) is
serialized by the same lock. The lock file is

- ``<db>.lock`` beside a SQLite database (``sqlite:///…/mlflow.db`` → ``…/mlflow.db.lock``);
- ``<dir>/.abalone.lock`` inside a local ``file:`` store;
- ``$ABALONE_HOME/locks/store-<digest of the URI>.lock`` for a server (``http(s)://``, an ARN):
  processes on this machine using that home are serialized; the AWS pipeline has its own lock.

The kernel releases a ``flock`` when its holder dies (``kill -9`` included), so a crash never leaves
the store locked. A waiter says so once ("waiting for another promotion on …") and gives up with a
clear error after ``ABALONE_LOCK_WAIT_S`` seconds (default 300). The lock is re-entrant within a
thread, so a holder may call code that takes it again.

Test-only: :func:`crash_point` makes the process ``SIGKILL`` itself at a named point when
``ABALONE_TEST_CRASH_AT`` names it (unset in production, where it does nothing).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from jobs.adapters.settings import environ_value
from jobs.core.errors import ServiceError, UsageError
from jobs.core.redact import redact

log = logging.getLogger(__name__)

DEFAULT_WAIT_S = 300.0
POLL_S = 0.1

_guard = threading.Lock()
_held: dict[Path, tuple[threading.RLock, list[int]]] = {}  # path → (thread lock, [depth, fd])


def lock_path(tracking_uri: str, home: Path | None = None) -> Path:
    """The lock file of a tracking store (see the module docstring)."""
    if tracking_uri.startswith("sqlite:///"):
        raw = tracking_uri[len("sqlite:///") :]
        db = Path("/" + raw.lstrip("/")) if tracking_uri.startswith("sqlite:////") else Path(raw)
        db = Path(str(db).split("?", 1)[0])
        return db.absolute().with_name(db.name + ".lock")
    if tracking_uri.startswith("file:"):
        return Path(tracking_uri.removeprefix("file://").removeprefix("file:")) / ".abalone.lock"
    if "://" not in tracking_uri and not tracking_uri.startswith("arn:"):
        return Path(tracking_uri).absolute() / ".abalone.lock"  # a bare directory is a file store
    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return (home or Path(".mlops")).absolute() / "locks" / f"store-{digest}.lock"


def wait_limit() -> float:
    raw = environ_value("ABALONE_LOCK_WAIT_S")
    if raw is None:
        return DEFAULT_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise UsageError(f"ABALONE_LOCK_WAIT_S={raw!r}: give a positive number of seconds")
    return value


class StoreLock:
    """Exclusive lock on one tracking store (a context manager; re-entrant within a thread)."""

    def __init__(
        self, path: Path, *, store: str, purpose: str = "promotion", wait_s: float | None = None
    ) -> None:
        self.path = Path(path)
        self.store = store
        self.purpose = purpose
        self.wait_s = wait_s

    def __enter__(self) -> StoreLock:
        wait_s = self.wait_s if self.wait_s is not None else wait_limit()
        deadline = time.monotonic() + wait_s
        with _guard:
            thread_lock, state = _held.setdefault(self.path, (threading.RLock(), [0, -1]))
        if not thread_lock.acquire(timeout=wait_s):
            raise self._timeout(wait_s)
        try:
            if state[0] == 0:
                state[1] = self._acquire(deadline, wait_s)
            state[0] += 1
        except BaseException:
            thread_lock.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        thread_lock, state = _held[self.path]
        state[0] -= 1
        if state[0] == 0:
            fd, state[1] = state[1], -1
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        thread_lock.release()

    def _acquire(self, deadline: float, wait_s: float) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise ServiceError(f"cannot open the store lock {self.path}: {err.strerror}") from err
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as err:
                    if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise ServiceError(f"cannot lock {self.path}: {err.strerror}") from err
                if not told:
                    log.warning("%s…", self._waiting())
                    told = True
                if time.monotonic() >= deadline:
                    raise self._timeout(wait_s)
                time.sleep(POLL_S)
            self._record(fd)
            if told:
                log.warning("got the %s lock on %s", self.purpose, self.store)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _record(self, fd: int) -> None:
        """Who holds the lock, for a waiter's message (informational only: the flock is the lock)."""
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass

    def _holder(self) -> dict[str, str]:
        try:
            info = json.loads(self.path.read_text() or "{}")
            return {k: str(info[k]) for k in ("pid", "purpose", "since")}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _waiting(self) -> str:
        holder = self._holder()
        what = holder.get("purpose", "promotion")
        who = f"pid {holder['pid']} since {holder['since']}" if holder else "another process"
        return f"waiting for another {what} on {self.store} ({who}; lock {self.path})"

    def _timeout(self, wait_s: float) -> ServiceError:
        return ServiceError(
            f"gave up after {wait_s:g}s {self._waiting()}; retry when it has finished, or "
            "raise ABALONE_LOCK_WAIT_S"
        )


def store_lock(
    tracking_uri: str, home: Path | None = None, *, purpose: str = "promotion"
) -> StoreLock:
    """The lock of the store at ``tracking_uri`` (``home``: where a server store's lock lives)."""
    shown = redact(tracking_uri)  # no credentials in the waiting message or the lock file
    return StoreLock(lock_path(tracking_uri, home), store=shown, purpose=purpose)


def crash_point(name: str) -> None:
    """TEST-ONLY: ``SIGKILL`` this process here when ``ABALONE_TEST_CRASH_AT`` equals ``name``.

    Lets the crash tests stop a run at an exact point (``kill -9``: no handler, no cleanup). Does
    nothing unless that variable is set, which nothing in the product does."""
    if environ_value("ABALONE_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
