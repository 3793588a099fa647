"""Ceiling: a bare aiohttp app with no S3 logic, answering a fixed 4 KiB body.

It shows what aiohttp itself costs per request on this machine, so s3serve's small-object numbers
can be read as "fraction of what the framework allows". PUT reads and drops the body, so large
PUTs measure aiohttp's request-body throughput.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket

from aiohttp import web

BODY = bytes(range(256)) * 16  # 4 KiB


async def handle(request: web.Request) -> web.StreamResponse:
    if request.method in ("PUT", "POST"):
        async for _ in request.content.iter_any():
            pass
        return web.Response(status=200, headers={"ETag": '"0"'})
    if request.method == "DELETE":
        return web.Response(status=204)
    if request.method == "HEAD":
        return web.Response(status=200, headers={"Content-Length": str(len(BODY)), "ETag": '"0"'})
    return web.Response(body=BODY, content_type="application/octet-stream", headers={"ETag": '"0"'})


def _listen(port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes, each with its own SO_REUSEPORT socket (as s3serve)")
    args = parser.parse_args()
    # Several workers spread connections the way s3serve's --workers does: one listening socket
    # per process on the same port (SO_REUSEPORT), the kernel picking a socket per connection.
    sock = _listen(args.port, args.workers > 1)
    children: list[int] = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            children.clear()
            sock.close()
            sock = _listen(args.port, True)
            break
        children.append(pid)
    app = web.Application(client_max_size=1 << 62)
    app.router.add_route("*", "/{tail:.*}", handle)
    try:
        web.run_app(app, sock=sock, print=None, access_log=None)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


if __name__ == "__main__":
    main()
