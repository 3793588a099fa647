"""Requests whose HTTP framing is broken, answered as S3 answers them.

aiohttp refuses a request it cannot parse (a broken request line, a bad header name or value, a
request line or header over its limit, a duplicate Content-Length or Host, Content-Length with
Transfer-Encoding, bad chunked framing) before any route runs, with a text/plain 400 from
``RequestHandler.handle_error``. It has no hook for that answer (aio-libs/aiohttp#3287, #9882), so
``S3RequestHandler`` overrides the method and ``S3AppRunner`` makes connections of that class.

The same class covers three ways a connection could otherwise go silent:

- the parser gives up in the middle of a request body (a broken chunk-size line): aiohttp queues
  the error behind the request, whose handler then waits for the rest of a body that never comes;
- the client half-closes after sending (``shutdown(SHUT_WR)``, ``printf ... | nc``): asyncio closes
  the connection at once by default, and the client gets no answer at all;
- the client stops sending in the middle of a body and keeps the connection open: its handler,
  temp file and connection would wait forever. S3 answers 400 RequestTimeout after about 20 s of
  silence; ``S3Server`` looks at its connections every few seconds for a body that has heard
  nothing for ``Config.body_timeout`` (one timestamp per socket read, no timer per request).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import _ErrInfo

from . import errors, s3xml
from .app import CONFIG, SERVER_NAME, next_request_id
from .payload import closing

log = logging.getLogger("s3serve")

# S3's words for a request it cannot parse (its answer to a duplicate Host header, an invalid
# Content-Length, or bytes past a body's end that do not make a request).
PARSE_ERROR = "An error occurred when parsing the HTTP request."
# llhttp's reason (and aiohttp's Python parser's) for bytes after a request that said it was the
# last: an HTTP/1.0 request, or one with "Connection: close".
_DATA_AFTER_CLOSE = "Data after `Connection: close`"


def parse_error(exc: BaseException | None) -> errors.S3Error:
    """The S3 error for a request aiohttp's parser refused with ``exc``."""
    message = exc.message if isinstance(exc, HttpProcessingError) else ""
    if isinstance(exc, LineTooLong) or message.startswith("Too many headers"):
        # S3 counts the request line and the headers against one limit and names it so.
        return errors.RequestHeaderSectionTooLarge()
    if message.startswith(_DATA_AFTER_CLOSE):
        # Bytes after a request that said it was the last are, in practice, the body of an
        # HTTP/1.0 PUT sent without Content-Length (HTTP/1.0 has no other way to send one), which
        # ended with its headers. That request itself is lost with the error (the parser raises
        # for the whole read), so this answer stands for it.
        return errors.MissingContentLength()
    return errors.BadRequest(PARSE_ERROR)


def refusal(error: errors.S3Error) -> web.Response:
    """The answer to a request that never reached a handler: S3's <Error> document and headers
    (no Resource: there is no request to name), and the connection closed after it."""
    request_id = next_request_id()
    body = s3xml.error(error.code, error.message, None, request_id, error.extra)
    headers = {
        "x-amz-request-id": request_id,
        # As app._common_headers makes it; that signal does not run for a request no route matched.
        "x-amz-id-2": base64.b64encode(request_id.encode() * 3).decode(),
        "Server": SERVER_NAME,
    }
    response = web.Response(status=error.status, body=body, content_type="application/xml", headers=headers)
    response.force_close()
    return response


class S3RequestHandler(web.RequestHandler):
    """aiohttp's connection protocol, answering framing errors as S3 does (see the module doc)."""

    __slots__ = ("heard",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.heard = time.monotonic()  # when the client last sent something
        super().connection_made(transport)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own logs the error as it always has (cli filters the client's faults down to
        # a line) and refuses to answer twice when an answer has begun; its text answer is dropped.
        super().handle_error(request, status, exc, message)
        if status == 400 and isinstance(exc, HttpProcessingError):
            return refusal(parse_error(exc))
        # An exception that escaped the application (app.handle renders its own): a 500 all the same.
        return refusal(errors.InternalError())

    def data_received(self, data: bytes) -> None:
        self.heard = time.monotonic()
        super().data_received(data)
        # A failed parse appends an error record to the queue. Checked here, on every read, because
        # nothing else learns of it while a handler waits for the body the parser gave up on.
        messages = self._messages
        if messages and type(messages[-1][0]) is _ErrInfo:
            self._parser_gave_up()
            self._loop.call_soon(self._parser_gave_up)  # see _fail_unfinished_bodies

    def _parser_gave_up(self) -> None:
        if self._fail_unfinished_bodies(closing(errors.BadRequest(PARSE_ERROR))):
            # Answer the request whose body broke (its handler now fails reading it), then close:
            # nothing after the break can be read as a request.
            self.close()

    # asyncio.Protocol's contract is "-> bool | None"; aiohttp declares None, as it never keeps a
    # half-closed connection open.
    def eof_received(self) -> bool:  # type: ignore[override]
        """The client sent its last byte. Keep the connection open for the answers it still
        waits for, as long as there are some: the request in progress and those received."""
        if self.ssl_context is not None:
            return False  # asyncio's TLS transport closes at EOF whatever this answers
        if self._idle():
            return False  # nothing asked is unanswered: close, as asyncio does by default
        self._client_done()
        self._loop.call_soon(self._client_done)  # see _fail_unfinished_bodies
        return True

    def _client_done(self) -> None:
        if self._idle():
            # The last answer went out meanwhile. (close() would not do: it ends the loop's
            # wait for a next request without closing the transport.)
            self.force_close()
            return
        # A body still arriving never will now.
        self._fail_unfinished_bodies(closing(errors.IncompleteBody()))
        self.close()  # after the answer in progress

    def stalled(self, now: float, timeout: float) -> bool:
        """Whether a body being received has heard nothing for ``timeout`` seconds while this side
        was ready to read it (not while reading is paused because the handler has not caught
        up: then the silence is ours); if so, it fails with RequestTimeout, answered and closed."""
        transport = self.transport
        if now - self.heard < timeout or transport is None or not transport.is_reading():
            return False
        return self._fail_unfinished_bodies(closing(errors.RequestTimeout()))

    def _idle(self) -> bool:
        """The loop waits for a next request: it clears the waiter while it handles one, and a
        parsed request completes it."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _fail_unfinished_bodies(self, error: errors.S3Error) -> bool:
        """Make every body still being received (the current request's, and those of requests
        queued behind it) raise ``error`` at its next read. True when there was one.

        Called at the event and again a turn of the event loop later (call_soon): a request the
        loop has just taken from the queue is in neither place until its task first runs, a step
        asyncio has queued by then (before Python 3.12, whose eager tasks start at once)."""
        payloads: list[StreamReader] = [payload for _, payload in self._messages]
        if self._current_request is not None:
            payloads.append(self._current_request.content)
        failed = False
        for payload in payloads:
            if not payload.is_eof():
                payload.set_exception(error)
                # Ended too, so aiohttp does not linger reading the rest after the answer.
                payload.feed_eof()
                failed = True
        return failed


class S3Server(web.Server):
    """aiohttp's Server (the protocol factory), making S3RequestHandler connections, and watching
    them for stalled request bodies while there are any."""

    body_timeout: float = 20.0
    _watch: asyncio.TimerHandle | None = None

    def __call__(self) -> web.RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return S3RequestHandler(self, loop=self._loop, **kwargs)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if self._watch is None:
            self._watch = self._loop.call_later(self._every(), self._look)

    def _every(self) -> float:
        # A stall is answered within a quarter of the timeout of its start, and no look is needed
        # more often than once a second.
        return max(1.0, self.body_timeout / 4)

    def _look(self) -> None:
        self._watch = None
        now = time.monotonic()
        for handler in self.connections:
            if isinstance(handler, S3RequestHandler) and handler.stalled(now, self.body_timeout):
                log.info("a request body sent nothing for %.0f s: answered RequestTimeout", self.body_timeout)
        if self.connections:
            self._watch = self._loop.call_later(self._every(), self._look)


class S3AppRunner(web.AppRunner):
    """web.AppRunner whose server makes S3RequestHandler connections."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Application builds a plain Server from its handler, request factory and handler_args;
        # only the protocol factory differs, so the instance changes class rather than being
        # rebuilt from the application's private parts.
        server.__class__ = S3Server
        assert isinstance(server, S3Server)
        server.body_timeout = self.app[CONFIG].body_timeout
        return server
