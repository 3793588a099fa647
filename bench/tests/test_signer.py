"""bench.signer must sign exactly as botocore does, or every benchmark request would be a 403."""

from __future__ import annotations

import calendar
import hashlib
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from bench.signer import UNSIGNED, Signer, uri_encode

ACCESS, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
STAMP = "20240115T083000Z"
NOW = calendar.timegm((2024, 1, 15, 8, 30, 0))
HOST = "127.0.0.1:9000"


def botocore_sign(auth: S3SigV4Auth, request: AWSRequest) -> None:
    # add_auth() with the clock fixed: the same steps in the same order.
    request.context["timestamp"] = STAMP
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    auth._inject_signature_to_request(request, auth.signature(auth.string_to_sign(request, canonical), request))


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/bucket/key", {}, b""),
        ("PUT", "/bucket/dir/a key+with=odd&chars~é", {}, b"x" * 4096),
        ("GET", "/bucket", {"list-type": "2", "prefix": "d01/d02/", "delimiter": "/", "continuation-token": "a+b/c=="}, b""),
        ("POST", "/bucket/big", {"uploads": ""}, b""),
        ("PUT", "/bucket/big", {"partNumber": "3", "uploadId": "x/y+z"}, UNSIGNED.encode()),
    ],
)
def test_header_signature_matches_botocore(method: str, path: str, query: dict[str, str], body: bytes) -> None:
    unsigned = body == UNSIGNED.encode()
    payload = b"" if unsigned else body
    sha = UNSIGNED if unsigned else hashlib.sha256(payload).hexdigest()
    ours = Signer(ACCESS, SECRET).sign_headers(method, HOST, path, query, sha, {"Content-Length": str(len(payload))}, now=NOW)

    url = f"http://{HOST}{uri_encode(path, keep_slash=True)}"
    request = AWSRequest(method=method, url=url, params=query, data=payload,
                         headers={"Content-Length": str(len(payload))})
    request.context["client_config"] = Config(s3={"payload_signing_enabled": not unsigned})
    botocore_sign(S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1"), request)

    assert ours["x-amz-content-sha256"] == request.headers["X-Amz-Content-SHA256"]
    assert ours["Authorization"] == request.headers["Authorization"]


def test_presigned_url_matches_botocore() -> None:
    path = "/bucket/some dir/obj+1"
    ours = Signer(ACCESS, SECRET).presign("PUT", HOST, path, expires=900, now=NOW)

    request = AWSRequest(method="PUT", url=f"http://{HOST}{uri_encode(path, keep_slash=True)}")
    botocore_sign(S3SigV4QueryAuth(Credentials(ACCESS, SECRET), "s3", "us-east-1", expires=900), request)

    ours_parts, theirs_parts = urlsplit(ours), urlsplit(request.url)
    assert ours_parts.path == theirs_parts.path
    assert dict(parse_qsl(ours_parts.query)) == dict(parse_qsl(theirs_parts.query))


def test_signing_key_is_rederived_when_the_day_changes() -> None:
    signer = Signer(ACCESS, SECRET)
    day1 = signer.sign_headers("GET", HOST, "/b/k", now=NOW)["Authorization"]
    day2 = signer.sign_headers("GET", HOST, "/b/k", now=NOW + 86400)["Authorization"]
    again = Signer(ACCESS, SECRET).sign_headers("GET", HOST, "/b/k", now=NOW + 86400)["Authorization"]
    assert "20240115/us-east-1/s3/aws4_request" in day1
    assert "20240116/us-east-1/s3/aws4_request" in day2
    assert day2 == again
