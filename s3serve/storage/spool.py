"""A verified body waiting in the local backend's temp folder, and a Body that reads it back.

The upstream cache spools every upload before anything else: the body's checks (Content-MD5,
payload hash, checksums) run on the spool, so the upstream only ever receives bytes that passed
them, sent with their size and digests known in advance.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .. import errors

READ_PIECE = 1 << 20


@dataclass
class Spool:
    path: str
    # Holds the temp file's flock until it is published or discarded: the GC of any process
    # sharing ROOT removes only temp files nobody holds.
    lock_fd: int
    size: int
    md5: bytes
    checksums: dict[str, str] = field(default_factory=dict)  # what Body.finish returned

    @property
    def etag(self) -> str:
        return self.md5.hex()

    def body(self) -> FileBody:
        return FileBody(self.path, self.size, self.md5, self.checksums)

    def release(self) -> None:
        """Drop the flock (after the file was renamed away or removed); safe to call twice."""
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.release()


class FileBody:
    """A Body over a file whose bytes were verified already: sent with its size, MD5 and
    checksums declared up front (Content-Length, Content-MD5, x-amz-checksum-*), so the receiver
    verifies the transfer itself."""

    digests_wanted: frozenset[str] = frozenset()

    def __init__(self, path: str, size: int, md5: bytes | None, checksums: dict[str, str]) -> None:
        self.path = path
        self.size = size
        self.md5 = md5
        self.checksums = dict(checksums)
        self.declared_checksum: str | None = next(iter(self.checksums), None)
        self.decoded_length: int | None = size

    @property
    def content_md5(self) -> str | None:
        return base64.b64encode(self.md5).decode() if self.md5 is not None else None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        fd = await asyncio.to_thread(os.open, self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            offset = 0
            while offset < self.size:
                piece = await asyncio.to_thread(os.pread, fd, min(READ_PIECE, self.size - offset), offset)
                if not piece:
                    raise errors.IncompleteBody()
                offset += len(piece)
                yield piece
        finally:
            os.close(fd)

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        if self.md5 is not None and digests.get("md5", self.md5) != self.md5:
            raise errors.BadDigest()
        return dict(self.checksums)
