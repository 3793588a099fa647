"""How long remote_http.Upstream waits for the upstream S3 to begin answering a request.

A request has a budget (remote_http.ANSWER_TIMEOUT, QUICK_TIMEOUT) over all its attempts, spent
while connecting and waiting for the status line and headers, and enforced as the deadline of an
``asyncio.timeout`` scope around each attempt. The time the request's body takes to go out is not
spent (a big upload to a slow upstream takes as long as it takes: only a stall of it fails it,
after the transfer timeout), nor a wait for a free connection of the pool (s3serve's own load,
not the upstream's); nor is reading the answer's body, which aiohttp's socket-read timeout
watches for stalls instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp

from .base import Body


class Budget:
    """The seconds a request may still wait for the upstream to begin answering; None: no bound
    but the session's socket timeouts, for each attempt."""

    def __init__(self, seconds: float | None) -> None:
        self.left = seconds

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0


class Attempt:
    """One attempt of a request, in an ``asyncio.timeout`` scope whose deadline is what is left
    of the budget while the attempt waits on the upstream; the budget stands still while the
    request body goes out (which has the transfer timeout to move each chunk instead) and while
    the attempt waits for a connection of the pool."""

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self._scope: asyncio.Timeout | None = None
        self._since: float | None = None  # when the budget began to be spent; None: it is not
        self.on_body = False  # the request body going out: a timeout now is its stall

    async def __aenter__(self) -> Attempt:
        scope = asyncio.timeout(None)
        await scope.__aenter__()
        self._scope = scope
        self.waiting()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.paused()
        scope, self._scope = self._scope, None
        assert scope is not None
        await scope.__aexit__(*exc_info)  # TimeoutError where the deadline passed

    def waiting(self) -> None:
        """On the upstream: the budget is spent from now."""
        if self._scope is None or self._since is not None:
            return  # over (a body's writer may outlive its attempt), or spending already
        self.on_body = False
        now = asyncio.get_running_loop().time()
        self._since = now
        left = self._budget.left
        self._reschedule(None if left is None else now + max(left, 0.0))

    def paused(self) -> None:
        """Not on the upstream: the budget stands still."""
        if self._scope is None:
            return
        if self._since is not None and self._budget.left is not None:
            self._budget.left -= asyncio.get_running_loop().time() - self._since
        self._since = None
        self._reschedule(None)

    def sending(self, stall: float) -> None:
        """The request body moving: the budget stands still, and the body has ``stall`` seconds
        to move on."""
        if self._scope is None:
            return
        self.paused()
        self.on_body = True
        self._reschedule(asyncio.get_running_loop().time() + stall)

    def _reschedule(self, deadline: float | None) -> None:
        if self._scope is not None and not self._scope.expired():  # an expired one is not moved
            self._scope.reschedule(deadline)


async def chunks(body: Body, attempt: Attempt, stall: float) -> AsyncIterator[bytes]:
    # Iterated by aiohttp once the request's headers are on their way, the next chunk asked for
    # once the last one is written and drained (an upstream that stops reading the body stops
    # that); the wait for the answer starts after the last chunk (an answer that comes early ends
    # the attempt all the same).
    attempt.sending(stall)
    async for chunk in body:
        yield chunk
        attempt.sending(stall)
    attempt.waiting()


async def _queued(_: aiohttp.ClientSession, trace: SimpleNamespace, __: object) -> None:
    # Every connection of the pool busy (long downloads): s3serve's own load, not the upstream's
    # slowness, and no reason to answer ServiceUnavailable.
    if isinstance(trace.trace_request_ctx, Attempt):
        trace.trace_request_ctx.paused()


async def _dequeued(_: aiohttp.ClientSession, trace: SimpleNamespace, __: object) -> None:
    if isinstance(trace.trace_request_ctx, Attempt):
        trace.trace_request_ctx.waiting()


def tracing() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_connection_queued_start.append(_queued)
    config.on_connection_queued_end.append(_dequeued)
    return config
