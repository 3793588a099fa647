"""A bucket deleted directly on the upstream, behind the cache that holds copies of its objects:
every read through the cache answers what the upstream answers (NoSuchBucket, not NoSuchKey),
and the cache's folder of the bucket goes, so that no later request is answered from it. Live
processes on loopback: an s3serve cache in front of a second s3serve (and of moto), via boto3."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server
from tests.e2e.conftest import error_code, running_cache

pytestmark = pytest.mark.skipif(bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="own servers")

CORS = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}


def _bucket_with_copy(cache: Server) -> str:
    """A bucket with CORS set through the cache and a copy of object "k" on its disk; its name."""
    s3: Any = cache.client()
    name = f"gone-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_cors(Bucket=name, CORSConfiguration=CORS)
    s3.put_object(Bucket=name, Key="k", Body=b"copy here")
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"copy here"
    assert cache.root is not None and (cache.root / name / "k").read_bytes() == b"copy here"
    return name


def _delete_upstream(upstream: Server, name: str) -> None:
    """The bucket deleted on the upstream directly, behind the cache's back."""
    up: Any = upstream.client()
    up.delete_object(Bucket=name, Key="k")
    up.delete_bucket(Bucket=name)


def _copy_held_then_bucket_gone(cache: Server, upstream: Server) -> str:
    """_bucket_with_copy, then deleted on the upstream directly; its name."""
    name = _bucket_with_copy(cache)
    _delete_upstream(upstream, name)
    return name


def _upload_part_copy(s3: Any, name: str) -> object:
    target = f"parts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=target)
    upload = s3.create_multipart_upload(Bucket=target, Key="m")["UploadId"]
    source = {"Bucket": name, "Key": "k"}
    return s3.upload_part_copy(Bucket=target, Key="m", UploadId=upload, PartNumber=1, CopySource=source)


def _copy(s3: Any, name: str, **how: str) -> object:
    target = f"copies-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=target)
    s3.put_bucket_cors(Bucket=target, CORSConfiguration=CORS)
    s3.put_object(Bucket=target, Key="held", Body=b"held")
    try:
        return s3.copy_object(Bucket=target, Key="c", CopySource={"Bucket": name, "Key": "k"}, **how)
    finally:
        # The copy's NoSuchBucket is of its source: the target's folder, copies and CORS stay.
        assert s3.get_bucket_cors(Bucket=target)["CORSRules"]
        assert s3.get_object(Bucket=target, Key="held")["Body"].read() == b"held"


READS: dict[str, Callable[[Any, str], object]] = {
    "GetObject": lambda s3, name: s3.get_object(Bucket=name, Key="k")["Body"].read(),
    "GetObject Range": lambda s3, name: s3.get_object(Bucket=name, Key="k", Range="bytes=1-3")["Body"].read(),
    "GetObjectAttributes": lambda s3, name: s3.get_object_attributes(
        Bucket=name, Key="k", ObjectAttributes=["ETag", "ObjectSize"]
    ),
    "GetObjectAcl": lambda s3, name: s3.get_object_acl(Bucket=name, Key="k"),
    "GetObjectTagging": lambda s3, name: s3.get_object_tagging(Bucket=name, Key="k"),
    "CopyObject": _copy,
    "CopyObject retagged": lambda s3, name: _copy(s3, name, TaggingDirective="REPLACE", Tagging="a=b"),
    "UploadPartCopy": _upload_part_copy,
}


@pytest.mark.parametrize("read", list(READS))
def test_a_read_of_a_copy_in_a_bucket_deleted_upstream_says_no_such_bucket(
    cache: Server, upstream: Server, read: str
) -> None:
    # The copy here is revalidated with a HEAD, whose 404 has no body to tell a missing key from
    # a missing bucket: the first read through the cache said NoSuchKey, the upstream (and the
    # cache's next read) NoSuchBucket. And the bucket's folder stayed, answering its CORS.
    s3: Any = cache.client()
    name = _copy_held_then_bucket_gone(cache, upstream)
    assert error_code(lambda: READS[read](upstream.client(), name)) == "NoSuchBucket"
    assert error_code(lambda: READS[read](s3, name)) == "NoSuchBucket"
    assert cache.root is not None and not (cache.root / name).exists()  # the copy and its folder
    assert error_code(lambda: READS[read](s3, name)) == "NoSuchBucket"
    assert error_code(lambda: s3.get_bucket_cors(Bucket=name)) == "NoSuchBucket"


def test_a_head_of_a_copy_in_a_bucket_deleted_upstream_drops_the_copy_and_the_bucket(
    cache: Server, upstream: Server
) -> None:
    # HeadObject's 404 has no body, on S3 as here: the code is only "404". But the copy must not
    # outlive the HEAD, and the bucket's folder not either: what follows is NoSuchBucket.
    s3: Any = cache.client()
    name = _copy_held_then_bucket_gone(cache, upstream)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=name, Key="k")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert cache.root is not None and not (cache.root / name).exists()
    assert error_code(lambda: s3.get_bucket_cors(Bucket=name)) == "NoSuchBucket"
    assert error_code(lambda: s3.get_object(Bucket=name, Key="k")) == "NoSuchBucket"


CONFIG_CALLS: dict[str, Callable[[Any, str], object]] = {
    "GetBucketCors": lambda s3, name: s3.get_bucket_cors(Bucket=name),
    "PutBucketCors": lambda s3, name: s3.put_bucket_cors(Bucket=name, CORSConfiguration=CORS),
    "DeleteBucketCors": lambda s3, name: s3.delete_bucket_cors(Bucket=name),
    "PutBucketVersioning": lambda s3, name: s3.put_bucket_versioning(
        Bucket=name, VersioningConfiguration={"Status": "Suspended"}
    ),
    "GetBucketPolicyStatus": lambda s3, name: s3.get_bucket_policy_status(Bucket=name),
}


@pytest.mark.parametrize("call", list(CONFIG_CALLS))
def test_the_configuration_of_a_bucket_deleted_upstream_is_no_such_bucket(
    cache: Server, upstream: Server, call: str
) -> None:
    # The cache keeps the bucket's configuration itself, in the bucket's folder here, which
    # nothing had yet told was gone: it was answered, and stored, for a bucket S3 no longer has.
    s3: Any = cache.client()
    name = _copy_held_then_bucket_gone(cache, upstream)
    assert error_code(lambda: CONFIG_CALLS[call](s3, name)) == "NoSuchBucket"
    assert cache.root is not None and not (cache.root / name).exists()
    assert error_code(lambda: s3.get_bucket_cors(Bucket=name)) == "NoSuchBucket"


def test_a_key_missing_from_a_bucket_that_is_there_is_still_no_such_key(
    cache: Server, upstream: Server
) -> None:
    # The HEAD of the bucket that tells the two apart must not turn a missing key into anything else.
    s3: Any = cache.client()
    name = f"here-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_cors(Bucket=name, CORSConfiguration=CORS)
    s3.put_object(Bucket=name, Key="k", Body=b"copy here")
    upstream.client().delete_object(Bucket=name, Key="k")  # type: ignore[attr-defined]
    attributes = READS["GetObjectAttributes"]
    assert error_code(lambda: attributes(s3, name)) == "NoSuchKey"
    assert error_code(lambda: s3.get_object(Bucket=name, Key="k")) == "NoSuchKey"
    assert cache.root is not None and not (cache.root / name / "k").exists()
    assert s3.get_bucket_cors(Bucket=name)["CORSRules"]


def test_in_front_of_moto_a_bucket_deleted_there_is_no_such_bucket(tmp_path: Path, moto: Server) -> None:
    # moto, as S3, answers a HEAD of a key in a missing bucket 404 with no body, and HEAD bucket 404.
    with running_cache(tmp_path / "cache", moto) as srv:
        s3: Any = srv.client()
        direct: Any = moto.client()
        name = f"gone-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="k", Body=b"copy here")
        direct.delete_object(Bucket=name, Key="k")
        direct.delete_bucket(Bucket=name)
        for read in (READS["GetObject"], READS["GetObjectAttributes"]):
            assert error_code(lambda: read(direct, name)) == "NoSuchBucket"  # noqa: B023 - called at once
            assert error_code(lambda: read(s3, name)) == "NoSuchBucket"  # noqa: B023
        assert not (tmp_path / "cache" / name).exists()


def _upload_then_bucket_gone(cache: Server, upstream: Server) -> tuple[str, str]:
    """As _copy_held_then_bucket_gone, with an upload of "m" begun through the cache (one part
    of it kept here) before the bucket went; the bucket's name and the upload's id."""
    s3: Any = cache.client()
    name = _bucket_with_copy(cache)
    upload = s3.create_multipart_upload(Bucket=name, Key="m")["UploadId"]
    s3.upload_part(Bucket=name, Key="m", UploadId=upload, PartNumber=1, Body=b"part one")
    _delete_upstream(upstream, name)
    return name, upload


def _complete(s3: Any, name: str, upload: str) -> object:
    parts = [{"PartNumber": 1, "ETag": '"8ffd5ccae6f5f3ad3e3c3b59e3d8a2d4"'}]
    done = {"Parts": parts}
    return s3.complete_multipart_upload(Bucket=name, Key="m", UploadId=upload, MultipartUpload=done)


MULTIPART: dict[str, Callable[[Any, str, str], object]] = {
    "CreateMultipartUpload": lambda s3, name, _: s3.create_multipart_upload(Bucket=name, Key="n"),
    "UploadPart": lambda s3, name, upload: s3.upload_part(
        Bucket=name, Key="m", UploadId=upload, PartNumber=2, Body=b"part two"
    ),
    "CompleteMultipartUpload": _complete,
    "ListParts": lambda s3, name, upload: s3.list_parts(Bucket=name, Key="m", UploadId=upload),
    "AbortMultipartUpload": lambda s3, name, upload: s3.abort_multipart_upload(
        Bucket=name, Key="m", UploadId=upload
    ),
    "ListMultipartUploads": lambda s3, name, _: s3.list_multipart_uploads(Bucket=name),
}


@pytest.mark.parametrize("call", list(MULTIPART))
def test_a_multipart_request_in_a_bucket_deleted_upstream_forgets_the_bucket(
    cache: Server, upstream: Server, call: str
) -> None:
    # The upstream's NoSuchBucket was passed on, but the bucket's folder (its copies, its CORS)
    # and the parts kept of its uploads stayed, answering for a bucket S3 no longer has.
    s3: Any = cache.client()
    name, upload = _upload_then_bucket_gone(cache, upstream)
    assert cache.root is not None
    parts = cache.root / ".s3serve" / "cache-parts"
    kept = {folder.name for folder in parts.iterdir()}
    assert error_code(lambda: MULTIPART[call](upstream.client(), name, upload)) == "NoSuchBucket"
    assert error_code(lambda: MULTIPART[call](s3, name, upload)) == "NoSuchBucket"
    assert not (cache.root / name).exists()
    assert error_code(lambda: s3.get_bucket_cors(Bucket=name)) == "NoSuchBucket"
    assert {folder.name for folder in parts.iterdir()} < kept  # the upload's kept part went
