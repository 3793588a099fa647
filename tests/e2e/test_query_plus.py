"""A '+' in a query string is a space, as S3 reads it, and as the handlers here read it: the
signature is checked on that same reading, so the value a signature covered is the value the
request is served with. A literal plus is signed as '%2B'; turned into '+' by whoever holds the
URL (a presigned one, or a header-signed request replayed), it names another value (a space),
and the signature does not match it. A '+' the client itself sent for a space, signed as one
(%20, as curl --aws-sigv4 and URLSearchParams-built URLs do), is still read and checked as a
space. SigV2 signs the decoded values of the query's sub-resources (response-* overrides,
uploadId, ...): decoded the same way."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree

import pytest
import urllib3
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.conftest import REGION, FixedPayloadAuth, Server

NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture
def plus_and_space(s3: Any, bucket: str) -> str:
    s3.put_object(Bucket=bucket, Key="a+b.txt", Body=b"plus")
    s3.put_object(Bucket=bucket, Key="a b.txt", Body=b"space")
    return bucket


def _get(server: Server, target: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    # The request target exactly as given: no client re-encodes a '+' or a '%2B' here.
    conn = urllib3.PoolManager().connection_from_url(server.endpoint)
    return conn.urlopen("GET", target, headers=headers, redirect=False, retries=False, assert_same_host=False)


def _header_signed(server: Server, target: str) -> dict[str, str]:
    """The headers botocore's SigV4 signer gives a GET of ``target``, its query as written."""
    request = AWSRequest("GET", server.endpoint + target, headers={"x-amz-content-sha256": EMPTY_SHA256})
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}


def _listed(r: urllib3.BaseHTTPResponse) -> list[str]:
    assert r.status == 200, r.data
    doc = ElementTree.fromstring(r.data)
    keys = [k.text or "" for k in doc.iterfind("s3:Contents/s3:Key", NS)]
    # A presigned ListObjectsV2 of boto3's asks for url-encoded keys.
    return [unquote(k) for k in keys] if doc.findtext("s3:EncodingType", namespaces=NS) == "url" else keys


def _refused(r: urllib3.BaseHTTPResponse) -> bool:
    return r.status == 403 and ElementTree.fromstring(r.data).findtext("Code") == "SignatureDoesNotMatch"


def _presigned(server: Server, operation: str, params: dict[str, str]) -> str:
    s3v4 = server.client(signature_version="s3v4")
    url = s3v4.generate_presigned_url(operation, Params=params, ExpiresIn=300)  # type: ignore[attr-defined]
    assert url.startswith(server.endpoint)
    return str(url)[len(server.endpoint) :]


def test_a_presigned_plus_made_a_space_does_not_match(server: Server, s3: Any, plus_and_space: str) -> None:
    target = _presigned(server, "list_objects_v2", {"Bucket": plus_and_space, "Prefix": "a+b"})
    assert "prefix=a%2Bb" in target
    assert _listed(_get(server, target)) == ["a+b.txt"]
    tampered = _get(server, target.replace("prefix=a%2Bb", "prefix=a+b"))
    assert _refused(tampered), (tampered.status, tampered.data)


def test_a_presigned_response_header_plus_made_a_space_does_not_match(
    server: Server, s3: Any, plus_and_space: str
) -> None:
    # Any value, not only a listing's: here the name a download is saved under.
    disposition = 'attachment; filename="a+b.txt"'
    params = {"Bucket": plus_and_space, "Key": "a+b.txt", "ResponseContentDisposition": disposition}
    target = _presigned(server, "get_object", params)
    r = _get(server, target)
    assert (r.status, r.headers["Content-Disposition"], r.data) == (200, disposition, b"plus")
    path, _, query = target.partition("?")
    assert "a%2Bb.txt" in query
    tampered = _get(server, f"{path}?{query.replace('a%2Bb.txt', 'a+b.txt')}")
    assert _refused(tampered), (tampered.status, tampered.headers.get("Content-Disposition"))


def test_a_header_signed_plus_made_a_space_does_not_match(server: Server, plus_and_space: str) -> None:
    target = f"/{plus_and_space}?list-type=2&prefix=a%2Bb"
    headers = _header_signed(server, target)
    assert _listed(_get(server, target, headers)) == ["a+b.txt"]
    assert _refused(_get(server, f"/{plus_and_space}?list-type=2&prefix=a+b", headers))


def test_a_plus_sent_for_a_space_is_a_space(server: Server, s3: Any, plus_and_space: str) -> None:
    """A client that sends '+' for the space it signed (%20) is served the space it signed."""
    target = _presigned(server, "list_objects_v2", {"Bucket": plus_and_space, "Prefix": "a b"})
    assert "prefix=a%20b" in target
    assert _listed(_get(server, target.replace("prefix=a%20b", "prefix=a+b"))) == ["a b.txt"]
    headers = _header_signed(server, f"/{plus_and_space}?list-type=2&prefix=a%20b")
    assert _listed(_get(server, f"/{plus_and_space}?list-type=2&prefix=a+b", headers)) == ["a b.txt"]


def test_a_sigv2_presigned_response_header_plus_made_a_space_does_not_match(
    server: Server, plus_and_space: str
) -> None:
    """SigV2 signs a response-* override's value decoded: decoded as it is served, a space."""
    s3v2 = server.client(signature_version="s3")
    disposition = 'attachment; filename="a+b.txt"'
    params = {"Bucket": plus_and_space, "Key": "a+b.txt", "ResponseContentDisposition": disposition}
    url = str(s3v2.generate_presigned_url("get_object", Params=params, ExpiresIn=300))  # type: ignore[attr-defined]
    path, _, query = url[len(server.endpoint) :].partition("?")
    assert "Signature=" in query and "a%2Bb.txt" in query
    r = _get(server, f"{path}?{query}")
    assert (r.status, r.headers["Content-Disposition"], r.data) == (200, disposition, b"plus")
    tampered = _get(server, f"{path}?{query.replace('a%2Bb.txt', 'a+b.txt')}")
    assert _refused(tampered), (tampered.status, tampered.headers.get("Content-Disposition"))
