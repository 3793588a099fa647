"""The cache's count of the bytes ``--cache-size`` covers (its replicas, and the parts it keeps of
multipart uploads in progress: cacheparts.py), shared by every worker process serving ROOT.

With ``--workers N`` each process publishing copies and counting only its own let N workers hold
N times ``--cache-size`` between eviction rounds. The count lives in one small file instead
(ROOT/.s3serve/cache-ledger), which every process updates under flock: what the last round found
on the disk, plus what any process published since, minus what any removed or wrote over, and
what each has reserved for copies still on their way (or for bytes it is removing: hold).
The eviction module (eviction.Evictor) reserves and settles through it; reads of a trusted copy
never touch it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

# Tokens of the Ledgers open in this process: a slot with this process's pid and another token
# was left by an earlier process that had the same pid.
_LIVE: set[int] = set()


@dataclass
class _Counts:
    held: int  # bytes of the replicas (and kept parts) on the disk
    published: int  # bytes ever published (a round tells from it what was published while it scanned)
    slots: list[list[int]]  # per process: [pid, token, bytes reserved and not yet published or given up]

    def reserved(self) -> int:
        return sum(slot[2] for slot in self.slots)


class Ledger:
    """The bytes of the replicas and kept parts as every worker process serving ROOT counts them
    (see the module docstring), in one file: a header (magic, held, published) and a slot per
    process (pid, token, reserved). Every operation is one pread and one pwrite of the whole file
    (a few hundred bytes), under flock, never held across an await: fills and writes pay that,
    reads of a trusted copy nothing. A process that dies with reservations (SIGKILL mid-fill)
    leaves its slot behind; the next round frees it (its pid is gone) and sets ``held`` from its
    scan."""

    _HEAD = struct.Struct("<8sqq")
    _SLOT = struct.Struct("<qqq")
    _MAGIC = b"s3sLdg01"

    def __init__(self, path: str) -> None:
        self.path = path
        self.reserved = 0  # this process's reservations (its slot)
        self._token = int.from_bytes(os.urandom(7), "little") + 1  # never 0, a free slot's
        self._fd = -1
        self._pid = 0  # of the process that opened _fd: a forked one opens its own (flock is per open file)
        self._index = -1  # of this ledger's slot

    def totals(self) -> tuple[int, int]:
        """Bytes held, and bytes reserved by every process."""
        with self._counts() as counts:
            return counts.held, counts.reserved()

    def published(self) -> int:
        with self._counts() as counts:
            return counts.published

    def reserve(self, size: int, limit: int) -> bool:
        """Reserve ``size`` bytes if the replicas and every reservation leave room under ``limit``."""
        with self._counts() as counts:
            if counts.held + counts.reserved() + size > limit:
                return False
            self.reserved += size
            counts.slots[self._index][2] = self.reserved
            return True

    def settle(self, size: int, *, kept: bool, replaced: int = 0) -> int:
        """The reservation of ``size`` is over: published (``kept``, in place of a replica of
        ``replaced`` bytes) or given up. The bytes held now."""
        with self._counts() as counts:
            self.reserved = max(0, self.reserved - size)
            counts.slots[self._index][2] = self.reserved
            if kept:
                counts.held = max(0, counts.held + size - replaced)
                counts.published += size
            return counts.held

    def hold(self, size: int) -> None:
        """Bytes about to be removed: off ``held``, and reserved (so that nobody takes their room
        while they are still on the disk) until ``settle`` (kept: they stayed after all)."""
        with self._counts() as counts:
            counts.held = max(0, counts.held - size)
            self.reserved += size
            counts.slots[self._index][2] = self.reserved

    def credit(self, size: int) -> int:
        """A replica of ``size`` bytes was removed; the bytes held now."""
        with self._counts() as counts:
            counts.held = max(0, counts.held - size)
            return counts.held

    def reset(self, total: int, published_before: int) -> tuple[int, int]:
        """A round's scan found ``total`` bytes of replicas; ``published_before``: ``published()``
        as it began. Held is now that, plus what was published while it scanned (perhaps seen by
        it too: counted twice costs at most a round, missed it let the cache outgrow its limit).
        The slots of processes gone are freed. Bytes reserved, and bytes published meanwhile."""
        with self._counts() as counts:
            added = max(0, counts.published - published_before)
            counts.held = total + added
            for index, slot in enumerate(counts.slots):
                if index != self._index and self._free(slot):
                    slot[:] = [0, 0, 0]
            return counts.reserved(), added

    def close(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            self.reserved = 0
            with self._counts() as counts:
                counts.slots[self._index][:] = [0, 0, 0]
            os.close(self._fd)
        self._fd, self._pid = -1, 0
        _LIVE.discard(self._token)

    @contextlib.contextmanager
    def _counts(self) -> Iterator[_Counts]:
        if self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid, self._index = os.getpid(), -1
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = b""
            while len(piece := os.pread(fd, 1 << 16, len(data))) == 1 << 16:
                data += piece
            data += piece
            counts = self._parse(data)
            self._claim(counts)
            yield counts
            new = self._HEAD.pack(self._MAGIC, counts.held, counts.published)
            new += b"".join(self._SLOT.pack(*slot) for slot in counts.slots)
            if new != data:
                os.pwrite(fd, new, 0)
                if len(new) < len(data):
                    os.ftruncate(fd, len(new))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _parse(self, data: bytes) -> _Counts:
        head, size = self._HEAD.size, self._SLOT.size
        if len(data) < head or data[:8] != self._MAGIC:
            return _Counts(0, 0, [])  # new (or not this format): the first round counts the disk
        _, held, published = self._HEAD.unpack_from(data)
        slots = [list(self._SLOT.unpack_from(data, at)) for at in range(head, len(data) - size + 1, size)]
        return _Counts(held, published, slots)

    def _claim(self, counts: _Counts) -> None:
        """Find this ledger's slot (take one the first time, or when the file was made anew), with
        its reservations in it."""
        pid, slots = os.getpid(), counts.slots
        if 0 <= self._index < len(slots) and slots[self._index][:2] == [pid, self._token]:
            slots[self._index][2] = self.reserved
            return
        _LIVE.add(self._token)
        self._index = next((i for i, slot in enumerate(slots) if self._free(slot)), len(slots))
        if self._index == len(slots):
            slots.append([0, 0, 0])
        slots[self._index][:] = [pid, self._token, self.reserved]

    @staticmethod
    def _free(slot: list[int]) -> bool:
        pid, token = slot[0], slot[1]
        if not pid:
            return True
        if pid == os.getpid():
            return token not in _LIVE
        return not alive(pid)


def alive(pid: int) -> bool:
    """Whether process ``pid`` is running (another user's too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process, alive
    return True
