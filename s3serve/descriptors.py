"""The server's file descriptors: how many connections it keeps (connection_cap), and whether
one that sent no request has bytes of one waiting (unread)."""

from __future__ import annotations

import asyncio
import struct

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
