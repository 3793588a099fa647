"""Request dates no calendar holds (year 0, a year past any C integer): the signature's checks
refuse them as S3 does, with a 4xx, never a 500."""

from __future__ import annotations

import pytest
import urllib3

from tests.conftest import Server, http

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# Parsed as a date, but no datetime can hold it (OverflowError in Python's email.utils).
HUGE_YEAR = "Mon, 01 Jan 99999999999 00:00:00 GMT"


def _code(data: bytes) -> str:
    return data.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode() if b"<Code>" in data else ""


def _v4_header(server: Server, date: str) -> str:
    # Whatever the signature, the request's time is read before it is checked.
    return (
        f"AWS4-HMAC-SHA256 Credential={server.access_key}/{date}/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={'0' * 64}"
    )


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"x-amz-date": "00000101T000000Z"}, id="x-amz-date-year-0"),
        pytest.param({"Date": HUGE_YEAR}, id="date-huge-year"),
    ],
)
def test_sigv4_header_with_impossible_date(server: Server, bucket: str, headers: dict[str, str]) -> None:
    sent = {"Authorization": _v4_header(server, "00000101"), "x-amz-content-sha256": EMPTY_SHA256, **headers}
    r = http("GET", f"{server.endpoint}/{bucket}", headers=sent)  # type: ignore[arg-type]
    assert (r.status, _code(r.data)) == (403, "AccessDenied"), r.data
    assert b"requires a valid Date or x-amz-date header" in r.data


@pytest.mark.parametrize("name", ["Date", "x-amz-date"])
def test_sigv2_header_with_impossible_date(server: Server, bucket: str, name: str) -> None:
    sent = {"Authorization": f"AWS {server.access_key}:c2lnbmF0dXJl", name: HUGE_YEAR}
    r = http("GET", f"{server.endpoint}/{bucket}", headers=sent)  # type: ignore[arg-type]
    assert (r.status, _code(r.data)) == (403, "AccessDenied"), r.data


def test_presigned_v4_with_year_0(server: Server, bucket: str) -> None:
    query = (
        f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={server.access_key}%2F00000101%2Fus-east-1%2Fs3"
        "%2Faws4_request&X-Amz-Date=00000101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        f"&X-Amz-Signature={'0' * 64}"
    )
    r = http("GET", f"{server.endpoint}/{bucket}?{query}")
    assert (r.status, _code(r.data)) == (400, "AuthorizationQueryParametersError"), r.data
    assert b"X-Amz-Date must be in the ISO8601 Long Format" in r.data


def test_post_object_with_year_0(server: Server, bucket: str) -> None:
    client = server.client(signature_version="s3v4")
    form = client.generate_presigned_post(bucket, "k")  # type: ignore[attr-defined]
    fields = {**form["fields"], "x-amz-date": "00000101T000000Z"}
    body, content_type = urllib3.encode_multipart_formdata([*fields.items(), ("file", ("f", b"data"))])
    r = http("POST", f"{server.endpoint}/{bucket}", body=body, headers={"Content-Type": content_type})
    assert (r.status, _code(r.data)) == (400, "InvalidArgument"), r.data
    assert b"X-Amz-Date must be formated via ISO8601 Long format" in r.data
