"""Hostile request contents that get past authentication, against a live server: each gets S3's
error (never a 500), and the server's log holds no traceback for it. Found by fuzzing signed
requests whose bodies, queries and headers are hostile (aws-chunked framing, XML documents,
request targets).

What S3 answers, and where that is written down:
- an XML body it cannot read (including one declaring an encoding that is not one): 400
  MalformedXML, "The XML you provided was not well-formed or did not validate against our
  published schema" (the API reference's list of error codes);
- a path naming a key in a bucket whose name is empty ("//key"): no error of S3's names it; the
  nearest is 400 InvalidBucketName, "The specified bucket is not valid.", which is what the
  bucket it names is;
- a body cut short by its Content-Length, followed by bytes that are no request: the body's own
  error (here IncompleteBody), then the parse error, promptly, and the server goes on serving.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.conftest import (
    REGION,
    FixedPayloadAuth,
    Server,
    http,
    object_absent,
    signed,
    start_server,
    stop_server,
)

TAGGING = b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"


def _declaring(encoding: str, document: bytes) -> bytes:
    return f'<?xml version="1.0" encoding="{encoding}"?>'.encode() + document


def _code(body: bytes) -> str | None:
    m = re.search(rb"<Code>(.*?)</Code>", body)
    return m.group(1).decode() if m else None


# Names Python's codec registry does not know, and codecs that are no text encodings: expat asks
# the registry for any encoding it does not know itself.
ENCODINGS = ["EBCDIC", "x-bogus", "base64", "rot13"]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "operation",
    ["PutBucketTagging", "PutObjectTagging", "DeleteObjects", "PutBucketLifecycleConfiguration", "CreateBucket",
     "CompleteMultipartUpload"],
)
def test_an_xml_body_in_an_unknown_encoding_is_malformed_xml(
    server: Server, s3, bucket: str, operation: str, encoding: str  # type: ignore[no-untyped-def]
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    if operation == "PutBucketTagging":
        method, path, doc = "PUT", f"/{bucket}?tagging", TAGGING
    elif operation == "PutObjectTagging":
        method, path, doc = "PUT", f"/{bucket}/k?tagging", TAGGING
    elif operation == "DeleteObjects":
        method, path, doc = "POST", f"/{bucket}?delete", b"<Delete><Object><Key>k</Key></Object></Delete>"
    elif operation == "PutBucketLifecycleConfiguration":
        method, path = "PUT", f"/{bucket}?lifecycle"
        doc = (b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>p/</Prefix></Filter><Status>Enabled</Status>"
               b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>")
    elif operation == "CreateBucket":
        method, path = "PUT", f"/{bucket}-new"
        doc = b"<CreateBucketConfiguration><LocationConstraint>us-east-1</LocationConstraint></CreateBucketConfiguration>"
    else:
        upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
        method, path = "POST", f"/{bucket}/mp?uploadId={upload}"
        doc = f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>".encode()
    r = signed(server, method, path, _declaring(encoding, doc))
    assert (r.status, _code(r.data)) == (400, "MalformedXML"), (r.status, r.data[:400])
    # Nothing the document asked for happened.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    if operation == "CreateBucket":
        assert bucket + "-new" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_a_refused_request_line_with_percent_signs_is_logged_without_a_traceback(tmp_path: Path) -> None:
    """A request line over aiohttp's limit is answered 400 RequestHeaderSectionTooLarge, and the
    one log line about it must not break: its text quotes the request's bytes, whose '%s' and
    '%d' are no format directives. They made logging print "--- Logging error ---" and a traceback."""
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--no-fsync")
    try:
        parts = urlsplit(srv.endpoint)
        assert parts.hostname is not None and parts.port is not None
        target = b"/b/%s%d%%%(x)s" + b"a" * 9000
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 400 "), data[:200]
        assert _code(data) == "RequestHeaderSectionTooLarge", data[:400]
        assert srv.log_path is not None
        deadline = time.monotonic() + 10
        while b"Error handling request" not in srv.log_path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_server(srv)
    log = srv.log_path.read_text(errors="replace")
    assert "Error handling request" in log, log
    assert "Traceback" not in log and "Logging error" not in log, log


@pytest.mark.parametrize(
    "method,path,query",
    [
        ("GET", "//k", ""),
        ("HEAD", "//k", ""),
        ("PUT", "//k", ""),
        ("DELETE", "//k", ""),
        ("POST", "//k", "?uploads"),
        ("PUT", "//k", "?tagging"),
        ("GET", "/%2Fetc%2Fpasswd", ""),
        ("HEAD", "/%2Fetc%2Fpasswd", ""),
        ("GET", "///", ""),
    ],
)
def test_a_key_in_an_empty_bucket_name_is_invalid_bucket_name(server: Server, method: str, path: str, query: str) -> None:
    """'//k' names key 'k' in the bucket '' (path style). No bucket has that name: S3's
    InvalidBucketName, never a 500 from a handler that found no bucket to act on."""
    body = b"<Tagging><TagSet/></Tagging>" if query == "?tagging" else b"x" if method == "PUT" else b""
    r = signed(server, method, path + query, body)
    assert r.status == 400, (r.status, r.data[:400])
    if method != "HEAD":
        assert _code(r.data) == "InvalidBucketName", r.data[:400]


def test_a_preflight_for_a_key_in_an_empty_bucket_name_is_refused(server: Server) -> None:
    """The same path in a browser's CORS preflight (no credentials)."""
    r = http("OPTIONS", server.endpoint + "//k", headers={"Origin": "http://a.example", "Access-Control-Request-Method": "GET"})
    assert r.status == 400, (r.status, r.data[:400])
    assert _code(r.data) == "InvalidBucketName", r.data[:400]


def _signed_head(server: Server, method: str, path: str, headers: dict[str, str]) -> bytes:
    """A SigV4-signed request line and header section, sent as given (no Content-Length added)."""
    request = AWSRequest(method=method, url=server.endpoint + path, headers=headers)
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(server.endpoint).netloc}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, rest
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length]


def test_a_chunked_body_cut_short_before_bytes_that_are_no_request_does_not_stall_the_server(tmp_path: Path) -> None:
    """An aws-chunked body of many small chunks whose Content-Length stops short of its end: the
    rest is read as a next request, which the parser refuses. The body is then read line by line,
    and aiohttp hands the failed parser b"" at each read, which failed again and queued one more
    error each time: the one event loop spent minutes on it and answered nobody meanwhile."""
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--no-fsync")
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="hostile")  # type: ignore[attr-defined]
        count = 30000
        body = b"1\r\nx\r\n" * count + b"0\r\n\r\n"
        cut = len(body) - 20  # the last chunks' bytes follow the request as a "next request"
        head = _signed_head(srv, "PUT", "/hostile/k", {
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(count),
            "Content-Length": str(cut),
        })  # fmt: skip
        parts = urlsplit(srv.endpoint)
        assert parts.hostname is not None and parts.port is not None
        with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
            sock.sendall(head + body)
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
        assert _code(answer) == "IncompleteBody", answer[:500]
        # The server answers others at once (it answered nobody for minutes).
        started = time.monotonic()
        assert s3.list_buckets()["Buckets"]  # type: ignore[attr-defined]
        assert time.monotonic() - started < 5
        assert object_absent(s3, "hostile", "k")
    finally:
        stop_server(srv)


def test_an_upstream_error_naming_a_key_with_a_control_character_reaches_the_client(tmp_path: Path) -> None:
    """Through the upstream cache: the upstream's error document names the key, whose control
    characters S3 (and s3serve) write as character references XML 1.0 refuses (&#x1;). The
    cache could not read that document and answered 500 InternalError "The upstream S3
    answered HTTP 409" instead of the upstream's own error."""
    from tests.e2e.conftest import cache_pair

    with cache_pair(tmp_path) as (upstream, cache):
        cache.client().create_bucket(Bucket="hostile")  # type: ignore[attr-defined]
        # Written on the upstream directly: the cache holds no copy that would answer first.
        assert signed(upstream, "PUT", "/hostile/%01/x", b"under").status == 200
        r = signed(cache, "PUT", "/hostile/%01", b"where a folder is")
        assert (r.status, _code(r.data)) == (409, "ExistingObjectIsDirectory"), (r.status, r.data[:400])
        r = signed(cache, "GET", "/hostile/%01/x")
        assert (r.status, r.data) == (200, b"under")


def test_a_multipart_upload_of_a_key_with_a_control_character_through_the_cache(tmp_path: Path) -> None:
    """The upstream's InitiateMultipartUploadResult and CompleteMultipartUploadResult name the
    key, its control characters as character references XML 1.0 refuses (&#x1;). The cache
    could read neither: Create answered 503, and Complete answered 503 after the upstream had
    made the object, so a client took a finished upload for a failed one."""
    from tests.e2e.conftest import cache_pair

    with cache_pair(tmp_path) as (upstream, cache):
        cache.client().create_bucket(Bucket="hostile")  # type: ignore[attr-defined]
        r = signed(cache, "POST", "/hostile/a%01b?uploads")
        assert r.status == 200, r.data[:400]
        found = re.search(rb"<UploadId>(.+?)</UploadId>", r.data)
        assert found is not None and b"<Key>a&#x1;b</Key>" in r.data, r.data
        upload = found.group(1).decode()
        r = signed(cache, "PUT", f"/hostile/a%01b?partNumber=1&uploadId={upload}", b"part one")
        assert r.status == 200, r.data[:400]
        etag = r.headers["ETag"]
        document = f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
        r = signed(cache, "POST", f"/hostile/a%01b?uploadId={upload}", document.encode())
        assert r.status == 200 and b"<CompleteMultipartUploadResult" in r.data, r.data[:400]
        assert b"<Key>a&#x1;b</Key>" in r.data, r.data
        for server in (cache, upstream):
            r = signed(server, "GET", "/hostile/a%01b")
            assert (r.status, r.data) == (200, b"part one")


@pytest.mark.parametrize("tagging,code_part", [("a=%01", "TagValue"), ("%00=1", "TagKey"), ("k=v%0Bw", "TagValue")])
def test_a_tag_xml_cannot_carry_is_invalid_tag(server: Server, s3, bucket: str, tagging: str, code_part: str) -> None:  # type: ignore[no-untyped-def]
    """x-amz-tagging is URL-encoded, so it can name control characters that no XML 1.0
    document can hold. Stored, such a tag made every later GetObjectTagging an answer no client
    could parse (botocore gave up after its retries). S3's tag pattern takes none of them."""
    r = signed(server, "PUT", f"/{bucket}/k", b"data", {"x-amz-tagging": tagging})
    assert (r.status, _code(r.data)) == (400, "InvalidTag"), (r.status, r.data[:400])
    assert f"The {code_part} you have provided is invalid".encode() in r.data
    assert object_absent(s3, bucket, "k")
    s3.put_object(Bucket=bucket, Key="src", Body=b"data")
    r = signed(server, "PUT", f"/{bucket}/copy", b"", {
        "x-amz-copy-source": f"/{bucket}/src", "x-amz-tagging-directive": "REPLACE", "x-amz-tagging": tagging,
    })  # fmt: skip
    assert (r.status, _code(r.data)) == (400, "InvalidTag"), (r.status, r.data[:400])
    assert object_absent(s3, bucket, "copy")
    assert s3.get_object_tagging(Bucket=bucket, Key="src")["TagSet"] == []
