"""Keeps the upstream cache's replicas under its size limit, least recently used first.

A round walks the replicas (the local backend's own listing, so it sees what is on disk, across
every worker process), and when they hold more than the limit removes the least recently used
until they hold LOW_WATER of it. Before removing one it asks the upstream: a copy is removed only
when the upstream holds that object with the same ETag (or a newer one). A file the upstream does
not have (dropped into ROOT by another program, or an object deleted behind this server's back)
is kept: eviction must never be the loss of the only copy.

Recency is what this process saw (reads and writes); what it has not seen since it started ranks
by its Last-Modified. Rounds run every ``interval`` seconds, and at once when writes took the
estimated total over the limit, including writes made while a round ran here or in another
worker process (which a round's scan may have missed). While the upstream cannot be reached a
round stops at its first check: nothing can be removed then, and one log line says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import errors
from . import replicas
from .base import ObjectInfo

if TYPE_CHECKING:
    from .cache import CacheBackend

log = logging.getLogger("s3serve.cache")

# Replicas confirmed with the upstream (one HEAD each) at once in an eviction round.
EVICT_BATCH = 16
LOW_WATER = 0.9
ACCESS_ENTRIES = 1 << 18
PAGE = 1000
# How soon a round skipped because another worker held the lock is tried again, when this
# process's writes took it over the limit (the other round's scan may predate them).
LOCK_RETRY = 0.2


@dataclass
class Replica:
    bucket: str
    key: str
    size: int
    etag: str
    last_used: float


class Evictor:
    def __init__(self, cache: CacheBackend, max_bytes: int | None, interval: float) -> None:
        self.cache = cache
        self.max_bytes = max_bytes
        self.interval = interval
        self.estimate = 0  # bytes held, as of the last round plus what was written since
        self.evicted = 0  # replicas removed since start (for logs and tests)
        self._added_since_scan = 0  # bytes written since the running round listed the disk
        self._access: OrderedDict[tuple[str, str], float] = OrderedDict()
        # Files found not to be copies, warned about once each (rounds run every interval).
        self._kept: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.max_bytes is not None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def touch(self, bucket: str, key: str) -> None:
        access = self._access
        access[(bucket, key)] = time.time()
        access.move_to_end((bucket, key))
        if len(access) > ACCESS_ENTRIES:
            access.popitem(last=False)

    def added(self, bucket: str, key: str, size: int) -> None:
        self.touch(bucket, key)
        self.estimate += size
        self._added_since_scan += size
        if self._over():
            self._wake.set()

    def _over(self) -> bool:
        return self.max_bytes is not None and self.estimate > self.max_bytes

    async def _run(self) -> None:
        while True:
            # Cleared before the round, not after: a write that lands while it runs (and that
            # its scan may have missed) must wake the next one, not wait for the interval.
            self._wake.clear()
            wait = self.interval
            try:
                if not await self.round() and self._over():
                    wait = min(wait, LOCK_RETRY)  # another worker's round; ours once it is done
            except asyncio.CancelledError:
                raise
            except Exception:  # keep going: the next round may find the disk or upstream back
                log.exception("cache eviction round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def replicas(self) -> list[Replica]:
        local = self.cache.local
        found = []
        for bucket in await local.list_buckets():
            async for info in replicas.objects_of(local, bucket.name, PAGE):
                if not info.is_folder:
                    used = self._access.get((bucket.name, info.key), info.last_modified)
                    found.append(Replica(bucket.name, info.key, info.size, info.etag, used))
        return found

    async def round(self) -> bool:
        """One pass: measure, and remove the least recently used replicas while over the limit.
        Worker processes sharing ROOT take turns: a round another one is running is skipped
        (False)."""
        assert self.max_bytes is not None
        path = os.path.join(self.cache.local.meta.hidden, "eviction.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            await self._round(self.max_bytes)
            return True
        finally:
            os.close(fd)

    async def _round(self, max_bytes: int) -> None:
        self._added_since_scan = 0
        held = await self.replicas()
        total = sum(r.size for r in held)
        # What was written while this round ran counts too (perhaps twice, if the scan saw it:
        # that costs at most one more round, where missing it let the cache outgrow its limit).
        self.estimate = total + self._added_since_scan
        if total <= max_bytes:
            return
        target = int(max_bytes * LOW_WATER)
        candidates = iter(sorted(held, key=lambda r: r.last_used))
        size = 1  # one first: an unreachable upstream stops the round after one try
        try:
            while total > target:
                # The next least recently used, as many as bring the total to the target (up to
                # ``size``, doubling to EVICT_BATCH), confirmed with the upstream at once: one
                # HEAD after another let fills outrun the round under load.
                batch: list[Replica] = []
                need = total - target
                for replica in candidates:
                    batch.append(replica)
                    need -= replica.size
                    if need <= 0 or len(batch) == size:
                        break
                size = min(size * 2, EVICT_BATCH)
                if not batch:
                    break
                results = await asyncio.gather(*(self._evict(r) for r in batch), return_exceptions=True)
                for replica, result in zip(batch, results, strict=True):
                    if result is True:
                        self._access.pop((replica.bucket, replica.key), None)
                        total -= replica.size
                        self.evicted += 1
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
        except errors.ServiceUnavailable:
            # The upstream cannot be reached (remote_http logged why): every other check would
            # fail alike, and nothing may be removed unconfirmed. The next round tries again.
            log.warning("cache: eviction paused, the upstream cannot confirm copies: %d bytes held (limit %d)", total, max_bytes)
        else:
            log.info("cache: %d bytes held after eviction (limit %d)", total, max_bytes)
        self.estimate = total + self._added_since_scan

    async def _evict(self, replica: Replica) -> bool:
        """Remove ``replica`` if that loses nothing; whether it is gone. ServiceUnavailable when
        the upstream cannot be asked."""
        try:
            info: ObjectInfo | None = await self.cache.upstream.head_object(replica.bucket, replica.key)
        except (errors.NoSuchKey, errors.NoSuchBucket):
            info = None
        except errors.ServiceUnavailable:
            raise
        except errors.S3Error:
            return False  # refused for this object (a policy, say): keep it, go on with the others
        # A copy the cache made can go (the upstream has it, a newer version, or deleted it behind
        # this server's back); a file another program put here only when the upstream holds the
        # same bytes.
        if (info is None or info.etag != replica.etag) and not await replicas.is_replica(
            self.cache.local, replica.bucket, replica.key
        ):
            if await self._unchanged(replica):  # not one replaced or removed since the scan
                self._keep_warning(replica)
            return False
        await self.cache.drop_replica(replica.bucket, replica.key, replica.etag)
        return True

    async def _unchanged(self, replica: Replica) -> bool:
        try:
            return (await self.cache.local.head_object(replica.bucket, replica.key)).etag == replica.etag
        except errors.S3Error:
            return False

    def _keep_warning(self, replica: Replica) -> None:
        """Say once (per file and ETag) that a file is kept: a round every interval would repeat it."""
        seen = (replica.bucket, replica.key, replica.etag)
        if seen in self._kept:
            return
        self._kept[seen] = None
        if len(self._kept) > ACCESS_ENTRIES:
            self._kept.popitem(last=False)
        log.warning("cache: keeping %s/%s: not a copy of what the upstream holds", replica.bucket, replica.key)
