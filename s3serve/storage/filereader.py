"""DiskReader: what a GET of a file under ROOT reads, through the descriptor its lookup opened.

The handler sends small bodies with one pread and large ones with sendfile from ``fileno()``;
``changed`` tells it whether another program wrote to the file meanwhile.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from . import foreign
from .base import ObjectInfo, ObjectReader


class DiskReader(ObjectReader):
    def __init__(self, fd: int | None, info: ObjectInfo, st: os.stat_result | None = None) -> None:
        self._fd = fd
        self.info = info
        self._st = st

    def fileno(self) -> int | None:
        return self._fd

    def changed(self) -> bool:
        """Whether another program wrote to (or truncated) the open file since its record was
        matched: the bytes read from it may then belong to neither version, whatever the ETag
        says. A rename over the file does not count: the open file is still the old one, whole.
        The mtime moves with every write (ctime would also move with a tag change, which is not
        a change of the bytes)."""
        if self._fd is None or self._st is None:
            return False
        now = os.fstat(self._fd)
        return now.st_size != self._st.st_size or now.st_mtime_ns != self._st.st_mtime_ns

    async def iter_range(self, offset: int, length: int) -> AsyncIterator[bytes]:
        fd = self._fd
        end = offset + length
        while fd is not None and offset < end:
            piece = await asyncio.to_thread(os.pread, fd, min(foreign.READ_PIECE, end - offset), offset)
            if not piece:
                # Truncated by another program after we opened it: the caller sees a short body.
                return
            offset += len(piece)
            yield piece

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
