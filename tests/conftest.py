"""Shared fixtures: a real s3serve process on a free loopback port, and boto3 clients for it.

Set S3SERVE_TEST_ENDPOINT (with S3SERVE_TEST_ACCESS_KEY / S3SERVE_TEST_SECRET_KEY) to run the
end-to-end tests against another S3 implementation on loopback instead, to check a test's
expectation against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


async def until(check: Callable[[], bool], what: str = "the condition", timeout: float = 30.0) -> None:
    """Wait for what background work (a task, a thread, a replica published after the answer)
    does: generous, for a slow, loaded machine; only a failing check waits that long."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, object] | None = None) -> urllib3.BaseHTTPResponse:
    """A raw HTTP request (for shapes boto3 will not send), TLS unverified for the self-signed server."""
    pool = urllib3.PoolManager(cert_reqs="CERT_NONE")
    return pool.request(method, url, body=body, headers=headers, redirect=False, retries=False)  # type: ignore[arg-type]


def object_absent(s3, bucket: str, key: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether HEAD answers 404 for ``key`` (an upload that must have stored nothing)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return bool(exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404)
    return False


class FixedPayloadAuth(S3SigV4Auth):
    """botocore's S3 SigV4 signer, but signing the x-amz-content-sha256 the test chose (a wrong
    hash, UNSIGNED-PAYLOAD, STREAMING-...) instead of hashing the body itself."""

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        chosen = request.headers["x-amz-content-sha256"]
        super()._modify_request_before_signing(request)
        del request.headers["X-Amz-Content-SHA256"]
        request.headers["X-Amz-Content-SHA256"] = chosen


def signed(
    server: Server,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    payload_hash: str | None = None,
) -> urllib3.BaseHTTPResponse:
    """Send a request signed with botocore's SigV4 signer, with the path exactly as given (raw)."""
    import hashlib

    all_headers = dict(headers or {})
    all_headers.setdefault("x-amz-content-sha256", payload_hash or hashlib.sha256(body).hexdigest())
    request = AWSRequest(method=method, url=server.endpoint + path, data=body, headers=all_headers)
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    # Non-ASCII header values go out as UTF-8 bytes, as S3 clients that allow them send them.
    sent = {k: v.encode() if isinstance(v, str) and not v.isascii() else v for k, v in request.headers.items()}
    pool = urllib3.PoolManager(cert_reqs="CERT_NONE")
    # urllib3 would normalise '..' segments in a URL; send the request target as it is.
    conn = pool.connection_from_url(server.endpoint)
    return conn.urlopen(method, path, body=body, headers=sent, redirect=False, retries=False, assert_same_host=False)


@dataclass
class Server:
    endpoint: str
    access_key: str
    secret_key: str
    root: Path | None  # None for an external endpoint
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def client(self, **config: object) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=Config(**config) if config else None,  # type: ignore[arg-type]
        )


def wait_ready(endpoint: str, process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"s3serve exited with {process.returncode}")
        try:
            # The self-signed certificate is checked by the tests that use it, not here.
            context = ssl._create_unverified_context() if endpoint.startswith("https") else None
            urllib.request.urlopen(endpoint + "/", timeout=1, context=context)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"s3serve did not answer on {endpoint}")


def start_server(
    root: Path, *extra: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, patch: str | None = None
) -> Server:
    """``patch``: Python code the server's process runs before it starts serving, which replaces
    a step of the storage layer (to kill or slow the server at one exact moment of a request)."""
    port = free_port()
    launch = ["-m", "s3serve"] if patch is None else ["-c", f"{patch}\nfrom s3serve.cli import main\nmain()\n"]
    cmd = [
        sys.executable, *launch, "serve", str(root),
        "--address", f"127.0.0.1:{port}",
        "--access-key", access_key, "--secret-key", secret_key,
        *extra,
    ]
    log_path = root.parent / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    scheme = "https" if "--tls-self-signed" in extra else "http"
    endpoint = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_ready(endpoint, process)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{log_path.read_text()}") from None
    return Server(endpoint, access_key, secret_key, root, process, log_path)


def stop_server(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextlib.contextmanager
def https_server(root: Path, *args: str, patch: str | None = None) -> Iterator[tuple[Server, Any]]:
    """A server of its own over https (--tls-self-signed) on ``root``, and a boto3 client that
    trusts its certificate (``patch``: as start_server's)."""
    root.mkdir(exist_ok=True)
    srv = start_server(root, "--tls-self-signed", "--no-fsync", *args, patch=patch)
    try:
        s3 = boto3.client(
            "s3", endpoint_url=srv.endpoint, aws_access_key_id=srv.access_key, aws_secret_access_key=srv.secret_key,
            region_name=REGION, verify=str(root / ".s3serve" / "tls" / "cert.pem"),
        )  # fmt: skip
        yield srv, s3
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    external = os.environ.get("S3SERVE_TEST_ENDPOINT")
    if external:
        yield Server(
            external,
            os.environ.get("S3SERVE_TEST_ACCESS_KEY", ACCESS_KEY),
            os.environ.get("S3SERVE_TEST_SECRET_KEY", SECRET_KEY),
            None,
        )
        return
    root = tmp_path_factory.mktemp("server") / "root"
    root.mkdir()
    srv = start_server(root, "--min-part-size", "5MiB", "--no-fsync")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def s3(server: Server):  # type: ignore[no-untyped-def]
    """boto3 with its default settings (CRC32 checksums on uploads)."""
    return server.client()


@pytest.fixture(scope="session")
def s3_when_required(server: Server):  # type: ignore[no-untyped-def]
    return server.client(request_checksum_calculation="when_required", response_checksum_validation="when_required")


@pytest.fixture
def bucket(s3) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield name
    # Empty and remove it, so every test starts from nothing.
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    s3.delete_bucket(Bucket=name)
