"""Write locks on keys that hold across every process sharing ROOT (``--workers``, or several
servers on one folder): flock on a fixed set of lock files under ROOT/.s3serve/locks."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import zlib
from collections.abc import AsyncIterator


class KeyLocks:
    """Write locks that hold across processes sharing ROOT: ``flock`` on one of a fixed set of lock
    files chosen by a hash of the name. Two names may share a file; that only serializes them.

    Every acquisition opens its own descriptor, so flock also excludes other coroutines and threads
    of this process. A contended lock is polled (non-blocking flock + short sleeps) instead of
    blocking a worker thread: waiting threads could otherwise fill the executor that the holder
    needs to finish its own work.
    """

    SLOTS = 256

    def __init__(self, hidden: str) -> None:
        self.dir = os.path.join(hidden, "locks")

    def create_dir(self) -> None:
        # The lock files themselves are made on first use (O_CREAT): making all of them up front
        # cost a fresh ROOT ~20 ms of start-up.
        os.makedirs(self.dir, exist_ok=True)

    def _path(self, slot: int) -> str:
        return os.path.join(self.dir, f"{slot:03d}.lock")

    def slot(self, bucket: str, key: str) -> int:
        return zlib.crc32(f"{bucket}/{key}".encode("utf-8", "surrogateescape")) % self.SLOTS

    def try_lock(self, slot: int) -> int | None:
        """A held lock's descriptor (close it to release), or None when someone holds it."""
        fd = os.open(self._path(slot), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def acquire(self, slot: int) -> int:
        """Wait for the lock in this thread; only for threads that hold nothing while waiting and
        await nothing while holding (the write pool), so a holder always finishes."""
        fd = os.open(self._path(slot), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.asynccontextmanager
    async def hold(self, *slots: int) -> AsyncIterator[None]:
        fds: list[int] = []
        try:
            # One order for everyone, so two-key holders (rename) cannot deadlock.
            for slot in sorted(set(slots)):
                delay = 0.0005
                while (fd := self.try_lock(slot)) is None:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.02)
                fds.append(fd)
            yield
        finally:
            for fd in reversed(fds):
                os.close(fd)


class Turns:
    """One holder at a time of each name, among this process's coroutines: for work that awaits
    the network in between, which a flock of KeyLocks is not held across."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, int]] = {}  # the lock and how many want it

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock, wanted = self._held.get(name, (asyncio.Lock(), 0))
        self._held[name] = (lock, wanted + 1)
        try:
            async with lock:
                yield
        finally:
            lock, wanted = self._held[name]
            if wanted == 1:
                del self._held[name]
            else:
                self._held[name] = (lock, wanted - 1)
