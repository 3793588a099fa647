"""https with --tls-self-signed: boto3 verifies the generated certificate, and over https it sends
aws-chunked bodies with checksum trailers (STREAMING-UNSIGNED-PAYLOAD-TRAILER)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import zlib
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.conftest import start_server, stop_server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("tls") / "root"
    root.mkdir()
    srv = start_server(root, "--tls-self-signed", "--no-fsync")
    yield srv
    stop_server(srv)


def _client(srv, **config):  # type: ignore[no-untyped-def]
    assert srv.root is not None
    return boto3.client(
        "s3",
        endpoint_url=srv.endpoint,
        aws_access_key_id=srv.access_key,
        aws_secret_access_key=srv.secret_key,
        region_name="us-east-1",
        verify=str(srv.root / ".s3serve" / "tls" / "cert.pem"),
        config=Config(**config) if config else None,
    )


@pytest.mark.parametrize(
    "config",
    [{}, {"request_checksum_calculation": "when_required"}, {"signature_version": "s3"}],
    ids=["default", "when_required", "sigv2"],
)
def test_put_get_over_https(tls_server, config) -> None:  # type: ignore[no-untyped-def]
    s3 = _client(tls_server, **config)
    bucket = "tls-" + hashlib.md5(repr(config).encode()).hexdigest()[:10]
    s3.create_bucket(Bucket=bucket)
    sent: list[dict[str, str]] = []
    s3.meta.events.register("before-send.s3.PutObject", lambda request, **kw: sent.append(dict(request.headers)))
    body = os.urandom(200_000)
    put = s3.put_object(Bucket=bucket, Key="k", Body=body, Metadata={"m": "1"})
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in sent[-1].items()}
    if not config:
        # What this test is for: boto3 really sent an aws-chunked body with a CRC32 trailer.
        assert "aws-chunked" in headers.get("content-encoding", "")
        assert headers.get("x-amz-trailer") == "x-amz-checksum-crc32"
        assert headers.get("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    if config.get("request_checksum_calculation") != "when_required":
        expected = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        assert put["ChecksumCRC32"] == expected
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["Metadata"] == {"m": "1"}
    assert "ContentEncoding" not in got
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)


def test_certificate_is_reused_across_restarts(tls_server) -> None:  # type: ignore[no-untyped-def]
    assert tls_server.root is not None
    cert = (tls_server.root / ".s3serve" / "tls" / "cert.pem").read_bytes()
    again = start_server(tls_server.root, "--tls-self-signed")
    try:
        assert (tls_server.root / ".s3serve" / "tls" / "cert.pem").read_bytes() == cert
        assert _client(again).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        stop_server(again)


def test_virtual_host_style_over_https_with_the_self_signed_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client resolves the domain and its buckets' names to the loopback address, as a
    # hosts file or *.localhost resolution would; the certificate must cover <bucket>.DOMAIN.
    resolve = socket.getaddrinfo

    def loopback(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        return resolve("127.0.0.1" if str(host).endswith("s3.test") else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback)
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--tls-self-signed", "--no-fsync", "--domain", "s3.test")
    try:
        port = srv.endpoint.rsplit(":", 1)[1]
        s3 = boto3.client(
            "s3",
            endpoint_url=f"https://s3.test:{port}",
            aws_access_key_id=srv.access_key,
            aws_secret_access_key=srv.secret_key,
            region_name="us-east-1",
            verify=str(root / ".s3serve" / "tls" / "cert.pem"),
            config=Config(s3={"addressing_style": "virtual"}),
        )
        sent: list[str] = []
        s3.meta.events.register("before-send.s3.*", lambda request, **kw: sent.append(request.url))
        s3.create_bucket(Bucket="photos")
        s3.put_object(Bucket="photos", Key="k", Body=b"over https, by host name")
        assert s3.get_object(Bucket="photos", Key="k")["Body"].read() == b"over https, by host name"
        assert sent[-1].startswith(f"https://photos.s3.test:{port}/")
        assert (root / "photos" / "k").read_bytes() == b"over https, by host name"
    finally:
        stop_server(srv)
