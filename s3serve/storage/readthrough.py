"""Read-through: an upstream object fetched once into a new local replica, while every reader of
that version is served from the growing file: the client whose miss started the fetch, and any
that arrive while it runs. Several clients of a cold object, or one client's parallel ranged GETs
of it (boto3 and the aws cli download large objects so), then cost the upstream one GET instead
of one each plus the fetch of the replica."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable

from .base import ObjectInfo, ObjectReader

# A reader whose range starts further ahead of the fetch than this asks the upstream for its
# range itself rather than wait for the fetch to get there.
TAIL_AHEAD = 64 << 20
# The growing file is read in pieces of this size, on the event loop: its bytes were just written,
# so they come from the page cache, and a thread hop would cost more than the copy.
READ_PIECE = 256 * 1024

# The upstream's bytes [offset, offset + length) of the version being read, fetched directly.
RangeSource = Callable[[int, int], AsyncIterator[bytes]]


class Fill:
    """One upstream GET on its way into a spool file that becomes the replica (replicas.Watcher)."""

    def __init__(self) -> None:
        self.sent = time.monotonic()  # taken before the GET went out
        # The object the GET answered (parts included), or the GET's error.
        self.answered: asyncio.Future[ObjectInfo] = asyncio.get_running_loop().create_future()
        self.answered.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
        self.written = 0  # bytes of the spool file that readers may read
        self.ended = False  # no more bytes will come (the whole object, or a failure)
        self.finished = False  # the fetch's task is over: the file is published or gone
        self._fd = -1
        self._readers = 0
        self._changed: asyncio.Future[None] | None = None

    # -- the spool's side -----------------------------------------------------------------------
    def opened(self, path: str) -> None:
        # A descriptor of its own (no flock): readers keep reading after the spool is renamed into
        # place as the replica, or removed.
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def wrote(self, size: int) -> None:
        self.written = size
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self.end()
        self._close_if_unused()

    # -- the readers' side ----------------------------------------------------------------------
    def reader(self, info: ObjectInfo, direct: RangeSource) -> TailReader:
        self._readers += 1
        return TailReader(self, info, direct)

    def leave(self) -> None:
        self._readers -= 1
        self._close_if_unused()

    async def reach(self, offset: int) -> bool:
        """Wait until the byte at ``offset`` is in the file; False if it never will be."""
        while self.written <= offset and not self.ended:
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)
        return self.written > offset and self._fd >= 0

    def read(self, offset: int, end: int) -> bytes:
        return os.pread(self._fd, min(READ_PIECE, min(end, self.written) - offset), offset)

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    def _close_if_unused(self) -> None:
        if self.finished and not self._readers and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class TailReader(ObjectReader):
    """A reader of an object while its Fill runs: the bytes come from the growing spool file, and
    from the upstream directly where the fetch is far behind the range or stopped short."""

    def __init__(self, fill: Fill, info: ObjectInfo, direct: RangeSource) -> None:
        self.info = info
        self._fill = fill
        self._direct = direct
        self._attached = True

    def fileno(self) -> int | None:
        return None

    async def iter_range(self, offset: int, length: int) -> AsyncIterator[bytes]:
        fill, position, end = self._fill, offset, offset + length
        if offset - fill.written <= TAIL_AHEAD:
            while position < end and await fill.reach(position):
                piece = fill.read(position, end)
                if not piece:
                    break
                position += len(piece)
                yield piece
        if position < end:
            # The fetch failed (a full disk, the upstream gone) or is far behind: the rest of
            # this version from the upstream (a GET pinned to its ETag).
            async for chunk in self._direct(position, end - position):
                yield chunk

    def close(self) -> None:
        if self._attached:
            self._attached = False
            self._fill.leave()


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

