"""PostObject with two users on one in-process app (the real app and DiskBackend): a form signed
by one user cannot write into another user's bucket, and the refusal leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import boto3
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from s3serve.app import create_app
from s3serve.config import Config, User
from tests.conftest import FixedPayloadAuth

ALICE = User("alice", "alice-secret")
BOB = User("bob", "bob-secret")


async def signed(client: TestClient, user: User, method: str, path: str) -> int:
    headers = {"x-amz-content-sha256": hashlib.sha256(b"").hexdigest()}
    request = AWSRequest(method=method, url=f"http://{client.host}:{client.port}{path}", data=b"", headers=headers)
    FixedPayloadAuth(Credentials(user.access_key, user.secret_key), "s3", "us-east-1").add_auth(request)
    response = await client.request(method, path, headers=dict(request.headers.items()), skip_auto_headers={"Content-Type"})
    await response.read()
    return response.status


async def post_form(client: TestClient, user: User, bucket: str, key: str, data: bytes) -> tuple[int, bytes]:
    signer = boto3.client(
        "s3",
        endpoint_url=f"http://{client.host}:{client.port}",
        aws_access_key_id=user.access_key,
        aws_secret_access_key=user.secret_key,
        region_name="us-east-1",
        config=BotoConfig(signature_version="s3v4"),
    )
    form = signer.generate_presigned_post(bucket, key)
    body = FormData(quote_fields=False)
    for name, value in form["fields"].items():
        body.add_field(name, value)
    body.add_field("file", io.BytesIO(data), filename="f.bin", content_type="application/octet-stream")
    response = await client.post(f"/{bucket}", data=body)
    return response.status, await response.read()


async def test_form_for_another_users_bucket_is_refused(aiohttp_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(Config(root=tmp_path, users=[ALICE, BOB], fsync=False)))
    assert await signed(client, ALICE, "PUT", "/alices") == 200
    status, body = await post_form(client, BOB, "alices", "from-bob", b"bob's bytes")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    assert await signed(client, ALICE, "HEAD", "/alices/from-bob") == 404
    # The owner's own form goes through.
    status, body = await post_form(client, ALICE, "alices", "from-alice", b"alice's bytes")
    assert status == 204, body
    assert await signed(client, ALICE, "HEAD", "/alices/from-alice") == 200
