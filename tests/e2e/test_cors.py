"""CORS enforced end to end: preflights as a browser sends them (raw HTTP, no credentials), the
Access-Control-* headers of actual requests, and a browser's upload with a presigned URL."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.conftest import Server, http

ORIGIN = "https://app.example.com"
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Credentials",
    "Access-Control-Expose-Headers",
    "Access-Control-Max-Age",
    "Vary",
)

RULES: list[dict[str, Any]] = [
    {
        "AllowedOrigins": [ORIGIN, "https://*.example.org"],
        "AllowedMethods": ["GET", "PUT", "HEAD"],
        "AllowedHeaders": ["x-amz-*", "Content-Type"],
        "ExposeHeaders": ["ETag", "x-amz-request-id"],
        "MaxAgeSeconds": 600,
    },
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]


def _preflight(server: Server, path: str, origin: str | None = ORIGIN, method: str | None = "GET", headers: str | None = None) -> Any:
    sent = {}
    if origin is not None:
        sent["Origin"] = origin
    if method is not None:
        sent["Access-Control-Request-Method"] = method
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return http("OPTIONS", server.endpoint + path, headers=sent)  # type: ignore[arg-type]


def _cors_of(response: Any) -> dict[str, str]:
    return {name: response.headers[name] for name in CORS_HEADERS if name in response.headers}


@pytest.fixture
def cors_bucket(s3, bucket: str) -> str:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello, browser")
    return bucket


def test_preflight_allowed(server: Server, cors_bucket: str) -> None:
    r = _preflight(server, f"/{cors_bucket}/hello.txt", method="PUT", headers="Content-Type, X-Amz-Date,x-amz-meta-color")
    assert r.status == 200, r.data
    assert r.data == b""
    assert _cors_of(r) == {
        "Access-Control-Allow-Origin": ORIGIN,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "GET, PUT, HEAD",
        "Access-Control-Allow-Headers": "content-type, x-amz-date, x-amz-meta-color",
        "Access-Control-Expose-Headers": "ETag, x-amz-request-id",
        "Access-Control-Max-Age": "600",
        "Vary": VARY,
    }
    assert r.headers["x-amz-request-id"]
    # The bucket itself, and an origin matched by the rule's one wildcard.
    r = _preflight(server, f"/{cors_bucket}", origin="https://shop.eu.example.org", method="HEAD")
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://shop.eu.example.org"


def test_preflight_wildcard_origin(server: Server, cors_bucket: str) -> None:
    r = _preflight(server, f"/{cors_bucket}/hello.txt", origin="http://elsewhere.test:8080")
    assert r.status == 200, r.data
    # An AllowedOrigin of '*' answers '*', without credentials, as S3 does.
    assert _cors_of(r) == {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET", "Vary": VARY}


@pytest.mark.parametrize(
    "path,origin,method,headers,resource_type",
    [
        ("/{b}/hello.txt", "https://evil.test", "PUT", None, "OBJECT"),  # origin only allowed for GET
        ("/{b}/hello.txt", ORIGIN, "DELETE", None, "OBJECT"),  # method
        ("/{b}/hello.txt", ORIGIN, "PUT", "x-amz-date, authorization", "OBJECT"),  # one header not allowed
        ("/{b}/hello.txt", "https://example.org", "PUT", None, "OBJECT"),  # '*.' needs a subdomain
        ("/{b}", "http://elsewhere.test", "GET", "x-amz-date", "BUCKET"),  # the '*' rule allows no headers
    ],
)
def test_preflight_refused(server: Server, cors_bucket: str, path: str, origin: str, method: str, headers: str | None, resource_type: str) -> None:
    r = _preflight(server, path.format(b=cors_bucket), origin=origin, method=method, headers=headers)
    assert r.status == 403, r.data
    assert b"<Code>AccessForbidden</Code>" in r.data
    assert (
        b"<Message>CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, "
        b"request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the "
        b"resource's CORS spec.</Message>" in r.data
    )
    assert f"<Method>{method}</Method><ResourceType>{resource_type}</ResourceType>".encode() in r.data
    assert not _cors_of(r)


def test_preflight_without_what_s3_needs(server: Server, s3, bucket: str) -> None:
    # No CORS configuration: 403, whatever the method.
    r = _preflight(server, f"/{bucket}/x", method="PUT")
    assert r.status == 403
    assert b"<Message>CORSResponse: CORS is not enabled for this bucket.</Message>" in r.data
    assert b"<Method>PUT</Method><ResourceType>BUCKET</ResourceType>" in r.data
    r = _preflight(server, f"/{bucket}/x", method=None)
    assert r.status == 403 and b"<Method>OPTIONS</Method>" in r.data
    # No Origin: not a CORS request at all.
    r = _preflight(server, f"/{bucket}/x", origin=None)
    assert r.status == 400 and b"<Code>BadRequest</Code>" in r.data
    assert b"Insufficient information. Origin request header needed." in r.data
    r = _preflight(server, f"/absent-{uuid.uuid4().hex[:12]}/x")
    assert r.status == 403 and b"<Message>CORSResponse: Bucket not found</Message>" in r.data
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    r = _preflight(server, f"/{bucket}/x", method=None)
    assert r.status == 400 and b"<Message>Invalid Access-Control-Request-Method: null</Message>" in r.data
    r = _preflight(server, f"/{bucket}/x", method="PATCH")
    assert r.status == 400 and b"<Message>Invalid Access-Control-Request-Method: PATCH</Message>" in r.data


def test_actual_requests_get_cors_headers(server: Server, s3, cors_bucket: str) -> None:
    url = s3.generate_presigned_url("get_object", Params={"Bucket": cors_bucket, "Key": "hello.txt"})
    plain = http("GET", url)
    assert plain.status == 200 and plain.data == b"hello, browser"
    assert not _cors_of(plain)

    r = http("GET", url, headers={"Origin": ORIGIN})
    assert r.status == 200 and r.data == b"hello, browser"
    # An actual request gets no Access-Control-Allow-Headers: only a preflight asks for headers.
    assert _cors_of(r) == {
        "Access-Control-Allow-Origin": ORIGIN,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "GET, PUT, HEAD",
        "Access-Control-Expose-Headers": "ETag, x-amz-request-id",
        "Access-Control-Max-Age": "600",
        "Vary": VARY,
    }
    head_url = s3.generate_presigned_url("head_object", Params={"Bucket": cors_bucket, "Key": "hello.txt"})
    r = http("HEAD", head_url, headers={"Origin": "https://a.example.org"})
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://a.example.org"
    # Another origin falls through to the '*' rule.
    r = http("GET", url, headers={"Origin": "https://other.test"})
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    # Errors carry them too, so that the page can read the error.
    missing = s3.generate_presigned_url("get_object", Params={"Bucket": cors_bucket, "Key": "absent"})
    r = http("GET", missing, headers={"Origin": ORIGIN})
    assert r.status == 404 and b"<Code>NoSuchKey</Code>" in r.data
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    # No rule allows DELETE: no headers, and the request itself is still served (S3 does not block it).
    delete_url = s3.generate_presigned_url("delete_object", Params={"Bucket": cors_bucket, "Key": "hello.txt"})
    r = http("DELETE", delete_url, headers={"Origin": ORIGIN})
    assert r.status == 204 and not _cors_of(r)


def test_presigned_put_from_a_browser(server: Server, s3, cors_bucket: str) -> None:
    body = uuid.uuid4().bytes * 1000
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": cors_bucket, "Key": "upload/photo.bin", "ContentType": "image/png"}
    )
    # What a browser does for fetch(url, {method: "PUT", headers: {"Content-Type": "image/png"}}):
    pre = _preflight(server, url[len(server.endpoint):].split("?")[0], method="PUT", headers="content-type")
    assert pre.status == 200 and pre.headers["Access-Control-Allow-Headers"] == "content-type"
    r = http("PUT", url, body=body, headers={"Origin": ORIGIN, "Content-Type": "image/png"})
    assert r.status == 200, r.data
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    etag = r.headers["ETag"]
    got = s3.get_object(Bucket=cors_bucket, Key="upload/photo.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/png" and got["ETag"] == etag


def test_a_rewritten_configuration_applies_at_once(server: Server, s3, bucket: str) -> None:
    first = {"CORSRules": [{"AllowedOrigins": ["https://one.test"], "AllowedMethods": ["GET"]}]}
    second = {"CORSRules": [{"AllowedOrigins": ["https://two.test"], "AllowedMethods": ["GET"]}]}
    for _ in range(3):
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=first)
        time.sleep(0.1)  # old enough to be served from the cache
        assert _preflight(server, f"/{bucket}/k", origin="https://one.test").status == 200
        assert _preflight(server, f"/{bucket}/k", origin="https://two.test").status == 403
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=second)
        assert _preflight(server, f"/{bucket}/k", origin="https://one.test").status == 403
        assert _preflight(server, f"/{bucket}/k", origin="https://two.test").status == 200
    s3.delete_bucket_cors(Bucket=bucket)
    r = _preflight(server, f"/{bucket}/k", origin="https://two.test")
    assert r.status == 403 and b"CORS is not enabled" in r.data
