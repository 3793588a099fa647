"""Odd but possible request shapes at the protocol layer, against a live server: numbers written
in other scripts' digits or too long for int(), and presigned URLs carrying metadata."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config

from s3serve import sigv2
from tests.conftest import REGION, Server, http, object_absent, signed

# '²' passes str.isdigit but int() refuses it; '٣' (Arabic-Indic three) and '1_0' int() reads as
# 3 and 10, which S3 does not; over 4300 digits int() refuses.
SUPERSCRIPT, ARABIC, UNDERSCORE, LONG = "²", "٣", "1_0", "9" * 5000
NOT_NUMBERS = [SUPERSCRIPT, ARABIC, UNDERSCORE]


def _code(body: bytes) -> str | None:
    m = re.search(rb"<Code>(.*?)</Code>", body)
    return m.group(1).decode() if m else None


def _upload(s3, bucket: str, key: str) -> str:  # type: ignore[no-untyped-def]
    return str(s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])


@pytest.mark.parametrize("value", [*NOT_NUMBERS, LONG], ids=["superscript", "arabic", "underscore", "long"])
def test_decoded_content_length_must_be_ascii_digits(server, s3, bucket: str, value: str) -> None:
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": value}
    body = b"3\r\nabc\r\n0\r\n\r\n"
    expected = ("EntityTooLarge",) if value == LONG else ("InvalidArgument",)
    r = signed(
        server, "PUT", f"/{bucket}/decoded", body, headers, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    )
    assert (r.status, _code(r.data)) == (400, *expected), r.data
    assert object_absent(s3, bucket, "decoded")
    upload_id = _upload(s3, bucket, "decoded-part")
    r = signed(
        server,
        "PUT",
        f"/{bucket}/decoded-part?partNumber=1&uploadId={upload_id}",
        body,
        headers,
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    assert (r.status, _code(r.data)) == (400, *expected), r.data
    assert s3.list_parts(Bucket=bucket, Key="decoded-part", UploadId=upload_id).get("Parts", []) == []


@pytest.mark.parametrize("value", [*NOT_NUMBERS, LONG], ids=["superscript", "arabic", "underscore", "long"])
def test_part_numbers_must_be_ascii_digits(server, s3, bucket: str, value: str) -> None:
    upload_id = _upload(s3, bucket, "numbered")
    number = quote(value, safe="")
    r = signed(server, "PUT", f"/{bucket}/numbered?partNumber={number}&uploadId={upload_id}", b"part")
    assert (r.status, _code(r.data)) == (400, "InvalidArgument"), r.data
    assert s3.list_parts(Bucket=bucket, Key="numbered", UploadId=upload_id).get("Parts", []) == []

    s3.put_object(Bucket=bucket, Key="whole", Body=b"whole")
    r = signed(server, "GET", f"/{bucket}/whole?partNumber={number}")
    assert (r.status, _code(r.data)) == (400, "InvalidArgument"), r.data

    complete = (
        f"<CompleteMultipartUpload><Part><PartNumber>{value}</PartNumber><ETag>x</ETag></Part>"
        "</CompleteMultipartUpload>"
    ).encode()
    r = signed(server, "POST", f"/{bucket}/numbered?uploadId={upload_id}", complete)
    # Not a number at all is malformed XML; a number out of range is S3's InvalidArgument.
    assert (r.status, _code(r.data)) == (400, "InvalidArgument" if value == LONG else "MalformedXML"), r.data
    assert object_absent(s3, bucket, "numbered")


def test_ranges_with_numbers_too_long_for_int(server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="ranged", Body=b"0123456789")
    r = signed(server, "GET", f"/{bucket}/ranged", headers={"Range": f"bytes={LONG}-"})
    assert (r.status, _code(r.data)) == (416, "InvalidRange"), r.data
    r = signed(server, "GET", f"/{bucket}/ranged", headers={"Range": f"bytes=-{LONG}"})
    assert r.status == 206 and r.data == b"0123456789"
    r = signed(server, "GET", f"/{bucket}/ranged", headers={"Range": f"bytes=2-{LONG}"})
    assert r.status == 206 and r.data == b"23456789"
    # Other scripts' digits do not make a range: the whole object, as for any unparsable Range.
    r = signed(server, "GET", f"/{bucket}/ranged", headers={"Range": f"bytes={ARABIC}-"})
    assert r.status == 200 and r.data == b"0123456789"

    upload_id = _upload(s3, bucket, "copied")
    for bad in (f"bytes=0-{LONG}", f"bytes={ARABIC}-5", f"bytes=0-{SUPERSCRIPT}"):
        r = signed(
            server,
            "PUT",
            f"/{bucket}/copied?partNumber=1&uploadId={upload_id}",
            headers={"x-amz-copy-source": f"/{bucket}/ranged", "x-amz-copy-source-range": bad},
        )
        assert (r.status, _code(r.data)) == (400, "InvalidArgument"), (bad, r.data)
    assert s3.list_parts(Bucket=bucket, Key="copied", UploadId=upload_id).get("Parts", []) == []


def _sigv2_presigned_get(server, bucket: str, key: str, expires: str) -> str:  # type: ignore[no-untyped-def]
    signature = sigv2.sign(server.secret_key, f"GET\n\n\n{expires}\n/{bucket}/{key}")
    query = f"AWSAccessKeyId={server.access_key}&Expires={quote(expires, safe='')}&Signature={quote(signature, safe='')}"
    return f"{server.endpoint}/{bucket}/{key}?{query}"


def test_sigv2_presigned_expires_must_be_ascii_digits(server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="v2", Body=b"signed long ago")
    for value in NOT_NUMBERS:
        r = http("GET", _sigv2_presigned_get(server, bucket, "v2", value))
        assert (r.status, _code(r.data)) == (403, "AccessDenied"), (value, r.data)
    # A time too far ahead for int() is still a time that has not come.
    r = http("GET", _sigv2_presigned_get(server, bucket, "v2", LONG))
    assert r.status == 200 and r.data == b"signed long ago"
    r = http("GET", _sigv2_presigned_get(server, bucket, "v2", "0" * 4990 + str(int(time.time()) + 300)))
    assert r.status == 200 and r.data == b"signed long ago"
    r = http("GET", _sigv2_presigned_get(server, bucket, "v2", str(int(time.time()) - 10)))
    assert (r.status, _code(r.data)) == (403, "AccessDenied")


def test_sigv2_presigned_put_stores_the_metadata_in_its_query(server, bucket: str) -> None:
    """botocore's SigV2 presigner moves the signed x-amz-meta-* headers into the URL, so whoever
    uploads with it sends no headers; S3 stores the URL's metadata."""
    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=REGION,
        config=Config(signature_version="s3"),
    )
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "meta", "Metadata": {"color": "deep blue", "n": "1+1"}}
    )
    assert "x-amz-meta-color=" in url
    r = http("PUT", url, body=b"with metadata")
    assert r.status == 200, r.data
    head = s3.head_object(Bucket=bucket, Key="meta")
    assert head["Metadata"] == {"color": "deep blue", "n": "1+1"}
    assert s3.get_object(Bucket=bucket, Key="meta")["Body"].read() == b"with metadata"
    # The header, when sent as well, is what the signature covers: another value is refused.
    r = http("PUT", url, body=b"other", headers={"x-amz-meta-color": "red"})
    assert (r.status, _code(r.data)) == (403, "SignatureDoesNotMatch"), r.data
    assert s3.get_object(Bucket=bucket, Key="meta")["Body"].read() == b"with metadata"


def sigv4_presigned_with_query_metadata(server, bucket: str, key: str, metadata: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    """A SigV4 presigned PUT URL as the JS SDK v3's getSignedUrl, the Ruby and Go presigners
    make one: the x-amz-meta-* headers hoisted into the (signed) query, only host signed."""
    return sigv4_presigned_with_query_headers(
        server, "PUT", bucket, key, {f"x-amz-meta-{name}": value for name, value in metadata.items()}
    )


def sigv4_presigned_with_query_headers(
    server: Server,
    method: str,
    bucket: str,
    key: str,
    headers: dict[str, str],
    access_key: str = "",
    secret_key: str = "",
) -> str:
    """A SigV4 presigned URL with ``headers`` hoisted into its (signed) query, as the JS SDK v3's
    getSignedUrl does with every x-amz-* header but the SSE ones: only host is signed."""
    from urllib.parse import urlencode

    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    query = urlencode(headers, quote_via=quote)
    request = AWSRequest(method=method, url=f"{server.endpoint}/{bucket}/{quote(key)}?{query}")
    credentials = Credentials(access_key or server.access_key, secret_key or server.secret_key)
    S3SigV4QueryAuth(credentials, "s3", REGION, expires=300).add_auth(request)
    return str(request.url)


def test_sigv4_presigned_put_stores_the_metadata_in_its_query(server, s3, bucket: str) -> None:
    """A browser uploading with a URL whose metadata was hoisted into the query sends no
    x-amz-meta-* headers; S3 stores the query's. Only SigV2 URLs' were kept, SigV4's dropped."""
    url = sigv4_presigned_with_query_metadata(server, bucket, "meta4", {"color": "deep blue", "n": "1+1"})
    assert "X-Amz-SignedHeaders=host&" in url or url.endswith("X-Amz-SignedHeaders=host")
    r = http("PUT", url, body=b"with metadata")
    assert r.status == 200, r.data
    got = s3.get_object(Bucket=bucket, Key="meta4")
    assert got["Body"].read() == b"with metadata"
    assert got["Metadata"] == {"color": "deep blue", "n": "1+1"}
    # The query is signed: another value there is refused, and a header it did not sign too.
    r = http("PUT", url.replace("deep%20blue", "red"), body=b"other")
    assert (r.status, _code(r.data)) == (403, "SignatureDoesNotMatch"), r.data
    r = http("PUT", url, body=b"other", headers={"x-amz-meta-color": "red"})
    assert (r.status, _code(r.data)) == (403, "AccessDenied"), r.data
    assert s3.get_object(Bucket=bucket, Key="meta4")["Body"].read() == b"with metadata"


def test_header_values_that_are_not_utf8_are_refused(server, s3, bucket: str) -> None:
    """Bytes that are not UTF-8 in a header once made a 500 wherever the value went next: the
    canonical request, the error document naming it, the stored metadata."""
    import hashlib

    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tests.conftest import FixedPayloadAuth

    url = f"{server.endpoint}/{bucket}/latin"
    request = AWSRequest(
        method="PUT", url=url, data=b"x", headers={"x-amz-content-sha256": hashlib.sha256(b"x").hexdigest()}
    )
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    good = dict(request.headers.items())
    # Content-Type is not signed, so only the value's encoding is wrong (it went to storage).
    r = http("PUT", url, body=b"x", headers={**good, "Content-Type": b"text/caf\xe9"})
    assert (r.status, _code(r.data)) == (400, "InvalidArgument"), r.data
    assert object_absent(s3, bucket, "latin")
    for authorization in (
        good["Authorization"].encode().replace(b"Signature=", b"Signature=\xff"),
        good["Authorization"]
        .encode()
        .replace(server.access_key.encode(), server.access_key.encode() + b"\xff"),
        b"AWS \xff:c2lnbmF0dXJl",
    ):
        r = http("PUT", url, body=b"x", headers={**good, "Authorization": authorization})
        assert (r.status, _code(r.data)) == (400, "InvalidArgument"), r.data
    assert object_absent(s3, bucket, "latin")
    # UTF-8 stays welcome.
    r = http("PUT", url, body=b"x", headers={**good, "Content-Type": "text/café".encode()})
    assert r.status == 200, r.data
    # http.client reads header bytes as Latin-1: compare the bytes that came back.
    r = signed(server, "HEAD", f"/{bucket}/latin")
    assert r.headers["Content-Type"].encode("latin-1") == "text/café".encode()
