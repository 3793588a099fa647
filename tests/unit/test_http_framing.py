"""framing.py without a network: which S3 error answers which aiohttp parser error, the shape of
that answer, and that the runner's server makes connections of the class that gives it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from s3serve import errors
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
