"""Writing a request body to a file while hashing it: one loop for PutObject and UploadPart."""

from __future__ import annotations

import asyncio
import contextlib
from typing import BinaryIO

from ..checksums import MultiHasher
from .base import Body

# Smaller chunks are written inline: a thread hop costs more than the write itself.
THREAD_CHUNK = 64 * 1024


def _write_and_hash(f: BinaryIO, hasher: MultiHasher, chunk: bytes) -> None:
    f.write(chunk)
    hasher.update(chunk)


async def write_body(f: BinaryIO, body: Body, hasher: MultiHasher) -> int:
    """Write every chunk of ``body`` to ``f`` and feed it to ``hasher``; returns the byte count.

    Large chunks are written and hashed in a worker thread (hashlib and awscrt release the GIL)
    while the event loop already reads the next one, so hashing overlaps the network instead of
    following it. At most one chunk is in the thread at a time, which keeps the order and keeps
    memory to two chunks."""
    size = 0
    pending: asyncio.Future[None] | None = None
    try:
        async for chunk in body:
            size += len(chunk)
            if pending is None and len(chunk) < THREAD_CHUNK:
                _write_and_hash(f, hasher, chunk)
                continue
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(asyncio.to_thread(_write_and_hash, f, hasher, chunk))
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None and not pending.done():
            # The body failed (or we were cancelled) while a chunk is in the thread: let it finish
            # before the caller closes and removes the file under it.
            with contextlib.suppress(BaseException):
                await asyncio.wait([pending])
        if pending is not None and pending.done() and not pending.cancelled():
            pending.exception()  # retrieved: the body's own error is the one that matters
    return size
