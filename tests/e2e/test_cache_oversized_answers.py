"""The upstream cache when its upstream answers a request for a small document (a listing) with a
body far longer than any S3 sends (a proxy's endless download, a misrouted object): the cache must
not buffer it whole, and its client gets ServiceUnavailable. A live s3serve cache on loopback, its
upstream a small aiohttp app of the test's own, the cache's document bound shrunk to 1 MiB."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from tests.conftest import Server
from tests.e2e.conftest import cache_pair, running_cache
from tests.e2e.fake_upstream import LoopbackApp

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts its own servers"
)

DOCUMENT = 1 << 20  # the cache's remote_http.MAX_DOCUMENT here
SHRUNK = f"import s3serve.storage.remote_http as h\nh.MAX_DOCUMENT = {DOCUMENT}"
ANSWER = 256 << 20  # what the upstream sends for a listing
# The cache's peak memory, generously: a server takes about 50 MiB; one that buffered the answer
# took several times ANSWER.
PEAK = 160 << 20
START = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
)


class LongWinded(LoopbackApp):
    """An upstream that accepts every write and answers every listing with ANSWER bytes, with a
    Content-Length or (``chunked``) without one."""

    def __init__(self) -> None:
        self.chunked = True
        super().__init__(self._answer, client_max_size=1024**2)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return web.Response(status=200)
        answer = web.StreamResponse(status=200, headers={"Content-Type": "application/xml"})
        if not self.chunked:
            answer.content_length = ANSWER
        await answer.prepare(request)
        await answer.write(START)
        block = b"a" * (1 << 20)
        sent = len(START)
        try:
            while sent < ANSWER:
                piece = block[: ANSWER - sent]
                await answer.write(piece)
                sent += len(piece)
        except ConnectionError:
            return answer  # the cache stopped reading
        await answer.write_eof()
        return answer


@pytest.fixture
def upstream() -> Iterator[LongWinded]:
    server = LongWinded()
    yield server
    server.close()


@pytest.fixture
def cache(tmp_path: Path, upstream: LongWinded) -> Iterator[Server]:
    with running_cache(tmp_path / "cache", upstream.server, patch=SHRUNK) as srv:
        yield srv


def _peak(server: Server) -> int:
    assert server.process is not None
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_listing_answered_with_an_endless_body_is_unavailable(
    cache: Server, upstream: LongWinded, chunked: bool
) -> None:
    upstream.chunked = chunked
    s3: Any = cache.client(retries={"max_attempts": 0})
    s3.create_bucket(Bucket="long-winded")
    with pytest.raises(ClientError) as caught:
        s3.list_objects_v2(Bucket="long-winded")
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert _peak(cache) < PEAK
    assert cache.log_path is not None and "Traceback" not in cache.log_path.read_text()


def test_objects_longer_than_a_document_pass_through(tmp_path: Path) -> None:
    # A HEAD's Content-Length is its object's, with no body: an object over the cap was refused
    # as an over-long answer on every revalidation, and every read of it answered 503.
    with cache_pair(tmp_path, patch=SHRUNK) as (_up, srv):
        s3: Any = srv.client(retries={"max_attempts": 0})
        s3.create_bucket(Bucket="long-objects")
        body = os.urandom(2 * DOCUMENT)
        s3.put_object(Bucket="long-objects", Key="k", Body=body)
        assert s3.head_object(Bucket="long-objects", Key="k")["ContentLength"] == len(body)
        assert s3.get_object(Bucket="long-objects", Key="k")["Body"].read() == body
        assert srv.log_path is not None and "an answer over" not in srv.log_path.read_text()
