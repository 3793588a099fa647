"""Presigned URLs whose query string carries the request's x-amz-* headers, as the JS SDK v3's
getSignedUrl makes them (every x-amz-* header but the SSE ones hoisted, only host signed) and
botocore's SigV2 presigner (the x-amz-* headers it signs): the uploader sends none of them, and
they act as the headers they stand for, before the body (Expect: 100-continue) as after it."""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from tests.conftest import REGION, Server, http, object_absent
from tests.e2e.test_expect_continue import BIG, PROMPT, _address, _read_answer
from tests.e2e.test_protocol_edges import _code
from tests.e2e.test_protocol_edges import sigv4_presigned_with_query_headers as _presigned

# What the JS SDK v3 (3.729 and later) puts in every PutObject URL it presigns besides the
# command's headers: the checksum of an empty body, which S3 ignores in a query.
JS_SDK_EXTRAS = {
    "x-amz-checksum-crc32": "AAAAAA==",
    "x-amz-sdk-checksum-algorithm": "CRC32",
    "x-id": "PutObject",
}
HOISTED = {
    "x-amz-tagging": "project=blue&team=data%20eng",
    "x-amz-storage-class": "STANDARD_IA",
    "x-amz-website-redirect-location": "/new.html",
    "x-amz-server-side-encryption": "AES256",
    "x-amz-meta-color": "deep blue",
}


def _check_applied(s3: Any, bucket: str, key: str, body: bytes) -> None:
    tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("project", "blue"), ("team", "data eng")]
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == body
    assert got["StorageClass"] == "STANDARD_IA"
    assert got["WebsiteRedirectLocation"] == "/new.html"
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Metadata"] == {"color": "deep blue"}
    assert got["TagCount"] == 2


def test_sigv4_presigned_put_applies_the_headers_in_its_query(server: Server, s3: Any, bucket: str) -> None:
    url = _presigned(server, "PUT", bucket, "js", {**HOISTED, **JS_SDK_EXTRAS})
    assert "X-Amz-SignedHeaders=host&" in url and "x-amz-tagging=" in url
    r = http("PUT", url, body=b"uploaded by a browser")
    assert r.status == 200, r.data
    _check_applied(s3, bucket, "js", b"uploaded by a browser")
    # Sent as well, a header wins; under SigV4 one not signed is refused.
    r = http("PUT", url, body=b"other", headers={"x-amz-storage-class": "STANDARD"})
    assert (r.status, _code(r.data)) == (403, "AccessDenied"), r.data


def test_sigv2_presigned_put_applies_the_headers_in_its_query(server: Server, s3: Any, bucket: str) -> None:
    v2 = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key, region_name=REGION, config=Config(signature_version="s3"),
    )  # fmt: skip
    params = {
        "Bucket": bucket, "Key": "v2", "Tagging": "project=blue&team=data%20eng",
        "StorageClass": "STANDARD_IA", "WebsiteRedirectLocation": "/new.html",
        "ServerSideEncryption": "AES256", "Metadata": {"color": "deep blue"},
    }  # fmt: skip
    url = v2.generate_presigned_url("put_object", Params=params)
    assert "AWSAccessKeyId=" in url and "x-amz-tagging=" in url
    r = http("PUT", url, body=b"uploaded with a SigV2 URL")
    assert r.status == 200, r.data
    _check_applied(s3, bucket, "v2", b"uploaded with a SigV2 URL")


def test_the_query_headers_are_checked_as_headers(server: Server, s3: Any, bucket: str) -> None:
    """Bad values in the query get the answers the headers would get, nothing stored; the
    checksums a presigner puts there are not checked against the body (S3 ignores them)."""
    for headers, code in [
        ({"x-amz-storage-class": "PLATINUM"}, "InvalidStorageClass"),
        ({"x-amz-tagging": "a=1&a=2"}, "InvalidTag"),
        ({"x-amz-acl": "public-read"}, "AccessControlListNotSupported"),
        ({"x-amz-website-redirect-location": "no-slash"}, "InvalidRedirectLocation"),
    ]:
        url = _presigned(server, "PUT", bucket, "refused", {**headers, **JS_SDK_EXTRAS})
        r = http("PUT", url, body=b"x")
        assert (r.status, _code(r.data)) == (400, code), (headers, r.data)
        assert object_absent(s3, bucket, "refused")
    # The owner-only canned ACL a cross-account uploader names is accepted.
    url = _presigned(server, "PUT", bucket, "acl", {"x-amz-acl": "bucket-owner-full-control"})
    assert http("PUT", url, body=b"mine").status == 200
    grants = s3.get_object_acl(Bucket=bucket, Key="acl")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]


def test_a_presigned_create_multipart_upload_applies_the_headers_in_its_query(
    server: Server, s3: Any, bucket: str
) -> None:
    query = {"uploads": "", **HOISTED, "x-id": "CreateMultipartUpload"}
    url = _presigned(server, "POST", bucket, "mp", query)
    r = http("POST", url)
    assert r.status == 200, r.data
    found = re.search(rb"<UploadId>(.*?)</UploadId>", r.data)
    assert found is not None, r.data
    upload_id = found.group(1).decode()
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"in parts")
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload=parts)
    _check_applied(s3, bucket, "mp", b"in parts")


def test_the_query_headers_are_read_before_the_100(server: Server, s3: Any, bucket: str) -> None:
    """Expect: 100-continue: an upload the query's headers doom is refused before its body."""
    url = _presigned(server, "PUT", bucket, "big", {"x-amz-storage-class": "PLATINUM"})
    target = url[len(server.endpoint) :]
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        head = (
            f"PUT {target} HTTP/1.1\r\nHost: {urlsplit(server.endpoint).netloc}\r\n"
            f"Content-Length: {BIG}\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer, _ = _read_answer(sock)
        assert (answer.status, answer.code) == (400, "InvalidStorageClass"), answer
    assert object_absent(s3, bucket, "big")


def test_query_headers_no_http_header_could_carry_are_refused(server: Server, s3: Any, bucket: str) -> None:
    """A query parameter can hold what a header cannot (a CR, an LF, a NUL; a name that is not a
    header name): stored, it would break every answer about the object that echoes it."""
    for headers, name in [
        ({"x-amz-meta-x": "a\r\nSet-Cookie: c=1"}, "x-amz-meta-x"),
        ({"x-amz-meta-x": "a\nb"}, "x-amz-meta-x"),
        ({"x-amz-website-redirect-location": "/a\r\nLocation: /b"}, "x-amz-website-redirect-location"),
        ({"x-amz-meta-x": "nul\x00"}, "x-amz-meta-x"),
        ({"x-amz-meta-a:b": "v"}, "x-amz-meta-a:b"),
        ({"x-amz-meta-a b": "v"}, "x-amz-meta-a b"),
    ]:
        r = http("PUT", _presigned(server, "PUT", bucket, "ctl", headers), body=b"x")
        assert (r.status, _code(r.data)) == (400, "InvalidArgument"), (headers, r.data)
        assert f"<ArgumentName>{name}</ArgumentName>".encode() in r.data, r.data
        assert object_absent(s3, bucket, "ctl")
    # A tab a header may hold.
    url = _presigned(server, "PUT", bucket, "ok", {"x-amz-meta-x": "a\tb"})
    assert http("PUT", url, body=b"x").status == 200
    assert s3.head_object(Bucket=bucket, Key="ok")["Metadata"] == {"x": "a\tb"}
