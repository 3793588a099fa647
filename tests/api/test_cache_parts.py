"""The parts the upstream cache keeps of multipart uploads in progress (storage/cacheparts.py)
against its size limit: the real app with a CacheBackend whose upstream is a second DiskBackend,
the count (storage/ledger.py) compared with the bytes on the cache's disk."""

from __future__ import annotations

import os
from pathlib import Path

from s3serve.storage.cache import CacheBackend
from tests.api.conftest import Send
from tests.conftest import until


def _kept(cache: CacheBackend) -> dict[str, list[str]]:
    """The files of the kept parts, by upload folder."""
    root = Path(cache.parts.root)
    return {d.name: sorted(p.name for p in d.iterdir()) for d in root.iterdir()} if root.exists() else {}


def _kept_bytes(cache: CacheBackend) -> int:
    root = Path(cache.parts.root)
    return sum(p.stat().st_size for p in root.glob("*/*"))


async def _create(send: Send, key: str) -> str:
    created = await (await send("POST", f"/bkt/{key}?uploads")).read()
    return created.split(b"<UploadId>")[1].split(b"</UploadId>")[0].decode()


async def _part(send: Send, key: str, upload_id: str, number: int, data: bytes) -> str:
    up = await send("PUT", f"/bkt/{key}?partNumber={number}&uploadId={upload_id}", data)
    assert up.status == 200, await up.read()
    return up.headers["ETag"]


async def test_kept_parts_count_against_the_cache_size_until_they_go(make_cached) -> None:  # type: ignore[no-untyped-def]
    # Parts kept of uploads in progress were not counted: any number of uploads left open (or
    # slow) held any number of bytes under a cache of --cache-size. Counted now, from the moment
    # they are kept until they go (aborted, completed, replaced by a part of the same number).
    send, cache, here, there = await make_cached(max_bytes=500_000, evict_interval=3600)
    evictor = cache.evictor
    await until(lambda: evictor.rounds >= 1 and not cache._tasks)  # the first round counted the disk
    upload_id = await _create(send, "open")
    for number in (1, 2, 3):
        await _part(send, "open", upload_id, number, os.urandom(100_000))
    assert evictor.estimate == _kept_bytes(cache) == 300_000
    await _part(send, "open", upload_id, 2, os.urandom(120_000))  # part 2 again: it replaces the first
    assert evictor.estimate == _kept_bytes(cache) == 320_000
    assert (await send("DELETE", f"/bkt/open?uploadId={upload_id}")).status == 204
    assert evictor.estimate == 0 and not _kept(cache)

    # A part larger than the cache cannot be kept: the upload's other parts, useless without
    # it, go, and its later parts take no room. The upload completes all the same (on the
    # upstream, from its own parts), and its object reads back whole, read through.
    upload_id = await _create(send, "big")
    parts = [os.urandom(200_000), os.urandom(600_000), os.urandom(150_000), os.urandom(50_000)]
    etags = [await _part(send, "big", upload_id, 1, parts[0])]
    assert evictor.estimate == 200_000
    etags.append(await _part(send, "big", upload_id, 2, parts[1]))
    await until(lambda: not cache._part_keeps)
    assert list(_kept(cache).values()) == [["not-kept"]] and evictor.estimate == 0
    for number, data in enumerate(parts[2:], 3):
        etags.append(await _part(send, "big", upload_id, number, data))
        assert not cache._part_keeps and list(_kept(cache).values()) == [["not-kept"]] and evictor.estimate == 0
    listed = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, 1))
    done = await send("POST", f"/bkt/big?uploadId={upload_id}", f"<CompleteMultipartUpload>{listed}</CompleteMultipartUpload>".encode())
    assert done.status == 200, await done.read()
    await until(lambda: not cache._tasks)
    assert not _kept(cache) and evictor.estimate == 0
    assert (there / "big").read_bytes() == b"".join(parts)
    assert await (await send("GET", "/bkt/big")).read() == b"".join(parts)
    assert not (here / "big").exists()  # 1 MB: more than the cache holds
    # What is counted is what a round finds on the disk.
    upload_id = await _create(send, "more")
    for number in (1, 2):
        await _part(send, "more", upload_id, number, os.urandom(100_000))
    assert evictor.estimate == 200_000
    assert await evictor.round()
    assert evictor.estimate == _kept_bytes(cache) == 200_000
