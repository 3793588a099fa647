"""framing.py without a network: which S3 error answers which aiohttp parser error, the shape of
that answer, that the runner's server makes connections of the class that gives it, and what such
a connection makes of reads fed to it directly (where they leave the parser, requests read again
after a failed parse, a stalled header section). These also hold the aiohttp internals framing.py
relies on (the error record and waiter of the connection's loop, the error request's version)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.http import HttpRequestParser
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from s3serve import errors, framing
from s3serve.app import create_app
from s3serve.config import Config
from s3serve.framing import PARSE_ERROR, S3AppRunner, S3RequestHandler, parse_error, refusal


@pytest.mark.parametrize(
    ("exc", "code", "status"),
    [
        (LineTooLong(b"/a" * 50 + b"...", 8190), "RequestHeaderSectionTooLarge", 400),
        (BadHttpMessage("Too many headers received"), "RequestHeaderSectionTooLarge", 400),
        # llhttp's words for bytes after a request that said it was the last (an HTTP/1.0 PUT
        # whose body came without Content-Length).
        (BadHttpMessage("Data after `Connection: close`:\n\n  b'hello'\n     ^"), "MissingContentLength", 411),
        (BadHttpMethod("G@T"), "BadRequest", 400),
        (BadStatusLine("GET / HTTP/9.x"), "BadRequest", 400),
        (InvalidHeader(b"Bad Header"), "BadRequest", 400),
        (InvalidURLError("bad url"), "BadRequest", 400),
        (BadHttpMessage("Duplicate 'Host' header found."), "BadRequest", 400),
        (BadHttpMessage("Missing 'Host' header in request."), "BadRequest", 400),
        (TransferEncodingError("Not enough data to satisfy transfer length header."), "BadRequest", 400),
        (ContentLengthError("Not enough data to satisfy content length header."), "BadRequest", 400),
        (None, "BadRequest", 400),
    ],
)
def test_parse_errors_map_to_s3_codes(exc: Exception | None, code: str, status: int) -> None:
    error = parse_error(exc)
    assert (error.code, error.status) == (code, status)
    if code == "BadRequest":
        assert error.message == PARSE_ERROR


def test_refusal_is_an_s3_error_document_that_closes_the_connection() -> None:
    response = refusal(errors.RequestHeaderSectionTooLarge())
    assert response.status == 400
    assert response.content_type == "application/xml"
    assert response.keep_alive is False
    body = response.body
    assert isinstance(body, bytes)
    request_id = response.headers["x-amz-request-id"]
    assert re.fullmatch(
        rb'<\?xml version="1.0" encoding="UTF-8"\?>\s*<Error><Code>RequestHeaderSectionTooLarge</Code>'
        rb"<Message>Your request header section exceeds the maximum allowed size.</Message>"
        rb"<RequestId>(\w+)</RequestId><HostId>\1</HostId></Error>",
        body,
    ), body
    assert f"<RequestId>{request_id}</RequestId>".encode() in body
    assert response.headers["Server"] == "s3serve" and response.headers["x-amz-id-2"]
    # Each refusal is a request of its own.
    assert refusal(errors.BadRequest(PARSE_ERROR)).headers["x-amz-request-id"] != request_id


async def test_the_runner_makes_s3_connections(tmp_path: Path) -> None:
    runner = S3AppRunner(create_app(Config(root=tmp_path)), handle_signals=False, max_field_size=1000)
    await runner.setup()
    try:
        server = runner.server
        assert server is not None
        protocol = server()
        assert isinstance(protocol, S3RequestHandler)
        # The runner's settings still reach the connection, as they do with web.AppRunner.
        assert protocol.max_field_size == 1000
    finally:
        await runner.cleanup()


# -- a connection fed reads directly (no network): where each read leaves the parser -----------


class _Transport(asyncio.Transport):
    """Just enough of a socket transport for a connection to answer into."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def is_reading(self) -> bool:
        return not self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.fixture
async def connection(tmp_path: Path) -> AsyncIterator[tuple[S3RequestHandler, _Transport]]:
    runner = S3AppRunner(create_app(Config(root=tmp_path)), handle_signals=False, access_log=None)
    await runner.setup()
    assert runner.server is not None
    handler = runner.server()
    assert isinstance(handler, S3RequestHandler)
    transport = _Transport()
    handler.connection_made(transport)
    yield handler, transport
    handler.connection_lost(None)
    await runner.cleanup()


async def _settle(transport: _Transport) -> None:
    """Let the connection's loop answer what it has (the app answers these unsigned requests at
    once, 403 for the service, 404 NoSuchBucket for bucket b, and drains a body it did not read)."""
    for _ in range(20):
        await asyncio.sleep(0.005)


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
PUT5 = b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
PUT8 = b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n"
CHUNKED = b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
NO_LENGTH = b"PUT /b/k HTTP/1.1\r\nHost: x\r\n\r\n"
PART = GET[:10]

# Reads, and the header section they leave pending: None (none: between requests, or in a
# body), b"..." (pending, with these bytes), or ... (pending, bytes not known).
READS: dict[str, tuple[list[bytes], bytes | None | type[Ellipsis]]] = {
    "a-request": ([GET], None),
    "blank-line-split-1": ([GET[:-1], GET[-1:]], None),
    "blank-line-split-3": ([GET[:-3], GET[-3:]], None),
    "part-of-a-request": ([PART], PART),
    "in-three-reads": ([GET[:5], GET[5:10], GET[10:-2]], GET[:-2]),
    "blank-lines": ([b"\r\n", b"\r\n"], None),
    "blank-lines-then-part": ([b"\r\n", PART], PART),
    "a-request-and-a-stray-crlf": ([GET + b"\r\n"], None),
    "a-request-and-part": ([GET + PART], PART),
    "two-requests": ([GET + GET], None),
    "end-of-one-and-part": ([GET[:-2], GET[-2:] + PART], PART),
    "a-put": ([PUT5 + b"hello"], None),
    "a-put-body-later": ([PUT5, b"hello"], None),
    "a-put-body-split": ([PUT5 + b"he", b"llo"], None),
    "in-a-body": ([PUT5 + b"he"], None),
    "a-put-and-part": ([PUT5 + b"hello" + PART], PART),
    "a-put-body-later-and-part": ([PUT5, b"hello" + PART], PART),
    "a-put-and-a-stray-crlf": ([PUT5 + b"hello\r\n"], None),
    "a-body-ending-in-a-blank-line": ([PUT5 + b"a\r\n\r\n"], None),
    # A body whose bytes, seen from the read's end, look like a header section's end.
    "a-body-with-a-blank-line-and-part": ([PUT8 + b"\r\n\r\nabcd" + b"GET "], b"GET "),
    "a-request-a-put-and-part": ([GET + PUT5 + b"hello" + PART], PART),
    "a-request-and-a-put": ([GET + PUT5 + b"hello"], None),
    "chunked": ([CHUNKED], None),
    "chunked-end-split": ([CHUNKED[:-1], CHUNKED[-1:]], None),
    "chunked-and-part": ([CHUNKED + PART], PART),
    # Past a chunked body the read cannot be walked: what follows the last body is seen from its end.
    "chunked-then-a-put": ([CHUNKED + PUT5 + b"hello"], None),
    "chunked-then-a-put-and-part": ([CHUNKED + PUT5 + b"hello" + PART], ...),
}


@pytest.mark.parametrize("served", [False, True], ids=["queued", "served"])
@pytest.mark.parametrize("name", list(READS))
async def test_where_reads_leave_the_parser(connection: tuple[S3RequestHandler, _Transport], name: str, served: bool) -> None:
    """Only a header section begun and not whole is timed (and kept): never a connection between
    requests or in a body, however the reads split the requests. (Queued: the loop does not run
    between the reads; served: it answers each request before the next read.)"""
    handler, transport = connection
    reads, pending = READS[name]
    for data in reads:
        handler.data_received(data)
        if served:
            await _settle(transport)
    if served:
        assert transport.sent.startswith((b"HTTP/1.1 403", b"HTTP/1.1 404")) or not transport.sent, bytes(transport.sent[:200])
    head = handler._head_began, handler._head
    if pending is None:
        assert head[0] is None, head
    elif pending is ...:
        assert head[0] is not None and head[1] is None, head
    else:
        assert head[0] is not None and head[1] == pending, head


RECOVERED = {
    "a-put-without-length-and-its-body": ([NO_LENGTH + b"hello"], ["PUT"]),
    "its-headers-in-two-reads": ([NO_LENGTH[:20], NO_LENGTH[20:] + b"hello"], ["PUT"]),
    "its-blank-line-in-two-reads": ([NO_LENGTH[:-1], NO_LENGTH[-1:] + b"hello"], ["PUT"]),
    "after-a-body": ([PUT5, b"hello" + NO_LENGTH + b"hello"], ["PUT", "PUT"]),
    "two-requests-and-garbage": ([GET + GET + b"GARBAGE\r\n\r\n"], ["GET", "GET"]),
    # A Content-Length body the read holds whole is read again with its request.
    "a-put-with-a-body-and-garbage": ([PUT5 + b"hello" + b"GARBAGE\r\n\r\n"], ["PUT"]),
    "garbage": ([b"GARBAGE\r\n\r\n"], []),
    "a-broken-request": ([b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"], []),
}


@pytest.mark.parametrize("name", list(RECOVERED))
async def test_requests_before_a_failed_parse_are_queued_ahead_of_it(connection: tuple[S3RequestHandler, _Transport], name: str) -> None:
    """aiohttp's parser fails for a whole read, and drops the requests it read whole in it: they
    are read again and queued before the error, to be answered first."""
    handler, _ = connection
    reads, methods = RECOVERED[name]
    for data in reads:
        handler.data_received(data)
    queue = [message for message, _ in handler._messages]
    assert [type(m).__name__ for m in queue[-1:]] == ["_ErrInfo"], queue
    assert [m.method for m in queue[:-1]] == methods, queue


async def test_the_runners_connections_answer_without_the_router(
    connection: tuple[S3RequestHandler, _Transport], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner's server calls the app's one route directly (app.direct_handler): the router
    resolves nothing, and the answers are still the app's, with its response headers (its
    on_response_prepare) and its expect handler's refusal before the body."""
    handler, transport = connection
    resolved: list[object] = []
    monkeypatch.setattr("aiohttp.web_urldispatcher.UrlDispatcher.resolve", lambda *args: resolved.append(args))
    handler.data_received(GET + b"PUT /b/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n")
    await _settle(transport)
    answers = bytes(transport.sent)
    assert answers.startswith(b"HTTP/1.1 403"), answers[:200]
    assert answers.count(b"Server: s3serve\r\n") == 2 and answers.count(b"x-amz-request-id: ") == 2, answers
    assert b"<Code>AccessDenied</Code>" in answers and b"<Code>NoSuchBucket</Code>" in answers, answers
    assert b"100 Continue" not in answers and resolved == []


async def test_a_request_is_read_again_only_to_the_same_failure(connection: tuple[S3RequestHandler, _Transport]) -> None:
    """Bytes read again from a wrong start would fail elsewhere, or not at all: then nothing is
    taken from them."""
    handler, _ = connection
    data = GET + b"G@T / HTTP/1.1\r\n\r\n"
    parser = HttpRequestParser(handler, asyncio.get_running_loop(), 2**16)
    with pytest.raises(HttpProcessingError) as failure:
        parser.feed_data(data)
    assert [m.method for m, _ in handler._read_again(data, failure.value)] == ["GET"]
    assert handler._read_again(data, BadHttpMessage("elsewhere")) == []
    assert handler._read_again(GET + GET, failure.value) == []


async def test_a_stalled_header_section_is_answered_request_timeout(connection: tuple[S3RequestHandler, _Transport]) -> None:
    handler, transport = connection
    await _settle(transport)
    now = time.monotonic()
    assert handler.stalled(now + 100, 1.0) is None  # between requests: idle, not stalled
    handler.data_received(PART)
    # The header section is timed from that read, somewhere between now and read (a loaded
    # machine can stall for any time in between).
    read = time.monotonic()
    assert handler.stalled(now + 0.5, 1.0) is None  # not yet
    assert handler.stalled(read + 1.5, 1.0) == "header section"
    await _settle(transport)
    sent = bytes(transport.sent)
    assert sent.startswith(b"HTTP/1.1 400 Bad Request\r\n"), sent
    assert b"\r\nConnection: close\r\n" in sent and b"<Code>RequestTimeout</Code>" in sent, sent
    assert transport.closed
    handler.data_received(GET)  # nothing after the answer is read
    await _settle(transport)
    assert bytes(transport.sent) == sent


async def test_parse_errors_are_answered_in_http11(connection: tuple[S3RequestHandler, _Transport]) -> None:
    handler, transport = connection
    handler.data_received(b"GARBAGE\r\n\r\n")
    await _settle(transport)
    assert transport.sent.startswith(b"HTTP/1.1 400 Bad Request\r\n"), bytes(transport.sent)
    assert b"\r\nConnection: close\r\n" in transport.sent and b"<Code>BadRequest</Code>" in transport.sent
    assert transport.closed


def test_a_header_timeout_is_s3s_request_timeout() -> None:
    timeout = framing.HeaderTimeout()
    error = parse_error(timeout)
    assert (error.code, error.status) == ("RequestTimeout", 400)
    assert timeout.code == 400 and timeout.message  # what cli's log filter reads
