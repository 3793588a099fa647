"""The large-body path: storage/streams.py's write loop against real files, and payload.py reading an
aiohttp StreamReader piece by piece (readchunk) instead of joining its buffer."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import ContentLengthError
from multidict import CIMultiDict, CIMultiDictProxy

from s3serve import errors
from s3serve.checksums import MultiHasher
from s3serve.payload import _READ_BYTES, make_body
from s3serve.storage import streams
from s3serve.storage.base import WriteMeta
from s3serve.storage.disk import DiskBackend
from s3serve.storage.streams import BATCH_BYTES, MAX_PIECES, THREAD_CHUNK, WRITEBACK_BYTES, write_body
from tests.conftest import until

MiB = 1 << 20


class Body:
    """Yields the given pieces (the same objects), optionally failing after them."""

    digests_wanted: frozenset[str] = frozenset()
    declared_checksum: str | None = None

    def __init__(self, pieces: list[bytes], fail: Exception | None = None) -> None:
        self.pieces = pieces
        self.fail = fail
        self.decoded_length = sum(map(len, pieces))  # as RequestBody declares it

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
            await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        return {}


async def write(
    path: Path, pieces: list[bytes], *, offset: int = 0, writeback: bool = False
) -> tuple[int, str]:
    hasher = MultiHasher(["md5", "crc64nvme"])
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with open(fd, "wb", closefd=False) as f:
            if offset:
                f.seek(offset)
            size = await write_body(f, Body(pieces), hasher, writeback=writeback)
    finally:
        os.close(fd)
    return size, hasher.digests()["md5"].hex()


def pieces_of(total: int, size: int) -> list[bytes]:
    data = os.urandom(total)
    return [data[i : i + size] for i in range(0, total, size)]


# -- storage/streams.py ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "total,piece",
    [
        (0, 1),
        (1000, 1000),  # one small body: written inline
        (THREAD_CHUNK + 1, 4096),  # just over the inline limit, small pieces
        (3 * BATCH_BYTES + 12345, 256 * 1024),  # network-sized pieces, batches plus a remainder
        (MAX_PIECES * 3 * 100 + 7, 100),  # many tiny pieces: batches cut by count, not bytes
    ],
)
async def test_bytes_and_digest_are_the_bodys(tmp_path: Path, total: int, piece: int) -> None:
    pieces = pieces_of(total, piece)
    size, md5 = await write(tmp_path / "f", pieces)
    data = b"".join(pieces)
    assert size == total
    assert (tmp_path / "f").read_bytes() == data
    assert md5 == hashlib.md5(data).hexdigest()


async def test_writes_from_the_files_position(tmp_path: Path) -> None:
    """A multipart part lands where the caller seeked to (its slot), nothing before it is touched."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    pieces = pieces_of(2 * BATCH_BYTES + 5, 300_000)
    size, _ = await write(path, pieces, offset=10 * MiB)
    content = path.read_bytes()
    assert size == 2 * BATCH_BYTES + 5
    assert content[:100] == b"x" * 100 and content[100 : 10 * MiB] == bytes(10 * MiB - 100)
    assert content[10 * MiB :] == b"".join(pieces)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (offset, length) ranges streams asks the kernel to start writing; the real
    sync_file_range still runs."""
    recorded: list[tuple[int, int]] = []
    real = streams.start_writeback

    def recording(fd: int, offset: int, length: int) -> None:
        recorded.append((offset, length))
        real(fd, offset, length)

    monkeypatch.setattr(streams, "start_writeback", recording)
    return recorded


async def test_writeback_is_started_in_steps_over_the_written_range(
    tmp_path: Path, calls: list[tuple[int, int]]
) -> None:
    """With ``writeback`` the kernel is asked to start writing each WRITEBACK_BYTES as they are
    written (the real sync_file_range runs; the wrapper only records the ranges)."""
    total = 2 * WRITEBACK_BYTES + 3 * BATCH_BYTES
    pieces = pieces_of(total, 256 * 1024)
    size, md5 = await write(tmp_path / "f", pieces, offset=MiB, writeback=True)
    assert size == total and md5 == hashlib.md5(b"".join(pieces)).hexdigest()
    assert calls == [(MiB, WRITEBACK_BYTES), (MiB + WRITEBACK_BYTES, WRITEBACK_BYTES)]
    calls.clear()
    await write(tmp_path / "g", pieces)
    assert calls == []  # without writeback (fsync off) the kernel writes when it likes


async def test_writes_without_the_libc_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where libc has neither sync_file_range nor fallocate, the fsync that follows does all the
    work and nothing is reserved: same bytes."""
    monkeypatch.setattr(streams, "_libc", lambda: None)
    pieces = pieces_of(WRITEBACK_BYTES + BATCH_BYTES, 256 * 1024)
    size, _ = await write(tmp_path / "f", pieces, writeback=True)
    assert size == len(b"".join(pieces)) and (tmp_path / "f").read_bytes() == b"".join(pieces)


def test_sync_file_range_and_fallocate_are_found_on_linux(tmp_path: Path) -> None:
    if not os.uname().sysname == "Linux":
        pytest.skip("sync_file_range and fallocate are Linux only")
    assert streams._libc() is not None
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, os.urandom(MiB))
        streams.start_writeback(fd, 0, MiB)
        streams.start_writeback(fd, 0, 0)
        os.fsync(fd)
        # Reserved past the end, the size unchanged: blocks for 8 MiB more, no bytes.
        streams.preallocate(fd, MiB, 8 * MiB)
        st = os.fstat(fd)
        assert st.st_size == MiB and st.st_blocks * 512 >= 9 * MiB
    finally:
        os.close(fd)
    assert (tmp_path / "f").stat().st_size == MiB


@pytest.mark.parametrize("refusal", [errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSPC, errno.EFBIG])
async def test_a_reservation_refused_for_lack_of_room_ends_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    """No room (ENOSPC, EDQUOT, EFBIG): the writes would fail the same way, so the body is not
    read. Any other refusal (a filesystem that cannot reserve): written as before."""

    def refuse(fd: int, mode: int, offset: int, length: int) -> None:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(streams, "fallocate", refuse)
    pieces = pieces_of(2 * MiB, 256 * 1024)
    if refusal in (errno.EOPNOTSUPP, errno.EINVAL):
        size, _ = await write(tmp_path / "f", pieces)
        assert size == 2 * MiB and (tmp_path / "f").read_bytes() == b"".join(pieces)
    else:
        with pytest.raises(OSError) as refused:
            await write(tmp_path / "f", pieces)
        assert refused.value.errno == refusal and (tmp_path / "f").stat().st_size == 0


async def test_short_writev_is_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """writev may write less than asked (a signal, a full disk's last blocks); the rest follows.
    A real file never does that on demand, so writev is cut short here, writing for real."""
    real_writev = os.writev

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        joined = b"".join(buffers)
        return real_writev(fd, [joined[: len(joined) // 3 + 1]])

    monkeypatch.setattr(os, "writev", short_writev)
    pieces = pieces_of(3 * BATCH_BYTES + 77, 200_000)
    size, md5 = await write(tmp_path / "f", pieces)
    data = b"".join(pieces)
    assert size == len(data) and (tmp_path / "f").read_bytes() == data
    assert md5 == hashlib.md5(data).hexdigest()


async def test_failing_body_waits_for_the_batch_in_the_thread(tmp_path: Path) -> None:
    """The body's error is the one raised, and only after the thread let go of the file."""
    hasher = MultiHasher(["md5"])
    pieces = pieces_of(BATCH_BYTES + 1000, 256 * 1024)
    with open(tmp_path / "f", "wb") as f:
        with pytest.raises(errors.IncompleteBody):
            await write_body(f, Body(pieces, fail=errors.IncompleteBody()), hasher)
        written = os.fstat(f.fileno()).st_size
    # The full batch that went to the thread is on disk; the remainder never is.
    assert written == len(b"".join(pieces[:4]))


@pytest.mark.parametrize("fsync", [True, False])
async def test_backend_starts_writeback_only_when_it_fsyncs(
    tmp_path: Path, calls: list[tuple[int, int]], fsync: bool
) -> None:
    """PutObject and UploadPart (its part lands at its slot's offset) pass their fsync setting."""
    be = DiskBackend(tmp_path / "root", "owner", fsync=fsync, min_part_size=1024)
    await be.start()
    try:
        await be.create_bucket("bkt", "owner", "us-east-1")
        pieces = pieces_of(WRITEBACK_BYTES + BATCH_BYTES, 256 * 1024)
        data = b"".join(pieces)
        info = await be.put_object("bkt", "obj", Body(pieces), WriteMeta())
        assert info.etag == hashlib.md5(data).hexdigest()
        assert (tmp_path / "root" / "bkt" / "obj").read_bytes() == data
        assert calls == ([(0, WRITEBACK_BYTES)] if fsync else [])
        calls.clear()
        upload = await be.create_multipart_upload("bkt", "mpu", WriteMeta(), "owner")
        part = await be.upload_part("bkt", "mpu", upload.upload_id, 2, Body(pieces))
        assert part.etag.strip('"') == hashlib.md5(data).hexdigest()
        assert [length for _, length in calls] == ([WRITEBACK_BYTES] if fsync else [])
    finally:
        await be.stop()


class SlowHasher(MultiHasher):
    """MD5 that takes its time, like a slow core: a batch stays in the thread for a while."""

    def __init__(self) -> None:
        super().__init__(["md5"])
        self.busy = False

    def update(self, data: bytes | memoryview) -> None:
        self.busy = True
        time.sleep(0.05)
        super().update(data)
        self.busy = False


@pytest.mark.parametrize("batches", [1, 3])
async def test_cancelled_upload_waits_for_the_thread(tmp_path: Path, batches: int) -> None:
    """Cancelled while a batch is in the thread (with the body waiting for the network, or with
    write_body waiting for that batch), write_body returns only when the thread is done with the
    file descriptor: the caller closes it next, and its number could be reused at once."""
    hasher = SlowHasher()
    arrived = asyncio.Event()

    async def body_pieces() -> AsyncIterator[bytes]:
        for piece in pieces_of(batches * BATCH_BYTES, 256 * 1024):
            yield piece
        arrived.set()
        await asyncio.Event().wait()  # the client stalls

    class Stalling(Body):
        def __aiter__(self) -> AsyncIterator[bytes]:
            return body_pieces()

    with open(tmp_path / "f", "wb") as f:
        task = asyncio.ensure_future(write_body(f, Stalling([]), hasher))
        # The first batch is in the thread, however slow the machine is to start it.
        await until(lambda: hasher.busy, "a batch in the thread")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not hasher.busy
        written = os.fstat(f.fileno()).st_size
    assert written % BATCH_BYTES == 0 and written <= batches * BATCH_BYTES
    assert arrived.is_set() is (batches == 1)


# -- payload.py reading aiohttp's StreamReader --------------------------------------------------


def reader() -> StreamReader:
    # What aiohttp's request handler builds for a body: 64 KiB read-ahead, so more than 128 KiB
    # buffered would pause the transport (here: fail, there is no parser), unless raised.
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    # A connected protocol; asyncio's base Transport cannot pause, which aiohttp tolerates.
    protocol.connection_made(asyncio.Transport())
    return StreamReader(protocol, 2**16, loop=loop)


async def collect(body: AsyncIterator[bytes], stream: StreamReader, pieces: list[bytes]) -> list[bytes]:
    """Iterate ``body`` while the pieces arrive, as they do from the network: after the first read."""
    seen: list[bytes] = []

    async def consume() -> None:
        async for piece in body:
            seen.append(piece)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    for piece in pieces:
        stream.feed_data(piece)
    stream.feed_eof()
    await task
    return seen


def hdrs(**headers: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}))


async def test_aiohttp_pieces_reach_storage_as_received() -> None:
    """readchunk hands over each network piece itself: no join, no copy; the read-ahead is
    raised so the socket is not paused every 128 KiB."""
    stream = reader()
    received = [os.urandom(256 * 1024), os.urandom(100_000), os.urandom(256 * 1024)]
    body = make_body(stream, hdrs(Content_Length=str(sum(map(len, received)))), None)
    seen = await collect(body.__aiter__(), stream, received)
    assert len(seen) == 3 and all(a is b for a, b in zip(seen, received, strict=True))
    assert stream.get_read_buffer_limits() == (_READ_BYTES, 2 * _READ_BYTES)


async def test_aiohttp_http_chunk_ends_are_skipped() -> None:
    """Transfer-Encoding: chunked marks each chunk's end with (b"", True): not the body's end."""
    stream = reader()
    stream.begin_http_chunk_receiving()
    parts = [os.urandom(70_000), os.urandom(50_000)]
    for part in parts:
        stream.feed_data(part)
        stream.end_http_chunk_receiving()
    stream.feed_eof()
    data = b"".join(parts)
    hasher = MultiHasher(["md5", "crc64nvme"])
    body = make_body(stream, hdrs(Content_Length=str(len(data))), None)
    got = b""
    async for piece in body:
        hasher.update(piece)
        got += piece
    assert got == data
    assert body.finish(hasher.digests())  # complete: the checksum to store comes back


async def test_aiohttp_body_ending_early_is_incomplete() -> None:
    stream = reader()
    stream.feed_data(os.urandom(1000))
    stream.feed_eof()
    body = make_body(stream, hdrs(Content_Length="5000"), None)
    with pytest.raises(errors.IncompleteBody):
        async for _ in body:
            pass


async def test_aiohttp_transport_error_is_incomplete() -> None:
    """A connection that breaks mid-body reaches the reader as aiohttp's own exception type."""
    stream = reader()
    stream.feed_data(os.urandom(100_000))
    body = make_body(stream, hdrs(Content_Length="500000"), None)
    got: list[bytes] = []

    async def consume() -> None:
        async for piece in body:
            got.append(piece)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.01)
    stream.set_exception(ContentLengthError("Not enough data to satisfy content length header."))
    with pytest.raises(errors.IncompleteBody):
        await task
    assert [len(p) for p in got] == [100_000]
