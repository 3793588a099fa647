"""A small aiohttp app of a test's own on a free loopback port: the upstream a cache test needs
to misbehave as no real S3 server will (answers too long, silent, rewritten by a proxy)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from tests.conftest import Server, free_port

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LoopbackApp:
    """``answer`` serving every method and path on 127.0.0.1, on an event loop of its own in a
    daemon thread: the tests beside it are synchronous (boto3, server processes), and a test's
    own loop would stall the app whenever the test blocks. Also a context manager; a fake
    upstream subclasses it with an ``answer`` of its own."""

    def __init__(self, answer: Handler, *, client_max_size: int = 1 << 30) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._runner = self.run(self._start(answer, client_max_size))

    async def _start(self, answer: Handler, client_max_size: int) -> web.AppRunner:
        app = web.Application(client_max_size=client_max_size)
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """``work`` run on the app's loop (where what its handlers share must be made)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(10)

    @property
    def server(self) -> Server:
        """The app as the upstream start_cache takes: it checks no signature, so any keys do."""
        return Server(self.endpoint, "fake-access", "fake-secret", None)

    async def stopped(self) -> None:
        """Run on the loop once the server is down: to close what the handlers used."""

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self.stopped()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> LoopbackApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
