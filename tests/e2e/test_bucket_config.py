"""Bucket configuration sub-resources end to end, through boto3, raw signed requests and the aws
cli: round trips, S3's answers for a bucket that was never configured, validation errors."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, signed

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _fails(call: Callable[..., Any], **kwargs: Any) -> tuple[str, int, dict[str, Any]]:
    """Code, HTTP status and error document of a call that must fail."""
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]


def _put_raw(server: Server, bucket: str, sub: str, body: bytes, md5: bytes | None = None) -> Any:
    """A PUT of a configuration document as it is written, with its Content-MD5."""
    digest = md5 if md5 is not None else hashlib.md5(body).digest()
    headers = {"Content-MD5": base64.b64encode(digest).decode()}
    return signed(server, "PUT", f"/{bucket}?{sub}", body, headers)


@pytest.mark.parametrize(
    "operation,code",
    [
        ("get_bucket_tagging", "NoSuchTagSet"),
        ("get_bucket_cors", "NoSuchCORSConfiguration"),
        ("get_bucket_policy", "NoSuchBucketPolicy"),
        ("get_bucket_policy_status", "NoSuchBucketPolicy"),
        ("get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration"),
        ("get_bucket_website", "NoSuchWebsiteConfiguration"),
        ("get_bucket_replication", "ReplicationConfigurationNotFoundError"),
        ("get_object_lock_configuration", "ObjectLockConfigurationNotFoundError"),
    ],
)
def test_not_configured_errors(s3, bucket: str, operation: str, code: str) -> None:
    got, status, error = _fails(getattr(s3, operation), Bucket=bucket)
    assert (got, status) == (code, 404)
    assert error["BucketName"] == bucket


def test_defaults_of_a_new_bucket(s3, bucket: str) -> None:
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    # SSE-S3, and SSE-C blocked (S3's new buckets since April 2026).
    assert encryption["Rules"] == [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False, "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}
    ]
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert ownership == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)
    notification = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert not {k for k in notification if k != "ResponseMetadata"}
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    assert "Status" not in s3.get_bucket_accelerate_configuration(Bucket=bucket)
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_documents_answer_in_s3_namespace(server: Server, bucket: str) -> None:
    for sub in ("encryption", "ownershipControls", "publicAccessBlock", "logging", "requestPayment", "accelerate", "versioning"):
        r = signed(server, "GET", f"/{bucket}?{sub}")
        assert r.status == 200, (sub, r.data)
        assert r.data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<'), r.data
        assert f'xmlns="{NS}"'.encode() in r.data
        assert r.headers["Content-Type"] == "application/xml"


def test_tagging_round_trip(s3, bucket: str) -> None:
    tags = [{"Key": "project", "Value": "blue"}, {"Key": "empty", "Value": ""}, {"Key": "üñí cødé", "Value": "ok + = . _ : / @ -"}]
    put = s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "k", "Value": "v"}]
    fifty = [{"Key": f"k{i}", "Value": "v" * 256} for i in range(50)]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": fifty})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == fifty
    assert s3.delete_bucket_tagging(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _fails(s3.get_bucket_tagging, Bucket=bucket)[:2] == ("NoSuchTagSet", 404)
    # An empty TagSet is accepted and leaves no tags.
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": []})
    assert _fails(s3.get_bucket_tagging, Bucket=bucket)[:2] == ("NoSuchTagSet", 404)


@pytest.mark.parametrize(
    "tags,code,message",
    [
        ([{"Key": f"k{i}", "Value": "v"} for i in range(51)], "BadRequest", "Bucket tag count cannot be greater than 50"),
        ([{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}], "InvalidTag", "Cannot provide multiple Tags with the same key"),
        ([{"Key": "k" * 129, "Value": "v"}], "InvalidTag", "The TagKey you have provided is invalid"),
        ([{"Key": "k", "Value": "v" * 257}], "InvalidTag", "The TagValue you have provided is invalid"),
        ([{"Key": "Key1,Key2", "Value": "v"}], "InvalidTag", "The TagKey you have provided is invalid"),
        ([{"Key": "aws:prefixed", "Value": "v"}], "InvalidTag", "System tags cannot be added/updated by requester"),
    ],
)
def test_tagging_validation(s3, bucket: str, tags: list[dict[str, str]], code: str, message: str) -> None:
    got, status, error = _fails(s3.put_bucket_tagging, Bucket=bucket, Tagging={"TagSet": tags})
    assert (got, status, error["Message"]) == (code, 400, message)
    assert _fails(s3.get_bucket_tagging, Bucket=bucket)[0] == "NoSuchTagSet"


def test_cors_round_trip(s3, bucket: str) -> None:
    rules = [
        {
            "ID": "app",
            "AllowedHeaders": ["x-amz-*", "Content-TYPE"],
            "AllowedMethods": ["GET", "PUT", "HEAD"],
            "AllowedOrigins": ["https://app.example.com", "http://*.example.org"],
            "ExposeHeaders": ["ETag", "x-amz-request-id"],
            "MaxAgeSeconds": 3000,
        },
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]},
    ]
    put = s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == rules
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _fails(s3.get_bucket_cors, Bucket=bucket)[:2] == ("NoSuchCORSConfiguration", 404)
    # Deleting what is not there is no error either.
    s3.delete_bucket_cors(Bucket=bucket)


def _cors_xml(*rules: str) -> bytes:
    return f"<CORSConfiguration xmlns=\"{NS}\">{''.join(rules)}</CORSConfiguration>".encode()


_GET_ANY = "<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule>"


@pytest.mark.parametrize(
    "body,code,message",
    [
        (_cors_xml(), "MalformedXML", None),
        (_cors_xml(_GET_ANY * 101), "MalformedXML", None),
        (_cors_xml("<CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule>"), "MalformedXML", None),
        (_cors_xml("<CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"), "MalformedXML", None),
        (_cors_xml("<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin><Bogus/></CORSRule>"), "MalformedXML", None),
        (_cors_xml(_GET_ANY.replace("</CORSRule>", "<MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule>")), "MalformedXML", None),
        (b"<CORSConfiguration><CORSRule>", "MalformedXML", None),
        (b"<Tagging><TagSet/></Tagging>", "MalformedXML", None),
        (
            _cors_xml(_GET_ANY.replace("GET", "PATCH")),
            "InvalidRequest",
            "Found unsupported HTTP method in CORS config. Unsupported method is PATCH",
        ),
        (
            _cors_xml(_GET_ANY.replace("<AllowedOrigin>*<", "<AllowedOrigin>http://*.*.example.com<")),
            "InvalidRequest",
            'AllowedOrigin "http://*.*.example.com" can not have more than one wildcard.',
        ),
        (
            _cors_xml(_GET_ANY.replace("</CORSRule>", "<AllowedHeader>x-*-*</AllowedHeader></CORSRule>")),
            "InvalidRequest",
            'AllowedHeader "x-*-*" can not have more than one wildcard.',
        ),
    ],
)
def test_cors_validation(server: Server, s3, bucket: str, body: bytes, code: str, message: str | None) -> None:
    r = _put_raw(server, bucket, "cors", body)
    assert r.status == 400, r.data
    assert f"<Code>{code}</Code>".encode() in r.data
    if message:
        assert f"<Message>{message}</Message>".encode() in r.data.replace(b"&quot;", b'"')
    assert _fails(s3.get_bucket_cors, Bucket=bucket)[0] == "NoSuchCORSConfiguration"


def test_content_md5_is_checked(server: Server, s3, bucket: str) -> None:
    body = _cors_xml(_GET_ANY)
    r = _put_raw(server, bucket, "cors", body, md5=hashlib.md5(b"something else").digest())
    assert r.status == 400 and b"<Code>BadDigest</Code>" in r.data
    assert _fails(s3.get_bucket_cors, Bucket=bucket)[0] == "NoSuchCORSConfiguration"
    r = _put_raw(server, bucket, "cors", body, md5=b"short")
    assert r.status == 400 and b"<Code>InvalidDigest</Code>" in r.data
    tagging = f'<Tagging xmlns="{NS}"><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>'.encode()
    r = _put_raw(server, bucket, "tagging", tagging, md5=hashlib.md5(tagging + b" ").digest())
    assert r.status == 400 and b"<Code>BadDigest</Code>" in r.data
    r = _put_raw(server, bucket, "cors", body)
    assert r.status == 200, r.data
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]


def policy_of(bucket: str) -> dict[str, Any]:
    statement = {"Sid": "read", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
    return {"Version": "2012-10-17", "Statement": [statement]}


def test_policy_round_trip(s3, bucket: str) -> None:
    # This policy is public: S3's default public access block (BlockPublicPolicy) would refuse it.
    s3.delete_public_access_block(Bucket=bucket)
    policy = policy_of(bucket)
    text = json.dumps(policy)
    assert s3.put_bucket_policy(Bucket=bucket, Policy=text)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == policy
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"] == {"IsPublic": True}
    private = {**policy, "Statement": [{**policy["Statement"][0], "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(private))
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == private
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"] == {"IsPublic": False}
    assert s3.delete_bucket_policy(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _fails(s3.get_bucket_policy, Bucket=bucket)[:2] == ("NoSuchBucketPolicy", 404)
    s3.delete_bucket_policy(Bucket=bucket)


@pytest.mark.parametrize(
    "policy,message",
    [
        ("", "Policies must be valid JSON and the first byte must be '{'"),
        ("a random string", "Policies must be valid JSON and the first byte must be '{'"),
        ("[1, 2]", "Policies must be valid JSON and the first byte must be '{'"),
        ("{}", "Missing required field Statement"),
        ('{"Statement": []}', "Could not parse the policy: Statement is empty!"),
        ('{"Statement": [', "This policy contains invalid Json"),
        # Each statement as S3 checks it (a Deny missing its Resource would deny the owner all).
        ('{"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*"}]}', "Missing required field Resource"),
        ('{"Statement": [{"Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::*"}]}', "Missing required field Effect"),
        ('{"Statement": [{"Effect": "hello", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::*"}]}', "Invalid effect: hello"),
        ('{"Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::*"}]}', "Missing required field Principal"),
        ('{"Statement": [{"Effect": "Deny", "Principal": "*", "Resource": "arn:aws:s3:::*"}]}', "Missing required field Action"),
        ('{"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "ec2:*", "Resource": "arn:aws:s3:::*"}]}', "Policy has invalid action"),
        ('{"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*"}]}', "Policy has invalid resource"),
        ('{"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::another-bucket/*"}]}', "Policy has invalid resource"),
        ('{"Statement": ["Deny"]}', "Policy has an invalid statement"),
    ],
)
def test_policy_validation(s3, bucket: str, policy: str, message: str) -> None:
    code, status, error = _fails(s3.put_bucket_policy, Bucket=bucket, Policy=policy)
    assert (code, status, error["Message"]) == ("MalformedPolicy", 400, message)
    assert _fails(s3.get_bucket_policy, Bucket=bucket)[0] == "NoSuchBucketPolicy"


LIFECYCLE = {
    "Rules": [
        {"ID": "expire-logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}},
        {"ID": "abort", "Filter": {}, "Status": "Disabled", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}},
    ]
}


def test_lifecycle_round_trip(s3, bucket: str) -> None:
    put = s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=LIFECYCLE)
    assert put["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert got["Rules"] == LIFECYCLE["Rules"]
    assert s3.delete_bucket_lifecycle(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _fails(s3.get_bucket_lifecycle_configuration, Bucket=bucket)[:2] == ("NoSuchLifecycleConfiguration", 404)
    no_action = {"Rules": [{"ID": "x", "Filter": {}, "Status": "Enabled"}]}
    code, status, error = _fails(s3.put_bucket_lifecycle_configuration, Bucket=bucket, LifecycleConfiguration=no_action)
    assert (code, status, error["Message"]) == ("InvalidRequest", 400, "At least one action needs to be specified in a rule")
    lower = {"Rules": [{**LIFECYCLE["Rules"][0], "Status": "enabled"}]}
    assert _fails(s3.put_bucket_lifecycle_configuration, Bucket=bucket, LifecycleConfiguration=lower)[:2] == ("MalformedXML", 400)


def test_encryption_round_trip(s3, bucket: str) -> None:
    kms = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/k"}, "BucketKeyEnabled": True}]}
    assert s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=kms)["ResponseMetadata"]["HTTPStatusCode"] == 200
    # Without BlockedEncryptionTypes the bucket's SSE-C block stays as it was (blocked, as new).
    blocked = {"BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"] == {"Rules": [{**kms["Rules"][0], **blocked}]}
    assert s3.delete_bucket_encryption(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    default = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert default == [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False, **blocked}]
    wrong = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "k"}}]}
    code, status, error = _fails(s3.put_bucket_encryption, Bucket=bucket, ServerSideEncryptionConfiguration=wrong)
    assert (code, status, error["ArgumentName"]) == ("InvalidArgument", 400, "ApplyServerSideEncryptionByDefault")
    two = {"Rules": [kms["Rules"][0], kms["Rules"][0]]}
    assert _fails(s3.put_bucket_encryption, Bucket=bucket, ServerSideEncryptionConfiguration=two)[:2] == ("MalformedXML", 400)


def test_website_round_trip(s3, bucket: str) -> None:
    website = {"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "error.html"}}
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=website)
    got = s3.get_bucket_website(Bucket=bucket)
    assert (got["IndexDocument"], got["ErrorDocument"]) == (website["IndexDocument"], website["ErrorDocument"])
    redirect = {"RedirectAllRequestsTo": {"HostName": "example.com", "Protocol": "https"}}
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=redirect)
    assert s3.get_bucket_website(Bucket=bucket)["RedirectAllRequestsTo"] == redirect["RedirectAllRequestsTo"]
    assert s3.delete_bucket_website(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _fails(s3.get_bucket_website, Bucket=bucket)[:2] == ("NoSuchWebsiteConfiguration", 404)
    code, status, _ = _fails(s3.put_bucket_website, Bucket=bucket, WebsiteConfiguration={"ErrorDocument": {"Key": "e.html"}})
    assert (code, status) == ("InvalidArgument", 400)


def test_ownership_controls_and_public_access_block(s3, bucket: str) -> None:
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "ObjectWriter"}]
    bad = {"Rules": [{"ObjectOwnership": "Nobody"}]}
    assert _fails(s3.put_bucket_ownership_controls, Bucket=bucket, OwnershipControls=bad)[:2] == ("MalformedXML", 400)
    assert s3.delete_bucket_ownership_controls(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _fails(s3.get_bucket_ownership_controls, Bucket=bucket)[:2] == ("OwnershipControlsNotFoundError", 404)
    s3.delete_bucket_ownership_controls(Bucket=bucket)

    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True, "BlockPublicPolicy": False})
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False, "RestrictPublicBuckets": False}
    assert s3.delete_public_access_block(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _fails(s3.get_public_access_block, Bucket=bucket)[:2] == ("NoSuchPublicAccessBlockConfiguration", 404)
    s3.delete_public_access_block(Bucket=bucket)


def test_logging_notification_payment_accelerate(s3, bucket: str) -> None:
    logging = {"LoggingEnabled": {"TargetBucket": bucket, "TargetPrefix": "logs/"}}
    s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus=logging)
    assert s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"] == logging["LoggingEnabled"]
    missing = {"LoggingEnabled": {"TargetBucket": f"absent-{uuid.uuid4().hex[:12]}", "TargetPrefix": "x/"}}
    assert _fails(s3.put_bucket_logging, Bucket=bucket, BucketLoggingStatus=missing)[:2] == ("InvalidTargetBucketForLogging", 400)
    s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)

    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    assert "EventBridgeConfiguration" in s3.get_bucket_notification_configuration(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert "EventBridgeConfiguration" not in s3.get_bucket_notification_configuration(Bucket=bucket)

    s3.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"})
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "Requester"
    bad = {"Payer": "Someone"}
    assert _fails(s3.put_bucket_request_payment, Bucket=bucket, RequestPaymentConfiguration=bad)[:2] == ("MalformedXML", 400)

    s3.put_bucket_accelerate_configuration(Bucket=bucket, AccelerateConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_accelerate_configuration(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_accelerate_configuration(Bucket=bucket, AccelerateConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_accelerate_configuration(Bucket=bucket)["Status"] == "Suspended"
    lower = {"Status": "enabled"}
    assert _fails(s3.put_bucket_accelerate_configuration, Bucket=bucket, AccelerateConfiguration=lower)[:2] == ("MalformedXML", 400)


def test_replication_and_object_lock_need_versioning(s3, bucket: str) -> None:
    replication = {
        "Role": "arn:aws:iam::123456789012:role/replication",
        "Rules": [{"Status": "Enabled", "Priority": 1, "Filter": {}, "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": "arn:aws:s3:::elsewhere"}}],
    }
    code, status, error = _fails(s3.put_bucket_replication, Bucket=bucket, ReplicationConfiguration=replication)
    assert (code, status) == ("InvalidRequest", 400)
    assert "Versioning must be 'Enabled'" in error["Message"]
    assert _fails(s3.get_bucket_replication, Bucket=bucket)[:2] == ("ReplicationConfigurationNotFoundError", 404)
    assert s3.delete_bucket_replication(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204

    lock = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    code, status, error = _fails(s3.put_object_lock_configuration, Bucket=bucket, ObjectLockConfiguration=lock)
    assert (code, status) == ("InvalidBucketState", 409)
    both = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}}
    assert _fails(s3.put_object_lock_configuration, Bucket=bucket, ObjectLockConfiguration=both)[:2] == ("MalformedXML", 400)
    assert _fails(s3.get_object_lock_configuration, Bucket=bucket)[:2] == ("ObjectLockConfigurationNotFoundError", 404)


def test_versioning(server: Server, s3, bucket: str) -> None:
    code, status, error = _fails(s3.put_bucket_versioning, Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert (code, status) == ("NotImplemented", 501)
    assert "versioning" in error["Message"].lower()
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    # As on S3: Suspended is accepted on a bucket that was never versioned, and reported from then on.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    s3.put_object(Bucket=bucket, Key="k", Body=b"still one version")
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"still one version"
    assert _fails(s3.put_bucket_versioning, Bucket=bucket, VersioningConfiguration={"Status": "enabled"})[:2] == ("MalformedXML", 400)
    empty = f'<VersioningConfiguration xmlns="{NS}"/>'.encode()
    r = _put_raw(server, bucket, "versioning", empty)
    assert r.status == 400 and b"<Code>IllegalVersioningConfigurationException</Code>" in r.data


def test_configuration_goes_with_the_bucket(server: Server, s3) -> None:
    name = f"cfg-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]})
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={"BlockPublicAcls": False})
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy_of(name)))
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    # The documents are hidden state: never objects, never buckets.
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
    assert not [b for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(".") or b["Name"] == "bucket-config"]
    if server.root is not None:
        assert (server.root / ".s3serve" / "bucket-config" / name / "cors.xml").is_file()
    s3.delete_bucket(Bucket=name)
    if server.root is not None:
        assert not (server.root / ".s3serve" / "bucket-config" / name).exists()
    s3.create_bucket(Bucket=name)
    try:
        assert _fails(s3.get_bucket_cors, Bucket=name)[0] == "NoSuchCORSConfiguration"
        assert _fails(s3.get_bucket_tagging, Bucket=name)[0] == "NoSuchTagSet"
        assert _fails(s3.get_bucket_policy, Bucket=name)[0] == "NoSuchBucketPolicy"
        assert s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True
        assert "Status" not in s3.get_bucket_versioning(Bucket=name)
        r = signed(server, "OPTIONS", f"/{name}/k", headers={"Origin": "https://a.test", "Access-Control-Request-Method": "GET"})
        assert r.status == 403 and b"CORS is not enabled for this bucket." in r.data
    finally:
        s3.delete_bucket(Bucket=name)


def test_missing_bucket(s3) -> None:
    name = f"absent-{uuid.uuid4().hex[:12]}"
    for call, kwargs in (
        (s3.get_bucket_cors, {}),
        (s3.put_bucket_tagging, {"Tagging": {"TagSet": []}}),
        (s3.delete_bucket_policy, {}),
        (s3.get_bucket_encryption, {}),
    ):
        assert _fails(call, Bucket=name, **kwargs)[:2] == ("NoSuchBucket", 404)


def test_awscli_cors_and_tagging(aws, bucket: str) -> None:
    cors = {
        "CORSRules": [
            {
                "AllowedHeaders": ["*"],
                "AllowedMethods": ["GET", "PUT", "POST", "DELETE", "HEAD"],
                "AllowedOrigins": ["http://localhost:3000"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3000,
            }
        ]
    }
    aws("s3api", "put-bucket-cors", "--bucket", bucket, "--cors-configuration", json.dumps(cors))
    assert json.loads(aws("s3api", "get-bucket-cors", "--bucket", bucket).stdout) == cors
    aws("s3api", "put-bucket-tagging", "--bucket", bucket, "--tagging", "TagSet=[{Key=team,Value=web},{Key=env,Value=dev}]")
    tags = json.loads(aws("s3api", "get-bucket-tagging", "--bucket", bucket).stdout)["TagSet"]
    assert tags == [{"Key": "team", "Value": "web"}, {"Key": "env", "Value": "dev"}]
    aws("s3api", "delete-bucket-tagging", "--bucket", bucket)
    missing = aws("s3api", "get-bucket-tagging", "--bucket", bucket, check=False)
    assert missing.returncode != 0 and "NoSuchTagSet" in missing.stderr
    aws("s3api", "delete-bucket-cors", "--bucket", bucket)
    missing = aws("s3api", "get-bucket-cors", "--bucket", bucket, check=False)
    assert missing.returncode != 0 and "NoSuchCORSConfiguration" in missing.stderr
