"""The upstream cache when its upstream's 2xx answer to a write is not S3's: a captive portal or a
misconfigured proxy answering every request 200 with a web page (or with nothing). Such a write
is not known to have happened: the client gets ServiceUnavailable, never an acknowledgement, and
the cache keeps nothing it would serve as written. Live processes on loopback, driven by boto3:
an s3serve cache whose upstream is a small aiohttp front of a second s3serve."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from tests.conftest import Server
from tests.e2e.conftest import running_cache
from tests.e2e.fake_upstream import LoopbackApp

# Servers of its own on loopback, whatever S3SERVE_TEST_ENDPOINT names.
pytestmark = pytest.mark.skipif(bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="own servers")

PAGE = (200, "text/html", b"<!DOCTYPE html><html><body><p>Welcome! Sign in to continue.</p></body></html>")
NOTHING = (200, "text/plain", b"")
# S3's own way to fail a copy or a Complete after its 200 has gone out: an <Error> in the body.
ERROR = (200, "application/xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
         b"<Message>We encountered an internal error. Please try again.</Message></Error>")  # fmt: skip
# Headers a front passes on neither way: its own connection's, and those it sets itself.
HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"})


class Front(LoopbackApp):
    """An HTTP server on loopback that passes each request on to ``target`` and relays its answer,
    except the requests ``hijack`` picks: those are answered ``page`` (status, content type,
    body), and passed on first only when ``pass_on`` is set (an upstream whose answer a proxy
    rewrites)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.hijack: Callable[[web.Request], bool] = lambda request: False
        self.page = PAGE
        self.pass_on = False
        self.hijacked = 0
        super().__init__(self._answer)
        self._session = self.run(self._open())

    @staticmethod
    async def _open() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("Content-Type", "Accept-Encoding"))

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        hijacked = self.hijack(request)
        if hijacked:
            self.hijacked += 1
            if not self.pass_on:
                status, kind, page = self.page
                return web.Response(status=status, body=page, content_type=kind)
        # The Host header goes on as it came: the upstream checks the signature made with it.
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP}
        url = self.target + request.raw_path
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as answer:
            data = await answer.read()
            relayed = {name: value for name, value in answer.headers.items() if name.lower() not in HOP}
            status = answer.status
        if hijacked:
            status, kind, data = self.page
            relayed = {"Content-Type": kind}
        if request.method == "HEAD":  # the object's length, which a web.Response would not send
            head = web.StreamResponse(status=status, headers=relayed)
            head.content_length = int(answer.headers.get("Content-Length") or 0)
            await head.prepare(request)
            await head.write_eof()
            return head
        return web.Response(status=status, body=data, headers=relayed)

    async def stopped(self) -> None:
        await self._session.close()


@pytest.fixture
def front(upstream: Server) -> Iterator[Front]:
    proxy = Front(upstream.endpoint)
    yield proxy
    proxy.close()


@pytest.fixture
def cache(tmp_path: Path, upstream: Server, front: Front) -> Iterator[tuple[Any, Path]]:
    """A boto3 client that does not retry, of a cache whose upstream is ``front``, and the folder
    of a new bucket in the cache's ROOT (its name is the folder's)."""
    root = tmp_path / "cache"
    behind = Server(front.endpoint, upstream.access_key, upstream.secret_key, None)
    with running_cache(root, behind, "--cache-revalidate", "1h") as srv:
        s3 = srv.client(retries={"max_attempts": 0})
        bucket = f"portal-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        yield s3, root / bucket
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


def is_write(method: str, key: str, *, query: str = "", header: str = "") -> Callable[[web.Request], bool]:
    """Picks the requests ``method`` of ``key`` (path /bucket/key) whose query holds ``query``
    (or none, when empty) and that carry ``header``."""

    def pick(request: web.Request) -> bool:
        if request.method != method or request.path.split("/", 2)[-1] != key:
            return False
        if (query not in request.query_string) if query else request.query_string:
            return False
        return not header or header in request.headers

    return pick


def unavailable(call: Callable[[], object]) -> None:
    with pytest.raises(ClientError) as failed:
        call()
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert failed.value.response["Error"]["Code"] == "ServiceUnavailable"


@pytest.mark.parametrize("page", [PAGE, NOTHING], ids=["web-page", "empty"])
def test_a_put_answered_without_an_etag_is_not_acknowledged(
    cache: tuple[Any, Path], front: Front, page: tuple[int, str, bytes]
) -> None:
    s3, folder = cache
    bucket = folder.name
    s3.put_object(Bucket=bucket, Key="k", Body=b"the version before")
    front.page, front.hijack = page, is_write("PUT", "k")
    unavailable(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"important data"))
    front.hijack = is_write("PUT", "new")
    unavailable(lambda: s3.put_object(Bucket=bucket, Key="new", Body=b"important data"))
    assert front.hijacked == 2
    # Nothing here claims the writes happened: no copy of their bytes, and the upstream's answered.
    assert not (folder / "new").exists()
    copy = folder / "k"
    assert not copy.exists() or copy.read_bytes() == b"the version before"
    front.hijack = lambda request: False
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"the version before"
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="new")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.parametrize("page", [PAGE, NOTHING], ids=["web-page", "empty"])
def test_an_upload_part_answered_without_an_etag_is_not_acknowledged(
    cache: tuple[Any, Path], front: Front, page: tuple[int, str, bytes]
) -> None:
    s3, folder = cache
    bucket = folder.name
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    front.page, front.hijack = page, is_write("PUT", "mp", query="partNumber=")
    part = {"Bucket": bucket, "Key": "mp", "UploadId": upload, "PartNumber": 1, "Body": b"part one"}
    unavailable(lambda: s3.upload_part(**part))
    assert front.hijacked == 1
    front.hijack = lambda request: False
    etag = s3.upload_part(**part)["ETag"]
    assert etag == f'"{hashlib.md5(b"part one").hexdigest()}"'
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload=parts)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"part one"


@pytest.mark.parametrize("page", [PAGE, NOTHING, ERROR], ids=["web-page", "empty", "error"])
def test_a_copy_answered_without_a_copy_result_is_not_acknowledged(
    cache: tuple[Any, Path], front: Front, page: tuple[int, str, bytes]
) -> None:
    s3, folder = cache
    bucket = folder.name
    s3.put_object(Bucket=bucket, Key="src", Body=b"the source")
    front.page, front.hijack = page, is_write("PUT", "dst", header="x-amz-copy-source")
    source = f"{bucket}/src"
    unavailable(lambda: s3.copy_object(Bucket=bucket, Key="dst", CopySource=source))
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    front.hijack = is_write("PUT", "dst", query="partNumber=", header="x-amz-copy-source")
    part = {"Bucket": bucket, "Key": "dst", "UploadId": upload, "PartNumber": 1, "CopySource": source}
    unavailable(lambda: s3.upload_part_copy(**part, CopySourceRange="bytes=0-3"))
    unavailable(lambda: s3.upload_part_copy(**part))
    assert front.hijacked == 3
    front.hijack = lambda request: False
    assert not (folder / "dst").exists()
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="dst")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert s3.list_parts(Bucket=bucket, Key="dst", UploadId=upload).get("Parts", []) == []


@pytest.mark.parametrize("page", [PAGE, NOTHING, ERROR], ids=["web-page", "empty", "error"])
def test_a_complete_answered_without_its_result_is_not_acknowledged(
    cache: tuple[Any, Path], front: Front, page: tuple[int, str, bytes]
) -> None:
    s3, folder = cache
    bucket = folder.name
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"the part")["ETag"]
    complete = {"Bucket": bucket, "Key": "mp", "UploadId": upload}
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    front.page, front.hijack = page, is_write("POST", "mp", query="uploadId=")
    unavailable(lambda: s3.complete_multipart_upload(**complete, MultipartUpload=parts))
    assert front.hijacked == 1
    front.hijack = lambda request: False
    assert not (folder / "mp").exists()
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="mp")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # The upload is still there upstream: completed now, its object is the part's bytes.
    s3.complete_multipart_upload(**complete, MultipartUpload=parts)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"the part"


def deletes_unavailable(s3: Any, bucket: str, front: Front, page: tuple[int, str, bytes]) -> None:
    """A DeleteObject of "k" (holding b"still there") and a DeleteObjects of it, each answered
    ``page`` by ``front``: neither is taken for a delete, and "k" is still there."""
    front.page, front.hijack = page, is_write("DELETE", "k")
    unavailable(lambda: s3.delete_object(Bucket=bucket, Key="k"))
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
    assert answer.get("Deleted", []) == []
    assert [(error["Key"], error["Code"]) for error in answer["Errors"]] == [("k", "ServiceUnavailable")]
    assert front.hijacked == 2
    front.hijack = lambda request: False
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"still there"


def test_a_delete_answered_with_a_web_page_is_not_acknowledged(cache: tuple[Any, Path], front: Front) -> None:
    # S3 answers DeleteObject 204 and nothing else: a 2xx is all it says, and a page is not it.
    s3, folder = cache
    bucket = folder.name
    s3.put_object(Bucket=bucket, Key="k", Body=b"still there")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"still there"
    deletes_unavailable(s3, bucket, front, PAGE)


def test_a_delete_answered_200_without_a_body_is_a_delete(cache: tuple[Any, Path], front: Front) -> None:
    # Not every S3 answers DeleteObject with S3's 204: some (older Ceph RGW, proxies) with 200.
    s3, folder = cache
    bucket = folder.name
    s3.put_object(Bucket=bucket, Key="k", Body=b"deleted")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"deleted"
    front.page, front.pass_on, front.hijack = NOTHING, True, is_write("DELETE", "k")
    s3.delete_object(Bucket=bucket, Key="k")
    assert front.hijacked == 1
    assert not (folder / "k").exists()
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="k")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"


NOT_FOUND = (404, "text/html", b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>")


def test_a_delete_answered_404_with_a_web_page_is_not_acknowledged(
    cache: tuple[Any, Path], front: Front
) -> None:
    # A DELETE of a missing key is a delete (S3 answers 204 either way), so a 404 was taken as
    # one: a proxy's "Not Found" page, of a request that never reached S3, told the client 204
    # and DeleteObjects listed the key as Deleted, though the object stayed upstream.
    s3, folder = cache
    bucket = folder.name
    s3.put_object(Bucket=bucket, Key="k", Body=b"still there")
    deletes_unavailable(s3, bucket, front, NOT_FOUND)


def test_a_read_answered_404_with_a_web_page_is_not_no_such_key(
    cache: tuple[Any, Path], front: Front
) -> None:
    # S3's 404 to a GET names its fault in an <Error>: a page is a proxy's, not a missing object.
    s3, folder = cache
    bucket = folder.name
    s3.put_object(Bucket=bucket, Key="k", Body=b"there")
    (folder / "k").unlink()  # no copy here: the GET goes upstream
    front.page, front.hijack = NOT_FOUND, lambda request: request.method == "GET"
    unavailable(lambda: s3.get_object(Bucket=bucket, Key="k"))
    unavailable(lambda: s3.list_objects_v2(Bucket=bucket))
    front.hijack = lambda request: False
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"there"
