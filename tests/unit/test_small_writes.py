"""The one-hop write path (storage/smallwrites.py): which bodies take it, the key lock it waits
for in its worker thread, fsync'd puts, overflow records, and the coalesced directory fsync.

test_disk.py runs every DiskBackend test through both write paths; this module covers what only
the one-hop path has."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from s3serve import errors
from s3serve.storage import keys, smallwrites
from s3serve.storage.base import WriteMeta
from s3serve.storage.disk import DiskBackend
from s3serve.storage.smallwrites import SMALL_PUT, FolderSyncs, Writer

OWNER = "owner-1"


class Body:
    """A body that declares its length like payload.RequestBody (``declared`` None: unknown)."""

    def __init__(self, *chunks: bytes, declared: int | None = -1) -> None:
        self.chunks = chunks
        self.digests_wanted: frozenset[str] = frozenset()
        self.declared_checksum: str | None = None
        self.decoded_length = sum(map(len, chunks)) if declared == -1 else declared

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        return {}


async def backend(root: Path, mode: str, fsync: bool = False) -> DiskBackend:
    be = DiskBackend(root, OWNER, fsync=fsync, use_xattrs=(mode == "xattr"))
    await be.start()
    if not (root / "bkt").exists():
        await be.create_bucket("bkt", OWNER, "us-east-1")
    return be


@pytest.fixture
async def be(root: Path, mode: str) -> AsyncIterator[DiskBackend]:
    backend_ = await backend(root, mode)
    yield backend_
    await backend_.stop()


def tmp_files(root: Path) -> list[str]:
    return os.listdir(root / ".s3serve" / "tmp")


async def read_all(be: DiskBackend, key: str) -> bytes:
    with await be.open_object("bkt", key) as reader:
        return b"".join([piece async for piece in reader.iter_range(0, reader.info.size)])


# -- which bodies take the one-hop path ---------------------------------------------------------
def test_only_bodies_of_known_small_length_fit() -> None:
    assert Writer.fits(Body(b"x" * 4096))
    assert Writer.fits(Body())  # empty
    assert Writer.fits(Body(declared=SMALL_PUT))
    assert not Writer.fits(Body(declared=SMALL_PUT + 1))
    assert not Writer.fits(Body(b"x", declared=None))  # length unknown: stream it


async def test_streamed_and_one_hop_puts_store_the_same(be: DiskBackend, root: Path) -> None:
    data = os.urandom(5000)
    meta = WriteMeta(headers={"content-type": "text/plain"}, user_meta={"a": "1"}, tags={"t": "v"})
    small = await be.put_object("bkt", "d/small", Body(data[:10], data[10:]), meta)
    streamed = await be.put_object("bkt", "d/streamed", Body(data[:10], data[10:], declared=None), meta)
    assert small.etag == streamed.etag == hashlib.md5(data).hexdigest()
    for key in ("d/small", "d/streamed"):
        head = await be.head_object("bkt", key)
        assert (head.size, head.headers, head.user_meta, head.tag_count) == (5000, {"content-type": "text/plain"}, {"a": "1"}, 1)
        assert await read_all(be, key) == data
    assert tmp_files(root) == []


async def test_fsynced_puts_and_deletes(root: Path, mode: str) -> None:
    be = await backend(root, mode, fsync=True)
    try:
        infos = await asyncio.gather(*(be.put_object("bkt", f"p/k{i}", Body(b"v%d" % i), WriteMeta()) for i in range(40)))
        assert [i.etag for i in infos] == [hashlib.md5(b"v%d" % i).hexdigest() for i in range(40)]
        assert sorted(os.listdir(root / "bkt" / "p")) == sorted(f"k{i}" for i in range(40))
        assert be.writer._syncs is not None and be.writer._syncs._folders == {}  # gone with its last caller
        await asyncio.gather(*(be.delete_object("bkt", f"p/k{i}") for i in range(40)))
        assert os.listdir(root / "bkt") == []
        assert tmp_files(root) == []
    finally:
        await be.stop()


async def test_overwrite_drops_the_old_overflow_record(be: DiskBackend, root: Path) -> None:
    big_tags = {f"key-{i:03d}" + "k" * 120: "v" * 256 for i in range(10)}  # > 4 KiB: overflows an xattr
    await be.put_object("bkt", "k", Body(b"one"), WriteMeta(tags=big_tags))
    blobs = root / ".s3serve" / "meta" / ".blobs"

    def blob_files() -> list[Path]:
        return [p for p in blobs.rglob("*") if p.is_file()] if blobs.exists() else []

    if be.meta.use_xattrs:
        assert len(blob_files()) == 1
    assert await be.get_object_tagging("bkt", "k") == big_tags
    await be.put_object("bkt", "k", Body(b"two"), WriteMeta())
    assert blob_files() == []
    assert await be.get_object_tagging("bkt", "k") == {}
    assert await read_all(be, "k") == b"two"


async def test_conflicts_and_symlinks_are_refused(
    be: DiskBackend, root: Path, tmp_path: Path, symlink_proof: str
) -> None:
    await be.put_object("bkt", "a", Body(b"file"), WriteMeta())
    with pytest.raises(errors.ObjectParentIsFile):
        await be.put_object("bkt", "a/b", Body(b"x"), WriteMeta())
    (root / "bkt" / "dir").mkdir()
    with pytest.raises(errors.ExistingObjectIsDirectory):
        await be.put_object("bkt", "dir", Body(b"x"), WriteMeta())
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "bkt" / "out").symlink_to(outside)
    with pytest.raises(errors.AccessDenied):
        await be.put_object("bkt", "out/k", Body(b"x"), WriteMeta())
    assert os.listdir(outside) == []
    with pytest.raises(errors.NoSuchBucket):
        await be.put_object("nope", "k", Body(b"x"), WriteMeta())
    assert tmp_files(root) == []


# -- the key lock, waited for in a worker thread -----------------------------------------------
async def test_put_and_delete_wait_for_a_lock_another_process_holds(root: Path, mode: str) -> None:
    first = await backend(root, mode)
    second = await backend(root, mode)  # stands for another process sharing ROOT
    try:
        await first.put_object("bkt", "gone", Body(b"old"), WriteMeta())
        async with second.locks.hold(second.locks.slot("bkt", "k"), second.locks.slot("bkt", "gone")):
            put = asyncio.create_task(first.put_object("bkt", "k", Body(b"mine"), WriteMeta()))
            delete = asyncio.create_task(first.delete_object("bkt", "gone"))
            await asyncio.sleep(0.2)
            assert not put.done() and not delete.done()
            assert not (root / "bkt" / "k").exists() and (root / "bkt" / "gone").exists()
            (root / "bkt" / "k").write_bytes(b"theirs")
        await asyncio.gather(put, delete)
        assert await read_all(first, "k") == b"mine"  # committed after the holder let go
        assert not (root / "bkt" / "gone").exists()
    finally:
        await first.stop()
        await second.stop()


async def test_concurrent_puts_of_one_key_leave_one_whole_version(root: Path, mode: str) -> None:
    first = await backend(root, mode)
    second = await backend(root, mode)
    try:
        bodies = [os.urandom(3000) for _ in range(20)]
        await asyncio.gather(
            *((first if i % 2 else second).put_object("bkt", "k", Body(b), WriteMeta()) for i, b in enumerate(bodies))
        )
        data = await read_all(first, "k")
        assert data in bodies
        assert (await second.head_object("bkt", "k")).etag == hashlib.md5(data).hexdigest()
        assert tmp_files(root) == []
    finally:
        await first.stop()
        await second.stop()


async def test_stop_lets_writes_in_flight_finish(root: Path, mode: str) -> None:
    be = await backend(root, mode, fsync=True)
    puts = [asyncio.ensure_future(be.put_object("bkt", f"k{i}", Body(b"v"), WriteMeta())) for i in range(20)]
    await asyncio.sleep(0)  # every put is now in the pool or about to enter it
    await be.stop()
    await asyncio.gather(*puts)
    assert len(os.listdir(root / "bkt")) == 20
    assert tmp_files(root) == []


def spread_files(root: Path) -> list[Path]:
    return [p for p in (root / ".s3serve" / "spread").rglob("*") if not p.is_dir()]


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "named_temp"])
async def test_new_inodes_come_unnamed_from_the_spread_folders(root: Path, mode: str, tmpfile: bool) -> None:
    be = await backend(root, mode, fsync=True)
    try:
        spread = root / ".s3serve" / "spread"
        assert os.listdir(spread) == []  # each folder is made when its turn first comes
        assert be.writer.use_tmpfile  # Linux with /proc: the fast way is available here
        be.writer.use_tmpfile = tmpfile
        name = be.writer.temp_name("put")
        fd, unnamed = be.writer._create_temp(name)
        os.close(fd)
        assert unnamed is tmpfile and os.path.exists(name) is not tmpfile
        if not tmpfile:
            os.unlink(name)
        for i in range(12):
            await be.put_object("bkt", f"k{i}", Body(b"v%d" % i), WriteMeta(user_meta={"i": str(i)}))
        await be.put_object("bkt", "k0", Body(b"again"), WriteMeta())  # over an existing object
        assert await read_all(be, "k0") == b"again"
        assert (await be.head_object("bkt", "k5")).user_meta == {"i": "5"}
        with pytest.raises(errors.ObjectParentIsFile):  # fails after the temp file exists
            await be.put_object("bkt", "k1/x", Body(b"x"), WriteMeta())
        assert spread_files(root) == [] and tmp_files(root) == []
        # One folder per new inode, in turn: the temp above, 12 puts, the overwrite, the failed put.
        assert sorted(os.listdir(spread), key=int) == ([str(i) for i in range(15)] if tmpfile else [])
        inodes = {os.stat(root / "bkt" / f"k{i}").st_ino for i in range(12)}
        assert len(inodes) == 12
    finally:
        await be.stop()


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "named_temp"])
async def test_a_streamed_put_takes_its_inode_from_a_spread_folder_too(root: Path, mode: str, tmpfile: bool) -> None:
    be = await backend(root, mode, fsync=True)
    seen: list[bool] = []

    class Watched(Body):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in self.chunks:
                yield chunk
                # Mid-write: the temp is named in .s3serve/tmp and flocked, so no GC takes it.
                (name,) = tmp_files(root)
                fd = os.open(root / ".s3serve" / "tmp" / name, os.O_RDONLY)
                try:
                    with pytest.raises(BlockingIOError):
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    seen.append(True)
                finally:
                    os.close(fd)

    try:
        be.writer.use_tmpfile = tmpfile
        data = os.urandom(SMALL_PUT + 1)  # too big for the one-hop path: streamed
        await be.put_object("bkt", "big", Watched(data[:1000], data[1000:]), WriteMeta())
        assert seen == [True, True]
        assert await read_all(be, "big") == data
        assert os.listdir(root / ".s3serve" / "spread") == (["0"] if tmpfile else [])
        assert spread_files(root) == [] and tmp_files(root) == []
    finally:
        await be.stop()


async def test_a_put_without_its_spread_folders_uses_a_named_temp(root: Path, mode: str) -> None:
    be = await backend(root, mode, fsync=True)
    try:
        await be.put_object("bkt", "a", Body(b"first"), WriteMeta())
        (root / ".s3serve" / "spread" / "0").rmdir()
        (root / ".s3serve" / "spread").rmdir()  # removed by hand while the server runs
        await be.put_object("bkt", "b", Body(b"second"), WriteMeta())
        assert await read_all(be, "a") == b"first" and await read_all(be, "b") == b"second"
        assert not (root / ".s3serve" / "spread").exists() and tmp_files(root) == []
    finally:
        await be.stop()


def test_temp_names_are_unique_and_locked_for_the_gc(tmp_path: Path) -> None:
    be = DiskBackend(tmp_path, OWNER)
    names = {be.writer.temp_name("put") for _ in range(1000)}
    assert len(names) == 1000
    assert all(os.path.basename(n).startswith(f"put-{os.getpid()}-") for n in names)


# -- coalesced directory fsync ------------------------------------------------------------------
@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[threading.Event]]:
    """Real directory fsyncs, each held until the test releases its event."""
    gates: list[threading.Event] = []
    real = keys.fsync_dir
    lock = threading.Lock()

    def gated(path: str) -> None:
        gate = threading.Event()
        with lock:
            gates.append(gate)
        assert gate.wait(60)
        real(path)

    monkeypatch.setattr(smallwrites.keys, "fsync_dir", gated)
    yield gates
    for gate in gates:
        gate.set()


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    # Generous: pool threads start late on a slow, loaded machine.
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


@pytest.fixture
async def syncs() -> AsyncIterator[FolderSyncs]:
    pool = smallwrites.WritePool(asyncio.get_running_loop(), 4)
    yield FolderSyncs(pool)
    await pool.close()


def waiting(syncs: FolderSyncs, path: Path) -> int:
    """Callers of ``syncs`` waiting on ``path`` (the tasks the test started have arrived)."""
    folder = syncs._folders.get(str(path))
    return 0 if folder is None else folder.waiting


async def test_callers_during_a_running_fsync_share_the_next_one(
    tmp_path: Path, fsyncs: list[threading.Event], syncs: FolderSyncs
) -> None:
    first = asyncio.create_task(syncs.sync(str(tmp_path)))
    await until(lambda: len(fsyncs) == 1)
    # These arrive while the first fsync runs: it may have begun before their renames.
    later = [asyncio.create_task(syncs.sync(str(tmp_path))) for _ in range(5)]
    await until(lambda: waiting(syncs, tmp_path) == 6)
    fsyncs[0].set()
    await first
    await until(lambda: len(fsyncs) == 2)  # one more fsync, for all five
    assert not any(task.done() for task in later)
    fsyncs[1].set()
    await asyncio.gather(*later)
    assert len(fsyncs) == 2
    assert syncs._folders == {}


async def test_a_failed_fsync_is_not_counted(tmp_path: Path, syncs: FolderSyncs) -> None:
    with pytest.raises(FileNotFoundError):
        await syncs.sync(str(tmp_path / "missing"))
    assert syncs._folders == {}
    await syncs.sync(str(tmp_path))  # a folder that exists still syncs


async def test_callers_waiting_for_a_failing_fsync_get_one_of_their_own(
    tmp_path: Path, fsyncs: list[threading.Event], syncs: FolderSyncs
) -> None:
    target = str(tmp_path / "f")
    os.mkdir(target)
    first = asyncio.create_task(syncs.sync(target))
    await until(lambda: len(fsyncs) == 1)
    second = asyncio.create_task(syncs.sync(target))
    await until(lambda: waiting(syncs, Path(target)) == 2)
    os.rmdir(target)  # the running fsync will fail: its folder is gone
    fsyncs[0].set()
    with pytest.raises(FileNotFoundError):
        await first
    await until(lambda: len(fsyncs) == 2)  # the waiter's own fsync, begun after the first ended
    assert not second.done()
    os.mkdir(target)
    fsyncs[1].set()
    await second
    assert syncs._folders == {}


async def test_a_cancelled_caller_leaves_the_shared_fsync_to_the_others(
    tmp_path: Path, fsyncs: list[threading.Event], syncs: FolderSyncs
) -> None:
    running = asyncio.create_task(syncs.sync(str(tmp_path)))
    await until(lambda: len(fsyncs) == 1)
    gone, staying = (asyncio.create_task(syncs.sync(str(tmp_path))) for _ in range(2))
    await until(lambda: waiting(syncs, tmp_path) == 3)
    gone.cancel()  # its client went away
    fsyncs[0].set()
    await running
    await until(lambda: len(fsyncs) == 2)  # the next fsync still runs, for the one left
    fsyncs[1].set()
    await staying
    assert gone.cancelled()
    assert len(fsyncs) == 2 and syncs._folders == {}


async def test_an_fsync_cancelled_at_shutdown_releases_its_callers(
    tmp_path: Path, syncs: FolderSyncs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool that is closing hands its work to the default executor, whose futures the loop's
    shutdown cancels: the callers of that fsync's generation are released, not left waiting."""
    pending: list[asyncio.Future[None]] = []

    def run(fn: Callable[..., None], *args: object) -> asyncio.Future[None]:
        pending.append(asyncio.get_running_loop().create_future())
        return pending[-1]

    monkeypatch.setattr(syncs._pool, "run", run)
    callers = [asyncio.create_task(syncs.sync(str(tmp_path))) for _ in range(3)]
    await until(lambda: waiting(syncs, tmp_path) == 3)
    assert len(pending) == 1  # the first caller's fsync; the other two share the next
    pending[0].cancel()
    await until(lambda: len(pending) == 2)
    assert callers[0].done() and not callers[1].done()
    pending[1].cancel()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    assert syncs._folders == {}


# -- the write pool -----------------------------------------------------------------------------
async def test_write_pool_returns_results_and_errors_in_batches() -> None:
    pool = smallwrites.WritePool(asyncio.get_running_loop(), 4)
    try:
        gate = threading.Event()

        def slow(i: int) -> int:
            assert gate.wait(5)
            return i * 2

        futures = [pool.run(slow, i) for i in range(50)]
        gate.set()
        assert await asyncio.gather(*futures) == [i * 2 for i in range(50)]
        with pytest.raises(FileNotFoundError):
            await pool.run(os.stat, "/nonexistent/s3serve-test")
        # A request that goes away does not take the pool with it; the work still completes.
        done = threading.Event()
        abandoned = pool.run(lambda: gate.wait(5) and done.set())
        abandoned.cancel()
        assert await pool.run(len, "abc") == 3
        assert done.wait(5)
    finally:
        await pool.close()
    assert all(not t.is_alive() for t in pool._threads)


async def test_a_backend_used_from_a_second_loop_gets_a_pool_there(root: Path, mode: str) -> None:
    be = await backend(root, mode)
    await be.put_object("bkt", "a", Body(b"1"), WriteMeta())
    first_pool = be.writer.pool()

    def in_new_loop() -> bytes:
        async def go() -> bytes:
            await be.put_object("bkt", "b", Body(b"2"), WriteMeta())
            data = await read_all(be, "b")
            await be.writer.close()
            return data

        return asyncio.run(go())

    assert await asyncio.to_thread(in_new_loop) == b"2"
    await first_pool.close()
    assert await read_all(be, "a") == b"1"
    await be.stop()
