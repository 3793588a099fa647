"""ACL writes, Object Lock retention and legal hold, RestoreObject and the analytics / metrics /
inventory / intelligent-tiering configurations, end to end through boto3, raw signed requests and
the aws cli: S3's answers for buckets with ACLs disabled (S3's default since April 2023), without
Object Lock, with objects that are not archived and with none of those configurations."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Server, signed
from tests.e2e.test_bucket_config import _fails

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def _owner(s3: Any, bucket: str) -> str:
    return str(s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"])


def _owner_full_control(owner: str) -> dict[str, Any]:
    return {
        "Owner": {"ID": owner},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner}, "Permission": "FULL_CONTROL"}],
    }


def _public_read(owner: str) -> dict[str, Any]:
    policy = _owner_full_control(owner)
    policy["Grants"].append({"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"})
    return policy


def _set_ownership(s3: Any, bucket: str, ownership: str) -> None:
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": ownership}]})


def _acl_is_owner_only(s3: Any, bucket: str, key: str, owner: str) -> None:
    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key=key)):
        assert [(g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]] == [(owner, "FULL_CONTROL")]


# -- ACLs -----------------------------------------------------------------------------------------


def test_acls_disabled_refuse_every_acl_write(s3, bucket: str) -> None:
    """BucketOwnerEnforced (a new bucket's setting): S3 refuses every request that sets an ACL,
    even one that grants the owner alone; reading ACLs still works."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    owner = _owner(s3, bucket)
    attempts: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (s3.put_object_acl, {"Key": "k", "ACL": "public-read"}),
        (s3.put_object_acl, {"Key": "k", "ACL": "private"}),
        (s3.put_object_acl, {"Key": "k", "ACL": "bucket-owner-full-control"}),
        (s3.put_object_acl, {"Key": "k", "GrantFullControl": f'id="{owner}"'}),
        (s3.put_object_acl, {"Key": "k", "AccessControlPolicy": _owner_full_control(owner)}),
        (s3.put_object_acl, {"Key": "k", "GrantRead": f'uri="{ALL_USERS}"', "VersionId": "null"}),
        (s3.put_bucket_acl, {"ACL": "private"}),
        (s3.put_bucket_acl, {"ACL": "public-read-write"}),
        (s3.put_bucket_acl, {"AccessControlPolicy": _public_read(owner)}),
    ]
    for call, kwargs in attempts:
        code, status, error = _fails(call, Bucket=bucket, **kwargs)
        assert (code, status) == ("AccessControlListNotSupported", 400), kwargs
        assert error["Message"] == "The bucket does not allow ACLs"
    _acl_is_owner_only(s3, bucket, "k", owner)


@pytest.mark.parametrize("ownership", ["ObjectWriter", "BucketOwnerPreferred", None])
def test_acls_enabled_accept_owner_only_acls(s3, bucket: str, ownership: str | None) -> None:
    """ObjectWriter, BucketOwnerPreferred or no ownership controls at all (as buckets were before
    Object Ownership): ACLs are enabled. An ACL granting the owner alone is what there is already;
    one that grants anybody else needs an ACL model s3serve does not have: 501."""
    if ownership is None:
        s3.delete_bucket_ownership_controls(Bucket=bucket)
    else:
        _set_ownership(s3, bucket, ownership)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    owner = _owner(s3, bucket)
    accepted: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (s3.put_bucket_acl, {"ACL": "private"}),
        (s3.put_bucket_acl, {"GrantFullControl": f'id="{owner}"'}),
        (s3.put_bucket_acl, {"AccessControlPolicy": _owner_full_control(owner)}),
        (s3.put_object_acl, {"Key": "k", "ACL": "private"}),
        (s3.put_object_acl, {"Key": "k", "ACL": "bucket-owner-full-control"}),
        (s3.put_object_acl, {"Key": "k", "ACL": "private", "VersionId": "null"}),
        (s3.put_object_acl, {"Key": "k", "GrantFullControl": f'id="{owner}"'}),
        (s3.put_object_acl, {"Key": "k", "AccessControlPolicy": _owner_full_control(owner)}),
    ]
    for call, kwargs in accepted:
        assert call(Bucket=bucket, **kwargs)["ResponseMetadata"]["HTTPStatusCode"] == 200, kwargs
    refused: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (s3.put_bucket_acl, {"ACL": "public-read"}),
        (s3.put_bucket_acl, {"ACL": "log-delivery-write"}),
        (s3.put_bucket_acl, {"AccessControlPolicy": _public_read(owner)}),
        (s3.put_object_acl, {"Key": "k", "ACL": "public-read"}),
        (s3.put_object_acl, {"Key": "k", "ACL": "authenticated-read"}),
        (s3.put_object_acl, {"Key": "k", "GrantRead": f'uri="{ALL_USERS}"'}),
        (s3.put_object_acl, {"Key": "k", "GrantFullControl": f'id="{"0" * 64}"'}),
        (s3.put_object_acl, {"Key": "k", "AccessControlPolicy": _public_read(owner)}),
    ]
    for call, kwargs in refused:
        code, status, error = _fails(call, Bucket=bucket, **kwargs)
        assert (code, status) == ("NotImplemented", 501), kwargs
        assert "ACL" in error["Message"]
    _acl_is_owner_only(s3, bucket, "k", owner)


def _put_acl_raw(server: Server, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    return signed(server, "PUT", f"{path}?acl", body, headers)


def _code(response: Any) -> tuple[int, str]:
    data = response.data.decode()
    return response.status, data.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in data else ""


def test_acl_requests_are_validated_as_s3_does(server: Server, s3, bucket: str) -> None:
    """The ACL a request names is checked before the bucket's ownership setting is: a malformed
    request gets S3's validation error on any bucket."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    path = f"/{bucket}/k"
    grant = {"x-amz-grant-read": f'uri="{ALL_USERS}"'}
    cases: list[tuple[bytes, dict[str, str], tuple[int, str]]] = [
        (b"", {}, (400, "MissingSecurityHeader")),
        (b"<AccessControlPolicy><Owner>", {}, (400, "MalformedACLError")),
        (b"<Tagging/>", {}, (400, "MalformedACLError")),
        (b"<AccessControlPolicy><Owner><ID>x</ID></Owner></AccessControlPolicy>", {}, (400, "MalformedACLError")),
        (b"", {"x-amz-acl": "world-writable"}, (400, "InvalidArgument")),
        (b"", {"x-amz-acl": "private", **grant}, (400, "InvalidRequest")),
        (b"<AccessControlPolicy/>", {"x-amz-acl": "private"}, (400, "UnexpectedContent")),
        (b"", {"x-amz-grant-read": "everyone"}, (400, "InvalidArgument")),
        (b"", {"x-amz-grant-read": 'uri="http://example.com/group"'}, (400, "InvalidArgument")),
    ]
    for body, headers, expected in cases:
        assert _code(_put_acl_raw(server, path, body, headers)) == expected, (body, headers)
        assert _code(_put_acl_raw(server, f"/{bucket}", body, headers)) == expected, (body, headers)
    owner = _owner(s3, bucket)
    bad_grant = (
        f'<AccessControlPolicy><Owner><ID>{owner}</ID></Owner><AccessControlList><Grant>'
        f'<Grantee xmlns:xsi="{XSI}" xsi:type="CanonicalUser"><ID>{owner}</ID></Grantee>'
        "<Permission>EVERYTHING</Permission></Grant></AccessControlList></AccessControlPolicy>"
    ).encode()
    assert _code(_put_acl_raw(server, path, bad_grant)) == (400, "MalformedACLError")
    # The object is looked up first, and only the null version exists.
    code, status, error = _fails(s3.put_object_acl, Bucket=bucket, Key="absent", ACL="private")
    assert (code, status, error["Key"]) == ("NoSuchKey", 404, "absent")
    assert _fails(s3.put_object_acl, Bucket=bucket, Key="k", ACL="private", VersionId="v2")[:2] == ("InvalidArgument", 400)


def test_upload_acl_headers_keep_working(s3, bucket: str) -> None:
    """rclone sends x-amz-acl: private by default, on bucket creation, uploads and copies; S3 with
    ACLs disabled accepts an owner-only ACL there, and so does s3serve."""
    s3.put_object(Bucket=bucket, Key="a", Body=b"a", ACL="private")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b", ACL="bucket-owner-full-control")
    s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "a"}, ACL="private")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="d", ACL="private")
    s3.abort_multipart_upload(Bucket=bucket, Key="d", UploadId=upload["UploadId"])
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"a"
    other = f"{bucket}-private"
    s3.create_bucket(Bucket=other, ACL="private")
    s3.delete_bucket(Bucket=other)


def test_aws_cli_put_object_acl(aws, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    refused = aws("s3api", "put-object-acl", "--bucket", bucket, "--key", "k", "--acl", "public-read", check=False)
    assert refused.returncode != 0 and "AccessControlListNotSupported" in refused.stderr
    # As on S3: with ACLs disabled even the owner-only canned ACL is refused.
    refused = aws("s3api", "put-object-acl", "--bucket", bucket, "--key", "k", "--acl", "private", check=False)
    assert refused.returncode != 0 and "AccessControlListNotSupported" in refused.stderr
    rule = json.dumps({"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    aws("s3api", "put-bucket-ownership-controls", "--bucket", bucket, "--ownership-controls", rule)
    aws("s3api", "put-object-acl", "--bucket", bucket, "--key", "k", "--acl", "private")
    refused = aws("s3api", "put-object-acl", "--bucket", bucket, "--key", "k", "--acl", "public-read", check=False)
    assert refused.returncode != 0 and "NotImplemented" in refused.stderr
    acl = json.loads(aws("s3api", "get-object-acl", "--bucket", bucket, "--key", "k").stdout)
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]


# -- Object Lock ----------------------------------------------------------------------------------


def test_retention_and_legal_hold_without_object_lock(server: Server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (s3.get_object_retention, {}),
        (s3.get_object_retention, {"VersionId": "null"}),
        (s3.put_object_retention, {"Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": until}}),
        (s3.get_object_legal_hold, {}),
        (s3.put_object_legal_hold, {"LegalHold": {"Status": "ON"}}),
    ]
    # S3 checks the bucket before the key: a missing key gets the same answer.
    for key in ("k", "absent"):
        for call, kwargs in calls:
            code, status, error = _fails(call, Bucket=bucket, Key=key, **kwargs)
            assert (code, status) == ("InvalidRequest", 400), (call, key)
            assert error["Message"] == "Bucket is missing Object Lock Configuration"
    r = signed(server, "PUT", f"/{bucket}/k?legal-hold", b"<LegalHold><Status>ON")
    assert _code(r) == (400, "MalformedXML")
    r = signed(server, "PUT", f"/{bucket}/k?retention", b"<Retention><Mode>")
    assert _code(r) == (400, "MalformedXML")
    assert _fails(s3.get_object_legal_hold, Bucket=bucket, Key="k", VersionId="v2")[:2] == ("InvalidArgument", 400)
    assert _fails(s3.get_object_retention, Bucket=f"{bucket}-none", Key="k")[:2] == ("NoSuchBucket", 404)


def test_writes_that_ask_for_object_lock_are_refused(server: Server, s3, bucket: str) -> None:
    """PutObject, CopyObject and CreateMultipartUpload naming a retention or a legal hold get S3's
    400 for a bucket without Object Lock (worded without the spaces of the retention API's), and
    nothing is written: the object would otherwise be deletable though its writer asked it not be."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    locks: list[dict[str, Any]] = [
        {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until},
        {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until},
        {"ObjectLockLegalHoldStatus": "ON"},
    ]
    for lock in locks:
        calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
            (s3.put_object, {"Key": "locked", "Body": b"x"}),
            (s3.copy_object, {"Key": "locked", "CopySource": {"Bucket": bucket, "Key": "src"}}),
            (s3.create_multipart_upload, {"Key": "locked"}),
        ]
        for call, kwargs in calls:
            code, status, error = _fails(call, Bucket=bucket, **kwargs, **lock)
            assert (code, status, error["Message"]) == ("InvalidRequest", 400, "Bucket is missing ObjectLockConfiguration"), (call, lock)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="locked")["KeyCount"] == 0
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket, Prefix="locked")
    # A raw header alone is enough, whatever its value; an empty one names nothing.
    r = signed(server, "PUT", f"/{bucket}/locked", b"x", {"x-amz-object-lock-legal-hold": "OFF"})
    assert _code(r) == (400, "InvalidRequest")
    r = signed(server, "POST", f"/{bucket}/locked?uploads", b"", {"x-amz-object-lock-retain-until-date": "2999-01-01T00:00:00Z"})
    assert _code(r) == (400, "InvalidRequest")
    assert signed(server, "PUT", f"/{bucket}/locked", b"x", {"x-amz-object-lock-mode": ""}).status == 200


# -- RestoreObject --------------------------------------------------------------------------------


def test_restore_object(server: Server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object(Bucket=bucket, Key="ir", Body=b"x", StorageClass="GLACIER_IR")
    for key in ("k", "ir"):
        code, status, error = _fails(s3.restore_object, Bucket=bucket, Key=key, RestoreRequest={"Days": 1})
        assert (code, status) == ("InvalidObjectState", 403)
        assert error["Message"] == "Restore is not allowed for the object's current storage class"
    assert _fails(s3.restore_object, Bucket=bucket, Key="k")[:2] == ("InvalidObjectState", 403)
    code, status, error = _fails(s3.restore_object, Bucket=bucket, Key="absent", RestoreRequest={"Days": 1})
    assert (code, status, error["Key"]) == ("NoSuchKey", 404, "absent")
    assert _code(signed(server, "POST", f"/{bucket}/k?restore", b"<RestoreRequest><Days>")) == (400, "MalformedXML")
    assert _code(signed(server, "POST", f"/{bucket}/k?restore", b"<Other/>")) == (400, "MalformedXML")
    # Nothing is archived here: an object stored as GLACIER reads as it is, and is not "restored".
    s3.put_object(Bucket=bucket, Key="cold", Body=b"x", StorageClass="GLACIER")
    assert _fails(s3.restore_object, Bucket=bucket, Key="cold", RestoreRequest={"Days": 1})[:2] == ("NotImplemented", 501)
    assert s3.get_object(Bucket=bucket, Key="cold")["Body"].read() == b"x"


# -- analytics, metrics, inventory, intelligent-tiering -------------------------------------------

KINDS = [
    # (sub-resource, boto3 name part, list key in boto3's answer, list root element)
    ("analytics", "analytics", "AnalyticsConfigurationList", "ListBucketAnalyticsConfigurationResult"),
    ("metrics", "metrics", "MetricsConfigurationList", "ListMetricsConfigurationsResult"),
    ("inventory", "inventory", "InventoryConfigurationList", "ListInventoryConfigurationsResult"),
    (
        "intelligent-tiering",
        "intelligent_tiering",
        "IntelligentTieringConfigurationList",
        "ListBucketIntelligentTieringConfigurationsOutput",
    ),
]


@pytest.mark.parametrize("sub,name,list_key,root", KINDS)
def test_configurations_a_bucket_never_has(server: Server, s3, bucket: str, sub: str, name: str, list_key: str, root: str) -> None:
    listed = getattr(s3, f"list_bucket_{name}_configurations")(Bucket=bucket)
    assert listed["IsTruncated"] is False
    assert listed.get(list_key, []) == []
    listed = getattr(s3, f"list_bucket_{name}_configurations")(Bucket=bucket, ContinuationToken="t1")
    assert listed["ContinuationToken"] == "t1" and listed.get(list_key, []) == []
    r = signed(server, "GET", f"/{bucket}?{sub}")
    assert r.status == 200 and f'<{root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'.encode() in r.data
    for verb in ("get", "delete"):
        call = getattr(s3, f"{verb}_bucket_{name}_configuration")
        code, status, error = _fails(call, Bucket=bucket, Id="report")
        assert (code, status) == ("NoSuchConfiguration", 404), verb
        assert error["Message"] == "The specified configuration does not exist."
    body = b"<Configuration><Id>report</Id></Configuration>"
    r = signed(server, "PUT", f"/{bucket}?{sub}&id=report", body)
    assert _code(r) == (501, "NotImplemented")
    assert _fails(getattr(s3, f"list_bucket_{name}_configurations"), Bucket=f"{bucket}-none")[:2] == ("NoSuchBucket", 404)
