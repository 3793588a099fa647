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
  error (here IncompleteBody), then the parse error, promptly, and the server goes on serving;
- a header given twice: read as its values joined with ',', as SigV4's canonical request joins
  them (RFC 9110 5.3), so two Content-MD5 headers are one malformed digest (InvalidDigest);
- aws-chunked framing other than the documented lines (sigv4-streaming.html,
  sigv4-streaming-trailers.html): IncompleteBody, "The request body terminated unexpectedly"
  (versitygw#1666, from S3's answers); a trailer other than the announced checksum (and, when
  signed, its signature): MalformedTrailerError.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import time
import zlib
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
    body = _declaring(encoding, doc)
    # With its Content-MD5, which S3 requires of some of these (test_api_edges_body_digest).
    r = signed(server, method, path, body, headers={"Content-MD5": _md5(body)})
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


# -- repeated headers ------------------------------------------------------------------------------


class _RepeatsAuth(FixedPayloadAuth):
    """FixedPayloadAuth, keeping every x-amz-content-sha256 the test gave: botocore signs a
    repeated header as its values joined with ',', and its payload line as the first value."""

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        given = request.headers.get_all("x-amz-content-sha256")
        super()._modify_request_before_signing(request)
        del request.headers["X-Amz-Content-SHA256"]
        for value in given:
            request.headers["X-Amz-Content-SHA256"] = value


def _send(server: Server, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """A SigV4-signed request whose headers may repeat (a name given twice is sent twice), on a
    raw socket; its answer."""
    request = AWSRequest(method=method, url=server.endpoint + path)
    for name, value in [*headers, ("Content-Length", str(len(body)))]:
        request.headers[name] = value  # botocore's HTTPHeaders appends: a repeated name stays repeated
    if "x-amz-content-sha256" not in request.headers:
        request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    _RepeatsAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(server.endpoint).netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    parts = urlsplit(server.endpoint)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return _answer(sock)


def _status_and_code(answer: bytes) -> tuple[int, str | None]:
    return int(answer.split(b" ", 2)[1]), _code(answer)


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.mark.parametrize("second", ["same", "other"])
def test_two_content_md5_headers_are_one_malformed_digest(server: Server, s3, bucket: str, second: str) -> None:  # type: ignore[no-untyped-def]
    """SigV4 reads a repeated header as its values joined with ',' (RFC 9110 5.3), which is no
    MD5: InvalidDigest, as for any malformed Content-MD5. Only the first was checked, so a body
    matching it was stored whatever the second said."""
    data = b"the body"
    md5s = [_md5(data), _md5(data) if second == "same" else _md5(b"another body")]
    answer = _send(server, "PUT", f"/{bucket}/two-md5", [("Content-MD5", md5) for md5 in md5s], data)
    assert _status_and_code(answer) == (400, "InvalidDigest"), answer[:600]
    assert f"<Content-MD5>{','.join(md5s)}</Content-MD5>".encode() in answer
    assert object_absent(s3, bucket, "two-md5")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="two-md5")["UploadId"]
    answer = _send(server, "PUT", f"/{bucket}/two-md5?partNumber=1&uploadId={upload}", [("Content-MD5", md5) for md5 in md5s], data)
    assert _status_and_code(answer) == (400, "InvalidDigest"), answer[:600]
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="two-md5", UploadId=upload)
    # One, as ever, is checked and kept.
    answer = _send(server, "PUT", f"/{bucket}/two-md5", [("Content-MD5", md5s[0])], data)
    assert _status_and_code(answer) == (200, None), answer[:600]


def test_two_x_amz_content_sha256_headers_are_refused(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """Two x-amz-content-sha256 headers, both the body's hash: the body is held against them
    joined, which is no hash (400 InvalidArgument), not against the first one alone."""
    data = b"the body"
    digest = hashlib.sha256(data).hexdigest()
    answer = _send(server, "PUT", f"/{bucket}/two-sha", [("x-amz-content-sha256", digest)] * 2, data)
    assert _status_and_code(answer) == (400, "InvalidArgument"), answer[:600]
    assert object_absent(s3, bucket, "two-sha")
    answer = _send(server, "PUT", f"/{bucket}/two-sha", [("x-amz-content-sha256", digest)], data)
    assert _status_and_code(answer) == (200, None), answer[:600]


def test_two_checksum_headers_on_complete_are_one_invalid_value(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """CompleteMultipartUpload's x-amz-checksum-<algorithm> names the whole object: given twice,
    only the last was compared. Joined, the two are no CRC32: S3's InvalidRequest for a
    malformed value, and the upload stays open."""
    data = b"part data"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="two-crc", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="two-crc", UploadId=upload, PartNumber=1, Body=data, ChecksumAlgorithm="CRC32")
    document = (
        f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{part['ETag']}</ETag>"
        f"<ChecksumCRC32>{part['ChecksumCRC32']}</ChecksumCRC32></Part></CompleteMultipartUpload>"
    ).encode()
    crc = part["ChecksumCRC32"]  # one part: the object's CRC32 is the part's
    answer = _send(server, "POST", f"/{bucket}/two-crc?uploadId={upload}", [("x-amz-checksum-crc32", crc)] * 2, document)
    assert _status_and_code(answer) == (400, "InvalidRequest"), answer[:600]
    assert b"Value for x-amz-checksum-crc32 header is invalid." in answer
    assert object_absent(s3, bucket, "two-crc")
    answer = _send(server, "POST", f"/{bucket}/two-crc?uploadId={upload}", [("x-amz-checksum-crc32", crc)], document)
    assert _status_and_code(answer) == (200, None), answer[:600]
    assert s3.get_object(Bucket=bucket, Key="two-crc")["Body"].read() == data


# -- aws-chunked framing ---------------------------------------------------------------------------


def _chunked_put(server: Server, path: str, body: bytes, decoded: int, trailer: str | None = "x-amz-checksum-crc32") -> bytes:
    headers = [
        ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", str(decoded)),
    ]
    if trailer is not None:
        headers.append(("x-amz-trailer", trailer))
    return _send(server, "PUT", path, headers, body)


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


FRAMINGS = {
    # (size line of the one chunk, trailer lines) -> S3's error
    "stray-cr-in-size-line": (b"5\r", b"x-amz-checksum-crc32:{crc}", "IncompleteBody"),
    "extension-on-unsigned-chunk": (b"5;x=1", b"x-amz-checksum-crc32:{crc}", "IncompleteBody"),
    "signature-on-unsigned-chunk": (b"5;chunk-signature=" + b"0" * 64, b"x-amz-checksum-crc32:{crc}", "IncompleteBody"),
    "blank-after-size": (b"5 ", b"x-amz-checksum-crc32:{crc}", "IncompleteBody"),
    "stray-cr-in-trailer": (b"5", b"x-amz-checksum-crc32:{crc}\r", "MalformedTrailerError"),
    "undefined-trailer": (b"5", b"x-amz-checksum-crc32:{crc}\r\nx-amz-meta-a:b", "MalformedTrailerError"),
}


@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_aws_chunked_framing_s3_does_not_write_is_refused(server: Server, s3, bucket: str, framing: str) -> None:  # type: ignore[no-untyped-def]
    """An unsigned aws-chunked body (what boto3 sends over https) is hex(size) CRLF data CRLF ...
    0 CRLF, then "x-amz-checksum-<algorithm>:<value>" CRLF, then CRLF (sigv4-streaming-trailers).
    S3 answers any other framing IncompleteBody, and a trailer it does not define
    MalformedTrailerError; a stray CR, a chunk extension and an undefined trailer were read past,
    and the object stored."""
    size_line, trailer, code = FRAMINGS[framing]
    data = b"hello"
    body = size_line + b"\r\n" + data + b"\r\n0\r\n" + trailer.replace(b"{crc}", _crc32(data).encode()) + b"\r\n\r\n"
    answer = _chunked_put(server, f"/{bucket}/framed", body, len(data))
    assert _status_and_code(answer) == (400, code), answer[:600]
    assert object_absent(s3, bucket, "framed")
    good = b"5\r\n" + data + b"\r\n0\r\nx-amz-checksum-crc32:" + _crc32(data).encode() + b"\r\n\r\n"
    answer = _chunked_put(server, f"/{bucket}/framed", good, len(data))
    assert _status_and_code(answer) == (200, None), answer[:600]
    assert s3.get_object(Bucket=bucket, Key="framed")["Body"].read() == data
    s3.delete_object(Bucket=bucket, Key="framed")
