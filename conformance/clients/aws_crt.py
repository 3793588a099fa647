"""The AWS Common Runtime's S3 client (aws-c-s3: what mountpoint-s3, the aws cli's and boto3's
``crt`` transfer client and the CRT-based SDK clients use): its own HTTP stack (aws-c-http, s2n
for TLS), its own SigV4 signer (aws-c-auth), parallel multipart uploads with per-part checksums
and parallel ranged GETs with checksum validation.

Driven three ways: ``awscrt.s3.S3Client`` directly (PUT_OBJECT/GET_OBJECT meta requests from and
to files and streams, DEFAULT requests for the rest), s3transfer's ``CRTTransferManager`` with
botocore's request serializer (what ``TransferConfig(preferred_transfer_client="crt")`` builds;
boto3 itself cannot, as it always asks the CRT for TLS), and Debian's aws cli v2 with
``s3.preferred_transfer_client = crt``.

The CRT's requests go through a loopback forwarder in this process that parses the HTTP/1.1 it
carries, so the steps check what the client really did (how many parts, which checksum headers
and trailers, which ranges, how many in flight at once), not only that the bytes came back.
Static credentials everywhere: nothing looks for instance metadata."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import awscrt
import boto3
import botocore.config
import botocore.session
import s3transfer
from awscrt import checksums
from awscrt.auth import AwsCredentialsProvider
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import (
    ClientBootstrap,
    ClientTlsContext,
    DefaultHostResolver,
    EventLoopGroup,
    TlsContextOptions,
)
from awscrt.s3 import (
    S3ChecksumAlgorithm,
    S3ChecksumConfig,
    S3ChecksumLocation,
    S3Client,
    S3RequestTlsMode,
    S3RequestType,
    S3ResponseError,
)
from s3transfer.crt import BotocoreCRTRequestSerializer, CRTTransferManager, create_s3_crt_client

from conformance.clients.common import (
    Endpoint,
    MiB,
    Recorder,
    Skip,
    StepFailed,
    expect,
    expect_equal,
    file_digest,
    make_file,
    run,
)

ep = Endpoint.from_env()
rec = Recorder("aws_crt")
W = ep.workdir
B = ep.bucket("crt")
AWS = "/usr/bin/aws"
PART = 8 * MiB


def debian_awscrt() -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "python3-awscrt"], capture_output=True, text=True)
    return r.stdout.split("+")[0] if r.returncode == 0 else "?"


def aws_version() -> str:
    try:
        r = subprocess.run([AWS, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return "no aws cli"
    return (r.stdout or r.stderr).split()[0] if (r.stdout or r.stderr).strip() else "?"


rec.version(f"awscrt {awscrt.__version__} / s3transfer {s3transfer.__version__} / "
            f"{aws_version()} with awscrt {debian_awscrt()}")


# -- a forwarder that sees the HTTP --------------------------------------------------------------


@dataclass
class Exchange:
    conn: int
    method: str
    target: str
    headers: dict[str, str]
    sent: float
    status: int = 0
    done: float = 0.0  # when the response (body included) was through


class _Http1Reader:
    """Incremental reader of one direction of an HTTP/1.1 connection: calls ``on_head(first line,
    headers) -> (body length, chunked)`` for each message and ``on_end()`` after its body."""

    def __init__(self, on_head: Any, on_end: Any) -> None:
        self.buf = bytearray()
        self.on_head, self.on_end = on_head, on_end
        self.state, self.left, self.chunked = "head", 0, False

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.state == "body":
                n = min(self.left, len(self.buf))
                del self.buf[:n]
                self.left -= n
                if self.left:
                    return
                self.state = "size" if self.chunked else "head"
                if not self.chunked:
                    self.on_end()
                continue
            end = self.buf.find(b"\r\n\r\n" if self.state == "head" else b"\r\n")
            if end < 0:
                return
            text = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[:end + (4 if self.state == "head" else 2)]
            if self.state == "head":
                first, *lines = text.split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
                length, self.chunked = self.on_head(first, headers)
                if self.chunked:
                    self.state = "size"
                elif length:
                    self.state, self.left = "body", length
                else:
                    self.on_end()
            elif self.state == "size":
                size = int(text.split(";")[0], 16)
                self.state, self.left = ("trailer", 0) if size == 0 else ("body", size + 2)
            elif self.state == "trailer" and not text:
                self.state = "head"
                self.on_end()


class Sniffer:
    """A loopback TCP forwarder (``listen_port`` 0: any free port) to ``target``, recording every
    request and when its response was through."""

    def __init__(self, target: tuple[str, int], listen_port: int = 0) -> None:
        self.target = target
        self.exchanges: list[Exchange] = []
        self.lock = threading.Lock()
        self.conns = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.error: OSError | None = None

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", listen_port))
            except OSError as e:
                self.error = e
                ready.set()
                return
            self.port = int(self.server.sockets[0].getsockname()[1])
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)
        if self.error:
            raise self.error

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        def stop() -> None:
            self.server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)

    def take(self) -> list[Exchange]:
        """The exchanges since the last call."""
        with self.lock:
            got, self.exchanges = self.exchanges, []
        return got

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.conns += 1
        conn = self.conns
        try:
            sr, sw = await asyncio.open_connection(*self.target)
        except OSError:
            cw.close()
            return
        waiting: list[Exchange] = []
        answering: list[Exchange] = []

        def request_head(first: str, h: dict[str, str]) -> tuple[int, bool]:
            method, target, _ = first.split(" ", 2)
            ex = Exchange(conn, method, target, h, time.monotonic())
            with self.lock:
                self.exchanges.append(ex)
            waiting.append(ex)
            return int(h.get("content-length") or 0), "chunked" in h.get("transfer-encoding", "").lower()

        def response_head(first: str, h: dict[str, str]) -> tuple[int, bool]:
            status = int(first.split(" ", 2)[1])
            if status < 200:  # 100 Continue: the final response follows
                answering.append(Exchange(conn, "", "", {}, 0.0))
                return 0, False
            ex = waiting.pop(0) if waiting else Exchange(conn, "?", "?", {}, 0.0)
            ex.status = status
            answering.append(ex)
            if ex.method == "HEAD" or status in (204, 304):
                return 0, False
            return int(h.get("content-length") or 0), "chunked" in h.get("transfer-encoding", "").lower()

        def response_end() -> None:
            if answering:
                answering.pop(0).done = time.monotonic()

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, reader: _Http1Reader) -> None:
            try:
                while data := await r.read(256 * 1024):
                    reader.feed(data)
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError, ValueError, IndexError):
                pass
            finally:
                try:
                    w.write_eof()
                except (OSError, RuntimeError):
                    w.close()

        await asyncio.gather(pump(cr, sw, _Http1Reader(request_head, lambda: None)),
                             pump(sr, cw, _Http1Reader(response_head, response_end)))
        cw.close()
        sw.close()


def in_flight(exchanges: list[Exchange]) -> int:
    """The most requests whose responses were not through yet, at any one time."""
    events = sorted([(e.sent, 1) for e in exchanges] + [(e.done or float("inf"), -1) for e in exchanges])
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


def query_of(ex: Exchange) -> str:
    return ex.target.partition("?")[2]


# -- the CRT client ------------------------------------------------------------------------------

sniffer = Sniffer((ep.host, ep.port))
HOST = sniffer.hostport
CREDS = AwsCredentialsProvider.new_static(ep.access_key, ep.secret_key)
ELG = EventLoopGroup(4)
BOOTSTRAP = ClientBootstrap(ELG, DefaultHostResolver(ELG))


def crt_client(tls_ca: str | None = None, creds: AwsCredentialsProvider = CREDS) -> S3Client:
    options: dict[str, Any] = {"tls_mode": S3RequestTlsMode.DISABLED}
    if tls_ca is not None:
        ctx = TlsContextOptions()
        ctx.override_default_trust_store_from_path(ca_filepath=tls_ca)
        options = {"tls_mode": S3RequestTlsMode.ENABLED,
                   "tls_connection_options": ClientTlsContext(ctx).new_connection_options()}
    return S3Client(bootstrap=BOOTSTRAP, region=ep.region, credential_provider=creds, part_size=PART,
                    throughput_target_gbps=5.0, **options)


CLIENT = crt_client()
admin = boto3.client("s3", endpoint_url=ep.url, aws_access_key_id=ep.access_key,
                     aws_secret_access_key=ep.secret_key, region_name=ep.region,
                     config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


@dataclass
class Result:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    done: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None

    def code(self) -> str:
        body = self.error.body if isinstance(self.error, S3ResponseError) and self.error.body else self.body
        text = body.decode(errors="replace")
        return text.partition("<Code>")[2].partition("</Code>")[0]


def crt(rtype: S3RequestType, method: str, path: str, *, headers: tuple[tuple[str, str], ...] = (),
        client: S3Client | None = None, host: str | None = None, op: str | None = None, body: Any = None,
        check: bool = True, cancel_after: float | None = None, timeout: float = 300, **kw: Any) -> Result:
    """One meta request; raises StepFailed on an error unless ``check`` is False."""
    res = Result()
    chunks: list[bytes] = []
    started = threading.Event()

    def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
        res.status = status_code
        res.headers = {k.lower(): v for k, v in headers}

    def on_body(chunk: bytes, offset: int, **_: Any) -> None:
        chunks.append(bytes(chunk))

    def on_done(**done: Any) -> None:
        res.done = done

    def on_progress(n: int) -> None:
        started.set()

    request = HttpRequest(method, path, HttpHeaders([("Host", host or HOST), *headers]), body)
    meta = (client or CLIENT).make_request(type=rtype, request=request, operation_name=op, on_headers=on_headers,
                                           on_body=on_body, on_done=on_done, on_progress=on_progress, **kw)
    if cancel_after is not None:
        started.wait(60)
        time.sleep(cancel_after)
        meta.cancel()
    try:
        meta.finished_future.result(timeout)
    except Exception as e:  # noqa: BLE001 - S3ResponseError or AwsCrtError, reported below
        res.error = e
    res.body = b"".join(chunks)
    if res.error is not None and check:
        status = getattr(res.error, "status_code", None)
        raise StepFailed(f"{method} {path}: {type(res.error).__name__}: {res.error} (HTTP {status}, "
                         f"operation {getattr(res.error, 'operation_name', None)}) {res.code()}")
    return res


def default(method: str, path: str, op: str, **kw: Any) -> Result:
    return crt(S3RequestType.DEFAULT, method, path, op=op, **kw)


def b64(n: int, size: int) -> str:
    return base64.b64encode(n.to_bytes(size, "big")).decode()


def composite(path: Path, algorithm: str) -> str:
    """S3's COMPOSITE checksum of a multipart object: the checksum of the parts' checksums, -N."""
    crc = {"crc32": lambda d, c=0: zlib.crc32(d, c), "crc32c": checksums.crc32c}[algorithm]
    digests, data = [], path.read_bytes()
    for i in range(0, len(data), PART):
        digests.append(crc(data[i:i + PART]).to_bytes(4, "big"))
    return f"{b64(crc(b''.join(digests)), 4)}-{len(digests)}"


def whole(path: Path, algorithm: str) -> str:
    data = path.read_bytes()
    if algorithm == "crc64nvme":
        return b64(checksums.crc64nvme(data), 8)
    return b64(zlib.crc32(data) if algorithm == "crc32" else checksums.crc32c(data), 4)


def md5_parts(path: Path, part: int = PART) -> str:
    data = path.read_bytes()
    digests = [hashlib.md5(data[i:i + part]).digest() for i in range(0, len(data), part)]
    return f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'


def no_uploads_left(bucket: str = B, client: Any = admin) -> None:
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    expect_equal([(u["Key"], u["UploadId"]) for u in left], [], "multipart uploads left behind")


def parts_of(exchanges: list[Exchange]) -> list[Exchange]:
    return [e for e in exchanges if e.method == "PUT" and "partNumber=" in query_of(e)]


def check_multipart(exchanges: list[Exchange], parts: int, what: str) -> None:
    """One CreateMultipartUpload, ``parts`` UploadParts (several at once), one Complete."""
    creates = [e for e in exchanges if e.method == "POST" and query_of(e) == "uploads"]
    completes = [e for e in exchanges if e.method == "POST" and query_of(e).startswith("uploadId=")]
    ups = parts_of(exchanges)
    expect_equal((len(creates), len(ups), len(completes)), (1, parts, 1),
                 f"{what}: (CreateMultipartUpload, UploadPart, CompleteMultipartUpload) requests")
    expect(all(e.status == 200 for e in creates + ups + completes),
           f"{what}: statuses {[(e.method, e.status) for e in exchanges]}")
    expect(len({e.conn for e in ups}) >= 2 and in_flight(ups) >= 2,
           f"{what}: parts not sent in parallel ({len({e.conn for e in ups})} connections, "
           f"{in_flight(ups)} at once)")


def check_ranged_gets(exchanges: list[Exchange], start: int, end: int, what: str) -> None:
    """GETs with Range headers that tile [start, end) in part-size pieces, several at once."""
    gets = [e for e in exchanges if e.method == "GET"]
    spans = sorted(tuple(int(x) for x in e.headers.get("range", "bytes=-").removeprefix("bytes=").split("-"))
                   for e in gets if e.headers.get("range"))
    expect(len(spans) == len(gets) and len(gets) >= 2, f"{what}: GETs without Range: {[e.headers for e in gets][:3]}")
    expect_equal(spans[0][0], start, f"{what}: first range start")
    expect_equal(spans[-1][1], end - 1, f"{what}: last range end")
    expect(all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:], strict=False)), f"{what}: ranges leave gaps: {spans}")
    expect(all(e.status == 206 for e in gets), f"{what}: statuses {[e.status for e in gets]}")
    expect(len({e.conn for e in gets}) >= 2 and in_flight(gets) >= 2,
           f"{what}: ranges not fetched in parallel ({len({e.conn for e in gets})} connections, "
           f"{in_flight(gets)} at once)")


BIG = W / "big.bin"
make_file(BIG, 40 * MiB, seed=40)
BIG_SHA = file_digest(BIG, "sha256")


def key_path(key: str, bucket: str = B) -> str:
    return f"/{bucket}/{quote(key, safe='/~')}"


def put_file(key: str, path: Path, checksum: S3ChecksumConfig | None = None, **kw: Any) -> Result:
    return crt(S3RequestType.PUT_OBJECT, "PUT", key_path(key, kw.pop("bucket", B)),
               headers=(("Content-Length", str(path.stat().st_size)), *kw.pop("headers", ())),
               send_filepath=str(path), checksum_config=checksum, **kw)


def get_file(key: str, out: Path, checksum: S3ChecksumConfig | None = None, **kw: Any) -> Result:
    out.unlink(missing_ok=True)
    return crt(S3RequestType.GET_OBJECT, "GET", key_path(key, kw.pop("bucket", B)), recv_filepath=str(out),
               checksum_config=checksum, headers=kw.pop("headers", ()), **kw)


# -- the workflow --------------------------------------------------------------------------------

MB_STEP = "CreateBucket (DEFAULT meta request, the CRT's signer)"


@rec.step(MB_STEP)
def _() -> None:
    sniffer.take()
    default("PUT", f"/{B}", "CreateBucket", headers=(("Content-Length", "0"),))
    admin.head_bucket(Bucket=B)
    (ex,) = sniffer.take()
    expect("CRTS3NativeClient" in ex.headers.get("user-agent", ""), f"User-Agent {ex.headers.get('user-agent')!r}")
    expect(ex.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 Credential="), "not SigV4-signed")


MB = [MB_STEP]


@rec.step("CreateBucket as the CRT sends it without a body (no Content-Length)")
def _() -> None:
    b2 = ep.bucket("crt-nolength")
    sniffer.take()
    r = default("PUT", f"/{b2}", "CreateBucket", check=False)
    (ex,) = sniffer.take()
    expect("content-length" not in ex.headers, f"the CRT sent Content-Length: {ex.headers}")
    expect(r.error is None, f"CreateBucket: {r.error} {r.code()}")
    admin.delete_bucket(Bucket=b2)


UP_STEP = "PUT_OBJECT 40 MiB from a file: 5 parallel 8 MiB parts, CRC32 trailers (aws-chunked); COMPOSITE checksum"


@rec.step(UP_STEP, needs=MB)
def _() -> None:
    sniffer.take()
    r = put_file("big/crc32.bin", BIG, S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32,
                                                        location=S3ChecksumLocation.TRAILER),
                 headers=(("Content-Type", "application/x-crt"), ("x-amz-meta-origin", "aws-c-s3")))
    ex = sniffer.take()
    check_multipart(ex, 5, "upload")
    create = ex[0]
    expect_equal(create.headers.get("x-amz-checksum-algorithm"), "CRC32", "CreateMultipartUpload checksum algorithm")
    for part in parts_of(ex):
        expect_equal((part.headers.get("x-amz-trailer"), part.headers.get("content-encoding"),
                      part.headers.get("x-amz-content-sha256"), part.headers.get("x-amz-decoded-content-length")),
                     ("x-amz-checksum-crc32", "aws-chunked", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", str(PART)),
                     f"UploadPart {query_of(part)[:20]} framing")
    expect_equal(r.headers.get("etag"), md5_parts(BIG), "ETag")
    expected = composite(BIG, "crc32")
    expect_equal((r.headers.get("x-amz-checksum-crc32"), r.headers.get("x-amz-checksum-type")),
                 (expected, "COMPOSITE"), "CompleteMultipartUpload checksum")
    head = admin.head_object(Bucket=B, Key="big/crc32.bin", ChecksumMode="ENABLED")
    expect_equal((head["ContentLength"], head.get("ChecksumCRC32"), head["ContentType"], head["Metadata"]),
                 (BIG.stat().st_size, expected, "application/x-crt", {"origin": "aws-c-s3"}), "HeadObject")
    no_uploads_left()


UP = [UP_STEP]


@rec.step("GET_OBJECT 40 MiB to a file: parallel ranged GETs; validated against the whole object's CRC32",
          needs=UP)
def _() -> None:
    out = W / "down.bin"
    sniffer.take()
    # A COMPOSITE checksum covers no byte range the client reads, so the whole object's CRC32
    # (which S3 cannot know) is given as expected_checksum, as mountpoint-s3 users can.
    r = get_file("big/crc32.bin", out, S3ChecksumConfig(
        expected_checksum=whole(BIG, "crc32"), expected_checksum_algorithm=S3ChecksumAlgorithm.CRC32))
    check_ranged_gets(sniffer.take(), 0, BIG.stat().st_size, "download")
    expect_equal(file_digest(out, "sha256"), BIG_SHA, "SHA-256 of the download")
    expect_equal((r.done.get("did_validate_checksum"), r.done.get("checksum_validation_algorithm")),
                 (True, S3ChecksumAlgorithm.CRC32), "the CRT's checksum validation")
    expect_equal(r.headers.get("content-length"), str(BIG.stat().st_size), "Content-Length reported")


@rec.step("a wrong expected checksum fails the download (AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH)", needs=UP)
def _() -> None:
    r = get_file("big/crc32.bin", W / "bad.bin", S3ChecksumConfig(
        expected_checksum=b64(12345, 4), expected_checksum_algorithm=S3ChecksumAlgorithm.CRC32), check=False)
    expect(r.error is not None and "CHECKSUM_MISMATCH" in str(getattr(r.error, "name", r.error)),
           f"download with a wrong expected checksum: {r.error!r}")


@rec.step("PUT_OBJECT 40 MiB with CRC32C headers on each part; GET with validate_response", needs=MB)
def _() -> None:
    sniffer.take()
    r = put_file("big/crc32c.bin", BIG, S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32C,
                                                         location=S3ChecksumLocation.HEADER))
    ex = sniffer.take()
    check_multipart(ex, 5, "upload")
    data = BIG.read_bytes()
    for part in parts_of(ex):
        n = int(query_of(part).partition("partNumber=")[2].partition("&")[0])
        expect_equal(part.headers.get("x-amz-checksum-crc32c"),
                     b64(checksums.crc32c(data[(n - 1) * PART:n * PART]), 4), f"part {n} x-amz-checksum-crc32c")
    expect_equal(r.headers.get("x-amz-checksum-crc32c"), composite(BIG, "crc32c"), "composite CRC32C")
    out = W / "down-c.bin"
    r = get_file("big/crc32c.bin", out, S3ChecksumConfig(validate_response=True))
    expect_equal(file_digest(out, "sha256"), BIG_SHA, "SHA-256 of the download")
    check_ranged_gets(sniffer.take(), 0, len(data), "download")
    no_uploads_left()


@rec.step("CRC64NVME multipart: FULL_OBJECT checksum (x-amz-mp-object-size); GET validated whole via HeadObject",
          needs=MB)
def _() -> None:
    sniffer.take()
    r = put_file("big/crc64.bin", BIG, S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC64NVME,
                                                        location=S3ChecksumLocation.TRAILER))
    ex = sniffer.take()
    check_multipart(ex, 5, "upload")
    complete = ex[-1]
    expect_equal(complete.headers.get("x-amz-mp-object-size"), str(BIG.stat().st_size), "x-amz-mp-object-size")
    expected = whole(BIG, "crc64nvme")
    expect_equal((r.headers.get("x-amz-checksum-crc64nvme"), r.headers.get("x-amz-checksum-type")),
                 (expected, "FULL_OBJECT"), "full-object CRC64NVME")
    out = W / "down-nv.bin"
    r = get_file("big/crc64.bin", out, S3ChecksumConfig(validate_response=True))
    ex = sniffer.take()
    expect_equal(file_digest(out, "sha256"), BIG_SHA, "SHA-256 of the download")
    expect_equal((r.done.get("did_validate_checksum"), r.done.get("checksum_validation_algorithm")),
                 (True, S3ChecksumAlgorithm.CRC64NVME), "the CRT's checksum validation")
    heads = [e for e in ex if e.method == "HEAD"]
    expect(heads and heads[0].headers.get("x-amz-checksum-mode", "").lower() == "enabled",
           f"no HeadObject with x-amz-checksum-mode: {[(e.method, e.headers.get('x-amz-checksum-mode')) for e in ex]}")
    check_ranged_gets(ex, 0, BIG.stat().st_size, "download")
    no_uploads_left()


@rec.step("small object (1 MiB): one PutObject with x-amz-checksum-crc32 header; GET validated", needs=MB)
def _() -> None:
    small = W / "small.bin"
    make_file(small, MiB + 3, seed=1)
    sniffer.take()
    put_file("small/one.bin", small, S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32,
                                                      location=S3ChecksumLocation.HEADER))
    (ex,) = sniffer.take()
    expect_equal((ex.method, query_of(ex), ex.headers.get("x-amz-checksum-crc32")),
                 ("PUT", "", whole(small, "crc32")), "PutObject")
    out = W / "small-down.bin"
    r = get_file("small/one.bin", out, S3ChecksumConfig(validate_response=True))
    expect_equal(out.read_bytes(), small.read_bytes(), "bytes")
    expect_equal((r.done.get("did_validate_checksum"), r.done.get("checksum_validation_algorithm")),
                 (True, S3ChecksumAlgorithm.CRC32), "the CRT's checksum validation")


@rec.step("ranged GET_OBJECT (Range: bytes=5000000-30000000) split into parallel part ranges", needs=UP)
def _() -> None:
    sniffer.take()
    r = crt(S3RequestType.GET_OBJECT, "GET", key_path("big/crc32.bin"), headers=(("Range", "bytes=5000000-30000000"),))
    expect_equal(r.body, BIG.read_bytes()[5_000_000:30_000_001], "bytes 5000000-30000000")
    ex = [e for e in sniffer.take() if e.method == "GET"]
    expect(len(ex) >= 3, f"one ranged GET only: {[e.headers.get('range') for e in ex]}")
    expect(in_flight(ex) >= 2, f"ranges fetched one at a time: {[e.headers.get('range') for e in ex]}")


@rec.step("streamed upload of unknown length (a body stream, no Content-Length): multipart, CRC32C trailers",
          needs=MB)
def _() -> None:
    data = os.urandom(20 * MiB + 5)
    sniffer.take()
    r = crt(S3RequestType.PUT_OBJECT, "PUT", key_path("stream/unknown.bin"), body=io.BytesIO(data),
            checksum_config=S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32C, location=S3ChecksumLocation.TRAILER))
    ex = sniffer.take()
    check_multipart(ex, 3, "streamed upload")
    expect(r.headers.get("etag", "").endswith('-3"'), f"ETag {r.headers.get('etag')}")
    got = admin.get_object(Bucket=B, Key="stream/unknown.bin")["Body"].read()
    expect(got == data, f"streamed object differs: {len(got)} bytes vs {len(data)}")
    no_uploads_left()


@contextlib.contextmanager
def quiet_stderr() -> Any:
    """awscrt reports a body stream's exception on stderr (Python's traceback, then a line from
    its C core) before failing the request: expected here, and no output of this run."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FailingSource(io.RawIOBase):
    """A source that breaks after ``limit`` bytes (a read error, a producer gone), or is slow."""

    def __init__(self, limit: int, delay: float = 0.0) -> None:
        self.sent, self.limit, self.delay = 0, limit, delay

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.sent >= self.limit:
            raise OSError("the source broke")
        if self.delay:
            time.sleep(self.delay)
        n = min(len(b), self.limit - self.sent, MiB)
        b[:n] = b"s" * n
        self.sent += n
        return n


@rec.step("a source failing mid-upload: the CRT aborts the multipart upload, nothing left", needs=MB)
def _() -> None:
    sniffer.take()
    with quiet_stderr():
        r = crt(S3RequestType.PUT_OBJECT, "PUT", key_path("fail/broken.bin"), body=FailingSource(20 * MiB),
                check=False)
    expect(r.error is not None, "an upload whose source failed succeeded")
    time.sleep(0.5)
    ex = sniffer.take()
    aborts = [e for e in ex if e.method == "DELETE" and query_of(e).startswith("uploadId=")]
    expect(len(aborts) == 1 and aborts[0].status == 204, f"AbortMultipartUpload: {[(e.method, e.status) for e in ex]}")
    no_uploads_left()
    expect("Contents" not in admin.list_objects_v2(Bucket=B, Prefix="fail/"), "an object was created")


@rec.step("cancel() mid-upload: AWS_ERROR_S3_CANCELED, AbortMultipartUpload, nothing left", needs=MB)
def _() -> None:
    sniffer.take()
    r = crt(S3RequestType.PUT_OBJECT, "PUT", key_path("cancel/me.bin"), body=FailingSource(10**12, delay=0.02),
            check=False, cancel_after=0.3)
    expect(r.error is not None and "CANCELED" in str(getattr(r.error, "name", r.error)), f"cancelled upload: {r.error!r}")
    time.sleep(0.5)
    ex = sniffer.take()
    aborts = [e for e in ex if e.method == "DELETE" and query_of(e).startswith("uploadId=")]
    expect(len(aborts) == 1 and aborts[0].status == 204, f"AbortMultipartUpload: {[(e.method, e.status) for e in ex][-5:]}")
    no_uploads_left()
    expect("Contents" not in admin.list_objects_v2(Bucket=B, Prefix="cancel/"), "an object was created")


@rec.step("errors: GetObject 404 NoSuchKey, PutObject 404 NoSuchBucket, wrong secret 403 SignatureDoesNotMatch",
          needs=MB)
def _() -> None:
    def refused(r: Result, status: int, code: str, op: str, what: str) -> None:
        e = r.error
        got = (getattr(e, "status_code", None), r.code(), getattr(e, "operation_name", None))
        expect_equal(got, (status, code, op), what)

    refused(crt(S3RequestType.GET_OBJECT, "GET", key_path("missing/key"), check=False),
            404, "NoSuchKey", "GetObject", "GET of a missing key")
    small = W / "err.txt"
    small.write_bytes(b"x" * 100)
    refused(put_file("k", small, bucket=ep.bucket("crt-no-such-bucket"), check=False),
            404, "NoSuchBucket", "PutObject", "PUT into a missing bucket")
    wrong = crt_client(creds=AwsCredentialsProvider.new_static(ep.access_key, ep.secret_key + "x"))
    refused(crt(S3RequestType.GET_OBJECT, "GET", key_path("small/one.bin"), client=wrong, check=False),
            403, "SignatureDoesNotMatch", "GetObject", "GET with a wrong secret")
    r = put_file("big/refused.bin", BIG, client=wrong, check=False)
    refused(r, 403, "SignatureDoesNotMatch", "CreateMultipartUpload", "multipart PUT with a wrong secret")
    no_uploads_left()


ODD = "crt dir/\u00e9t\u00e9 + 100%.txt"


@rec.step("DEFAULT requests: PutObject, ListObjectsV2 (unsorted, encoded query), HeadObject, DeleteObject of a "
          "key needing encoding", needs=MB)
def _() -> None:
    data = b"an odd key through the CRT\n"
    default("PUT", key_path(ODD), "PutObject", headers=(("Content-Length", str(len(data))),),
            body=io.BytesIO(data))
    # The CRT's signer sorts and encodes the query itself (unlike curl 7.88's).
    q = f"prefix={quote('crt dir/', safe='')}&list-type=2&delimiter=%2F"
    r = default("GET", f"/{B}?{q}", "ListObjectsV2")
    expect(f"<Key>{ODD}</Key>".encode() in r.body, f"ListObjectsV2: {r.body[:600]!r}")
    r = default("HEAD", key_path(ODD), "HeadObject")
    expect_equal(r.headers.get("content-length"), str(len(data)), "HeadObject Content-Length")
    expect_equal(admin.get_object(Bucket=B, Key=ODD)["Body"].read(), data, "bytes (boto3)")
    default("DELETE", key_path(ODD), "DeleteObject")
    expect("Contents" not in admin.list_objects_v2(Bucket=B, Prefix="crt dir/"), "the key is still listed")


@rec.step("--workers 2 server: 40 MiB up and down (parts and ranges spread over processes)", needs=MB)
def _() -> None:
    if not os.environ.get("CONF_WORKERS_ENDPOINT"):
        raise Skip("no --workers endpoint")
    parts = urlsplit(os.environ["CONF_WORKERS_ENDPOINT"])
    wb = ep.bucket("crt-workers")
    wadmin = boto3.client("s3", endpoint_url=os.environ["CONF_WORKERS_ENDPOINT"], aws_access_key_id=ep.access_key,
                          aws_secret_access_key=ep.secret_key, region_name=ep.region,
                          config=botocore.config.Config(s3={"addressing_style": "path"}))
    wadmin.create_bucket(Bucket=wb)
    # A client of its own: an S3Client pools connections by host name, whatever the port, so
    # requests for another port of 127.0.0.1 would go to the connections it already has.
    client = crt_client()
    put_file("w/big.bin", BIG, S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32C, location=S3ChecksumLocation.TRAILER),
             bucket=wb, host=parts.netloc, client=client)
    out = W / "w.bin"
    get_file("w/big.bin", out, S3ChecksumConfig(validate_response=True), bucket=wb, host=parts.netloc, client=client)
    expect_equal(file_digest(out, "sha256"), BIG_SHA, "SHA-256 of the download")
    no_uploads_left(wb, wadmin)
    wadmin.delete_object(Bucket=wb, Key="w/big.bin")
    wadmin.delete_bucket(Bucket=wb)


@rec.step("https (s2n, trust store from the CA file): 40 MiB up and down; refused without the CA")
def _() -> None:
    if not ep.https_url:
        raise Skip("no https endpoint")
    if not ep.ca_bundle:
        raise Skip("no CA bundle for the https endpoint")
    host = urlsplit(ep.https_url).netloc
    tb = ep.bucket("crt-tls")
    tls = crt_client(tls_ca=ep.ca_bundle)
    default("PUT", f"/{tb}", "CreateBucket", client=tls, host=host, headers=(("Content-Length", "0"),))
    r = put_file("tls/big.bin", BIG, S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32,
                                                      location=S3ChecksumLocation.TRAILER),
                 bucket=tb, client=tls, host=host)
    expect_equal(r.headers.get("etag"), md5_parts(BIG), "ETag over https")
    out = W / "tls.bin"
    get_file("tls/big.bin", out, S3ChecksumConfig(validate_response=True), bucket=tb, client=tls, host=host)
    expect_equal(file_digest(out, "sha256"), BIG_SHA, "SHA-256 over https")
    untrusted = S3Client(bootstrap=BOOTSTRAP, region=ep.region, credential_provider=CREDS,
                         tls_mode=S3RequestTlsMode.ENABLED)
    r = crt(S3RequestType.GET_OBJECT, "GET", key_path("tls/big.bin", tb), client=untrusted, host=host, check=False)
    expect(r.error is not None and r.status == 0, f"the self-signed certificate was accepted without the CA: {r.error!r}")
    default("DELETE", key_path("tls/big.bin", tb), "DeleteObject", client=tls, host=host)
    default("DELETE", f"/{tb}", "DeleteBucket", client=tls, host=host)


@rec.step("s3transfer CRTTransferManager + botocore serializer (boto3's crt client): upload with metadata and "
          "CRC32C, download", needs=MB)
def _() -> None:
    tm_client = create_s3_crt_client(ep.region, crt_credentials_provider=CREDS, use_ssl=False, part_size=PART)
    serializer = BotocoreCRTRequestSerializer(botocore.session.Session(), {
        "endpoint_url": f"http://{HOST}", "region_name": ep.region, "aws_access_key_id": ep.access_key,
        "aws_secret_access_key": ep.secret_key, "config": botocore.config.Config(s3={"addressing_style": "path"}),
    })
    out = W / "tm.bin"
    sniffer.take()
    with CRTTransferManager(tm_client, serializer) as tm:
        tm.upload(str(BIG), B, "tm/big.bin", extra_args={
            "ContentType": "application/x-tm", "Metadata": {"via": "s3transfer"}, "ChecksumAlgorithm": "CRC32C",
        }).result(300)
        up = sniffer.take()
        tm.download(B, "tm/big.bin", str(out)).result(300)
        down = sniffer.take()
    check_multipart(up, 5, "upload")
    expect_equal(up[0].headers.get("x-amz-meta-via"), "s3transfer", "metadata on CreateMultipartUpload")
    check_ranged_gets(down, 0, BIG.stat().st_size, "download")
    expect_equal(file_digest(out, "sha256"), BIG_SHA, "SHA-256 of the download")
    head = admin.head_object(Bucket=B, Key="tm/big.bin", ChecksumMode="ENABLED")
    expect_equal((head["ETag"], head["ContentType"], head["Metadata"], head.get("ChecksumCRC32C")),
                 (md5_parts(BIG), "application/x-tm", {"via": "s3transfer"}, composite(BIG, "crc32c")), "HeadObject")
    no_uploads_left()


@rec.step("aws cli v2 (Debian) with s3.preferred_transfer_client = crt: cp 40 MiB up and down", needs=MB)
def _() -> None:
    if not Path(AWS).exists():
        raise Skip(f"no {AWS}")
    config = W / "aws-config"
    env = {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(W / "no-credentials"),
           "AWS_ACCESS_KEY_ID": ep.access_key, "AWS_SECRET_ACCESS_KEY": ep.secret_key,
           "AWS_DEFAULT_REGION": ep.region, "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": "",
           "HOME": str(W)}
    run([AWS, "configure", "set", "default.s3.preferred_transfer_client", "crt"], env=env)
    expect("preferred_transfer_client = crt" in config.read_text(), f"config: {config.read_text()}")
    try:
        # The aws cli's awscrt (0.16) connects to port 80 or 443 whatever port the endpoint names
        # (aws-c-s3 takes the port from the Host header since aws-c-s3#249): a forwarder on
        # 127.0.0.1:80 passes its requests, Host header and signature untouched, to the server.
        cli_sniffer = Sniffer((ep.host, ep.port), listen_port=80)
    except OSError as e:
        raise Skip(f"the aws cli's CRT (awscrt {debian_awscrt()}) only reaches port 80/443, and 127.0.0.1:80 "
                   f"cannot be bound here: {e}") from None
    try:
        out = W / "cli.bin"
        for args in (["cp", str(BIG), f"s3://{B}/cli/big.bin"], ["cp", f"s3://{B}/cli/big.bin", str(out)]):
            run([AWS, "--endpoint-url", ep.url, "s3", *args, "--no-progress"], env=env, timeout=600)
        ex = cli_sniffer.take()
    finally:
        cli_sniffer.close()
    expect(ex and all("CRTS3NativeClient" in e.headers.get("user-agent", "") for e in ex),
           f"requests not made by the CRT: {[e.headers.get('user-agent') for e in ex][:3]}")
    check_multipart([e for e in ex if e.method != "GET"], 5, "aws s3 cp up")
    check_ranged_gets(ex, 0, BIG.stat().st_size, "aws s3 cp down")
    expect_equal(file_digest(out, "sha256"), BIG_SHA, "SHA-256 of the download")
    expect_equal(admin.head_object(Bucket=B, Key="cli/big.bin")["ETag"], md5_parts(BIG), "ETag")
    no_uploads_left()


@rec.step("nothing left in ListMultipartUploads; delete every object and the bucket (DEFAULT requests)", needs=MB)
def _() -> None:
    no_uploads_left()
    keys = [o["Key"] for page in admin.get_paginator("list_objects_v2").paginate(Bucket=B)
            for o in page.get("Contents", [])]
    for key in keys:
        default("DELETE", key_path(key), "DeleteObject")
    expect("Contents" not in admin.list_objects_v2(Bucket=B), "objects left")
    default("DELETE", f"/{B}", "DeleteBucket")
    expect(B not in [b["Name"] for b in admin.list_buckets()["Buckets"]], f"{B} still listed")


sniffer.close()
