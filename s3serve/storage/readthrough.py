"""The upstream cache's read side (CacheReads): a local replica where the upstream confirms it is
current, else a fetch (fills.Fill) that the read and every other read of that version meanwhile
are served from. Concurrent misses of one key are collapsed into one fetch. A HEAD fetches
nothing, but for an object with no bytes (an empty object, a folder marker), which a GET of
nothing keeps."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from .. import errors
from . import keys, replicas
from .base import Backend, ObjectInfo, ObjectReader, PartInfo
from .fills import Fill, RangeSource
from .spool import Spool

if TYPE_CHECKING:
    from .disk import DiskBackend
    from .eviction import Evictor

log = logging.getLogger("s3serve.cache")

# At most this many HEAD ?partNumber=N (one parallel round) before answering a miss: more would
# hold up every read of an object with many parts for the rare partNumber GET.
QUICK_PART_HEADS = 16

R = TypeVar("R")


class CacheReads:
    """CacheBackend's reads: a replica when the upstream confirms it, else a fetch (Fill)."""

    local: DiskBackend
    upstream: Backend
    evictor: Evictor
    revalidate_after: float
    _fills: dict[tuple[str, str], Fill]
    _fresh: OrderedDict[tuple[str, str], tuple[str, float]]  # confirmations (CacheBackend._confirm)

    if TYPE_CHECKING:

        def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...
        def _confirm(self, bucket: str, key: str, etag: str) -> None: ...
        def _is_fresh(self, bucket: str, key: str, etag: str) -> bool: ...
        def write_mark(self) -> int: ...
        def not_kept(self, bucket: str, key: str, reason: object) -> None: ...
        def unkeepable(self, bucket: str, key: str) -> bool: ...
        async def drop_stale(self, bucket: str, key: str) -> bool: ...
        async def _drop_local(self, bucket: str, key: str, only: ObjectInfo | None = None) -> bool: ...
        async def bucket_gone(self, name: str) -> None: ...
        async def _keep(
            self,
            bucket: str,
            key: str,
            spooled: Spool,
            info: ObjectInfo,
            tags: dict[str, str],
            since: int,
            *,
            fill: bool = False,
            patient: bool = False,
        ) -> None: ...

    async def _local_info(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            return await self.local.head_object(bucket, key)
        except errors.S3Error:
            return None  # no replica, or a key this disk cannot hold: the upstream answers

    async def in_buckets(self, request: Awaitable[R], *buckets: str) -> R:
        """The answer to ``request``, an upstream request naming ``buckets``: its NoSuchBucket (a
        bucket deleted on the upstream directly; for a copy, either) forgets the bucket here
        (bucket_gone, which asks which), or its folder, copies, kept parts and configuration
        would outlive it."""
        try:
            return await request
        except errors.NoSuchBucket:
            for gone in dict.fromkeys(buckets):
                await self.bucket_gone(gone)
            raise

    async def head_object(self, bucket: str, key: str) -> ObjectInfo:
        return await self.in_buckets(self._head(bucket, key), bucket)

    async def _head(self, bucket: str, key: str) -> ObjectInfo:
        local = await self._local_info(bucket, key)
        kept_foreign = False
        if local is not None:
            confirmed = await self._confirmed(bucket, key, local)
            if confirmed is not None:
                self.evictor.touch(bucket, key)
                return confirmed
            # A copy goes; a file another program put here stays, and no fetch may replace it.
            kept_foreign = not await self.drop_stale(bucket, key)
        info = await self.upstream.head_object(bucket, key)
        if not info.size and not kept_foreign and (bucket, key) not in self._fills and not self.unkeepable(bucket, key):
            # Clients that walk folders HEAD "dir/" and empty objects over and over and never GET
            # them: kept, they are answered here (within the revalidation window, or while the
            # upstream is away). A GET, not this HEAD's answer, makes the copy: S3s that predate
            # HeadObject's TagCount tell the tag count only on GET.
            self.spawn(self._keep_empty(bucket, key))
        return replace(info, parts=await self._parts(bucket, key, info, QUICK_PART_HEADS))

    async def _keep_empty(self, bucket: str, key: str) -> None:
        try:
            # Written in between, the object may have bytes now: they are fetched and kept as a
            # GET's would be (what this costs, once, a GET would have cost).
            reader = await self._fetch(bucket, key, fill=True)
        except errors.S3Error:
            return  # gone meanwhile, or the upstream is away: the next HEAD tries again
        reader.close()  # the fetch goes on without its reader, and is kept

    async def _confirmed(self, bucket: str, key: str, local: ObjectInfo) -> ObjectInfo | None:
        """The replica ``local`` as it is to be answered, if it is what the upstream holds now
        (asking it if need be); None if it is not."""
        if self._is_fresh(bucket, key, local.etag):
            return local
        try:
            info = await self.upstream.head_object(bucket, key)
        except (errors.NoSuchKey, errors.NoSuchBucket):
            await self.drop_stale(bucket, key)
            raise
        except errors.ServiceUnavailable:
            # An upstream outage: the copy confirmed last is the best answer there is, as HTTP
            # caches serve stale on error. Writes still fail, so nothing diverges.
            log.warning("cache: upstream unavailable, serving the local copy of %s/%s", bucket, key)
            return local
        if not _same_version(local, info):
            return None
        if info.tag_count != local.tag_count and (info.tag_count or getattr(self.upstream, "head_tag_counts", True)):
            # Tags changed on the upstream (they change neither ETag nor time): the copy answers
            # x-amz-tagging-count. No header on HEAD means no tags only from an upstream known
            # to send it (RemoteBackend.head_tag_counts): older S3s answer it on GET alone.
            retagged = await self._retagged(bucket, key, local)
            if retagged is None:
                return None
            local = retagged
        self._confirm(bucket, key, info.etag)
        return local

    async def _retagged(self, bucket: str, key: str, local: ObjectInfo) -> ObjectInfo | None:
        """The replica with the upstream's tags now (None when they cannot be had or kept)."""
        try:
            tags = await self.upstream.get_object_tagging(bucket, key)
            await self.local.put_object_tagging(bucket, key, tags)
        except errors.ServiceUnavailable:
            return local  # gone away since its HEAD: served as in any outage (above)
        except errors.S3Error:
            return None
        return replace(local, tag_count=len(tags))

    async def open_object(self, bucket: str, key: str) -> ObjectReader:
        return await self.in_buckets(self._open(bucket, key), bucket)

    async def _open(self, bucket: str, key: str) -> ObjectReader:
        try:
            reader: ObjectReader | None = await self.local.open_object(bucket, key)
        except errors.S3Error:
            reader = None  # no replica, or a key this disk cannot hold
        if reader is not None:
            try:
                current = await self._confirmed(bucket, key, reader.info)
            except BaseException:
                reader.close()
                raise
            if current is not None:
                self.evictor.touch(bucket, key)
                reader.info = current
                return reader
            reader.close()
            # A file another program put here (not a copy) may be the only one of its data: it
            # stays, and no fill may replace it; the upstream's object is only passed through.
            kept_foreign = not await self.drop_stale(bucket, key)
        else:
            kept_foreign = False
        # A key this disk cannot hold ('a//b', a segment over 255 bytes) can have no replica: a
        # fill would spool the whole object only to drop it, on every read.
        fillable = not kept_foreign and _holdable(key)
        fill = self._fills.get((bucket, key)) if fillable else None
        if fill is not None:
            info = await self._join(bucket, key, fill, in_flight=not fill.answered.done())
            if info is not None:
                return fill.reader(info, self._direct(bucket, key, info.etag))
        return await self._fetch(bucket, key, fill=fillable)

    async def _fetch(self, bucket: str, key: str, *, fill: bool) -> ObjectReader:
        """GET the object from the upstream: as a fetch into a replica that the caller reads
        from, or (``fill`` false: a replica must not be made) as the upstream's reader itself."""
        since = self.write_mark()
        new = Fill() if fill else None
        if new is not None:
            self._fills[(bucket, key)] = new  # readers arriving during the GET wait for its answer
        try:
            remote = await self.upstream.open_object(bucket, key)
            try:
                # partNumber GETs need the part sizes, which an S3 GET does not tell.
                remote.info = replace(remote.info, parts=await self._parts(bucket, key, remote.info, QUICK_PART_HEADS))
            except BaseException:
                remote.close()
                raise
        except BaseException as exc:
            if new is not None:
                self._end_fill(bucket, key, new)
                # Readers waiting on this GET fetch for themselves (never cancelled with it).
                new.answered.set_exception(exc if isinstance(exc, Exception) else errors.ServiceUnavailable())
            raise
        if new is None:
            return remote
        self._confirm(bucket, key, remote.info.etag)
        new.sized(remote.info.size)
        new.answered.set_result(remote.info)
        reader = new.reader(remote.info, self._direct(bucket, key, remote.info.etag))
        task = self.spawn(self._run_fill(bucket, key, new, remote, since))
        task.add_done_callback(lambda _: self._end_fill(bucket, key, new))
        return reader

    async def _join(self, bucket: str, key: str, fill: Fill, *, in_flight: bool) -> ObjectInfo | None:
        """The object a running fetch brings, if it is what a read arriving now must see: always
        when its GET was still unanswered (requests for one object at once are collapsed into
        one, as HTTP caches do), else when the upstream confirms it (or confirmed it within the
        revalidation window). None: fetch anew."""
        try:
            info = await asyncio.shield(fill.answered)
        except Exception:  # noqa: BLE001 - that GET's client got its error; this read asks again
            return None
        if fill.finished or (bucket, key) not in self._fills:
            return None
        if in_flight or self._is_fresh(bucket, key, info.etag):
            return info
        current = await self.upstream.head_object(bucket, key)
        if not _same_version(info, current) or fill.finished:
            return None
        self._confirm(bucket, key, info.etag)
        return info

    def _direct(self, bucket: str, key: str, etag: str) -> RangeSource:
        """Ranges of the version ``etag`` straight from the upstream, for readers a fetch cannot serve."""

        async def read(offset: int, length: int) -> AsyncIterator[bytes]:
            read_range = getattr(self.upstream, "read_range", None)
            if read_range is not None:
                async for chunk in read_range(bucket, key, etag, offset, length):
                    yield chunk
                return
            with await self.upstream.open_object(bucket, key) as reader:
                if reader.info.etag != etag:
                    raise errors.PreconditionFailed("The object changed upstream while it was being read.")
                async for chunk in reader.iter_range(offset, length):
                    yield chunk

        return read

    async def _run_fill(self, bucket: str, key: str, fill: Fill, remote: ObjectReader, since: int) -> None:
        with remote:
            direct = self._direct(bucket, key, remote.info.etag)
            spooling = asyncio.ensure_future(fill.fetch(self.local, remote, direct, md5=_is_md5(remote.info.etag)))
            spooling.add_done_callback(lambda _: fill.end())
            await self.publish_fill(bucket, key, remote.info, spooling, since)

    def _end_fill(self, bucket: str, key: str, fill: Fill) -> None:
        if self._fills.get((bucket, key)) is fill:
            del self._fills[(bucket, key)]
        fill.finish()

    async def publish_fill(
        self, bucket: str, key: str, info: ObjectInfo, fill: asyncio.Future[Spool], since: int
    ) -> None:
        """Keep a fill's bytes as the replica if they are the object ``info`` describes; ``since``:
        the write_mark() taken before its upstream GET."""
        try:
            spooled = await fill
        except Exception as exc:  # noqa: BLE001 - the client was served; the replica is optional
            self.not_kept(bucket, key, exc)
            return
        if spooled.size != info.size or (_is_md5(info.etag) and spooled.etag != info.etag):
            # Not what the upstream described (changed mid-way, or an ETag that is not an MD5,
            # as with SSE-KMS): serve it, keep nothing.
            spooled.discard()
            return
        try:
            tags = await self.upstream.get_object_tagging(bucket, key) if info.tag_count else {}
            parts = await self._parts(bucket, key, info)
        except errors.S3Error as exc:
            spooled.discard()
            self.not_kept(bucket, key, exc.code)
            return
        except BaseException:
            spooled.discard()
            raise
        if self.revalidate_after > 0:
            self._fresh.pop((bucket, key), None)  # the GET's, until _recheck_fill asks again
        await self._keep(bucket, key, spooled, replace(info, parts=parts), tags, since, fill=True, patient=True)
        if self.revalidate_after > 0:
            await self._recheck_fill(bucket, key)

    async def _recheck_fill(self, bucket: str, key: str) -> None:
        """Confirm the copy a fill published by asking the upstream again. A write through another
        worker process sharing ROOT while the fill ran (a copy onto the key with new metadata, a
        delete, a rename) dropped the copy here before this one was published, which would then be
        served as current for the revalidation window (a write through this process, or one that
        left a newer copy, keeps it from being published: _keep). Only while copies are trusted
        without asking: otherwise every read asks anyway."""
        copy = replicas.replica_at(self.local, bucket, key)
        if copy is None:
            return
        self._fresh.pop((bucket, key), None)  # a reader's, from before the copy was published: asked
        try:
            if await self._confirmed(bucket, key, copy) is None:
                await self._drop_local(bucket, key, copy)
        except errors.S3Error:
            pass  # gone upstream (the copy with it), or not answered: left unconfirmed

    async def _parts(
        self, bucket: str, key: str, info: ObjectInfo, max_heads: int | None = None
    ) -> list[PartInfo] | None:
        """Part sizes of a multipart object, so partNumber GETs can be answered here. An upstream
        that does not list them is asked part by part; ``max_heads`` bounds that on the way to a
        client (the replica's fill, in the background, asks for all)."""
        if "-" not in info.etag or info.parts:
            return info.parts
        object_parts: Callable[[str, str, str, int | None], object] | None = getattr(self.upstream, "object_parts", None)
        if object_parts is not None:
            found = await object_parts(bucket, key, info.etag, max_heads)  # type: ignore[misc]
            # Asked after the GET or HEAD: parts that do not add up are of another version.
            if isinstance(found, list) and sum(part.size for part in found) == info.size:
                return found
            return None
        return info.parts


def _same_version(ours: ObjectInfo, upstream: ObjectInfo) -> bool:
    # Same bytes with new metadata (a copy onto itself on the upstream) keep their ETag, and
    # within the same second their Last-Modified too: the metadata itself must match. A replica
    # keeps the upstream's time as nanoseconds (within a microsecond of the float it was given).
    return (
        ours.etag == upstream.etag
        and ours.size == upstream.size
        and abs(ours.last_modified - upstream.last_modified) <= 1e-5
        and ours.headers == upstream.headers
        and ours.user_meta == upstream.user_meta
        and ours.storage_class == upstream.storage_class
        and ours.encryption == upstream.encryption
    )


def _is_md5(etag: str) -> bool:
    return len(etag) == 32 and "-" not in etag


def _holdable(key: str) -> bool:
    try:
        return keys.lookup_key(key) is not None
    except errors.S3Error:
        return False
