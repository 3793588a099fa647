"""https with --tls-self-signed: boto3 verifies the generated certificate, and over https it sends
aws-chunked bodies with checksum trailers (STREAMING-UNSIGNED-PAYLOAD-TRAILER)."""

from __future__ import annotations

import base64
import contextlib
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


def _is_ca(pem: bytes) -> bool:
    from cryptography import x509

    return bool(x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.BasicConstraints).value.ca)


def test_certificate_is_a_server_certificate_not_a_ca(tls_server) -> None:  # type: ignore[no-untyped-def]
    # rustls (Rust's object_store: polars, delta-rs) refuses a CA certificate as a server's own
    # (CaUsedAsEndEntity), even when it is the very root the client was given.
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    assert tls_server.root is not None
    cert = x509.load_pem_x509_certificate((tls_server.root / ".s3serve" / "tls" / "cert.pem").read_bytes())
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.digital_signature, usage.key_cert_sign) == (True, False)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_a_ca_certificate_left_by_an_older_server_is_replaced(tmp_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    tls = tmp_path / "root" / ".s3serve" / "tls"
    tls.mkdir(parents=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3serve self-signed")])
    now = datetime.datetime.now(datetime.UTC)
    old = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tls / "cert.pem").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    (tls / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    srv = start_server(tmp_path / "root", "--tls-self-signed", "--no-fsync")
    try:
        pem = (tls / "cert.pem").read_bytes()
        assert pem != old.public_bytes(serialization.Encoding.PEM)
        assert not _is_ca(pem)
        assert _client(srv).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        stop_server(srv)


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


def test_a_client_gone_mid_body_of_a_tls_get_leaves_no_traceback(tls_server) -> None:  # type: ignore[no-untyped-def]
    """Over TLS asyncio's sendfile fallback failed when the connection went away under it: an
    AttributeError when it was lost (this test, dropped connections), a RuntimeError in
    eof_received and a warning per write when a cache closed its upstream's GET mid-body (the
    server-log check of `conformance.run --cache` saw those). A client gone is no internal error."""
    import ssl
    import time
    from urllib.parse import urlsplit

    s3 = _client(tls_server)
    s3.create_bucket(Bucket="tls-drop")
    s3.put_object(Bucket="tls-drop", Key="big", Body=os.urandom(32 * 1024 * 1024))
    url = urlsplit(s3.generate_presigned_url("get_object", Params={"Bucket": "tls-drop", "Key": "big"}))
    context = ssl.create_default_context(cafile=str(tls_server.root / ".s3serve" / "tls" / "cert.pem"))
    before = tls_server.log_path.read_text()
    for graceful in (False, True, False, True):
        with socket.create_connection((url.hostname, url.port)) as raw:
            with context.wrap_socket(raw, server_hostname=url.hostname) as tls:
                tls.sendall(f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode())
                assert tls.recv(65536).startswith(b"HTTP/1.1 200")
                time.sleep(0.2)  # the server is mid-body, its socket buffers full
                if graceful:  # a TLS close_notify and a FIN, as an HTTP client closing its pool
                    tls.settimeout(1)
                    with contextlib.suppress(OSError, ssl.SSLError):
                        tls.unwrap()
    assert s3.head_object(Bucket="tls-drop", Key="big")["ContentLength"] == 32 * 1024 * 1024  # still serving
    time.sleep(0.5)
    added = tls_server.log_path.read_text()[len(before):]
    assert "Traceback" not in added and "internal error" not in added and "SSL connection is closed" not in added, added
