"""Ceiling: a bare aiohttp app with no S3 logic, answering a fixed 4 KiB body.

It shows what aiohttp itself costs per request on this machine, so s3serve's small-object numbers
can be read as "fraction of what the framework allows". PUT reads and drops the body, so large
PUTs measure aiohttp's request-body throughput.
"""

from __future__ import annotations

import argparse

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=1 << 62)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
