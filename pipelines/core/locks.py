"""Named locks on the storage root: one mechanism for a local folder and for S3.

Promotions (the ``champion`` alias move) and scores publication are
check-then-act sequences; two processes must never interleave them. The lock
lives where every worker of a profile already meets, the data root, so it
works whatever the tracking backend (a local MLflow store or a tracking
server) and whichever machine runs the task:

- **local root**: an exclusive ``fcntl`` lock on ``<root>/_locks/<name>.lock``.
  The kernel releases it when the holder dies, so a crash never leaves it held.
  (One machine, or a shared filesystem with working POSIX locks.)
- **S3 root**: the object ``_locks/<name>.lock``, created with a conditional
  PUT (``If-None-Match: *``): of any number of concurrent creators exactly one
  succeeds. The object records its holder and a lease expiry (a minute by
  default), which a heartbeat thread of the holder renews every third of
  the lease (a conditional PUT on its own ETag). A holder that died (a spot
  instance reclaimed) leaves it until the lease ends; a waiter then deletes
  it conditionally (``If-Match`` its ETag, so two waiters cannot both remove
  a fresh lock) and tries again. A holder calls :meth:`Lock.check` before
  each write that matters: it raises :class:`LockLost` when another process
  took the lock over (the holder stalled longer than its lease), so a stale
  holder stops instead of writing. Clocks of workers may disagree by
  seconds, not by a lease.

A process waits for the lock up to ``timeout`` seconds, then fails with
:class:`LockBusy` (exit 7): the other holder is still at work, rerun later.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError, PipelinesError

if TYPE_CHECKING:
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)

LOCKS_DIR = "_locks"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.=-]{0,200}")
#: Default wait for a lock and lease of a held one (seconds).
DEFAULT_TIMEOUT = 300.0
DEFAULT_LEASE = 60.0
#: ``PIPELINES_LOCK_LEASE_SECONDS`` overrides the S3 lease (how long a killed holder blocks others).
LEASE_ENV = "PIPELINES_LOCK_LEASE_SECONDS"
#: A heartbeat stops renewing after this long: a holder stuck for good lets its lock lapse.
MAX_HOLD = 6 * 3600.0


class LockBusy(PipelinesError):
    """Another process held the lock for the whole wait: it is still at work; rerun later."""

    exit_code = 7


class LockLost(PipelinesError):
    """This process no longer holds its lock (it stalled past its lease and another took over): it stops
    before writing anything more; rerun."""

    exit_code = 7


def lock_key(name: str) -> str:
    """The storage key of a named lock."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid lock name {name!r}")
    return f"{LOCKS_DIR}/{name}.lock"


class Lock:
    """A held lock; :meth:`check` before each write that must not come from a stale holder."""

    name: str

    def check(self) -> None:  # pragma: no cover - overridden
        """Raise :class:`LockLost` when this process no longer holds the lock."""


class _FileLock(Lock):
    def __init__(self, name: str) -> None:
        self.name = name

    def check(self) -> None:
        """A kernel lock cannot be taken over while its holder lives: nothing to check."""


@contextlib.contextmanager
def _local_lock(path: str, name: str, timeout: float) -> Iterator[Lock]:
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+") as fh:
        delay = 0.01
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if delay == 0.01:
                    log.info("waiting for lock %r (held by another process)", name)
                if time.monotonic() >= deadline:
                    raise LockBusy(f"lock {name!r} is held by another process (waited {timeout:.0f} s)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        try:
            yield _FileLock(name)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


#: S3 answers a lost conditional write with 412 PreconditionFailed, and a conditional write racing
#: another on the same key with 409 ConditionalRequestConflict (retry).
_PRECONDITION = {"PreconditionFailed", "412"}
_CONFLICT = {"ConditionalRequestConflict", "409"}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class _ObjectLock(Lock):
    """A lock object on S3 (see the module docstring)."""

    def __init__(self, storage: Any, name: str, lease: float) -> None:
        self.storage = storage
        self.name = name
        self.lease = lease
        self.key = storage._key(lock_key(name))
        self.token = uuid.uuid4().hex
        self.etag: str | None = None
        self.renewed = 0.0
        self.lost = False
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _body(self) -> bytes:
        now = time.time()
        return json.dumps(
            {
                "token": self.token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
                "expires": now + self.lease,
            }
        ).encode()

    def try_acquire(self) -> bool:
        from botocore.exceptions import ClientError

        c = self.storage.client
        try:
            resp = c.put_object(Bucket=self.storage.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*")
        except ClientError as exc:
            if _code(exc) in _PRECONDITION | _CONFLICT:
                self._break_if_expired()
                return False
            raise
        self.etag, self.renewed = resp["ETag"], time.monotonic()
        return True

    def _break_if_expired(self) -> None:
        """Delete the current lock object when its lease is over (conditionally: only that very object)."""
        from botocore.exceptions import ClientError

        c = self.storage.client
        try:
            obj = c.get_object(Bucket=self.storage.bucket, Key=self.key)
            holder = json.loads(obj["Body"].read())
            expires = float(holder.get("expires", 0))
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return
            raise
        except (ValueError, TypeError, AttributeError):
            expires, holder = 0.0, {}  # not a lock object of ours: treat as expired
        if time.time() < expires:
            return
        log.warning("lock %r: its holder %s has let the lease expire; taking it over", self.name, holder)
        try:
            c.delete_object(Bucket=self.storage.bucket, Key=self.key, IfMatch=obj["ETag"])
        except ClientError as exc:
            if _code(exc) not in _PRECONDITION | _CONFLICT | _NOT_FOUND:
                raise

    def _renew(self) -> None:
        """Extend the lease (a conditional PUT on our own ETag); marks the lock lost when it is not ours."""
        from botocore.exceptions import ClientError

        with self._mutex:
            if self.lost:
                return
            try:
                resp = self.storage.client.put_object(
                    Bucket=self.storage.bucket, Key=self.key, Body=self._body(), IfMatch=self.etag
                )
            except ClientError as exc:
                if _code(exc) in _PRECONDITION | _NOT_FOUND:
                    self.lost = True
                    return
                raise  # 409 (a conditional write racing ours) and outages: the next beat tries again
            self.etag, self.renewed = resp["ETag"], time.monotonic()

    def start_heartbeat(self) -> None:
        """Renew the lease every third of it while held (a killed holder's lock lapses within one lease)."""

        started = time.monotonic()

        def beat() -> None:
            while not self._stop.wait(self.lease / 3):
                if time.monotonic() - started > MAX_HOLD:
                    log.error("lock %r held for over %.0f s: no longer renewed", self.name, MAX_HOLD)
                    return
                try:
                    self._renew()
                except Exception as exc:  # noqa: BLE001 - a blip: the next beat or check() tries again
                    log.warning("lock %r: renewing the lease failed: %s", self.name, exc)
                if self.lost:
                    return

        self._beat = threading.Thread(target=beat, name=f"lock-{self.name}", daemon=True)
        self._beat.start()

    def check(self) -> None:
        """Still ours? Renews the lease past half-time; :class:`LockLost` when taken over."""
        from botocore.exceptions import ClientError

        if time.monotonic() - self.renewed > self.lease / 2:
            self._renew()
        if self.lost:
            raise LockLost(f"lock {self.name!r} was taken over by another process; stopping")
        try:
            head = self.storage.client.head_object(Bucket=self.storage.bucket, Key=self.key)
        except ClientError as exc:
            if _code(exc) in _PRECONDITION | _NOT_FOUND | _CONFLICT:
                raise LockLost(f"lock {self.name!r} was taken over by another process; stopping") from None
            raise
        with self._mutex:
            if head["ETag"] != self.etag:
                raise LockLost(f"lock {self.name!r} was taken over by another process; stopping")

    def release(self) -> None:
        from botocore.exceptions import ClientError

        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=30)
        try:
            with self._mutex:  # never between a renewal's PUT and its new ETag
                self.storage.client.delete_object(Bucket=self.storage.bucket, Key=self.key, IfMatch=self.etag)
        except ClientError as exc:
            if _code(exc) not in _PRECONDITION | _NOT_FOUND | _CONFLICT:
                raise
            log.warning("lock %r was no longer ours at release (taken over after its lease)", self.name)


@contextlib.contextmanager
def _object_lock(storage: Any, name: str, timeout: float, lease: float) -> Iterator[Lock]:
    lock = _ObjectLock(storage, name, lease)
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not lock.try_acquire():
        if delay == 0.05:
            log.info("waiting for lock %r (held by another process)", name)
        if time.monotonic() >= deadline:
            raise LockBusy(f"lock {name!r} is held by another process (waited {timeout:.0f} s)")
        time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not security
        delay = min(delay * 2, 2.0)
    lock.start_heartbeat()
    try:
        yield lock
    finally:
        lock.release()


@contextlib.contextmanager
def hold(
    storage: Storage, name: str, *, timeout: float = DEFAULT_TIMEOUT, lease: float | None = None
) -> Iterator[Lock]:
    """Hold the named lock of this storage root for the ``with`` block.

    Raises:
        LockBusy: not acquired within ``timeout`` seconds (exit 7).
        ConfigError: an invalid name.
    """
    from pipelines.core.storage import LocalStorage, S3Storage

    key = lock_key(name)
    if isinstance(storage, LocalStorage):
        with _local_lock(str(storage.local_path(key)), name, timeout) as lock:
            yield lock
    elif isinstance(storage, S3Storage):
        if lease is None:
            try:
                lease = float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE)
            except ValueError:
                raise ConfigError(f"{LEASE_ENV} must be a number of seconds") from None
            if not 3 <= lease <= 3600:
                raise ConfigError(f"{LEASE_ENV} must be between 3 and 3600 seconds")
        with _object_lock(storage, name, timeout, lease) as lock:
            yield lock
    else:  # pragma: no cover - every adapter is one of the two
        raise ConfigError(f"no lock for storage {type(storage).__name__}")


def scores_partition(storage: Storage, model: Any, ds: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """The lock of one scoring lane's partition (``model``: a name, the champion's lane, or a
    :class:`~pipelines.core.catalog.Lane`): its plan pointer, publication and withdrawal take it."""
    from pipelines.core.catalog import as_lane
    from pipelines.core.partitions import ds_str

    lane = as_lane(model)
    shadow = f"-v{lane.shadow}" if lane.shadow is not None else ""
    return hold(storage, f"scores-{lane.model}{shadow}-{ds_str(ds)}", timeout=timeout)


def validated_partition(storage: Storage, dataset: str, ds: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """The lock of one dataset's validated partition: validation's writes take it (before any scores lock),
    so two validations of one day never interleave, whether or not a project reads the dataset yet."""
    from pipelines.core.partitions import ds_str

    return hold(storage, f"validated-{dataset}-{ds_str(ds)}", timeout=timeout)
