"""PutObject of a small body and DeleteObject, each done in one hop to a dedicated worker thread.

Measured on ext4 (the benchmark VM): creating the temp inode, ``unlink`` of a file whose blocks
were fsynced and ``rename`` each block for 0.1-2 ms waiting on the journal while using only a few
microseconds of CPU. On the event loop those waits serialize every request behind them; in worker
threads they overlap (1,000 unlinks: 2.2 ms each one after another, 0.17 ms each in 16 threads),
and concurrent fsyncs share journal commits. One hop per request keeps the thread-switch cost to
one round trip, and the pool is the write path's own, so it is never starved by (and never
starves) the default executor's hashing, listing and copying.

Durability with fsync on is unchanged: data and record are fsynced before the rename, and the
folder is fsynced after it, before the 200. Folder fsyncs are coalesced (``FolderSyncs``): a
caller waits on the loop for an fsync of its folder that *started after* its rename, so one
fsync, one more hop, covers every rename that landed before it began.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import os
import queue
import secrets
import stat
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import errors
from ..checksums import MultiHasher
from . import keys
from .base import Body, ObjectInfo, Precondition, WriteMeta
from .folders import drop_marker, prune
from .gc import create_locked
from .keys import KeyPath
from .metadata import Record

if TYPE_CHECKING:
    from .disk import DiskBackend

# Bodies whose declared length is at most this are read into memory and written in one hop;
# bigger ones stream through storage/streams.py. Bounded: the body never yields more than it
# declared (payload.py), and aiohttp's own buffer is of the same order.
SMALL_PUT = 256 * 1024
# How long a delete in the write pool retries the lock of a folder it emptied (folders.prune): the
# holder is most often another delete's prune that found it not yet empty.
PRUNE_PATIENCE = 0.05
# Threads of the write pool. Most of their time is spent waiting in the kernel (journal, fsync),
# not on the CPU; more concurrent fsyncs per journal commit is the point.
WRITE_THREADS = 32
# New inodes of PUTs come from these folders in turn (ROOT/.s3serve/spread/N). ext4 takes a
# new file's inode from its folder's block group and, without a journal (as on the benchmark VM),
# scans that group from its start past every inode freed in the last 60-360 s (find_inode_bit ->
# recently_deleted), so a create costs in proportion to the recent deletes in its group: those of
# this server's DELETEs and of any tree removed nearby (a removed tree's groups are the ones Orlov
# picks next). With every object created in one temp folder, a create cost 283 us of system time
# vs 13 us in folders the allocator spread over other groups (FS_TOPDIR_FL on their parent: Orlov
# spreads its subfolders); after a few thousand deletes, 250-850 us in 8 groups vs 70-105 in 256.
# Each folder is made on first use (256 mkdirs would add 40-100 ms to a fresh ROOT's start-up).
# The files are O_TMPFILE, so these folders stay empty and need no GC.
SPREAD_DIRS = 256
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)

T = TypeVar("T")


def _name_unnamed(fd: int, path: str) -> None:
    """Give the O_TMPFILE file ``fd`` its first name, ``path`` (absolute)."""
    # src_dir_fd makes this linkat(AT_SYMLINK_FOLLOW) of /proc's link to the open file.
    os.link(f"{keys.PROC_FD}{fd}", path, src_dir_fd=fd, follow_symlinks=True)


class FolderSyncs:
    """Coalesced folder fsyncs of one event loop: a change to a folder's entries is durable once
    an fsync of that folder that started after the change has finished. Callers arriving while
    one runs share the next (group commit).

    The callers wait here, on the loop, and one write-pool hop runs each fsync for all of them.
    Waiting in the write threads (a thread asleep in the fsync, or on a condition, per caller)
    cost ~25 us of CPU per durable DELETE in wake-ups and GIL hand-offs (bench/RESULTS.md)."""

    def __init__(self, pool: WritePool) -> None:
        self._pool = pool
        self._folders: dict[str, _Folder] = {}

    async def sync(self, path: str) -> None:
        """fsync ``path``, or share an fsync of it begun after this call; raises what the fsync
        raised (FileNotFoundError: the folder went away meanwhile)."""
        folder = self._folders.get(path)
        if folder is None:
            folder = self._folders[path] = _Folder()
        if folder.next is None:
            folder.next = self._pool.loop.create_future()
            # Every caller of a generation may have gone (cancelled): its error is still seen.
            folder.next.add_done_callback(_seen)
        generation = folder.next
        if not folder.running:
            self._start(path, folder)
        folder.waiting += 1
        try:
            # Shielded: one caller cancelled (its client went away) leaves the fsync to the rest.
            await asyncio.shield(generation)
        finally:
            folder.waiting -= 1

    def _start(self, path: str, folder: _Folder) -> None:
        generation, folder.next = folder.next, None
        assert generation is not None
        folder.running = True
        self._pool.run(keys.fsync_dir, path).add_done_callback(
            lambda fsync: self._finished(path, folder, generation, fsync)
        )

    def _finished(
        self, path: str, folder: _Folder, generation: asyncio.Future[None], fsync: asyncio.Future[None]
    ) -> None:
        folder.running = False
        if fsync.cancelled():
            generation.cancel()  # the loop is shutting down (the executor's future)
        elif (error := fsync.exception()) is None:
            generation.set_result(None)
        else:
            # Every caller of this generation sees the folder as it was: gone, or not a folder.
            generation.set_exception(error)
        if folder.next is not None:
            self._start(path, folder)
        else:
            del self._folders[path]


class _Folder:
    __slots__ = ("next", "running", "waiting")

    def __init__(self) -> None:
        self.next: asyncio.Future[None] | None = None  # the generation callers join until it starts
        self.running = False
        self.waiting = 0  # callers waiting (observable: the tests wait for them)


def _seen(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class WritePool:
    """Worker threads fed by a queue; results come back to the loop in batches.

    A round trip through ``run_in_executor`` costs ~55 us of CPU here (a concurrent Future chained
    to an asyncio Future, one self-pipe write per completion); this one ~25 us: plain tuples, and
    one pipe write for all the results that finish before the loop collects them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int) -> None:
        self.loop = loop
        self._queue: queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._lock = threading.Lock()
        self._signalled = False
        self._closing = False
        self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        loop.add_reader(self._rfd, self._collect)
        self._threads = [
            threading.Thread(target=self._work, name=f"s3serve-write-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closing:
            # The next step of a write the pool took before close (its folder's fsync): the
            # threads are leaving, so it runs where the loop's shutdown still waits for it.
            return self.loop.run_in_executor(None, fn, *args)
        future: asyncio.Future[T] = self.loop.create_future()
        self._queue.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            try:
                result, error = fn(*args), None
            except BaseException as e:
                result, error = None, e
            with self._lock:
                self._done.append((future, result, error))
                wake, self._signalled = not self._signalled, True
            if wake:
                os.write(self._wfd, b"!")

    def _collect(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._rfd, 4096)
        with self._lock:
            done, self._done, self._signalled = self._done, [], False
        for future, result, error in done:
            if future.cancelled():
                continue  # the request went away; the work itself completed or cleaned up
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    async def close(self) -> None:
        """Let the work in flight finish (each unit commits or cleans up by itself)."""
        self._closing = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        self._collect()
        self.loop.remove_reader(self._rfd)
        os.close(self._rfd)
        os.close(self._wfd)


class Writer:
    """The write pool, the folder fsyncs and temp-file names of one DiskBackend."""

    def __init__(self, disk: DiskBackend) -> None:
        self.disk = disk
        self._pool: WritePool | None = None
        self._syncs: FolderSyncs | None = None
        # Unique across processes sharing ROOT (pid + random) without urandom per request.
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count()
        self._spread: list[str] = []
        self._turn = itertools.count()  # not _counter: temp_name takes every other of its values
        self.use_tmpfile = bool(_O_TMPFILE) and os.path.isdir(keys.PROC_FD)

    def temp_name(self, kind: str) -> str:
        return os.path.join(self.disk._tmp_dir, f"{kind}-{os.getpid()}-{self._prefix}-{next(self._counter)}")

    def pool(self) -> WritePool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.loop is not loop:
            # First use, or a backend used from a new event loop (tests): a pool per loop.
            self._pool = WritePool(loop, WRITE_THREADS)
            self._syncs = FolderSyncs(self._pool)
        return self._pool

    async def sync(self, folder: str) -> None:
        """fsync ``folder`` (coalesced: see FolderSyncs)."""
        self.pool()
        assert self._syncs is not None
        await self._syncs.sync(folder)

    async def close(self) -> None:
        if self._pool is not None and self._pool.loop is asyncio.get_running_loop():
            await self._pool.close()
        self._pool = self._syncs = None

    # -- PutObject ----------------------------------------------------------------------------
    @staticmethod
    def fits(body: Body) -> bool:
        length = body.decoded_length
        return length is not None and 0 <= length <= SMALL_PUT

    async def put(self, bucket: str, bdir: str, kp: KeyPath, body: Body, meta: WriteMeta) -> ObjectInfo:
        """PutObject without a precondition of a body that ``fits``: read and hash it here (the
        loop is reading the socket anyway), then write, seal and commit it in one hop."""
        hasher = MultiHasher(["md5", *sorted(body.digests_wanted)])
        chunks = []
        async for chunk in body:
            hasher.update(chunk)
            chunks.append(chunk)
        digests = hasher.digests()
        size = sum(map(len, chunks))
        record = Record.for_write(meta, digests["md5"].hex(), size, body.finish(digests))
        folders = await self.pool().run(self._put, bucket, bdir, kp, chunks, record)
        await self.disk.sync_folders(folders)
        return record.to_info(kp.key)

    def _put(self, bucket: str, bdir: str, kp: KeyPath, chunks: list[bytes], record: Record) -> list[str]:
        """Write, seal and rename; the folders whose entries changed (for the caller to fsync)."""
        disk = self.disk
        path = keys.object_path(bdir, kp)
        tmp: str | None = self.temp_name("put")
        assert tmp is not None
        # Flocked until the rename is done: the GC of another process removes only temp files
        # nobody holds.
        fd, unnamed = self._create_temp(tmp)
        try:
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                record.stamp(os.fstat(fd))
                # Record before fsync: the fsync then covers the xattr as well as the data.
                attached = disk.meta.attach(fd, record)
                if disk.fsync:
                    os.fsync(fd)
                if unnamed:
                    # Named only now, so the fsync above did not also write the temp folder.
                    _name_unnamed(fd, tmp)
                slot = disk.locks.slot(bucket, kp.key)
                lock = disk.locks.acquire(slot)
                try:
                    old = disk._existing_record(bucket, kp, path)
                    # Without an xattr the record is the key's sidecar, written before the rename.
                    with contextlib.nullcontext() if attached else disk.meta.renaming(bucket, kp.key, record, old):
                        folders = keys.place(disk._real_root, bdir, kp, path, tmp)
                    tmp = None
                finally:
                    os.close(lock)
            finally:
                keys.unlink_quietly(tmp)
        finally:
            os.close(fd)
        if old is not None and old.blob and old.blob != record.blob:
            disk.meta.drop_blob(old.blob)
        return folders

    def prepare(self) -> None:
        """Make the spread folders' parent (at start, in a thread); the folders come on first use."""
        top = os.path.join(self.disk.meta.hidden, "spread")
        os.makedirs(top, exist_ok=True)
        with contextlib.suppress(OSError):  # not ext2/3/4: plain folders, no harm
            fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                flags = struct.unpack("l", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("l", 0)))[0]
                if not flags & _FS_TOPDIR_FL:
                    fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("l", flags | _FS_TOPDIR_FL))
            finally:
                os.close(fd)
        self._spread = [os.path.join(top, str(i)) for i in range(SPREAD_DIRS)]

    def create_temp(self, name: str) -> int:
        """A flocked temp file named ``name`` for a streamed write, its inode taken from the next
        spread folder as a small put's is (see SPREAD_DIRS), where O_TMPFILE allows."""
        fd, unnamed = self._create_temp(name)
        if unnamed:
            try:
                _name_unnamed(fd, name)
            except BaseException:
                os.close(fd)
                raise
        return fd

    def _create_temp(self, name: str) -> tuple[int, bool]:
        """A flocked temp file for a put: unnamed (O_TMPFILE) in the next spread folder,
        True; or created as ``name``, False (no O_TMPFILE here, or no spread folders)."""
        if self.use_tmpfile and self._spread:
            directory = self._spread[next(self._turn) % len(self._spread)]
            try:
                try:
                    fd = os.open(directory, os.O_RDWR | _O_TMPFILE | os.O_CLOEXEC, 0o644)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(directory)
                    fd = os.open(directory, os.O_RDWR | _O_TMPFILE | os.O_CLOEXEC, 0o644)
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    self.use_tmpfile = False  # the filesystem cannot: stop asking
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                return fd, True
        return create_locked(name), False

    # -- DeleteObject -------------------------------------------------------------------------
    async def delete(
        self, bucket: str, bdir: str, kp: KeyPath, path: str, precondition: Precondition | None = None
    ) -> None:
        if await self.pool().run(self._unlink, bucket, bdir, kp, path, precondition):
            await self.disk.sync_removal(bdir, os.path.dirname(path))

    def _unlink(
        self, bucket: str, bdir: str, kp: KeyPath, path: str, precondition: Precondition | None = None
    ) -> bool:
        """Remove the object at ``path`` under its key lock, if it meets ``precondition``; whether
        a name was removed."""
        disk = self.disk
        slot = disk.locks.slot(bucket, kp.key)
        held = frozenset({slot})
        lock = disk.locks.acquire(slot)
        try:
            found = disk._resolve(path)
            if found is None:
                missing = None if kp.is_folder else disk._absent(kp.key, path)
                if isinstance(missing, errors.AccessDenied):
                    raise missing  # there but out of reach: a 204 would say it is gone while it stays
                if precondition is not None:
                    precondition(None)
                return False
            real, st = found
            record = disk.meta.load(real, bucket, kp.key, st)
            if precondition is not None:
                _check_delete(precondition, kp, st, record)
            if kp.is_folder:
                if record is not None and record.folder:
                    drop_marker(disk, bucket, bdir, kp, real, record, held, PRUNE_PATIENCE)
                    return True
                return False
            if not stat.S_ISREG(st.st_mode):
                return False  # a folder (not an object) or something that is not a file
            # Through a checked descriptor of its folder: a folder on the way swapped for a symlink
            # leading out of ROOT since the resolve cannot make this remove a file out there.
            with keys.folder_of(disk._real_root, path) as folder_fd:
                if folder_fd is None:
                    return False
                try:
                    os.unlink(os.path.basename(path), dir_fd=folder_fd)
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    return False
            # Unlinking a symlink removes a name, not the target's metadata.
            disk.meta.forget(bucket, kp.key, record if real == path else None)
            prune(disk, bucket, bdir, os.path.dirname(path), held, PRUNE_PATIENCE)
            return True
        finally:
            os.close(lock)


def _check_delete(precondition: Precondition, kp: KeyPath, st: os.stat_result, record: Record | None) -> None:
    """A conditional delete's check, under the key's lock, of what the key holds now."""
    if kp.is_folder:
        current = record.to_info(kp.key) if record is not None and record.folder else None
    elif not stat.S_ISREG(st.st_mode):
        current = None  # a folder of other keys, not an object
    elif record is None:
        # A file another program put here after the lookup gave the key a record: no ETag to
        # hold the condition against yet. S3 answers a delete racing a write with 409.
        raise errors.ConditionalRequestConflict(resource=kp.key)
    else:
        current = record.to_info(kp.key)
    precondition(current)
