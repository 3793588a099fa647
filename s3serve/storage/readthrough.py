"""Read-through: an upstream object streamed to the client and into a new local replica at once
(a tee), and the upstream's bytes as a Body for a replica fetched in the background."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from . import replicas
from .base import ObjectReader

if TYPE_CHECKING:
    from .cache import CacheBackend

# Chunks in flight between the upstream stream and the replica being written.
TEE_DEPTH = 4


class _QueueBody:
    """The replica's side of a tee: the chunks the client is being sent, in order; None ends."""

    digests_wanted: frozenset[str] = frozenset()
    declared_checksum: str | None = None

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(TEE_DEPTH)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        return {}


class FillingReader(ObjectReader):
    """An object read from the upstream while it becomes a local replica."""

    def __init__(self, cache: CacheBackend, bucket: str, key: str, remote: ObjectReader, since: int) -> None:
        self.info = remote.info
        self._since = since  # the cache's write_mark() before the upstream GET
        self._cache = cache
        self._bucket = bucket
        self._key = key
        self._remote = remote
        self._fill: asyncio.Task[replicas.Spool] | None = None
        self._fed = False  # the whole object went to the replica's writer

    def fileno(self) -> int | None:
        return None

    async def iter_range(self, offset: int, length: int) -> AsyncIterator[bytes]:
        if offset or length != self.info.size or self._fill is not None:
            # Part of it: the client gets that part, the replica comes in the background.
            self._cache.fill_later(self._bucket, self._key)
            async for chunk in self._remote.iter_range(offset, length):
                yield chunk
            return
        body = _QueueBody()
        self._fill = asyncio.ensure_future(replicas.spool(self._cache.local, body))
        # A writer that failed (a full disk) while the client left is never awaited: take its
        # exception here, or asyncio logs it as never retrieved.
        self._fill.add_done_callback(lambda task: task.cancelled() or task.exception())
        async for chunk in self._remote.iter_range(0, length):
            await self._feed(body, chunk)
            yield chunk
        await self._feed(body, None)
        self._fed = True
        # The client has its bytes; the replica is checked and published without holding it up.
        self._cache.spawn(self._cache.publish_fill(self._bucket, self._key, self.info, self._fill, self._since))

    async def _feed(self, body: _QueueBody, chunk: bytes | None) -> None:
        """Hand a chunk to the replica's writer, unless it has stopped (a full disk, say): the
        client's download never waits on a writer that will not take it."""
        fill = self._fill
        assert fill is not None
        if fill.done():
            return
        put = asyncio.ensure_future(body.queue.put(chunk))
        try:
            await asyncio.wait((put, fill), return_when=asyncio.FIRST_COMPLETED)
        finally:
            put.cancel()

    def close(self) -> None:
        self._remote.close()
        if self._fill is not None and not self._fed:
            self._fill.cancel()  # the client left mid-way: spool() removes its temp file


class StreamBody:
    """An upstream object's bytes as a Body for the replica's spool."""

    digests_wanted: frozenset[str] = frozenset()
    declared_checksum: str | None = None

    def __init__(self, remote: ObjectReader) -> None:
        self._remote = remote

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._remote.iter_range(0, self._remote.info.size).__aiter__()

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        return {}
