"""Bucket configuration documents at the edges of what can be parsed and stored: nesting deeper
than any S3 document, numbers too long to convert, documents too big to keep. Each is refused
with S3's error for a bad document, never a 500, and a refused document leaves the stored one as
it was."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from tests.conftest import Server, signed


def code(data: bytes) -> str | None:
    m = re.search(rb"<Code>(.*?)</Code>", data)
    return m.group(1).decode() if m else None


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def nested(root: bytes, wrapper: bytes, depth: int) -> bytes:
    """<root><wrapper><a><a>...x...</a></a></wrapper></root>, without the wrapper when empty."""
    deep = b"<a>" * depth + b"x" + b"</a>" * depth
    if wrapper:
        deep = b"<" + wrapper + b">" + deep + b"</" + wrapper + b">"
    return b"<" + root + b">" + deep + b"</" + root + b">"


@pytest.mark.parametrize("depth", [480, 50_000])
@pytest.mark.parametrize(
    "sub,root,wrapper",
    [
        ("website", b"WebsiteConfiguration", b""),
        # Kept as sent below its known elements: a deep one would fail when rendered for storage.
        ("notification", b"NotificationConfiguration", b"TopicConfiguration"),
        ("cors", b"CORSConfiguration", b"CORSRule"),
        ("acl", b"AccessControlPolicy", b""),
    ],
)
def test_deeply_nested_documents_are_malformed(
    server: Server, bucket: str, sub: str, root: bytes, wrapper: bytes, depth: int
) -> None:
    body = nested(root, wrapper, depth)
    # With its Content-MD5, which S3 requires of PutBucketCors (test_api_edges_body_digest).
    r = signed(server, "PUT", f"/{bucket}?{sub}", body, headers={"Content-MD5": _md5(body)})
    assert r.status == 400, r.data
    assert code(r.data) in ("MalformedXML", "MalformedACLError"), r.data


def test_deeply_nested_policy_is_malformed(server: Server, bucket: str) -> None:
    body = b'{"Statement":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    r = signed(server, "PUT", f"/{bucket}?policy", body)
    assert (r.status, code(r.data)) == (400, "MalformedPolicy"), r.data


@pytest.mark.parametrize("value", [b"9" * 5000, b"\xd9\xa3", b"99999999999999999999"])
def test_cors_max_age_must_be_a_plain_integer(server: Server, bucket: str, value: bytes) -> None:
    body = (
        b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"
        b"<MaxAgeSeconds>" + value + b"</MaxAgeSeconds></CORSRule></CORSConfiguration>"
    )
    r = signed(server, "PUT", f"/{bucket}?cors", body, headers={"Content-MD5": _md5(body)})
    assert (r.status, code(r.data)) == (400, "MalformedXML"), r.data


def test_document_too_big_to_keep_is_refused_whole(server: Server, bucket: str) -> None:
    """A document is kept whole or not at all: one bigger than storage reads back would come
    back cut short."""
    small = (
        b'{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:GetObject",'
        b'"Resource":"arn:aws:s3:::' + bucket.encode() + b'/private/*"}]}'
    )
    assert signed(server, "PUT", f"/{bucket}?policy", small).status == 204
    big = b'{"Statement":[{"Sid":"' + b"x" * (1536 * 1024) + b'"}]}'
    r = signed(server, "PUT", f"/{bucket}?policy", big)
    assert r.status == 400, r.data[:500]
    got = signed(server, "GET", f"/{bucket}?policy")
    assert (got.status, got.data) == (200, small)
