"""Keeps the upstream cache's replicas under its size limit, least recently used first.

A round walks the replicas (the local backend's own listing, so it sees what is on disk, across
every worker process), and when they hold more than the limit removes the least recently used
until they hold LOW_WATER of it. Before removing one it asks the upstream: a copy is removed only
when the upstream holds that object with the same ETag (or a newer one). A file the upstream does
not have (dropped into ROOT by another program, or an object deleted behind this server's back)
is kept: eviction must never be the loss of the only copy.

Recency is what this process saw (reads and writes); what it has not seen since it started ranks
by its Last-Modified. Rounds run every ``interval`` seconds, and at once when writes took the
estimated total over the limit.
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

LOW_WATER = 0.9
ACCESS_ENTRIES = 1 << 18
PAGE = 1000


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
        self._access: OrderedDict[tuple[str, str], float] = OrderedDict()
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
        if self.max_bytes is not None and self.estimate > self.max_bytes:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep going: the next round may find the disk or upstream back
                log.exception("cache eviction round failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def replicas(self) -> list[Replica]:
        local = self.cache.local
        found = []
        for bucket in await local.list_buckets():
            marker = ""
            while True:
                try:
                    page = await local.list_objects(bucket.name, "", "", marker, PAGE)
                except errors.NoSuchBucket:
                    break
                for info in page.objects:
                    if not info.is_folder:
                        used = self._access.get((bucket.name, info.key), info.last_modified)
                        found.append(Replica(bucket.name, info.key, info.size, info.etag, used))
                if not page.is_truncated or not page.next_marker:
                    break
                marker = page.next_marker
        return found

    async def round(self) -> None:
        """One pass: measure, and remove the least recently used replicas while over the limit.
        Worker processes sharing ROOT take turns: a round another one is running is skipped."""
        assert self.max_bytes is not None
        path = os.path.join(self.cache.local.meta.hidden, "eviction.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            await self._round(self.max_bytes)
        finally:
            os.close(fd)

    async def _round(self, max_bytes: int) -> None:
        held = await self.replicas()
        total = sum(r.size for r in held)
        self.estimate = total
        if total <= max_bytes:
            return
        target = int(max_bytes * LOW_WATER)
        for replica in sorted(held, key=lambda r: r.last_used):
            if total <= target:
                break
            if await self._evict(replica):
                self._access.pop((replica.bucket, replica.key), None)
                total -= replica.size
                self.evicted += 1
        self.estimate = total
        log.info("cache: %d bytes held after eviction (limit %d)", total, max_bytes)

    async def _evict(self, replica: Replica) -> bool:
        """Remove ``replica`` if that loses nothing; whether it is gone."""
        try:
            info: ObjectInfo | None = await self.cache.upstream.head_object(replica.bucket, replica.key)
        except (errors.NoSuchKey, errors.NoSuchBucket):
            info = None
        except errors.S3Error:
            return False  # the upstream cannot tell now: keep it for a later round
        # A copy the cache made can go (the upstream has it, a newer version, or deleted it behind
        # this server's back); a file another program put here only when the upstream holds the
        # same bytes.
        if (info is None or info.etag != replica.etag) and not await replicas.is_replica(
            self.cache.local, replica.bucket, replica.key
        ):
            log.warning("cache: keeping %s/%s: not a copy of what the upstream holds", replica.bucket, replica.key)
            return False
        await self.cache.drop_replica(replica.bucket, replica.key, replica.etag)
        return True
