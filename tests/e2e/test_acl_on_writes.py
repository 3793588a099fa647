"""ACLs named by writes: PutObject, CopyObject, CreateMultipartUpload, PostObject's acl field and
CreateBucket, through boto3 with its default settings, browser-style forms and raw requests.

A bucket here has one owner and no ACL model. An ACL that grants the owner alone (private,
bucket-owner-*, grants naming only the owner) is what there is already, and is accepted on any
bucket (rclone sends x-amz-acl: private on every upload). Any other is refused before anything is
stored: as S3 refuses it with ACLs disabled (BucketOwnerEnforced, a new bucket's setting), and with
501 where ACLs are enabled (there would be nothing to enforce it with). CreateBucket answers S3's
InvalidBucketAclWithObjectOwnership instead, and refuses Object Lock (no versioning here)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server
from tests.e2e.test_acl_and_locks import ALL_USERS, _owner, _set_ownership
from tests.e2e.test_bucket_config import _fails
from tests.e2e.test_http_framing import UNSIGNED, _exchange, _head
from tests.e2e.test_post_object import post, presigned

NOT_ALLOWED = ("AccessControlListNotSupported", 400, "The bucket does not allow ACLs")
NO_ACL_MODEL = "ACLs that grant access to anyone but the bucket owner are not implemented by s3serve."
ENABLED = ["ObjectWriter", "BucketOwnerPreferred", None]  # None: ownership controls deleted


def _enable_acls(s3: Any, bucket: str, ownership: str | None) -> None:
    if ownership is None:
        s3.delete_bucket_ownership_controls(Bucket=bucket)
    else:
        _set_ownership(s3, bucket, ownership)


def _no_such_key(s3: Any, bucket: str, key: str) -> bool:
    """GET answers NoSuchKey: a refused upload stored nothing under ``key``."""
    try:
        s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return bool(exc.response["Error"]["Code"] == "NoSuchKey")
    return False


def _public_acls(owner: str) -> list[dict[str, str]]:
    """What an upload may name that grants someone besides the owner."""
    return [
        {"ACL": "public-read"},
        {"ACL": "public-read-write"},
        {"ACL": "authenticated-read"},
        {"ACL": "aws-exec-read"},
        {"GrantRead": f'uri="{ALL_USERS}"'},
        {"GrantFullControl": f'id="{owner}", id="{"0" * 64}"'},
        {"GrantWriteACP": 'emailAddress="someone@example.com"'},
    ]


def _owner_only_acls(owner: str) -> list[dict[str, str]]:
    return [
        {"ACL": "private"},
        {"ACL": "bucket-owner-full-control"},
        {"ACL": "bucket-owner-read"},
        {"GrantFullControl": f'id="{owner}"'},
        {"GrantFullControl": f'id="{owner}"', "GrantRead": f'id="{owner}"'},
    ]


def _refusal(call: Callable[..., Any], **kwargs: Any) -> tuple[str, int, str]:
    code, status, error = _fails(call, **kwargs)
    return code, status, error.get("Message", "")


def test_acl_header_names_agree() -> None:
    """objects.ACL_HEADERS decides whether acl.py is asked at all: it must name every header
    acl.py reads."""
    from s3serve.handlers import acl, objects

    assert set(objects.ACL_HEADERS) == {"x-amz-acl", *acl.GRANT_HEADERS}


# -- PutObject ------------------------------------------------------------------------------------


def test_put_object_with_a_public_acl_is_refused_and_stores_nothing(s3, bucket: str) -> None:
    owner = _owner(s3, bucket)
    for index, acl in enumerate(_public_acls(owner)):
        key = f"public-{index}"
        assert _refusal(s3.put_object, Bucket=bucket, Key=key, Body=b"x", **acl) == NOT_ALLOWED, acl
        assert _no_such_key(s3, bucket, key), acl
    # An object already there keeps its bytes.
    s3.put_object(Bucket=bucket, Key="kept", Body=b"old")
    assert _refusal(s3.put_object, Bucket=bucket, Key="kept", Body=b"new", ACL="public-read") == NOT_ALLOWED
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"old"


@pytest.mark.parametrize("ownership", ENABLED)
def test_put_object_with_a_public_acl_where_acls_are_enabled_answers_501(s3, bucket: str, ownership: str | None) -> None:
    _enable_acls(s3, bucket, ownership)
    owner = _owner(s3, bucket)
    for index, acl in enumerate(_public_acls(owner)):
        key = f"public-{index}"
        assert _refusal(s3.put_object, Bucket=bucket, Key=key, Body=b"x", **acl) == ("NotImplemented", 501, NO_ACL_MODEL), acl
        assert _no_such_key(s3, bucket, key), acl


@pytest.mark.parametrize("ownership", ["BucketOwnerEnforced", *ENABLED])
def test_owner_only_acls_on_uploads_keep_working(s3, bucket: str, ownership: str | None) -> None:
    """rclone's x-amz-acl: private on PutObject, CreateMultipartUpload and CopyObject, and the
    other ACLs that grant the owner alone, on any bucket."""
    _enable_acls(s3, bucket, ownership)
    owner = _owner(s3, bucket)
    for index, acl in enumerate(_owner_only_acls(owner)):
        s3.put_object(Bucket=bucket, Key=f"put-{index}", Body=b"data", **acl)
        assert s3.get_object(Bucket=bucket, Key=f"put-{index}")["Body"].read() == b"data", acl
        s3.copy_object(Bucket=bucket, Key=f"copy-{index}", CopySource={"Bucket": bucket, "Key": "put-0"}, **acl)
        assert s3.get_object(Bucket=bucket, Key=f"copy-{index}")["Body"].read() == b"data", acl
        upload = s3.create_multipart_upload(Bucket=bucket, Key=f"mpu-{index}", **acl)
        part = s3.upload_part(Bucket=bucket, Key=f"mpu-{index}", UploadId=upload["UploadId"], PartNumber=1, Body=b"parts")
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=f"mpu-{index}",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        assert s3.get_object(Bucket=bucket, Key=f"mpu-{index}")["Body"].read() == b"parts", acl
    # Nothing changed what the ACLs read.
    assert [(g["Grantee"]["ID"], g["Permission"]) for g in s3.get_object_acl(Bucket=bucket, Key="put-0")["Grants"]] == [
        (owner, "FULL_CONTROL")
    ]


def test_invalid_acls_on_uploads_get_s3s_validation_errors(s3, bucket: str) -> None:
    """Checked as PutObjectAcl checks them, on any bucket, before anything else about them."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    cases: list[tuple[dict[str, str], tuple[str, int]]] = [
        ({"ACL": "world-writable"}, ("InvalidArgument", 400)),
        ({"ACL": "Private"}, ("InvalidArgument", 400)),
        ({"ACL": "log-delivery-write"}, ("InvalidArgument", 400)),  # a bucket's canned ACL only
        ({"ACL": "private", "GrantRead": f'uri="{ALL_USERS}"'}, ("InvalidRequest", 400)),
        ({"GrantRead": "everyone"}, ("InvalidArgument", 400)),
        ({"GrantRead": 'uri="http://example.com/group"'}, ("InvalidArgument", 400)),
        ({"GrantRead": 'id="not-a-canonical-id"'}, ("InvalidArgument", 400)),
    ]
    for ownership in ("BucketOwnerEnforced", "ObjectWriter"):
        _set_ownership(s3, bucket, ownership)
        for acl, expected in cases:
            assert _fails(s3.put_object, Bucket=bucket, Key="k", Body=b"x", **acl)[:2] == expected, acl
            assert _fails(s3.create_multipart_upload, Bucket=bucket, Key="k", **acl)[:2] == expected, acl
            copy = {"CopySource": {"Bucket": bucket, "Key": "src"}}
            assert _fails(s3.copy_object, Bucket=bucket, Key="k", **copy, **acl)[:2] == expected, acl
            assert _no_such_key(s3, bucket, "k"), acl
    code, status, error = _fails(s3.put_object, Bucket=bucket, Key="k", Body=b"x", ACL="world-writable")
    assert (error["ArgumentName"], error["ArgumentValue"]) == ("x-amz-acl", "world-writable")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_refused_large_upload_leaves_the_client_working(s3, bucket: str) -> None:
    """boto3 sends a body of 1 MiB or more after Expect: 100-continue: the refusal comes after
    the body was sent, which the server reads off and drops; the connection goes on serving."""
    data = b"z" * (3 * 1024 * 1024)
    for _ in range(2):
        assert _refusal(s3.put_object, Bucket=bucket, Key="big", Body=data, ACL="public-read") == NOT_ALLOWED
        assert _no_such_key(s3, bucket, "big")
    s3.put_object(Bucket=bucket, Key="big", Body=data, ACL="private")
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data


def test_the_request_after_a_refused_upload_on_one_connection_is_answered(server: Server, s3, bucket: str) -> None:
    """The refused upload's body is drained, never read as a request: a body that looks like one
    is not run, and the request after it on the same connection is answered."""
    s3.put_object(Bucket=bucket, Key="next", Body=b"next")
    smuggled = f"DELETE /{bucket}/next HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    refused = _head(
        server, "PUT", f"/{bucket}/public", {**UNSIGNED, "x-amz-acl": "public-read", "Content-Length": str(len(smuggled))}
    )
    then = _head(server, "GET", f"/{bucket}/next", {"Connection": "close"})
    answers, _ = _exchange(server, refused + smuggled + then)
    assert [(a.status, a.code) for a in answers] == [(400, "AccessControlListNotSupported"), (200, None)], answers
    assert answers[1].body == b"next"
    assert _no_such_key(s3, bucket, "public")


# -- CreateMultipartUpload and CopyObject ---------------------------------------------------------


def test_create_multipart_upload_with_a_public_acl_is_refused(s3, bucket: str) -> None:
    owner = _owner(s3, bucket)
    for acl in _public_acls(owner):
        assert _refusal(s3.create_multipart_upload, Bucket=bucket, Key="mpu", **acl) == NOT_ALLOWED, acl
    _set_ownership(s3, bucket, "ObjectWriter")
    for acl in _public_acls(owner):
        assert _refusal(s3.create_multipart_upload, Bucket=bucket, Key="mpu", **acl) == ("NotImplemented", 501, NO_ACL_MODEL)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_copy_object_with_a_public_acl_is_refused(s3, bucket: str) -> None:
    owner = _owner(s3, bucket)
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    source = {"Bucket": bucket, "Key": "src"}
    for acl in _public_acls(owner):
        assert _refusal(s3.copy_object, Bucket=bucket, Key="dst", CopySource=source, **acl) == NOT_ALLOWED, acl
        assert _no_such_key(s3, bucket, "dst"), acl
    _set_ownership(s3, bucket, "BucketOwnerPreferred")
    expected = ("NotImplemented", 501, NO_ACL_MODEL)
    assert _refusal(s3.copy_object, Bucket=bucket, Key="dst", CopySource=source, ACL="public-read") == expected
    # Copied onto itself with a new ACL: refused too, and the object stays as it was.
    refused = _refusal(s3.copy_object, Bucket=bucket, Key="src", CopySource=source, ACL="public-read", MetadataDirective="REPLACE")
    assert refused == expected
    assert _no_such_key(s3, bucket, "dst")
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"source"


# -- PostObject -----------------------------------------------------------------------------------


def _form(server: Server, bucket: str, key: str, acl: str) -> tuple[str, dict[str, str]]:
    return presigned(server, bucket, key, Fields={"acl": acl}, Conditions=[{"acl": acl}])


def test_post_object_acl_field(server: Server, s3, bucket: str) -> None:
    url, fields = _form(server, bucket, "public", "public-read")
    r = post(url, fields)
    assert (r.code, r.status, r.message) == NOT_ALLOWED, r.body
    assert _no_such_key(s3, bucket, "public")
    for acl in ("private", "bucket-owner-full-control"):
        url, fields = _form(server, bucket, acl, acl)
        assert post(url, fields, b"form").status == 204
        assert s3.get_object(Bucket=bucket, Key=acl)["Body"].read() == b"form"
    url, fields = _form(server, bucket, "unknown", "world-writable")
    r = post(url, fields)
    assert (r.status, r.code) == (400, "InvalidArgument"), r.body
    assert _no_such_key(s3, bucket, "unknown")
    _set_ownership(s3, bucket, "ObjectWriter")
    url, fields = _form(server, bucket, "public", "public-read")
    r = post(url, fields)
    assert (r.status, r.code, r.message) == (501, "NotImplemented", NO_ACL_MODEL), r.body
    assert _no_such_key(s3, bucket, "public")


# -- CreateBucket ---------------------------------------------------------------------------------


@pytest.fixture
def new_name(s3) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A bucket name nobody uses; the bucket is removed afterwards should a test have made it."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    yield name
    try:
        s3.delete_bucket(Bucket=name)
    except ClientError:
        pass


def _bucket_absent(s3: Any, name: str) -> bool:
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        return bool(exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404)
    return False


def _ownership_of(s3: Any, name: str) -> str:
    return str(s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"][0]["ObjectOwnership"])


BUCKET_PUBLIC_ACLS: list[dict[str, str]] = [
    {"ACL": "public-read"},
    {"ACL": "public-read-write"},
    {"ACL": "authenticated-read"},
    {"ACL": "log-delivery-write"},
    {"GrantRead": f'uri="{ALL_USERS}"'},
    {"GrantWrite": 'emailAddress="someone@example.com"'},
]


@pytest.mark.parametrize("acl", BUCKET_PUBLIC_ACLS)
@pytest.mark.parametrize("ownership", [None, "BucketOwnerEnforced"])
def test_create_bucket_with_a_public_acl_and_acls_disabled(s3, new_name: str, acl: dict[str, str], ownership: str | None) -> None:
    given = {"ObjectOwnership": ownership} if ownership else {}
    code, status, error = _fails(s3.create_bucket, Bucket=new_name, **acl, **given)
    assert (code, status) == ("InvalidBucketAclWithObjectOwnership", 400)
    assert error["Message"] == "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
    assert _bucket_absent(s3, new_name)


@pytest.mark.parametrize("ownership", ["ObjectWriter", "BucketOwnerPreferred"])
def test_create_bucket_with_a_public_acl_and_acls_enabled_answers_501(s3, new_name: str, ownership: str) -> None:
    for acl in BUCKET_PUBLIC_ACLS:
        assert _refusal(s3.create_bucket, Bucket=new_name, ObjectOwnership=ownership, **acl) == (
            "NotImplemented",
            501,
            NO_ACL_MODEL,
        ), acl
        assert _bucket_absent(s3, new_name), acl


@pytest.mark.parametrize("ownership", [None, "BucketOwnerEnforced", "ObjectWriter", "BucketOwnerPreferred"])
def test_create_bucket_with_an_owner_only_acl(s3, new_name: str, ownership: str | None) -> None:
    """rclone creates buckets with x-amz-acl: private. The bucket gets the Object Ownership the
    request named, as S3 gives it."""
    given = {"ObjectOwnership": ownership} if ownership else {}
    s3.create_bucket(Bucket=new_name, ACL="private", **given)
    assert _ownership_of(s3, new_name) == (ownership or "BucketOwnerEnforced")
    grantee = _owner(s3, new_name)
    s3.delete_bucket(Bucket=new_name)
    s3.create_bucket(Bucket=new_name, GrantFullControl=f'id="{grantee}"', **given)
    s3.put_object(Bucket=new_name, Key="k", Body=b"x", ACL="private")
    if ownership in ("ObjectWriter", "BucketOwnerPreferred"):
        # ACLs are enabled, as the request asked: an owner-only PutObjectAcl is accepted.
        s3.put_object_acl(Bucket=new_name, Key="k", ACL="private")
    else:
        assert _refusal(s3.put_object_acl, Bucket=new_name, Key="k", ACL="private") == NOT_ALLOWED
    s3.delete_object(Bucket=new_name, Key="k")


def test_create_bucket_validates_its_acl_and_ownership(s3, new_name: str) -> None:
    cases: list[tuple[dict[str, str], tuple[str, int]]] = [
        ({"ACL": "world-writable"}, ("InvalidArgument", 400)),
        ({"ACL": "private", "GrantRead": f'uri="{ALL_USERS}"'}, ("InvalidRequest", 400)),
        ({"GrantFullControl": "fdjklasaj"}, ("InvalidArgument", 400)),
        ({"GrantFullControl": 'id="0123"'}, ("InvalidArgument", 400)),
    ]
    for acl, expected in cases:
        for ownership in ("BucketOwnerEnforced", "ObjectWriter"):
            assert _fails(s3.create_bucket, Bucket=new_name, ObjectOwnership=ownership, **acl)[:2] == expected, acl
            assert _bucket_absent(s3, new_name)
    code, status, error = _fails(s3.create_bucket, Bucket=new_name, ObjectOwnership="Nobody")
    assert (code, status, error["Message"]) == ("InvalidArgument", 400, "Invalid x-amz-object-ownership header: Nobody")
    assert error["ArgumentName"] == "x-amz-object-ownership"
    assert _bucket_absent(s3, new_name)


def test_create_bucket_with_object_lock_answers_501(s3, new_name: str) -> None:
    code, status, error = _fails(s3.create_bucket, Bucket=new_name, ObjectLockEnabledForBucket=True)
    assert (code, status) == ("NotImplemented", 501)
    assert "Object Lock" in error["Message"] and "versioning" in error["Message"]
    assert _bucket_absent(s3, new_name)
    s3.create_bucket(Bucket=new_name, ObjectLockEnabledForBucket=False)
    assert not _bucket_absent(s3, new_name)
