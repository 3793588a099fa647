"""The server's file descriptors: how many connections it keeps (connection_cap), whether one
that sent no request has bytes of one waiting (unread), whether one shed can be aborted
(tls_with_nothing_to_send), and asyncio's report of a failed accept kept to a line every few
seconds (quiet_accept_failures).

Python's selector loop accepts up to the listen backlog (128) connections at each readiness of
the listening socket, and on EMFILE it logs an ERROR with a traceback, and schedules a retry a
second later, for each of them; every retry does the same. A server that ran out of descriptors
under load logged thousands of tracebacks a second (27 MB in 20 s, measured) while new clients
waited, which tells nothing more than the first one did."""

from __future__ import annotations

import asyncio
import logging
import struct
import time

# How long a connection may take to send its first request before it is closed ahead of idle
# keep-alive ones, to make room for others (framing.S3RequestHandler.shed_order).
FRESH = 1.0

# File descriptors a server keeps for other things than its connections, at least: the
# connections asyncio has accepted and not yet made (up to aiohttp's listen backlog, 128, at
# each turn of the loop: a burst of clients has two or three such batches in flight, measured),
# and the files and upstream connections of the requests in flight.
_FD_RESERVE = 512
_MIN_CONNECTIONS = 16


def unread(transport: asyncio.BaseTransport | None) -> bool:
    """Whether bytes the client sent wait in the connection's socket, not yet read: a request
    on its way, on a connection that looks silent as the loop has not got to it."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    try:
        import fcntl
        import termios

        waiting = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")  # type: ignore[union-attr]
    except (ImportError, AttributeError, OSError):
        return False
    return bool(struct.unpack("i", waiting)[0])


def tls_with_nothing_to_send(transport: asyncio.BaseTransport | None) -> bool:
    """Whether a connection is TLS and has sent its client everything: then it can be aborted.
    A TLS connection closed as usual waits for the client's close_notify (asyncio's
    ssl_shutdown_timeout, 30 s) with its descriptor held, no longer counted among connections:
    clients that finished a handshake and went silent ran the server out of descriptors all the
    same, the ones shed to make room lingering."""
    ssl_protocol = getattr(transport, "_ssl_protocol", None)
    raw = getattr(ssl_protocol, "_transport", None)
    if transport is None or not isinstance(raw, asyncio.WriteTransport):
        return False
    assert isinstance(transport, asyncio.WriteTransport)
    return transport.get_write_buffer_size() == 0 and raw.get_write_buffer_size() == 0


def connection_cap() -> int | None:
    """How many connections a server keeps open: its file descriptor limit less a quarter (at
    least _FD_RESERVE). None where the limit is not known."""
    try:
        import resource
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(soft - max(soft // 4, _FD_RESERVE), _MIN_CONNECTIONS)


# How asyncio's message begins (selector_events._accept_connection).
_ACCEPT_FAILED = "socket.accept() out of system resource"
# At most one report this often.
REPORT_EVERY = 10.0


class AcceptFailures(logging.Filter):
    """The first failed accept as one WARNING line, the next ones counted and dropped until
    REPORT_EVERY seconds later."""

    def __init__(self) -> None:
        super().__init__()
        self._reported = -REPORT_EVERY
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_ACCEPT_FAILED):
            return True
        now = time.monotonic()
        if now - self._reported < REPORT_EVERY:
            self._dropped += 1
            return False
        exc = record.exc_info[1] if record.exc_info else None
        since = f" ({self._dropped} more since the last report)" if self._dropped else ""
        record.msg = f"cannot accept connections, new clients wait: {exc}{since}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._reported, self._dropped = now, 0
        return True


class ShedReports:
    """The server's report of connections closed to make room: a line at most every REPORT_EVERY
    seconds. Each connection past the cap closes a sixteenth of it, and a flood of connections
    (cheap to make) wrote a line for every few of them, hundreds a second."""

    def __init__(self) -> None:
        self._reported = -REPORT_EVERY
        self._closed = 0

    def closed(self, live: int, cap: int, closed: int) -> None:
        self._closed += closed
        now = time.monotonic()
        if now - self._reported >= REPORT_EVERY:
            logging.getLogger("s3serve").warning(
                "%d connections open, over the %d this server keeps: closed %d idle one(s)%s",
                live, cap, self._closed, "" if self._reported < 0 else f" in {now - self._reported:.0f} s",
            )
            self._reported, self._closed = now, 0


def quiet_accept_failures() -> None:
    """Filter asyncio's logger (once per process)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptFailures) for f in logger.filters):
        logger.addFilter(AcceptFailures())
