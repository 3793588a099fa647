"""Read-through fetches shared by their readers (fills.py): the cache in front of a second local
directory whose GETs are counted and paced like a remote link's, so readers arrive while a fetch
runs. Objects here span several segments (SEGMENT is lowered to 512 KiB)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from s3serve import errors
from s3serve.storage import fills
from s3serve.storage.base import ObjectReader
from s3serve.storage.cache import CacheBackend
from s3serve.storage.disk import DiskBackend
from tests.api.conftest import USER, Send
from tests.conftest import until

PIECE = 64 * 1024
SIZE = 4 * 1024 * 1024


class PacedUpstream(DiskBackend):
    """A local upstream whose GETs are counted and send 64 KiB every 2 ms (32 MB/s); with
    ``fail_after`` set, the next GET's body stops after that many bytes and breaks off, as a
    dropped upstream connection does, once ``break_off`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gets: list[str] = []
        self.sent = 0  # body bytes, all GETs together
        self.ranges: list[int] = []  # where each GET's body started
        self.fail_after: int | None = None
        self.break_off = asyncio.Event()

    async def open_object(self, bucket: str, key: str) -> ObjectReader:
        reader = await super().open_object(bucket, key)
        self.gets.append(key)
        fail_after, self.fail_after = self.fail_after, None
        return _Paced(reader, fail_after, self)


class _Paced(ObjectReader):
    def __init__(self, inner: ObjectReader, fail_after: int | None, upstream: PacedUpstream) -> None:
        self.info = inner.info
        self._inner = inner
        self._fail_after = fail_after
        self._upstream = upstream

    def fileno(self) -> int | None:
        return None

    async def iter_range(self, offset: int, length: int) -> AsyncIterator[bytes]:
        self._upstream.ranges.append(offset)
        sent = 0
        async for chunk in self._inner.iter_range(offset, length):
            for start in range(0, len(chunk), PIECE):
                if self._fail_after is not None and sent >= self._fail_after:
                    await self._upstream.break_off.wait()
                    raise errors.ServiceUnavailable("The upstream connection was lost.")
                await asyncio.sleep(0.002)
                piece = chunk[start : start + PIECE]
                sent += len(piece)
                self._upstream.sent += len(piece)
                yield piece

    def close(self) -> None:
        self._inner.close()


async def _get(send: Send, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    response = await send("GET", path, headers=headers)
    return response.status, await response.read()


def _temp_files(here: Path) -> list[str]:
    return [p.name for p in (here.parent / ".s3serve" / "tmp").iterdir()]


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fills, "SEGMENT", 512 * 1024)


async def test_concurrent_misses_of_one_object_fetch_it_once(make_cached) -> None:  # type: ignore[no-untyped-def]
    send, cache, here, there = await make_cached(upstream_type=PacedUpstream)
    data = os.urandom(SIZE)
    (there / "cold").write_bytes(data)
    first = asyncio.ensure_future(_get(send, "/bkt/cold"))
    await until(lambda: ("bkt", "cold") in cache._fills)  # the others arrive while its fetch runs
    answers = await asyncio.gather(first, *(_get(send, "/bkt/cold") for _ in range(5)))
    assert answers == [(200, data)] * 6
    assert cache.upstream.sent == SIZE  # every byte once
    await until(lambda: (here / "cold").exists())
    assert (here / "cold").read_bytes() == data
    gets = len(cache.upstream.gets)
    assert (await _get(send, "/bkt/cold")) == (200, data)
    assert len(cache.upstream.gets) == gets  # the replica answers from now on


async def test_parallel_ranged_misses_are_served_from_one_fetch(make_cached) -> None:  # type: ignore[no-untyped-def]
    # boto3 and the aws cli download a large object as parallel ranged GETs.
    send, cache, here, there = await make_cached(upstream_type=PacedUpstream)
    data = os.urandom(SIZE)
    (there / "cold").write_bytes(data)
    step = 300_000  # not aligned with the segments
    spans = [(n * step, min((n + 1) * step, SIZE)) for n in range(-(-SIZE // step))]
    answers = await asyncio.gather(*(_get(send, "/bkt/cold", {"Range": f"bytes={a}-{b - 1}"}) for a, b in spans))
    assert answers == [(206, data[a:b]) for a, b in spans]
    assert cache.upstream.sent == SIZE
    assert cache.upstream.gets[0] == "cold" and cache.upstream.ranges[0] == 0  # the first GET: the whole object
    await until(lambda: (here / "cold").exists())
    assert (here / "cold").read_bytes() == data


async def test_segments_readers_wait_for_are_fetched_first(make_cached, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(fills, "FETCHERS", 2)
    send, cache, here, there = await make_cached(upstream_type=PacedUpstream)
    data = os.urandom(SIZE)
    (there / "cold").write_bytes(data)
    last = SIZE - fills.SEGMENT
    assert (await _get(send, "/bkt/cold", {"Range": f"bytes={last}-"})) == (206, data[last:])
    # The first GET brings segment 0; of the two that follow, one is the segment asked for.
    assert last in cache.upstream.ranges[1:3]
    await until(lambda: (here / "cold").exists())
    assert (here / "cold").read_bytes() == data
    assert cache.upstream.sent == SIZE


async def test_readers_of_a_fetch_that_breaks_off_get_the_rest_from_the_upstream(make_cached, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(fills, "FETCHERS", 1)  # the first GET brings every segment, and breaks off
    send, cache, here, there = await make_cached(upstream_type=PacedUpstream)
    data = os.urandom(SIZE)
    (there / "cold").write_bytes(data)
    cache.upstream.fail_after = SIZE // 4
    first = asyncio.ensure_future(_get(send, "/bkt/cold"))
    await until(lambda: ("bkt", "cold") in cache._fills)
    fill = cache._fills[("bkt", "cold")]
    others = [_get(send, "/bkt/cold"), _get(send, "/bkt/cold", {"Range": f"bytes={SIZE // 2}-"})]
    answers = asyncio.gather(first, *others)
    await until(lambda: fill._readers == 3)
    cache.upstream.break_off.set()
    assert await answers == [(200, data), (200, data), (206, data[SIZE // 2 :])]
    assert cache.upstream.gets == ["cold"] * 4  # the fetch, then one GET each for the rest
    assert sorted(cache.upstream.ranges[1:]) == [SIZE // 4, SIZE // 4, SIZE // 2]
    while cache._tasks:
        await asyncio.gather(*cache._tasks)
    assert not (here / "cold").exists()  # a broken fetch is not kept
    assert _temp_files(here) == []


async def test_a_write_during_a_fetch_is_what_later_readers_get(make_cached) -> None:  # type: ignore[no-untyped-def]
    # Trusting confirmed copies for a minute must not let a reader join the fetch of what the key
    # held before a write through this cache.
    send, cache, here, there = await make_cached(upstream_type=PacedUpstream, revalidate_after=60.0)
    old = os.urandom(SIZE)
    (there / "k").write_bytes(old)
    reading = await send("GET", "/bkt/k")
    start = await reading.content.readexactly(PIECE)
    assert (await send("PUT", "/bkt/k", b"new")).status == 200
    assert (await _get(send, "/bkt/k")) == (200, b"new")
    assert start + await reading.read() == old
    while cache._tasks:
        await asyncio.gather(*cache._tasks)
    assert (here / "k").read_bytes() == b"new"


async def test_a_fetch_goes_on_when_its_client_leaves(make_cached) -> None:  # type: ignore[no-untyped-def]
    send, cache, here, there = await make_cached(upstream_type=PacedUpstream)
    data = os.urandom(SIZE)
    (there / "cold").write_bytes(data)
    reading = await send("GET", "/bkt/cold")
    assert await reading.content.readexactly(PIECE) == data[:PIECE]
    reading.close()
    await until(lambda: (here / "cold").exists())
    assert (here / "cold").read_bytes() == data
    while cache._tasks:
        await asyncio.gather(*cache._tasks)
    assert _temp_files(here) == []
    assert cache._fills == {}


async def test_a_fill_never_replaces_what_another_worker_wrote_since(make_cached, make_sender) -> None:  # type: ignore[no-untyped-def]
    # Two worker processes share ROOT; each knows only its own writes. Worker A's fill of the
    # old version ends after worker B's PUT of a new one: the copy on disk, not A's memory, tells.
    send_a, cache_a, here, there = await make_cached(upstream_type=PacedUpstream, revalidate_after=60.0)
    cache_b = CacheBackend(
        DiskBackend(here.parent, default_owner=USER.user_id, fsync=False), cache_a.upstream, revalidate_after=60.0
    )
    send_b = await make_sender(cache_b)
    old = os.urandom(SIZE)
    (there / "k").write_bytes(old)
    reading = await send_a("GET", "/bkt/k")
    start = await reading.content.readexactly(PIECE)
    assert (await send_b("PUT", "/bkt/k", b"new")).status == 200
    assert (here / "k").read_bytes() == b"new"
    assert start + await reading.read() == old  # A's reader gets the version it started on
    while cache_a._tasks:
        await asyncio.gather(*cache_a._tasks)
    assert (here / "k").read_bytes() == b"new"  # A's fill did not put the old version back
    assert (await _get(send_a, "/bkt/k")) == (200, b"new")
    assert _temp_files(here) == []


Workers = tuple[Send, Send, CacheBackend, Path, Path]


async def _two_workers(make_cached: Any, make_sender: Any) -> Workers:
    """Two caches sharing ROOT and the upstream, as two worker processes: each knows only its own
    writes and confirmations. Copies are trusted for a minute."""
    send_a, cache_a, here, there = await make_cached(upstream_type=PacedUpstream, revalidate_after=60.0)
    local_b = DiskBackend(here.parent, default_owner=USER.user_id, fsync=False)
    cache_b = CacheBackend(local_b, cache_a.upstream, revalidate_after=60.0)
    return send_a, await make_sender(cache_b), cache_a, here, there


async def test_a_fill_never_brings_back_replaced_metadata(make_cached: Any, make_sender: Any) -> None:
    # Worker B copies the key onto itself with new metadata while worker A's fill of it runs: the
    # ETag stays, B drops the copy here (there is none yet), and A's fill, published after, would
    # be trusted by A for the revalidation window with the metadata B replaced.
    send_a, send_b, cache_a, here, there = await _two_workers(make_cached, make_sender)
    data = os.urandom(SIZE)
    (there / "k").write_bytes(data)
    reading = await send_a("GET", "/bkt/k")
    start = await reading.content.readexactly(PIECE)
    replaced = {"x-amz-copy-source": "/bkt/k", "x-amz-metadata-directive": "REPLACE", "x-amz-meta-v": "two"}
    assert (await send_b("PUT", "/bkt/k", b"", replaced)).status == 200
    assert start + await reading.read() == data
    while cache_a._tasks:
        await asyncio.gather(*cache_a._tasks)
    response = await send_a("GET", "/bkt/k")
    assert (response.status, response.headers.get("x-amz-meta-v")) == (200, "two")
    assert await response.read() == data


async def test_a_fill_never_brings_back_a_deleted_object(make_cached: Any, make_sender: Any) -> None:
    # Worker B's DELETE while worker A's fill runs leaves nothing on the disk to tell A's fill.
    send_a, send_b, cache_a, here, there = await _two_workers(make_cached, make_sender)
    data = os.urandom(SIZE)
    (there / "k").write_bytes(data)
    reading = await send_a("GET", "/bkt/k")
    start = await reading.content.readexactly(PIECE)
    assert (await send_b("DELETE", "/bkt/k")).status == 204
    assert start + await reading.read() == data  # the upstream's open file goes on to its end
    while cache_a._tasks:
        await asyncio.gather(*cache_a._tasks)
    assert (await send_a("GET", "/bkt/k")).status == 404
    assert not (here / "k").exists()
