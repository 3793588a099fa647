"""CreateBucket without Content-Length: S3 creates the bucket (HTTP gives a request with neither
Content-Length nor Transfer-Encoding no body), as `curl -X PUT --aws-sigv4` and the AWS CRT send
it; every other PUT without a length gets 411 (moto#6179, localstack#8082)."""

from __future__ import annotations

import hashlib
import http.client
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.conftest import REGION, FixedPayloadAuth, Server

EMPTY = hashlib.sha256(b"").hexdigest()


def _send_without_length(server: Server, method: str, path: str, payload_hash: str) -> tuple[int, bytes]:
    """A SigV4-signed request with no Content-Length and no Transfer-Encoding header at all."""
    request = AWSRequest(method=method, url=server.endpoint + path, headers={"x-amz-content-sha256": payload_hash})
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    parts = urlsplit(server.endpoint)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


def test_create_bucket_without_content_length(server: Server, s3) -> None:  # type: ignore[no-untyped-def]
    for claimed in (EMPTY, "UNSIGNED-PAYLOAD"):
        name = f"nolength-{uuid.uuid4().hex[:12]}"
        status, body = _send_without_length(server, "PUT", f"/{name}", claimed)
        assert status == 200, body
        try:
            assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
            assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        finally:
            s3.delete_bucket(Bucket=name)


def test_other_requests_without_content_length_still_get_411(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    # A signature that vouches for a body which is not there.
    name = f"nolength-{uuid.uuid4().hex[:12]}"
    status, body = _send_without_length(server, "PUT", f"/{name}", hashlib.sha256(b"<x/>").hexdigest())
    assert (status, _code(body)) == (411, "MissingContentLength")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # PutObject, and a bucket sub-resource that takes a body.
    status, body = _send_without_length(server, "PUT", f"/{bucket}/k", EMPTY)
    assert (status, _code(body)) == (411, "MissingContentLength")
    status, body = _send_without_length(server, "PUT", f"/{bucket}?tagging", EMPTY)
    assert (status, _code(body)) == (411, "MissingContentLength")
