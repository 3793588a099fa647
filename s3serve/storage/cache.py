"""CacheBackend: a local DiskBackend in front of an upstream Backend (a real S3 through
remote.RemoteBackend, or any Backend: tests use a second local directory).

- **The upstream is the truth.** Buckets, listings, tags, multipart uploads and every write go to
  it; the local disk keeps copies (replicas) of objects, with the upstream's ETag, time and
  metadata, so a GET answered here is the GET the upstream would give.
- **Write-through.** An upload is spooled and verified here first, then sent to the upstream;
  only when the upstream acknowledged it does it become the local replica, and only then does
  the client get its answer. A failed upstream write leaves nothing behind; one that may have
  succeeded all the same (its answer lost, a 5xx) takes the old replica with it, which would
  otherwise be served as current.
- **Read-through** (readthrough.py). A GET of an object without a current replica fetches the
  whole object into a new replica, and its client, and every other reader of that version
  meanwhile, reads from the growing file: one upstream GET per cold object, whatever ranges its
  readers ask for. A replica is current when the upstream confirmed its ETag within
  ``revalidate_after`` seconds; by default every read asks (one HEAD), so a change made directly
  on the upstream is never missed.
- **Eviction** (eviction.py) keeps the replicas, and the parts kept of multipart uploads in
  progress (cacheparts.py), under a size limit, least recently used replicas first: each is
  published only into room reserved for it. Files another program put into ROOT are neither
  counted nor removed.

Bucket configuration (CORS, policy, ...) is this server's own: it is enforced here, so it is
kept here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import errors
from . import keys, replicas, ssec
from .base import (
    Backend,
    Body,
    ListPage,
    ObjectInfo,
    Precondition,
    T,
    WriteMeta,
)
from .cachebuckets import CacheBuckets
from .cacheparts import Arriving, PartStore
from .disk import DiskBackend
from .eviction import Evictor
from .fills import Fill
from .locks import Turns

log = logging.getLogger("s3serve.cache")

# How many confirmations of replicas (key -> ETag, time) are remembered per process.
FRESH_ENTRIES = 65536
# How many keys that could not be kept are remembered, so that each is logged once: a key this
# disk cannot hold ("a/b" under a file "a") fails alike on every read.
UNKEPT_ENTRIES = 4096

Key = tuple[str, str]


def claim_root(root: Path, upstream: str) -> None:
    """Mark ROOT as the cache of ``upstream``, or refuse it (ValueError).

    A cache removes a copy when the upstream no longer has the object: run over folders that
    hold the only copy of their data (ROOT served before without --upstream, or the cache of
    another endpoint) it would delete them, so such a ROOT is refused."""
    marker = Path(root) / keys.HIDDEN_DIR / "cache.json"
    try:
        claimed = json.loads(marker.read_text()).get("upstream")
    except FileNotFoundError:
        claimed = None
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{marker}: unreadable ({exc})") from None
    if claimed == upstream:
        return
    if claimed is not None:
        raise ValueError(f"{root} is the cache of {claimed}, not of {upstream}: use another folder")
    buckets = [p.name for p in Path(root).iterdir() if p.is_dir() and keys.is_bucket_folder_name(p.name)]
    if buckets:
        raise ValueError(
            f"{root} already holds buckets ({', '.join(sorted(buckets)[:3])}...) that are not copies of "
            f"{upstream}; a cache would delete what the upstream lacks: use an empty folder"
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"upstream": upstream}) + "\n")
    tmp.replace(marker)


class CacheBackend(CacheBuckets, Backend):
    upstream_encryption = True
    def __init__(
        self,
        local: DiskBackend,
        upstream: Backend,
        *,
        max_bytes: int | None = None,
        revalidate_after: float = 0.0,
        evict_interval: float = 60.0,
    ) -> None:
        self.local = local
        self.upstream = upstream
        self.revalidate_after = revalidate_after
        self.evictor = Evictor(self, max_bytes, evict_interval)
        self.parts = PartStore(local.meta.hidden)
        self._part_keeps: dict[tuple[str, str], set[asyncio.Task[None]]] = {}
        self._arriving: dict[tuple[str, str], Arriving] = {}
        self._fresh: OrderedDict[Key, tuple[str, float]] = OrderedDict()
        self._fills: dict[Key, Fill] = {}  # the objects being fetched into replicas
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeps: asyncio.Task[None] | None = None  # of the kept multipart parts (cacheparts.py)
        # Writes through this cache, numbered (see _wrote): a copy fetched before a key's latest
        # write must not be published over what that write left, nor after a delete.
        self._writes = 0
        self._written: OrderedDict[Key, int] = OrderedDict()
        self._forgotten = 0  # the newest number dropped from _written
        self._unkept: OrderedDict[Key, None] = OrderedDict()  # logged as not kept (not_kept)
        self._forgetting: dict[str, asyncio.Task[None]] = {}  # buckets being forgotten (bucket_gone)
        self._bucket_turns = Turns()

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.local.start()
        await self.upstream.start()
        await self.evictor.start()
        await self.sweep_parts()
        self._sweeps = asyncio.create_task(self.sweep_parts_every_gc_interval())

    async def stop(self) -> None:
        await self.evictor.stop()
        if self._sweeps is not None:
            self._sweeps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeps
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.upstream.stop()
        await self.local.stop()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- freshness ----------------------------------------------------------------------------
    def _confirm(self, bucket: str, key: str, etag: str) -> None:
        fresh = self._fresh
        fresh[(bucket, key)] = (etag, time.monotonic())
        fresh.move_to_end((bucket, key))
        while len(fresh) > FRESH_ENTRIES:
            fresh.popitem(last=False)

    def _is_fresh(self, bucket: str, key: str, etag: str) -> bool:
        if self.revalidate_after <= 0:
            return False
        seen = self._fresh.get((bucket, key))
        return seen is not None and seen[0] == etag and time.monotonic() - seen[1] < self.revalidate_after

    def write_mark(self) -> int:
        """The number of the latest write through this cache: taken before a fill's upstream GET."""
        return self._writes

    def _wrote(self, bucket: str, key: str) -> int:
        """Record a write of ``key`` (called once the upstream answered, or failed: it may have
        taken it); returns its number."""
        self._writes += 1
        # Readers from now on must not join a fetch of what the key held before this write.
        self._fills.pop((bucket, key), None)
        written = self._written
        written[(bucket, key)] = self._writes
        written.move_to_end((bucket, key))
        while len(written) > FRESH_ENTRIES:
            self._forgotten = max(self._forgotten, written.popitem(last=False)[1])
        return self._writes

    def _overtaken(self, bucket: str, key: str, since: int) -> bool:
        """Whether ``key`` was written through this cache after write number ``since``."""
        return self._written.get((bucket, key), self._forgotten) > since

    def not_kept(self, bucket: str, key: str, reason: object) -> None:
        """Log that the copy of ``key`` could not be kept: once per key (until one is kept), not on
        every read of a key that fails alike each time."""
        unkept = self._unkept
        if (bucket, key) in unkept:
            unkept.move_to_end((bucket, key))
            log.debug("not cached: %s/%s: %s", bucket, key, reason)
            return
        unkept[(bucket, key)] = None
        while len(unkept) > UNKEPT_ENTRIES:
            unkept.popitem(last=False)
        log.warning("not cached: %s/%s: %s (said once for this key)", bucket, key, reason)

    def unkeepable(self, bucket: str, key: str) -> bool:
        """Whether the last copy of ``key`` could not be kept (see not_kept)."""
        return (bucket, key) in self._unkept

    async def _write(
        self,
        bucket: str,
        keys: Sequence[str],
        write: Awaitable[T],
        *,
        then_read: bool = False,
        source: str = "",
    ) -> tuple[T, int]:
        """Await the upstream write ``write`` of ``keys`` and record it (_wrote) whatever comes of
        it; its result, and the write's number. A failure that leaves unsaid whether the upstream
        made the write (a lost answer, a 5xx, this request cancelled mid-way) takes the copies of
        ``keys`` here with it before it is raised: one of the version before, confirmed within
        the revalidation window, would be served as current. A refusal (4xx, or 501: not done
        there) changed nothing, unless ``then_read``: a write that asks the upstream again once
        it is made (a copy, a rename or a Complete describing what it made) may fail after it
        was, so any failure takes the copies. ``source``: a copy's source bucket, which its
        NoSuchBucket may be about (bucket_gone)."""
        try:
            result = await write
        except BaseException as exc:
            for key in keys:
                self._wrote(bucket, key)
            if isinstance(exc, errors.NoSuchBucket):
                for gone in {bucket, source or bucket}:  # either, for a copy (bucket_gone asks which)
                    await self.bucket_gone(gone)
            refused = isinstance(exc, errors.S3Error) and (exc.status < 500 or exc.status == 501)
            if then_read or not refused:
                for key in keys:
                    # A file another program put here stays (drop_stale), but is asked about anew.
                    self._fresh.pop((bucket, key), None)
                    await asyncio.shield(self.drop_stale(bucket, key))
            raise
        return result, max(self._wrote(bucket, key) for key in keys)

    async def drop_stale(self, bucket: str, key: str) -> bool:
        """The upstream no longer has ``key``: remove the copy here, unless it is not a copy but
        a file another program put into ROOT, which may be the only one of its data."""
        self._fresh.pop((bucket, key), None)
        copy = replicas.replica_at(self.local, bucket, key)
        if copy is None:
            return False
        await self._drop_local(bucket, key, copy)
        return True

    async def _drop_local(self, bucket: str, key: str, only: ObjectInfo | None = None) -> bool:
        """Forget the local object at ``key`` (stale, or the upstream changed it): the next read
        fetches. ``only``: if it still is that replica. Whether a replica went; its bytes are
        taken off the size limit's count (a file another program put there never was on it)."""
        self._fresh.pop((bucket, key), None)
        copy = only if only is not None else replicas.replica_at(self.local, bucket, key)
        removed: list[ObjectInfo | None] = []

        def check(current: ObjectInfo | None) -> None:
            # Under the key's lock: what goes is known exactly, whoever wrote it meanwhile.
            if only is not None and (current is None or not replicas.same_file(current, only)):
                raise errors.PreconditionFailed()  # written over since it was found: it stays
            removed.append(current)

        try:
            await self.local.delete_object(bucket, key, None if copy is None else check)
        except errors.ConditionalRequestConflict:
            # A file another program put there this instant (no record yet): the key was
            # written or deleted upstream, so it goes as before, not counted.
            if only is None:
                with contextlib.suppress(errors.S3Error):
                    await self.local.delete_object(bucket, key)
            return False
        except errors.S3Error:
            return False
        gone = removed[0] if removed else None
        if copy is None or gone is None or not replicas.same_file(gone, copy):
            return False
        self.evictor.credit(copy.size)
        return True

    async def drop_replica(self, bucket: str, key: str, etag: str) -> bool:
        """Evict the replica at ``key`` if it still is the one with ``etag``; whether it went."""
        copy = replicas.replica_at(self.local, bucket, key)
        return copy is not None and copy.etag == etag and await self._drop_local(bucket, key, copy)

    # -- objects ------------------------------------------------------------------------------
    async def put_object(
        self, bucket: str, key: str, body: Body, meta: WriteMeta, precondition: Precondition | None = None
    ) -> ObjectInfo:
        spooled = await replicas.spool(self.local, body)
        try:
            info, since = await self._write(
                bucket, [key], self.upstream.put_object(bucket, key, spooled.body(), meta, precondition)
            )
        except BaseException:
            spooled.discard()
            raise
        info = replace(info, size=spooled.size, checksums=dict(spooled.checksums))
        try:
            # What the upstream stored: its Last-Modified (a PUT's answer has none) and the
            # checksums it adds on its own (S3's default CRC64NVME), for the replica to answer alike.
            with ssec.reading_written():
                stored = await self.upstream.head_object(bucket, key)
        except errors.S3Error:
            stored = info
        except BaseException:
            spooled.discard()
            raise
        if stored.etag != info.etag or stored.size != info.size:
            spooled.discard()  # overwritten meanwhile: nothing here to keep
            await self._drop_local(bucket, key)
            return info
        tags = dict(meta.tags or {})
        await self._keep(bucket, key, spooled, replace(stored, tag_count=len(tags)), tags, since)
        return info

    async def _keep(
        self,
        bucket: str,
        key: str,
        spooled: replicas.Spool,
        info: ObjectInfo,
        tags: dict[str, str],
        since: int,
        *,
        fill: bool = False,
        patient: bool = False,
    ) -> None:
        """Make what the upstream acknowledged (or, ``fill``, what a read fetched) the replica;
        when that fails here, the old replica must not stay, or it would be served as current.
        Not when the key was written after write ``since``, through this process or (seen on
        the disk) another: a fill that began before a PUT or DELETE, or a PUT overtaken by
        another, would put back an older version (served as current for the revalidation
        window). Only into room the size limit leaves (Evictor.admit; ``patient``: worth
        waiting for, as a fill's or a completed upload's, whose clients are not waiting)."""
        if self._overtaken(bucket, key, since):
            spooled.discard()
            return
        if not await self.evictor.admit(info.size, patient=patient):
            spooled.discard()
            log.debug("not cached: %s/%s: no room under the cache's size", bucket, key)
            if not fill and not self._overtaken(bucket, key, since):
                await self._drop_local(bucket, key)  # the version this write replaced
            return
        # Counted as held unless it is known not to be: a publish cancelled after its rename left
        # the file in place, and an estimate short of the disk would let the cache outgrow its
        # limit (one too high only costs a round, which counts the disk again).
        kept = True
        replaced = 0
        try:
            if self._overtaken(bucket, key, since):  # written while it waited for room
                kept = False
                spooled.discard()
                return
            try:
                await self._local_bucket(bucket)
            except BaseException:
                spooled.discard()  # publish_replica, which consumes it, is not reached
                raise
            superseded = replicas.not_superseded(info, optional=fill)
            old = replicas.replica_at(self.local, bucket, key)

            def check(current: ObjectInfo | None) -> None:
                # Under the key's lock: the copy this one takes the place of gives its bytes
                # back to the count (if it is the one found above: not another program's file).
                nonlocal replaced
                superseded(current)
                if old is not None and current is not None and replicas.same_file(current, old):
                    replaced = old.size

            await replicas.publish_replica(self.local, bucket, key, spooled, info, tags, check)
        except replicas.Superseded:
            kept = False
            return  # a newer copy is there, put by another worker process: it stays
        except (errors.S3Error, OSError) as exc:
            kept = False
            self.not_kept(bucket, key, exc)
            await self._drop_local(bucket, key)
            return
        finally:
            self.evictor.settle(bucket, key, info.size, kept=kept, replaced=replaced)
        self._unkept.pop((bucket, key), None)
        if self._overtaken(bucket, key, since):  # written while this one was being published
            await self._drop_local(bucket, key)
            return
        if not (fill and self.revalidate_after > 0):  # a fill's copy: CacheReads._recheck_fill
            self._confirm(bucket, key, info.etag)

    async def delete_object(self, bucket: str, key: str, precondition: Precondition | None = None) -> None:
        await self._write(bucket, [key], self.upstream.delete_object(bucket, key, precondition))
        await self._drop_local(bucket, key)

    async def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        meta: WriteMeta | None,
        src_precondition: Precondition | None = None,
        precondition: Precondition | None = None,
    ) -> ObjectInfo:
        info, _ = await self._write(
            dst_bucket,
            [dst_key],
            self.upstream.copy_object(src_bucket, src_key, dst_bucket, dst_key, meta, src_precondition, precondition),
            then_read=True,
            source=src_bucket,
        )
        await self._drop_local(dst_bucket, dst_key)  # the next read fetches the copy
        return info

    async def rename_object(
        self,
        bucket: str,
        src_key: str,
        dst_key: str,
        src_precondition: Precondition | None = None,
        precondition: Precondition | None = None,
        client_token: str | None = None,
    ) -> ObjectInfo:
        info, _ = await self._write(
            bucket,
            [src_key, dst_key],
            self.upstream.rename_object(bucket, src_key, dst_key, src_precondition, precondition, client_token),
            then_read=True,
        )
        await self._drop_local(bucket, src_key)
        await self._drop_local(bucket, dst_key)
        return info

    async def list_objects(
        self, bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int
    ) -> ListPage:
        listing = self.upstream.list_objects(bucket, prefix, delimiter, start_after, max_keys)
        return await self.in_buckets(listing, bucket)

    # -- tagging ------------------------------------------------------------------------------
    async def get_object_tagging(self, bucket: str, key: str) -> dict[str, str]:
        return await self.in_buckets(self.upstream.get_object_tagging(bucket, key), bucket)

    async def put_object_tagging(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        await self._write(bucket, [key], self.upstream.put_object_tagging(bucket, key, tags))
        await self._retag_local(bucket, key, tags)

    async def delete_object_tagging(self, bucket: str, key: str) -> None:
        # The upstream's own DeleteObjectTagging, not a PutObjectTagging of no tags: some S3s
        # (moto) fail that with a 500.
        await self._write(bucket, [key], self.upstream.delete_object_tagging(bucket, key))
        await self._retag_local(bucket, key, {})

    async def _retag_local(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        try:
            # The replica answers GET's x-amz-tagging-count.
            await self.local.put_object_tagging(bucket, key, tags)
        except errors.NoSuchKey:
            pass
        except errors.S3Error:
            await self._drop_local(bucket, key)
