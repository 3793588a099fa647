"""Expect: 100-continue against a live server, on raw sockets: a request whose headers doom it is
refused before the 100, so its body is never sent (S3's PutObject: "If the message is rejected
based on the headers, the body of the message is not sent"), with the error the same request
gets without Expect; a good one gets the 100, then its answer.

Each refused request below declares a large body and never sends a byte of it: the client reads
the answer first, as botocore, curl and the aws cli wait for the 100 before they send.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import REGION, FixedPayloadAuth, Server, object_absent, start_server, stop_server
from tests.e2e.conftest import cache_pair

UNSIGNED = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
GIB = 1024**3
BIG = str(GIB)  # the declared size of every refused body: never sent
# How long an answer may take on a loaded machine; a server that sent a 100 and waits for the
# body would hang past it, caught by the socket timeout.
PROMPT = 5.0
ALICE = ("alice", "alice-secret")
BOB = ("bob", "bob-secret")


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    silent: bool  # the server sent nothing after it

    @property
    def code(self) -> str | None:
        m = re.search(rb"<Code>(.*?)</Code>", self.body)
        return m.group(1).decode() if m else None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of two users (a bucket of one is AccessDenied to the other), signing as alice."""
    base = tmp_path_factory.mktemp("expect")
    users = base / "users.json"
    users.write_text(json.dumps({"users": [
        {"access_key": ALICE[0], "secret_key": ALICE[1], "display_name": "Alice"},
        {"access_key": BOB[0], "secret_key": BOB[1], "display_name": "Bob", "user_id": "b0b"},
    ]}))  # fmt: skip
    root = base / "root"
    root.mkdir()
    srv = start_server(root, "--credentials", str(users), "--min-part-size", "1MiB", "--no-fsync", access_key="", secret_key="")
    yield dataclasses.replace(srv, access_key=ALICE[0], secret_key=ALICE[1])
    stop_server(srv)


def _client(server: Server, keys: tuple[str, str] = ALICE, **config: Any) -> Any:
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=keys[0], aws_secret_access_key=keys[1],
        region_name=REGION, config=Config(**config) if config else None,
    )  # fmt: skip


@pytest.fixture(scope="module")
def s3(server: Server) -> Any:
    return _client(server)


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = f"expect-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def bobs_bucket(server: Server) -> str:
    name = f"bobs-{uuid.uuid4().hex[:12]}"
    _client(server, BOB).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def uploads(s3: Any, bucket: str) -> dict[str, str]:
    """Upload ids of key "part": one in progress, one aborted, one completed."""
    ids = {}
    for state in ("open", "aborted", "completed"):
        ids[state] = s3.create_multipart_upload(Bucket=bucket, Key="part")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="part", UploadId=ids["aborted"])
    etag = s3.upload_part(Bucket=bucket, Key="part", UploadId=ids["completed"], PartNumber=1, Body=b"p")["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="part", UploadId=ids["completed"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )  # fmt: skip
    ids["unknown"] = "0" * 16 + uuid.uuid4().hex
    ids["crc32"] = s3.create_multipart_upload(Bucket=bucket, Key="part", ChecksumAlgorithm="CRC32")["UploadId"]
    return ids


def _address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.endpoint)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _head(server: Server, method: str, path: str, headers: dict[str, str], expect: bool = True) -> bytes:
    """A SigV4-signed request line and headers (the body's length declared, the body not sent)."""
    all_headers = {**UNSIGNED, **headers, **({"Expect": "100-continue"} if expect else {})}
    request = AWSRequest(method=method, url=server.endpoint + path, headers=all_headers)
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(server.endpoint).netloc}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket, *, head: bool = False) -> tuple[Answer, bytes]:
    """The next answer on ``sock`` (a 100 Continue as one too), and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    status = int(status_line.split()[1])
    length = 0 if head or status < 200 else int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside an answer"
        rest += chunk
    return Answer(status, headers, rest[:length], silent=True), rest[length:]


def _silent(sock: socket.socket, wait: float = 0.5) -> bool:
    """Whether the server sends nothing more (a late 100, a second answer) within ``wait``. It
    closes the connection later: for aiohttp's lingering time it reads off a body the client may
    send anyway, as clients that waited for a 100 in vain do (botocore after a second)."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return True
    finally:
        sock.settimeout(PROMPT)


def _refusal(server: Server, method: str, path: str, headers: dict[str, str], *, expect: bool) -> Answer:
    """The answer to the request's headers alone: no byte of its declared body is ever sent."""
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        sock.sendall(_head(server, method, path, headers, expect=expect))
        answer, rest = _read_answer(sock)
        assert rest == b"", rest
        if expect:
            answer.silent = _silent(sock)
    return answer


# (method, path with {bucket} / {bobs} / {upload:<state>}, headers) -> (status, code)
PUT = ("PUT", "/{bucket}/refused")
PART = ("PUT", "/{bucket}/part?partNumber=1&uploadId={upload:open}")
PART_CRC32 = ("PUT", "/{bucket}/part?partNumber=1&uploadId={upload:crc32}")
SHA256_OF_NOTHING = base64.b64encode(hashlib.sha256().digest()).decode()
UNSIGNED_TRAILER_SHA256 = {
    "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "Content-Encoding": "aws-chunked",
    "x-amz-decoded-content-length": BIG,
    "x-amz-trailer": "x-amz-checksum-sha256",
}
SSE_C = {
    "x-amz-server-side-encryption-customer-algorithm": "AES256",
    "x-amz-server-side-encryption-customer-key": base64.b64encode(b"k" * 32).decode(),
    "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(b"k" * 32).digest()).decode(),
}
REFUSED: dict[str, tuple[tuple[str, str], dict[str, str], int, str]] = {
    "put-missing-bucket": (("PUT", "/no-such-bucket-{nonce}/k"), {}, 404, "NoSuchBucket"),
    "put-other-users-bucket": (("PUT", "/{bobs}/k"), {}, 403, "AccessDenied"),
    "put-public-acl": (PUT, {"x-amz-acl": "public-read"}, 400, "AccessControlListNotSupported"),
    "put-over-5gib": (PUT, {"Content-Length": str(5 * GIB + 1)}, 400, "EntityTooLarge"),
    "put-malformed-content-md5": (PUT, {"Content-MD5": "not-an-md5"}, 400, "InvalidDigest"),
    "put-malformed-checksum": (PUT, {"x-amz-checksum-crc32": "nope"}, 400, "InvalidRequest"),
    "put-sse-c-over-http": (PUT, SSE_C, 400, "InvalidRequest"),
    "put-duplicate-tag": (PUT, {"x-amz-tagging": "a=1&a=2"}, 400, "InvalidTag"),
    "put-if-none-match-etag": (PUT, {"If-None-Match": '"abc"'}, 501, "NotImplemented"),
    "put-unknown-storage-class": (PUT, {"x-amz-storage-class": "BOGUS"}, 400, "InvalidStorageClass"),
    "part-missing-bucket": (("PUT", "/no-such-bucket-{nonce}/k?partNumber=1&uploadId={upload:open}"), {}, 404, "NoSuchBucket"),
    "part-other-users-bucket": (("PUT", "/{bobs}/k?partNumber=1&uploadId={upload:open}"), {}, 403, "AccessDenied"),
    "part-unknown-upload": (("PUT", "/{bucket}/part?partNumber=1&uploadId={upload:unknown}"), {}, 404, "NoSuchUpload"),
    "part-aborted-upload": (("PUT", "/{bucket}/part?partNumber=1&uploadId={upload:aborted}"), {}, 404, "NoSuchUpload"),
    "part-completed-upload": (("PUT", "/{bucket}/part?partNumber=1&uploadId={upload:completed}"), {}, 404, "NoSuchUpload"),
    "part-malformed-upload-id": (("PUT", "/{bucket}/part?partNumber=1&uploadId=nope"), {}, 404, "NoSuchUpload"),
    "part-of-another-key": (("PUT", "/{bucket}/other?partNumber=1&uploadId={upload:open}"), {}, 404, "NoSuchUpload"),
    "part-number-0": (("PUT", "/{bucket}/part?partNumber=0&uploadId={upload:open}"), {}, 400, "InvalidArgument"),
    "part-over-5gib": (PART, {"Content-Length": str(5 * GIB + 1)}, 400, "EntityTooLarge"),
    "part-malformed-content-md5": (PART, {"Content-MD5": "not-an-md5"}, 400, "InvalidDigest"),
    "part-sse-header": (PART, {"x-amz-server-side-encryption": "AES256"}, 400, "InvalidArgument"),
    # Keys storage cannot hold, known from the path: S3's 1024 bytes, and the filesystem's rules.
    "put-key-over-1024-bytes": (("PUT", "/{bucket}/" + "k" * 1025), {}, 400, "KeyTooLongError"),
    "put-key-of-multibyte-characters": (("PUT", "/{bucket}/" + "%C3%A9" * 513), {}, 400, "KeyTooLongError"),
    "put-key-segment-over-255-bytes": (("PUT", "/{bucket}/" + "s" * 256), {}, 400, "KeyTooLongError"),
    "put-key-empty-segment": (("PUT", "/{bucket}/a//b"), {}, 400, "InvalidArgument"),
    "put-folder-key-with-content": (("PUT", "/{bucket}/folder/"), {}, 400, "InvalidArgument"),
    "part-key-over-1024-bytes": (("PUT", "/{bucket}/" + "k" * 1025 + "?partNumber=1&uploadId={upload:open}"), {}, 400, "KeyTooLongError"),
    # A part whose checksum its upload (made with CRC32) could never combine, named in a header,
    # in the trailer it announces, or missing from a part of an upload of composite checksums.
    "part-checksum-of-another-algorithm": (PART_CRC32, {"x-amz-checksum-sha256": SHA256_OF_NOTHING}, 400, "InvalidRequest"),
    "part-trailer-of-another-algorithm": (PART_CRC32, UNSIGNED_TRAILER_SHA256, 400, "InvalidRequest"),
    "part-without-the-uploads-checksum": (PART_CRC32, {}, 400, "InvalidRequest"),
    "complete-other-users-bucket": (("POST", "/{bobs}/k?uploadId={upload:open}"), {}, 403, "AccessDenied"),
    "complete-sse-header": (
        ("POST", "/{bucket}/part?uploadId={upload:open}"), {"x-amz-server-side-encryption": "AES256"}, 400, "InvalidArgument"
    ),
}


def _path(template: str, bucket: str, bobs: str, uploads: dict[str, str]) -> str:
    path = template.replace("{bucket}", bucket).replace("{bobs}", bobs).replace("{nonce}", uuid.uuid4().hex[:8])
    return re.sub(r"\{upload:(\w+)\}", lambda m: uploads[m.group(1)], path)


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_request_its_headers_doom_is_refused_before_the_100(
    server: Server, s3: Any, bucket: str, bobs_bucket: str, uploads: dict[str, str], case: str
) -> None:
    (method, template), extra, status, code = REFUSED[case]
    path = _path(template, bucket, bobs_bucket, uploads)
    headers = {"Content-Length": BIG, **extra}
    answer = _refusal(server, method, path, headers, expect=True)
    # The error itself, not a 100: the client never sends its gigabyte.
    assert (answer.status, answer.code) == (status, code), (answer.status, answer.body[:300])
    # Nothing more comes (no 100 after all), and the connection, whose body was never read,
    # is not kept for another request.
    assert answer.silent and answer.headers.get("connection") == "close", answer.headers
    assert answer.headers.get("x-amz-request-id") and answer.headers.get("server") == "s3serve"
    # The same error as without Expect, which the handler answers before reading the body too.
    plain = _refusal(server, method, path, headers, expect=False)
    assert (plain.status, plain.code) == (status, code), (plain.status, plain.body[:300])
    if method == "PUT" and path.startswith(f"/{bucket}/refused"):
        assert object_absent(s3, bucket, "refused")


def test_a_good_put_gets_100_then_its_answer(server: Server, s3: Any, bucket: str) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    md5 = hashlib.md5(data).hexdigest()
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        headers = {"Content-Length": str(len(data)), "Content-MD5": base64.b64encode(bytes.fromhex(md5)).decode()}
        sock.sendall(_head(server, "PUT", f"/{bucket}/good", {**headers, "x-amz-meta-color": "blue"}))
        assert sock.recv(len(CONTINUE)) == CONTINUE
        sock.sendall(data)
        answer, _ = _read_answer(sock)
        assert answer.status == 200, answer.body
        assert answer.headers["etag"] == f'"{md5}"'
        assert answer.headers.get("connection") != "close"
        # The connection goes on serving.
        sock.sendall(_head(server, "HEAD", f"/{bucket}/good", {}, expect=False))
        head, _ = _read_answer(sock, head=True)
        assert head.status == 200 and head.headers["content-length"] == str(len(data))
    got = s3.get_object(Bucket=bucket, Key="good")
    assert got["Body"].read() == data and got["Metadata"] == {"color": "blue"}


def test_a_good_multipart_upload_gets_100s(server: Server, s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    parts = [b"a" * (1024 * 1024 + 1), b"tail"]
    etags = []
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        for number, data in enumerate(parts, 1):
            path = f"/{bucket}/mp?partNumber={number}&uploadId={upload_id}"
            sock.sendall(_head(server, "PUT", path, {"Content-Length": str(len(data))}))
            assert sock.recv(len(CONTINUE)) == CONTINUE
            sock.sendall(data)
            answer, _ = _read_answer(sock)
            assert answer.status == 200, answer.body
            assert answer.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
            etags.append(answer.headers["etag"])
        listed = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, 1))
        body = f"<CompleteMultipartUpload>{listed}</CompleteMultipartUpload>".encode()
        sock.sendall(_head(server, "POST", f"/{bucket}/mp?uploadId={upload_id}", {"Content-Length": str(len(body))}))
        assert sock.recv(len(CONTINUE)) == CONTINUE
        sock.sendall(body)
        answer, _ = _read_answer(sock)
        assert answer.status == 200 and b"<CompleteMultipartUploadResult" in answer.body, answer.body
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)


def test_boto3_uploads_over_1mib_still_work(s3: Any, bucket: str) -> None:
    """botocore sends Expect: 100-continue with PutObject and UploadPart bodies of 1 MiB or more."""
    data = bytes(range(256)) * (3 * 4096)  # 3 MiB
    s3.put_object(Bucket=bucket, Key="boto-put", Body=data, ACL="private", Tagging="a=1")
    assert s3.get_object(Bucket=bucket, Key="boto-put")["Body"].read() == data
    big = data * 2  # 6 MiB in parts of 5 MiB and 1 MiB (s3transfer's smallest part size is 5 MiB)
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_fileobj(io.BytesIO(big), bucket, "boto-multipart", Config=config)
    head = s3.head_object(Bucket=bucket, Key="boto-multipart")
    assert head["ContentLength"] == len(big) and head["ETag"].endswith('-2"')
    assert s3.get_object(Bucket=bucket, Key="boto-multipart")["Body"].read() == big


class CountingRelay:
    """A TCP relay to the server that counts the bytes its clients send: what a client really
    sent, body or not."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sent = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = [self._listener]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                self._sockets.append(client)
                server = socket.create_connection(self.target)
                self._sockets.append(server)
            except OSError:
                return  # closed
            for args in ((client, server, True), (server, client, False)):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if count:
                    with self._lock:
                        self.sent += len(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # closed

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
            sock.close()
        for thread in self._threads:
            thread.join(timeout=PROMPT)


@pytest.fixture
def relay(server: Server) -> Iterator[CountingRelay]:
    relay = CountingRelay(_address(server))
    yield relay
    relay.close()


def test_botocore_gets_no_such_bucket_without_sending_the_body(server: Server, relay: CountingRelay) -> None:
    s3 = _client(dataclasses.replace(server, endpoint=relay.endpoint), retries={"max_attempts": 1})
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    body = b"x" * (4 * 1024 * 1024)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=missing, Key="k", Body=body)
    error = exc.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=missing, Key="k", UploadId="0" * 48, PartNumber=1, Body=body)
    assert exc.value.response["Error"]["Code"] == "NoSuchBucket"
    # Two requests' headers went out, and neither body.
    assert relay.sent < 10000, relay.sent


def test_botocore_gets_no_such_upload_without_sending_the_part(
    server: Server, s3: Any, bucket: str, relay: CountingRelay
) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=upload_id)
    relayed = _client(dataclasses.replace(server, endpoint=relay.endpoint), retries={"max_attempts": 1})
    with pytest.raises(ClientError) as exc:
        relayed.upload_part(Bucket=bucket, Key="gone", UploadId=upload_id, PartNumber=1, Body=b"x" * (2 * 1024 * 1024))
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    assert relay.sent < 10000, relay.sent


def test_the_server_serves_on_after_refusals_before_the_100(server: Server, s3: Any, bucket: str, bobs_bucket: str) -> None:
    for _ in range(3):
        answer = _refusal(server, "PUT", f"/{bobs_bucket}/k", {"Content-Length": BIG}, expect=True)
        assert (answer.status, answer.code, answer.headers.get("connection")) == (403, "AccessDenied", "close")
    # A new connection is served: a request with Expect, then one without on the same connection.
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        sock.sendall(_head(server, "PUT", f"/{bucket}/after", {"Content-Length": "5"}))
        assert sock.recv(len(CONTINUE)) == CONTINUE
        sock.sendall(b"hello")
        answer, _ = _read_answer(sock)
        assert answer.status == 200
        sock.sendall(_head(server, "GET", f"/{bucket}/after", {}, expect=False))
        answer, _ = _read_answer(sock)
        assert (answer.status, answer.body) == (200, b"hello")


def test_a_sigv2_presigned_put_keeps_the_metadata_of_its_query(server: Server, bucket: str, s3: Any) -> None:
    """The header phase run before the 100 sees the request as the handler does: with the
    x-amz-meta-* a SigV2 presigned URL carries in its query string as headers."""
    v2 = _client(server, signature_version="s3")
    url = v2.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "presigned", "Metadata": {"color": "red"}})
    assert "x-amz-meta-color=red" in url
    target = url[len(server.endpoint) :]
    with socket.create_connection(_address(server), timeout=PROMPT) as sock:
        head = f"PUT {target} HTTP/1.1\r\nHost: {urlsplit(server.endpoint).netloc}\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        sock.sendall(head.encode())
        assert sock.recv(len(CONTINUE)) == CONTINUE
        sock.sendall(b"red")
        answer, _ = _read_answer(sock)
        assert answer.status == 200, answer.body
    got = s3.get_object(Bucket=bucket, Key="presigned")
    assert got["Body"].read() == b"red" and got["Metadata"] == {"color": "red"}


def test_post_object_and_preflight_get_their_100(server: Server, bucket: str) -> None:
    """PostObject authenticates from its form body, and a CORS preflight carries no credentials:
    neither is judged before the 100."""
    for method, path, headers in (
        ("POST", f"/{bucket}", {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "10"}),
        ("OPTIONS", f"/{bucket}/k", {"Origin": "http://example.com", "Access-Control-Request-Method": "PUT", "Content-Length": "1"}),
    ):
        with socket.create_connection(_address(server), timeout=PROMPT) as sock:
            head = f"{method} {path} HTTP/1.1\r\nHost: {urlsplit(server.endpoint).netloc}\r\nExpect: 100-continue\r\n"
            sock.sendall((head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
            assert sock.recv(len(CONTINUE)) == CONTINUE, method


def test_through_the_upstream_cache(tmp_path: Any) -> None:
    """Through a cache the bucket check is before the 100 too; an upload id only the upstream
    knows is judged there, after the body, as before."""
    with cache_pair(tmp_path) as (_upstream, cache):
        s3 = cache.client()
        name = f"cached-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=name)
        answer = _refusal(cache, "PUT", f"/missing-{uuid.uuid4().hex[:8]}/k", {"Content-Length": BIG}, expect=True)
        assert (answer.status, answer.code, answer.silent) == (404, "NoSuchBucket", True)
        answer = _refusal(cache, "PUT", f"/{name}/k", {"Content-Length": BIG, "x-amz-acl": "public-read"}, expect=True)
        assert (answer.status, answer.code, answer.silent) == (400, "AccessControlListNotSupported", True)
        # S3's limit on a key, which the cache applies before the upstream sees the body.
        upload_id = s3.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
        for path in (f"/{name}/{'k' * 1025}", f"/{name}/{'k' * 1025}?partNumber=1&uploadId={upload_id}"):
            answer = _refusal(cache, "PUT", path, {"Content-Length": BIG}, expect=True)
            assert (answer.status, answer.code, answer.silent) == (400, "KeyTooLongError", True), path
        data = b"c" * (3 * 1024 * 1024)
        s3.put_object(Bucket=name, Key="k", Body=data)
        assert s3.get_object(Bucket=name, Key="k")["Body"].read() == data
        config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        s3.upload_fileobj(io.BytesIO(data * 2), name, "mp", Config=config)
        assert s3.get_object(Bucket=name, Key="mp")["Body"].read() == data * 2
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket=name, Key="k", UploadId="0" * 48, PartNumber=1, Body=b"x" * (2 * 1024 * 1024))
        assert exc.value.response["Error"]["Code"] == "NoSuchUpload"

