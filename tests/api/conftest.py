"""In-process fixtures: the real app and DiskBackend on a temp dir behind aiohttp's test client,
and a sender that signs each request with botocore's SigV4 signer."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3serve.app import create_app
from s3serve.config import Config, User
from s3serve.storage.base import Backend
from s3serve.storage.cache import CacheBackend
from s3serve.storage.disk import DiskBackend
from tests.conftest import FixedPayloadAuth

ACCESS, SECRET = "api-key", "api-secret"
USER = User(ACCESS, SECRET)

Send = Callable[..., Awaitable[ClientResponse]]


def signed_sender(client: TestClient) -> Send:
    async def request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> ClientResponse:
        all_headers = {"x-amz-content-sha256": hashlib.sha256(body).hexdigest(), **(headers or {})}
        signed = AWSRequest(method=method, url=f"http://{client.host}:{client.port}{path}", data=body, headers=all_headers)
        FixedPayloadAuth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(signed)
        return await client.request(
            method, path, data=body, headers=dict(signed.headers.items()), skip_auto_headers={"Content-Type"}
        )

    return request


@pytest.fixture
def make_sender(aiohttp_client, tmp_path: Path) -> Callable[[Backend | None], Awaitable[Send]]:  # type: ignore[no-untyped-def]
    """An app on tmp_path (with the given backend, or the default DiskBackend) and its sender."""

    async def make(backend: Backend | None = None) -> Send:
        config = Config(root=tmp_path, users=[USER], fsync=False)
        return signed_sender(await aiohttp_client(create_app(config, backend)))

    return make


Cached = tuple[Send, CacheBackend, Path, Path]


@pytest.fixture
def make_cached(make_sender, tmp_path: Path) -> Callable[..., Awaitable[Cached]]:  # type: ignore[no-untyped-def]
    async def make(
        *, upstream_type: type[DiskBackend] = DiskBackend, local_options: dict[str, Any] | None = None, **options: object
    ) -> Cached:
        local_root, upstream_root = tmp_path / "cache", tmp_path / "upstream"
        local = DiskBackend(local_root, default_owner=USER.user_id, fsync=False, **(local_options or {}))
        # Small parts: aiohttp's test client warns about bodies over 1 MiB given as bytes.
        upstream = upstream_type(upstream_root, default_owner=USER.user_id, fsync=False, min_part_size=100_000)
        cache = CacheBackend(local, upstream, **options)  # type: ignore[arg-type]
        send = await make_sender(cache)
        response = await send("PUT", "/bkt")
        assert response.status == 200, await response.read()
        return send, cache, local_root / "bkt", upstream_root / "bkt"

    return make


@pytest.fixture
async def cached(make_cached) -> Cached:  # type: ignore[no-untyped-def]
    return await make_cached()  # type: ignore[no-any-return]


