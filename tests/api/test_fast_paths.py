"""The small-object fast paths give the same answers as the general ones: HEAD as a plain
Response (Content-Length of the object, no body) on both sides of the one-pread size limit, GET
bodies compared byte for byte, and request ids unique."""

from __future__ import annotations

import hashlib
import os

import pytest
from aiohttp import ClientResponse

from s3serve.handlers.objects import SMALL_BODY
from tests.api.conftest import Send


@pytest.fixture
async def send(make_sender) -> Send:  # type: ignore[no-untyped-def]
    request = await make_sender()
    assert (await send_ok(request, "PUT", "/fast")).status == 200
    return request


async def send_ok(send: Send, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> ClientResponse:
    response = await send(method, path, body, headers)
    assert response.status in (200, 204, 206), await response.read()
    return response


@pytest.mark.parametrize("size", [0, 1, 4096, SMALL_BODY, SMALL_BODY + 1, 3 * SMALL_BODY + 17])
async def test_head_and_get_around_the_small_body_limit(send: Send, size: int) -> None:
    data = os.urandom(size)
    put = await send_ok(send, "PUT", "/fast/obj", data, {"Content-Type": "text/x-test", "x-amz-meta-colour": "red"})
    etag = put.headers["ETag"]
    head = await send_ok(send, "HEAD", "/fast/obj")
    assert head.headers["Content-Length"] == str(size)
    assert head.headers["ETag"] == etag == f'"{hashlib.md5(data).hexdigest()}"'
    assert head.headers["Content-Type"] == "text/x-test"
    assert head.headers["x-amz-meta-colour"] == "red"
    assert await head.read() == b""
    get = await send_ok(send, "GET", "/fast/obj")
    assert get.headers["Content-Length"] == str(size)
    assert get.headers["ETag"] == etag
    assert await get.read() == data


async def test_head_of_a_range_gives_the_range_length(send: Send) -> None:
    data = os.urandom(10_000)
    await send_ok(send, "PUT", "/fast/ranged", data)
    head = await send("HEAD", "/fast/ranged", b"", {"Range": "bytes=100-199"})
    assert head.status == 206
    assert head.headers["Content-Length"] == "100"
    assert head.headers["Content-Range"] == "bytes 100-199/10000"
    get = await send("GET", "/fast/ranged", b"", {"Range": "bytes=100-199"})
    assert get.status == 206
    assert await get.read() == data[100:200]


async def test_request_ids_are_unique(send: Send) -> None:
    await send_ok(send, "PUT", "/fast/id", b"x")
    ids = set()
    for _ in range(50):
        response = await send_ok(send, "HEAD", "/fast/id")
        ids.add(response.headers["x-amz-request-id"])
    assert len(ids) == 50
