"""The upstream cache as operators run it: live processes on loopback (an s3serve cache with
--upstream in front of a second s3serve), under concurrent load, restarts, signals, outages and
bad configuration."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from s3serve.sigv4 import EMPTY_SHA256
from tests.conftest import FixedPayloadAuth, Server, start_server, stop_server
from tests.e2e.conftest import UP_ACCESS, UP_SECRET, running_cache, start_cache, until


def held(root: Path) -> int:
    """Bytes of object files in ROOT's buckets."""
    return sum(p.stat().st_size for b in root.iterdir() if not b.name.startswith(".") for p in b.rglob("*") if p.is_file())


def test_concurrent_writes_stay_under_the_cache_size(tmp_path: Path, upstream: Server) -> None:
    # Writes that land while a round runs must wake the next round (and count in its estimate),
    # or the cache stays over its limit until the next interval: here an hour.
    root = tmp_path / "cache"
    with running_cache(root, upstream, "--cache-size", "2MiB", "--cache-evict-interval", "1h") as srv:
        s3 = srv.client(max_pool_connections=16)
        s3.create_bucket(Bucket="concurrent")  # type: ignore[attr-defined]

        def put(i: int) -> None:
            s3.put_object(Bucket="concurrent", Key=f"k{i}", Body=os.urandom(200_000))  # type: ignore[attr-defined]

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(160)))
        until(lambda: held(root) <= 2 * 1024 * 1024, timeout=5)
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


def _log(srv: Server) -> str:
    assert srv.log_path is not None
    return srv.log_path.read_text()


def test_an_https_upstream_is_verified_with_its_ca_refused_without_it(tmp_path: Path) -> None:
    up_root = tmp_path / "up"
    up_root.mkdir()
    up = start_server(up_root, "--no-fsync", "--tls-self-signed", access_key=UP_ACCESS, secret_key=UP_SECRET)
    ca = up_root / ".s3serve" / "tls" / "cert.pem"
    caches = []
    try:
        for name, extra in (("with-ca", ["--upstream-ca", str(ca)]), ("no-verify", ["--upstream-no-verify"])):
            (tmp_path / name).mkdir()
            srv = start_cache(tmp_path / name, up, *extra)
            caches.append(srv)
            s3 = srv.client()
            s3.create_bucket(Bucket=f"tls-{name}")  # type: ignore[attr-defined]
            s3.put_object(Bucket=f"tls-{name}", Key="k", Body=b"over https")  # type: ignore[attr-defined]
            assert s3.get_object(Bucket=f"tls-{name}", Key="k")["Body"].read() == b"over https"  # type: ignore[attr-defined]
        (tmp_path / "untrusted").mkdir()
        srv = start_cache(tmp_path / "untrusted", up)
        caches.append(srv)
        s3 = srv.client(retries={"max_attempts": 1})
        for _ in range(2):
            with pytest.raises(s3.exceptions.ClientError) as refused:  # type: ignore[attr-defined]
                s3.create_bucket(Bucket="tls-untrusted")  # type: ignore[attr-defined]
            error = refused.value.response["Error"]
            assert error["Code"] == "ServiceUnavailable" and "certificate" in error["Message"], error
    finally:
        for srv in caches:
            stop_server(srv)
        stop_server(up)
    log = _log(caches[-1])
    assert "Traceback" not in log and "Traceback" not in _log(caches[0])
    # One line that says what is wrong and what to do, not one per request or retry.
    assert log.count("--upstream-ca") == 1 and "self-signed certificate" in log, log


def _raw_get(srv: Server, path: str, headers: dict[str, str]) -> socket.socket:
    """A signed GET sent on a raw socket with a small receive buffer, so that the test decides
    when the answer is read."""
    request = AWSRequest(method="GET", url=srv.endpoint + path, headers={"x-amz-content-sha256": EMPTY_SHA256, **headers})
    FixedPayloadAuth(Credentials(srv.access_key, srv.secret_key), "s3", "us-east-1").add_auth(request)
    host, port = srv.endpoint.split("//")[1].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(30)
    sock.connect((host, int(port)))
    head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    sock.sendall(head.encode() + b"\r\n")
    return sock


def _read_answer(sock: socket.socket, length: int) -> bytes:
    """The body of one answer of ``length`` bytes (shorter if the server closed early)."""
    received = bytearray()
    while True:
        head, sep, body = received.partition(b"\r\n\r\n")
        if sep and len(body) >= length:
            break
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        received += chunk
    assert head.startswith(b"HTTP/1.1 206"), bytes(head)
    return bytes(body)


def test_sigterm_lets_every_download_finish_to_its_last_byte(tmp_path: Path, upstream: Server) -> None:
    # Read-through answers are streamed: when a handler returns, a slow reader's last bytes (up
    # to 64 KiB) may still wait in the connection's write buffer. A shutdown that ended the event
    # loop then cut those downloads short. Which answer sizes end with bytes in that buffer
    # depends on the kernel's socket buffers, so the test sends many sizes at once, each on a
    # connection read by nobody until the server was told to stop.
    data = os.urandom(6 * 1024 * 1024)
    upstream.client().create_bucket(Bucket="sigterm-get")  # type: ignore[attr-defined]
    upstream.client().put_object(Bucket="sigterm-get", Key="big", Body=data)  # type: ignore[attr-defined]
    root = tmp_path / "cache"
    root.mkdir()
    srv = start_cache(root, upstream)
    sizes = range(2 * 1024 * 1024, len(data), 56 * 1024)  # steps under the 64 KiB write buffer
    try:
        readers = [(n, _raw_get(srv, "/sigterm-get/big", {"Range": f"bytes=0-{n - 1}"})) for n in sizes]
        time.sleep(0.5)
        assert srv.process is not None
        srv.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the answers that fit in the buffers are complete on the server's side
        short = []
        for n, sock in reversed(readers):  # the largest first: the server exits after the last of them
            with sock:
                if _read_answer(sock, n) != data[:n]:
                    short.append(n)
        assert srv.process.wait(timeout=30) == 0
    finally:
        stop_server(srv)
    assert not short, f"cut short: {short}"
    assert "Traceback" not in _log(srv)


def _raw_put(srv: Server, path: str, size: int) -> socket.socket:
    """A signed PUT of ``size`` bytes (UNSIGNED-PAYLOAD) whose body the test sends itself."""
    request = AWSRequest(method="PUT", url=srv.endpoint + path, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    FixedPayloadAuth(Credentials(srv.access_key, srv.secret_key), "s3", "us-east-1").add_auth(request)
    host, port = srv.endpoint.split("//")[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {size}\r\n"
    sock.sendall((head + "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n").encode())
    return sock


def _temp_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / ".s3serve" / "tmp").iterdir())


def test_sigterm_finishes_an_upload_and_a_fill_in_flight(tmp_path: Path, upstream: Server) -> None:
    data = os.urandom(8 * 1024 * 1024)
    upstream.client().create_bucket(Bucket="sigterm-both")  # type: ignore[attr-defined]
    upstream.client().put_object(Bucket="sigterm-both", Key="remote", Body=data)  # type: ignore[attr-defined]
    root = tmp_path / "cache"
    with running_cache(root, upstream) as srv:
        put = _raw_put(srv, "/sigterm-both/uploaded", len(data))
        put.sendall(data[: len(data) // 2])
        get = srv.client().get_object(Bucket="sigterm-both", Key="remote")["Body"]  # type: ignore[attr-defined]
        first = get.read(1024 * 1024)
        until(lambda: len(_temp_files(root)) == 2)  # both are being spooled
        assert srv.process is not None
        srv.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        put.sendall(data[len(data) // 2 :])
        assert put.recv(4096).startswith(b"HTTP/1.1 200"), "the upload in flight is finished, not dropped"
        put.close()
        assert first + get.read() == data
        assert srv.process.wait(timeout=30) == 0
    assert "Traceback" not in _log(srv)
    assert _temp_files(root) == []
    # The upload's replica is whole; the fill's is whole or absent.
    assert (root / "sigterm-both" / "uploaded").read_bytes() == data
    assert not (root / "sigterm-both" / "remote").exists() or (root / "sigterm-both" / "remote").read_bytes() == data
    assert upstream.client().get_object(Bucket="sigterm-both", Key="uploaded")["Body"].read() == data  # type: ignore[attr-defined]


def test_after_a_crash_the_next_start_removes_what_uploads_and_fills_left(tmp_path: Path, upstream: Server) -> None:
    data = os.urandom(8 * 1024 * 1024)
    upstream.client().create_bucket(Bucket="crash")  # type: ignore[attr-defined]
    upstream.client().put_object(Bucket="crash", Key="remote", Body=data)  # type: ignore[attr-defined]
    root = tmp_path / "cache"
    with running_cache(root, upstream) as srv:
        put = _raw_put(srv, "/crash/uploaded", len(data))
        put.sendall(data[: len(data) // 2])
        get = srv.client().get_object(Bucket="crash", Key="remote")["Body"]  # type: ignore[attr-defined]
        get.read(1024 * 1024)
        until(lambda: len(_temp_files(root)) == 2)
        assert srv.process is not None
        srv.process.kill()
        srv.process.wait()
        put.close()
        get.close()
    assert len(_temp_files(root)) == 2
    assert not (root / "crash" / "uploaded").exists() and not (root / "crash" / "remote").exists()
    time.sleep(1.1)  # older than the GC's grace for a writer that has not locked its file yet
    srv = start_cache(root, upstream)
    try:
        assert _temp_files(root) == [], "spooled bodies of a crashed server are removed at start-up"
        assert srv.client().get_object(Bucket="crash", Key="remote")["Body"].read() == data  # type: ignore[attr-defined]
    finally:
        stop_server(srv)


def test_upstream_credentials_from_an_aws_profile_are_renewed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Temporary credentials from a profile's credential_process (as SSO, assume-role or an
    # instance role give them): the cache must sign with the renewed keys once they change.
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": [
        {"access_key": "KEY-ONE", "secret_key": "secret-one"},
        {"access_key": "KEY-TWO", "secret_key": "secret-two"},
    ]}))  # fmt: skip
    up_root = tmp_path / "up"
    up_root.mkdir()
    upstream = start_server(up_root, "--no-fsync", "--credentials", str(users))
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"a": "KEY-ONE", "s": "secret-one"}))
    process = tmp_path / "creds.py"
    process.write_text(
        "import datetime, json, sys\n"
        "keys = json.load(open(sys.argv[1]))\n"
        # Due for renewal at once (botocore renews within 15 minutes of the expiry).
        "expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=11)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': keys['a'], 'SecretAccessKey': keys['s'],"
        " 'Expiration': expires.isoformat()}))\n"
    )
    config = tmp_path / "aws-config"
    config.write_text(f"[profile up]\ncredential_process = {sys.executable} {process} {keys}\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    cache_root = tmp_path / "cache"
    cache_root.mkdir()
    try:
        cache = start_server(cache_root, "--no-fsync", "--upstream", upstream.endpoint, "--upstream-profile", "up")
        try:
            s3 = cache.client()
            s3.create_bucket(Bucket="first-keys")
            s3.put_object(Bucket="first-keys", Key="k", Body=b"signed with the first keys")
            keys.write_text(json.dumps({"a": "KEY-TWO", "s": "secret-two"}))
            # The upstream now sees the second user, who does not own the first bucket.
            with pytest.raises(ClientError) as exc:
                s3.put_object(Bucket="first-keys", Key="k", Body=b"again")
            assert exc.value.response["Error"]["Code"] == "AccessDenied"
            s3.create_bucket(Bucket="second-keys")
            s3.put_object(Bucket="second-keys", Key="k", Body=b"signed with the second keys")
        finally:
            stop_server(cache)
        assert "Traceback" not in cache.log_path.read_text()
        as_second = Server(upstream.endpoint, "KEY-TWO", "secret-two", None).client()
        assert [b["Name"] for b in as_second.list_buckets()["Buckets"]] == ["second-keys"]  # type: ignore[attr-defined]
    finally:
        stop_server(upstream)
    assert (up_root / "first-keys" / "k").read_bytes() == b"signed with the first keys"


def test_an_upstream_profile_without_credentials_is_refused_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[profile empty]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    # No instance or container credentials on this machine either: nowhere to ask.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for profile, words in (("empty", "no credentials found"), ("missing", "could not be found")):
        done = subprocess.run(
            [sys.executable, "-m", "s3serve", "serve", str(tmp_path / "root"), "--address", "127.0.0.1:0",
             "--upstream", "http://127.0.0.1:1", "--upstream-profile", profile],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode != 0 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
