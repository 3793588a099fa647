"""PutObject of a small body and DeleteObject, each done in one hop to a dedicated worker thread.

Measured on ext4 (the benchmark VM): creating the temp inode, ``unlink`` of a file whose blocks
were fsynced and ``rename`` each block for 0.1-2 ms waiting on the journal while using only a few
microseconds of CPU. On the event loop those waits serialize every request behind them; in worker
threads they overlap (1,000 unlinks: 2.2 ms each one after another, 0.17 ms each in 16 threads),
and concurrent fsyncs share journal commits. One hop per request keeps the thread-switch cost to
one round trip, and the pool is the write path's own, so it is never starved by (and never
starves) the default executor's hashing, listing and copying.

Durability with fsync on is unchanged: data and record are fsynced before the rename, and the
directory is fsynced after it, before the 200. Directory fsyncs are coalesced (``DirSyncer``):
a caller waits for an fsync of its directory that *started after* its rename, so one fsync
covers every rename that landed before it began.
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


class DirSyncer:
    """Coalesced directory fsyncs: a rename is durable once an fsync of its directory that
    started after the rename has finished. Callers arriving while an fsync of that directory is
    running wait for it and then share the next one (group commit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirs: dict[str, _DirState] = {}

    def sync(self, path: str) -> None:
        with self._lock:
            state = self._dirs.get(path)
            if state is None:
                state = self._dirs[path] = _DirState()
            state.users += 1
        try:
            state.sync(path)
        finally:
            with self._lock:
                state.users -= 1
                if state.users == 0:
                    del self._dirs[path]


class _DirState:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.started = 0  # generation of the last fsync begun
        self.done = 0  # generation of the last fsync that succeeded
        self.running = False
        self.users = 0
        self.waiting = 0  # callers blocked on a running fsync (observable: the tests wait for them)

    def sync(self, path: str) -> None:
        with self.cond:
            # A running fsync may have begun before our rename: only the next one counts.
            need = self.started + 1
            while self.done < need:
                if self.running:
                    self.waiting += 1
                    try:
                        self.cond.wait()
                    finally:
                        self.waiting -= 1
                    continue
                self.running = True
                self.started += 1
                generation = self.started
                ok = False
                self.cond.release()
                try:
                    keys.fsync_dir(path)
                    ok = True
                finally:
                    self.cond.acquire()
                    self.running = False
                    if ok:
                        self.done = max(self.done, generation)
                    # On failure the waiters retry with an fsync of their own; we raise.
                    self.cond.notify_all()


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
        self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        loop.add_reader(self._rfd, self._collect)
        self._threads = [
            threading.Thread(target=self._work, name=f"s3serve-write-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
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
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        self._collect()
        self.loop.remove_reader(self._rfd)
        os.close(self._rfd)
        os.close(self._wfd)


class Writer:
    """The write pool, the directory syncer and temp-file names of one DiskBackend."""

    def __init__(self, disk: DiskBackend) -> None:
        self.disk = disk
        self.dirs = DirSyncer()
        self._pool: WritePool | None = None
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
        return self._pool

    async def close(self) -> None:
        if self._pool is not None and self._pool.loop is asyncio.get_running_loop():
            await self._pool.close()
        self._pool = None

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
        await self.pool().run(self._put, bucket, bdir, kp, chunks, record)
        return record.to_info(kp.key)

    def _put(self, bucket: str, bdir: str, kp: KeyPath, chunks: list[bytes], record: Record) -> None:
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
        if disk.fsync:
            disk.sync_folders(folders)

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
        await self.pool().run(self._delete, bucket, bdir, kp, path, precondition)

    def _delete(self, bucket: str, bdir: str, kp: KeyPath, path: str, precondition: Precondition | None) -> None:
        if self._unlink(bucket, bdir, kp, path, precondition) and self.disk.fsync:
            self.disk.sync_removal(bdir, os.path.dirname(path))

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
                    drop_marker(disk, bucket, bdir, kp, real, record, held)
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
            prune(disk, bucket, bdir, os.path.dirname(path), held, patience=0.05)
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
