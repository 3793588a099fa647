"""storage/bucketconfig.py through DiskBackend, on real files: documents stored atomically,
gone with their bucket, never reachable by a crafted name, and the hot path's cache."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from s3serve import errors
from s3serve.storage.disk import DiskBackend

OWNER = "owner-1"


@pytest.fixture(params=[False, True], ids=["no-fsync", "fsync"])
async def disk(request: pytest.FixtureRequest, root: Path) -> AsyncIterator[DiskBackend]:
    backend = DiskBackend(root, OWNER, fsync=request.param, gc_interval=3600)
    await backend.start()
    await backend.create_bucket("photos", OWNER, "us-east-1")
    yield backend
    await backend.stop()


def _config_dir(root: Path, bucket: str) -> Path:
    return root / ".s3serve" / "bucket-config" / bucket


async def test_round_trip(disk: DiskBackend, root: Path) -> None:
    assert await disk.get_bucket_config("photos", "cors") is None
    await disk.put_bucket_config("photos", "cors", b"<CORSConfiguration/>")
    await disk.put_bucket_config("photos", "policy", b'{"Statement": []}')
    assert await disk.get_bucket_config("photos", "cors") == b"<CORSConfiguration/>"
    assert (_config_dir(root, "photos") / "policy.json").read_bytes() == b'{"Statement": []}'
    await disk.put_bucket_config("photos", "cors", b"<CORSConfiguration><CORSRule/></CORSConfiguration>")
    assert await disk.get_bucket_config("photos", "cors") == b"<CORSConfiguration><CORSRule/></CORSConfiguration>"
    await disk.delete_bucket_config("photos", "cors")
    await disk.delete_bucket_config("photos", "cors")
    assert await disk.get_bucket_config("photos", "cors") is None
    # Nothing of it is an object, and no temp file is left behind.
    assert (await disk.list_objects("photos", "", "", "", 1000)).objects == []
    assert os.listdir(root / ".s3serve" / "tmp") == []


async def test_missing_bucket(disk: DiskBackend) -> None:
    for call in (
        disk.get_bucket_config("absent", "cors"),
        disk.put_bucket_config("absent", "cors", b"x"),
        disk.delete_bucket_config("absent", "cors"),
    ):
        with pytest.raises(errors.NoSuchBucket):
            await call
    assert await disk.cached_bucket_config("absent", "cors", bytes) is None


@pytest.mark.parametrize("bucket,name", [("..", "cors"), (".s3serve", "cors"), ("photos/../x", "cors"), ("photos", "../cors"), ("photos", "")])
async def test_crafted_names_reach_nothing(disk: DiskBackend, root: Path, bucket: str, name: str) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await disk.put_bucket_config(bucket, name, b"x")
    assert await disk.cached_bucket_config(bucket, name, bytes) is None
    assert not (root / ".s3serve" / "bucket-config" / "x").exists()


async def test_documents_go_with_the_bucket(disk: DiskBackend, root: Path) -> None:
    await disk.put_bucket_config("photos", "tagging", b"<Tagging/>")
    await disk.delete_bucket("photos")
    assert not _config_dir(root, "photos").exists()
    # What a crash (or another program) left for a name is not inherited by a new bucket.
    leftover = _config_dir(root, "photos") / "cors.xml"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"<CORSConfiguration/>")
    await disk.create_bucket("photos", OWNER, "us-east-1")
    assert await disk.get_bucket_config("photos", "cors") is None
    assert await disk.cached_bucket_config("photos", "cors", bytes) is None


async def test_cache_parses_once_per_version(disk: DiskBackend) -> None:
    parsed: list[bytes] = []

    def parse(document: bytes) -> str:
        parsed.append(document)
        return document.decode().upper()

    await disk.put_bucket_config("photos", "cors", b"one")
    time.sleep(0.06)  # older than a tick of the coarse clock: cacheable
    assert [await disk.cached_bucket_config("photos", "cors", parse) for _ in range(5)] == ["ONE"] * 5
    assert parsed == [b"one"]
    # Rewritten (a new file, as another process would write it): seen at once.
    await disk.put_bucket_config("photos", "cors", b"two")
    assert await disk.cached_bucket_config("photos", "cors", parse) == "TWO"
    await disk.delete_bucket_config("photos", "cors")
    assert await disk.cached_bucket_config("photos", "cors", parse) is None


async def test_a_broken_document_is_ignored_on_the_hot_path(disk: DiskBackend, root: Path) -> None:
    def parse(document: bytes) -> str:
        raise errors.MalformedXML()

    await disk.put_bucket_config("photos", "cors", b"<not-cors")
    assert await disk.cached_bucket_config("photos", "cors", parse) is None
