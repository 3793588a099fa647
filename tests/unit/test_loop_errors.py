"""The server's event-loop error handler: asyncio's double connection_lost (a CPython 3.11 bug
seen when a TLS peer resets a connection as it closes) is not logged as an error; every other
error still is."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from s3serve.cli import loop_errors


async def _closed_twice(handler: bool) -> None:
    """A real socket transport force-closed for a reset (its cleanup scheduled), then cleaned up
    at once the way _write_ready does when a protocol's resume_writing led to that reset: the
    scheduled cleanup then runs a second time."""
    loop = asyncio.get_running_loop()
    if handler:
        loop.set_exception_handler(loop_errors)
    ours, theirs = socket.socketpair()
    try:
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        transport._force_close(ConnectionResetError(104, "Connection reset by peer"))  # type: ignore[attr-defined]
        transport._call_connection_lost(None)  # type: ignore[attr-defined]
        for _ in range(3):
            await asyncio.sleep(0)
    finally:
        theirs.close()


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_asyncio_bug_reproduces_without_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        asyncio.run(_closed_twice(handler=False))
    assert any("_call_connection_lost" in r.getMessage() for r in _errors(caplog)), caplog.text


def test_double_close_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        asyncio.run(_closed_twice(handler=True))
    assert not _errors(caplog), caplog.text
    assert any("already closed connection" in r.getMessage() for r in caplog.records)


def test_other_errors_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(loop_errors)
        loop.call_soon(lambda: 1 / 0)
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(fail())
    assert any("ZeroDivisionError" in (r.exc_text or "") or r.exc_info for r in _errors(caplog)), caplog.text
