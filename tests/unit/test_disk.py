"""DiskBackend against real files in tmp_path, in both metadata modes (xattr and sidecar)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from s3serve import errors
from s3serve.checksums import b64
from s3serve.storage import metadata
from s3serve.storage.base import ObjectInfo, WriteMeta
from s3serve.storage.disk import DiskBackend

OWNER = "owner-1"
OTHER = "owner-2"


class Body:
    """A request body that yields the given chunks; ``fail`` makes finish() refuse it.

    With ``declared`` (the ``write_path`` fixture sets it for a whole test) it announces its
    length as payload.RequestBody does, so a small one takes the one-hop write path
    (storage/smallwrites.py); without it every put streams through storage/streams.py."""

    declared = False

    def __init__(
        self,
        *chunks: bytes,
        digests: frozenset[str] = frozenset(),
        fail: errors.S3Error | None = None,
        pause: float = 0.0,
    ) -> None:
        self.chunks = chunks
        self.digests_wanted = digests
        self.declared_checksum: str | None = None
        self.fail = fail
        self.pause = pause
        self.seen: dict[str, bytes] = {}
        self.decoded_length = sum(map(len, chunks)) if Body.declared else None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.pause:
                await asyncio.sleep(self.pause)
            yield chunk

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        self.seen = digests
        if self.fail is not None:
            raise self.fail
        return {"CRC32": b64(digests["crc32"])} if "crc32" in digests else {}


def if_none_match(current: ObjectInfo | None) -> None:
    if current is not None:
        raise errors.PreconditionFailed()


def if_match(etag: str) -> Callable[[ObjectInfo | None], None]:
    def check(current: ObjectInfo | None) -> None:
        if current is None or current.etag != etag:
            raise errors.PreconditionFailed()

    return check


async def two_backends(root: Path, mode: str) -> tuple[DiskBackend, DiskBackend]:
    # Two backends on one ROOT stand for two server processes: only the on-disk lock is shared.
    first = DiskBackend(root, OWNER, fsync=False, use_xattrs=(mode == "xattr"))
    second = DiskBackend(root, OWNER, fsync=False, use_xattrs=(mode == "xattr"))
    await first.start()
    await second.start()
    await first.create_bucket("bkt", OWNER, "us-east-1")
    return first, second


@pytest.fixture(params=["stream", "small"], autouse=True)
def write_path(request: pytest.FixtureRequest) -> str:
    """Every test runs with bodies that stream and with bodies small enough for one hop."""
    Body.declared = request.param == "small"
    yield request.param
    Body.declared = False


@pytest.fixture
async def be(root: Path, mode: str) -> DiskBackend:
    backend = DiskBackend(root, OWNER, fsync=False, use_xattrs=(mode == "xattr"))
    await backend.start()
    assert backend.meta.use_xattrs is (mode == "xattr")
    await backend.create_bucket("bkt", OWNER, "us-east-1")
    return backend


def tmp_files(root: Path) -> list[str]:
    return os.listdir(root / ".s3serve" / "tmp")


async def read_all(be: DiskBackend, key: str, bucket: str = "bkt") -> bytes:
    with await be.open_object(bucket, key) as reader:
        return b"".join([piece async for piece in reader.iter_range(0, reader.info.size)])


# -- objects ------------------------------------------------------------------------------------
async def test_put_head_get_delete_round_trip(be: DiskBackend, root: Path) -> None:
    big = os.urandom(200_000)  # goes through the worker-thread write path
    meta = WriteMeta(
        headers={"Content-Type": "text/plain", "cache-control": "no-cache", "x-not-stored": "1"},
        user_meta={"color": "blue"},
        tags={"team": "a"},
    )
    body = Body(b"head-", big, b"-tail", digests=frozenset({"crc32"}))
    info = await be.put_object("bkt", "dir/sub/obj.txt", body, meta)
    data = b"head-" + big + b"-tail"
    assert info.etag == hashlib.md5(data).hexdigest()
    assert info.size == len(data)
    assert info.checksums == {"CRC32": b64(zlib.crc32(data).to_bytes(4, "big"))}
    assert info.checksum_type == "FULL_OBJECT"
    assert (root / "bkt" / "dir" / "sub" / "obj.txt").read_bytes() == data  # a plain file

    head = await be.head_object("bkt", "dir/sub/obj.txt")
    assert head.etag == info.etag
    assert head.headers == {"content-type": "text/plain", "cache-control": "no-cache"}
    assert head.user_meta == {"color": "blue"}
    assert head.tag_count == 1
    assert head.last_modified == pytest.approx(os.stat(root / "bkt/dir/sub/obj.txt").st_mtime)
    assert await read_all(be, "dir/sub/obj.txt") == data
    with await be.open_object("bkt", "dir/sub/obj.txt") as reader:
        fd = reader.fileno()
        assert fd is not None and os.pread(fd, 5, 0) == b"head-"
        assert b"".join([p async for p in reader.iter_range(3, 4)]) == b"d-" + big[:2]
    assert await be.get_object_tagging("bkt", "dir/sub/obj.txt") == {"team": "a"}

    await be.delete_object("bkt", "dir/sub/obj.txt")
    with pytest.raises(errors.NoSuchKey):
        await be.head_object("bkt", "dir/sub/obj.txt")
    assert os.listdir(root / "bkt") == []  # empty parents pruned, bucket kept
    await be.delete_object("bkt", "dir/sub/obj.txt")  # absent: no error
    assert tmp_files(root) == []


async def test_default_content_type_and_metadata_outside_the_data(
    be: DiskBackend, root: Path, mode: str
) -> None:
    await be.put_object("bkt", "k", Body(b"abc"), WriteMeta(user_meta={"x": "y"}))
    assert (await be.head_object("bkt", "k")).content_type == "binary/octet-stream"
    assert (root / "bkt" / "k").read_bytes() == b"abc"
    if mode == "xattr":
        record = be.meta.parse(os.getxattr(root / "bkt" / "k", metadata.XATTR))
        assert record is not None
        assert record.etag == hashlib.md5(b"abc").hexdigest()
        assert record.user_meta == {"x": "y"}
    else:
        assert os.listdir(root / ".s3serve" / "meta" / "bkt")


async def test_overwrite_replaces_bytes_and_metadata(be: DiskBackend) -> None:
    await be.put_object("bkt", "k", Body(b"one"), WriteMeta(user_meta={"v": "1"}, tags={"t": "1"}))
    info = await be.put_object("bkt", "k", Body(b"second"), WriteMeta(headers={"content-type": "a/b"}))
    head = await be.head_object("bkt", "k")
    assert (head.etag, head.user_meta, head.tag_count, head.content_type) == (info.etag, {}, 0, "a/b")
    assert await read_all(be, "k") == b"second"


async def test_reader_keeps_the_version_it_opened(be: DiskBackend) -> None:
    await be.put_object("bkt", "k", Body(b"old bytes"), WriteMeta())
    reader = await be.open_object("bkt", "k")
    await be.put_object("bkt", "k", Body(b"new"), WriteMeta())
    try:
        assert reader.info.size == 9
        assert b"".join([p async for p in reader.iter_range(0, 9)]) == b"old bytes"
    finally:
        reader.close()
    assert await read_all(be, "k") == b"new"


async def test_empty_object(be: DiskBackend) -> None:
    info = await be.put_object("bkt", "empty", Body(), WriteMeta())
    assert (info.size, info.etag) == (0, metadata.EMPTY_MD5)
    assert await read_all(be, "empty") == b""


# -- failures leave nothing behind --------------------------------------------------------------
@pytest.mark.parametrize("chunks", [(b"small",), (b"x" * 100_000, b"y" * 70_000)])
async def test_failed_finish_leaves_no_object_and_no_temp(
    be: DiskBackend, root: Path, chunks: tuple[bytes, ...]
) -> None:
    body = Body(*chunks, fail=errors.BadDigest())
    with pytest.raises(errors.BadDigest):
        await be.put_object("bkt", "a/k", body, WriteMeta())
    assert body.seen["md5"] == hashlib.md5(b"".join(chunks)).digest()
    with pytest.raises(errors.NoSuchKey):
        await be.head_object("bkt", "a/k")
    assert not (root / "bkt" / "a" / "k").exists()
    assert tmp_files(root) == []


async def test_failed_finish_keeps_previous_version(be: DiskBackend) -> None:
    await be.put_object("bkt", "k", Body(b"good"), WriteMeta())
    with pytest.raises(errors.BadDigest):
        await be.put_object("bkt", "k", Body(b"bad", fail=errors.BadDigest()), WriteMeta())
    assert await read_all(be, "k") == b"good"


class StallingBody(Body):
    """A Body whose client sends its first chunk, then nothing more: ``stalled`` is set once the
    writer has taken that chunk and waits for the next."""

    def __init__(self, *chunks: bytes) -> None:
        super().__init__(*chunks)
        self.stalled = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.chunks[0]
        self.stalled.set()
        await asyncio.Event().wait()


async def test_cancelled_upload_leaves_no_temp(be: DiskBackend, root: Path, write_path: str) -> None:
    body = StallingBody(b"a" * 10, b"b" * 10)
    task = asyncio.create_task(be.put_object("bkt", "k", body, WriteMeta()))
    # Inside the iteration, a chunk written (streaming) or held in memory, however long this
    # machine takes to get there (a fixed sleep could cancel before it, or after the end).
    await asyncio.wait_for(body.stalled.wait(), 30)
    assert len(tmp_files(root)) == (1 if write_path == "stream" else 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tmp_files(root) == []
    assert not (root / "bkt" / "k").exists()


async def test_concurrent_if_none_match_puts_exactly_one_wins(root: Path, mode: str) -> None:
    first, second = await two_backends(root, mode)
    for round_ in range(5):
        key = f"race-{round_}"
        results = await asyncio.gather(
            first.put_object("bkt", key, Body(b"first", b"!", pause=0.001), WriteMeta(), if_none_match),
            second.put_object("bkt", key, Body(b"second", b"!", pause=0.001), WriteMeta(), if_none_match),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, ObjectInfo)]
        losers = [r for r in results if isinstance(r, errors.PreconditionFailed)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert (await first.head_object("bkt", key)).etag == winners[0].etag
    assert tmp_files(root) == []


async def test_concurrent_if_match_puts_exactly_one_wins(root: Path, mode: str) -> None:
    # The current version is a foreign file, so evaluating the precondition hashes it in a worker
    # thread: both writers are inside check-then-rename at once unless the key lock orders them.
    first, second = await two_backends(root, mode)
    for round_ in range(3):
        key = f"race-{round_}"
        (root / "bkt" / key).write_bytes(b"original" * 100_000)
        etag = hashlib.md5(b"original" * 100_000).hexdigest()
        results = await asyncio.gather(
            first.put_object("bkt", key, Body(b"first"), WriteMeta(), if_match(etag)),
            second.put_object("bkt", key, Body(b"second"), WriteMeta(), if_match(etag)),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, ObjectInfo)]
        assert len(winners) == 1, results
        assert sum(isinstance(r, errors.PreconditionFailed) for r in results) == 1
        assert (await second.head_object("bkt", key)).etag == winners[0].etag


async def test_precondition_sees_what_the_lock_holder_wrote(root: Path, mode: str) -> None:
    first, second = await two_backends(root, mode)
    async with second.locks.hold(second.locks.slot("bkt", "k")):
        task = asyncio.create_task(first.put_object("bkt", "k", Body(b"mine"), WriteMeta(), if_none_match))
        await asyncio.sleep(0.1)
        assert not task.done()  # waits for the other "process"
        (root / "bkt" / "k").write_bytes(b"theirs")
    with pytest.raises(errors.PreconditionFailed):
        await task
    assert (root / "bkt" / "k").read_bytes() == b"theirs"
    assert tmp_files(root) == []


# -- foreign files ------------------------------------------------------------------------------
async def test_foreign_file_etag_computed_once_and_cached(be: DiskBackend, root: Path, mode: str) -> None:
    path = root / "bkt" / "docs" / "report.json"
    path.parent.mkdir()
    path.write_bytes(b'{"a": 1}')
    info = await be.head_object("bkt", "docs/report.json")
    assert info.etag == hashlib.md5(b'{"a": 1}').hexdigest()
    assert info.content_type == "application/json"
    if mode == "xattr":
        cached = be.meta.parse(os.getxattr(path, metadata.XATTR))
        assert cached is not None and cached.etag == info.etag
    # Same size, same mtime, same inode: the cached record is used, the file is not hashed again.
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(b'{"b": 2}')
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (await be.head_object("bkt", "docs/report.json")).etag == info.etag
    # A real modification (size and mtime change) makes it foreign again: a new ETag.
    path.write_bytes(b'{"b": 2, "c": 3}')
    changed = await be.head_object("bkt", "docs/report.json")
    assert changed.etag == hashlib.md5(b'{"b": 2, "c": 3}').hexdigest()
    assert await read_all(be, "docs/report.json") == b'{"b": 2, "c": 3}'


async def test_big_foreign_file_gets_an_identity_etag_without_being_read(
    be: DiskBackend, root: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3serve.storage import foreign

    path = root / "bkt" / "big.bin"
    data = os.urandom(foreign.HASHED_FOREIGN_MAX + 1)
    path.write_bytes(data)
    reads: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", counting_pread)
    (listed,) = (await be.list_objects("bkt", "big", "", "", 10)).objects
    st = os.stat(path)
    identity = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    assert listed.etag == hashlib.md5(identity).hexdigest() + "-1" and listed.size == len(data)
    assert reads == []  # adopted without reading its bytes
    # The same answer on HEAD, and GET sends the file's bytes.
    info = await be.head_object("bkt", "big.bin")
    assert info.etag == listed.etag and reads == []
    monkeypatch.setattr(os, "pread", real_pread)
    assert await read_all(be, "big.bin") == data
    # Changed (size and mtime): a new ETag. A file at the limit still gets the MD5 of its bytes.
    with open(path, "ab") as f:
        f.write(b"more")
    assert (await be.head_object("bkt", "big.bin")).etag not in (info.etag, hashlib.md5(data + b"more").hexdigest())
    with open(path, "r+b") as f:
        f.truncate(foreign.HASHED_FOREIGN_MAX)
    assert (await be.head_object("bkt", "big.bin")).etag == hashlib.md5(data[: foreign.HASHED_FOREIGN_MAX]).hexdigest()


async def test_a_page_of_foreign_files_is_hashed_in_parallel_and_in_order(
    be: DiskBackend, root: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from s3serve.storage import foreign

    files = {f"photos/{i:03d}.jpg": os.urandom(1000 + i * 997) for i in range(40)}
    for key, data in files.items():
        (root / "bkt" / key).parent.mkdir(parents=True, exist_ok=True)
        (root / "bkt" / key).write_bytes(data)
    # Mixed in: an object of ours, whose record needs no hashing.
    await be.put_object("bkt", "photos/010a.txt", Body(b"ours"), WriteMeta())
    threads: set[str] = set()
    real_adopt = foreign.adopt

    def watching_adopt(*args):  # type: ignore[no-untyped-def]
        threads.add(threading.current_thread().name)
        return real_adopt(*args)

    monkeypatch.setattr(foreign, "adopt", watching_adopt)
    monkeypatch.setattr(foreign, "HASH_THREADS", 4)
    page = await be.list_objects("bkt", "photos/", "", "", 1000)
    expected = sorted([*files, "photos/010a.txt"])
    assert [o.key for o in page.objects] == expected
    for obj in page.objects:
        data = files.get(obj.key, b"ours")
        assert (obj.etag, obj.size) == (hashlib.md5(data).hexdigest(), len(data))
        if obj.key.endswith(".jpg"):
            assert obj.headers.get("content-type") == "image/jpeg"
    assert threads and all(name.startswith("s3serve-hash") for name in threads)
    # Cached: the next listing hashes nothing.
    threads.clear()
    again = await be.list_objects("bkt", "photos/", "", "", 1000)
    assert [(o.key, o.etag) for o in again.objects] == [(o.key, o.etag) for o in page.objects] and not threads


async def test_foreign_content_types(be: DiskBackend, root: Path) -> None:
    for name, expected in [
        ("x.tar.gz", "application/gzip"),
        ("noext", "binary/octet-stream"),
        ("p.png", "image/png"),
    ]:
        (root / "bkt" / name).write_bytes(b"data")
        assert (await be.head_object("bkt", name)).content_type == expected


# -- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "a//b", "/abs", "nul\x00", "."])
async def test_unstorable_keys_are_refused(be: DiskBackend, root: Path, key: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="cannot be stored on this server's filesystem"):
        await be.put_object("bkt", key, Body(b"x"), WriteMeta())
    # S3 takes every one of these but the NUL's (unknown there): never here, so never found.
    with pytest.raises(errors.InvalidArgument if "\x00" in key else errors.NoSuchKey):
        await be.head_object("bkt", key)
    assert not (root / "escape").exists() and not (root.parent / "escape").exists()
    assert tmp_files(root) == []


async def test_long_keys_are_refused(be: DiskBackend) -> None:
    with pytest.raises(errors.KeyTooLongError):
        await be.put_object("bkt", "k" * 1025, Body(b"x"), WriteMeta())
    with pytest.raises(errors.KeyTooLongError):
        await be.put_object("bkt", "d/" + "s" * 256, Body(b"x"), WriteMeta())


async def test_bucket_checked_before_key(be: DiskBackend) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await be.head_object("nope", "../bad")
    with pytest.raises(errors.NoSuchBucket):
        await be.put_object("nope", "k", Body(b"x"), WriteMeta())
    with pytest.raises(errors.NoSuchBucket):
        await be.list_objects(".s3serve", "", "", "", 10)


async def test_symlinks_never_lead_outside_root(
    be: DiskBackend, root: Path, tmp_path: Path, symlink_proof: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    os.symlink(outside / "secret", root / "bkt" / "link")
    os.symlink(outside, root / "bkt" / "dirlink")
    for key in ("link", "dirlink/secret"):
        with pytest.raises(errors.NoSuchKey):
            await be.head_object("bkt", key)
        with pytest.raises(errors.NoSuchKey):
            await be.open_object("bkt", key)
    for key in ("link", "dirlink/new", "dirlink/secret"):
        with pytest.raises(errors.AccessDenied):
            await be.put_object("bkt", key, Body(b"overwrite"), WriteMeta())
    with pytest.raises(errors.NoSuchKey):
        await be.copy_object("bkt", "link", "bkt", "copy", None)
    await be.delete_object("bkt", "dirlink/secret")
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"
    assert tmp_files(root) == []


async def test_symlink_inside_root_is_followed(be: DiskBackend, root: Path, symlink_proof: str) -> None:
    await be.put_object("bkt", "target", Body(b"inside"), WriteMeta(user_meta={"m": "1"}))
    os.symlink(root / "bkt" / "target", root / "bkt" / "alias")
    assert await read_all(be, "alias") == b"inside"
    await be.delete_object("bkt", "alias")  # removes the link, not the target or its metadata
    assert not os.path.lexists(root / "bkt" / "alias")
    assert (await be.head_object("bkt", "target")).user_meta == {"m": "1"}
    # A symlinked folder inside ROOT on the way of a write, a read and a delete.
    await be.put_object("bkt", "dir/old", Body(b"old"), WriteMeta())
    os.symlink(root / "bkt" / "dir", root / "bkt" / "dirlink")
    await be.put_object("bkt", "dirlink/new", Body(b"through the link"), WriteMeta())
    assert (root / "bkt" / "dir" / "new").read_bytes() == b"through the link"
    assert await read_all(be, "dirlink/new") == b"through the link"
    await be.delete_object("bkt", "dirlink/old")
    assert not (root / "bkt" / "dir" / "old").exists()


async def test_file_folder_conflicts_are_409(be: DiskBackend, root: Path) -> None:
    await be.put_object("bkt", "a", Body(b"file"), WriteMeta())
    with pytest.raises(errors.ObjectParentIsFile) as parent:
        await be.put_object("bkt", "a/b", Body(b"x"), WriteMeta())
    await be.put_object("bkt", "x/y", Body(b"deep"), WriteMeta())
    with pytest.raises(errors.ExistingObjectIsDirectory) as directory:
        await be.put_object("bkt", "x", Body(b"x"), WriteMeta())
    assert parent.value.status == directory.value.status == 409
    with pytest.raises(errors.ObjectParentIsFile):
        await be.put_object("bkt", "a/", Body(), WriteMeta())  # a folder where the file "a" is
    await be.put_object("bkt", "m/", Body(), WriteMeta())
    with pytest.raises(errors.ExistingObjectIsDirectory):
        await be.put_object("bkt", "m", Body(b"x"), WriteMeta())  # a file where the folder "m/" is
    with pytest.raises(errors.NoSuchKey):
        await be.head_object("bkt", "x")  # a plain folder is not an object
    with pytest.raises(errors.NoSuchKey):
        await be.head_object("bkt", "a/b")
    assert await read_all(be, "a") == b"file" and await read_all(be, "x/y") == b"deep"
    assert tmp_files(root) == []


# -- folder markers -----------------------------------------------------------------------------
async def test_folder_markers(be: DiskBackend, root: Path) -> None:
    info = await be.put_object(
        "bkt", "photos/", Body(), WriteMeta(headers={"content-type": "application/x-directory"})
    )
    assert info.is_folder and info.size == 0 and info.etag == metadata.EMPTY_MD5
    assert (root / "bkt" / "photos").is_dir()
    head = await be.head_object("bkt", "photos/")
    assert head.is_folder and head.content_type == "application/x-directory"
    with pytest.raises(errors.NoSuchKey):
        await be.head_object("bkt", "photos")
    assert await read_all(be, "photos/") == b""
    with pytest.raises(errors.InvalidArgument):
        await be.put_object("bkt", "other/", Body(b"content"), WriteMeta())

    await be.put_object("bkt", "photos/cat.jpg", Body(b"meow"), WriteMeta())
    await be.delete_object("bkt", "photos/cat.jpg")
    assert (await be.head_object("bkt", "photos/")).is_folder  # the marker keeps its folder
    await be.put_object("bkt", "photos/cat.jpg", Body(b"meow"), WriteMeta())
    await be.delete_object("bkt", "photos/")
    with pytest.raises(errors.NoSuchKey):
        await be.head_object("bkt", "photos/")
    assert await read_all(be, "photos/cat.jpg") == b"meow"  # keys below it stay
    await be.delete_object("bkt", "photos/cat.jpg")
    assert os.listdir(root / "bkt") == []


async def test_delete_prunes_parents_but_not_markers(be: DiskBackend, root: Path) -> None:
    await be.put_object("bkt", "a/", Body(), WriteMeta())
    await be.put_object("bkt", "a/b/c/d", Body(b"1"), WriteMeta())
    await be.put_object("bkt", "a/b/e", Body(b"2"), WriteMeta())
    await be.delete_object("bkt", "a/b/c/d")
    assert sorted(os.listdir(root / "bkt" / "a" / "b")) == ["e"]
    await be.delete_object("bkt", "a/b/e")
    assert os.listdir(root / "bkt" / "a") == []
    assert (await be.head_object("bkt", "a/")).is_folder


# -- copy and rename ----------------------------------------------------------------------------
async def test_linked_copy_has_its_own_last_modified(be: DiskBackend, root: Path) -> None:
    """A copy made as a hard link shares the source's inode and mtime, but to S3 it is a new
    object written now: HEAD, GET and listings give it the copy's time, the source keeps its own."""
    # With a checksum, as s3serve writes it: only such files are copied by link.
    await be.put_object("bkt", "src", Body(os.urandom(200_000), digests=frozenset({"crc32"})), WriteMeta())
    src = await be.head_object("bkt", "src")
    await asyncio.sleep(0.05)
    copied = await be.copy_object("bkt", "src", "bkt", "copy", None)
    assert os.stat(root / "bkt/copy").st_ino == os.stat(root / "bkt/src").st_ino  # linked
    assert copied.last_modified > src.last_modified + 0.04
    assert (await be.head_object("bkt", "copy")).last_modified == copied.last_modified
    assert (await be.head_object("bkt", "src")).last_modified == src.last_modified
    listed = {o.key: o.last_modified for o in (await be.list_objects("bkt", "", "", "", 10)).objects}
    assert listed == {"copy": copied.last_modified, "src": src.last_modified}
    # A copy of the copy is newer still; tagging the copy does not move its time.
    await asyncio.sleep(0.05)
    again = await be.copy_object("bkt", "copy", "bkt", "again", None)
    assert again.last_modified > copied.last_modified
    await be.put_object_tagging("bkt", "copy", {"t": "v"})
    assert (await be.head_object("bkt", "copy")).last_modified == copied.last_modified


async def test_linked_copy_onto_the_same_inode_leaves_no_temp_link(be: DiskBackend, root: Path) -> None:
    """rename() between two names of one inode does nothing: copying again onto a copy that is
    already a link of the source, or an object onto itself, must not leave the new link behind."""
    data = os.urandom(200_000)
    await be.put_object("bkt", "src", Body(data, digests=frozenset({"crc32"})), WriteMeta())
    await be.copy_object("bkt", "src", "bkt", "copy", None)
    await be.copy_object("bkt", "src", "bkt", "copy", WriteMeta(user_meta={"round": "2"}))
    await be.copy_object("bkt", "src", "bkt", "src", WriteMeta(user_meta={"self": "1"}))
    assert tmp_files(root) == []
    assert os.stat(root / "bkt/src").st_nlink == 2  # src and copy, nothing else
    assert (await be.head_object("bkt", "copy")).user_meta == {"round": "2"}
    assert (await be.head_object("bkt", "src")).user_meta == {"self": "1"}
    assert await read_all(be, "copy") == data and await read_all(be, "src") == data


async def test_copy_keeps_bytes_and_metadata(be: DiskBackend, root: Path) -> None:
    data = os.urandom(300_000)
    meta = WriteMeta(headers={"content-type": "image/png"}, user_meta={"m": "1"}, tags={"t": "v"})
    src = await be.put_object("bkt", "src/img.png", Body(data), meta)
    await be.create_bucket("other", OWNER, "us-east-1")
    copied = await be.copy_object("bkt", "src/img.png", "other", "dst/img.png", None)
    assert (copied.etag, copied.content_type, copied.user_meta, copied.tag_count) == (
        src.etag,
        "image/png",
        {"m": "1"},
        1,
    )
    assert await read_all(be, "dst/img.png", "other") == data
    assert os.stat(root / "other/dst/img.png").st_ino != os.stat(root / "bkt/src/img.png").st_ino
    assert await be.get_object_tagging("other", "dst/img.png") == {"t": "v"}

    replaced = await be.copy_object(
        "bkt",
        "src/img.png",
        "bkt",
        "src/img.png",
        WriteMeta(user_meta={"new": "2"}, checksum_algorithm="CRC32"),
    )
    head = await be.head_object("bkt", "src/img.png")
    assert (head.etag, head.user_meta, head.content_type, head.tag_count) == (
        src.etag,
        {"new": "2"},
        "binary/octet-stream",
        1,
    )
    assert replaced.checksums == {"CRC32": b64(zlib.crc32(data).to_bytes(4, "big"))}
    assert await read_all(be, "src/img.png") == data
    assert tmp_files(root) == []


async def test_copy_preconditions_and_missing_source(be: DiskBackend) -> None:
    await be.put_object("bkt", "s", Body(b"1"), WriteMeta())
    await be.put_object("bkt", "d", Body(b"2"), WriteMeta())
    with pytest.raises(errors.PreconditionFailed):
        await be.copy_object("bkt", "s", "bkt", "d", None, precondition=if_none_match)
    assert await read_all(be, "d") == b"2"

    def src_must_be_absent(info: ObjectInfo | None) -> None:
        raise errors.PreconditionFailed()

    with pytest.raises(errors.PreconditionFailed):
        await be.copy_object("bkt", "s", "bkt", "n", None, src_precondition=src_must_be_absent)
    with pytest.raises(errors.NoSuchKey):
        await be.copy_object("bkt", "missing", "bkt", "n", None)
    with pytest.raises(errors.NoSuchKey):
        await be.head_object("bkt", "n")


async def test_rename_moves_file_and_metadata(be: DiskBackend, root: Path) -> None:
    src = await be.put_object(
        "bkt", "old/dir/k", Body(b"payload"), WriteMeta(user_meta={"a": "b"}, tags={"x": "y"})
    )
    ino = os.stat(root / "bkt/old/dir/k").st_ino
    info = await be.rename_object("bkt", "old/dir/k", "new/k")
    assert (info.key, info.etag) == ("new/k", src.etag)
    head = await be.head_object("bkt", "new/k")
    assert (head.etag, head.user_meta, head.tag_count) == (src.etag, {"a": "b"}, 1)
    assert os.stat(root / "bkt/new/k").st_ino == ino  # one rename, no copy
    assert not (root / "bkt" / "old").exists()
    with pytest.raises(errors.NoSuchKey):
        await be.head_object("bkt", "old/dir/k")
    with pytest.raises(errors.NoSuchKey):
        await be.rename_object("bkt", "old/dir/k", "again")
    await be.put_object("bkt", "d/x", Body(b"x"), WriteMeta())
    with pytest.raises(errors.ExistingObjectIsDirectory):
        await be.rename_object("bkt", "new/k", "d")
    await be.put_object("bkt", "taken", Body(b"t"), WriteMeta())
    with pytest.raises(errors.PreconditionFailed):
        await be.rename_object("bkt", "new/k", "taken", precondition=if_none_match)
    assert await read_all(be, "new/k") == b"payload" and await read_all(be, "taken") == b"t"


# -- tagging ------------------------------------------------------------------------------------
async def test_tagging(be: DiskBackend, root: Path) -> None:
    await be.put_object("bkt", "k", Body(b"v"), WriteMeta())
    big = {f"key-{i:03d}" + "k" * 120: "v" * 256 for i in range(10)}  # > 4 KiB: overflows an xattr
    await be.put_object_tagging("bkt", "k", big)
    assert await be.get_object_tagging("bkt", "k") == big
    assert (await be.head_object("bkt", "k")).tag_count == 10
    await be.delete_object_tagging("bkt", "k")
    assert await be.get_object_tagging("bkt", "k") == {}
    await be.put_object_tagging("bkt", "k", big)
    await be.delete_object("bkt", "k")
    blobs = root / ".s3serve" / "meta" / ".blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))
    with pytest.raises(errors.NoSuchKey):
        await be.put_object_tagging("bkt", "k", {"a": "b"})


# -- listing ------------------------------------------------------------------------------------
async def test_list_objects_turns_entries_into_infos(be: DiskBackend, root: Path) -> None:
    await be.put_object("bkt", "a/1", Body(b"one"), WriteMeta(user_meta={"u": "1"}))
    await be.put_object("bkt", "a/", Body(), WriteMeta())
    await be.put_object("bkt", "b/2", Body(b"two"), WriteMeta())
    (root / "bkt" / "c.txt").write_bytes(b"foreign")
    (root / "bkt" / "empty").mkdir()
    page = await be.list_objects("bkt", "", "", "", 1000)
    assert [o.key for o in page.objects] == ["a/", "a/1", "b/2", "c.txt"]
    by_key = {o.key: o for o in page.objects}
    assert by_key["c.txt"].etag == hashlib.md5(b"foreign").hexdigest()
    assert by_key["a/"].is_folder and by_key["a/1"].user_meta == {"u": "1"}
    grouped = await be.list_objects("bkt", "", "/", "", 1000)
    assert [o.key for o in grouped.objects] == ["c.txt"]
    assert grouped.common_prefixes == ["a/", "b/"]
    first = await be.list_objects("bkt", "", "", "", 2)
    assert [o.key for o in first.objects] == ["a/", "a/1"] and first.is_truncated


# -- buckets ------------------------------------------------------------------------------------
async def test_bucket_rules(be: DiskBackend, root: Path) -> None:
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        await be.create_bucket("bkt", OWNER, "us-east-1")
    with pytest.raises(errors.BucketAlreadyExists):
        await be.create_bucket("bkt", OTHER, "us-east-1")
    for bad in ("UPPER", "ab", "a..b", "10.0.0.1", "xn--x", "x-s3alias"):
        with pytest.raises(errors.InvalidBucketName):
            await be.create_bucket(bad, OWNER, "us-east-1")
    made = await be.create_bucket("second", OTHER, "eu-west-1")
    head = await be.head_bucket("second")
    assert (head.owner, head.region, head.created) == (OTHER, "eu-west-1", made.created)
    with pytest.raises(errors.NoSuchBucket):
        await be.head_bucket("missing")

    await be.put_object("second", "deep/k", Body(b"x"), WriteMeta())
    with pytest.raises(errors.BucketNotEmpty):
        await be.delete_bucket("second")
    await be.delete_object("second", "deep/k")
    (root / "second" / "left" / "over").mkdir(parents=True)  # empty folders are not objects
    await be.delete_bucket("second")
    assert not (root / "second").exists()
    with pytest.raises(errors.NoSuchBucket):
        await be.head_bucket("second")
    # The name is free again, and the old owner's record is gone.
    assert (await be.create_bucket("second", OWNER, "us-east-1")).owner == OWNER
    assert (await be.head_bucket("second")).owner == OWNER


async def test_bucket_with_only_a_folder_marker_is_not_empty(be: DiskBackend) -> None:
    await be.put_object("bkt", "keep/", Body(), WriteMeta())
    with pytest.raises(errors.BucketNotEmpty):
        await be.delete_bucket("bkt")


async def test_foreign_bucket_folders(be: DiskBackend, root: Path) -> None:
    (root / "Legacy_Data").mkdir()
    (root / ".hidden").mkdir()
    (root / "has space").mkdir()
    (root / "plainfile").write_bytes(b"not a bucket")
    names = [b.name for b in await be.list_buckets()]
    assert names == ["Legacy_Data", "bkt"]
    legacy = await be.head_bucket("Legacy_Data")
    assert legacy.owner == OWNER
    assert legacy.created == pytest.approx(os.stat(root / "Legacy_Data").st_mtime)
    with pytest.raises(errors.BucketAlreadyExists):
        await be.create_bucket("plainfile", OWNER, "us-east-1")
    for hidden in (".s3serve", ".hidden"):
        with pytest.raises(errors.NoSuchBucket):
            await be.head_bucket(hidden)


@pytest.mark.parametrize(
    ("errno_", "code", "status"),
    [
        (errno.ENOSPC, "XMinioStorageFull", 507),  # no blocks, or no inodes
        (errno.EDQUOT, "XMinioStorageFull", 507),
        (errno.EACCES, "AccessDenied", 403),
        (errno.EPERM, "AccessDenied", 403),
        (errno.EROFS, "AccessDenied", 403),
        (errno.ENAMETOOLONG, "KeyTooLongError", 400),  # ROOT + key past PATH_MAX
        (errno.EFBIG, "EntityTooLarge", 400),
        (errno.EMFILE, "SlowDown", 503),
    ],
)
def test_filesystem_refusals_are_s3_errors(errno_: int, code: str, status: int) -> None:
    from s3serve.storage.faults import translate

    mapped = translate(OSError(errno_, os.strerror(errno_), "/root/bkt/key"), "key")
    assert mapped is not None and (mapped.code, mapped.status, mapped.resource) == (code, status, "key")


async def test_a_backend_operation_raises_the_refusal_as_its_s3_error() -> None:
    from s3serve.storage.faults import as_s3_errors

    @as_s3_errors
    async def operation(code: int) -> None:
        raise OSError(code, os.strerror(code), "/root/bkt/key")

    with pytest.raises(errors.AccessDenied) as refused:
        await operation(errno.EACCES)
    assert isinstance(refused.value.__cause__, OSError) and refused.value.__cause__.errno == errno.EACCES
    with pytest.raises(OSError) as fault:  # a real fault stays itself, for the 500 and its log
        await operation(errno.EIO)
    assert fault.value.errno == errno.EIO and not isinstance(fault.value, errors.S3Error)


def test_real_faults_and_lost_connections_stay_what_they_are() -> None:
    from s3serve.storage.faults import translate

    # EIO is a fault of the server's disk (logged with its traceback as an InternalError); a
    # client gone mid-body must stay a ConnectionError for the handlers that look for one.
    for exc in (OSError(errno.EIO, "I/O error"), ConnectionResetError(errno.ECONNRESET, "reset"), BrokenPipeError()):
        assert translate(exc) is None
