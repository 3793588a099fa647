"""Writing a request body to a file while hashing it: one loop for PutObject and UploadPart."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sys
from functools import cache
from typing import Any, BinaryIO

from ..checksums import MultiHasher
from .base import Body

# Smaller chunks are written inline: a thread hop costs more than the write itself.
THREAD_CHUNK = 64 * 1024
# The body's pieces (as the network delivered them, not joined) are handed to the worker thread in
# batches of about this size: one hop, one writev and a few hash calls per MiB. Larger batches
# measured no faster and hold more memory per upload.
BATCH_BYTES = 1 << 20
# writev takes at most IOV_MAX (1024 on Linux) buffers.
MAX_PIECES = 256
# With ``writeback``, the kernel is asked to start writing every this many bytes, so the fsync
# before the commit finds most of the file already on its way to the disk.
WRITEBACK_BYTES = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2
# Bodies of at least this many declared bytes get their blocks reserved first (preallocate).
PREALLOCATE_BYTES = 1 << 20
_FALLOC_FL_KEEP_SIZE = 0x01
# What a reservation's failure says of the writes to come: they would fail the same way.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@cache
def _libc() -> Any:
    """The C library, for the file calls os does not wrap (Linux only), or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at start-up: only large uploads and Completes need it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    except (OSError, AttributeError):
        return None
    libc.sync_file_range.restype = libc.fallocate.restype = ctypes.c_int
    return libc


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """libc ``fallocate`` (os.posix_fallocate has no mode, and emulates what the filesystem
    lacks by writing zeros); raises OSError with the errno (EOPNOTSUPP where there is none)."""
    libc = _libc()
    if libc is None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    if libc.fallocate(fd, mode, offset, length) != 0:
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve the blocks of [offset, offset + length) before the body arrives.

    A disk without room for the whole body refuses the upload now (ENOSPC, answered 507) rather
    than once the client has sent all that fits, and the file's extents come out contiguous (a
    1 GiB PUT measured ~5 % faster here, bench/RESULTS.md). The size stays what is written
    (FALLOC_FL_KEEP_SIZE): a body that breaks off leaves no zeros behind. Where the filesystem
    cannot reserve blocks, nothing is reserved and the writes go as before."""
    try:
        fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length)
    except OSError as exc:
        if exc.errno in _NO_ROOM:
            raise


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing [offset, offset+length) of ``fd`` to the disk without waiting for it.

    Purely an early start: durability still comes from the fsync that follows, so where the call
    is missing or fails, the fsync does all the work as it would have anyway."""
    libc = _libc()
    if libc is not None and length > 0:
        libc.sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class _Sink:
    """The worker-thread side: write one batch at the file's position, then hash it."""

    def __init__(self, fd: int, hasher: MultiHasher, writeback: bool) -> None:
        self.fd = fd
        self.hasher = hasher
        self.writeback = writeback
        self.start = os.lseek(fd, 0, os.SEEK_CUR)  # where this body begins in the file
        self.written = 0
        self.synced = 0  # bytes after ``start`` whose writeback was started

    def __call__(self, pieces: list[bytes]) -> None:
        size = _write_all(self.fd, pieces)
        # Hashing after the write reads the bytes while the copy into the page cache left them in
        # the CPU cache.
        for piece in pieces:
            self.hasher.update(piece)
        self.written += size
        if self.writeback and self.written - self.synced >= WRITEBACK_BYTES:
            start_writeback(self.fd, self.start + self.synced, self.written - self.synced)
            self.synced = self.written


def _write_all(fd: int, pieces: list[bytes]) -> int:
    """writev every piece, finishing a short write piece by piece; returns the byte count."""
    total = sum(map(len, pieces))
    done = os.writev(fd, pieces)
    if done < total:
        for piece in pieces:
            if done >= len(piece):
                done -= len(piece)
                continue
            view = memoryview(piece)[done:]
            done = 0
            while view:
                view = view[os.write(fd, view) :]
    return total


async def write_body(f: BinaryIO, body: Body, hasher: MultiHasher, *, writeback: bool = False) -> int:
    """Write every chunk of ``body`` to ``f`` (a file on disk, from its current position) and feed
    it to ``hasher``; returns the byte count.

    Pieces are collected into batches of BATCH_BYTES and each batch is written (one writev) and
    hashed in a worker thread (hashlib and awscrt release the GIL) while the event loop already
    reads the next one, so hashing overlaps the network where a second core exists. At most one
    batch is in the thread at a time, which keeps the order and keeps memory to two batches. A
    body smaller than THREAD_CHUNK is written inline. ``writeback``: the caller fsyncs the file
    afterwards, so start its writeback as it grows (see WRITEBACK_BYTES)."""
    f.flush()  # anything the caller wrote through f goes first; from here on the fd is written
    sink = _Sink(f.fileno(), hasher, writeback)
    length = body.decoded_length
    if length is not None and length >= PREALLOCATE_BYTES:
        preallocate(sink.fd, sink.start, length)
    loop = asyncio.get_running_loop()
    size = 0
    batch: list[bytes] = []
    batch_bytes = 0
    # The batch in the thread. Awaited through shield(): a cancelled upload must not stop waiting
    # for a thread that still writes to the caller's file descriptor (the caller closes it next,
    # and the number may be reused for another file).
    pending: asyncio.Future[None] | None = None
    try:
        async for chunk in body:
            batch.append(chunk)
            batch_bytes += len(chunk)
            if batch_bytes < BATCH_BYTES and len(batch) < MAX_PIECES:
                continue
            if pending is not None:
                await asyncio.shield(pending)
            pending = loop.run_in_executor(None, sink, batch)
            size += batch_bytes
            batch, batch_bytes = [], 0
        if batch:
            if pending is None and batch_bytes < THREAD_CHUNK:
                sink(batch)
            else:
                if pending is not None:
                    await asyncio.shield(pending)
                pending = loop.run_in_executor(None, sink, batch)
            size += batch_bytes
        if pending is not None:
            await asyncio.shield(pending)
    finally:
        if pending is not None and not pending.done():
            # The body failed (or we were cancelled) while a batch is in the thread: let it finish
            # before the caller closes and removes the file under it.
            with contextlib.suppress(BaseException):
                await asyncio.wait([pending])
        if pending is not None and pending.done() and not pending.cancelled():
            pending.exception()  # retrieved: the body's own error is the one that matters
    return size
