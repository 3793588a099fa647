"""Shared fixtures: a real s3serve process on a free loopback port, and boto3 clients for it.

Set S3SERVE_TEST_ENDPOINT (with S3SERVE_TEST_ACCESS_KEY / S3SERVE_TEST_SECRET_KEY) to run the
end-to-end tests against another S3 implementation on loopback instead, to check a test's
expectation against it.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    endpoint: str
    access_key: str
    secret_key: str
    root: Path | None  # None for an external endpoint
    process: subprocess.Popen[bytes] | None = None

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


def start_server(root: Path, *extra: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Server:
    port = free_port()
    cmd = [
        sys.executable, "-m", "s3serve", "serve", str(root),
        "--address", f"127.0.0.1:{port}",
        "--access-key", access_key, "--secret-key", secret_key,
        *extra,
    ]
    log = open(root.parent / f"server-{port}.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    scheme = "https" if "--tls-self-signed" in extra else "http"
    endpoint = f"{scheme}://127.0.0.1:{port}"
    wait_ready(endpoint, process)
    return Server(endpoint, access_key, secret_key, root, process)


def stop_server(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


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
    try:
        for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    except Exception:  # noqa: BLE001 - multipart may not be implemented by the endpoint
        pass
    s3.delete_bucket(Bucket=name)
