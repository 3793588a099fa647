"""In-process (aiohttp test client, real DiskBackend on a temp dir): whatever a signed client sends,
the answer is an S3 error with the right status, never a 500 or a traceback."""

from __future__ import annotations

import base64
import gzip
import hashlib
import random
from pathlib import Path

import pytest
from aiohttp import ClientResponse

from s3serve.storage.disk import DiskBackend
from tests.api.conftest import USER, Send


@pytest.fixture
async def send(make_sender) -> Send:  # type: ignore[no-untyped-def]
    request = await make_sender()
    response = await request("PUT", "/robust")
    assert response.status == 200
    response = await request("PUT", "/robust/obj", b"0123456789")
    assert response.status == 200
    return request


async def _assert_s3_error(response: ClientResponse, status: int, code: str | None = None) -> None:
    body = await response.read()
    assert response.status == status, body
    if response.method != "HEAD":
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'), body
        assert b"Traceback" not in body
        if code:
            assert f"<Code>{code}</Code>".encode() in body, body


def _md5(body: bytes) -> dict[str, str]:
    """The Content-MD5 S3 requires of DeleteObjects and PutBucketCors, for their XML to be read."""
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


_ENTITY = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><Delete><Object><Key>&a;</Key></Object></Delete>'


@pytest.mark.parametrize(
    "method,path,body,headers,status,code",
    [
        ("POST", "/robust?delete", b"<Delete><Object><Key>x</Key>", _md5(b"<Delete><Object><Key>x</Key>"), 400, "MalformedXML"),
        ("POST", "/robust?delete", b"not xml at all", _md5(b"not xml at all"), 400, "MalformedXML"),
        ("POST", "/robust?delete", b"<Other/>", _md5(b"<Other/>"), 400, "MalformedXML"),
        ("POST", "/robust?delete", b"", _md5(b""), 400, "MalformedXML"),
        ("POST", "/robust?delete", _ENTITY, _md5(_ENTITY), 400, "MalformedXML"),
        ("PUT", "/robust/obj?tagging", b"<Tagging><TagSet><Tag><Key>k</Key>", {}, 400, "MalformedXML"),
        ("PUT", "/robust/obj?tagging", b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>", {}, 400, "MalformedXML"),
        ("PUT", "/robust2", b"<CreateBucketConfiguration><LocationConstraint>", {}, 400, "MalformedXML"),
        ("GET", "/robust?list-type=2&max-keys=abc", b"", {}, 400, "InvalidArgument"),
        ("GET", "/robust?list-type=2&encoding-type=base64", b"", {}, 400, "InvalidArgument"),
        ("GET", "/?max-buckets=x", b"", {}, 400, "InvalidArgument"),
        ("GET", "/robust/obj", b"", {"Range": "bytes=999-"}, 416, "InvalidRange"),
        ("GET", "/robust/obj?partNumber=0", b"", {}, 400, "InvalidArgument"),
        ("GET", "/robust/obj?partNumber=x", b"", {}, 400, "InvalidArgument"),
        ("GET", "/robust/obj?versionId=abc", b"", {}, 400, "InvalidArgument"),
        ("GET", "/robust/obj", b"", {"If-Modified-Since": "garbage"}, 200, None),
        ("PUT", "/robust/x", b"abc", {"Content-MD5": "!!!"}, 400, "InvalidDigest"),
        ("PUT", "/robust/x", b"abc", {"x-amz-checksum-crc32": "not-base64"}, 400, "InvalidRequest"),
        ("PUT", "/robust/x", b"abc", {"x-amz-storage-class": "NOPE"}, 400, "InvalidStorageClass"),
        ("PUT", "/robust/x", b"abc", {"x-amz-meta-big": "v" * 3000}, 400, "MetadataTooLarge"),
        ("PUT", "/robust/x", b"abc", {"x-amz-tagging": "a=1&a=2"}, 400, "InvalidTag"),
        ("PUT", "/robust/x", b"abc", {"If-None-Match": '"etag"'}, 501, "NotImplemented"),
        ("PUT", "/robust/x", b"abc", {"x-amz-copy-source": "nobucket"}, 400, "InvalidArgument"),
        ("PUT", "/robust/x", b"", {"x-amz-copy-source": "/robust/obj", "x-amz-metadata-directive": "BOGUS"}, 400, "InvalidArgument"),
        ("PUT", "/robust/x", b"", {"x-amz-copy-source": "/robust/%ff"}, 400, None),
        ("GET", "/robust/%ff", b"", {}, 400, "InvalidURI"),
        ("GET", "/robust/a%00b", b"", {}, 400, "InvalidArgument"),
        ("PUT", "/robust/a%00b", b"x", {}, 400, "InvalidArgument"),
        ("GET", "/.s3serve/tmp", b"", {}, 404, "NoSuchBucket"),
        ("PUT", "/.s3serve", b"", {}, 400, "InvalidBucketName"),
        ("DELETE", "/robust/obj?uploadId=..%2F..%2Fx", b"", {}, 404, "NoSuchUpload"),
        ("GET", "/robust?metadataTable", b"", {}, 501, "NotImplemented"),
        ("GET", "/robust?analytics&id=a", b"", {}, 404, "NoSuchConfiguration"),
        ("GET", "/robust?analytics", b"", {}, 200, None),
        ("PUT", "/robust?acl", b"<AccessControlPolicy><Owner>", {}, 400, "MalformedACLError"),
        ("PUT", "/robust?acl", b"", {"x-amz-acl": "public-read"}, 400, "AccessControlListNotSupported"),
        ("PUT", "/robust/obj?legal-hold", b"<LegalHold>", {}, 400, "MalformedXML"),
        ("GET", "/robust/obj?retention", b"", {}, 400, "InvalidRequest"),
        ("POST", "/robust/obj?restore", b"", {}, 403, "InvalidObjectState"),
        ("POST", "/robust/absent?restore", b"", {}, 404, "NoSuchKey"),
        ("GET", "/robust?policy", b"", {}, 404, "NoSuchBucketPolicy"),
        ("PUT", "/robust?cors", b"<CORSConfiguration><CORSRule>", _md5(b"<CORSConfiguration><CORSRule>"), 400, "MalformedXML"),
        ("PUT", "/robust?policy", b"not json", {}, 400, "MalformedPolicy"),
        ("PUT", "/robust?versioning", b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>", {}, 501, "NotImplemented"),
        ("OPTIONS", "/robust/obj", b"", {}, 400, "BadRequest"),
        ("OPTIONS", "/robust/obj", b"", {"Origin": "https://a.test", "Access-Control-Request-Method": "GET"}, 403, "AccessForbidden"),
    ],
)
async def test_bad_input_gets_s3_errors(send: Send, method: str, path: str, body: bytes, headers: dict[str, str], status: int, code: str | None) -> None:
    response = await send(method, path, body, headers)
    if status < 300:
        assert response.status == status, await response.read()
        return
    await _assert_s3_error(response, status, code)


async def test_random_garbage_never_500s(send: Send) -> None:
    rng = random.Random(1234)
    paths = ["/robust", "/robust/obj", "/robust/new", "/", "/robust/dir/"]
    queries = ["", "?delete", "?tagging", "?uploads", "?uploadId=x", "?list-type=2", "?acl", "?location", "?partNumber=2&uploadId=y", "?renameObject", "?cors", "?policy", "?lifecycle", "?website", "?versioning", "?publicAccessBlock", "?retention", "?legal-hold", "?restore", "?analytics", "?inventory&id=i"]
    header_pool = [
        {"Range": "bytes=" + str(rng.randint(-5, 20))},
        {"If-Match": "*"},
        {"x-amz-copy-source": "robust/obj"},
        {"x-amz-rename-source": "/robust/obj"},
        {"Content-MD5": "AAAA"},
        {"x-amz-checksum-sha256": "AAAA"},
        {"x-amz-sdk-checksum-algorithm": "MD7"},
        {"Origin": "https://a.test", "Access-Control-Request-Method": "PUT"},
        {},
    ]
    for _ in range(150):
        method = rng.choice(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS"])
        path = rng.choice(paths) + rng.choice(queries)
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        response = await send(method, path, body, dict(rng.choice(header_pool)))
        data = await response.read()
        assert response.status < 500 or response.status == 501, (method, path, response.status, data)
        assert b"Traceback" not in data


async def test_unexpected_failure_is_a_logged_internal_error(make_sender, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    class BrokenDisk(DiskBackend):
        async def head_object(self, bucket: str, key: str):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk controller on fire")

    request = await make_sender(BrokenDisk(tmp_path, USER.user_id, fsync=False))
    assert (await request("PUT", "/broken")).status == 200
    # GetObjectAcl looks the object up with head_object, which fails unexpectedly.
    response = await request("GET", "/broken/obj?acl")
    body = await response.read()
    assert response.status == 500
    assert b"<Code>InternalError</Code>" in body
    assert b"on fire" not in body and b"Traceback" not in body
    assert any(r.exc_info and "disk controller on fire" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
async def test_a_content_encoded_upload_is_stored_as_sent(send: Send, tmp_path: Path, encoding: str) -> None:
    # Content-Encoding describes the object (a pre-compressed page), not the transfer: the bytes
    # are stored as they came, never inflated by the HTTP layer.
    packed = gzip.compress(b"<p>compressed page</p>" * 100) if encoding == "gzip" else bytes(range(256)) * 4
    put = await send("PUT", "/robust/page", packed, {"Content-Encoding": encoding})
    assert put.status == 200, await put.read()
    assert put.headers["ETag"] == f'"{hashlib.md5(packed).hexdigest()}"'
    assert (tmp_path / "robust" / "page").read_bytes() == packed  # (the test client inflates GETs)
    if encoding == "br":
        return  # the test client cannot even read a HEAD answer of it without the Brotli package
    head = await send("HEAD", "/robust/page")
    assert head.headers["Content-Encoding"] == encoding
    assert head.headers["Content-Length"] == str(len(packed))
