"""The upstream cache in front of an upstream that accepts connections and then keeps silent: a
live s3serve cache on loopback, its upstream a small aiohttp app of the test's own, driven with
boto3. A client must get ServiceUnavailable (which SDKs retry) well inside its own read timeout
(60 s for boto3), while uploads and downloads that take longer than that wait, but move, go
through whole. The cache's timeouts are shrunk to a second, its clients' read timeout to a few."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from tests.conftest import Server
from tests.e2e.conftest import running_cache
from tests.e2e.fake_upstream import LoopbackApp

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts its own servers"
)

ANSWER = 1.0  # the cache's remote_http.ANSWER_TIMEOUT and QUICK_TIMEOUT here
SHRUNK = f"import s3serve.storage.remote_http as h\nh.ANSWER_TIMEOUT = h.QUICK_TIMEOUT = {ANSWER}"
CLIENT_WAIT = 8.0  # the clients' read timeout: far below the cache's 60 s transfer timeout
UPLOAD_ID = "upload-1"
SLOW = 2.0  # seconds the upstream lets a body wait before it reads it, or takes to send one
MP_PARTS = 2


class SilentUpstream(LoopbackApp):
    """An S3 on loopback that keeps what is PUT to it (objects and parts) and answers HEAD and GET
    of it, but never answers a request for a key or prefix under "hang/", nor for an upload of a
    key under "hung/" (which it creates); it lets the body of a key under "slow/" wait SLOW
    seconds before reading it, and sends the body of one over SLOW seconds; it never reads the
    body of a PUT under "stall/", and counts those PUTs. A key under "mp/" is a multipart object
    of MP_PARTS parts whose part sizes are never told: under "mp/attributes/" GetObjectAttributes
    never answers, under "mp/heads/" it lists no parts (as S3 for an object without checksums)
    and HEAD ?partNumber never answers; the lookups left unanswered are in ``hung``."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.stalled: list[str] = []
        self.hung: list[str] = []
        self._closing = asyncio.Event()
        super().__init__(self._answer)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._closing.set)  # the silent requests end
        super().close()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        bucket, _, key = request.path.lstrip("/").partition("/")
        named = key or request.query.get("prefix", "")
        if named.startswith("hang/") or request.query.get("uploadId", "").startswith("hang"):
            await self._closing.wait()
            return web.Response(status=503)
        if not key:
            return self._bucket(request, bucket)
        if key.startswith("mp/") and ("attributes" in request.query or "partNumber" in request.query):
            return await self._part_lookup(request, key)
        if request.method == "POST" and "uploads" in request.query:
            upload = ("hang-" if key.startswith("hung/") else "") + UPLOAD_ID
            body = f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
            return _xml(body + f"<UploadId>{upload}</UploadId></InitiateMultipartUploadResult>")
        if request.method == "DELETE" and "uploadId" in request.query:
            return web.Response(status=204)
        if request.method == "PUT":
            if key.startswith("stall/"):
                self.stalled.append(key)
                await self._closing.wait()
            if key.startswith("slow"):
                await asyncio.sleep(SLOW)
            sent = await request.read()
            name = f"{key}#{request.query['partNumber']}" if "partNumber" in request.query else key
            self.objects[name] = sent
            return web.Response(headers={"ETag": f'"{hashlib.md5(sent).hexdigest()}"'})
        data = self.objects.get(key)
        if data is None or request.method not in ("GET", "HEAD"):
            return web.Response(status=404 if data is None else 501)
        headers = {
            "ETag": f'"{hashlib.md5(data).hexdigest()}{f"-{MP_PARTS}" if key.startswith("mp/") else ""}"',
            "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
            "Content-Type": "application/octet-stream",
        }
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        response = web.StreamResponse(headers=headers)
        response.content_length = len(data)
        await response.prepare(request)
        pieces = 20 if key.startswith("slow") else 1
        size = -(-len(data) // pieces)
        for start in range(0, len(data), size):
            await response.write(data[start : start + size])
            if pieces > 1:
                await asyncio.sleep(SLOW / pieces)
        await response.write_eof()
        return response

    async def _part_lookup(self, request: web.Request, key: str) -> web.Response:
        if ("attributes" in request.query) == key.startswith("mp/attributes/"):
            self.hung.append(f"{request.method} {key}?{request.query_string}")
            await self._closing.wait()
            return web.Response(status=503)
        # S3's answer for a multipart object uploaded without checksums: the count, no parts.
        parts = f"<ObjectParts><TotalPartsCount>{MP_PARTS}</TotalPartsCount></ObjectParts>"
        return _xml(f"<GetObjectAttributesResponse>{parts}</GetObjectAttributesResponse>")

    @staticmethod
    def _bucket(request: web.Request, bucket: str) -> web.Response:
        if request.method in ("HEAD", "PUT"):
            return web.Response(headers={"x-amz-bucket-region": "us-east-1"})
        if request.method == "GET" and request.query.get("list-type") == "2":
            return _xml(f"<ListBucketResult><Name>{bucket}</Name><KeyCount>0</KeyCount></ListBucketResult>")
        return web.Response(status=501)


def _xml(body: str) -> web.Response:
    document = '<?xml version="1.0" encoding="UTF-8"?>' + body
    return web.Response(body=document.encode(), content_type="application/xml")


@pytest.fixture(scope="module")
def upstream() -> Iterator[SilentUpstream]:
    fake = SilentUpstream()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, upstream: SilentUpstream) -> Iterator[Server]:
    with running_cache(tmp_path_factory.mktemp("cache") / "root", upstream.server, patch=SHRUNK) as srv:
        yield srv
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


@pytest.fixture(scope="module")
def s3(cache: Server) -> Any:
    s3 = cache.client(retries={"total_max_attempts": 1}, read_timeout=CLIENT_WAIT)
    s3.create_bucket(Bucket="bkt")  # type: ignore[attr-defined]
    return s3


HUNG_CALLS = {
    "GetObject": lambda s3: s3.get_object(Bucket="bkt", Key="hang/cold")["Body"].read(),
    "GetObject range": lambda s3: s3.get_object(Bucket="bkt", Key="hang/cold", Range="bytes=1-2"),
    "HeadObject": lambda s3: s3.head_object(Bucket="bkt", Key="hang/cold"),
    "ListObjectsV2": lambda s3: s3.list_objects_v2(Bucket="bkt", Prefix="hang/"),
    "ListMultipartUploads": lambda s3: s3.list_multipart_uploads(Bucket="bkt", Prefix="hang/"),
    "GetObjectTagging": lambda s3: s3.get_object_tagging(Bucket="bkt", Key="hang/cold"),
    "PutObject": lambda s3: s3.put_object(Bucket="bkt", Key="hang/put", Body=b"x" * 1000),
    "DeleteObject": lambda s3: s3.delete_object(Bucket="bkt", Key="hang/gone"),
    "CreateMultipartUpload": lambda s3: s3.create_multipart_upload(Bucket="bkt", Key="hang/mpu-put"),
}
UPLOAD_CALLS = {
    "UploadPart": lambda s3, upload: s3.upload_part(
        Bucket="bkt", Key="hung/mpu", UploadId=upload, PartNumber=1, Body=b"p" * 1000
    ),
    "ListParts": lambda s3, upload: s3.list_parts(Bucket="bkt", Key="hung/mpu", UploadId=upload),
    "AbortMultipartUpload": lambda s3, upload: s3.abort_multipart_upload(
        Bucket="bkt", Key="hung/mpu", UploadId=upload
    ),
}


def _unavailable_in_time(call: Any) -> float:
    started = time.monotonic()
    with pytest.raises(ClientError) as failed:
        call()
    took = time.monotonic() - started
    # A HEAD's error has no body: boto3 names it by its status.
    assert failed.value.response["Error"]["Code"] in ("ServiceUnavailable", "503")
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    return took


@pytest.mark.parametrize("name", HUNG_CALLS)
def test_a_silent_upstream_is_service_unavailable_within_the_answer_timeout(s3: Any, name: str) -> None:
    # Not the transfer timeout (60 s) three times over: the client would have timed out first.
    took = _unavailable_in_time(lambda: HUNG_CALLS[name](s3))
    assert took < 3 * ANSWER, took


@pytest.mark.parametrize("name", UPLOAD_CALLS)
def test_a_silent_upstream_is_service_unavailable_for_an_upload_in_time(s3: Any, name: str) -> None:
    upload = s3.create_multipart_upload(Bucket="bkt", Key="hung/mpu")["UploadId"]
    took = _unavailable_in_time(lambda: UPLOAD_CALLS[name](s3, upload))
    assert took < 3 * ANSWER, took


def test_an_upload_slower_than_the_answer_timeout_goes_through(s3: Any, upstream: SilentUpstream) -> None:
    # The upstream takes the body SLOW seconds after it got the headers: bigger than the socket
    # buffers between them, the body is still going out when the answer timeout has passed.
    data = os.urandom(16 << 20)
    put = s3.put_object(Bucket="bkt", Key="slow/put", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert upstream.objects["slow/put"] == data
    upload = s3.create_multipart_upload(Bucket="bkt", Key="slow/mpu")["UploadId"]
    part = s3.upload_part(Bucket="bkt", Key="slow/mpu", UploadId=upload, PartNumber=1, Body=data)
    assert part["ETag"] == put["ETag"]
    assert upstream.objects["slow/mpu#1"] == data
    s3.abort_multipart_upload(Bucket="bkt", Key="slow/mpu", UploadId=upload)


def test_an_upload_the_upstream_stops_taking_is_service_unavailable(
    tmp_path: Path, upstream: SilentUpstream
) -> None:
    # The upstream reads the headers of a PUT and none of its body, bigger than the socket
    # buffers: the body stalls, where nothing ever ended it, and the cache's request held its
    # connection of the pool and its spooled body for good. It is not sent again: the client
    # that waited for it all that time has given up by then.
    stalling = f"{SHRUNK}\nh.TRANSFER_TIMEOUT = {ANSWER}"
    with running_cache(tmp_path / "root", upstream.server, patch=stalling) as srv:
        s3: Any = srv.client(retries={"total_max_attempts": 1}, read_timeout=CLIENT_WAIT)
        s3.create_bucket(Bucket="bkt")
        data = os.urandom(16 << 20)
        took = _unavailable_in_time(lambda: s3.put_object(Bucket="bkt", Key="stall/put", Body=data))
        assert took < 3 * ANSWER, took
        upload = s3.create_multipart_upload(Bucket="bkt", Key="stall/mpu")["UploadId"]
        part = {"Bucket": "bkt", "Key": "stall/mpu", "UploadId": upload, "PartNumber": 1, "Body": data}
        took = _unavailable_in_time(lambda: s3.upload_part(**part))
        assert took < 3 * ANSWER, took
        assert upstream.stalled == ["stall/put", "stall/mpu"]
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


def test_a_download_slower_than_the_answer_timeout_is_whole(s3: Any, upstream: SilentUpstream) -> None:
    # Answered at once, the body then streams for SLOW seconds: no total timeout cuts it.
    data = os.urandom(3 << 20)
    upstream.objects["slow/get"] = data
    started = time.monotonic()
    assert s3.get_object(Bucket="bkt", Key="slow/get")["Body"].read() == data
    assert time.monotonic() - started >= SLOW * 0.9


PART_LOOKUPS = {
    "GetObject": lambda s3, key: s3.get_object(Bucket="bkt", Key=key)["Body"].read(),
    "HeadObject": lambda s3, key: s3.head_object(Bucket="bkt", Key=key),
    "HeadObject partNumber": lambda s3, key: s3.head_object(Bucket="bkt", Key=key, PartNumber=1),
    "GetObjectAttributes": lambda s3, key: s3.get_object_attributes(
        Bucket="bkt", Key=key, ObjectAttributes=["ObjectParts", "ObjectSize"]
    ),
}


@pytest.fixture(scope="module")
def quick_only(tmp_path_factory: pytest.TempPathFactory, upstream: SilentUpstream) -> Iterator[Any]:
    """A client of a cache whose quick budget (a HEAD's) is shrunk, and not its answer budget:
    a lookup given the answer budget keeps the client waiting past its read timeout."""
    root = tmp_path_factory.mktemp("quick") / "root"
    with running_cache(root, upstream.server, patch=f"{SHRUNK}\nh.ANSWER_TIMEOUT = 600.0") as srv:
        s3: Any = srv.client(retries={"total_max_attempts": 1}, read_timeout=CLIENT_WAIT)
        s3.create_bucket(Bucket="bkt")
        yield s3
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


@pytest.mark.parametrize("lookup", ["attributes", "heads"])
@pytest.mark.parametrize("name", PART_LOOKUPS)
def test_a_part_size_lookup_the_upstream_leaves_unanswered_has_a_heads_budget(
    quick_only: Any, upstream: SilentUpstream, name: str, lookup: str
) -> None:
    # The part sizes of a multipart object read cold (for partNumber reads) are asked with
    # GetObjectAttributes or HEAD ?partNumber: small answers, which had the full answer budget
    # each, keeping a read (and the HEAD that only revalidates) waiting twice a HEAD's. The read
    # is answered without them, within the client's read timeout.
    key = f"mp/{lookup}/{name.replace(' ', '-')}"
    data = os.urandom(1000)
    upstream.objects[key] = data
    answer: Any = PART_LOOKUPS[name](quick_only, key)
    if name == "GetObject":
        assert answer == data
    elif name == "GetObjectAttributes":
        assert answer["ObjectSize"] == len(data)
    else:
        assert answer["ETag"] == f'"{hashlib.md5(data).hexdigest()}-{MP_PARTS}"'
    query = "attributes" if lookup == "attributes" else "partNumber=1"
    assert any(hung.endswith(f"{key}?{query}") for hung in upstream.hung), upstream.hung
