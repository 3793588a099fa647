"""Multipart staging and its GC against real files in tmp_path, in both metadata modes."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from s3serve import errors
from s3serve.storage import assembly, gc
from s3serve.storage.base import ObjectInfo, PartInfo, WriteMeta
from s3serve.storage.disk import DiskBackend
from s3serve.storage.gc import create_locked
from s3serve.storage.staging import check_checksum_choice
from tests.conftest import until

OWNER = "owner-1"
KIB = 1024


class Body:
    """A request body yielding the given chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.digests_wanted: frozenset[str] = frozenset()
        self.declared_checksum: str | None = None
        self.decoded_length: int | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        return {}


class HeldBody(Body):
    """A body whose client sends nothing until the test lets it (``go``): ``waiting`` is set once
    the writer asks for the first chunk, with the part's slot or file open. Slow clients made
    with fixed pauses raced the test's own steps on a slow, loaded machine."""

    def __init__(self, *chunks: bytes) -> None:
        super().__init__(*chunks)
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.waiting.set()
        await self.go.wait()
        for chunk in self.chunks:
            yield chunk


@pytest.fixture(params=["xattr", "sidecar"])
async def be(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DiskBackend]:
    backend = DiskBackend(
        tmp_path / "root", OWNER, fsync=False, min_part_size=KIB, use_xattrs=request.param == "xattr",
        multipart_expiry=3600, gc_interval=3600,
    )
    await backend.start()
    await backend.create_bucket("bkt", OWNER, "us-east-1")
    yield backend
    await backend.stop()


def staging_dir(be: DiskBackend) -> Path:
    return Path(be.staging.bucket_dir("bkt"))


async def read_all(be: DiskBackend, key: str) -> bytes:
    with await be.open_object("bkt", key) as reader:
        return b"".join([piece async for piece in reader.iter_range(0, reader.info.size)])


def test_checksum_choice_defaults_and_refusals() -> None:
    assert check_checksum_choice(WriteMeta(checksum_algorithm="CRC32")).checksum_type == "COMPOSITE"
    assert check_checksum_choice(WriteMeta(checksum_algorithm="CRC64NVME")).checksum_type == "FULL_OBJECT"
    assert check_checksum_choice(WriteMeta()).checksum_type is None
    for algorithm, kind in (("SHA1", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE"), (None, "COMPOSITE")):
        with pytest.raises(errors.InvalidRequest):
            check_checksum_choice(WriteMeta(checksum_algorithm=algorithm, checksum_type=kind))


async def test_complete_assembles_and_parts_survive_a_restart(be: DiskBackend) -> None:
    parts = [os.urandom(2 * KIB), os.urandom(KIB), b"end"]
    upload = await be.create_multipart_upload("bkt", "dir/obj", WriteMeta(headers={"content-type": "a/b"}), OWNER)
    infos = [await be.upload_part("bkt", "dir/obj", upload.upload_id, n, Body(p)) for n, p in enumerate(parts, 1)]
    info = await be.complete_multipart_upload("bkt", "dir/obj", upload.upload_id, infos)
    expected_etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert info.etag == expected_etag and info.size == sum(map(len, parts))
    assert await read_all(be, "dir/obj") == b"".join(parts)
    assert list(staging_dir(be).iterdir()) == []
    again = DiskBackend(be.root, OWNER, fsync=False, use_xattrs=be.meta.use_xattrs)
    await again.start()
    try:
        head = await again.head_object("bkt", "dir/obj")
        assert head.parts is not None
        assert [(p.number, p.size, p.etag) for p in head.parts] == [
            (n, len(p), hashlib.md5(p).hexdigest()) for n, p in enumerate(parts, 1)
        ]
        assert head.etag == expected_etag and head.headers["content-type"] == "a/b"
    finally:
        await again.stop()


async def test_malformed_upload_ids_are_no_such_upload(be: DiskBackend, tmp_path: Path) -> None:
    (tmp_path / "victim").mkdir()
    for bad in ("../../../victim", "g" * 48, "A" * 48, "", "0" * 47, "0" * 48 + "/x"):
        with pytest.raises(errors.NoSuchUpload):
            await be.upload_part("bkt", "k", bad, 1, Body(b"x"))
        with pytest.raises(errors.NoSuchUpload):
            await be.abort_multipart_upload("bkt", "k", bad)
    assert list((tmp_path / "victim").iterdir()) == []


async def test_upload_part_racing_complete_lands_before_or_gets_no_such_upload(be: DiskBackend) -> None:
    upload = await be.create_multipart_upload("bkt", "k", WriteMeta(), OWNER)
    first = await be.upload_part("bkt", "k", upload.upload_id, 1, Body(b"one"))
    body = HeldBody(b"t", b"wo")
    slow = asyncio.create_task(be.upload_part("bkt", "k", upload.upload_id, 2, body))
    await asyncio.wait_for(body.waiting.wait(), 30)  # the slow part is streaming into its temp file
    await be.complete_multipart_upload("bkt", "k", upload.upload_id, [first])
    body.go.set()
    with pytest.raises(errors.NoSuchUpload):
        await slow
    assert await read_all(be, "k") == b"one"


async def test_two_processes_complete_the_same_upload_once(be: DiskBackend) -> None:
    other = DiskBackend(be.root, OWNER, fsync=False, use_xattrs=be.meta.use_xattrs)
    await other.start()
    try:
        upload = await be.create_multipart_upload("bkt", "k", WriteMeta(), OWNER)
        part = await be.upload_part("bkt", "k", upload.upload_id, 1, Body(b"x" * 5000))
        results = await asyncio.gather(
            be.complete_multipart_upload("bkt", "k", upload.upload_id, [part]),
            other.complete_multipart_upload("bkt", "k", upload.upload_id, [part]),
            other.abort_multipart_upload("bkt", "k", upload.upload_id),
            return_exceptions=True,
        )
        # Consumed once: by the Abort (both Completes fail), or by one Complete, whose success
        # the other Complete, in the other process, waits for and is answered with.
        completes, abort = results[:2], results[2]
        if isinstance(abort, BaseException):
            assert isinstance(abort, errors.NoSuchUpload)
            assert all(isinstance(r, ObjectInfo) for r in completes), results
            assert {r.etag for r in completes if isinstance(r, ObjectInfo)} == {hashlib.md5(bytes.fromhex(part.etag)).hexdigest() + "-1"}
            assert await read_all(be, "k") == b"x" * 5000
        else:
            assert all(isinstance(r, errors.NoSuchUpload) for r in completes), results
    finally:
        await other.stop()


async def test_a_retried_complete_takes_back_a_claim_whose_process_died(be: DiskBackend) -> None:
    # One of several --workers killed mid-Complete while the others serve on: the retry does not
    # wait for the GC's next round (an hour by default) to get the upload back.
    upload = await be.create_multipart_upload("bkt", "k", WriteMeta(), OWNER)
    part = await be.upload_part("bkt", "k", upload.upload_id, 1, Body(b"x"))
    folder = os.path.join(be.staging.bucket_dir("bkt"), upload.upload_id)
    os.rename(folder, f"{folder}.complete-0123456789ab")  # claimed, and nobody holds its flock
    info = await asyncio.wait_for(be.complete_multipart_upload("bkt", "k", upload.upload_id, [part]), 5)
    assert info.size == 1 and info.etag.endswith("-1")
    assert os.listdir(be.staging.bucket_dir("bkt")) == []
    # An abandoned claim of another kind is not taken back: the upload is over.
    other = await be.create_multipart_upload("bkt", "k2", WriteMeta(), OWNER)
    part = await be.upload_part("bkt", "k2", other.upload_id, 1, Body(b"y"))
    folder = os.path.join(be.staging.bucket_dir("bkt"), other.upload_id)
    os.rename(folder, f"{folder}.abort-0123456789ab")
    with pytest.raises(errors.NoSuchUpload):
        await asyncio.wait_for(be.complete_multipart_upload("bkt", "k2", other.upload_id, [part]), 5)


async def test_failed_complete_gives_the_upload_back(be: DiskBackend) -> None:
    upload = await be.create_multipart_upload("bkt", "k", WriteMeta(), OWNER)
    small = await be.upload_part("bkt", "k", upload.upload_id, 1, Body(b"small"))
    last = await be.upload_part("bkt", "k", upload.upload_id, 2, Body(b"last"))
    with pytest.raises(errors.EntityTooSmall):
        await be.complete_multipart_upload("bkt", "k", upload.upload_id, [small, last])
    with pytest.raises(errors.InvalidPart):
        await be.complete_multipart_upload("bkt", "k", upload.upload_id, [PartInfo(1, 0, "0" * 32)])
    assert [p.number for p in (await be.list_parts("bkt", "k", upload.upload_id, 0, 10)).parts] == [1, 2]
    assert [e.name for e in staging_dir(be).iterdir()] == [upload.upload_id]


# -- the GC -----------------------------------------------------------------------------------------


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_gc_removes_idle_uploads_and_orphans_but_not_what_is_held(be: DiskBackend) -> None:
    idle = await be.create_multipart_upload("bkt", "idle", WriteMeta(), OWNER)
    await be.upload_part("bkt", "idle", idle.upload_id, 1, Body(b"x" * 100))
    busy = await be.create_multipart_upload("bkt", "busy", WriteMeta(), OWNER)
    busy_dir = staging_dir(be) / busy.upload_id
    held = create_locked(str(busy_dir / "tmp-writer"))  # a part still arriving
    tmp = Path(be._tmp_dir)
    orphan = tmp / "put-orphan"
    orphan.write_bytes(b"half an object")
    alive = tmp / "put-alive"
    alive_fd = create_locked(str(alive))
    claim = staging_dir(be) / f"{idle.upload_id[:-1]}0.complete-dead"
    claim.mkdir()
    (claim / "upload.json").write_text("{}")
    for path in (staging_dir(be) / idle.upload_id, busy_dir):
        age(path, 7200)
    await asyncio.sleep(1.1)  # temp files get a grace second (by ctime, which utime cannot age)
    for entry in [*(staging_dir(be) / idle.upload_id).iterdir(), *busy_dir.iterdir()]:
        age(entry, 7200)
    try:
        await asyncio.to_thread(be.staging.collector.collect, True)
        assert not orphan.exists() and alive.exists()
        names = {e.name for e in staging_dir(be).iterdir()}
        assert names == {busy.upload_id}
    finally:
        os.close(held)
        os.close(alive_fd)
    # Once its writer is gone, the busy upload is idle too (and its temp file an orphan).
    await asyncio.to_thread(be.staging.collector.collect, True)
    assert list(staging_dir(be).iterdir()) == []
    assert not alive.exists()


async def test_gc_tells_of_young_orphans_and_holds_link_temps_by_their_guard(
    be: DiskBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round says how long until the temp files it left only for being too young (nobody holds
    them) are old enough: the start-up round looks again then, not a gc_interval later. A hard-link
    copy's temp is held through its guard, not by a flock on itself (the source object's inode)."""
    # A grace no stall of a busy machine outlasts while the files are young; a short one after,
    # so that they age within the test.
    monkeypatch.setattr(gc, "TEMP_GRACE", 60.0)
    tmp = Path(be._tmp_dir)
    collect = be.staging.collector.collect
    made = time.time()  # every temp file below is younger than this
    held = create_locked(str(tmp / "put-held"))
    for name in ("link-live", "link-dead", "link-bare"):
        # Stand-ins for objects: a link temp is another name of an object's inode.
        (tmp / f"object-{name}").write_bytes(b"object")
        os.link(tmp / f"object-{name}", tmp / name)
    live_guard = create_locked(str(tmp / ("link-live" + gc.LINK_GUARD)))
    (tmp / ("link-dead" + gc.LINK_GUARD)).write_bytes(b"")  # its copy died: nobody holds it
    try:
        soon = await asyncio.to_thread(collect, False)
        # link-dead, link-bare, the dead guard: the grace less the youngest one's age, which is at
        # most how long this took however slow the machine (and a tick of the coarse clock that
        # stamps ctime).
        took = time.time() - made
        assert soon is not None and gc.TEMP_GRACE - took - 0.05 < soon <= gc.TEMP_GRACE, (soon, took)
        (tmp / "put-orphan").write_bytes(b"x")
        monkeypatch.setattr(gc, "TEMP_GRACE", 0.3)
        await asyncio.sleep(gc.TEMP_GRACE + 0.1)
        assert await asyncio.to_thread(collect, False) is None
        left = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("object-"))
        assert left == ["link-live", "link-live" + gc.LINK_GUARD, "put-held"]
        # Young again, but held by their writers: nothing to look at again soon.
        os.utime(tmp / "put-held")
        assert await asyncio.to_thread(collect, False) is None
    finally:
        os.close(held)
        os.close(live_guard)
    await asyncio.sleep(gc.TEMP_GRACE + 0.1)
    await asyncio.to_thread(collect, False)
    assert not [p.name for p in tmp.iterdir() if not p.name.startswith("object-")]


@pytest.fixture
def broken_multipart_dir(be: DiskBackend) -> Iterator[Path]:
    path = Path(be.staging.dir)
    saved = path.with_name("multipart-saved")
    path.rename(saved)
    path.write_text("not a folder")
    yield saved
    if path.is_file():
        path.unlink()
        saved.rename(path)


async def test_a_failing_gc_round_is_logged_and_the_loop_goes_on(
    be: DiskBackend, broken_multipart_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collector = be.staging.collector
    await collector.stop()
    collector.interval, collector.expiry = 0.05, 0.0
    caplog.set_level(logging.INFO, logger="s3serve.multipart")
    await collector.start()
    await until(lambda: "multipart GC round failed" in caplog.text, "a failed round logged")
    path = Path(be.staging.dir)
    path.unlink()
    broken_multipart_dir.rename(path)
    upload = await be.create_multipart_upload("bkt", "k", WriteMeta(), OWNER)
    age(staging_dir(be) / upload.upload_id, 60)
    for entry in (staging_dir(be) / upload.upload_id).iterdir():
        age(entry, 60)
    # The GC logs the removal after it is done: waiting for the folder to go could look too soon.
    removed = f"removed upload {upload.upload_id} of bkt/k"
    await until(lambda: removed in caplog.text, "the idle upload's removal logged")
    assert not (staging_dir(be) / upload.upload_id).exists()
    shutil.rmtree(staging_dir(be), ignore_errors=True)


async def test_an_interrupted_complete_gives_the_upload_back(be: DiskBackend) -> None:
    upload = await be.create_multipart_upload("bkt", "retry-me", WriteMeta(), OWNER)
    part = await be.upload_part("bkt", "retry-me", upload.upload_id, 1, Body(b"only part"))
    # What a Complete leaves behind when its process dies between claiming and publishing.
    directory = staging_dir(be) / upload.upload_id
    claim = directory.with_name(f"{upload.upload_id}.complete-dead00")
    directory.rename(claim)
    await asyncio.to_thread(be.staging.collector.collect, False)
    assert directory.is_dir() and not claim.exists()
    info = await be.complete_multipart_upload("bkt", "retry-me", upload.upload_id, [PartInfo(1, 0, part.etag)])
    assert info.size == len(b"only part")
    assert await read_all(be, "retry-me") == b"only part"


# -- the assembly file: parts in place, Complete without copying ----------------------------------------

BLOCK = 16 * KIB  # a multiple of the block size of any filesystem these tests run on


def assembly_inode(be: DiskBackend, upload_id: str) -> int:
    return os.stat(staging_dir(be) / upload_id / assembly.ASSEMBLY).st_ino


def object_inode(be: DiskBackend, key: str) -> int:
    return os.stat(be.root / "bkt" / key).st_ino


def md5_etag(parts: list[bytes]) -> str:
    return hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"


async def upload_parts(be: DiskBackend, key: str, parts: dict[int, bytes], meta: WriteMeta | None = None) -> tuple[str, dict[int, PartInfo]]:
    upload = await be.create_multipart_upload("bkt", key, meta or WriteMeta(), OWNER)
    infos = {}
    for n, data in parts.items():
        body = Body(data)
        # As a client's part of an upload with an algorithm carries its checksum (S3 requires it).
        body.declared_checksum = upload.meta.checksum_algorithm
        infos[n] = await be.upload_part("bkt", key, upload.upload_id, n, body)
    return upload.upload_id, infos


async def test_aligned_parts_become_the_object_without_a_copy(be: DiskBackend) -> None:
    # Part 1 is not listed (nor uploaded), 4 is skipped: the gaps before 2, after 3 and in 5's slot go.
    parts = {2: os.urandom(2 * BLOCK), 3: os.urandom(BLOCK), 5: os.urandom(BLOCK), 6: b"the unaligned last part"}
    upload_id, infos = await upload_parts(be, "zero", parts)
    inode = assembly_inode(be, upload_id)
    assert not [p for p in (staging_dir(be) / upload_id).iterdir() if p.suffix == ".part"]
    info = await be.complete_multipart_upload("bkt", "zero", upload_id, list(infos.values()))
    assert object_inode(be, "zero") == inode  # the assembly file itself, not a copy of it
    assert await read_all(be, "zero") == b"".join(parts.values())
    assert info.etag == md5_etag(list(parts.values())) and info.size == sum(map(len, parts.values()))
    assert list(staging_dir(be).iterdir()) == []
    st = os.stat(be.root / "bkt" / "zero")
    assert st.st_nlink == 1 and st.st_blocks * 512 < info.size + 2 * BLOCK  # no block left twice
    head = await be.head_object("bkt", "zero")
    assert head.etag == info.etag and head.checksums == info.checksums


async def test_composite_checksums_of_an_in_place_object(be: DiskBackend) -> None:
    parts = {1: os.urandom(BLOCK), 2: os.urandom(100)}
    meta = check_checksum_choice(WriteMeta(checksum_algorithm="SHA256"))
    upload_id, infos = await upload_parts(be, "sha", parts, meta)
    inode = assembly_inode(be, upload_id)
    info = await be.complete_multipart_upload("bkt", "sha", upload_id, list(infos.values()))
    assert object_inode(be, "sha") == inode
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts.values())).digest()
    assert info.checksums["SHA256"] == base64.b64encode(composite).decode() + "-2"


@pytest.mark.parametrize("case", ["unaligned", "reuploaded", "unlisted", "no-collapse", "being-written"])
async def test_what_cannot_be_collapsed_is_copied_byte_exact(
    be: DiskBackend, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    parts = {1: os.urandom(BLOCK), 2: os.urandom(BLOCK + (1 if case == "unaligned" else 0)), 3: b"end"}
    upload_id, infos = await upload_parts(be, "copied", parts)
    folder = staging_dir(be) / upload_id
    held = None
    if case == "reuploaded":
        parts[2] = os.urandom(BLOCK)  # the re-upload goes to a part file of its own
        infos[2] = await be.upload_part("bkt", "copied", upload_id, 2, Body(parts[2]))
        assert len([p for p in folder.iterdir() if p.suffix == ".part"]) == 1
    elif case == "unlisted":
        await be.upload_part("bkt", "copied", upload_id, 4, Body(os.urandom(BLOCK)))  # uploaded, not listed
    elif case == "no-collapse":  # e.g. tmpfs: fallocate answers EOPNOTSUPP

        def refuse(fd: int, mode: int, offset: int, length: int) -> None:
            raise OSError(errno.EOPNOTSUPP, "not supported")

        monkeypatch.setattr(assembly, "fallocate", refuse)
    elif case == "being-written":  # another part of the upload still streaming into its slot
        held = create_locked(str(folder / assembly.marker_name(9)))
    inode = assembly_inode(be, upload_id)
    try:
        info = await be.complete_multipart_upload("bkt", "copied", upload_id, [infos[1], infos[2], infos[3]])
    finally:
        if held is not None:
            os.close(held)
    assert object_inode(be, "copied") != inode
    expected = [parts[1], parts[2], parts[3]]
    assert await read_all(be, "copied") == b"".join(expected)
    assert info.etag == md5_etag(expected) and info.size == sum(map(len, expected))
    assert list(staging_dir(be).iterdir()) == []


async def test_upload_part_copy_writes_into_the_slot(be: DiskBackend) -> None:
    source = os.urandom(3 * BLOCK)
    await be.put_object("bkt", "src", Body(source), WriteMeta())
    for key in ("in-place", "recopied"):
        upload = await be.create_multipart_upload("bkt", key, WriteMeta(), OWNER)
        first = await be.upload_part_copy("bkt", key, upload.upload_id, 1, "bkt", "src", (BLOCK, 3 * BLOCK - 1), None)
        second = await be.upload_part_copy("bkt", key, upload.upload_id, 2, "bkt", "src", None, None)
        assert first.etag == hashlib.md5(source[BLOCK:]).hexdigest()
        expected = source[BLOCK:] + source
        if key == "recopied":  # a second copy of a part number goes to a part file
            second = await be.upload_part_copy("bkt", key, upload.upload_id, 2, "bkt", "src", (0, 9), None)
            assert second.etag == hashlib.md5(source[:10]).hexdigest()
            expected = source[BLOCK:] + source[:10]
        inode = assembly_inode(be, upload.upload_id)
        await be.complete_multipart_upload("bkt", key, upload.upload_id, [first, second])
        assert await read_all(be, key) == expected
        assert (object_inode(be, key) == inode) == (key == "in-place")


async def test_concurrent_uploads_of_one_part_number_leave_the_last_committed(be: DiskBackend) -> None:
    upload = await be.create_multipart_upload("bkt", "race", WriteMeta(), OWNER)
    a, b, c = os.urandom(BLOCK), os.urandom(BLOCK), os.urandom(BLOCK)
    # a starts first (so it writes in place) and commits last; b and c go to part files.
    held = HeldBody(a[:100], a[100:])
    slow = asyncio.create_task(be.upload_part("bkt", "race", upload.upload_id, 1, held))
    await asyncio.wait_for(held.waiting.wait(), 30)
    await be.upload_part("bkt", "race", upload.upload_id, 1, Body(b))
    await be.upload_part("bkt", "race", upload.upload_id, 1, Body(c))
    held.go.set()
    last = await slow
    listed = (await be.list_parts("bkt", "race", upload.upload_id, 0, 10)).parts
    assert [(p.number, p.etag) for p in listed] == [(1, last.etag)] and last.etag == hashlib.md5(a).hexdigest()
    assert not [p for p in (staging_dir(be) / upload.upload_id).iterdir() if p.suffix == ".part"]
    # Now a part file commits last: it wins, and the slot's bytes are left alone (never unlinked).
    final = await be.upload_part("bkt", "race", upload.upload_id, 1, Body(b))
    await be.complete_multipart_upload("bkt", "race", upload.upload_id, [final])
    assert await read_all(be, "race") == b


async def test_a_failed_in_place_write_gives_the_slot_back(be: DiskBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assembly, "SLOT", 4 * BLOCK)  # small slots, so a body can overflow one
    upload = await be.create_multipart_upload("bkt", "big", WriteMeta(), OWNER)
    folder = staging_dir(be) / upload.upload_id
    with pytest.raises(errors.EntityTooLarge):
        await be.upload_part("bkt", "big", upload.upload_id, 1, Body(os.urandom(3 * BLOCK), os.urandom(2 * BLOCK)))
    assert not (folder / assembly.marker_name(1)).exists()
    parts = [os.urandom(4 * BLOCK), os.urandom(BLOCK), b"tail"]
    infos = [await be.upload_part("bkt", "big", upload.upload_id, n, Body(p)) for n, p in enumerate(parts, 1)]
    inode = assembly_inode(be, upload.upload_id)
    await be.complete_multipart_upload("bkt", "big", upload.upload_id, infos)
    assert await read_all(be, "big") == b"".join(parts)
    assert object_inode(be, "big") == inode


async def test_a_part_past_the_largest_file_goes_to_a_part_file(be: DiskBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assembly, "SLOT", 2**62)  # slot 3 ends past any filesystem's file size limit
    parts = {1: os.urandom(BLOCK), 3: b"three"}
    upload_id, infos = await upload_parts(be, "far", parts)
    folder = staging_dir(be) / upload_id
    assert "00003" in [p.name[:5] for p in folder.iterdir() if p.suffix == ".part"]
    await be.complete_multipart_upload("bkt", "far", upload_id, list(infos.values()))
    assert await read_all(be, "far") == b"".join(parts.values())


class FailOnce:
    """DiskBackend._publish failing once the bytes are ready, as a lost precondition race would."""

    def __init__(self, be: DiskBackend) -> None:
        self.publish = be._publish
        self.calls = 0

    async def __call__(self, *args: object) -> object:
        self.calls += 1
        if self.calls == 1:
            raise errors.PreconditionFailed()
        return await self.publish(*args)  # type: ignore[arg-type]


async def test_a_complete_failing_after_the_collapse_gives_the_upload_back(
    be: DiskBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = {1: os.urandom(BLOCK), 3: os.urandom(2 * BLOCK), 4: b"last"}
    upload_id, infos = await upload_parts(be, "undo", parts)
    folder = staging_dir(be) / upload_id
    size_before = os.stat(folder / assembly.ASSEMBLY).st_size
    monkeypatch.setattr(be, "_publish", FailOnce(be))
    with pytest.raises(errors.PreconditionFailed):
        await be.complete_multipart_upload("bkt", "undo", upload_id, list(infos.values()))
    # Every part is back in its slot (the gaps re-inserted as holes), and the upload is as it was.
    assert os.stat(folder / assembly.ASSEMBLY).st_size == size_before
    assert not (folder / assembly.COLLAPSING).exists() and not (be.root / "bkt" / "undo").exists()
    assert [p.number for p in (await be.list_parts("bkt", "undo", upload_id, 0, 10)).parts] == [1, 3, 4]
    inode = assembly_inode(be, upload_id)
    await be.complete_multipart_upload("bkt", "undo", upload_id, list(infos.values()))
    assert await read_all(be, "undo") == b"".join(parts.values())
    assert object_inode(be, "undo") == inode


async def test_a_collapse_that_cannot_be_undone_discards_the_upload(
    be: DiskBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id, infos = await upload_parts(be, "lost", {1: os.urandom(BLOCK), 2: b"last"})
    real = assembly.fallocate

    def no_insert(fd: int, mode: int, offset: int, length: int) -> None:
        if mode == assembly.FALLOC_FL_INSERT_RANGE:
            raise OSError(errno.EOPNOTSUPP, "not supported")
        real(fd, mode, offset, length)

    monkeypatch.setattr(assembly, "fallocate", no_insert)
    monkeypatch.setattr(be, "_publish", FailOnce(be))
    with pytest.raises(errors.PreconditionFailed):
        await be.complete_multipart_upload("bkt", "lost", upload_id, list(infos.values()))
    # Never given back half-collapsed, never visible as an object.
    assert list(staging_dir(be).iterdir()) == []
    assert not (be.root / "bkt" / "lost").exists()
    with pytest.raises(errors.NoSuchUpload):
        await be.complete_multipart_upload("bkt", "lost", upload_id, list(infos.values()))


async def test_gc_discards_a_claim_interrupted_while_collapsing(
    be: DiskBackend, caplog: pytest.LogCaptureFixture
) -> None:
    upload_id, _ = await upload_parts(be, "crashed", {1: os.urandom(BLOCK)})
    directory = staging_dir(be) / upload_id
    # What a Complete leaves when its process dies after writing the marker.
    claim = directory.with_name(f"{upload_id}.complete-dead00")
    directory.rename(claim)
    (claim / assembly.COLLAPSING).touch()
    caplog.set_level(logging.INFO, logger="s3serve.multipart")
    await asyncio.to_thread(be.staging.collector.collect, False)
    assert list(staging_dir(be).iterdir()) == []
    assert f"discarding upload {upload_id} of bkt/crashed" in caplog.text
    with pytest.raises(errors.NoSuchUpload):
        await be.list_parts("bkt", "crashed", upload_id, 0, 10)


async def test_gc_keeps_every_file_of_an_upload_idle_for_less_than_the_expiry(be: DiskBackend) -> None:
    first = os.urandom(BLOCK)
    upload_id, infos = await upload_parts(be, "kept", {1: first, 2: b"two"})
    infos[2] = await be.upload_part("bkt", "kept", upload_id, 2, Body(b"2nd"))  # a part file too
    folder = staging_dir(be) / upload_id
    names = sorted(p.name for p in folder.iterdir())
    collector = be.staging.collector
    collector.expiry = 10 * 3600.0
    # Two hours from now: records and data are older than any temp-file age, the upload is not expired.
    await asyncio.to_thread(collector._collect_upload, "bkt", upload_id, str(folder), time.time() + 7200, True)
    assert sorted(p.name for p in folder.iterdir()) == names
    await be.complete_multipart_upload("bkt", "kept", upload_id, list(infos.values()))
    assert await read_all(be, "kept") == first + b"2nd"


async def test_a_slot_whose_marker_is_held_by_someone_else_is_not_written(
    be: DiskBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Complete (or the GC) holding the fresh marker: the part goes to a file, the slot stays free.
    monkeypatch.setattr(assembly, "try_flock", lambda fd: False)
    upload_id, infos = await upload_parts(be, "busy", {1: b"one"})
    folder = staging_dir(be) / upload_id
    assert [p.name[:5] for p in folder.iterdir() if p.suffix == ".part"] == ["00001"]
    assert not (folder / assembly.marker_name(1)).exists() and not (folder / assembly.ASSEMBLY).exists()
    monkeypatch.undo()
    await be.complete_multipart_upload("bkt", "busy", upload_id, list(infos.values()))
    assert await read_all(be, "busy") == b"one"


@pytest.mark.parametrize("undo_works", [True, False])
async def test_a_collapse_failing_half_way(be: DiskBackend, monkeypatch: pytest.MonkeyPatch, undo_works: bool) -> None:
    parts = {1: os.urandom(BLOCK), 3: os.urandom(BLOCK), 5: os.urandom(BLOCK), 6: b"last"}
    upload_id, infos = await upload_parts(be, "half", parts)
    real = assembly.fallocate
    collapses = []

    def second_collapse_fails(fd: int, mode: int, offset: int, length: int) -> None:
        if mode == assembly.FALLOC_FL_COLLAPSE_RANGE:
            collapses.append(offset)
            if len(collapses) == 2:
                raise OSError(errno.EINVAL, "refused")
        elif not undo_works:
            raise OSError(errno.EIO, "refused")
        real(fd, mode, offset, length)

    monkeypatch.setattr(assembly, "fallocate", second_collapse_fails)
    inode = assembly_inode(be, upload_id)
    if undo_works:  # every part back in its slot: assembled by copying instead
        info = await be.complete_multipart_upload("bkt", "half", upload_id, list(infos.values()))
        assert object_inode(be, "half") != inode
        assert await read_all(be, "half") == b"".join(parts.values())
        assert info.etag == md5_etag(list(parts.values()))
    else:  # never copied from a half-collapsed file: the upload is discarded
        with pytest.raises(errors.InternalError):
            await be.complete_multipart_upload("bkt", "half", upload_id, list(infos.values()))
        assert not (be.root / "bkt" / "half").exists()
    assert list(staging_dir(be).iterdir()) == []


@pytest.mark.parametrize("first", [BLOCK, BLOCK + 1])  # in place, or copied
async def test_an_empty_last_part_in_its_slot(be: DiskBackend, first: int) -> None:
    data = os.urandom(first)
    upload_id, infos = await upload_parts(be, "empty-end", {1: data, 2: b""})
    info = await be.complete_multipart_upload("bkt", "empty-end", upload_id, list(infos.values()))
    assert await read_all(be, "empty-end") == data and info.etag == md5_etag([data, b""])


async def test_on_tmpfs_parts_in_place_are_assembled_by_copying() -> None:
    """A real filesystem without COLLAPSE_RANGE (tmpfs answers EOPNOTSUPP), no monkeypatching."""
    if not os.path.isdir("/dev/shm") or os.statvfs("/dev/shm").f_bavail * os.statvfs("/dev/shm").f_frsize < 64 * 1024**2:
        pytest.skip("no tmpfs at /dev/shm")
    root = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="s3serve-test-"))
    backend = DiskBackend(root, OWNER, fsync=True, min_part_size=KIB)
    await backend.start()
    try:
        await backend.create_bucket("bkt", OWNER, "us-east-1")
        parts = {1: os.urandom(BLOCK), 2: os.urandom(2 * BLOCK), 3: b"end"}
        upload_id, infos = await upload_parts(backend, "tmpfs", parts)
        assert (staging_dir(backend) / upload_id / assembly.ASSEMBLY).exists()  # written in place
        inode = assembly_inode(backend, upload_id)
        info = await backend.complete_multipart_upload("bkt", "tmpfs", upload_id, list(infos.values()))
        assert object_inode(backend, "tmpfs") != inode
        assert await read_all(backend, "tmpfs") == b"".join(parts.values())
        assert info.etag == md5_etag(list(parts.values()))
        assert list(staging_dir(backend).iterdir()) == []
    finally:
        await backend.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_list_uploads_reads_each_upload_record_once(be: DiskBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    from s3serve.storage import staging

    ids = [(await be.create_multipart_upload("bkt", f"k{i}", WriteMeta(), OWNER)).upload_id for i in range(6)]
    reads: list[str] = []
    real = staging.read_json

    def counting(path: str) -> object:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(staging, "read_json", counting)

    async def listed(marker: str = "") -> list[str]:
        page = await be.list_multipart_uploads("bkt", "", "", marker, "", 4)
        return [u.upload_id for u in page.uploads]

    assert await listed() == ids[:4] and len(reads) == 6
    reads.clear()
    assert await listed("k3") == ids[4:]
    assert reads == []  # page 2 reads no record
    await be.abort_multipart_upload("bkt", "k1", ids[1])
    new = (await be.create_multipart_upload("bkt", "k9", WriteMeta(), OWNER)).upload_id
    reads.clear()
    page = await be.list_multipart_uploads("bkt", "", "", "", "", 10)
    assert [u.upload_id for u in page.uploads] == [ids[0], *ids[2:], new]
    assert [os.path.basename(os.path.dirname(p)) for p in reads] == [new]  # only the new upload's
