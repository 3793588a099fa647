"""SSE-C through the upstream cache, whose requests to the upstream carry the client's keys each in
its role: a copy's source key on the source, the written object's key on what it writes and on
its description of it afterwards; operations that take no key (ACLs, RestoreObject) work on an
SSE-C object as on any; and a refusal of the cache's own upstream credentials is said to be one,
key or no key. Real servers: an https upstream s3serve and an https cache in front of it."""

from __future__ import annotations

import base64
import os
import socket
import socketserver
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import REGION, Server, https_server, object_absent, start_server, stop_server
from tests.e2e.conftest import AWS, start_cache
from tests.e2e.test_sse_customer_keys import (
    C_KEY,
    KEY_REQUIRED,
    NOT_APPLICABLE,
    SSE,
    UNBLOCK,
    WRONG_KEY,
    _echo,
    _md5,
    _refused,
    _src,
    _sse,
    _ssec,
    new_open_bucket,
)

MiB = 1024 * 1024
REFUSED = "The upstream S3 refused s3serve's credentials (SignatureDoesNotMatch)."


@dataclass
class Stack:
    s3: Any  # the cache's client
    upstream: Any  # the upstream's own client
    up: Server
    cache: Server
    cache_root: Path
    upstream_ca: Path


def _client(srv: Server, root: Path) -> Any:
    return boto3.client(
        "s3", endpoint_url=srv.endpoint, aws_access_key_id=srv.access_key, aws_secret_access_key=srv.secret_key,
        region_name=REGION, verify=str(root / ".s3serve" / "tls" / "cert.pem"),
    )  # fmt: skip


def _https_cache(root: Path, up: Server, upstream_ca: Path, *extra: str) -> Server:
    root.mkdir()
    return start_cache(root, up, "--tls-self-signed", "--upstream-ca", str(upstream_ca), *extra)


@pytest.fixture(scope="module")
def stack(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if server.root is None:
        pytest.skip("starts servers of its own")
    base = tmp_path_factory.mktemp("ssec-through-cache")
    with https_server(base / "upstream") as (up, up_s3):
        upstream_ca = base / "upstream" / ".s3serve" / "tls" / "cert.pem"
        cache = _https_cache(base / "cache", up, upstream_ca)
        try:
            yield Stack(_client(cache, base / "cache"), up_s3, up, cache, base / "cache", upstream_ca)
        finally:
            stop_server(cache)


def _attributes_key(key: bytes) -> dict[str, str]:
    # botocore does not encode the key for GetObjectAttributes: given as S3 takes it.
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(key).decode(), "SSECustomerKeyMD5": _md5(key)}


def test_copies_between_keys_and_to_and_from_plain(stack: Stack) -> None:
    s3, upstream = stack.s3, stack.upstream
    name = new_open_bucket(s3)
    key, other = os.urandom(32), os.urandom(32)
    data = os.urandom(100_000)
    s3.put_object(Bucket=name, Key="src", Body=data, **_ssec(key))
    source = {"Bucket": name, "Key": "src"}
    # To SSE-C under another key: the source is read with its key, the copy written with its own.
    rekeyed = s3.copy_object(Bucket=name, Key="rekeyed", CopySource=source, **_src(key), **_ssec(other))
    assert _sse(rekeyed) == _echo(other)
    assert upstream.get_object(Bucket=name, Key="rekeyed", **_ssec(other))["Body"].read() == data
    assert s3.get_object(Bucket=name, Key="rekeyed", **_ssec(other))["Body"].read() == data
    # To a plain object: answered as the success it is (the copy is described without a key).
    plain = s3.copy_object(Bucket=name, Key="plain", CopySource=source, **_src(key))
    assert _sse(plain) == {SSE: "AES256"}
    assert s3.get_object(Bucket=name, Key="plain")["Body"].read() == data
    # A plain source to an SSE-C copy: no key goes with the source.
    made = s3.copy_object(Bucket=name, Key="made", CopySource={"Bucket": name, "Key": "plain"}, **_ssec(key))
    assert _sse(made) == _echo(key)
    assert s3.get_object(Bucket=name, Key="made", **_ssec(key))["Body"].read() == data
    # Onto itself with a new key, then with none.
    s3.copy_object(Bucket=name, Key="src", CopySource=source, **_src(key), **_ssec(other))
    assert s3.get_object(Bucket=name, Key="src", **_ssec(other))["Body"].read() == data
    s3.copy_object(Bucket=name, Key="src", CopySource=source, **_src(other))
    assert s3.get_object(Bucket=name, Key="src")["Body"].read() == data
    # Refused as S3 refuses them: the source's key where it has none, a wrong one, none.
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=name, Key="x", CopySource=source, **_src(key))
    assert _refused(exc) == (400, "InvalidRequest", NOT_APPLICABLE)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=name, Key="x", CopySource={"Bucket": name, "Key": "rekeyed"}, **_src(key), **_ssec(key))
    assert _refused(exc) == (403, "AccessDenied", WRONG_KEY)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=name, Key="x", CopySource={"Bucket": name, "Key": "rekeyed"}, **_ssec(key))
    assert _refused(exc) == (400, "InvalidRequest", KEY_REQUIRED)
    assert object_absent(upstream, name, "x")


def test_upload_part_copy_into_an_sse_c_upload(stack: Stack) -> None:
    s3 = stack.s3
    name = new_open_bucket(s3)
    key, other = os.urandom(32), os.urandom(32)
    big, small = os.urandom(5 * MiB + 1), os.urandom(3000)
    s3.put_object(Bucket=name, Key="big", Body=big, **_ssec(other))
    s3.put_object(Bucket=name, Key="small", Body=small)
    upload_id = s3.create_multipart_upload(Bucket=name, Key="mp", **_ssec(key))["UploadId"]
    # The whole of an SSE-C source under another key (its HEAD, which pins it, with its key).
    first = s3.upload_part_copy(
        Bucket=name, Key="mp", UploadId=upload_id, PartNumber=1, CopySource={"Bucket": name, "Key": "big"},
        **_ssec(key), **_src(other),
    )  # fmt: skip
    assert _sse(first) == _echo(key)
    # A range of a plain source.
    second = s3.upload_part_copy(
        Bucket=name, Key="mp", UploadId=upload_id, PartNumber=2, CopySource={"Bucket": name, "Key": "small"},
        CopySourceRange="bytes=1000-2999", **_ssec(key),
    )  # fmt: skip
    assert _sse(second) == _echo(key)
    parts = [
        {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]},
    ]
    s3.complete_multipart_upload(Bucket=name, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": parts}, **_ssec(key))
    assert s3.get_object(Bucket=name, Key="mp", **_ssec(key))["Body"].read() == big + small[1000:]
    assert stack.upstream.head_object(Bucket=name, Key="mp", **_ssec(key))["ContentLength"] == len(big) + 2000


def test_aws_cli_multipart_copy_from_one_key_to_another(stack: Stack, tmp_path: Path) -> None:
    s3 = stack.s3
    name = new_open_bucket(s3)
    key, other = os.urandom(32), os.urandom(32)
    data = os.urandom(6 * MiB)
    s3.put_object(Bucket=name, Key="big", Body=data, **_ssec(key))
    (tmp_path / "key").write_bytes(key)
    (tmp_path / "other").write_bytes(other)
    # Over 5 MB the cli copies by parts (UploadPartCopy), each carrying both keys.
    (tmp_path / "config").write_text("[default]\ns3 =\n  multipart_threshold = 5MB\n  multipart_chunksize = 5MB\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": stack.cache.access_key, "AWS_SECRET_ACCESS_KEY": stack.cache.secret_key,
        "AWS_DEFAULT_REGION": REGION, "AWS_PAGER": "", "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }  # fmt: skip
    command = [
        AWS, "--endpoint-url", stack.cache.endpoint, "--ca-bundle", str(stack.cache_root / ".s3serve" / "tls" / "cert.pem"),
        "s3", "cp", f"s3://{name}/big", f"s3://{name}/copied",
        "--sse-c-copy-source", "AES256", "--sse-c-copy-source-key", f"fileb://{tmp_path / 'key'}",
        "--sse-c", "AES256", "--sse-c-key", f"fileb://{tmp_path / 'other'}",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    copied = s3.get_object(Bucket=name, Key="copied", **_ssec(other))
    assert copied["Body"].read() == data
    assert copied["ETag"].strip('"').endswith("-2")


def test_rename_of_an_sse_c_object(stack: Stack) -> None:
    s3, upstream = stack.s3, stack.upstream
    name = new_open_bucket(s3)
    key = os.urandom(32)
    s3.put_object(Bucket=name, Key="a", Body=b"renamed", **_ssec(key))
    s3.put_object(Bucket=name, Key="b", Body=b"old b")
    assert (stack.cache_root / name / "a").exists() and (stack.cache_root / name / "b").exists()  # replicas
    # RenameObject takes no key: the upstream renames, and the cache's description of the
    # result, refused without the key, fails nothing.
    s3.rename_object(Bucket=name, Key="b", RenameSource=f"{name}/a")
    assert not (stack.cache_root / name / "a").exists() and not (stack.cache_root / name / "b").exists()
    assert upstream.get_object(Bucket=name, Key="b", **_ssec(key))["Body"].read() == b"renamed"
    assert object_absent(upstream, name, "a")
    assert s3.get_object(Bucket=name, Key="b", **_ssec(key))["Body"].read() == b"renamed"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=name, Key="a", **_ssec(key))
    assert _refused(exc)[:2] == (404, "NoSuchKey")


def test_acl_and_restore_of_an_sse_c_object_take_no_key(stack: Stack) -> None:
    s3, upstream = stack.s3, stack.upstream
    name = new_open_bucket(s3)
    s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    key = os.urandom(32)
    s3.put_object(Bucket=name, Key="kept", Body=b"x", **_ssec(key))  # a replica here
    upstream.put_object(Bucket=name, Key="remote", Body=b"y", **_ssec(key))  # none
    for object_key in ("kept", "remote"):
        grants = s3.get_object_acl(Bucket=name, Key=object_key)["Grants"]
        assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]
        s3.put_object_acl(Bucket=name, Key=object_key, ACL="private")
        # Not archived: refused as the upstream refuses it, not for want of a key.
        with pytest.raises(ClientError) as exc:
            s3.restore_object(Bucket=name, Key=object_key, RestoreRequest={"Days": 1})
        with pytest.raises(ClientError) as direct:
            upstream.restore_object(Bucket=name, Key=object_key, RestoreRequest={"Days": 1})
        assert _refused(exc) == _refused(direct) and _refused(exc)[1] == "InvalidObjectState"
    with pytest.raises(ClientError) as exc:
        s3.get_object_acl(Bucket=name, Key="missing")
    assert _refused(exc)[:2] == (404, "NoSuchKey")
    # A wrong key is still the key's fault (a HEAD's 403 has no body: the cache asks why).
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=name, Key="remote", ObjectAttributes=["ETag"], **_attributes_key(os.urandom(32)))
    assert _refused(exc) == (403, "AccessDenied", WRONG_KEY)


def test_a_refusal_of_the_caches_credentials_is_not_the_keys(stack: Stack) -> None:
    """A cache whose upstream secret is wrong (as when temporary keys expired): every request that
    reaches the upstream is refused for that, with a key as without one."""
    upstream = stack.upstream
    name = new_open_bucket(upstream)
    key = os.urandom(32)
    upstream.put_object(Bucket=name, Key="k", Body=b"data", **_ssec(key))
    root = stack.cache_root.parent / "misconfigured"
    cache = _https_cache(root, stack.up, stack.upstream_ca, "--upstream-secret-key", "not-the-secret")
    try:
        s3 = _client(cache, root)
        # The bucket's folder here already: the first request to reach the upstream is the HEAD.
        (root / name).mkdir()
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=name, Key="k", **_ssec(key))
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert "refused s3serve's credentials (SignatureDoesNotMatch" in cache.log_path.read_text()
        calls = [
            lambda: s3.get_object(Bucket=name, Key="k", **_ssec(key)),
            lambda: s3.get_object(Bucket=name, Key="k"),
            lambda: s3.get_object_attributes(Bucket=name, Key="k", ObjectAttributes=["ETag"], **_attributes_key(key)),
            lambda: s3.copy_object(Bucket=name, Key="c", CopySource={"Bucket": name, "Key": "k"}, **_src(key)),
            lambda: s3.copy_object(Bucket=name, Key="c", CopySource={"Bucket": name, "Key": "k"}, **_src(key), **_ssec(key)),
        ]
        for call in calls:
            with pytest.raises(ClientError) as exc:
                call()
            assert _refused(exc) == (403, "AccessDenied", REFUSED)
    finally:
        stop_server(cache)


# -- the round trip, and an http upstream ------------------------------------------------------


def test_through_the_cache(stack: Stack) -> None:
    s3, upstream = stack.s3, stack.upstream
    name = f"ssec-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    key = os.urandom(32)
    # The upstream's bucket blocks SSE-C, and the cache says so and refuses alike.
    rule = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=name, Key="k", Body=b"x", **_ssec(key))
    assert _refused(exc)[:2] == (403, "AccessDenied")
    # Unblocked through the cache: the upstream's bucket is.
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=UNBLOCK)
    assert upstream.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]["BlockedEncryptionTypes"] == {
        "EncryptionType": ["NONE"]
    }
    data = os.urandom(200_000)
    put = s3.put_object(Bucket=name, Key="k", Body=data, **_ssec(key))
    assert _sse(put) == _echo(key)
    # The upstream has it under the key.
    assert upstream.get_object(Bucket=name, Key="k", **_ssec(key))["Body"].read() == data
    with pytest.raises(ClientError):
        upstream.get_object(Bucket=name, Key="k")
    # Read through the cache (served by its replica, or filled from the upstream), key enforced.
    for _ in range(2):
        got = s3.get_object(Bucket=name, Key="k", **_ssec(key))
        assert (got["Body"].read(), _sse(got)) == (data, _echo(key))
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=name, Key="k")
        assert _refused(exc) == (400, "InvalidRequest", KEY_REQUIRED)
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=name, Key="k", **_ssec(os.urandom(32)))
        assert _refused(exc)[:2] == (403, "AccessDenied")
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=name, Key="k", **_ssec(os.urandom(32)))
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert s3.head_object(Bucket=name, Key="k", **_ssec(key))["ContentLength"] == len(data)
    # Written on the upstream directly, read through the cache (a fill).
    upstream.put_object(Bucket=name, Key="direct", Body=b"direct", **_ssec(key))
    assert s3.get_object(Bucket=name, Key="direct", **_ssec(key))["Body"].read() == b"direct"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=name, Key="direct", **_ssec(os.urandom(32)))
    assert _refused(exc)[:2] == (403, "AccessDenied")
    # Copy and multipart through the cache.
    s3.copy_object(Bucket=name, Key="copy", CopySource={"Bucket": name, "Key": "k"}, **_src(key), **_ssec(key))
    assert s3.get_object(Bucket=name, Key="copy", **_ssec(key))["Body"].read() == data
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=name, Key="copy2", CopySource={"Bucket": name, "Key": "k"})
    assert _refused(exc)[:2] == (400, "InvalidRequest")
    upload_id = s3.create_multipart_upload(Bucket=name, Key="mp", **_ssec(key))["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=name, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert _refused(exc)[:2] == (400, "InvalidRequest")
    part = s3.upload_part(Bucket=name, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"part", **_ssec(key))
    s3.complete_multipart_upload(
        Bucket=name, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}, **_ssec(key)
    )
    assert s3.get_object(Bucket=name, Key="mp", **_ssec(key))["Body"].read() == b"part"
    with pytest.raises(ClientError):
        s3.get_object(Bucket=name, Key="mp")


class _Relay(socketserver.ThreadingTCPServer):
    """A loopback relay to ``target`` that keeps every byte sent through it."""

    daemon_threads = True

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.sent = target, bytearray()
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with socket.create_connection(relay.target) as up:
                    back = threading.Thread(target=_pipe, args=(up, self.request, None), daemon=True)
                    back.start()
                    _pipe(self.request, up, relay.sent)
                    back.join(5)

        super().__init__(("127.0.0.1", 0), Handler)


def _pipe(src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
    try:
        while data := src.recv(65536):
            if keep is not None:
                keep += data
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def test_cache_never_sends_a_customer_key_to_an_http_upstream(server: Server, tmp_path: Path) -> None:
    """S3 refuses SSE-C over http, but only once the key has crossed the network: a cache whose
    upstream is http:// refuses such a request itself, and the key never leaves it."""
    if server.root is None:
        pytest.skip("starts servers of its own")
    up = start_server(tmp_path / "upstream", "--no-fsync", access_key="up-key", secret_key="up-secret")
    relay = _Relay(("127.0.0.1", int(up.endpoint.rsplit(":", 1)[1])))
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        via = Server(f"http://127.0.0.1:{relay.server_address[1]}", up.access_key, up.secret_key, None)
        cache_root = tmp_path / "cache"
        cache_root.mkdir()
        cache = start_cache(cache_root, via, "--tls-self-signed")
        try:
            s3 = boto3.client(
                "s3", endpoint_url=cache.endpoint, aws_access_key_id=cache.access_key, aws_secret_access_key=cache.secret_key,
                region_name=REGION, verify=str(cache_root / ".s3serve" / "tls" / "cert.pem"),
            )  # fmt: skip
            s3.create_bucket(Bucket="plain-up")
            s3.put_object(Bucket="plain-up", Key="plain", Body=b"plain")
            key = os.urandom(32)
            for call in (
                lambda: s3.put_object(Bucket="plain-up", Key="secret", Body=b"x", **_ssec(key)),
                lambda: s3.get_object(Bucket="plain-up", Key="plain", **_ssec(key)),
                lambda: s3.head_object(Bucket="plain-up", Key="plain", **_ssec(key)),
            ):
                with pytest.raises(ClientError) as exc:
                    call()
                assert _refused(exc)[0] == 400  # InvalidRequest; a HEAD's answer has no body to say so
            assert b"plain-up" in relay.sent  # the relay did carry the cache's requests
            sent = bytes(relay.sent).lower()
            assert C_KEY.encode() not in sent and base64.b64encode(key) not in bytes(relay.sent)
            assert object_absent(s3, "plain-up", "secret")
        finally:
            stop_server(cache)
    finally:
        relay.shutdown()
        relay.server_close()
        stop_server(up)
