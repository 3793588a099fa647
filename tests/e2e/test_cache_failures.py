"""The upstream cache when things go wrong between it and its upstream, or on its own disk: live
processes on loopback (an s3serve cache with --upstream in front of a second s3serve, through a
TCP proxy that can lose answers), driven with boto3."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server
from tests.e2e.conftest import fills_done, running_cache, until

# Servers of its own on loopback, whatever S3SERVE_TEST_ENDPOINT names (make test-cache runs the
# rest of the suite through a cache).
pytestmark = pytest.mark.skipif(bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts its own servers")


class LossyProxy:
    """A TCP proxy on loopback in front of ``target``. While ``lose`` names a request line prefix
    (b"PUT /bucket/key "), a connection that carried such a request has the upstream's answer to
    it read (the upstream has done the work) and is then closed instead of relaying it: what a
    connection dropped after the upstream committed looks like to the client."""

    def __init__(self, target: str) -> None:
        host, port = target.split("//")[1].rsplit(":", 1)
        self.target = (host, int(port))
        self.lose: bytes | None = None
        self.lost = 0  # answers read from the upstream and not relayed
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            doomed = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, doomed), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        seen = b""
        try:
            while data := client.recv(65536):
                seen = (seen + data)[-4096:]
                if self.lose is not None and self.lose in seen:
                    doomed.set()  # before the request is passed on: its answer cannot come first
                upstream.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def _answers(self, upstream: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if doomed.is_set():
                    self.lost += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def close(self) -> None:
        self._server.close()
        _close(*self._sockets)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


@pytest.fixture
def lossy(upstream: Server) -> Iterator[LossyProxy]:
    proxy = LossyProxy(upstream.endpoint)
    yield proxy
    proxy.close()


def test_a_write_whose_answer_was_lost_leaves_no_copy_served_as_current(
    tmp_path: Path, upstream: Server, lossy: LossyProxy
) -> None:
    # The upstream took the PUT (or DELETE), but its answer never reached the cache: the client
    # gets an error, and the copy here is of the version before. Within --cache-revalidate it was
    # served as current, for up to that long, though the upstream held the new bytes.
    root = tmp_path / "cache"
    behind = Server(lossy.endpoint, upstream.access_key, upstream.secret_key, None)
    with running_cache(root, behind, "--cache-revalidate", "1h") as srv:
        s3 = srv.client(retries={"max_attempts": 1})
        direct = upstream.client()
        s3.create_bucket(Bucket="lossy")  # type: ignore[attr-defined]
        for key in ("put", "deleted"):
            s3.put_object(Bucket="lossy", Key=key, Body=b"old " + key.encode())  # type: ignore[attr-defined]
            assert s3.get_object(Bucket="lossy", Key=key)["Body"].read() == b"old " + key.encode()  # type: ignore[attr-defined]
            assert (root / "lossy" / key).exists()

        lossy.lose = b"PUT /lossy/put "
        with pytest.raises(ClientError) as failed:
            s3.put_object(Bucket="lossy", Key="put", Body=b"new bytes")  # type: ignore[attr-defined]
        assert failed.value.response["Error"]["Code"] == "ServiceUnavailable"
        lossy.lose = b"DELETE /lossy/deleted "
        with pytest.raises(ClientError) as failed:
            s3.delete_object(Bucket="lossy", Key="deleted")  # type: ignore[attr-defined]
        assert failed.value.response["Error"]["Code"] == "ServiceUnavailable"
        lossy.lose = None
        assert lossy.lost >= 2

        # The upstream made both writes.
        assert direct.get_object(Bucket="lossy", Key="put")["Body"].read() == b"new bytes"  # type: ignore[attr-defined]
        with pytest.raises(ClientError):
            direct.head_object(Bucket="lossy", Key="deleted")  # type: ignore[attr-defined]
        # And the cache answers what the upstream holds, not its copies of before.
        assert s3.get_object(Bucket="lossy", Key="put")["Body"].read() == b"new bytes"  # type: ignore[attr-defined]
        with pytest.raises(ClientError) as missing:
            s3.get_object(Bucket="lossy", Key="deleted")  # type: ignore[attr-defined]
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


def test_a_write_the_upstream_refused_keeps_the_copy(tmp_path: Path, upstream: Server) -> None:
    # Only an answer that leaves unsaid whether the upstream made the write costs the copy: a
    # refusal (here If-None-Match: * on an existing key) changed nothing there.
    root = tmp_path / "cache"
    with running_cache(root, upstream, "--cache-revalidate", "1h") as srv:
        s3 = srv.client()
        s3.create_bucket(Bucket="refused")  # type: ignore[attr-defined]
        s3.put_object(Bucket="refused", Key="k", Body=b"kept")  # type: ignore[attr-defined]
        with pytest.raises(ClientError) as failed:
            s3.put_object(Bucket="refused", Key="k", Body=b"other", IfNoneMatch="*")  # type: ignore[attr-defined]
        assert failed.value.response["Error"]["Code"] == "PreconditionFailed"
        assert (root / "refused" / "k").read_bytes() == b"kept"
        assert s3.get_object(Bucket="refused", Key="k")["Body"].read() == b"kept"  # type: ignore[attr-defined]


def test_a_key_this_disk_cannot_hold_is_logged_once(tmp_path: Path, upstream: Server) -> None:
    # "p/q" cannot be kept here while a file "p" (another program's) is in its way: every read of
    # it is passed through, and said so in the log once, not on every read.
    root = tmp_path / "cache"
    with running_cache(root, upstream) as srv:
        s3, direct = srv.client(), upstream.client()
        s3.create_bucket(Bucket="unkept")  # type: ignore[attr-defined]
        data = os.urandom(100_000)
        direct.put_object(Bucket="unkept", Key="p/q", Body=data)  # type: ignore[attr-defined]
        (root / "unkept" / "p").write_bytes(b"another program's file")
        assert srv.log_path is not None
        log_path = srv.log_path
        for _ in range(5):
            assert s3.get_object(Bucket="unkept", Key="p/q")["Body"].read() == data  # type: ignore[attr-defined]
        until(lambda: "not cached: unkept/p/q" in log_path.read_text())
        until(lambda: fills_done(root))  # what the other reads' fills would log, they have
        assert (root / "unkept" / "p").read_bytes() == b"another program's file"
    log = log_path.read_text()
    assert log.count("not cached: unkept/p/q") == 1, log
    assert "Traceback" not in log
