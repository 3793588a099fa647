"""A fetch of an upstream object into the spool file that becomes its replica (Fill), and the
readers served from that file while it grows (TailReader).

The object is fetched in segments, up to FETCHERS at once: the GET that found the miss brings
the first (and, if nobody else has taken them yet, the following ones), ranged GETs pinned to its
ETag the others. Segments that readers are waiting for are fetched first. So a cold object costs
the upstream its bytes once, whoever reads it and whatever ranges they ask for, and arrives as
fast as parallel ranged GETs would bring it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .. import errors
from .base import ObjectInfo, ObjectReader
from .faults import refusals
from .gc import create_locked
from .spool import Spool

if TYPE_CHECKING:
    from .disk import DiskBackend

SEGMENT = 8 << 20
FETCHERS = 8  # GETs in flight per fetch
# Received bytes are written (in a worker thread) and offered to readers in batches of this size.
BATCH = 256 * 1024
# Readers read the file in pieces of this size, on the event loop: the bytes were just written,
# so they come from the page cache, and a thread hop would cost more than the copy.
READ_PIECE = 256 * 1024

# The upstream's bytes [offset, offset + length) of the version being read.
RangeSource = Callable[[int, int], AsyncIterator[bytes]]


class Fill:
    """One object on its way from the upstream into a spool file."""

    def __init__(self) -> None:
        self.sent = time.monotonic()  # taken before the first GET went out
        # The object the first GET answered (parts included), or that GET's error.
        self.answered: asyncio.Future[ObjectInfo] = asyncio.get_running_loop().create_future()
        self.answered.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
        self.ended = False  # no more bytes will come (the whole object, or a failure)
        self.finished = False  # the fetch is over: its file is published or gone
        self._size = 0
        self._filled: list[int] = []  # per segment: bytes in the file from its start
        self._claimed = bytearray()  # per segment: a GET is bringing it
        self._wanted: set[int] = set()  # segments readers wait for and no GET brings yet
        self._cursor = 0  # segments below are all claimed
        self._fd = -1  # read-only, of the readers (no flock)
        self._readers = 0
        self._changed: asyncio.Future[None] | None = None
        self._writes: set[asyncio.Future[None]] = set()

    # -- fetching -------------------------------------------------------------------------------
    def sized(self, size: int) -> None:
        """The first GET answered: the object has ``size`` bytes (readers may now say what they want)."""
        count = -(-size // SEGMENT)
        self._size, self._filled, self._claimed = size, [0] * count, bytearray(count)

    async def fetch(self, disk: DiskBackend, first: ObjectReader, direct: RangeSource, *, md5: bool) -> Spool:
        """Bring the whole object ``first`` describes into a temp file (after ``sized``)."""
        size, count = self._size, len(self._claimed)
        path = disk.writer.temp_name("spool")
        lock_fd = create_locked(path)
        try:
            with refusals():
                self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                os.ftruncate(lock_fd, size)
                if count:
                    self._claimed[0] = 1
                    fetchers = [self._first(lock_fd, first, direct)]
                    fetchers += [self._fetch_segments(lock_fd, direct) for _ in range(min(FETCHERS, count) - 1)]
                    await _all(fetchers)
                digest = await asyncio.to_thread(_md5, lock_fd, size) if md5 else b""
        except BaseException:
            if self._writes:  # a batch still being written into the file goes before the file
                await asyncio.wait(list(self._writes))
            Spool(path, lock_fd, 0, b"").discard()
            raise
        return Spool(path, lock_fd, size, digest)

    async def _first(self, fd: int, first: ObjectReader, direct: RangeSource) -> None:
        """The first GET's bytes: its segment, and the ones after it as long as no other GET has
        taken them; then on as any other fetcher."""
        segment, position, start, batch = 0, 0, 0, list[bytes]()
        stopped = False  # here, at a segment's start: the rest is another GET's
        stream = first.iter_range(0, self._size)
        try:
            async for chunk in stream:
                while chunk and not stopped:
                    segment_end = min((segment + 1) * SEGMENT, self._size)
                    piece, chunk = chunk[: segment_end - position], chunk[segment_end - position :]
                    batch.append(piece)
                    position += len(piece)
                    if position - start >= BATCH or position == segment_end:
                        await self._write(fd, segment, batch, start)
                        batch, start = [], position
                    if position == segment_end:
                        segment += 1
                        stopped = segment == len(self._claimed) or bool(self._claimed[segment])
                        if not stopped:
                            self._claimed[segment] = 1
                if stopped:
                    break
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # its connection is closed now, not when the fetch ends
        if not stopped:
            raise errors.ServiceUnavailable("The upstream's answer ended early.")
        await self._fetch_segments(fd, direct)

    async def _fetch_segments(self, fd: int, direct: RangeSource) -> None:
        while (segment := self._next()) is not None:
            start = position = segment * SEGMENT
            end = min(start + SEGMENT, self._size)
            batch: list[bytes] = []
            async for chunk in direct(start, end - start):
                batch.append(chunk)
                position += len(chunk)
                if position - start >= BATCH:
                    await self._write(fd, segment, batch, start)
                    batch, start = [], position
            if batch:
                await self._write(fd, segment, batch, start)
            if position != end:
                raise errors.ServiceUnavailable("The upstream's answer ended early.")

    def _next(self) -> int | None:
        """Claim the segment to fetch next: one a reader waits for, else the first nobody took."""
        while self._wanted:
            segment = min(self._wanted)
            self._wanted.discard(segment)
            if not self._claimed[segment]:
                self._claimed[segment] = 1
                return segment
        while self._cursor < len(self._claimed) and self._claimed[self._cursor]:
            self._cursor += 1
        if self._cursor == len(self._claimed):
            return None
        self._claimed[self._cursor] = 1
        return self._cursor

    async def _write(self, fd: int, segment: int, pieces: list[bytes], offset: int) -> None:
        write = asyncio.get_running_loop().run_in_executor(None, _pwrite_all, fd, pieces, offset)
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        # Shielded: a cancelled fetch still waits (in fetch) for the thread before the file goes.
        await asyncio.shield(write)
        self._filled[segment] += sum(map(len, pieces))
        self._wake()

    # -- the end --------------------------------------------------------------------------------
    def end(self) -> None:
        self.ended = True
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self.end()
        self._close_if_unused()

    # -- readers --------------------------------------------------------------------------------
    def reader(self, info: ObjectInfo, direct: RangeSource) -> TailReader:
        self._readers += 1
        return TailReader(self, info, direct)

    def leave(self) -> None:
        self._readers -= 1
        self._close_if_unused()

    async def reach(self, offset: int) -> bool:
        """Wait until the byte at ``offset`` is in the file; False if it never will be."""
        segment = offset // SEGMENT
        while not self._has(offset) and not self.ended:
            if segment < len(self._claimed) and not self._claimed[segment]:
                self._wanted.add(segment)
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)
        return self._has(offset) and self._fd >= 0

    def read(self, offset: int, end: int) -> bytes:
        segment = offset // SEGMENT
        available = segment * SEGMENT + self._filled[segment]
        return os.pread(self._fd, min(READ_PIECE, min(end, available) - offset), offset)

    def _has(self, offset: int) -> bool:
        segment = offset // SEGMENT
        return segment < len(self._filled) and offset < segment * SEGMENT + self._filled[segment]

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    def _close_if_unused(self) -> None:
        if self.finished and not self._readers and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class TailReader(ObjectReader):
    """A reader of an object while its Fill runs: its bytes come from the spool file as they
    arrive, or from the upstream directly where the fetch stopped short of them."""

    def __init__(self, fill: Fill, info: ObjectInfo, direct: RangeSource) -> None:
        self.info = info
        self._fill = fill
        self._direct = direct
        self._attached = True

    def fileno(self) -> int | None:
        return None

    async def iter_range(self, offset: int, length: int) -> AsyncIterator[bytes]:
        fill, position, end = self._fill, offset, offset + length
        while position < end and await fill.reach(position):
            piece = fill.read(position, end)
            if not piece:
                break
            position += len(piece)
            yield piece
        if position < end:
            # The fetch failed (a full disk, the upstream gone): the rest of this version from
            # the upstream (a GET pinned to its ETag).
            async for chunk in self._direct(position, end - position):
                yield chunk

    def close(self) -> None:
        if self._attached:
            self._attached = False
            self._fill.leave()


async def _all(fetchers: list[Coroutine[Any, Any, None]]) -> None:
    """Run the fetchers together; the first failure stops the others and is raised."""
    tasks = [asyncio.ensure_future(fetcher) for fetcher in fetchers]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _pwrite_all(fd: int, pieces: list[bytes], offset: int) -> None:
    for piece in pieces:
        view = memoryview(piece)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written


def _md5(fd: int, size: int) -> bytes:
    digest = hashlib.md5()
    offset = 0
    while offset < size:
        piece = os.pread(fd, min(1 << 20, size - offset), offset)
        if not piece:
            raise errors.InternalError("The fetched object's file ended early.")
        digest.update(piece)
        offset += len(piece)
    return digest.digest()

