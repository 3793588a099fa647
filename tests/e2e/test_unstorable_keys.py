"""Keys S3 accepts but this server's filesystem cannot hold: a path segment over 255 bytes, an
empty segment ('a//b', a leading '/'), a '.' or '..' segment. Such a key is never here, so what
reads or deletes an object answers as S3 does for a key it does not have (404 NoSuchKey, a
DELETE's 204), and what would write one is refused, clearly. A key over S3's own 1024 bytes is
KeyTooLongError everywhere, as on S3. Never is such a key taken for the file of another key."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, signed
from tests.e2e.conftest import error_code, fills_done, running_cache, until

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

LONG_SEGMENT = "s" * 256
UNSTORABLE = [
    LONG_SEGMENT,
    "dir/" + "é" * 128,  # 256 bytes in one segment, 132 characters
    "a//b",
    "/b",
    "a/./b",
    "a/../b",
    "./b",
    "dir/" + LONG_SEGMENT + "/",  # a folder marker
]
WRITE_REFUSAL = {
    LONG_SEGMENT: "KeyTooLongError", "dir/" + "é" * 128: "KeyTooLongError", "dir/" + LONG_SEGMENT + "/": "KeyTooLongError",
}  # fmt: skip


def _fails(call: Callable[[], object]) -> tuple[str, int]:
    """The S3 error code and HTTP status ``call`` fails with."""
    with pytest.raises(ClientError) as exc:
        call()
    response = exc.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


def _path(bucket: str, key: str) -> str:
    # As botocore quotes a key ('/' kept), and sent as it is: no client normalises '.' or '..'.
    return f"/{bucket}/{quote(key, safe='/~')}"


def _code(data: bytes) -> str | None:
    return ElementTree.fromstring(data).findtext("Code")


@pytest.fixture
def neighbours(s3: Any, bucket: str) -> dict[str, bytes]:
    """The objects each unstorable key would name as a path: any of them answered or deleted for
    such a key would be a key taken for another."""
    objects = {"b": b"plain b", "a/b": b"a slash b", "dir/x": b"in dir", "s" * 255: b"255 bytes"}
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return objects


def _unchanged(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, key


@pytest.mark.parametrize("key", UNSTORABLE)
def test_reads_of_an_unstorable_key_find_no_such_key(
    server: Server, s3: Any, bucket: str, neighbours: dict[str, bytes], key: str
) -> None:
    for call in (
        lambda: s3.get_object(Bucket=bucket, Key=key),
        lambda: s3.get_object(Bucket=bucket, Key=key, IfMatch='"0123"'),
        lambda: s3.get_object(Bucket=bucket, Key=key, IfNoneMatch="*", Range="bytes=0-1"),
        lambda: s3.get_object_tagging(Bucket=bucket, Key=key),
        lambda: s3.get_object_acl(Bucket=bucket, Key=key),
        lambda: s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=["ETag", "ObjectSize"]),
        lambda: s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}),
        lambda: s3.delete_object_tagging(Bucket=bucket, Key=key),
        lambda: s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": key}),
    ):
        assert _fails(call) == ("NoSuchKey", 404)
    assert _fails(lambda: s3.head_object(Bucket=bucket, Key=key)) == ("404", 404)
    # On the wire exactly as the key is: the body names the key, which is the one asked for.
    r = signed(server, "GET", _path(bucket, key))
    assert (r.status, _code(r.data)) == (404, "NoSuchKey"), r.data
    assert ElementTree.fromstring(r.data).findtext("Key") == key
    for source in (quote(f"{bucket}/{key}", safe="/~"), quote(f"/{bucket}/{key}", safe="/~")):
        r = signed(server, "PUT", f"/{bucket}/copy", headers={"x-amz-copy-source": source})
        assert (r.status, _code(r.data)) == (404, "NoSuchKey"), (source, r.data)
    # The bucket comes first, as for any key.
    assert _fails(lambda: s3.get_object(Bucket=f"{bucket}-gone", Key=key)) == ("NoSuchBucket", 404)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(listed) == sorted(neighbours)
    _unchanged(s3, bucket, neighbours)


@pytest.mark.parametrize("key", UNSTORABLE)
def test_deletes_of_an_unstorable_key_delete_nothing(
    server: Server, s3: Any, bucket: str, neighbours: dict[str, bytes], key: str
) -> None:
    assert s3.delete_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPStatusCode"] == 204
    r = signed(server, "DELETE", _path(bucket, key))
    assert r.status == 204, r.data
    # A conditional delete of no object fails as S3's does.
    assert _fails(lambda: s3.delete_object(Bucket=bucket, Key=key, IfMatch="*")) == ("NoSuchKey", 404)
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": "missing"}]})
    assert sorted(d["Key"] for d in answer["Deleted"]) == sorted([key, "missing"])
    assert "Errors" not in answer
    assert _fails(lambda: s3.delete_object(Bucket=f"{bucket}-gone", Key=key)) == ("NoSuchBucket", 404)
    unknown = "0" * 48
    abort = functools.partial(s3.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=unknown)
    assert _fails(abort) == ("NoSuchUpload", 404)
    assert _fails(lambda: s3.list_parts(Bucket=bucket, Key=key, UploadId=unknown)) == ("NoSuchUpload", 404)
    _unchanged(s3, bucket, neighbours)


@pytest.mark.parametrize("key", UNSTORABLE)
def test_parts_and_completes_of_an_unstorable_key_find_no_such_upload(
    server: Server, s3: Any, bucket: str, neighbours: dict[str, bytes], key: str
) -> None:
    """No upload can have such a key (CreateMultipartUpload refuses it), so every upload id
    given with it is one S3 would not know: NoSuchUpload, never the write's refusal. The id of
    another key's upload included, which stays as it was."""
    other = s3.create_multipart_upload(Bucket=bucket, Key="b")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="b", UploadId=other, PartNumber=1, Body=b"part of b")
    parts = {"Parts": [{"PartNumber": 1, "ETag": '"0123"'}]}
    complete = (
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"
        b"</CompleteMultipartUpload>"
    )
    for upload_id in ("0" * 48, other):
        for operation, arguments in (
            ("upload_part", {"PartNumber": 1, "Body": b"part"}),
            ("upload_part_copy", {"PartNumber": 1, "CopySource": {"Bucket": bucket, "Key": "b"}}),
            ("complete_multipart_upload", {"MultipartUpload": parts}),
            ("abort_multipart_upload", {}),
            ("list_parts", {}),
        ):
            call = functools.partial(
                getattr(s3, operation), Bucket=bucket, Key=key, UploadId=upload_id, **arguments
            )
            assert _fails(call) == ("NoSuchUpload", 404), operation
        # On the wire exactly as the key is.
        r = signed(server, "PUT", f"{_path(bucket, key)}?partNumber=1&uploadId={upload_id}", b"part")
        assert (r.status, _code(r.data)) == (404, "NoSuchUpload"), r.data
        r = signed(server, "POST", f"{_path(bucket, key)}?uploadId={upload_id}", complete)
        assert (r.status, _code(r.data)) == (404, "NoSuchUpload"), r.data
    listed = s3.list_parts(Bucket=bucket, Key="b", UploadId=other)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, len(b"part of b"))]
    s3.abort_multipart_upload(Bucket=bucket, Key="b", UploadId=other)
    gone = f"{bucket}-gone"
    part = functools.partial(
        s3.upload_part, Bucket=gone, Key=key, UploadId="0" * 48, PartNumber=1, Body=b"part"
    )
    assert _fails(part) == ("NoSuchBucket", 404)
    _unchanged(s3, bucket, neighbours)
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == sorted(neighbours)


@pytest.mark.parametrize("key", UNSTORABLE)
def test_writes_of_an_unstorable_key_are_refused(
    server: Server, s3: Any, bucket: str, neighbours: dict[str, bytes], key: str
) -> None:
    code = WRITE_REFUSAL.get(key, "InvalidArgument")
    body = b"" if key.endswith("/") else b"new bytes"
    for call in (
        lambda: s3.put_object(Bucket=bucket, Key=key, Body=body),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key=key),
        lambda: s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": "b"}),
        # The destination is refused before the source is looked for, as for any missing source.
        lambda: s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": "x//y"}),
    ):
        assert _fails(call) == (code, 400)
    r = signed(server, "PUT", _path(bucket, key), body)
    assert (r.status, _code(r.data)) == (400, code), r.data
    _unchanged(s3, bucket, neighbours)
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == sorted(neighbours)


def test_a_key_over_1024_bytes_is_too_long_everywhere(s3: Any, bucket: str) -> None:
    key = "k" * 1025
    for call in (
        lambda: s3.get_object(Bucket=bucket, Key=key),
        lambda: s3.delete_object(Bucket=bucket, Key=key),
        lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x"),
        lambda: s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": key}),
        lambda: s3.get_object_tagging(Bucket=bucket, Key=key),
        lambda: s3.upload_part(Bucket=bucket, Key=key, UploadId="0" * 48, PartNumber=1, Body=b"x"),
        lambda: s3.upload_part_copy(
            Bucket=bucket, Key=key, UploadId="0" * 48, PartNumber=1, CopySource={"Bucket": bucket, "Key": "b"}
        ),
        lambda: s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId="0" * 48, MultipartUpload={"Parts": [{"PartNumber": 1}]}
        ),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId="0" * 48),
        lambda: s3.list_parts(Bucket=bucket, Key=key, UploadId="0" * 48),
    ):
        assert _fails(call) == ("KeyTooLongError", 400)
    assert _fails(lambda: s3.head_object(Bucket=bucket, Key=key)) == ("400", 400)
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}]})
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [(key, "KeyTooLongError")]


# The cache's process logs each fetch of an object meant to leave a copy here.
FETCHES_LOGGED = """
import logging
from s3serve.storage import readthrough

_fetch = readthrough.CacheReads._fetch

async def _logged(self, bucket, key, *, fill):
    if fill:
        logging.getLogger("s3serve.cache").warning("fetch to keep: %s", key)
    return await _fetch(self, bucket, key, fill=fill)

readthrough.CacheReads._fetch = _logged
"""


def test_a_cache_passes_them_to_an_upstream_that_holds_them(tmp_path: Path, moto: Server) -> None:
    """An upstream cache in front of an S3 that holds such keys (moto, as S3, takes 'a//b' and
    'a/../b' as keys of their own): each is written, read, copied and deleted there as itself,
    never answered from the replica of the key its path would name here."""
    objects = {"a/b": b"plain a/b", "b": b"plain b", "a//b": b"double", "a/../b": b"dot-dot", "a/./b": b"dot"}
    with running_cache(tmp_path / "cache", moto, patch=FETCHES_LOGGED) as cache:
        s3: Any = cache.client()
        direct: Any = moto.client()
        name = f"unstorable-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=name)
        for key, body in objects.items():
            s3.put_object(Bucket=name, Key=key, Body=body)
        assert sorted(o["Key"] for o in direct.list_objects_v2(Bucket=name)["Contents"]) == sorted(objects)
        for _ in range(2):  # the second round with the replicas of the storable keys kept here
            for key, body in objects.items():
                assert s3.get_object(Bucket=name, Key=key)["Body"].read() == body, key
            until(lambda: fills_done(tmp_path / "cache"))
        assert (tmp_path / "cache" / name / "a" / "b").read_bytes() == b"plain a/b"  # its replica
        s3.copy_object(Bucket=name, Key="copy", CopySource={"Bucket": name, "Key": "a/../b"})
        assert direct.get_object(Bucket=name, Key="copy")["Body"].read() == b"dot-dot"
        s3.delete_object(Bucket=name, Key="a//b")
        answer = s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "a/./b"}]})
        assert [d["Key"] for d in answer["Deleted"]] == ["a/./b"]
        left = sorted(o["Key"] for o in direct.list_objects_v2(Bucket=name)["Contents"])
        assert left == ["a/../b", "a/b", "b", "copy"]
        for key in ("a/b", "b"):
            assert s3.get_object(Bucket=name, Key=key)["Body"].read() == objects[key]
        assert error_code(lambda: s3.get_object(Bucket=name, Key="a//b")) == "NoSuchKey"
        direct.put_object(Bucket=name, Key="a/c", Body=b"upstream only")
        assert s3.get_object(Bucket=name, Key="a/c")["Body"].read() == b"upstream only"
    assert cache.log_path is not None
    log = cache.log_path.read_text()
    assert "Traceback" not in log
    # Read through, never fetched into a copy this disk could not keep, on every read.
    assert "fetch to keep: a/c\n" in log  # a cold key this disk can hold
    for key in ("a//b", "a/../b", "a/./b"):
        assert f"fetch to keep: {key}\n" not in log
