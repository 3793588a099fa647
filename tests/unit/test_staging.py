"""Multipart staging and its GC against real files in tmp_path, in both metadata modes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from s3serve import errors
from s3serve.storage.base import PartInfo, WriteMeta
from s3serve.storage.disk import DiskBackend
from s3serve.storage.gc import create_locked
from s3serve.storage.staging import check_checksum_choice

OWNER = "owner-1"
KIB = 1024


class Body:
    """A request body yielding the given chunks, optionally slowly."""

    def __init__(self, *chunks: bytes, pause: float = 0.0) -> None:
        self.chunks = chunks
        self.pause = pause
        self.digests_wanted: frozenset[str] = frozenset()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.pause:
                await asyncio.sleep(self.pause)
            yield chunk

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        return {}


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
    slow = asyncio.create_task(be.upload_part("bkt", "k", upload.upload_id, 2, Body(b"t", b"wo", pause=0.05)))
    await asyncio.sleep(0.02)  # the slow part is streaming into its temp file
    await be.complete_multipart_upload("bkt", "k", upload.upload_id, [first])
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
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, errors.NoSuchUpload) for r in results if isinstance(r, BaseException))
    finally:
        await other.stop()


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
    await asyncio.sleep(0.2)
    assert "multipart GC round failed" in caplog.text
    path = Path(be.staging.dir)
    path.unlink()
    broken_multipart_dir.rename(path)
    upload = await be.create_multipart_upload("bkt", "k", WriteMeta(), OWNER)
    age(staging_dir(be) / upload.upload_id, 60)
    for entry in (staging_dir(be) / upload.upload_id).iterdir():
        age(entry, 60)
    for _ in range(40):
        if not (staging_dir(be) / upload.upload_id).exists():
            break
        await asyncio.sleep(0.05)
    assert not (staging_dir(be) / upload.upload_id).exists()
    assert f"removed upload {upload.upload_id} of bkt/k" in caplog.text
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
