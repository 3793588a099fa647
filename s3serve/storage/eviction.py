"""Keeps the upstream cache's replicas, and the parts it keeps of multipart uploads in progress
(cacheparts.py), under its size limit: least recently used replicas first, then those parts.

A round walks the replicas (the local backend's own listing, so it sees what is on disk, across
every worker process), and when they hold more than the limit removes the least recently used
until they hold LOW_WATER of it. It asks the upstream once first (and again every REACH_CHECK
seconds while it runs): while the upstream cannot be reached the copies are the only way to
serve their objects (readthrough serves them on error), so no copy is removed (parts may be).
Nothing more is asked per copy: a copy goes whatever the upstream says of its object (has it,
has a newer version, deleted it behind this server's back), and every copy is of something the
upstream acknowledged (a write becomes a replica only after the upstream took it), so a HEAD
per copy only cost a request each and let fills outrun the round under load.

Only copies the cache made count and go. A file another program put into ROOT is neither counted
against the limit nor removed, even when the upstream holds the same bytes: it is not the
cache's to remove, and counting it would have a few large ones evict every copy on every round.

The parts kept of an upload in progress count as replicas do: the Complete that makes the
object goes to the upstream, which has every part it acknowledged, and the parts here only make
the replica without a read back; so they go when room is wanted and there is no replica left to
go (or the upstream cannot be reached: no Complete can be made meanwhile), those of the upload
least recently added to first, and all of an upload's at once (the others are of no use
without one). A part that finds no room, given none after one round, takes the parts of its
upload with it (cacheparts.CacheMultipart._give_up_parts).

Rounds alone cannot hold the limit under load: fills finish faster than a round removes copies,
and a cache of 20 MiB read by 16 clients held 80 MiB of copies. So a copy is published only into
room reserved for it beforehand (admit/settle), and so is a part (reserve_now/settle_part; an
UploadPart does not wait for a round, a task does): the bytes of the replicas and parts never
exceed the limit as the Ledger counts them, and bytes being removed are counted until they are
gone (hold/unhold). The Ledger is one small file in the cache's state folder that every
worker process serving ROOT updates under flock: what the last round found, plus what any
process published since, minus what any removed or wrote over, and what each has reserved and
not yet published. (Each process counting for itself let N workers hold N times the limit.)
A copy that finds no room wakes a round that makes room for it; a fill, a completed multipart
upload or a part (no client waits for their copy) waits for that round, briefly, a PUT does not;
what still finds no room is not kept (the upstream has it: the next read fetches it). Beyond the
replicas and parts, the disk holds the temp files of fills and uploads on their way, each at
most its object's (or part's) size, and of fills and parts waiting for room, at most the limit's
size in all (see admit).

Recency is what this process saw (reads and writes); what it has not seen since it started ranks
by its Last-Modified. Rounds run every ``interval`` seconds, and at once when the count went over
the limit or a copy found no room, including while a round ran here or in another worker process
(which a round's scan may have missed). While the upstream cannot be reached a round removes no
copy after its first check, and one log line says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import errors
from . import replicas
from .base import ObjectInfo
from .ledger import Ledger

if TYPE_CHECKING:
    from .cache import CacheBackend

log = logging.getLogger("s3serve.cache")

LOW_WATER = 0.9
ACCESS_ENTRIES = 1 << 18
PAGE = 1000
# How long a round goes on removing copies after the upstream last answered it: an outage that
# begins while it runs must not take every copy that could be served meanwhile.
REACH_CHECK = 5.0
# How soon a round skipped because another worker held the lock is tried again, when this
# process's writes took it over the limit (the other round's scan may predate them).
LOCK_RETRY = 0.2
# How long a fill that found no room waits, at most, for the round it woke: a round takes a scan,
# one HEAD and local removals. Its temp file stays on the disk meanwhile, so not for long.
ADMIT_WAIT = 2.0
# The Ledger's file, in ROOT/.s3serve/.
LEDGER = "cache-ledger"

@dataclass
class Replica:
    bucket: str
    key: str
    size: int
    etag: str
    last_used: float


class Evictor:
    def __init__(self, cache: CacheBackend, max_bytes: int | None, interval: float) -> None:
        self.cache = cache
        self.max_bytes = max_bytes
        self.interval = interval
        self.ledger = Ledger(os.path.join(cache.local.meta.hidden, LEDGER))
        self.evicted = 0  # replicas removed since start (for logs and tests)
        self.refused = 0  # copies not kept for want of room (for logs and tests)
        self.rounds = 0  # rounds this process ran (logged at debug: tests wait for them)
        self._wanted = 0  # bytes refused room since the last round: the next one makes room
        self._waiting: list[asyncio.Future[None]] = []  # admissions waiting for that round
        self._measured = asyncio.Event()  # a round's scan has counted what is on the disk
        self._access: OrderedDict[tuple[str, str], float] = OrderedDict()
        # Which files are copies the cache made, by (bucket, key) -> (ETag, time, size) when
        # last looked at: a round asks the disk only about files it has not seen as they are.
        self._kinds: OrderedDict[tuple[str, str], tuple[tuple[str, float, int], bool]] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False  # a copy published after stop() is not kept

    @property
    def estimate(self) -> int:
        """Bytes the replicas hold, as every worker process counts them (the Ledger)."""
        return self.ledger.totals()[0]

    @property
    def pending(self) -> int:
        """Bytes admitted and not yet published or given up, in every worker process."""
        return self.ledger.totals()[1]

    async def start(self) -> None:
        if self.max_bytes is not None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._release(self._waiting)
        self._waiting = []
        # Copies are kept no more: a request still under way as the server stops would
        # otherwise count (or reserve) bytes in the shared count after its slot was given up.
        self._stopped = True
        self.ledger.close()

    def touch(self, bucket: str, key: str) -> None:
        access = self._access
        access[(bucket, key)] = time.time()
        access.move_to_end((bucket, key))
        if len(access) > ACCESS_ENTRIES:
            access.popitem(last=False)

    async def admit(self, size: int, *, patient: bool) -> bool:
        """Reserve room for a new replica of ``size`` bytes before it is published; False: do not
        keep it (its bytes were served, or are on the upstream). Every True is followed by one
        ``settle``. ``patient``: wait (ADMIT_WAIT at most) for a round to make room."""
        if self.max_bytes is None:
            return True
        if self._stopped:
            return False
        if not self._measured.is_set() and self._task is not None:
            # Moments after start: the first round is counting what earlier runs left here.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ADMIT_WAIT):
                    await self._measured.wait()
        if self._reserve(size):
            return True
        if size <= self.max_bytes:
            # The next round makes room for it, from the least recently used: refused, it is kept
            # next time, as an LRU cache keeps what was read last. A round makes room for half
            # the cache at most (see _round), or a burst of cold reads would flush it all; so
            # only what it will make room for waits for it: the temp files waiting for room
            # hold half the limit at most (for the next round, as much for the running one).
            self._wanted += size
            self._wake.set()
            if patient and self._task is not None and self._wanted <= self.max_bytes // 2:
                waiter = asyncio.get_running_loop().create_future()
                self._waiting.append(waiter)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ADMIT_WAIT):
                        await waiter
                if self._reserve(size):
                    return True
        self.refused += 1
        return False

    def reserve_now(self, size: int) -> bool:
        """``admit`` without waiting, nor waking a round: for a part of a multipart upload, whose
        client waits for its answer. Every True is followed by one ``settle_part``."""
        return self.max_bytes is None or self._reserve(size)

    def _reserve(self, size: int) -> bool:
        assert self.max_bytes is not None
        if not size:
            return True  # a folder marker or an empty object: no bytes to hold
        return self._measured.is_set() and not self._stopped and self.ledger.reserve(size, self.max_bytes)

    def settle(self, bucket: str, key: str, size: int, *, kept: bool, replaced: int = 0) -> None:
        """The replica ``admit`` made room for was published (``kept``; over a replica of
        ``replaced`` bytes, which it takes off the count), or was not after all."""
        over = self._settle(size, kept=kept, replaced=replaced)
        if not kept:
            return
        self.touch(bucket, key)
        if over or self._wanted > 0:
            self._wake.set()

    def settle_part(self, size: int, *, kept: bool, replaced: int = 0) -> None:
        """``settle``, for a part of a multipart upload kept (cacheparts.PartStore.keep) or not;
        ``replaced``: the bytes of the parts of its number it removed, kept or not."""
        over = self._settle(size, kept=kept, replaced=replaced if kept else 0)
        if not kept:
            self.credit(replaced)
        elif over or self._wanted > 0:
            self._wake.set()

    def _settle(self, size: int, *, kept: bool, replaced: int) -> bool:
        """Whether the count is over the limit now."""
        if self.max_bytes is None or self._stopped or not (size or replaced):
            return False
        return self.ledger.settle(size, kept=kept, replaced=replaced) > self.max_bytes

    def credit(self, size: int) -> None:
        """A replica of ``size`` bytes was removed (evicted, deleted, found stale)."""
        if self.max_bytes is not None and not self._stopped and size:
            self.ledger.credit(size)

    def hold(self, size: int) -> None:
        """Bytes about to be removed: off the count of what is held, and reserved until
        ``unhold`` says whether they went (see CacheMultipart.remove_parts)."""
        if self.max_bytes is not None and not self._stopped and size:
            self.ledger.hold(size)

    def unhold(self, size: int, *, removed: bool) -> None:
        if self.max_bytes is not None and not self._stopped and size:
            self.ledger.settle(size, kept=not removed)

    def _over(self) -> bool:
        if self.max_bytes is None:
            return False
        return self._wanted > 0 or self.ledger.totals()[0] > self.max_bytes

    @staticmethod
    def _release(waiting: list[asyncio.Future[None]]) -> None:
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    async def _run(self) -> None:
        while True:
            # Cleared before the round, not after: a write that lands while it runs (and that
            # its scan may have missed) must wake the next one, not wait for the interval.
            self._wake.clear()
            # Admissions waiting now are what this round makes room for (it takes _wanted with
            # no await in between); those arriving while it runs wait for the next.
            waiting, self._waiting = self._waiting, []
            wait = self.interval
            ran = True
            try:
                ran = await self.round()
                # Another worker's round; ours once it is done, when there is something to do or
                # nothing was counted yet (no copy is kept here until a round has counted).
                if not ran and (self._over() or not self._measured.is_set()):
                    wait = min(wait, LOCK_RETRY)
            except asyncio.CancelledError:
                self._release(waiting)
                raise
            except Exception:  # keep going: the next round may find the disk or upstream back
                log.exception("cache eviction round failed")
            if ran:
                self._release(waiting)
            else:
                self._waiting[:0] = waiting
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns, dropping the cancel,
            # when what it waits for is done as it is cancelled; with wakes as frequent as under
            # load, stop() then waited for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def replicas(self) -> list[Replica]:
        """The copies the cache made, as the disk holds them now (files of other programs left out)."""
        local = self.cache.local
        found = []
        for bucket in await local.list_buckets():
            async for info in replicas.objects_of(local, bucket.name, PAGE):
                if not info.is_folder and await self._is_copy(bucket.name, info):
                    used = self._access.get((bucket.name, info.key), info.last_modified)
                    found.append(Replica(bucket.name, info.key, info.size, info.etag, used))
        return found

    async def _is_copy(self, bucket: str, info: ObjectInfo) -> bool:
        """Whether the listed file is a replica; a file that is not is said once (per version)."""
        seen = (info.etag, info.last_modified, info.size)
        known = self._kinds.get((bucket, info.key))
        if known is not None and known[0] == seen:
            return known[1]
        copy = replicas.replica_at(self.cache.local, bucket, info.key) is not None
        self._kinds[(bucket, info.key)] = (seen, copy)
        self._kinds.move_to_end((bucket, info.key))
        if len(self._kinds) > ACCESS_ENTRIES:
            self._kinds.popitem(last=False)
        if not copy:
            log.warning(
                "cache: keeping %s/%s: not a copy the cache made (nor counted against --cache-size)", bucket, info.key
            )
        return copy

    async def round(self) -> bool:
        """One pass: measure, and remove the least recently used replicas while over the limit.
        Worker processes sharing ROOT take turns: a round another one is running is skipped
        (False)."""
        assert self.max_bytes is not None
        path = os.path.join(self.cache.local.meta.hidden, "eviction.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            await self._round(self.max_bytes)
            self.rounds += 1
            log.debug("cache: eviction round %d done", self.rounds)
            return True
        finally:
            os.close(fd)

    async def _round(self, max_bytes: int) -> None:
        wanted, self._wanted = self._wanted, 0
        before = self.ledger.published()
        held = await self.replicas()
        uploads = await asyncio.to_thread(self.cache.parts.usage)
        total = sum(r.size for r in held) + sum(u.size for u in uploads)
        reserved, added = self.ledger.reset(total, before)
        self._measured.set()
        # Room for what is admitted and on its way (in every process), for what was published
        # while the scan ran, and for what found none since the last round.
        room = reserved + added + min(wanted, max_bytes // 2)
        if total + room <= max_bytes:
            return
        target = max(0, min(int(max_bytes * LOW_WATER), max_bytes - room))
        answered = -math.inf  # when the upstream last answered this round
        reached = True
        try:
            for replica in sorted(held, key=lambda r: r.last_used):
                if total <= target:
                    break
                if time.monotonic() - answered > REACH_CHECK:
                    await self._reach(replica)
                    answered = time.monotonic()
                # Only the copy the scan found: a file another program put over it since stays.
                if await self.cache.drop_replica(replica.bucket, replica.key, replica.etag):
                    self._access.pop((replica.bucket, replica.key), None)
                    total -= replica.size
                    self.evicted += 1
        except errors.ServiceUnavailable:
            # The upstream cannot be reached (remote_http logged why): while it cannot, the
            # copies are the only way to serve their objects. The next round tries again.
            reached = False
        # Then the parts of uploads in progress, those least recently added to first: the
        # upstream has them all and Complete does not need them (they only spare the object's
        # first read), so they go whether it answers or not; but after the copies, which are
        # what the cache is for. An upload missing one part is of no use: all of them go.
        for upload in sorted(uploads, key=lambda u: u.touched):
            if total <= target:
                break
            if upload.size and not upload.leaving:
                await self.cache.remove_parts(upload.name, mark=True)
                total -= upload.size
        if not reached:
            log.warning("cache: eviction paused, the upstream cannot be reached: %d bytes held (limit %d)", total, max_bytes)
        else:
            log.info("cache: %d bytes held after eviction (limit %d)", total, max_bytes)

    async def _reach(self, replica: Replica) -> None:
        """Whether the upstream answers (ServiceUnavailable when it does not); asked about a
        candidate, though any answer will do: a copy goes whatever the upstream says of it."""
        try:
            await self.cache.upstream.head_object(replica.bucket, replica.key)
        except errors.ServiceUnavailable:
            raise
        except errors.S3Error:
            pass  # no such key, refused, ...: an answer all the same
