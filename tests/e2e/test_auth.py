"""Authentication and wire-level behaviour against a live server: SigV4/SigV2 (header and presigned),
aws-chunked bodies, Expect: 100-continue, error shapes and common headers."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import socket
import time
import uuid
import zlib
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from s3serve.sigv4 import sign, signing_key
from tests.conftest import REGION, FixedPayloadAuth, http, signed, start_server, stop_server

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _client(server, **kwargs):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=kwargs.pop("access_key", server.access_key),
        aws_secret_access_key=kwargs.pop("secret_key", server.secret_key),
        region_name=kwargs.pop("region", REGION),
        config=Config(**kwargs) if kwargs else None,
    )


def test_presigned_get_put_default_signature(s3, bucket: str) -> None:
    # boto3's default presigned URL for a custom endpoint in us-east-1 is SigV2.
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p k"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url or "X-Amz-Signature=" in url
    r = http("PUT", url, body=b"presigned body")
    assert r.status == 200, r.data
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p k"}, ExpiresIn=300)
    r = http("GET", url)
    assert r.status == 200 and r.data == b"presigned body"


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_presigned_explicit_versions(server, bucket: str, signature_version: str) -> None:
    s3 = _client(server, signature_version=signature_version)
    s3.put_object(Bucket=bucket, Key="k+1 ü", Body=b"abc")
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "k+1 ü", "ResponseContentDisposition": "attachment; filename=x"},
        ExpiresIn=60,
    )
    assert ("X-Amz-Algorithm=AWS4-HMAC-SHA256" in url) == (signature_version == "s3v4")
    r = http("GET", url)
    assert r.status == 200, r.data
    assert r.data == b"abc"
    assert r.headers["Content-Disposition"] == "attachment; filename=x"
    # Tampering with the URL breaks the signature.
    r = http("GET", url.replace("attachment", "inline"))
    assert r.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in r.data


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_presigned_expiry(server, bucket: str, signature_version: str) -> None:
    s3 = _client(server, signature_version=signature_version)
    s3.put_object(Bucket=bucket, Key="e", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=1)
    time.sleep(2.1)
    r = http("GET", url)
    assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.data
    assert b"Request has expired" in r.data


def test_presigned_v4_expiry_limit(server, bucket: str) -> None:
    s3 = _client(server, signature_version="s3v4")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=604801)
    r = http("GET", url)
    assert r.status in (400, 403)
    assert b"<Code>AuthorizationQueryParametersError</Code>" in r.data or b"<Code>AccessDenied</Code>" in r.data


def test_wrong_secret(server, bucket: str) -> None:
    s3 = _client(server, secret_key="wrong-secret")
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket)
    assert _error(exc) == ("SignatureDoesNotMatch", 403)
    # S3 puts the string it signed into the error body so clients can debug.
    assert exc.value.response["Error"]["StringToSign"].startswith("AWS4-HMAC-SHA256\n")


def test_unknown_access_key(server, bucket: str) -> None:
    s3 = _client(server, access_key="nobody")
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket)
    assert _error(exc) == ("InvalidAccessKeyId", 403)


def test_any_region_in_the_scope_is_accepted(server, bucket: str) -> None:
    s3 = _client(server, region="eu-central-1")
    s3.put_object(Bucket=bucket, Key="r", Body=b"x")
    assert s3.get_object(Bucket=bucket, Key="r")["Body"].read() == b"x"


def test_request_time_too_skewed(server, bucket: str) -> None:
    skewed = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)

    def clock(remove_tzinfo: bool = True) -> datetime.datetime:
        return skewed.replace(tzinfo=None) if remove_tzinfo else skewed

    # botocore signs with awscrt when it is installed, else with its own signer: skew both clocks.
    with mock.patch("botocore.auth.get_current_datetime", clock), mock.patch("botocore.crt.auth.get_current_datetime", clock):
        s3 = _client(server, retries={"max_attempts": 1})
        with pytest.raises(ClientError) as exc:
            s3.list_objects_v2(Bucket=bucket)
    assert _error(exc) == ("RequestTimeTooSkewed", 403)


def test_sigv2_header_auth(server, bucket: str) -> None:
    s3 = _client(server, signature_version="s3")
    s3.put_object(Bucket=bucket, Key="v2 key", Body=b"v2", Metadata={"m": "1"})
    got = s3.get_object(Bucket=bucket, Key="v2 key")
    assert got["Body"].read() == b"v2" and got["Metadata"] == {"m": "1"}
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == ["v2 key"]
    bad = _client(server, signature_version="s3", secret_key="nope")
    with pytest.raises(ClientError) as exc:
        bad.get_object(Bucket=bucket, Key="v2 key")
    assert _error(exc) == ("SignatureDoesNotMatch", 403)


def test_anonymous_is_denied(server, bucket: str) -> None:
    r = http("GET", f"{server.endpoint}/{bucket}")
    assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.data


def test_payload_sha256_mismatch(server, bucket: str) -> None:
    r = signed(server, "PUT", f"/{bucket}/sha", body=b"actual", payload_hash=hashlib.sha256(b"claimed").hexdigest())
    assert r.status == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in r.data
    r = signed(server, "HEAD", f"/{bucket}/sha")
    assert r.status == 404


def test_unsigned_payload(server, bucket: str) -> None:
    r = signed(server, "PUT", f"/{bucket}/unsigned", body=b"free", payload_hash="UNSIGNED-PAYLOAD")
    assert r.status == 200, r.data
    assert signed(server, "GET", f"/{bucket}/unsigned").data == b"free"


def _streaming_put(server, path: str, chunks: list[bytes], *, trailer: dict[str, str] | None = None, corrupt: int | None = None):  # type: ignore[no-untyped-def]
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) PUT: seed signed by botocore, chunks signed per the spec."""
    data = b"".join(chunks)
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    # The zero-size chunk is followed by the trailer lines directly, or by the final empty line.
    frames_len = sum(len(f"{len(c):x};chunk-signature={'0' * 64}\r\n") + len(c) + 2 for c in chunks)
    frames_len += len(f"0;chunk-signature={'0' * 64}\r\n") + (0 if trailer else 2)
    trailer_lines = "".join(f"{k}:{v}\n" for k, v in (trailer or {}).items())
    if trailer:
        frames_len += len(trailer_lines.replace("\n", "\r\n")) + len(f"x-amz-trailer-signature:{'0' * 64}\r\n") + 2
    headers = {
        "x-amz-content-sha256": mode,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "content-length": str(frames_len),
    }
    if trailer:
        headers["x-amz-trailer"] = ",".join(trailer)
    request = AWSRequest(method="PUT", url=server.endpoint + path, headers=headers)
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    authz = request.headers["Authorization"]
    seed = authz.rsplit("Signature=", 1)[1]
    amz_date = request.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    key = signing_key(server.secret_key, amz_date[:8], REGION)
    body = b""
    previous = seed
    for index, chunk in enumerate(chunks + [b""]):
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256, hashlib.sha256(chunk).hexdigest()]
        )
        signature = sign(key, sts)
        if corrupt == index:
            signature = ("0" if signature[0] != "0" else "1") + signature[1:]
        body += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk
        body += b"" if (trailer and not chunk) else b"\r\n"
        previous = signature
    if trailer:
        body += trailer_lines.replace("\n", "\r\n").encode()
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous, hashlib.sha256(trailer_lines.encode()).hexdigest()]
        )
        body += f"x-amz-trailer-signature:{sign(key, sts)}\r\n\r\n".encode()
    assert len(body) == frames_len
    sent = dict(request.headers.items())
    conn = urllib3_pool(server)
    return conn.urlopen("PUT", path, body=body, headers=sent, retries=False, assert_same_host=False)


def urllib3_pool(server):  # type: ignore[no-untyped-def]
    import urllib3

    return urllib3.PoolManager(cert_reqs="CERT_NONE").connection_from_url(server.endpoint)


def test_streaming_signed_chunks(server, s3, bucket: str) -> None:
    chunks = [b"a" * 65536, b"b" * 65536, b"tail"]
    r = _streaming_put(server, f"/{bucket}/chunked", chunks)
    assert r.status == 200, r.data
    got = s3.get_object(Bucket=bucket, Key="chunked")
    assert got["Body"].read() == b"".join(chunks)
    assert "ContentEncoding" not in got  # aws-chunked is framing, not stored


def test_streaming_signed_chunks_with_trailer(server, s3, bucket: str) -> None:
    chunks = [b"x" * 70000, b"yz"]
    crc = base64.b64encode(zlib.crc32(b"".join(chunks)).to_bytes(4, "big")).decode()
    r = _streaming_put(server, f"/{bucket}/trailer", chunks, trailer={"x-amz-checksum-crc32": crc})
    assert r.status == 200, r.data
    head = s3.head_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc


def test_streaming_bad_chunk_signature(server, s3, bucket: str) -> None:
    r = _streaming_put(server, f"/{bucket}/bad", [b"a" * 65536, b"b"], corrupt=1)
    assert r.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in r.data
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bad")


def test_streaming_bad_trailer_checksum(server, s3, bucket: str) -> None:
    wrong = base64.b64encode(zlib.crc32(b"else").to_bytes(4, "big")).decode()
    r = _streaming_put(server, f"/{bucket}/badcrc", [b"q" * 9000], trailer={"x-amz-checksum-crc32": wrong})
    assert r.status == 400 and b"<Code>BadDigest</Code>" in r.data
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="badcrc")


def test_expect_100_continue_rejects_before_body(server, bucket: str) -> None:
    """A bad signature is refused right after the headers: the client never sends the body."""
    request = AWSRequest(
        method="PUT",
        url=f"{server.endpoint}/{bucket}/expect",
        headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": "1048576", "Expect": "100-continue"},
    )
    FixedPayloadAuth(Credentials(server.access_key, "wrong"), "s3", REGION).add_auth(request)
    parts = urlsplit(server.endpoint)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        head = f"PUT /{bucket}/expect HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
        sock.sendall(head.encode())
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"SignatureDoesNotMatch" in answer
    # And a good signature gets 100 Continue, then the upload completes.
    request = AWSRequest(
        method="PUT",
        url=f"{server.endpoint}/{bucket}/expect",
        headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": "5", "Expect": "100-continue"},
    )
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        head = f"PUT /{bucket}/expect HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
        sock.sendall(head.encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hello")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_common_headers_and_head_errors(server, s3, bucket: str) -> None:
    r = signed(server, "GET", f"/{bucket}?list-type=2")
    assert r.status == 200
    for name in ("x-amz-request-id", "x-amz-id-2", "Server", "Date"):
        assert r.headers.get(name), name
    r = signed(server, "HEAD", f"/{bucket}/absent")
    assert r.status == 404 and r.data == b""
    assert r.headers.get("x-amz-request-id")
    r = signed(server, "GET", f"/{bucket}/absent")
    assert r.status == 404
    assert b"<Code>NoSuchKey</Code>" in r.data and b"<Key>absent</Key>" in r.data and b"<RequestId>" in r.data


def test_not_implemented_names_the_operation(server, bucket: str) -> None:
    r = signed(server, "GET", f"/{bucket}?metadataTable")
    assert r.status == 501
    assert b"<Code>NotImplemented</Code>" in r.data and b"GetBucketMetadataTableConfiguration" in r.data
    r = signed(server, "PATCH", f"/{bucket}/x")
    assert r.status == 405 and b"<Code>MethodNotAllowed</Code>" in r.data


def test_chunked_plain_body_is_not_implemented(server, bucket: str) -> None:
    """S3 takes Transfer-Encoding only around an aws-chunked body (aws-sdk-js-v3#4979, knox#43)."""
    parts = urlsplit(server.endpoint)
    request = AWSRequest(method="PUT", url=f"{server.endpoint}/{bucket}/nolen", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Transfer-Encoding": "chunked"})
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        head = f"PUT /{bucket}/nolen HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
        sock.sendall(head.encode() + b"5\r\nhello\r\n0\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 501"), answer[:300]
    assert b"<Code>NotImplemented</Code>" in answer and b"<Header>Transfer-Encoding</Header>" in answer


def test_truncated_body_leaves_nothing(server, s3, bucket: str) -> None:
    parts = urlsplit(server.endpoint)
    request = AWSRequest(method="PUT", url=f"{server.endpoint}/{bucket}/short", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": "100000"})
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        head = f"PUT /{bucket}/short HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
        sock.sendall(head.encode() + b"x" * 5000)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(65536)
    # The server notices the closed connection and drops the temp file (polled: a loaded machine is slow).
    tmp_dir = server.root / ".s3serve" / "tmp" if server.root is not None else None
    deadline = time.monotonic() + 10
    while tmp_dir is not None and list(tmp_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="short")
    assert _error(exc)[1] == 404
    if tmp_dir is not None:
        assert list(tmp_dir.iterdir()) == []


@pytest.fixture(scope="module")
def two_users(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("users")
    users = base / "users.json"
    users.write_text(
        json.dumps(
            {
                "users": [
                    {"access_key": "alice", "secret_key": "alice-secret", "display_name": "Alice"},
                    {"access_key": "bob", "secret_key": "bob-secret", "display_name": "Bob", "user_id": "b0b"},
                ]
            }
        )
    )
    root = base / "root"
    root.mkdir()
    srv = start_server(root, "--credentials", str(users), access_key="", secret_key="")
    yield srv
    stop_server(srv)


def test_buckets_belong_to_their_creator(two_users) -> None:  # type: ignore[no-untyped-def]
    alice = _client(two_users, access_key="alice", secret_key="alice-secret")
    bob = _client(two_users, access_key="bob", secret_key="bob-secret")
    name = f"alice-{uuid.uuid4().hex[:8]}"
    alice.create_bucket(Bucket=name)
    alice.put_object(Bucket=name, Key="k", Body=b"alice's")
    with pytest.raises(ClientError) as exc:
        bob.get_object(Bucket=name, Key="k")
    assert _error(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        bob.put_object(Bucket=name, Key="k", Body=b"bob's")
    assert _error(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        bob.create_bucket(Bucket=name)
    assert _error(exc) == ("BucketAlreadyExists", 409)
    assert name not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    owner = alice.list_buckets()["Owner"]
    assert owner["DisplayName"] == "Alice"
    assert bob.list_buckets()["Owner"]["ID"] == "b0b"
    assert alice.get_object(Bucket=name, Key="k")["Body"].read() == b"alice's"
