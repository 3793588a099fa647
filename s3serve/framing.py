"""Requests whose HTTP framing is broken, answered as S3 answers them.

aiohttp refuses a request it cannot parse (a broken request line, a bad header name or value, a
request line or header over its limit, a duplicate Content-Length or Host, Content-Length with
Transfer-Encoding, bad chunked framing) before any route runs, with a text/plain 400 from
``RequestHandler.handle_error``. It has no hook for that answer (aio-libs/aiohttp#3287, #9882), so
``S3RequestHandler`` overrides the method and ``S3AppRunner`` makes connections of that class.

The same class covers five ways a connection could otherwise go silent:

- the parser gives up in the middle of a request body (a broken chunk-size line): aiohttp queues
  the error behind the request, whose handler then waits for the rest of a body that never comes;
- the client half-closes after sending (``shutdown(SHUT_WR)``, ``printf ... | nc``): asyncio closes
  the connection at once by default, and the client gets no answer at all;
- the client stops sending in the middle of a body and keeps the connection open: its handler,
  temp file and connection would wait forever. S3 answers 400 RequestTimeout after about 20 s of
  silence; ``S3Server`` looks at its connections every few seconds for a body that has heard
  nothing for ``Config.body_timeout`` (one timestamp per socket read, no timer per request);
- the client sends part of a request line or headers and stops (slowloris): aiohttp's keep-alive
  timeout (an hour) is all that would end it. The header section of a request must be whole
  within the same ``Config.body_timeout`` of its first byte, or RequestTimeout again. A connection
  between requests with no byte of a next one is idle, not stalled: aiohttp's keep-alive applies;
- idle connections pile up (clients that connect and send nothing, pools that keep hundreds open)
  until the process runs out of file descriptors: asyncio's accept then fails, and every new
  client waits in the listen queue for an hour. ``S3Server`` keeps at most ``connection_cap()``
  connections, closing idle ones (waiting for a request) past it: those that sent no request
  for a second first, then the longest idle.

And one way a request could be lost: aiohttp's parser fails for a whole read, so the requests it
read whole before the bytes that broke it (typically an HTTP/1.1 PUT without Content-Length, whose
body came in the same packet as its headers and was taken for a next request) were dropped with
it. They are parsed again and answered first (that PUT: 411 MissingContentLength, as when its body
comes in a later packet), then the error.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http import HttpRequestParser, HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import _ErrInfo

from . import descriptors, errors, s3xml
from .app import CONFIG, SERVER_NAME, direct_handler, next_request_id
from .descriptors import FRESH, connection_cap, unread
from .payload import ascii_int, closing

log = logging.getLogger("s3serve")

# S3's words for a request it cannot parse (its answer to a duplicate Host header, an invalid
# Content-Length, or bytes past a body's end that do not make a request).
PARSE_ERROR = "An error occurred when parsing the HTTP request."
# llhttp's reason (and aiohttp's Python parser's) for bytes after a request that said it was the
# last: an HTTP/1.0 request, or one with "Connection: close".
_DATA_AFTER_CLOSE = "Data after `Connection: close`"
# The end of a header section (and of a chunked body); llhttp as aiohttp runs it takes no bare LF.
_BLANK_LINE = b"\r\n\r\n"
# How often a half-closed connection looks whether its last answer went out (then it closes).
_ANSWERED_LOOK = 0.01
# Bytes of an unfinished header section kept, to parse again should the read that ends it fail
# (_recover_requests). Far over any real one; a longer one is still timed, just not kept.
_HEAD_KEPT = 64 * 1024


def _whole_body(message: RawRequestMessage, held: int) -> int | None:
    """The length of ``message``'s body, when it has a Content-Length of at most ``held`` bytes
    and is not chunked; None otherwise."""
    length = ascii_int(message.headers.get("Content-Length", ""))
    return None if message.chunked or length is None or length > held else length


class HeaderTimeout(HttpProcessingError):
    """A request's header section not whole within ``Config.body_timeout`` of its first byte.
    One of aiohttp's parse errors, so it is answered (and logged, cli's filter) like them."""

    def __init__(self) -> None:
        super().__init__(code=400, message="Request header section not complete within the timeout")


def parse_error(exc: BaseException | None) -> errors.S3Error:
    """The S3 error for a request aiohttp's parser refused with ``exc``."""
    if isinstance(exc, HeaderTimeout):
        return errors.RequestTimeout()
    message = exc.message if isinstance(exc, HttpProcessingError) else ""
    if isinstance(exc, LineTooLong) or message.startswith("Too many headers"):
        # S3 counts the request line and the headers against one limit and names it so.
        return errors.RequestHeaderSectionTooLarge()
    if message.startswith(_DATA_AFTER_CLOSE):
        # Bytes after a request that said it was the last are, in practice, the body of an
        # HTTP/1.0 PUT sent without Content-Length (HTTP/1.0 has no other way to send one), which
        # ended with its headers. That request is parsed again and answered before this error
        # (S3RequestHandler._recover_requests); where it cannot be, this answer stands for it.
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

    __slots__ = (
        "heard", "_fed", "_fed_chunked", "_tail", "_head_began", "_head", "_untracked", "_gave_up",
        "_watching", "shed",
    )  # fmt: skip

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.heard = time.monotonic()  # when the client last sent something
        # The body of the newest request the parser read (the only one it can still be feeding).
        self._fed: StreamReader = EMPTY_PAYLOAD
        self._fed_chunked = False
        self._tail = b""  # the last (up to) 3 bytes received: a blank line may straddle two reads
        # Where the parser is between requests (see _follow_head). _head_began: when the first
        # byte of a header section not yet whole arrived (None: none is known to be pending).
        # _head: that header section's bytes so far (b"": the parser is known to be between
        # requests; None: not known, or over _HEAD_KEPT).
        self._head_began: float | None = None
        self._head: bytes | bytearray | None = b""
        self._untracked = False
        self._gave_up = False  # the parser failed: nothing more is read as a request
        self._watching = False  # _close_when_answered is polling
        self.shed = False  # to be closed to make room for other connections (S3Server._shed)
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
            # The request stands for one aiohttp could not read: HTTP/1.0 as it knows no version.
            # S3 answers in HTTP/1.1 (and, this answer closing, with "Connection: close").
            request._version = HttpVersion11
            return refusal(parse_error(exc))
        # An exception that escaped the application (app.handle renders its own): a 500 all the same.
        return refusal(errors.InternalError())

    def data_received(self, data: bytes) -> None:
        if self._gave_up:
            # The failure is queued, to be answered once the requests before it are; whatever
            # follows it is no request. Not fed to the parser again: aiohttp feeds it b"" at
            # every read a handler makes of a body, and a failed parser fails anew each time,
            # queueing one more error record per read (a body read line by line, aws-chunked,
            # then took the event loop for minutes).
            return
        now = self.heard = time.monotonic()
        messages = self._messages
        queued = len(messages)
        # The body the parser feeds, if any: the newest request's. (Looked up in the queue too, as
        # aiohttp queues the requests it parses again after a refused upgrade without a read.)
        fed = messages[-1][1] if queued else self._fed
        # Whether that body is chunked: self._fed_chunked is the newest request's once this read
        # has parsed more of them (and where fed's bytes end on the wire depends on it).
        newest = messages[-1][0] if queued else None
        fed_chunked = self._fed_chunked if newest is None or isinstance(newest, _ErrInfo) else bool(newest.chunked)
        receiving = not fed.is_eof()
        before = fed.total_bytes
        super().data_received(data)
        if len(messages) == queued:
            if receiving and data and not fed.is_eof():
                # More of a body: the most common read of all, kept cheap.
                self._tail = data[-3:] if len(data) >= 3 else (self._tail + data)[-3:]
                return
        else:
            record = messages[-1][0]
            if isinstance(record, _ErrInfo):
                self._recover_requests(data, fed if receiving else None, before, record.exc)
            else:
                self._fed, self._fed_chunked = messages[-1][1], record.chunked
        # A failed parse appends an error record to the queue. Checked here, on every read, because
        # nothing else learns of it while a handler waits for the body the parser gave up on.
        if messages and type(messages[-1][0]) is _ErrInfo:
            self._gave_up = True
            self._head_began = self._head = None
            self._parser_gave_up()
            self._loop.call_soon(self._parser_gave_up)  # see _fail_unfinished_bodies
        elif self._upgraded or self._untracked:
            # Bytes held for an upgrade (s3serve accepts none) are parsed again later, out of
            # sight: header sections on this connection are not followed from then on.
            self._untracked = True
            self._head_began = self._head = None
        elif not data:
            # A parse of bytes held back while reading was paused: where it left the parser is
            # not known, so nothing is timed until a read shows it again.
            if len(messages) > queued or (receiving and fed.is_eof()):
                self._head_began = self._head = None
        elif len(data) >= 4 and data.endswith(_BLANK_LINE) and self._fed.is_eof():
            # The next most common: a read that ends with a request (its header section, or a
            # chunked body): the parser is between requests.
            self._tail, self._head_began, self._head = data[-3:], None, b""
        else:
            new = [messages[i] for i in range(queued, len(messages))]
            self._follow_head(data, now, new, fed if receiving else None, before, fed_chunked)

    def _follow_head(
        self,
        data: bytes,
        now: float,
        new: list[tuple[Any, StreamReader]],
        fed: StreamReader | None,
        before: int,
        fed_chunked: bool,
    ) -> None:
        """Where the read ``data`` left the parser: in a header section not yet whole (since when,
        and its bytes when known, which ``stalled`` and ``_recover_requests`` use), between
        requests, or in a body. ``new``: the requests it ended the header section of; ``fed``: the
        body it continued, if any (then ``before``: what that body had read before, and
        ``fed_chunked``: whether it is chunked)."""
        tail, self._tail = self._tail, (data[-3:] if len(data) >= 3 else (self._tail + data)[-3:])
        if not new and fed is None:
            # Neither in a body nor ending a header section: all of it is a header section's.
            if self._head_began is None:
                if not data.strip(b"\r\n"):
                    return  # blank lines before a request, which HTTP says to ignore
                self._head_began = now
                self._head = bytearray(data) if self._head is not None else None
            elif self._head is not None:
                if len(self._head) + len(data) <= _HEAD_KEPT:
                    self._head += data  # a bytearray: in place
                else:
                    self._head = None
            return
        if (
            not self._fed.is_eof()
            or (data if len(data) >= 4 else tail + data).endswith(_BLANK_LINE)
            or (not new and fed is not None and fed.total_bytes - before >= len(data))
        ):
            # In a body (whose own timeout applies), or a request ended the read: every header
            # section ends with a blank line, and so does every chunked body; or the read was
            # the rest of a body.
            self._head_began, self._head = None, b""
            return
        # Rarer: a request ended within the read. (A blank line ending a header section begun
        # in an earlier read may begin in that read.)
        joined = tail + data if self._head_began is not None or len(data) < 4 else data
        rest, exact = self._after_last_request(joined, len(joined) - len(data), new, fed, before, fed_chunked)
        if rest is not None and not rest.strip(b"\r\n"):
            self._head_began, self._head = None, (b"" if exact else None)
        else:
            self._head_began, self._head = now, (bytearray(rest) if rest is not None and exact else None)

    def _after_last_request(
        self,
        joined: bytes,
        offset: int,
        new: list[tuple[Any, StreamReader]],
        fed: StreamReader | None,
        before: int,
        fed_chunked: bool,
    ) -> tuple[bytes | None, bool]:
        """The bytes of a read after the end of the last request that ended in it (None: not
        known), and whether they are exactly those. ``joined``: the read, after the ``offset``
        bytes received before it (where a blank line ending a header section may begin)."""
        # Walk the read: each header section ends at the first blank line after where it began,
        # and a body of Content-Length bytes follows it (a chunked one has no length to skip).
        pos: int | None
        if fed is not None:
            # A chunked body's decoded bytes are not its bytes on the wire: no offset from them.
            pos = None if fed_chunked else offset + fed.total_bytes - before
        elif self._head_began is not None:
            pos = 0  # its header section began in an earlier read: it may end in the straddle
        else:
            pos = offset if self._head is not None else None  # (None: where it began is not known)
        for message, payload in new:
            if pos is not None:
                end = joined.find(_BLANK_LINE, pos)
                pos = None if end < 0 or message.chunked else end + 4 + payload.total_bytes
        if pos is not None:
            return joined[pos:], True
        chunked, body = (bool(new[-1][0].chunked), new[-1][1]) if new else (self._fed_chunked, self._fed)
        if chunked or not body.total_bytes:
            # The last request ended at the last blank line: the bytes after it are a header
            # section's, which has none.
            at = joined.rfind(_BLANK_LINE)
            return (joined[at + 4 :], True) if at >= 0 else (None, False)
        # Its body ends the read, right after a blank line, or something follows it.
        size = body.total_bytes
        return (b"", False) if joined[-size - 4 : -size] == _BLANK_LINE else (None, False)

    def _recover_requests(self, data: bytes, fed: StreamReader | None, before: int, error: BaseException) -> None:
        """The parser failed with ``error`` for the read ``data``: queue the requests it read
        whole in that read before the failure (it drops them) ahead of the error record, to be
        answered first. Only where the read's bytes are known from a request's start: after a
        body of known length (``fed``, which had read ``before``), between requests, or in a
        header section whose bytes were kept."""
        if fed is not None:
            if not fed.is_eof() or self._fed_chunked:
                return  # the failure is in the body, or where the body ended is not known
            data = data[fed.total_bytes - before :]
        elif self._head is None:
            return
        elif self._head_began is not None:
            data = bytes(self._head) + data
        found = self._read_again(data, error)
        messages = self._messages
        at = len(messages) - 1
        for message in found:
            messages.insert(at, message)
            at += 1
        if found:
            self._fed, self._fed_chunked = EMPTY_PAYLOAD, False

    def _read_again(self, data: bytes, error: BaseException) -> list[tuple[RawRequestMessage, StreamReader]]:
        """The requests at the start of ``data`` that end with their header section, read by a
        parser like the connection's, up to one with a body, if reading the rest then fails with
        ``error`` as the connection's parser did (else none: it cannot have read what this one
        did: a guard, as the callers pass only bytes that begin where a request begins)."""
        parser = HttpRequestParser(
            self,
            self._loop,
            2**16,
            max_line_size=self.max_line_size,
            max_field_size=self.max_field_size,
            max_headers=self.max_headers,
            auto_decompress=False,
        )
        found: list[tuple[RawRequestMessage, StreamReader]] = []
        pos = 0
        try:
            while (end := data.find(_BLANK_LINE, pos)) >= 0:
                messages, _, _ = parser.feed_data(data[pos : end + 4])
                pos = end + 4
                if messages and not messages[-1][1].is_eof():
                    # A body: where it ends is known for a Content-Length one that the read holds.
                    size = _whole_body(messages[-1][0], len(data) - pos)
                    if len(messages) > 1 or size is None:
                        break
                    parser.feed_data(data[pos : pos + size])
                    pos += size
                found += messages
            parser.feed_data(data[pos:])
        except HttpProcessingError as exc:
            # The same failure: its kind and reason (the bytes llhttp quotes after the reason
            # depend on where reads split the line).
            reason = str(getattr(error, "message", "")).partition("\n")[0]
            if type(exc) is type(error) and exc.message.partition("\n")[0] == reason:
                return found
        return []

    def _parser_gave_up(self) -> None:
        # The request whose body broke fails reading it, and its answer closes the connection
        # (closing): the requests queued before it are answered first. Nothing after the break
        # is read as a request (_gave_up), and the error record queued behind it ends the
        # connection too, should its handler answer without reading the body.
        self._fail_unfinished_bodies(closing(errors.BadRequest(PARSE_ERROR)))

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
        # Not close(): aiohttp would drop the requests received and not yet answered. One poll
        # per connection, though _client_done runs twice.
        if not self._watching:
            self._watching = True
            self._close_when_answered()

    def _close_when_answered(self) -> None:
        """Close once every request received is answered (the loop waits for a next one)."""
        if self.transport is None or self._force_close:
            return
        if self._idle():
            self.force_close()
        else:
            self._loop.call_later(_ANSWERED_LOOK, self._close_when_answered)

    def stalled(self, now: float, timeout: float) -> str | None:
        """What of a request has stalled, if anything, now answered RequestTimeout and closed:
        - ``"header section"``: one began ``timeout`` seconds ago and is not whole, and the
          connection has nothing else to answer first (it waits for that request);
        - ``"body"``: one being received has heard nothing for ``timeout`` seconds while this
          side was ready to read it (not while reading is paused because the handler has not
          caught up: then the silence is ours)."""
        transport = self.transport
        if transport is None or not transport.is_reading():
            return None
        began = self._head_began
        if began is not None and now - began >= timeout and self._idle():
            # Answered as aiohttp answers a request it cannot parse, through its loop (which
            # waits for a request: the record completes its wait).
            error = HeaderTimeout()
            self._messages.append((_ErrInfo(status=400, exc=error, message=error.message), EMPTY_PAYLOAD))
            assert self._waiter is not None
            self._waiter.set_result(None)
            self._head_began = self._head = None
            self.close()  # after that answer; nothing more is read
            return "header section"
        if now - self.heard >= timeout and self._fail_unfinished_bodies(closing(errors.RequestTimeout())):
            return "body"
        return None

    def _idle(self) -> bool:
        """The loop waits for a next request: it clears the waiter while it handles one, and a
        parsed request completes it."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def shed_order(self, now: float) -> tuple[int, float] | None:
        """When this connection is closed to make room for new ones (least first), by kind, then
        the earliest first: 0, it has sent no whole request for FRESH seconds (connected and
        silent, or slowloris: its header section's start counts, a trickle does not make it look
        busy); 1, it did send one, and waits for the next (a client's keep-alive pool); 2, it is
        younger (its request may be on its way). None: not to be closed, as a request is being
        handled, has bytes waiting to be read or (keep-alive) its header section began less than
        FRESH seconds ago, or it is closing already."""
        if self.transport is None or self._force_close or self.shed:
            return None
        if self._request_count > 0 and not self._idle():
            return None
        # (One that never sent a request waits for one even before its loop has started.) A
        # keep-alive connection's next request may be on its way as well: closing it then loses
        # a request the client has sent.
        if unread(self.transport):
            return None  # a request on its way
        if self._request_count > 0:
            if self._head_began is None:
                return 1, self.heard
            if now - self._head_began < FRESH:
                return None  # the next request's header section is arriving
            return 0, self._head_began
        began = self.heard if self._head_began is None else self._head_began
        return (0 if now - began >= FRESH else 2), began

    def close_if_waiting(self) -> None:
        """Close a connection chosen to be shed, unless a request came meanwhile."""
        if (self._request_count == 0 or self._idle()) and not unread(self.transport):
            self.close_shed()
        else:
            self.shed = False

    def close_shed(self) -> None:
        """Close a connection shed to make room, its socket at once if TLS (see
        descriptors.tls_with_nothing_to_send)."""
        transport = self.transport
        abort = descriptors.tls_with_nothing_to_send(transport)
        self.force_close()
        if abort and transport is not None:
            transport.abort()

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
    them for stalled requests (header sections and bodies) while there are any."""

    body_timeout: float = 20.0
    max_connections: int | None = None  # connection_cap()
    _watch: asyncio.TimerHandle | None = None
    shed_reports: descriptors.ShedReports

    def __call__(self) -> web.RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return S3RequestHandler(self, loop=self._loop, **kwargs)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        cap = self.max_connections
        if cap is not None and len(self._connections) > cap:
            self._shed(handler, cap)
        if self._watch is None:
            self._watch = self._loop.call_later(self._every(), self._look)

    def _shed(self, newest: web.RequestHandler, cap: int) -> None:
        """Make room for ``newest``: close the connections that wait for a request, earliest
        first (shed_order), down to a sixteenth under ``cap``, so that the next connections do
        not each look through all of them. None is closed while a request is being handled: a
        server that busy runs out of descriptors as it did (asyncio's accept tries again a second
        later, a request that opens a file is answered SlowDown)."""
        order: list[tuple[tuple[int, float], S3RequestHandler]] = []
        live = 0
        now = time.monotonic()
        for handler in self._connections:
            if handler.transport is None or getattr(handler, "shed", False):
                continue  # closed or closing, and gone once its loop's task has ended
            live += 1
            if handler is not newest and isinstance(handler, S3RequestHandler):
                if (when := handler.shed_order(now)) is not None:
                    order.append((when, handler))
        if live <= cap or not order:
            return
        chosen = heapq.nsmallest(live - cap + cap // 16, order, key=lambda item: item[0])
        self.shed_reports.closed(live, cap, len(chosen))
        for _, handler in chosen:
            handler.shed = True
            if handler._idle():
                handler.close_shed()
            else:
                # aiohttp's loop of a connection made in this turn has not started, and fails if
                # it finds it closed. A timer runs after the callbacks already queued, that
                # loop's first step among them.
                self._loop.call_later(0, handler.close_if_waiting)

    def _every(self) -> float:
        # A stall is answered within a quarter of the timeout of its start, and no look is needed
        # more often than once a second.
        return max(1.0, self.body_timeout / 4)

    def _look(self) -> None:
        self._watch = None
        now = time.monotonic()
        for handler in self.connections:
            if not isinstance(handler, S3RequestHandler):
                continue
            # (A header section's timeout is logged as aiohttp logs a request it cannot parse.)
            if handler.stalled(now, self.body_timeout) == "body":
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
        server.max_connections = connection_cap()
        server.shed_reports = descriptors.ShedReports()
        descriptors.quiet_accept_failures()  # a server out of them says so in a line, not thousands
        server.request_handler = direct_handler(self.app)
        return server
