"""Connections past the server's file descriptors, against a live server with a low limit: idle
connections (clients that connect and send nothing, keep-alive pools) must not lock new clients
out, and a request in progress is never the one dropped to make room."""

from __future__ import annotations

import resource
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.conftest import REGION, FixedPayloadAuth, Server, https_server, start_server, stop_server
from tests.e2e.conftest import until

# The server's descriptor limit: the `ulimit -n` most shells give. The server raises its soft
# limit only up to the hard one, so both are set.
LIMIT = 256
LOW_LIMIT = f"import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, {LIMIT}))"
# Idle connections opened: well over the limit.
FLOOD = 2 * LIMIT
PROMPT = 5.0
# A soft limit of LIMIT under a hard one that allows more: what most shells give.
RAISABLE = f"import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, {8 * LIMIT}))"


@pytest.fixture(autouse=True)
def enough_files() -> None:
    """This process's own limit, raised to hold the connections it opens."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FLOOD + 256
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest.fixture
def low_limit_server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--no-fsync", patch=LOW_LIMIT)
    yield srv
    stop_server(srv)


def _connect(server: Server) -> socket.socket:
    parts = urlsplit(server.endpoint)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=PROMPT)


def _closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _put_head(server: Server, key: str, length: int) -> bytes:
    headers = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(length)}
    request = AWSRequest(method="PUT", url=f"{server.endpoint}/{key}", headers=headers)
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    lines = [f"PUT /{key} HTTP/1.1", f"Host: {urlsplit(server.endpoint).netloc}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_idle_connections_past_the_descriptor_limit_do_not_lock_out_new_clients(
    low_limit_server: Server,
) -> None:
    server = low_limit_server
    s3: Any = server.client(connect_timeout=PROMPT, read_timeout=PROMPT, retries={"max_attempts": 0})
    s3.create_bucket(Bucket="conns")
    s3.put_object(Bucket="conns", Key="before", Body=b"before")
    # An upload in progress when the flood comes: its connection is older than all of them, and
    # must not be the one closed.
    upload = _connect(server)
    upload.sendall(_put_head(server, "conns/slow", 10) + b"01234")
    idle: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            idle.append(_connect(server))
        # Every connection the server accepted is one of its descriptors: without a bound on them
        # it stopped accepting, and this request waited in the listen queue.
        assert s3.get_object(Bucket="conns", Key="before")["Body"].read() == b"before"
        s3.put_object(Bucket="conns", Key="after", Body=b"after")
        # The room was made by closing the idle connections that came first.
        until(lambda: _closed_by_server(idle[0]))
        upload.sendall(b"56789")
        assert upload.recv(4096).startswith(b"HTTP/1.1 200 ")
        assert s3.get_object(Bucket="conns", Key="slow")["Body"].read() == b"0123456789"
        assert s3.get_object(Bucket="conns", Key="after")["Body"].read() == b"after"
    finally:
        upload.close()
        for sock in idle:
            sock.close()
    # (asyncio's accept may still fail for a moment in a burst, and tries again a second later.)
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert "exception was never retrieved" not in log
    # Closing connections to make room is reported in a line, not one every few connections.
    assert log.count("this server keeps") == 1


def test_a_server_raises_its_soft_file_limit_to_keep_more_connections(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    server = start_server(root, "--no-fsync", patch=RAISABLE)
    idle: list[socket.socket] = []
    try:
        s3: Any = server.client(connect_timeout=PROMPT, read_timeout=PROMPT, retries={"max_attempts": 0})
        s3.create_bucket(Bucket="conns")
        for _ in range(FLOOD):
            idle.append(_connect(server))
        s3.put_object(Bucket="conns", Key="after", Body=b"after")
        # With the soft limit as given, the first of them made room for the others.
        assert not any(_closed_by_server(sock) for sock in idle)
        assert s3.get_object(Bucket="conns", Key="after")["Body"].read() == b"after"
    finally:
        for sock in idle:
            sock.close()
        stop_server(server)


def test_connections_past_the_cap_all_busy_are_served(low_limit_server: Server) -> None:
    """Past the cap with no idle connection to close, a new one is served all the same while
    descriptors last: none is dropped, neither the new nor one in the middle of a request."""
    server = low_limit_server
    s3: Any = server.client(connect_timeout=PROMPT, read_timeout=PROMPT, retries={"max_attempts": 0})
    s3.create_bucket(Bucket="busy")
    uploads: list[socket.socket] = []
    try:
        for n in range(LIMIT // 8):  # over the cap of 16, well under LIMIT
            uploads.append(_connect(server))
            uploads[-1].sendall(_put_head(server, f"busy/{n}", 10) + b"01234")
        # (A new client: the idle connection of s3's pool may have been closed to make room.)
        fresh: Any = server.client(connect_timeout=PROMPT, read_timeout=PROMPT, retries={"max_attempts": 0})
        fresh.put_object(Bucket="busy", Key="new", Body=b"new")
        for upload in uploads:
            upload.sendall(b"56789")
            assert upload.recv(4096).startswith(b"HTTP/1.1 200 ")
        for n in range(len(uploads)):
            assert s3.get_object(Bucket="busy", Key=str(n))["Body"].read() == b"0123456789"
        assert s3.get_object(Bucket="busy", Key="new")["Body"].read() == b"new"
    finally:
        for upload in uploads:
            upload.close()
    assert server.log_path is not None and "Traceback" not in server.log_path.read_text()


def test_a_server_out_of_descriptors_says_so_in_a_line(low_limit_server: Server) -> None:
    """Uploads in progress hold every descriptor; clients that keep connecting meanwhile wait,
    and asyncio's failed accepts are one line, not a traceback for each of a hundred retries a
    second."""
    server = low_limit_server
    s3: Any = server.client(connect_timeout=PROMPT, read_timeout=PROMPT, retries={"max_attempts": 0})
    s3.create_bucket(Bucket="full")
    busy: list[socket.socket] = []
    try:
        for n in range(LIMIT):
            busy.append(_connect(server))
            busy[-1].sendall(_put_head(server, f"full/{n}", 10) + b"01234")
        assert server.log_path is not None
        until(lambda: _accept_failed(server))
        waiting = [socket.create_connection(_address(server), timeout=PROMPT) for _ in range(32)]
        for sock in waiting:
            sock.close()
    finally:
        for sock in busy:
            sock.close()
    # Once the uploads are gone, new clients are served again.
    until(lambda: _answers(s3))
    log = server.log_path.read_text()
    assert "Traceback" not in log and log.count("cannot accept connections") == 1


def _address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.endpoint)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _answers(s3: Any) -> bool:
    try:
        s3.head_bucket(Bucket="full")
    except Exception:
        return False
    return True


def _accept_failed(server: Server) -> bool:
    assert server.log_path is not None
    log = server.log_path.read_text()
    return "cannot accept connections" in log or "socket.accept() out of system resource" in log


def test_a_keep_alive_connection_sending_its_next_request_is_not_shed(low_limit_server: Server) -> None:
    """A client's keep-alive connection whose next request has begun to arrive is busy, not idle:
    connections coming past the cap meanwhile close others, and the request is answered."""
    server = low_limit_server
    s3: Any = server.client(connect_timeout=PROMPT, read_timeout=PROMPT, retries={"max_attempts": 0})
    s3.create_bucket(Bucket="keep")
    pool = _connect(server)
    young: list[socket.socket] = []
    try:
        pool.sendall(_put_head(server, "keep/first", 5) + b"first")
        assert pool.recv(4096).startswith(b"HTTP/1.1 200 ")
        # The next request's header section, in two packets (as a long one comes).
        head = _put_head(server, "keep/second", 6)
        pool.sendall(head[:40])
        for _ in range(LIMIT // 8):  # over the cap of 16
            young.append(_connect(server))
        pool.sendall(head[40:] + b"second")
        assert pool.recv(4096).startswith(b"HTTP/1.1 200 ")
        assert s3.get_object(Bucket="keep", Key="second")["Body"].read() == b"second"
    finally:
        pool.close()
        for sock in young:
            sock.close()


def test_tls_connections_shed_give_their_descriptors_back(tmp_path: Path) -> None:
    """TLS clients that finish their handshake and go silent: those closed to make room must not
    keep their descriptors while the server waits for a close_notify they never send (30 s), or
    the server runs out of them all the same and new clients wait."""
    root = tmp_path / "root"
    with https_server(root, patch=LOW_LIMIT) as (server, s3):
        s3.create_bucket(Bucket="tls")
        context = ssl.create_default_context(cafile=str(root / ".s3serve" / "tls" / "cert.pem"))
        silent: list[ssl.SSLSocket] = []
        try:
            for _ in range(LIMIT + LIMIT // 2):
                raw = socket.create_connection(_address(server), timeout=PROMPT)
                silent.append(context.wrap_socket(raw, server_hostname="127.0.0.1"))
            s3.head_bucket(Bucket="tls")
        finally:
            for sock in silent:
                sock.close()
        assert server.log_path is not None and not _accept_failed(server)
