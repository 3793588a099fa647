"""Bad or unusual HTTP framing, on raw sockets against a live server: every answer is S3's XML
error with S3's code and status, promptly, and no partial or wrong object is ever stored.

What S3 answers, and where that is written down:
- a request it cannot parse (duplicate Host, invalid Content-Length, garbage): 400 BadRequest "An
  error occurred when parsing the HTTP request." (openstack swift3's functional tests, versitygw's
  "deformed message" test run against S3, ExAws on a duplicate Host);
- a request line and headers over its limit: 400 RequestHeaderSectionTooLarge (versitygw#2180);
- a body without Content-Length: 411 MissingContentLength; a plain body sent with
  Transfer-Encoding: 501 NotImplemented naming the header (aws-sdk-js-v3#4979, knox#43);
- data after an aws-chunked body's end: 400 MalformedTrailerError (aws-sdk-net#4012);
- an expectation other than 100-continue: ignored, the request answered as without one (ceph
  s3-tests' bad_expect_mismatch tests: "amazon doesn't report an error with a non-expect 100").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import socket
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3serve.sigv4 import EMPTY_SHA256, sign, signing_key
from tests.conftest import REGION, FixedPayloadAuth, Server, object_absent, start_server, stop_server

UNSIGNED = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
PARSE_ERROR = "An error occurred when parsing the HTTP request."
# How long a prompt answer may take on a loaded machine; a hang is caught by the socket timeout.
PROMPT = 5.0
# Silence long enough to say no further answer is coming, where the connection stays open.
QUIET = 1.5


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    protocol: str = "HTTP/1.1"  # the status line's
    code: str | None = field(init=False)

    def __post_init__(self) -> None:
        m = re.search(rb"<Code>(.*?)</Code>", self.body)
        self.code = m.group(1).decode() if m else None


def _address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.endpoint)
    if parts.scheme != "http":
        pytest.skip("raw-socket framing tests need a plain-HTTP endpoint")
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _signed_headers(
    server: Server, method: str, path: str, headers: dict[str, str] | None = None, secret: str | None = None
) -> dict[str, str]:
    """The headers of a SigV4-signed request (UNSIGNED-PAYLOAD), with ``headers`` among them."""
    request = AWSRequest(method=method, url=server.endpoint + path, headers={**UNSIGNED, **(headers or {})})
    FixedPayloadAuth(Credentials(server.access_key, secret or server.secret_key), "s3", REGION).add_auth(request)
    return dict(request.headers.items())


def _head(
    server: Server,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    version: str = "1.1",
    secret: str | None = None,
) -> bytes:
    """A SigV4-signed request line and headers, exactly as given (no length added)."""
    signed = _signed_headers(server, method, path, headers, secret)
    lines = [f"{method} {path} HTTP/{version}", f"Host: {urlsplit(server.endpoint).netloc}"]
    lines += [f"{name}: {value}" for name, value in signed.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _parse(data: bytes, head: bool = False) -> list[Answer]:
    answers = []
    while data:
        top, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"an unfinished answer: {top[:300]!r}"
        status_line, *lines = top.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        protocol, status_text = status_line.split()[:2]
        status = int(status_text)
        length = 0 if head or status < 200 else int(headers.get("content-length", "0"))
        answers.append(Answer(status, headers, data[:length], protocol))
        data = data[length:]
    return answers


def _read(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or goes quiet for the timeout (False)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:
        pass
    return data, True


def _exchange(
    server: Server, *parts: bytes, shut: bool = False, head: bool = False, timeout: float = PROMPT
) -> tuple[list[Answer], bool]:
    """Send ``parts`` (each its own write, a moment apart), half-close if ``shut``, and read the
    answers until the server closes the connection (the bool) or ``timeout`` passes in silence."""
    with socket.create_connection(_address(server), timeout=timeout) as sock:
        for index, part in enumerate(parts):
            if index:
                time.sleep(0.2)
            sock.sendall(part)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        data, closed = _read(sock)
    return _parse(data, head), closed


def _assert_s3_error(answer: Answer, status: int, code: str) -> None:
    assert (answer.status, answer.code) == (status, code), (answer.status, answer.headers, answer.body[:500])
    assert answer.headers.get("content-type") == "application/xml", answer.headers
    assert answer.headers.get("server") == "s3serve", answer.headers
    request_id = answer.headers.get("x-amz-request-id")
    assert request_id and f"<RequestId>{request_id}</RequestId>".encode() in answer.body, answer.body
    assert answer.headers.get("x-amz-id-2"), answer.headers


def _content(s3, bucket: str, key: str) -> bytes:  # type: ignore[no-untyped-def]
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def _no_temp_files(server: Server) -> None:
    """Nothing a refused upload streamed is left in the staging area (polled: the server notices
    a closed connection a moment later)."""
    if server.root is None:
        return
    tmp_dir = server.root / ".s3serve" / "tmp"
    deadline = time.monotonic() + 10
    while tmp_dir.exists() and list(tmp_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not tmp_dir.exists() or list(tmp_dir.iterdir()) == []


# -- 1. requests aiohttp refuses before any handler runs ----------------------------------------

HOST = b"Host: 127.0.0.1\r\n"
UNPARSABLE = {
    "garbage-request-line": (b"GARBAGE\r\n\r\n", "BadRequest"),
    "invalid-method": (b"G@T / HTTP/1.1\r\n" + HOST + b"\r\n", "BadRequest"),
    "bad-version": (b"GET / HTTP/9.x\r\n" + HOST + b"\r\n", "BadRequest"),
    "bare-lf": (b"GET / HTTP/1.1\n" + HOST + b"\n", "BadRequest"),
    "space-in-header-name": (b"GET / HTTP/1.1\r\n" + HOST + b"Bad Header: x\r\n\r\n", "BadRequest"),
    "control-byte-in-value": (b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x01b\r\n\r\n", "BadRequest"),
    "no-host": (b"GET / HTTP/1.1\r\n\r\n", "BadRequest"),
    "duplicate-host": (b"GET / HTTP/1.1\r\n" + HOST + HOST + b"\r\n", "BadRequest"),
    "invalid-content-length": (b"PUT /b/k HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n\r\n", "BadRequest"),
    "negative-content-length": (b"PUT /b/k HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n", "BadRequest"),
    "duplicate-content-length": (
        b"PUT /b/k HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "BadRequest",
    ),
    "content-length-and-chunked": (
        b"PUT /b/k HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "BadRequest",
    ),
    "unknown-transfer-coding": (b"PUT /b/k HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n", "BadRequest"),
    "bad-chunk-size": (
        b"PUT /b/k HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "BadRequest",
    ),
    "long-request-line": (b"GET /b/" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", "RequestHeaderSectionTooLarge"),
    "long-header": (b"GET / HTTP/1.1\r\n" + HOST + b"X-A: " + b"a" * 9000 + b"\r\n\r\n", "RequestHeaderSectionTooLarge"),
    "too-many-headers": (
        b"GET / HTTP/1.1\r\n" + HOST + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
        "RequestHeaderSectionTooLarge",
    ),
}


@pytest.mark.parametrize("name", list(UNPARSABLE))
def test_requests_aiohttp_cannot_parse_get_s3_errors(server: Server, name: str) -> None:
    request, code = UNPARSABLE[name]
    answers, closed = _exchange(server, request)
    assert len(answers) == 1, answers
    _assert_s3_error(answers[0], 400, code)
    if code == "BadRequest":
        assert f"<Message>{PARSE_ERROR}</Message>".encode() in answers[0].body
    # None of aiohttp's own words (which echo the request's bytes back) reach the client.
    assert b"aiohttp" not in answers[0].body and b"Traceback" not in answers[0].body
    # As S3 answers, in HTTP/1.1 (aiohttp's own answer says HTTP/1.0, knowing no request's version).
    assert (answers[0].protocol, answers[0].headers.get("connection")) == ("HTTP/1.1", "close"), answers[0]
    assert closed, "the connection stays open after an unparsable request"


def test_an_unparsable_put_stores_nothing(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="kept", Body=b"old")
    for framing in (
        b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nnew!",
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnew\r\n0\r\n\r\n",
    ):
        head = _head(server, "PUT", f"/{bucket}/kept")[:-2] + framing
        answers, _ = _exchange(server, head)
        _assert_s3_error(answers[0], 400, "BadRequest")
    assert _content(s3, bucket, "kept") == b"old"


# -- 2. bodies without a length ----------------------------------------------------------------


@pytest.mark.parametrize("shape", ["headers-only", "with-body", "with-body-then-half-close", "body-later"])
def test_http10_put_without_content_length_gets_411(server: Server, s3, bucket: str, shape: str) -> None:  # type: ignore[no-untyped-def]
    """HTTP/1.0 has no chunked coding: a PUT body without Content-Length cannot be delimited."""
    head = _head(server, "PUT", f"/{bucket}/http10", version="1.0")
    parts = {
        "headers-only": (head,),
        "with-body": (head + b"hello",),
        "with-body-then-half-close": (head + b"hello",),
        "body-later": (head, b"hello"),
    }[shape]
    started = time.monotonic()
    answers, closed = _exchange(server, *parts, shut=shape.endswith("half-close"))
    assert time.monotonic() - started < PROMPT
    assert len(answers) == 1, answers
    _assert_s3_error(answers[0], 411, "MissingContentLength")
    assert closed
    assert object_absent(s3, bucket, "http10")


@pytest.mark.parametrize("operation", ["PutObject", "UploadPart", "DeleteObjects"])
def test_http11_body_without_length_gets_411_and_a_closed_connection(server: Server, s3, bucket: str, operation: str) -> None:  # type: ignore[no-untyped-def]
    """Without Content-Length or Transfer-Encoding an HTTP/1.1 request ends with its headers:
    the body its client sends after the 411 must not be read as a next request."""
    s3.put_object(Bucket=bucket, Key="kept", Body=b"old")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="parted")["UploadId"]
    method, path = {
        "PutObject": ("PUT", f"/{bucket}/kept"),
        "UploadPart": ("PUT", f"/{bucket}/parted?partNumber=1&uploadId={upload_id}"),
        "DeleteObjects": ("POST", f"/{bucket}?delete"),
    }[operation]
    smuggled = f"DELETE /{bucket}/kept HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        sock.sendall(_head(server, method, path))
        answers = _parse(sock.recv(65536))
        assert len(answers) == 1, answers
        _assert_s3_error(answers[0], 411, "MissingContentLength")
        assert answers[0].headers.get("connection") == "close"
        try:
            sock.sendall(smuggled)
        except OSError:
            pass  # already closed: as good
        rest, closed = _read(sock)
    assert rest == b"" and closed, rest
    assert _content(s3, bucket, "kept") == b"old"
    assert s3.list_parts(Bucket=bucket, Key="parted", UploadId=upload_id).get("Parts", []) == []


# Bodies a client sends without Content-Length or Transfer-Encoding, right behind the headers (in
# the same write, so the server reads both at once): aiohttp's parser takes them for the next
# request and fails for the whole read, dropping the request it read first (framing.py reads it
# again to answer it).
UNFRAMED_BODIES = {
    "text": b"hello",
    "binary": bytes(range(256)),
    # Longer than a request line may be, with no line end in it.
    "long": b"x" * 20000,
    # Bytes that are a whole request: must not be served as one.
    "a-request": b"DELETE /{bucket}/kept HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("body", list(UNFRAMED_BODIES))
@pytest.mark.parametrize("writes", ["one-write", "headers-split"])
@pytest.mark.parametrize("operation", ["PutObject", "UploadPart"])
def test_http11_body_without_length_in_the_headers_write_gets_411(server: Server, s3, bucket: str, operation: str, writes: str, body: str) -> None:  # type: ignore[no-untyped-def]
    """The same 411 MissingContentLength as when the body comes in a later write (the test
    above), and the connection closed with nothing stored. (``headers-split``: the first half of
    the headers comes first, the rest with the body.)"""
    s3.put_object(Bucket=bucket, Key="kept", Body=b"old")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="parted")["UploadId"]
    path = {"PutObject": f"/{bucket}/kept", "UploadPart": f"/{bucket}/parted?partNumber=1&uploadId={upload_id}"}[operation]
    head = _head(server, "PUT", path)
    payload = UNFRAMED_BODIES[body].replace(b"{bucket}", bucket.encode())
    parts = (head + payload,) if writes == "one-write" else (head[:60], head[60:] + payload)
    answers, closed = _exchange(server, *parts)
    assert len(answers) == 1, answers
    _assert_s3_error(answers[0], 411, "MissingContentLength")
    assert answers[0].headers.get("connection") == "close" and closed
    assert _content(s3, bucket, "kept") == b"old"
    assert s3.list_parts(Bucket=bucket, Key="parted", UploadId=upload_id).get("Parts", []) == []


def test_requests_before_garbage_in_the_same_write_are_answered(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """Requests read whole before the bytes that broke the parse are answered as they would be
    had the garbage come in a later write (then the garbage gets its 400, and the connection
    closes), not dropped with it."""
    s3.put_object(Bucket=bucket, Key="obj", Body=b"content")
    get = _head(server, "GET", f"/{bucket}/obj")
    answers, closed = _exchange(server, get + get + b"GARBAGE\r\n\r\n")
    assert [(a.status, a.body) for a in answers[:2]] == [(200, b"content")] * 2, answers
    assert len(answers) == 3, answers
    _assert_s3_error(answers[2], 400, "BadRequest")
    assert closed


@pytest.mark.parametrize("shape", ["keep-alive", "connection-close", "http10"])
def test_a_put_with_a_length_before_garbage_in_the_same_write_is_stored(server: Server, s3, bucket: str, shape: str) -> None:  # type: ignore[no-untyped-def]
    """A PUT whose Content-Length body the write holds whole, then bytes that break the parse: it
    was dropped with them (the recovery stopped at the first request with a body), or, after
    Connection: close or in HTTP/1.0, answered 411 MissingContentLength. In a later write, as
    now in the same one, it is stored and answered."""
    key = f"before-garbage-{shape}"
    extra = {"Connection": "close"} if shape == "connection-close" else {}
    version = "1.0" if shape == "http10" else "1.1"
    put = _head(server, "PUT", f"/{bucket}/{key}", {"Content-Length": "10", **extra}, version=version) + b"0123456789"
    after = b"BLAH\x01\r\n\r\n" if shape == "keep-alive" else _head(server, "GET", f"/{bucket}/{key}")
    answers, closed = _exchange(server, put + after)
    assert answers and answers[0].status == 200, [(a.status, a.code) for a in answers]
    if shape == "keep-alive":
        assert len(answers) == 2, answers
        _assert_s3_error(answers[1], 400, "BadRequest")
    else:
        assert len(answers) == 1, answers  # the request said it was the last
    assert closed
    assert _content(s3, bucket, key) == b"0123456789"


@pytest.mark.parametrize("decoded", [None, "5"], ids=["no-decoded-length", "with-decoded-length"])
def test_plain_body_with_transfer_encoding_gets_501(server: Server, s3, bucket: str, decoded: str | None) -> None:  # type: ignore[no-untyped-def]
    """S3 takes Transfer-Encoding only around an aws-chunked body: a plain body sent chunked is
    refused naming the header, and the connection closed (as S3's 501 does)."""
    s3.put_object(Bucket=bucket, Key="te", Body=b"old")
    headers = {"Transfer-Encoding": "chunked"}
    if decoded is not None:
        headers["x-amz-decoded-content-length"] = decoded
    answers, closed = _exchange(server, _head(server, "PUT", f"/{bucket}/te", headers) + b"5\r\nhello\r\n0\r\n\r\n")
    assert len(answers) == 1, answers
    _assert_s3_error(answers[0], 501, "NotImplemented")
    assert b"<Header>Transfer-Encoding</Header>" in answers[0].body
    assert closed
    assert _content(s3, bucket, "te") == b"old"


def _aws_chunked(data: bytes, *tail: bytes) -> tuple[bytes, dict[str, str]]:
    """An unsigned aws-chunked body with a CRC32 trailer (as botocore sends it), and its headers."""
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    body = f"{len(data):x}\r\n".encode() + data + f"\r\n0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    body += b"".join(tail)
    headers = {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    return body, headers


def test_aws_chunked_over_transfer_encoding(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """What the AWS documentation allows: aws-chunked inside HTTP chunks, sized by
    x-amz-decoded-content-length. Without that header: 411, as for a missing Content-Length."""
    body, headers = _aws_chunked(b"0123456789")
    http_chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    headers.update({"Transfer-Encoding": "chunked", "Connection": "close"})
    answers, _ = _exchange(server, _head(server, "PUT", f"/{bucket}/te-aws", headers) + http_chunked)
    assert answers[0].status == 200, answers[0].body
    assert _content(s3, bucket, "te-aws") == b"0123456789"
    del headers["x-amz-decoded-content-length"]
    answers, _ = _exchange(server, _head(server, "PUT", f"/{bucket}/te-aws2", headers) + http_chunked)
    _assert_s3_error(answers[0], 411, "MissingContentLength")
    assert object_absent(s3, bucket, "te-aws2")


def test_aws_chunked_without_http_framing_gets_411(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """aws-chunked needs Content-Length or Transfer-Encoding around it like any body (the AWS
    documentation asks for one): without either, its bytes must not be read as a request."""
    s3.put_object(Bucket=bucket, Key="kept", Body=b"old")
    body, headers = _aws_chunked(b"new")
    smuggled = f"DELETE /{bucket}/kept HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        sock.sendall(_head(server, "PUT", f"/{bucket}/kept", headers))
        answers = _parse(sock.recv(65536))
        assert len(answers) == 1, answers
        _assert_s3_error(answers[0], 411, "MissingContentLength")
        try:
            sock.sendall(body + smuggled)
        except OSError:
            pass  # already closed: as good
        rest, closed = _read(sock)
    assert rest == b"" and closed, rest
    assert _content(s3, bucket, "kept") == b"old"


# -- 3. bytes after the end of an aws-chunked body ---------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [b"0\r\n\r\n", b"\r\n", b"junk", b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"],
    ids=["second-final-chunk", "blank-line", "junk", "second-trailer"],
)
def test_bytes_after_the_final_aws_chunk_are_refused(server: Server, s3, bucket: str, tail: bytes) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="trailing", Body=b"old")
    body, headers = _aws_chunked(b"new content", tail)
    headers["Content-Length"] = str(len(body))
    put = _head(server, "PUT", f"/{bucket}/trailing", headers) + body
    # The extra bytes are inside Content-Length: after the refusal they are drained, not read as
    # a request, and the connection serves the next one.
    get = _head(server, "GET", f"/{bucket}/trailing", {"Connection": "close"})
    answers, _ = _exchange(server, put + get)
    _assert_s3_error(answers[0], 400, "MalformedTrailerError")
    assert [(a.status, a.body) for a in answers[1:]] == [(200, b"old")], answers
    assert _content(s3, bucket, "trailing") == b"old"


def _signed_streaming(server: Server, path: str, chunks: list[bytes], tail: bytes) -> bytes:
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD request whose signed chunks are followed by ``tail``
    (counted in its Content-Length)."""
    decoded = sum(map(len, chunks))
    headers = {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(decoded),
    }
    request = AWSRequest(method="PUT", url=server.endpoint + path, headers=headers)
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    amz_date = request.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    key = signing_key(server.secret_key, amz_date[:8], REGION)
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    body = b""
    for chunk in [*chunks, b""]:
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256, hashlib.sha256(chunk).hexdigest()]
        )
        previous = sign(key, sts)
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    body += tail
    netloc = urlsplit(server.endpoint).netloc
    lines = [f"PUT {path} HTTP/1.1", f"Host: {netloc}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_bytes_after_a_signed_final_chunk_are_refused(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="signed", Body=b"old")
    chunks = [b"s" * 9000, b"tail"]
    answers, _ = _exchange(server, _signed_streaming(server, f"/{bucket}/signed", chunks, b""))
    assert answers[0].status == 200, answers[0].body  # the request without the tail is good
    assert _content(s3, bucket, "signed") == b"".join(chunks)
    s3.put_object(Bucket=bucket, Key="signed", Body=b"old")
    tail = b"0;chunk-signature=" + b"0" * 64 + b"\r\n\r\n"
    answers, _ = _exchange(server, _signed_streaming(server, f"/{bucket}/signed", chunks, tail))
    _assert_s3_error(answers[0], 400, "MalformedTrailerError")
    assert _content(s3, bucket, "signed") == b"old"


# -- 4. Expect ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["fancy", "200", "200-ok"])
def test_an_unknown_expectation_is_ignored(server: Server, s3, bucket: str, value: str) -> None:  # type: ignore[no-untyped-def]
    # No interim 100 is sent: the client sends its body at once, as one that expects nothing.
    head = _head(server, "PUT", f"/{bucket}/expect", {"Content-Length": "5", "Expect": value})
    answers, _ = _exchange(server, head + b"hello", timeout=QUIET)
    assert [a.status for a in answers] == [200], answers
    assert _content(s3, bucket, "expect") == b"hello"
    # A bad signature is judged as on any request: after the body, which the connection drains.
    head = _head(server, "PUT", f"/{bucket}/expect", {"Content-Length": "5", "Expect": value}, secret="wrong")
    answers, _ = _exchange(server, head + b"world", timeout=QUIET)
    assert [(a.status, a.code) for a in answers] == [(403, "SignatureDoesNotMatch")], answers
    assert _content(s3, bucket, "expect") == b"hello"
    answers, _ = _exchange(server, _head(server, "HEAD", f"/{bucket}/expect", {"Expect": value}), head=True, timeout=QUIET)
    assert [a.status for a in answers] == [200], answers


def test_100_continue_among_other_expectations_is_met(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    head = _head(server, "PUT", f"/{bucket}/expect", {"Content-Length": "5", "Expect": "100-continue, fancy"})
    answers, _ = _exchange(server, head, timeout=QUIET)
    assert [a.status for a in answers] == [100], answers  # and it waits for the body


def test_http10_ignores_expectations(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    head = _head(server, "PUT", f"/{bucket}/old-http", {"Content-Length": "5", "Expect": "fancy"}, version="1.0")
    answers, _ = _exchange(server, head + b"hello")
    assert [a.status for a in answers] == [200], answers
    assert _content(s3, bucket, "old-http") == b"hello"


@pytest.mark.parametrize("value", ["100-continue", "100-Continue"])
def test_100_continue(server: Server, s3, bucket: str, value: str) -> None:  # type: ignore[no-untyped-def]
    """A good request gets 100 Continue, then its answer; a bad signature gets its 403 at once,
    without the body, and the connection (whose body was never read) closes."""
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        sock.sendall(_head(server, "PUT", f"/{bucket}/continued", {"Content-Length": "5", "Expect": value}))
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        answer = _parse(sock.recv(65536))[0]
    assert answer.status == 200, answer.body
    assert _content(s3, bucket, "continued") == b"hello"
    head = _head(server, "PUT", f"/{bucket}/refused", {"Content-Length": "1048576", "Expect": value}, secret="wrong")
    answers, _ = _exchange(server, head, timeout=QUIET)
    assert len(answers) == 1, answers
    _assert_s3_error(answers[0], 403, "SignatureDoesNotMatch")
    assert answers[0].headers.get("connection") == "close"
    assert object_absent(s3, bucket, "refused")


# -- 5. adjacent edges -------------------------------------------------------------------------


@pytest.mark.parametrize("writes", ["one-write", "headers-first"])
def test_short_body_then_half_close_is_answered_and_keeps_the_old_object(server: Server, s3, bucket: str, writes: str) -> None:  # type: ignore[no-untyped-def]
    """Content-Length promised more than came, then the client stopped sending: S3's
    IncompleteBody, and the object as it was. (In one write, the end of input reaches the server
    before the request's handler has started; headers first, while it reads the body.)"""
    s3.put_object(Bucket=bucket, Key="short", Body=b"old")
    head = _head(server, "PUT", f"/{bucket}/short", {"Content-Length": "100000"})
    parts = (head + b"x" * 5000,) if writes == "one-write" else (head, b"x" * 5000)
    answers, closed = _exchange(server, *parts, shut=True)
    assert len(answers) == 1, answers
    _assert_s3_error(answers[0], 400, "IncompleteBody")
    assert closed
    assert _content(s3, bucket, "short") == b"old"
    _no_temp_files(server)


def test_short_body_then_close_keeps_the_old_object(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="cut", Body=b"old")
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        sock.sendall(_head(server, "PUT", f"/{bucket}/cut", {"Content-Length": "100000"}) + b"x" * 5000)
        time.sleep(0.2)
    _no_temp_files(server)
    assert _content(s3, bucket, "cut") == b"old"


def test_half_closed_clients_get_their_answers(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """A client that half-closes after its request (printf ... | nc) is still reading."""
    s3.put_object(Bucket=bucket, Key="read", Body=b"content")
    for version in ("1.0", "1.1"):
        answers, closed = _exchange(server, _head(server, "GET", f"/{bucket}/read", version=version), shut=True)
        assert [(a.status, a.body) for a in answers] == [(200, b"content")], answers
        assert closed
        head = _head(server, "PUT", f"/{bucket}/written{version}", {"Content-Length": "3"}, version=version)
        answers, _ = _exchange(server, head + b"new", shut=True)
        assert [a.status for a in answers] == [200], answers
        assert _content(s3, bucket, f"written{version}") == b"new"
    # Requests pipelined before the half-close: each is answered (only the one under way was).
    big = os.urandom(8 << 20)
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    gets = _head(server, "GET", f"/{bucket}/big") + b"".join(_head(server, "GET", f"/{bucket}/read") for _ in range(7))
    answers, closed = _exchange(server, gets, shut=True)
    assert [a.status for a in answers] == [200] * 8, [(a.status, a.code) for a in answers]
    assert answers[0].body == big and [a.body for a in answers[1:]] == [b"content"] * 7
    assert closed


def test_broken_chunked_framing_mid_body_is_answered_at_once(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """The HTTP chunking around an aws-chunked body breaks after its first chunk: the parser gives
    up, and the request waiting for the rest of its body is answered instead of waiting forever."""
    s3.put_object(Bucket=bucket, Key="mid", Body=b"old")
    body, headers = _aws_chunked(b"0123456789")
    headers["Transfer-Encoding"] = "chunked"
    first = f"{len(body[:8]):x}\r\n".encode() + body[:8] + b"\r\n"
    started = time.monotonic()
    answers, closed = _exchange(server, _head(server, "PUT", f"/{bucket}/mid", headers) + first, b"zz\r\nxx\r\n")
    assert time.monotonic() - started < PROMPT
    assert len(answers) == 1, answers
    _assert_s3_error(answers[0], 400, "BadRequest")
    assert answers[0].headers.get("connection") == "close"
    assert closed
    assert _content(s3, bucket, "mid") == b"old"
    _no_temp_files(server)


def test_requests_pipelined_before_a_broken_chunked_body_are_answered(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """A body whose chunked framing breaks, queued behind requests received before it: those are
    answered first (they were dropped), then its 400, and the connection closes."""
    s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(8 << 20))
    s3.put_object(Bucket=bucket, Key="small", Body=b"small")
    body, headers = _aws_chunked(b"0123456789")
    headers["Transfer-Encoding"] = "chunked"
    first = f"{len(body[:8]):x}\r\n".encode() + body[:8] + b"\r\n"
    gets = _head(server, "GET", f"/{bucket}/big") + b"".join(_head(server, "GET", f"/{bucket}/small") for _ in range(3))
    answers, closed = _exchange(server, gets + _head(server, "PUT", f"/{bucket}/broken", headers) + first, b"zz\r\nxx\r\n")
    assert [a.status for a in answers] == [200, 200, 200, 200, 400], [(a.status, a.code) for a in answers]
    assert [a.body for a in answers[1:4]] == [b"small"] * 3 and len(answers[0].body) == 8 << 20
    _assert_s3_error(answers[4], 400, "BadRequest")
    assert closed
    assert object_absent(s3, bucket, "broken")


def test_pipelined_request_after_an_early_error(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """An answer given before the body was read (no such bucket) leaves the body to be drained,
    never parsed: the request pipelined after it is answered, and a body that looks like a
    request is not."""
    s3.put_object(Bucket=bucket, Key="next", Body=b"next")
    smuggled = f"DELETE /{bucket}/next HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    early = _head(server, "PUT", "/no-such-bucket-here/k", {"Content-Length": str(len(smuggled))}) + smuggled
    answers, _ = _exchange(server, early + _head(server, "GET", f"/{bucket}/next", {"Connection": "close"}))
    assert [(a.status, a.code) for a in answers] == [(404, "NoSuchBucket"), (200, None)], answers
    assert answers[1].body == b"next"
    assert _content(s3, bucket, "next") == b"next"


def test_many_headers_within_the_limit_are_served(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="many", Body=b"many")
    extra = {f"X-Extra-{i}": "v" for i in range(100)}
    answers, _ = _exchange(server, _head(server, "GET", f"/{bucket}/many", {**extra, "Connection": "close"}))
    assert [(a.status, a.body) for a in answers] == [(200, b"many")], answers


def test_head_errors_have_no_body_and_a_gets_headers(server: Server, bucket: str) -> None:
    answers, _ = _exchange(server, _head(server, "HEAD", f"/{bucket}/absent", {"Connection": "close"}), head=True)
    (got,), _ = _exchange(server, _head(server, "GET", f"/{bucket}/absent", {"Connection": "close"}))
    assert (answers[0].status, answers[0].body) == (404, b"")
    # The error document's type, as S3 sends it, and its length, which tells the client where the
    # answer ends (the request ids in it are of one length).
    assert answers[0].headers["content-type"] == got.headers["content-type"] == "application/xml"
    assert int(answers[0].headers["content-length"]) == len(got.body) > 0


async def _connections_for_heads(server: Server, bucket: str) -> int:
    made = 0

    async def connected(*_: object) -> None:
        nonlocal made
        made += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(connected)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        for path in (f"/{bucket}/absent-1", f"/{bucket}/absent-2", "/no-such-bucket-here/k", f"/{bucket}/absent-3"):
            signed = _signed_headers(server, "HEAD", path)
            async with session.head(server.endpoint + path, headers=signed) as response:
                assert response.status == 404
    return made


def test_an_aiohttp_client_keeps_its_connection_across_head_errors(server: Server, bucket: str) -> None:
    """aiohttp's client (aiobotocore's, so s3fs-python's and fsspec's) ends a connection after an
    answer whose end it cannot tell: with no Content-Length, every HEAD of a missing key cost a new
    connection."""
    _address(server)  # plain HTTP
    assert asyncio.run(_connections_for_heads(server, bucket)) == 1


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own whose request bodies may stall for 1 s (S3: about 20 s)."""
    if os.environ.get("S3SERVE_TEST_ENDPOINT"):
        pytest.skip("starts a server with --body-timeout of its own")
    root = tmp_path_factory.mktemp("impatient") / "root"
    root.mkdir()
    srv = start_server(root, "--no-fsync", "--body-timeout", "1s")
    srv.client().create_bucket(Bucket="slow")  # type: ignore[attr-defined]
    yield srv
    stop_server(srv)


def test_a_stalled_body_gets_request_timeout_and_a_closed_connection(impatient: Server) -> None:
    s3 = impatient.client()
    s3.put_object(Bucket="slow", Key="stall", Body=b"old")  # type: ignore[attr-defined]
    started = time.monotonic()
    with socket.create_connection(_address(impatient), timeout=10) as sock:
        sock.sendall(_head(impatient, "PUT", "/slow/stall", {"Content-Length": "100000"}) + b"x" * 5000)
        data, closed = _read(sock)  # the client sends nothing more, and keeps the connection
    waited = time.monotonic() - started
    answers = _parse(data)
    assert len(answers) == 1, answers
    _assert_s3_error(answers[0], 400, "RequestTimeout")
    assert closed and waited < 9, waited
    assert _content(s3, "slow", "stall") == b"old"
    _no_temp_files(impatient)


def test_a_slow_but_steady_body_is_not_timed_out(impatient: Server) -> None:
    # Bytes every 0.4 s for about 3 s: never 1 s of silence, so the upload goes through.
    body = b"".join(bytes([65 + i]) * 1000 for i in range(8))
    with socket.create_connection(_address(impatient), timeout=10) as sock:
        sock.sendall(_head(impatient, "PUT", "/slow/steady", {"Content-Length": str(len(body))}))
        for i in range(0, len(body), 1000):
            time.sleep(0.4)
            sock.sendall(body[i : i + 1000])
        answers = _parse(sock.recv(65536))
    assert [a.status for a in answers] == [200], answers
    assert _content(impatient.client(), "slow", "steady") == body


def test_an_idle_keepalive_connection_is_no_stalled_body(impatient: Server) -> None:
    # Between requests nothing is being received: a quiet keep-alive connection is left alone.
    with socket.create_connection(_address(impatient), timeout=10) as sock:
        sock.sendall(_head(impatient, "PUT", "/slow/first", {"Content-Length": "2"}) + b"ok")
        assert [a.status for a in _parse(sock.recv(65536))] == [200]
        time.sleep(2.5)
        sock.sendall(_head(impatient, "GET", "/slow/first"))
        answers = _parse(sock.recv(65536))
    assert [(a.status, a.body) for a in answers] == [(200, b"ok")]


def test_a_chunked_body_ending_in_the_read_of_the_next_request_leaves_the_connection_idle(impatient: Server) -> None:
    """A chunked upload whose body ended in the same read as a next request with a body: the
    decoded length of the chunked body was taken for its length on the wire, a header section
    was believed begun, and the idle connection got an unasked 400 RequestTimeout (which a
    client reusing it would read as the answer to its next request)."""
    body, headers = _aws_chunked(b"hello")
    te_body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    te_put = _head(impatient, "PUT", "/slow/chunked", {**headers, "Transfer-Encoding": "chunked"}) + te_body
    put = _head(impatient, "PUT", "/slow/plain", {"Content-Length": "2"}) + b"zz"
    cut = te_put.index(b"\r\n\r\n") + 4 + 10  # inside the chunked body
    with socket.create_connection(_address(impatient), timeout=3.5) as sock:
        sock.sendall(te_put[:cut])
        time.sleep(0.2)
        sock.sendall(te_put[cut:] + put)  # the rest of that body and a whole request: one read
        got = b""
        while got.count(b"HTTP/1.1 ") < 2:  # two answers without bodies
            got += sock.recv(65536)
        assert [a.status for a in _parse(got)] == [200, 200], got
        data, closed = _read(sock)  # 3.5 s of silence: over three times the 1 s timeout
        assert (data, closed) == (b"", False), data[:300]
        sock.sendall(_head(impatient, "GET", "/slow/plain"))
        assert [(a.status, a.body) for a in _parse(sock.recv(65536))] == [(200, b"zz")]
    assert _content(impatient.client(), "slow", "chunked") == b"hello"


# -- 6. header sections that stall (slowloris) -------------------------------------------------


def _timed_out(sock: socket.socket, started: float) -> list[Answer]:
    """The answers up to the server's RequestTimeout, which must come within a few seconds of
    the 1 s timeout (``started``: when the stalled request began) and close the connection."""
    data, closed = _read(sock)
    waited = time.monotonic() - started
    answers = _parse(data)
    assert answers, "no answer to a stalled header section"
    _assert_s3_error(answers[-1], 400, "RequestTimeout")
    assert b"<Message>Your socket connection to the server was not read from or written to" in answers[-1].body
    assert (answers[-1].protocol, answers[-1].headers.get("connection")) == ("HTTP/1.1", "close"), answers[-1]
    assert closed, "the connection stays open after RequestTimeout"
    assert 0.9 <= waited < 6, waited
    return answers[:-1]


STALLED_HEADS = ["request-line", "half-the-headers", "all-but-the-blank-line"]
STALLED_HEADS += [f"{head}-{after}" for head in ("after", "in-the-write-of") for after in ("a-request", "a-body")]


@pytest.mark.parametrize("shape", STALLED_HEADS)
def test_a_stalled_header_section_gets_request_timeout_and_a_closed_connection(impatient: Server, shape: str) -> None:
    """A request whose header section began to arrive and is not complete within the timeout is
    answered as S3 answers a stalled request, and its connection closed (before, it was kept for
    aiohttp's keep-alive timeout: an hour). Also when it follows a request on the connection,
    alone or in the write that ended that request (its headers, or its body)."""
    get = _head(impatient, "GET", "/slow/")
    put = _head(impatient, "PUT", "/slow/stalled-head", {"Content-Length": "5"})
    partial = {"request-line": get[:10], "half-the-headers": get[: len(get) // 2]}.get(shape, get[:-2])
    writes = {
        "after-a-request": (get, partial),
        "in-the-write-of-a-request": (get + partial,),
        "after-a-body": (put, b"hello", partial),
        "in-the-write-of-a-body": (put, b"hello" + partial),
    }.get(shape, (partial,))
    with socket.create_connection(_address(impatient), timeout=10) as sock:
        for index, part in enumerate(writes):
            if index:
                time.sleep(0.2)
            sock.sendall(part)
        served = _timed_out(sock, time.monotonic())
    # The request before the stalled one, if any, was answered.
    assert [a.status for a in served] == ([200] if "-a-" in shape else []), served


def test_a_header_section_trickled_byte_by_byte_still_times_out(impatient: Server) -> None:
    """Slowloris: a byte every 0.2 s never leaves the connection silent for the timeout, but
    the header section must be whole within it."""
    head = _head(impatient, "GET", "/slow/")
    with socket.create_connection(_address(impatient), timeout=10) as sock:
        sock.settimeout(0.2)
        started = time.monotonic()
        data = b""
        for byte in head[:-2]:
            try:
                sock.sendall(bytes([byte]))
                data += sock.recv(65536)
                break  # answered (or closed: recv returned b"")
            except TimeoutError:
                continue
            except OSError:
                break
        assert time.monotonic() - started < 6
        sock.settimeout(10)
        rest, closed = _read(sock)
    answers = _parse(data + rest)
    assert len(answers) == 1, answers
    _assert_s3_error(answers[0], 400, "RequestTimeout")
    assert closed


IDLE_AFTER = (
    "nothing",
    "a-get",
    "two-gets-in-one-write",
    "a-put-in-one-write",
    "a-put-body-later",
    "a-put-whose-body-ends-with-a-blank-line",
    "a-put-and-a-stray-crlf",
    "an-aws-chunked-put-in-http-chunks",
    "headers-whose-blank-line-is-split",
)


def test_idle_keepalive_connections_are_left_alone(impatient: Server) -> None:
    """A connection between requests, with no byte of a next one received, is no stalled
    request, however long it stays quiet (aiohttp's keep-alive timeout applies, an hour): its
    next request is served. One connection per way of having got there, all quiet at once."""
    s3 = impatient.client()
    s3.put_object(Bucket="slow", Key="idle", Body=b"idle")  # type: ignore[attr-defined]
    get = _head(impatient, "GET", "/slow/idle")

    def put(body: bytes, **headers: str) -> bytes:
        return _head(impatient, "PUT", "/slow/idle-put", {"Content-Length": str(len(body)), **headers})

    chunked_body, chunked_headers = _aws_chunked(b"0123456789")
    chunked_headers["Transfer-Encoding"] = "chunked"
    http_chunked = f"{len(chunked_body):x}\r\n".encode() + chunked_body + b"\r\n0\r\n\r\n"
    writes: dict[str, tuple[bytes, ...]] = {
        "nothing": (),
        "a-get": (get,),
        "two-gets-in-one-write": (get + get,),
        "a-put-in-one-write": (put(b"hello") + b"hello",),
        "a-put-body-later": (put(b"hello"), b"hello"),
        "a-put-whose-body-ends-with-a-blank-line": (put(b"ab\r\n\r\n") + b"ab\r\n\r\n",),
        # Some clients end a body with an extra CRLF, which HTTP says to ignore (RFC 9112 2.2).
        "a-put-and-a-stray-crlf": (put(b"hello") + b"hello\r\n",),
        "an-aws-chunked-put-in-http-chunks": (_head(impatient, "PUT", "/slow/idle-put", chunked_headers) + http_chunked,),
        "headers-whose-blank-line-is-split": (get[:-1], get[-1:]),
    }
    assert set(writes) == set(IDLE_AFTER)
    sockets: dict[str, socket.socket] = {}
    try:
        for before in IDLE_AFTER:
            sock = sockets[before] = socket.create_connection(_address(impatient), timeout=10)
            data = b""
            for part in writes[before]:
                sock.sendall(part)
                time.sleep(0.2)
            expected = 2 if before == "two-gets-in-one-write" else len(writes[before][:1])
            while len(_parse_whole(data)) < expected:
                chunk = sock.recv(65536)
                assert chunk, f"{before}: closed after {data!r}"
                data += chunk
            assert all(a.status == 200 for a in _parse(data)), (before, data)
        time.sleep(3)  # three times the timeout, and as many looks of the watchdog
        for before, sock in sockets.items():
            sock.sendall(get)
            answers = _parse(sock.recv(65536))
            assert [(a.status, a.body) for a in answers] == [(200, b"idle")], (before, answers)
    finally:
        for sock in sockets.values():
            sock.close()


def _parse_whole(data: bytes) -> list[Answer]:
    """The answers in ``data`` that have fully arrived."""
    try:
        answers = _parse(data)
    except AssertionError:
        return []
    return [a for a in answers if len(a.body) == int(a.headers.get("content-length", "0"))]
