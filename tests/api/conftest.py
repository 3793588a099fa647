"""In-process fixtures: the real app and DiskBackend on a temp dir behind aiohttp's test client,
and a sender that signs each request with botocore's SigV4 signer."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3serve.app import create_app
from s3serve.config import Config, User
from s3serve.storage.base import Backend
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
