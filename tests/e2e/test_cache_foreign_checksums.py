"""The upstream cache in front of an S3 that stores checksums of algorithms s3serve does not compute
itself (SHA512, MD5, XXHASH64, XXHASH3, XXHASH128: in S3's API since 2025). The cache passes them
on as the upstream told them, on GET and HEAD with ChecksumMode ENABLED (from its copy too),
GetObjectAttributes and ListParts, where it dropped them. A live s3serve cache on loopback, its
upstream a small aiohttp app of the test's own, driven with boto3 (which checks the GET's)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from awscrt import checksums as crt

from tests.conftest import free_port, start_server, stop_server

pytestmark = pytest.mark.skipif(bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="own servers")

SINGLE = os.urandom(3000)
PARTS = [os.urandom(2000), os.urandom(1000)]
MULTI = b"".join(PARTS)
UPLOAD = "upload-of-pending"
UPLOAD_PARTS = [os.urandom(700), os.urandom(300)]


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def xxhash64(data: bytes) -> bytes:
    hasher = crt.XXHash.new_xxhash64()
    hasher.update(data)
    return bytes(hasher.finalize())


SINGLE_SHA512 = b64(hashlib.sha512(SINGLE).digest())
PART_XXHASH64 = [b64(xxhash64(part)) for part in PARTS]
# S3's COMPOSITE checksum: the checksum of the parts' checksums, and their count.
MULTI_XXHASH64 = b64(xxhash64(b"".join(xxhash64(part) for part in PARTS))) + f"-{len(PARTS)}"
MULTI_ETAG = hashlib.md5(b"".join(hashlib.md5(part).digest() for part in PARTS)).hexdigest() + f"-{len(PARTS)}"
UPLOAD_MD5 = [b64(hashlib.md5(part).digest()) for part in UPLOAD_PARTS]
UPLOAD_XXHASH128 = "AAECAwQFBgcICQoLDA0ODw=="  # a value of the right length: nothing here computes it


class NewChecksumsUpstream:
    """An S3 on loopback with bucket "bkt" holding "single" (a SHA512 checksum) and "multi" (two
    parts, COMPOSITE XXHASH64 checksums), and an upload of "pending" whose parts have MD5 and
    XXHASH128 checksums."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._answer)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        _, _, key = request.path.lstrip("/").partition("/")
        if not key:
            if request.method in ("HEAD", "PUT"):
                return web.Response(headers={"x-amz-bucket-region": "us-east-1"})
            return web.Response(status=501)
        if key == "pending" and request.method == "GET" and request.query.get("uploadId") == UPLOAD:
            return _xml(_list_parts())
        if key == "multi" and request.method == "GET" and "attributes" in request.query:
            return _xml(_attributes())
        if key not in ("single", "multi") or request.method not in ("GET", "HEAD") or request.query:
            return web.Response(status=404 if key not in ("single", "multi") else 501)
        data = SINGLE if key == "single" else MULTI
        headers = {
            "ETag": f'"{hashlib.md5(data).hexdigest()}"' if key == "single" else f'"{MULTI_ETAG}"',
            "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
            "Content-Type": "application/octet-stream",
        }
        if request.headers.get("x-amz-checksum-mode") == "ENABLED":
            if key == "single":
                headers.update({"x-amz-checksum-sha512": SINGLE_SHA512, "x-amz-checksum-type": "FULL_OBJECT"})
            else:
                headers.update({"x-amz-checksum-xxhash64": MULTI_XXHASH64, "x-amz-checksum-type": "COMPOSITE"})
        if request.method == "HEAD":
            head = web.StreamResponse(headers=headers)
            head.content_length = len(data)
            await head.prepare(request)
            await head.write_eof()
            return head
        return web.Response(body=data, headers=headers)


def _xml(body: str) -> web.Response:
    document = '<?xml version="1.0" encoding="UTF-8"?>' + body
    return web.Response(body=document.encode(), content_type="application/xml")


def _attributes() -> str:
    parts = "".join(
        f"<Part><PartNumber>{n}</PartNumber><Size>{len(part)}</Size>"
        f"<ChecksumXXHASH64>{PART_XXHASH64[n - 1]}</ChecksumXXHASH64></Part>"
        for n, part in enumerate(PARTS, 1)
    )
    return (
        '<GetObjectAttributesResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<ObjectParts><TotalPartsCount>{len(PARTS)}</TotalPartsCount><PartNumberMarker>0</PartNumberMarker>"
        f"<NextPartNumberMarker>{len(PARTS)}</NextPartNumberMarker><MaxParts>1000</MaxParts>"
        f"<IsTruncated>false</IsTruncated>{parts}</ObjectParts></GetObjectAttributesResponse>"
    )


def _list_parts() -> str:
    parts = "".join(
        f"<Part><PartNumber>{n}</PartNumber><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
        f'<ETag>"{hashlib.md5(part).hexdigest()}"</ETag><Size>{len(part)}</Size>'
        f"<ChecksumMD5>{UPLOAD_MD5[n - 1]}</ChecksumMD5><ChecksumXXHASH128>{UPLOAD_XXHASH128}</ChecksumXXHASH128>"
        "</Part>"
        for n, part in enumerate(UPLOAD_PARTS, 1)
    )
    return (
        '<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>bkt</Bucket>'
        f"<Key>pending</Key><UploadId>{UPLOAD}</UploadId><PartNumberMarker>0</PartNumberMarker>"
        f"<NextPartNumberMarker>{len(UPLOAD_PARTS)}</NextPartNumberMarker><MaxParts>1000</MaxParts>"
        f"<IsTruncated>false</IsTruncated><StorageClass>STANDARD</StorageClass>{parts}</ListPartsResult>"
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A boto3 client of a cache in front of NewChecksumsUpstream, and the cache's folder of "bkt"."""
    fake = NewChecksumsUpstream()
    root = tmp_path_factory.mktemp("cache") / "root"
    root.mkdir()
    srv = start_server(
        root, "--no-fsync", "--upstream", fake.endpoint,
        "--upstream-access-key", "up", "--upstream-secret-key", "up-secret",
    )  # fmt: skip
    try:
        s3: Any = srv.client()
        s3.create_bucket(Bucket="bkt")
        yield s3, root / "bkt"
    finally:
        stop_server(srv)
        fake.close()
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


def _kept(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never kept"
        time.sleep(0.02)


def test_get_and_head_pass_on_a_sha512_checksum_from_the_upstream_and_from_the_copy(
    cache: tuple[Any, Path],
) -> None:
    s3, folder = cache
    head = s3.head_object(Bucket="bkt", Key="single", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA512") == SINGLE_SHA512
    assert head.get("ChecksumType") == "FULL_OBJECT"
    got = s3.get_object(Bucket="bkt", Key="single", ChecksumMode="ENABLED")
    assert got["Body"].read() == SINGLE  # boto3 checks the body against the SHA512 it is given
    assert got.get("ChecksumSHA512") == SINGLE_SHA512
    _kept(folder / "single")
    again = s3.get_object(Bucket="bkt", Key="single", ChecksumMode="ENABLED")
    assert again["Body"].read() == SINGLE
    assert again.get("ChecksumSHA512") == SINGLE_SHA512
    head = s3.head_object(Bucket="bkt", Key="single", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA512") == SINGLE_SHA512
    assert "ChecksumSHA512" not in s3.head_object(Bucket="bkt", Key="single")  # asked for only


def test_get_object_attributes_and_part_reads_pass_on_xxhash64_checksums(cache: tuple[Any, Path]) -> None:
    s3, _ = cache
    attributes = s3.get_object_attributes(Bucket="bkt", Key="multi", ObjectAttributes=["Checksum", "ObjectParts"])
    assert attributes["Checksum"].get("ChecksumXXHASH64") == MULTI_XXHASH64.split("-")[0]
    assert attributes["Checksum"].get("ChecksumType") == "COMPOSITE"
    listed = attributes["ObjectParts"].get("Parts", [])
    assert [(p["PartNumber"], p["Size"], p.get("ChecksumXXHASH64")) for p in listed] == [
        (n, len(part), PART_XXHASH64[n - 1]) for n, part in enumerate(PARTS, 1)
    ]
    whole = s3.get_object(Bucket="bkt", Key="multi", ChecksumMode="ENABLED")
    assert whole["Body"].read() == MULTI
    assert whole.get("ChecksumXXHASH64") == MULTI_XXHASH64
    # A part of a COMPOSITE object is answered with its own checksum, which boto3 checks.
    second = s3.get_object(Bucket="bkt", Key="multi", PartNumber=2, ChecksumMode="ENABLED")
    assert second["Body"].read() == PARTS[1]
    assert second.get("ChecksumXXHASH64") == PART_XXHASH64[1]


def test_list_parts_passes_on_md5_and_xxhash128_checksums(cache: tuple[Any, Path]) -> None:
    s3, _ = cache
    parts = s3.list_parts(Bucket="bkt", Key="pending", UploadId=UPLOAD)["Parts"]
    assert [(p["PartNumber"], p["Size"], p.get("ChecksumMD5"), p.get("ChecksumXXHASH128")) for p in parts] == [
        (n, len(part), UPLOAD_MD5[n - 1], UPLOAD_XXHASH128) for n, part in enumerate(UPLOAD_PARTS, 1)
    ]
