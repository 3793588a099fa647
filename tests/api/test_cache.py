"""The upstream cache over two local directories (design.md: the cache is a Backend wrapping two
Backends): the real app with a CacheBackend whose upstream is a second DiskBackend, so every
check can look at both folders' real bytes."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import logging
import os
import signal
import sys
import time
import zlib
from pathlib import Path

import pytest

from s3serve.handlers.common import http_date
from s3serve.storage import cache as cache_module
from s3serve.storage import metadata, packed
from s3serve.storage.base import ObjectInfo, PartInfo, Precondition, WriteMeta
from s3serve.storage.cache import claim_root
from s3serve.storage.disk import DiskBackend
from s3serve.storage.metadata import MetaStore
from s3serve.storage.remote import RemoteBackend
from s3serve.storage.spool import FileBody
from tests.api.conftest import USER, Cached, Send
from tests.conftest import free_port, until


async def test_put_goes_through_to_the_upstream_and_stays_as_a_replica(cached: Cached) -> None:
    send, _, here, there = cached
    data = os.urandom(300_000)
    put = await send("PUT", "/bkt/dir/obj", data, {"Content-Type": "text/x-test", "x-amz-meta-colour": "red"})
    assert put.status == 200, await put.read()
    assert put.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert (there / "dir" / "obj").read_bytes() == data
    assert (here / "dir" / "obj").read_bytes() == data
    get = await send("GET", "/bkt/dir/obj")
    assert get.status == 200
    assert await get.read() == data
    assert get.headers["ETag"] == put.headers["ETag"]
    assert get.headers["Content-Type"] == "text/x-test"
    assert get.headers["x-amz-meta-colour"] == "red"


async def test_a_small_replica_keeps_the_upstreams_time_in_the_packed_record(cached: Cached) -> None:
    """A replica's record is a plain PUT's and the upstream's Last-Modified: packed, it fits in
    the inode's own xattr space (no extra block per copy) and is cached as its bytes."""
    send, cache, here, there = cached
    data = os.urandom(4096)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    put = await send("PUT", "/bkt/small", data, {"x-amz-checksum-crc32": crc})
    assert put.status == 200, await put.read()
    record = os.getxattr(here / "small", metadata.XATTR)
    assert record[0] == packed.FORMAT and len(record) <= 64
    stored = MetaStore(str(here.parent / ".s3serve"), use_xattrs=True).parse(record)
    upstream = await cache.upstream.head_object("bkt", "small")
    assert stored is not None and stored.modified_ns is not None
    assert http_date(stored.modified_ns / 1e9) == http_date(upstream.last_modified)
    assert (stored.etag, stored.checksums) == (hashlib.md5(data).hexdigest(), {"CRC32": crc})
    head = await send("HEAD", "/bkt/small")
    assert head.headers["Last-Modified"] == http_date(upstream.last_modified)
    assert (there / "small").read_bytes() == data


async def test_a_body_that_fails_its_checks_reaches_neither_side(cached: Cached) -> None:
    send, _, here, there = cached
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    put = await send("PUT", "/bkt/bad", b"payload", {"Content-MD5": wrong})
    assert put.status == 400
    assert b"<Code>BadDigest</Code>" in await put.read()
    assert not (there / "bad").exists()
    assert not (here / "bad").exists()
    assert not [p for p in (here.parent / ".s3serve" / "tmp").iterdir() if p.name.startswith("spool")]


async def test_a_miss_is_read_from_the_upstream_and_kept(cached: Cached) -> None:
    send, _, here, there = cached
    data = os.urandom(1024 * 1024 - 5)
    (there / "big").write_bytes(data)  # put there by another program: the upstream adopts it
    get = await send("GET", "/bkt/big")
    assert get.status == 200
    assert await get.read() == data
    await until(lambda: (here / "big").exists())
    assert (here / "big").read_bytes() == data
    again = await send("GET", "/bkt/big")
    assert await again.read() == data
    assert again.headers["ETag"] == get.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert again.headers["Last-Modified"] == get.headers["Last-Modified"]


async def test_a_ranged_miss_answers_the_range_and_fetches_the_whole_object(cached: Cached) -> None:
    send, _, here, there = cached
    data = os.urandom(200_000)
    (there / "ranged").write_bytes(data)
    get = await send("GET", "/bkt/ranged", headers={"Range": "bytes=1000-1999"})
    assert get.status == 206
    assert await get.read() == data[1000:2000]
    await until(lambda: (here / "ranged").exists())
    assert (here / "ranged").read_bytes() == data


async def test_a_change_on_the_upstream_is_seen_at_once(cached: Cached) -> None:
    send, _, here, there = cached
    assert (await send("PUT", "/bkt/k", b"first")).status == 200
    (there / "k").write_bytes(b"changed behind the cache's back")
    get = await send("GET", "/bkt/k")
    assert await get.read() == b"changed behind the cache's back"
    head = await send("HEAD", "/bkt/k")
    assert head.headers["Content-Length"] == str(len(b"changed behind the cache's back"))
    (there / "k").unlink()
    gone = await send("GET", "/bkt/k")
    assert gone.status == 404
    assert b"<Code>NoSuchKey</Code>" in await gone.read()
    await until(lambda: not (here / "k").exists())


class _Clock:
    """The cache's clock: the real one, which the test moves on past a window instead of sleeping
    through a short one (that a slow, loaded machine could run out before the read within it)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead


async def test_a_replica_is_trusted_for_the_revalidation_window(
    make_cached, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    clock = _Clock()
    monkeypatch.setattr(cache_module, "time", clock)
    send, _, _, there = await make_cached(revalidate_after=60.0)
    assert (await send("PUT", "/bkt/k", b"first")).status == 200
    (there / "k").write_bytes(b"second")
    # Within the window the confirmed copy answers; after it, the upstream is asked again.
    assert await (await send("GET", "/bkt/k")).read() == b"first"
    clock.ahead = 60.1
    assert await (await send("GET", "/bkt/k")).read() == b"second"


async def test_a_file_put_into_the_cache_folder_is_never_deleted(cached: Cached) -> None:
    send, cache, here, _ = cached
    (here / "mine").write_bytes(b"the only copy")
    get = await send("GET", "/bkt/mine")
    assert get.status == 404  # the upstream is the truth
    assert (here / "mine").read_bytes() == b"the only copy"
    cache.evictor.max_bytes = 0
    await cache.evictor.round()
    assert (here / "mine").read_bytes() == b"the only copy"


async def test_conditional_put_is_decided_by_the_upstream(cached: Cached) -> None:
    send, _, here, there = cached
    (there / "taken").write_bytes(b"upstream's")
    put = await send("PUT", "/bkt/taken", b"mine", {"If-None-Match": "*"})
    assert put.status == 412
    assert (there / "taken").read_bytes() == b"upstream's"
    assert not (here / "taken").exists()


async def test_delete_copy_tagging_and_listing_go_to_the_upstream(cached: Cached) -> None:
    send, _, here, there = cached
    assert (await send("PUT", "/bkt/a", b"alpha")).status == 200
    (there / "b").write_bytes(b"beta")  # never read through the cache
    listing = await (await send("GET", "/bkt?list-type=2")).read()
    assert b"<Key>a</Key>" in listing and b"<Key>b</Key>" in listing
    copy = await send("PUT", "/bkt/c", headers={"x-amz-copy-source": "/bkt/a"})
    assert copy.status == 200, await copy.read()
    assert (there / "c").read_bytes() == b"alpha"
    assert await (await send("GET", "/bkt/c")).read() == b"alpha"
    tagging = b'<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>'
    assert (await send("PUT", "/bkt/a?tagging", tagging)).status == 200
    assert b"<Key>k</Key>" in await (await send("GET", "/bkt/a?tagging")).read()
    assert (await send("GET", "/bkt/a")).headers["x-amz-tagging-count"] == "1"
    assert (await send("DELETE", "/bkt/a")).status == 204
    assert not (there / "a").exists() and not (here / "a").exists()


async def _upload(send: Send, key: str, parts: list[bytes], copy_from: str | None = None) -> tuple[str, bytes]:
    """A multipart upload through the cache (part 2 copied from ``copy_from`` when given):
    (upload id, Complete's answer)."""
    created = await (await send("POST", f"/bkt/{key}?uploads")).read()
    upload_id = created.split(b"<UploadId>")[1].split(b"</UploadId>")[0].decode()
    etags = []
    for number, data in enumerate(parts, 1):
        if copy_from and number == 2:
            up = await send("PUT", f"/bkt/{key}?partNumber={number}&uploadId={upload_id}", headers={"x-amz-copy-source": copy_from})
            assert up.status == 200, await up.read()
            etags.append((await up.read()).split(b"<ETag>")[1].split(b"</ETag>")[0].decode())
            continue
        up = await send("PUT", f"/bkt/{key}?partNumber={number}&uploadId={upload_id}", data)
        assert up.status == 200, await up.read()
        etags.append(up.headers["ETag"])
    listed = await (await send("GET", f"/bkt/{key}?uploadId={upload_id}")).read()
    assert listed.count(b"<Part>") == len(parts)
    complete = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, 1))
    done = await send("POST", f"/bkt/{key}?uploadId={upload_id}", f"<CompleteMultipartUpload>{complete}</CompleteMultipartUpload>".encode())
    assert done.status == 200, await done.read()
    return upload_id, await done.read()


async def test_multipart_upload_through_the_cache_is_kept_as_a_replica(cached: Cached) -> None:
    send, _, here, there = cached
    parts = [os.urandom(100_000), os.urandom(1234)]
    # Part 1 uploaded twice: the second one counts, here as on the upstream.
    created = await (await send("POST", "/bkt/mp?uploads")).read()
    first_id = created.split(b"<UploadId>")[1].split(b"</UploadId>")[0].decode()
    assert (await send("PUT", f"/bkt/mp?partNumber=1&uploadId={first_id}", b"x" * 100_000)).status == 200
    assert (await send("DELETE", f"/bkt/mp?uploadId={first_id}")).status == 204
    _, answer = await _upload(send, "mp", parts)
    assert (there / "mp").read_bytes() == b"".join(parts)
    # The parts received became the replica, without reading the object back.
    await until(lambda: (here / "mp").exists())
    assert (here / "mp").read_bytes() == b"".join(parts)
    await until(lambda: not any((here.parent / ".s3serve" / "cache-parts").iterdir()))
    get = await send("GET", "/bkt/mp")
    assert await get.read() == b"".join(parts)
    assert get.headers["ETag"].encode() in answer
    second = await send("GET", "/bkt/mp?partNumber=2")
    assert second.status == 206
    assert second.headers["x-amz-mp-parts-count"] == "2"
    assert await second.read() == parts[1]


async def test_a_multipart_upload_with_a_copied_part_is_read_through_later(cached: Cached) -> None:
    send, cache, here, there = cached
    source = os.urandom(100_000)
    assert (await send("PUT", "/bkt/source", source)).status == 200
    parts = [os.urandom(100_000), source]
    await _upload(send, "joined", parts, copy_from="/bkt/source")
    assert (there / "joined").read_bytes() == b"".join(parts)
    await until(lambda: not cache._tasks)
    assert not (here / "joined").exists()  # part 2 was never here
    assert not any((here.parent / ".s3serve" / "cache-parts").iterdir())
    assert await (await send("GET", "/bkt/joined")).read() == b"".join(parts)


class _OverwrittenAfterComplete(DiskBackend):
    """An upstream where another client's PUT of as many bytes lands right after a Complete,
    before the HEAD with which RemoteBackend asks for the completed object's description."""

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[PartInfo],
        precondition: Precondition | None = None,
        checksums: dict[str, str] | None = None,
        checksum_type: str | None = None,
        object_size: int | None = None,
    ) -> ObjectInfo:
        done = await super().complete_multipart_upload(
            bucket, key, upload_id, parts, precondition, checksums, checksum_type, object_size
        )
        other = self.root.parent / "other-body"
        other.write_bytes(b"o" * done.size)
        body = FileBody(str(other), done.size, hashlib.md5(other.read_bytes()).digest(), {})
        await self.put_object(bucket, key, body, WriteMeta())
        return await self.head_object(bucket, key)


async def test_a_complete_overtaken_before_its_description_is_not_kept(make_cached) -> None:  # type: ignore[no-untyped-def]
    send, cache, _, there = await make_cached(upstream_type=_OverwrittenAfterComplete)
    parts = [os.urandom(100_000), os.urandom(1234)]
    await _upload(send, "mp", parts)
    await until(lambda: not cache._tasks)
    # The parts joined here are not the object the upstream described (and still holds).
    assert (there / "mp").read_bytes() == b"o" * 101_234
    assert await (await send("GET", "/bkt/mp")).read() == b"o" * 101_234


async def test_parts_of_an_abandoned_upload_are_swept_after_the_multipart_expiry(make_cached) -> None:  # type: ignore[no-untyped-def]
    send, _, here, _ = await make_cached(local_options={"multipart_expiry": 60, "gc_interval": 0.1})
    created = await (await send("POST", "/bkt/left?uploads")).read()
    upload_id = created.split(b"<UploadId>")[1].split(b"</UploadId>")[0].decode()
    assert (await send("PUT", f"/bkt/left?partNumber=1&uploadId={upload_id}", os.urandom(1000))).status == 200
    kept = here.parent / ".s3serve" / "cache-parts"
    assert any(kept.iterdir())
    # Abandoned for longer than the expiry: aged, not waited for (with an expiry short enough to
    # wait for, a slow machine could sweep the parts before the check above).
    then = time.time() - 120
    for upload in kept.iterdir():
        os.utime(upload, (then, then))
    # Nothing else happens (no CreateMultipartUpload): the sweep runs on its own, as the GC does.
    await until(lambda: not any(kept.iterdir()))


async def test_eviction_keeps_the_cache_under_its_limit_least_recently_used_first(make_cached) -> None:  # type: ignore[no-untyped-def]
    send, cache, here, there = await make_cached()
    blobs = {f"k{i}": os.urandom(100_000) for i in range(4)}
    for key, data in blobs.items():
        assert (await send("PUT", f"/bkt/{key}", data)).status == 200
    assert await (await send("GET", "/bkt/k0")).read() == blobs["k0"]  # k0 is now the most recent
    # The limit set only now, so that no background round runs before this one.
    cache.evictor.max_bytes = 250_000
    await cache.evictor.round()
    kept = sorted(p.name for p in here.iterdir())
    assert sum((here / name).stat().st_size for name in kept) <= 250_000 * 0.9
    assert "k0" in kept and "k1" not in kept
    assert cache.evictor.evicted == len(blobs) - len(kept)
    for key, data in blobs.items():  # every object is still there, read through when evicted
        assert (there / key).read_bytes() == data
        assert await (await send("GET", f"/bkt/{key}")).read() == data


async def test_delete_bucket_removes_the_replicas_but_not_other_files(cached: Cached) -> None:
    send, _, here, there = cached
    assert (await send("PUT", "/bkt/a", b"alpha")).status == 200
    assert (await send("DELETE", "/bkt/a")).status == 204
    assert (await send("PUT", "/bkt/b", b"beta")).status == 200
    (there / "b").unlink()  # gone upstream behind the cache's back; its replica stays here
    assert (await send("DELETE", "/bkt")).status == 204
    assert not there.exists() and not here.exists()


def test_a_root_with_other_data_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data" / "photos").mkdir(parents=True)
    with pytest.raises(ValueError, match="already holds buckets"):
        claim_root(tmp_path / "data", "http://127.0.0.1:1")
    (tmp_path / "cache").mkdir()
    claim_root(tmp_path / "cache", "http://127.0.0.1:1")
    (tmp_path / "cache" / "bucket").mkdir()
    claim_root(tmp_path / "cache", "http://127.0.0.1:1")  # its own cache: fine
    with pytest.raises(ValueError, match="is the cache of"):
        claim_root(tmp_path / "cache", "http://127.0.0.1:2")


# -- eviction under load (operations review) ----------------------------------------------------


def _held(here: Path) -> int:
    return sum(p.stat().st_size for p in here.rglob("*") if p.is_file())


async def test_writes_made_while_another_worker_evicts_are_evicted_at_once(make_cached) -> None:  # type: ignore[no-untyped-def]
    # With --workers, a round another process is running is skipped; the writes that took this
    # process over the limit must still get their round once it is done, not an interval later.
    send, cache, here, _ = await make_cached(max_bytes=250_000, evict_interval=3600)
    await until(lambda: cache.evictor.estimate == 0 and not cache.evictor._wake.is_set())
    lock = os.open(os.path.join(cache.local.meta.hidden, "eviction.lock"), os.O_RDWR | os.O_CREAT)
    try:
        # Another worker's round, as far as this one can tell. Never a blocking flock: this
        # process's own round may hold the lock across awaits, and would never get to let go.
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.01)
        for i in range(4):
            assert (await send("PUT", f"/bkt/k{i}", os.urandom(100_000))).status == 200
    finally:
        os.close(lock)
    # Copies are kept only as far as the limit allows: two are, the two that did not fit were
    # refused and wait for a round to make room for their like. This process runs one as soon as
    # the other's is done, not an interval later, and it evicts the least recently used copy.
    assert _held(here) == 200_000
    await until(lambda: _held(here) <= 125_000)


async def test_an_eviction_round_asks_the_upstream_once_not_once_per_copy(
    make_cached, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # The upstream is asked only whether it can be reached (while it cannot, the copies are the
    # only way to serve their objects): a copy goes whatever it says of its object, and every
    # copy is of a write it acknowledged. One HEAD per copy cost a request each (billed, on S3)
    # and let fills outrun the round.
    send, cache, here, _ = await make_cached()
    for i in range(12):
        assert (await send("PUT", f"/bkt/k{i:02d}", os.urandom(10_000))).status == 200
    asked: list[str] = []
    head = cache.upstream.head_object

    async def counted(bucket: str, key: str) -> ObjectInfo:
        asked.append(key)
        return await head(bucket, key)

    monkeypatch.setattr(cache.upstream, "head_object", counted)
    cache.evictor.max_bytes = 30_000
    assert await cache.evictor.round()
    assert _held(here) == 20_000  # down to LOW_WATER of the limit
    assert cache.evictor.evicted == 10
    assert len(asked) == 1, asked


async def test_the_reservations_of_a_worker_that_died_are_given_back(make_cached) -> None:  # type: ignore[no-untyped-def]
    # Worker processes share one count of the replicas' bytes (storage/ledger.py), with the room
    # each reserved for copies on their way. One killed mid-fill must not hold its room forever.
    send, cache, here, _ = await make_cached(max_bytes=250_000, evict_interval=3600)
    await until(lambda: cache.evictor.estimate == 0 and not cache.evictor._wake.is_set())
    worker = (
        "import os, signal, sys\n"
        "from s3serve.storage.ledger import Ledger\n"
        "assert Ledger(sys.argv[1]).reserve(200_000, 250_000)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(cache_module.__file__).parents[2])}
    died = await asyncio.create_subprocess_exec(sys.executable, "-c", worker, cache.evictor.ledger.path, env=env)
    assert await died.wait() == -signal.SIGKILL
    assert cache.evictor.pending == 200_000
    assert (await send("PUT", "/bkt/k", os.urandom(100_000))).status == 200
    assert not (here / "k").exists()  # no room: another worker reserved it, as far as anyone can tell
    await until(lambda: cache.evictor.pending == 0)  # the round that PUT woke found the worker gone
    data = os.urandom(100_000)
    assert (await send("PUT", "/bkt/k", data)).status == 200
    assert (here / "k").read_bytes() == data


async def test_an_unreachable_upstream_stops_an_eviction_round_at_once(
    cached: Cached, caplog: pytest.LogCaptureFixture
) -> None:
    # Every replica's check would fail alike: one try, one log line, not one of each per replica.
    send, cache, here, _ = cached
    for i in range(4):
        assert (await send("PUT", f"/bkt/k{i}", os.urandom(1000))).status == 200
    gone = RemoteBackend(f"http://127.0.0.1:{free_port()}", "k", "s")
    await gone.start()
    cache.upstream, real = gone, cache.upstream
    try:
        cache.evictor.max_bytes = 0
        with caplog.at_level(logging.WARNING):
            await cache.evictor.round()
    finally:
        cache.upstream = real
        await gone.stop()
    assert sorted(p.name for p in here.iterdir()) == ["k0", "k1", "k2", "k3"]
    assert caplog.text.count("Cannot connect") == 1, caplog.text


async def test_a_file_that_is_not_a_copy_is_warned_about_once(cached: Cached, caplog: pytest.LogCaptureFixture) -> None:
    _, cache, here, _ = cached
    (here / "mine").write_bytes(b"the only copy")
    cache.evictor.max_bytes = 0
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            await cache.evictor.round()
    assert (here / "mine").read_bytes() == b"the only copy"
    assert caplog.text.count("keeping bkt/mine") == 1, caplog.text


async def test_a_metadata_change_on_the_upstream_is_seen_though_the_etag_stays(cached: Cached) -> None:
    send, cache, _, _ = cached
    put = await send("PUT", "/bkt/k", b"same bytes", {"Content-Type": "text/plain", "x-amz-meta-v": "1"})
    assert put.status == 200
    # Copied onto itself on the upstream with new metadata (as S3 does it): the bytes and so the
    # ETag stay, the metadata and Last-Modified change.
    await cache.upstream.copy_object(
        "bkt", "k", "bkt", "k", WriteMeta(headers={"content-type": "image/png"}, user_meta={"v": "2"})
    )
    upstream = await cache.upstream.head_object("bkt", "k")
    for method in ("HEAD", "GET"):
        got = await send(method, "/bkt/k")
        assert got.status == 200
        assert got.headers["ETag"] == put.headers["ETag"]
        assert got.headers["Content-Type"] == "image/png"
        assert got.headers["x-amz-meta-v"] == "2"
        assert got.headers["Last-Modified"] == http_date(upstream.last_modified)


@pytest.mark.parametrize("write", ["PUT", "DELETE"])
async def test_a_fill_that_ends_after_a_write_through_the_cache_is_not_kept(make_cached, write: str) -> None:  # type: ignore[no-untyped-def]
    send, cache, here, there = await make_cached(revalidate_after=60.0)
    old = os.urandom(8 * 1024 * 1024)
    (there / "k").write_bytes(old)
    reading = await send("GET", "/bkt/k")  # a miss: streamed to the client and into a replica
    assert reading.status == 200
    first = await reading.content.readexactly(64 * 1024)
    # While that read is under way, a client writes the key through the cache.
    if write == "PUT":
        assert (await send("PUT", "/bkt/k", b"new")).status == 200
    else:
        assert (await send("DELETE", "/bkt/k")).status == 204
    assert first + await reading.read() == old  # the reader gets the version it started on
    while cache._tasks:  # the fill's check and publication
        await asyncio.gather(*cache._tasks)
    # The write is what the cache answers, even while it trusts its copies for a minute.
    again = await send("GET", "/bkt/k")
    if write == "PUT":
        assert await again.read() == b"new"
        assert (here / "k").read_bytes() == b"new"
    else:
        assert again.status == 404
        assert not (here / "k").exists()


async def test_a_file_put_over_a_key_the_upstream_holds_otherwise_is_never_deleted(cached: Cached) -> None:
    # README: a file another program put into ROOT that the upstream does not have is never
    # removed, by eviction or by reads. Here its key exists upstream, with other bytes.
    send, cache, here, there = cached
    (there / "shared").write_bytes(b"the upstream's version")
    (here / "shared").write_bytes(b"the only copy of another program's data")
    head = await send("HEAD", "/bkt/shared")
    assert head.headers["Content-Length"] == str(len(b"the upstream's version"))
    get = await send("GET", "/bkt/shared")
    assert await get.read() == b"the upstream's version"  # the upstream is the truth
    ranged = await send("GET", "/bkt/shared", headers={"Range": "bytes=0-2"})
    assert await ranged.read() == b"the"
    await asyncio.gather(*cache._tasks)  # what the reads began in the background (none) has ended
    assert (here / "shared").read_bytes() == b"the only copy of another program's data"
    cache.evictor.max_bytes = 0
    await cache.evictor.round()
    assert (here / "shared").read_bytes() == b"the only copy of another program's data"


async def test_a_copy_that_cannot_be_kept_leaves_no_temp_file(cached: Cached, tmp_path: Path) -> None:
    _, cache, here, there = cached
    # The upstream has a bucket whose folder cannot be made here (a file holds its name), so
    # the acknowledged write cannot become a replica: its spooled body must go all the same.
    await cache.upstream.create_bucket("other", USER.user_id, "us-east-1")
    (here.parent / "other").write_bytes(b"a file, not a bucket folder")
    source = tmp_path / "body"
    source.write_bytes(b"payload")
    await cache.put_object("other", "k", FileBody(str(source), 7, hashlib.md5(b"payload").digest(), {}), WriteMeta())
    assert (there.parent / "other" / "k").read_bytes() == b"payload"
    assert not list((here.parent / ".s3serve" / "tmp").iterdir())


async def test_keys_not_kept_are_logged_once_and_remembered_up_to_a_cap(
    cached: Cached, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cache, _, _ = cached
    monkeypatch.setattr(cache_module, "UNKEPT_ENTRIES", 2)
    with caplog.at_level(logging.WARNING, logger="s3serve.cache"):
        for key in ("a", "a", "b", "c", "a"):
            cache.not_kept("bkt", key, "no room for it")
    # "a" is said once, forgotten when "b" and "c" came after it, and so said again.
    assert caplog.text.count("not cached: bkt/a") == 2, caplog.text
    assert sorted(key for _, key in cache._unkept) == ["a", "c"]


async def test_a_head_of_an_empty_object_never_replaces_another_programs_file(cached: Cached) -> None:
    send, cache, here, there = cached
    (there / "empty").write_bytes(b"")
    (here / "empty").write_bytes(b"another program's bytes")
    head = await send("HEAD", "/bkt/empty")
    assert head.status == 200 and head.headers["Content-Length"] == "0"
    await asyncio.gather(*cache._tasks)  # a copy made in the background would be made by now
    assert (here / "empty").read_bytes() == b"another program's bytes"
