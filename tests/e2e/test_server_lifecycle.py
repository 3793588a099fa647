"""Server-level behaviour: virtual-host addressing, clean shutdown with uploads in flight, start-up banner."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from s3serve.tls import self_signed
from tests.conftest import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    FixedPayloadAuth,
    Server,
    free_port,
    start_server,
    stop_server,
    wait_ready,
)


@pytest.fixture
def resolve_localhost_subdomains(monkeypatch: pytest.MonkeyPatch) -> None:
    """*.localhost is loopback by RFC 6761, but this machine's resolver does not know that."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_virtual_host_style(tmp_path, resolve_localhost_subdomains) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--domain", "localhost")
    try:
        port = urlsplit(srv.endpoint).port
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://localhost:{port}",
            aws_access_key_id=srv.access_key,
            aws_secret_access_key=srv.secret_key,
            region_name=REGION,
            config=Config(s3={"addressing_style": "virtual"}),
        )
        hosts: list[str] = []
        s3.meta.events.register("before-send.s3.*", lambda request, **kw: hosts.append(urlsplit(request.url).netloc))
        s3.create_bucket(Bucket="vhost")
        s3.put_object(Bucket="vhost", Key="dir/k ey", Body=b"virtual")
        assert s3.get_object(Bucket="vhost", Key="dir/k ey")["Body"].read() == b"virtual"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="vhost")["Contents"]] == ["dir/k ey"]
        assert f"vhost.localhost:{port}" in hosts
        # SigV2 signs the bucket into the canonical resource for virtual-host requests.
        v2 = boto3.client(
            "s3",
            endpoint_url=f"http://localhost:{port}",
            aws_access_key_id=srv.access_key,
            aws_secret_access_key=srv.secret_key,
            region_name=REGION,
            config=Config(signature_version="s3", s3={"addressing_style": "virtual"}),
        )
        assert v2.get_object(Bucket="vhost", Key="dir/k ey")["Body"].read() == b"virtual"
        # Path-style keeps working on the same server.
        assert srv.client().get_object(Bucket="vhost", Key="dir/k ey")["Body"].read() == b"virtual"
        assert (root / "vhost" / "dir" / "k ey").read_bytes() == b"virtual"
    finally:
        stop_server(srv)


def _start_upload(srv, bucket: str, key: str, length: int) -> socket.socket:  # type: ignore[no-untyped-def]
    request = AWSRequest(
        method="PUT",
        url=f"{srv.endpoint}/{bucket}/{key}",
        headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(length)},
    )
    FixedPayloadAuth(Credentials(srv.access_key, srv.secret_key), "s3", REGION).add_auth(request)
    parts = urlsplit(srv.endpoint)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = f"PUT /{bucket}/{key} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
    sock.sendall(head.encode())
    return sock


def test_sigterm_lets_an_inflight_upload_finish(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root)
    try:
        srv.client().create_bucket(Bucket="bkt")
        with _start_upload(srv, "bkt", "inflight", 200_000) as sock:
            sock.sendall(b"a" * 100_000)
            time.sleep(0.2)
            assert srv.process is not None
            srv.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(b"b" * 100_000)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        srv.process.wait(timeout=20)
    finally:
        stop_server(srv)
    assert (root / "bkt" / "inflight").read_bytes() == b"a" * 100_000 + b"b" * 100_000
    again = start_server(root)
    try:
        assert again.client().get_object(Bucket="bkt", Key="inflight")["ContentLength"] == 200_000
    finally:
        stop_server(again)


def test_sigterm_discards_an_abandoned_upload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root)
    try:
        srv.client().create_bucket(Bucket="bkt")
        srv.client().put_object(Bucket="bkt", Key="kept", Body=b"old")
        with _start_upload(srv, "bkt", "kept", 200_000) as sock:
            sock.sendall(b"a" * 50_000)
            time.sleep(0.2)
            assert srv.process is not None
            srv.process.send_signal(signal.SIGTERM)
            # Leaving the block closes the socket: the client gives up, the body never completes.
        srv.process.wait(timeout=20)
    finally:
        stop_server(srv)
    # The old object is intact, and no temp file is left behind.
    assert (root / "bkt" / "kept").read_bytes() == b"old"
    assert [p.name for p in (root / ".s3serve" / "tmp").iterdir()] == []


def test_banner_prints_endpoint_and_credentials(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root)
    stop_server(srv)
    assert srv.log_path is not None
    text = srv.log_path.read_text()
    assert f"Endpoint:   {srv.endpoint}" in text
    assert f"Access key: {srv.access_key}" in text and f"Secret key: {srv.secret_key}" in text
    assert f"aws --endpoint-url {srv.endpoint} s3 ls" in text


def test_unparseable_requests_get_400_and_one_log_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A header line over aiohttp's limit or a broken request line is the client's fault: it gets
    a 400, and the log says so in a line, without the traceback aiohttp would print."""
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root)
    try:
        port = int(srv.endpoint.rsplit(":", 1)[1])
        for request in (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Name: x\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    finally:
        stop_server(srv)
    assert srv.log_path is not None
    text = srv.log_path.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text
    assert text.count("aiohttp.server INFO Error handling request from 127.0.0.1: 400") == 2, text


def test_https_with_a_given_certificate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--tls-cert/--tls-key: the server loads the given pair (cryptography is only for self-signed)."""
    cert, key = self_signed(tmp_path / "pki", ["127.0.0.1", "localhost"])
    root = tmp_path / "root"
    root.mkdir()
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "s3serve", "serve", str(root), "--address", f"127.0.0.1:{port}",
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--tls-cert", str(cert), "--tls-key", str(key)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    srv = Server(f"https://127.0.0.1:{port}", ACCESS_KEY, SECRET_KEY, root, process, log_path)
    try:
        wait_ready(srv.endpoint, process)
        s3 = boto3.client("s3", endpoint_url=srv.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                          region_name=REGION, verify=str(cert))
        s3.create_bucket(Bucket="tls")
        s3.put_object(Bucket="tls", Key="k", Body=b"over https")
        assert s3.get_object(Bucket="tls", Key="k")["Body"].read() == b"over https"
        # The given pair is used as is: nothing is generated under ROOT.
        assert not (root / ".s3serve" / "tls").exists()
        assert f"Endpoint:   https://127.0.0.1:{port}" in log_path.read_text()
    finally:
        stop_server(srv)


def _listening_sockets(port: int) -> int:
    """LISTEN entries for 127.0.0.1:port in /proc/net/tcp (one per SO_REUSEPORT socket)."""
    local = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1] == local and line.split()[3] == "0A")


def _request_ids(endpoint: str, connections: int) -> list[str]:
    """One anonymous GET on each of ``connections`` connections opened at once; the x-amz-request-id
    of each answer (its first 8 characters name the worker process)."""
    parts = urlsplit(endpoint)
    socks = [socket.create_connection((parts.hostname, parts.port), timeout=10) for _ in range(connections)]
    ids = []
    try:
        for sock in socks:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        for sock in socks:
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            ids += [line.split(":", 1)[1].strip() for line in head.decode().split("\r\n") if line.lower().startswith("x-amz-request-id:")]
    finally:
        for sock in socks:
            sock.close()
    return ids


def test_workers_each_listen_and_share_the_connections(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--workers", "2")
    try:
        assert srv.process is not None
        port = urlsplit(srv.endpoint).port
        assert port is not None
        children = Path(f"/proc/{srv.process.pid}/task/{srv.process.pid}/children").read_text().split()
        assert len(children) == 1  # the first process serves too
        # A socket of its own per worker: the kernel spreads new connections over them.
        assert _listening_sockets(port) == 2
        ids = _request_ids(srv.endpoint, 40)
        assert len(ids) == 40
        # 40 connections all hashed to one of two sockets would be a 1 in 2**39 event.
        assert len({rid[:8] for rid in ids}) == 2
        # Both workers serve the same ROOT: an object written through one is read through the other.
        s3 = srv.client()
        s3.create_bucket(Bucket="shared")
        s3.put_object(Bucket="shared", Key="k", Body=b"one root")
        assert {s3.get_object(Bucket="shared", Key="k")["Body"].read() for _ in range(10)} == {b"one root"}
    finally:
        stop_server(srv)
    assert srv.process.returncode is not None
    # Stopping the first process stops (and reaps) the others.
    assert [child for child in children if Path(f"/proc/{child}").exists()] == []


def test_workers_stop_when_the_first_process_is_killed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--workers", "2")
    try:
        assert srv.process is not None
        children = Path(f"/proc/{srv.process.pid}/task/{srv.process.pid}/children").read_text().split()
        assert len(children) == 1
        srv.process.kill()  # SIGKILL: it cannot stop its workers itself
        srv.process.wait()
        deadline = time.monotonic() + 15
        while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # Gone, or a zombie waiting for init to reap it: no longer serving the port either way.
        status = Path(f"/proc/{children[0]}/status")
        assert not status.exists() or "zombie" in status.read_text()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", urlsplit(srv.endpoint).port or 0), timeout=2).close()
    finally:
        stop_server(srv)


def test_a_taken_port_fails_the_command_before_any_worker_starts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "s3serve", "serve", str(tmp_path / "root"), "--address", f"127.0.0.1:{port}", "--workers", "2"],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode != 0
    assert "Address already in use" in done.stderr


def test_large_gets_work_where_uvloop_is_installed(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """uvloop's loop has no sendfile (loop.sendfile raises NotImplementedError), so s3serve keeps
    asyncio's loop even when uvloop can be imported. The stub stands for an installed uvloop and
    stops the server if anything runs it."""
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "uvloop.py").write_text(
        "def run(*args, **kwargs):\n    raise SystemExit('s3serve ran on uvloop')\n"
        "def install():\n    raise SystemExit('s3serve installed uvloop')\n"
        "def new_event_loop():\n    raise SystemExit('s3serve made a uvloop loop')\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(stub), os.environ.get("PYTHONPATH")) if p))
    root = tmp_path / "root"
    root.mkdir()
    server = start_server(root)
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="uvloop-here")
        data = os.urandom(3 * 1024 * 1024)  # far above the small-body path: sent with sendfile
        s3.put_object(Bucket="uvloop-here", Key="big", Body=data)
        assert s3.get_object(Bucket="uvloop-here", Key="big")["Body"].read() == data
    finally:
        stop_server(server)
