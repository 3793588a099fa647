"""RemoteBackend, the upstream S3 client of the cache mode, driven directly against real servers on
loopback: a second s3serve (every check) and moto's server (the checks moto can answer). Bytes,
metadata and listings are compared with what boto3 sees on the same server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from s3serve import errors
from s3serve.storage.base import HeaderPrecondition, ObjectInfo, PartInfo, WriteMeta
from s3serve.storage.remote import RemoteBackend
from s3serve.storage.spool import FileBody
from tests.conftest import Server, free_port, start_server, stop_server
from tests.e2e.fake_upstream import LoopbackApp

MIB = 1024 * 1024
ODD_KEY = "a b+c%25/é~x"


@pytest.fixture(scope="module")
def s3serve_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("upstream") / "root"
    root.mkdir()
    server = start_server(root, "--no-fsync")
    yield server
    stop_server(server)


@pytest.fixture
def moto_upstream(moto: Server) -> Server:
    return moto


@pytest.fixture(params=["s3serve", "moto"])
def upstream(request: pytest.FixtureRequest) -> Server:
    """The checks both servers answer alike run against each."""
    server: Server = request.getfixturevalue(f"{request.param}_upstream")
    return server


async def _backend(server: Server, **options: Any) -> AsyncIterator[RemoteBackend]:
    backend = RemoteBackend(server.endpoint, server.access_key, server.secret_key, **options)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


@pytest.fixture
async def remote(upstream: Server) -> AsyncIterator[RemoteBackend]:
    async for backend in _backend(upstream):
        yield backend


@pytest.fixture
async def local_remote(s3serve_upstream: Server) -> AsyncIterator[RemoteBackend]:
    async for backend in _backend(s3serve_upstream):
        yield backend


def _new_bucket(server: Server) -> str:
    name = f"remote-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name


@pytest.fixture
def bucket(upstream: Server) -> str:
    return _new_bucket(upstream)


@pytest.fixture
def local_bucket(s3serve_upstream: Server) -> str:
    return _new_bucket(s3serve_upstream)


@pytest.fixture
def make_body(tmp_path: Path) -> Any:
    """A spooled, verified body as the cache hands it to RemoteBackend."""

    def make(data: bytes, checksums: dict[str, str] | None = None, md5: bytes | None = None) -> FileBody:
        path = tmp_path / uuid.uuid4().hex
        path.write_bytes(data)
        return FileBody(str(path), len(data), md5 if md5 is not None else hashlib.md5(data).digest(), checksums or {})

    return make


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


async def read_all(remote: RemoteBackend, bucket: str, key: str) -> bytes:
    reader = await remote.open_object(bucket, key)
    try:
        return b"".join([chunk async for chunk in reader.iter_range(0, reader.info.size)])
    finally:
        reader.close()


# -- on both servers -----------------------------------------------------------------------------


async def test_put_head_open_and_ranges(remote: RemoteBackend, upstream: Server, bucket: str, make_body: Any) -> None:
    data = os.urandom(MIB + 12345)
    meta = WriteMeta(
        headers={"content-type": "text/x-test", "cache-control": "no-cache", "content-disposition": "inline"},
        user_meta={"colour": "blue", "n": "1"},
        tags={"team": "a b", "x": "1+1"},
    )
    put = await remote.put_object(bucket, ODD_KEY, make_body(data, {"CRC32": crc32(data)}), meta)
    assert (put.size, put.etag, put.checksums, put.tag_count) == (len(data), hashlib.md5(data).hexdigest(), {"CRC32": crc32(data)}, 2)
    assert put.last_modified > 0

    head = await remote.head_object(bucket, ODD_KEY)
    assert (head.key, head.size, head.etag) == (ODD_KEY, len(data), put.etag)
    assert head.headers == meta.headers
    assert head.user_meta == meta.user_meta
    assert head.checksums["CRC32"] == crc32(data)
    assert head.storage_class == "STANDARD" and not head.is_folder
    assert abs(head.last_modified - put.last_modified) <= 2

    got = upstream.client().get_object(Bucket=bucket, Key=ODD_KEY)  # type: ignore[attr-defined]
    assert got["Body"].read() == data and got["Metadata"] == meta.user_meta and got["ContentType"] == "text/x-test"
    assert await remote.get_object_tagging(bucket, ODD_KEY) == meta.tags

    reader = await remote.open_object(bucket, ODD_KEY)
    assert reader.fileno() is None and reader.info.etag == put.etag and reader.info.size == len(data)
    assert reader.info.tag_count == 2  # GET says it; HEAD does not, on S3 either
    assert b"".join([c async for c in reader.iter_range(0, len(data))]) == data
    for offset, length in ((0, 1), (1, 1000), (MIB - 3, 10000), (len(data) - 7, 7), (5, 0)):
        assert b"".join([c async for c in reader.iter_range(offset, length)]) == data[offset : offset + length]
    reader.close()
    reader.close()

    # A range first: the whole-object answer opened by open_object is released unread.
    reader = await remote.open_object(bucket, ODD_KEY)
    assert b"".join([c async for c in reader.iter_range(10, 10)]) == data[10:20]
    reader.close()

    await remote.delete_object(bucket, ODD_KEY)
    await remote.delete_object(bucket, ODD_KEY)  # absent: still no error
    with pytest.raises(errors.NoSuchKey):
        await remote.head_object(bucket, ODD_KEY)


async def test_reader_of_a_replaced_object_fails_instead_of_stitching(
    remote: RemoteBackend, upstream: Server, bucket: str, make_body: Any
) -> None:
    await remote.put_object(bucket, "k", make_body(b"0123456789"), WriteMeta())
    reader = await remote.open_object(bucket, "k")
    assert b"".join([c async for c in reader.iter_range(0, 5)]) == b"01234"
    upstream.client().put_object(Bucket=bucket, Key="k", Body=b"abcdefghij")  # type: ignore[attr-defined]
    with pytest.raises(errors.PreconditionFailed):
        b"".join([c async for c in reader.iter_range(5, 5)])
    reader.close()


async def test_empty_object_and_folder_marker(remote: RemoteBackend, bucket: str, make_body: Any) -> None:
    await remote.put_object(bucket, "folder/", make_body(b""), WriteMeta())
    head = await remote.head_object(bucket, "folder/")
    assert head.is_folder and head.size == 0
    assert await read_all(remote, bucket, "folder/") == b""


async def test_missing_key_and_bucket(remote: RemoteBackend, bucket: str) -> None:
    with pytest.raises(errors.NoSuchKey):
        await remote.open_object(bucket, "absent")
    with pytest.raises(errors.NoSuchKey):
        await remote.head_object(bucket, "absent")
    with pytest.raises(errors.NoSuchBucket):
        await remote.list_objects(f"absent-{uuid.uuid4().hex[:8]}", "", "", "", 10)
    with pytest.raises(errors.NoSuchBucket):
        await remote.head_bucket(f"absent-{uuid.uuid4().hex[:8]}")


async def test_if_none_match_refuses_an_existing_key(remote: RemoteBackend, bucket: str, make_body: Any) -> None:
    await remote.put_object(bucket, "k", make_body(b"one"), WriteMeta())
    calls: list[ObjectInfo | None] = []
    condition = HeaderPrecondition(calls.append, {"If-None-Match": "*"})
    with pytest.raises(errors.PreconditionFailed):
        await remote.put_object(bucket, "k", make_body(b"two"), WriteMeta(), condition)
    assert calls == []  # the upstream checked it, not a HEAD here
    assert await read_all(remote, bucket, "k") == b"one"
    await remote.put_object(bucket, "new", make_body(b"three"), WriteMeta(), condition)
    assert await read_all(remote, bucket, "new") == b"three"


async def test_copy_with_and_without_new_metadata(remote: RemoteBackend, bucket: str, make_body: Any) -> None:
    meta = WriteMeta(headers={"content-type": "text/a"}, user_meta={"m": "1"}, tags={"t": "1"})
    src = await remote.put_object(bucket, "src", make_body(b"copy me"), meta)

    same = await remote.copy_object(bucket, "src", bucket, "same", None)
    assert (same.etag, same.size, same.headers["content-type"], same.user_meta) == (src.etag, 7, "text/a", {"m": "1"})
    assert await remote.get_object_tagging(bucket, "same") == {"t": "1"}

    new = WriteMeta(headers={"content-type": "text/b"}, user_meta={"other": "2"}, tags={})
    replaced = await remote.copy_object(bucket, "src", bucket, "replaced", new)
    assert (replaced.headers["content-type"], replaced.user_meta) == ("text/b", {"other": "2"})
    assert await remote.get_object_tagging(bucket, "replaced") == {}
    assert await read_all(remote, bucket, "replaced") == b"copy me"

    # Given as the handler builds it (or with RenameObject's prefix): sent as x-amz-copy-source-*.
    for name in ("x-amz-copy-source-if-none-match", "x-amz-rename-source-if-none-match"):
        unchanged = HeaderPrecondition(lambda current: None, {name: f'"{src.etag}"'})
        with pytest.raises(errors.PreconditionFailed):
            await remote.copy_object(bucket, "src", bucket, "never", None, src_precondition=unchanged)
    with pytest.raises(errors.NoSuchKey):
        await remote.copy_object(bucket, "absent", bucket, "never", None)


async def test_tagging(remote: RemoteBackend, bucket: str, make_body: Any) -> None:
    await remote.put_object(bucket, "t", make_body(b"x"), WriteMeta())
    assert await remote.get_object_tagging(bucket, "t") == {}
    await remote.put_object_tagging(bucket, "t", {"a": "1", "b c": "d e"})
    assert await remote.get_object_tagging(bucket, "t") == {"a": "1", "b c": "d e"}
    reader = await remote.open_object(bucket, "t")
    assert reader.info.tag_count == 2
    reader.close()
    await remote.delete_object_tagging(bucket, "t")
    assert await remote.get_object_tagging(bucket, "t") == {}


LIST_KEYS = ["a.c", "a/b", "a/c/d", "a/e", "a+b", "b", "c/1", "c/2", "c/3/x", "d", "p q/r", "é"]


def _boto_listing(server: Server, bucket: str, prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    prefixes: list[str] = []
    paginator = server.client().get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter=delimiter):
        keys += [item["Key"] for item in page.get("Contents", [])]
        prefixes += [item["Prefix"] for item in page.get("CommonPrefixes", [])]
    return keys, prefixes


async def test_listing_pages_across_common_prefixes(
    remote: RemoteBackend, upstream: Server, bucket: str, make_body: Any
) -> None:
    for key in LIST_KEYS:
        await remote.put_object(bucket, key, make_body(key.encode()), WriteMeta())
    for prefix, delimiter in (("", "/"), ("", ""), ("a/", "/"), ("c", "/")):
        for max_keys in (1, 2, 3, 1000):
            keys: list[str] = []
            prefixes: list[str] = []
            marker = ""
            while True:
                page = await remote.list_objects(bucket, prefix, delimiter, marker, max_keys)
                assert len(page.objects) + len(page.common_prefixes) <= max_keys
                keys += [obj.key for obj in page.objects]
                prefixes += page.common_prefixes
                if not page.is_truncated:
                    break
                assert page.next_marker is not None and page.next_marker > marker
                marker = page.next_marker
            assert (keys, prefixes) == _boto_listing(upstream, bucket, prefix, delimiter), (prefix, delimiter, max_keys)
    page = await remote.list_objects(bucket, "", "", "", 1000)
    first = page.objects[0]
    assert (first.key, first.size, first.etag) == ("a+b", 3, hashlib.md5(b"a+b").hexdigest())
    assert first.last_modified > 0
    # A listing names the algorithms of the checksums a HEAD gives the values of.
    assert first.checksums == dict.fromkeys((await remote.head_object(bucket, "a+b")).checksums, "")


async def test_multipart_upload(remote: RemoteBackend, upstream: Server, bucket: str, make_body: Any) -> None:
    part1, part2 = os.urandom(5 * MIB), os.urandom(1000)
    meta = WriteMeta(headers={"content-type": "video/x-test"}, user_meta={"who": "mp"})
    upload = await remote.create_multipart_upload(bucket, "big", meta, "owner")
    assert upload.upload_id and upload.key == "big"
    p1 = await remote.upload_part(bucket, "big", upload.upload_id, 1, make_body(part1))
    p2 = await remote.upload_part(bucket, "big", upload.upload_id, 2, make_body(part2))
    assert (p1.number, p1.size, p1.etag) == (1, len(part1), hashlib.md5(part1).hexdigest())

    listed = await remote.list_parts(bucket, "big", upload.upload_id, 0, 1000)
    assert [(p.number, p.size, p.etag) for p in listed.parts] == [(1, p1.size, p1.etag), (2, p2.size, p2.etag)]
    assert not listed.is_truncated
    paged = await remote.list_parts(bucket, "big", upload.upload_id, 0, 1)
    assert [p.number for p in paged.parts] == [1] and paged.is_truncated and paged.next_part_number_marker == 1
    uploads = await remote.list_multipart_uploads(bucket, "", "", "", "", 1000)
    assert [(u.key, u.upload_id) for u in uploads.uploads] == [("big", upload.upload_id)]

    info = await remote.complete_multipart_upload(bucket, "big", upload.upload_id, [p1, p2])
    digest = hashlib.md5(bytes.fromhex(p1.etag) + bytes.fromhex(p2.etag)).hexdigest()
    assert (info.etag, info.size, info.user_meta, info.headers["content-type"]) == (f"{digest}-2", 5 * MIB + 1000, {"who": "mp"}, "video/x-test")
    assert await read_all(remote, bucket, "big") == part1 + part2
    reader = await remote.open_object(bucket, "big")
    assert b"".join([c async for c in reader.iter_range(5 * MIB - 10, 20)]) == (part1 + part2)[5 * MIB - 10 : 5 * MIB + 10]
    reader.close()
    if upstream.root is None:  # moto lists no parts: they come from one HEAD each, which is bounded
        assert await remote.object_parts(bucket, "big", info.etag, max_heads=1) is None
    parts = await remote.object_parts(bucket, "big", info.etag)
    assert parts is not None and [(p.number, p.size) for p in parts] == [(1, 5 * MIB), (2, 1000)]
    # Remembered: asked again, even bounded, they cost no HEAD.
    assert await remote.object_parts(bucket, "big", info.etag, max_heads=1) == parts

    other = await remote.create_multipart_upload(bucket, "aborted", WriteMeta(), "owner")
    await remote.abort_multipart_upload(bucket, "aborted", other.upload_id)
    with pytest.raises(errors.NoSuchUpload):
        await remote.list_parts(bucket, "aborted", other.upload_id, 0, 1000)
    assert (await remote.list_multipart_uploads(bucket, "", "", "", "", 1000)).uploads == []


async def test_complete_with_a_wrong_etag_is_invalid_part(remote: RemoteBackend, bucket: str, make_body: Any) -> None:
    upload = await remote.create_multipart_upload(bucket, "bad", WriteMeta(), "owner")
    part = await remote.upload_part(bucket, "bad", upload.upload_id, 1, make_body(b"tiny"))
    with pytest.raises(errors.InvalidPart):
        await remote.complete_multipart_upload(bucket, "bad", upload.upload_id, [PartInfo(1, part.size, "0" * 32)])


async def test_upload_part_copy(remote: RemoteBackend, bucket: str, make_body: Any) -> None:
    data = os.urandom(5 * MIB + 100)
    await remote.put_object(bucket, "source", make_body(data), WriteMeta())
    upload = await remote.create_multipart_upload(bucket, "joined", WriteMeta(), "owner")
    p1 = await remote.upload_part_copy(bucket, "joined", upload.upload_id, 1, bucket, "source", None)
    p2 = await remote.upload_part_copy(bucket, "joined", upload.upload_id, 2, bucket, "source", (10, 19))
    assert (p1.size, p1.etag) == (len(data), hashlib.md5(data).hexdigest())
    assert (p2.size, p2.etag) == (10, hashlib.md5(data[10:20]).hexdigest())
    await remote.complete_multipart_upload(bucket, "joined", upload.upload_id, [p1, p2])
    assert await read_all(remote, bucket, "joined") == data + data[10:20]


# -- s3serve as the upstream ---------------------------------------------------------------------


async def test_buckets(local_remote: RemoteBackend, make_body: Any) -> None:
    name = f"remote-{uuid.uuid4().hex[:12]}"
    created = await local_remote.create_bucket(name, "me", "us-east-1")
    assert created.name == name
    assert name in [b.name for b in await local_remote.list_buckets()]
    head = await local_remote.head_bucket(name)
    assert (head.name, head.region) == (name, "us-east-1")
    # Created again by its owner: 200 in us-east-1, as on S3 (BucketAlreadyOwnedByYou elsewhere).
    await local_remote.create_bucket(name, "me", "us-east-1")
    await local_remote.put_object(name, "k", make_body(b"x"), WriteMeta())
    with pytest.raises(errors.BucketNotEmpty):
        await local_remote.delete_bucket(name)
    await local_remote.delete_object(name, "k")
    await local_remote.delete_bucket(name)
    with pytest.raises(errors.NoSuchBucket):
        await local_remote.head_bucket(name)


async def test_object_parts_of_a_multipart_object(local_remote: RemoteBackend, local_bucket: str, make_body: Any) -> None:
    data = os.urandom(5 * MIB + 3)
    upload = await local_remote.create_multipart_upload(local_bucket, "mp", WriteMeta(), "owner")
    parts = [
        await local_remote.upload_part(local_bucket, "mp", upload.upload_id, 1, make_body(data[: 5 * MIB])),
        await local_remote.upload_part(local_bucket, "mp", upload.upload_id, 2, make_body(data[5 * MIB :])),
    ]
    await local_remote.complete_multipart_upload(local_bucket, "mp", upload.upload_id, parts)
    listed = await local_remote.object_parts(local_bucket, "mp")
    assert listed is not None and [(p.number, p.size) for p in listed] == [(1, 5 * MIB), (2, 3)]
    await local_remote.put_object(local_bucket, "single", make_body(b"one"), WriteMeta())
    assert await local_remote.object_parts(local_bucket, "single") is None
    assert await local_remote.object_parts(local_bucket, "absent") is None


async def test_upstream_verifies_the_transfer(local_remote: RemoteBackend, local_bucket: str, make_body: Any) -> None:
    with pytest.raises(errors.BadDigest):
        await local_remote.put_object(local_bucket, "k", make_body(b"data", md5=hashlib.md5(b"other").digest()), WriteMeta())
    with pytest.raises(errors.S3Error) as caught:
        await local_remote.put_object(local_bucket, "k", make_body(b"data", {"CRC32": crc32(b"other")}), WriteMeta())
    assert caught.value.code in ("BadDigest", "InvalidRequest")
    with pytest.raises(errors.NoSuchKey):
        await local_remote.head_object(local_bucket, "k")


async def test_plain_precondition_is_checked_on_a_head(local_remote: RemoteBackend, local_bucket: str, make_body: Any) -> None:
    put = await local_remote.put_object(local_bucket, "k", make_body(b"v1"), WriteMeta())
    seen: list[ObjectInfo | None] = []

    def refuse(current: ObjectInfo | None) -> None:
        seen.append(current)
        raise errors.PreconditionFailed()

    with pytest.raises(errors.PreconditionFailed):
        await local_remote.put_object(local_bucket, "k", make_body(b"v2"), WriteMeta(), refuse)
    assert len(seen) == 1 and seen[0] is not None and seen[0].etag == put.etag
    await local_remote.put_object(local_bucket, "fresh", make_body(b"v"), WriteMeta(), seen.append)
    assert seen[-1] is None


async def test_unread_readers_do_not_hold_connections(s3serve_upstream: Server, local_bucket: str, make_body: Any) -> None:
    async for remote in _backend(s3serve_upstream, max_connections=1):
        await remote.put_object(local_bucket, "big", make_body(os.urandom(4 * MIB)), WriteMeta())
        for _ in range(3):
            reader = await asyncio.wait_for(remote.open_object(local_bucket, "big"), 5)
            reader.close()
        reader = await asyncio.wait_for(remote.open_object(local_bucket, "big"), 5)
        chunks = reader.iter_range(0, reader.info.size)
        await anext(chunks)  # a partly read stream, abandoned
        await chunks.aclose()  # type: ignore[attr-defined]
        reader.close()
        assert (await asyncio.wait_for(remote.head_object(local_bucket, "big"), 5)).size == 4 * MIB


async def test_rename(local_remote: RemoteBackend, local_bucket: str, make_body: Any) -> None:
    put = await local_remote.put_object(local_bucket, "from", make_body(b"moving"), WriteMeta(user_meta={"m": "1"}))
    info = await local_remote.rename_object(local_bucket, "from", ODD_KEY, client_token="token-1")
    assert (info.key, info.etag, info.user_meta) == (ODD_KEY, put.etag, {"m": "1"})
    with pytest.raises(errors.NoSuchKey):
        await local_remote.head_object(local_bucket, "from")
    # The retry of a rename that happened succeeds again.
    assert (await local_remote.rename_object(local_bucket, "from", ODD_KEY, client_token="token-1")).etag == put.etag
    # s3serve knows RenameObject: the probe left nothing behind.
    keys = [o.key for o in (await local_remote.list_objects(local_bucket, "", "", "", 100)).objects]
    assert keys == [ODD_KEY]


async def test_bucket_config(local_remote: RemoteBackend, local_bucket: str) -> None:
    cors = (
        b'<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule>'
        b"<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"
    )
    assert await local_remote.get_bucket_config(local_bucket, "cors") is None
    await local_remote.put_bucket_config(local_bucket, "cors", cors)
    stored = await local_remote.get_bucket_config(local_bucket, "cors")
    assert stored is not None and b"<AllowedOrigin>*</AllowedOrigin>" in stored
    await local_remote.delete_bucket_config(local_bucket, "cors")
    await local_remote.delete_bucket_config(local_bucket, "cors")
    assert await local_remote.get_bucket_config(local_bucket, "cors") is None
    # A configuration with a default: present until deleted, then the empty "deleted" document.
    assert b"BlockPublicAcls" in (await local_remote.get_bucket_config(local_bucket, "publicAccessBlock") or b"")
    await local_remote.put_bucket_config(local_bucket, "publicAccessBlock", b"")
    assert await local_remote.get_bucket_config(local_bucket, "publicAccessBlock") == b""
    with pytest.raises(errors.NoSuchBucket):
        await local_remote.get_bucket_config(f"absent-{uuid.uuid4().hex[:8]}", "cors")


async def test_wrong_secret_is_access_denied_without_signature_material(
    s3serve_upstream: Server, local_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = Server(s3serve_upstream.endpoint, s3serve_upstream.access_key, "not-the-secret", None)
    caplog.set_level(logging.WARNING, logger="s3serve")
    async for remote in _backend(wrong):
        for _ in range(2):
            with pytest.raises(errors.AccessDenied) as caught:
                await remote.list_objects(local_bucket, "", "", "", 10)
            assert "upstream S3 refused s3serve's credentials" in caught.value.message
            assert caught.value.extra == {} and caught.value.status == 403
            assert "StringToSign" not in str(caught.value) and "AWS4-HMAC-SHA256" not in str(caught.value)
        with pytest.raises(errors.AccessDenied):
            await remote.head_object(local_bucket, "k")  # a HEAD: a bare 403
    warnings = [r for r in caplog.records if "refused s3serve's credentials" in r.getMessage()]
    assert len(warnings) == 1 and "not-the-secret" not in warnings[0].getMessage()


async def test_unreachable_upstream_is_service_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="s3serve")
    async for remote in _backend(Server(f"http://127.0.0.1:{free_port()}", "k", "secret", None), timeout=2):
        with pytest.raises(errors.ServiceUnavailable) as caught:
            await remote.head_object("b", "k")
        assert caught.value.status == 503
    assert any("upstream S3" in r.getMessage() for r in caplog.records)


def test_endpoint_must_be_scheme_and_host() -> None:
    for bad in ("127.0.0.1:9000", "ftp://h", "http://h/prefix", "http://h?x=1", "http://u:p@h"):
        with pytest.raises(ValueError):
            RemoteBackend(bad, "k", "s")
    assert RemoteBackend("https://s3.example.test/", "k", "s").endpoint == "https://s3.example.test"
    assert "secret" not in repr(RemoteBackend("http://h:9000", "k", "secret"))


async def test_used_before_start(s3serve_upstream: Server) -> None:
    remote = RemoteBackend(s3serve_upstream.endpoint, "k", "s")
    with pytest.raises(errors.InternalError):
        await remote.head_bucket("b")
    await remote.stop()  # harmless


# -- moto as the upstream: what it does differently ----------------------------------------------


async def test_moto_quirks(moto_upstream: Server, make_body: Any) -> None:
    bucket = _new_bucket(moto_upstream)
    async for remote in _backend(moto_upstream):
        # No RenameObject: moto would store an empty object at the destination; the backend
        # finds that out on a probe and renames by copy and delete instead.
        await remote.put_object(bucket, "from", make_body(b"moving"), WriteMeta())
        info = await remote.rename_object(bucket, "from", "to")
        assert (info.size, await read_all(remote, bucket, "to")) == (6, b"moving")
        assert [o.key for o in (await remote.list_objects(bucket, "", "", "", 100)).objects] == ["to"]
        # GetObjectAttributes without ObjectParts: the part sizes come from HEAD ?partNumber=N.
        upload = await remote.create_multipart_upload(bucket, "mp", WriteMeta(), "owner")
        part = await remote.upload_part(bucket, "mp", upload.upload_id, 1, make_body(b"only part"))
        await remote.complete_multipart_upload(bucket, "mp", upload.upload_id, [part])
        etag = (await remote.head_object(bucket, "mp")).etag
        assert etag.endswith("-1")
        listed = await remote.object_parts(bucket, "mp", etag)
        assert listed is not None and [(p.number, p.size) for p in listed] == [(1, 9)]
        assert await remote.object_parts(bucket, "mp", "0123-2") is None  # another version's
        # x-amz-copy-source-if-match is not checked by moto (If-None-Match is).
        changed = HeaderPrecondition(lambda current: None, {"x-amz-copy-source-if-match": '"0123"'})
        copied = await remote.copy_object(bucket, "to", bucket, "copied", None, src_precondition=changed)
        assert copied.size == 6
        # Bucket configuration: not configured is None; a default-bearing one deleted is b"".
        assert await remote.get_bucket_config(bucket, "cors") is None
        assert await remote.get_bucket_config(bucket, "publicAccessBlock") == b""
    # moto checks no signatures: a wrong secret still gets in.
    async for remote in _backend(Server(moto_upstream.endpoint, "k", "wrong", None)):
        assert bucket in [b.name for b in await remote.list_buckets()]


async def test_bucket_in_another_region(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    server = start_server(root, "--no-fsync", "--region", "eu-west-1")
    try:
        async for remote in _backend(server, region="eu-west-1"):
            created = await remote.create_bucket("eu-bucket", "me", "eu-west-1")  # sends a LocationConstraint
            assert (created.region, (await remote.head_bucket("eu-bucket")).region) == ("eu-west-1", "eu-west-1")
            with pytest.raises(errors.BucketAlreadyOwnedByYou):
                await remote.create_bucket("eu-bucket", "me", "eu-west-1")
    finally:
        stop_server(server)


async def test_temporary_credentials_send_their_session_token_signed() -> None:
    """AWS refuses temporary (STS) credentials without X-Amz-Security-Token, and the token must be
    among the signed headers. A loopback endpoint records what arrives and checks the signature
    with s3serve's own SigV4 verifier."""
    from aiohttp import web

    from s3serve.config import User
    from s3serve.sigv4 import RequestView, authenticate

    seen: list[tuple[dict[str, str], bool]] = []
    user = User("ASIATEMPORARY", "temporary-secret")

    async def answer(request: web.Request) -> web.Response:
        path, _, raw_query = request.raw_path.partition("?")
        view = RequestView(request.method, path, [], raw_query, request.headers)
        verified = authenticate(view, lambda key: user if key == user.access_key else None) is not None
        seen.append(({name.lower(): value for name, value in request.headers.items()}, verified))
        return web.Response(headers={"x-amz-bucket-region": "us-east-1"})

    with LoopbackApp(answer) as fake:
        async for remote in _backend(Server(fake.endpoint, user.access_key, user.secret_key, None), session_token="the-token"):
            await remote.head_bucket("bucket")
    (headers, verified), = seen
    assert headers["x-amz-security-token"] == "the-token"
    assert "x-amz-security-token" in headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert verified


async def test_complete_answers_its_own_etag_when_another_write_lands_before_the_head(
    s3serve_upstream: Server, local_bucket: str, make_body: Any
) -> None:
    """The ObjectInfo of a Complete comes partly from a HEAD after it: when another client's PUT
    of the key lands in between, the answer still carries this upload's ETag, not the PUT's."""

    class Overtaken(RemoteBackend):
        async def head_object(self, bucket: str, key: str) -> ObjectInfo:
            await self.put_object(bucket, key, make_body(b"another client's object"), WriteMeta())
            return await super().head_object(bucket, key)

    remote = Overtaken(s3serve_upstream.endpoint, s3serve_upstream.access_key, s3serve_upstream.secret_key)
    await remote.start()
    try:
        upload = await remote.create_multipart_upload(local_bucket, "raced", WriteMeta(), "owner")
        part = await remote.upload_part(local_bucket, "raced", upload.upload_id, 1, make_body(b"the upload"))
        info = await remote.complete_multipart_upload(local_bucket, "raced", upload.upload_id, [part])
    finally:
        await remote.stop()
    assert info.etag == hashlib.md5(bytes.fromhex(part.etag)).hexdigest() + "-1"
