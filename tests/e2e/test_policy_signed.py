"""Bucket policies evaluated for signed requests, as on S3 with every s3serve user the root of an
account of its own: an explicit Deny binds the bucket's owner too (but never takes the policy
itself from it), and an Allow naming another user lets that user in, as the bucket's owner."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Server, start_server, stop_server
from tests.e2e.conftest import cache_pair, until
from tests.e2e.test_expect_continue import BIG, PROMPT, _address, _head, _read_answer
from tests.e2e.test_protocol_edges import sigv4_presigned_with_query_headers

OPEN = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False, "RestrictPublicBuckets": False}
# The classic policy that makes uploads name their encryption (AWS's knowledge-center example).
REQUIRE_SSE = [
    {
        "Sid": "DenyIncorrectEncryptionHeader",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::BUCKET/*",
        "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}},
    },
    {
        "Sid": "DenyUnencryptedObjectUploads",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::BUCKET/*",
        "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
    },
]


def _put_policy(s3, bucket: str, *statements: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    text = json.dumps({"Version": "2012-10-17", "Statement": list(statements)}).replace("BUCKET", bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=text)


def _error(call, **kwargs: Any) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _grant(bucket: str, user_id: str, actions: list[str], resource: str = "/*") -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"CanonicalUser": user_id},
        "Action": actions,
        "Resource": f"arn:aws:s3:::{bucket}{resource}",
    }


def _client(server: Server, key: str, **config: Any):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=key, aws_secret_access_key=f"{key}-secret",
        region_name="us-east-1", config=Config(**config) if config else None,
    )  # fmt: skip


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("signed-policy")
    credentials = base / "users.json"
    credentials.write_text(
        json.dumps({"users": [{"access_key": "alice", "secret_key": "alice-secret"}, {"access_key": "bob", "secret_key": "bob-secret"}]})
    )
    root = base / "root"
    root.mkdir()
    srv = start_server(root, "--credentials", str(credentials), "--no-fsync", access_key="", secret_key="")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def alice(users: Server):  # type: ignore[no-untyped-def]
    return _client(users, "alice")


@pytest.fixture(scope="module")
def bob(users: Server):  # type: ignore[no-untyped-def]
    return _client(users, "bob")


def _new_bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = f"pol-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _id(s3) -> str:  # type: ignore[no-untyped-def]
    return str(s3.list_buckets()["Owner"]["ID"])


def test_owner_must_name_the_encryption_its_policy_requires(alice) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    _put_policy(alice, name, *REQUIRE_SSE)
    assert _error(alice.put_object, Bucket=name, Key="plain", Body=b"x") == ("AccessDenied", 403)
    assert _error(alice.put_object, Bucket=name, Key="kms", Body=b"x", ServerSideEncryption="aws:kms") == ("AccessDenied", 403)
    assert _error(alice.create_multipart_upload, Bucket=name, Key="mp") == ("AccessDenied", 403)
    alice.put_object(Bucket=name, Key="sealed", Body=b"x", ServerSideEncryption="AES256")
    # Only PutObject is denied: the owner reads, lists and deletes as before.
    assert alice.get_object(Bucket=name, Key="sealed")["Body"].read() == b"x"
    assert [o["Key"] for o in alice.list_objects_v2(Bucket=name)["Contents"]] == ["sealed"]
    assert _error(alice.head_object, Bucket=name, Key="plain") == ("404", 404)
    alice.delete_bucket_policy(Bucket=name)
    alice.put_object(Bucket=name, Key="plain", Body=b"x")


def test_a_policy_put_in_place_by_hand_binds_the_owner_at_once(users: Server, alice) -> None:  # type: ignore[no-untyped-def]
    """The owner's GET, HEAD, PUT and DELETE took a bucket's policy for missing as long as the
    bucket's record was unchanged: a policy.json that an admin (or a restore) put in its folder
    was enforced for everyone else, and for the owner's other requests, but not for those,
    until the next configuration change through the API."""
    name = _new_bucket(alice)
    alice.put_object(Bucket=name, Key="k", Body=b"v")
    assert users.root is not None
    record = users.root / ".s3serve" / "buckets" / f"{name}.json"
    until(lambda: time.time() - record.stat().st_ctime > 0.2)  # settled: the server caches it
    assert alice.get_object(Bucket=name, Key="k")["Body"].read() == b"v"  # no policy, noted as such
    folder = users.root / ".s3serve" / "bucket-config" / name
    folder.mkdir(parents=True, exist_ok=True)
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{name}/*"}
    (folder / "policy.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": [deny]}))
    plain = _client(users, "alice")
    # Without Expect: 100-continue (curl -T, most small uploads), which takes the owner's fast path.
    def no_expect(request, **_: Any) -> None:  # type: ignore[no-untyped-def]
        request.headers.pop("Expect", None)  # (a before-send handler that returns anything answers)

    plain.meta.events.register("before-send.s3.PutObject", no_expect)
    assert _error(plain.get_object, Bucket=name, Key="k") == ("AccessDenied", 403)
    assert _error(plain.head_object, Bucket=name, Key="k") == ("403", 403)
    assert _error(plain.put_object, Bucket=name, Key="new", Body=b"x") == ("AccessDenied", 403)
    assert _error(plain.delete_object, Bucket=name, Key="k") == ("AccessDenied", 403)
    assert (folder.parent.parent.parent / name / "k").read_bytes() == b"v"
    assert not (folder.parent.parent.parent / name / "new").exists()
    plain.delete_bucket_policy(Bucket=name)  # the owner keeps that, as on S3
    assert plain.get_object(Bucket=name, Key="k")["Body"].read() == b"v"


def test_deny_over_plain_http_binds_the_owner_but_not_its_policy(alice) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    alice.put_object(Bucket=name, Key="k", Body=b"v")
    https_only = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    _put_policy(alice, name, https_only)
    for call, kwargs in [
        (alice.get_object, {"Key": "k"}),
        (alice.put_object, {"Key": "k2", "Body": b"x"}),
        (alice.delete_object, {"Key": "k"}),
        (alice.list_objects_v2, {}),
        (alice.get_bucket_tagging, {}),
        (alice.put_bucket_cors, {"CORSConfiguration": {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}}),
        (alice.get_public_access_block, {}),
        (alice.delete_bucket, {}),
    ]:
        assert _error(call, Bucket=name, **kwargs) == ("AccessDenied", 403), call
    assert _error(alice.head_object, Bucket=name, Key="k")[1] == 403
    # The owner keeps the policy: it reads it, replaces it and deletes it.
    assert json.loads(alice.get_bucket_policy(Bucket=name)["Policy"])["Statement"][0]["Effect"] == "Deny"
    _put_policy(alice, name, https_only)
    alice.delete_bucket_policy(Bucket=name)
    assert alice.get_object(Bucket=name, Key="k")["Body"].read() == b"v"


def test_another_user_granted_by_canonical_id(alice, bob) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    alice.put_object(Bucket=name, Key="shared/a", Body=b"alice's")
    alice_id, bob_id = _id(alice), _id(bob)
    assert _error(bob.get_object, Bucket=name, Key="shared/a") == ("AccessDenied", 403)
    assert _error(bob.put_object, Bucket=name, Key="shared/b", Body=b"x") == ("AccessDenied", 403)
    _put_policy(
        alice, name,
        _grant(name, bob_id, ["s3:GetObject", "s3:PutObject"]),
        _grant(name, bob_id, ["s3:ListBucket"], resource=""),
    )  # fmt: skip
    assert bob.get_object(Bucket=name, Key="shared/a")["Body"].read() == b"alice's"
    bob.put_object(Bucket=name, Key="shared/b", Body=b"bob's", ContentType="text/plain")
    assert [o["Key"] for o in bob.list_objects_v2(Bucket=name)["Contents"]] == ["shared/a", "shared/b"]
    # What bob wrote is the bucket owner's (BucketOwnerEnforced).
    listed = alice.list_objects_v2(Bucket=name, FetchOwner=True)["Contents"]
    assert {o["Key"]: o["Owner"]["ID"] for o in listed} == {"shared/a": alice_id, "shared/b": alice_id}
    assert alice.get_object_acl(Bucket=name, Key="shared/b")["Owner"]["ID"] == alice_id
    got = alice.get_object(Bucket=name, Key="shared/b")
    assert (got["Body"].read(), got["ContentType"]) == (b"bob's", "text/plain")
    # Granted listing: a missing key is told (404); ungranted actions stay refused.
    assert _error(bob.get_object, Bucket=name, Key="shared/none") == ("NoSuchKey", 404)
    assert _error(bob.delete_object, Bucket=name, Key="shared/a") == ("AccessDenied", 403)
    assert _error(bob.get_bucket_policy, Bucket=name) == ("AccessDenied", 403)
    assert _error(bob.delete_bucket_policy, Bucket=name) == ("AccessDenied", 403)
    assert _error(bob.get_bucket_tagging, Bucket=name) == ("AccessDenied", 403)
    assert name not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    # Without the grant, bob is refused again.
    alice.delete_bucket_policy(Bucket=name)
    assert _error(bob.get_object, Bucket=name, Key="shared/a") == ("AccessDenied", 403)
    assert _error(bob.list_objects_v2, Bucket=name) == ("AccessDenied", 403)


def test_multipart_upload_by_a_granted_user(alice, bob) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    _put_policy(alice, name, _grant(name, _id(bob), ["s3:PutObject"]))
    upload = bob.create_multipart_upload(Bucket=name, Key="mp")
    part = bob.upload_part(Bucket=name, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"parts")
    bob.complete_multipart_upload(
        Bucket=name, Key="mp", UploadId=upload["UploadId"], MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    )
    assert alice.get_object(Bucket=name, Key="mp")["Body"].read() == b"parts"
    # Without s3:ListBucket, a missing key is not told: 403.
    assert _error(bob.get_object, Bucket=name, Key="mp") == ("AccessDenied", 403)


def test_a_deny_beats_the_grant(alice, bob) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    alice.put_object(Bucket=name, Key="open/x", Body=b"x")
    alice.put_object(Bucket=name, Key="secret/y", Body=b"y")
    deny = {"Effect": "Deny", "Principal": {"CanonicalUser": _id(bob)}, "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/secret/*"}
    _put_policy(alice, name, _grant(name, _id(bob), ["s3:GetObject"]), deny)
    assert bob.get_object(Bucket=name, Key="open/x")["Body"].read() == b"x"
    assert _error(bob.get_object, Bucket=name, Key="secret/y") == ("AccessDenied", 403)
    # The Deny names bob only: the owner is not bound by it.
    assert alice.get_object(Bucket=name, Key="secret/y")["Body"].read() == b"y"


def test_public_policy_grants_other_users_unless_restricted(alice, bob) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    alice.put_object(Bucket=name, Key="pub", Body=b"p")
    alice.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=OPEN)
    _put_policy(alice, name, {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"})
    assert bob.get_object(Bucket=name, Key="pub")["Body"].read() == b"p"
    alice.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={**OPEN, "RestrictPublicBuckets": True})
    assert _error(bob.get_object, Bucket=name, Key="pub") == ("AccessDenied", 403)
    assert alice.get_object(Bucket=name, Key="pub")["Body"].read() == b"p"


def test_delete_objects_refuses_a_denied_key_and_deletes_the_rest(alice) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    for key in ("a", "keep/b", "c"):
        alice.put_object(Bucket=name, Key=key, Body=b"x")
    _put_policy(alice, name, {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{name}/keep/*"})
    result = alice.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "a"}, {"Key": "keep/b"}, {"Key": "c"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["a", "c"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("keep/b", "AccessDenied")]
    assert [o["Key"] for o in alice.list_objects_v2(Bucket=name)["Contents"]] == ["keep/b"]
    assert _error(alice.delete_object, Bucket=name, Key="keep/b") == ("AccessDenied", 403)


def test_delete_objects_by_a_granted_user(alice, bob) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    for key in ("tmp/a", "b"):
        alice.put_object(Bucket=name, Key=key, Body=b"x")
    _put_policy(alice, name, _grant(name, _id(bob), ["s3:DeleteObject"], resource="/tmp/*"))
    result = bob.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "tmp/a"}, {"Key": "b"}]})
    assert [d["Key"] for d in result["Deleted"]] == ["tmp/a"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("b", "AccessDenied")]
    assert [o["Key"] for o in alice.list_objects_v2(Bucket=name)["Contents"]] == ["b"]


def test_copy_needs_the_source_and_the_destination(alice, bob) -> None:  # type: ignore[no-untyped-def]
    source, target = _new_bucket(alice), _new_bucket(bob)
    alice.put_object(Bucket=source, Key="src/x", Body=b"copied")
    copy = {"Bucket": target, "Key": "dst", "CopySource": {"Bucket": source, "Key": "src/x"}}
    assert _error(bob.copy_object, **copy) == ("AccessDenied", 403)
    _put_policy(alice, source, _grant(source, _id(bob), ["s3:GetObject"], resource="/src/*"))
    bob.copy_object(**copy)
    assert bob.get_object(Bucket=target, Key="dst")["Body"].read() == b"copied"
    # Alice reads her own source, but needs bob's grant for his bucket.
    assert _error(alice.copy_object, **{**copy, "Key": "from-alice"}) == ("AccessDenied", 403)
    _put_policy(bob, target, _grant(target, _id(alice), ["s3:PutObject"]))
    alice.copy_object(**{**copy, "Key": "from-alice"})
    assert bob.get_object(Bucket=target, Key="from-alice")["Body"].read() == b"copied"
    # UploadPartCopy likewise: the source's s3:GetObject.
    upload = bob.create_multipart_upload(Bucket=target, Key="mp")
    part = bob.upload_part_copy(Bucket=target, Key="mp", UploadId=upload["UploadId"], PartNumber=1, CopySource={"Bucket": source, "Key": "src/x"})
    bob.complete_multipart_upload(
        Bucket=target, Key="mp", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]},
    )  # fmt: skip
    assert bob.get_object(Bucket=target, Key="mp")["Body"].read() == b"copied"
    alice.delete_bucket_policy(Bucket=source)
    assert _error(bob.copy_object, **copy) == ("AccessDenied", 403)
    upload = bob.create_multipart_upload(Bucket=target, Key="mp2")
    assert _error(
        bob.upload_part_copy, Bucket=target, Key="mp2", UploadId=upload["UploadId"], PartNumber=1, CopySource={"Bucket": source, "Key": "src/x"}
    ) == ("AccessDenied", 403)


def test_the_owner_copy_is_bound_by_a_deny_on_its_source(alice) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    alice.put_object(Bucket=name, Key="locked/x", Body=b"x")
    _put_policy(alice, name, {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/locked/*"})
    other = _new_bucket(alice)
    assert _error(alice.copy_object, Bucket=other, Key="y", CopySource={"Bucket": name, "Key": "locked/x"}) == ("AccessDenied", 403)


def test_signed_post_object_needs_put_object(users: Server, alice, bob) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)

    def post(client, key: str) -> int:  # type: ignore[no-untyped-def]
        form = client.generate_presigned_post(name, key)
        response = urllib3.PoolManager().request("POST", form["url"], fields={**form["fields"], "file": ("f.txt", b"posted")})
        return response.status

    assert post(bob, "up/x") == 403
    _put_policy(alice, name, _grant(name, _id(bob), ["s3:PutObject"], resource="/up/*"))
    assert post(bob, "up/x") == 204
    assert post(bob, "elsewhere") == 403
    listed = alice.list_objects_v2(Bucket=name, FetchOwner=True)["Contents"]
    assert [(o["Key"], o["Owner"]["ID"]) for o in listed] == [("up/x", _id(alice))]
    # s3:authType tells a form from other uploads.
    _put_policy(alice, name, {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{name}/*", "Condition": {"StringEquals": {"s3:authType": "POST"}}})
    assert post(alice, "mine") == 403
    alice.put_object(Bucket=name, Key="mine", Body=b"x")


def test_signature_conditions(users: Server, alice) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    alice.put_object(Bucket=name, Key="k", Body=b"v")
    _put_policy(
        alice, name,
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*",
         "Condition": {"StringEquals": {"s3:authType": "REST-QUERY-STRING"}}},
    )  # fmt: skip
    url = alice.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "k"})
    assert urllib3.PoolManager().request("GET", url).status == 403
    assert alice.get_object(Bucket=name, Key="k")["Body"].read() == b"v"
    _put_policy(
        alice, name,
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{name}/*",
         "Condition": {"StringNotEquals": {"s3:signatureversion": "AWS4-HMAC-SHA256"}}},
    )  # fmt: skip
    sigv2 = _client(users, "alice", signature_version="s3")
    assert _error(sigv2.get_object, Bucket=name, Key="k") == ("AccessDenied", 403)
    assert alice.get_object(Bucket=name, Key="k")["Body"].read() == b"v"
    # Listings: s3:max-keys, a number.
    _put_policy(
        alice, name,
        {"Effect": "Deny", "Principal": "*", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{name}",
         "Condition": {"NumericGreaterThan": {"s3:max-keys": "100"}}},
    )  # fmt: skip
    assert alice.list_objects_v2(Bucket=name, MaxKeys=50)["KeyCount"] == 1
    assert _error(alice.list_objects_v2, Bucket=name, MaxKeys=500) == ("AccessDenied", 403)


def test_upload_tags_condition(alice) -> None:  # type: ignore[no-untyped-def]
    name = _new_bucket(alice)
    _put_policy(
        alice, name,
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{name}/*",
         "Condition": {"ForAnyValue:StringNotEquals": {"s3:RequestObjectTagKeys": ["project", "owner"]}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{name}/*",
         "Condition": {"StringEquals": {"s3:RequestObjectTag/project": "forbidden"}}},
    )  # fmt: skip
    alice.put_object(Bucket=name, Key="untagged", Body=b"x")
    alice.put_object(Bucket=name, Key="ok", Body=b"x", Tagging="project=blue&owner=me")
    assert _error(alice.put_object, Bucket=name, Key="bad", Body=b"x", Tagging="project=blue&cost=1") == ("AccessDenied", 403)
    assert _error(alice.put_object, Bucket=name, Key="bad", Body=b"x", Tagging="project=forbidden") == ("AccessDenied", 403)


def test_presigned_upload_tags_in_the_query_need_their_grant(users: Server, alice: Any, bob: Any) -> None:
    """Tags a presigned URL carries in its query (the JS SDK v3 hoists x-amz-tagging there) are
    the upload's tags for the policy too: s3:PutObjectTagging besides s3:PutObject, and the
    s3:RequestObjectTag conditions, as with the header."""
    name = _new_bucket(alice)
    _put_policy(alice, name, _grant(name, _id(bob), ["s3:PutObject"]))
    refused = ("AccessDenied", 403)
    assert _error(bob.put_object, Bucket=name, Key="k", Body=b"x", Tagging="project=blue") == refused

    def presigned_put(key: str, headers: dict[str, str]) -> tuple[int, bytes]:
        url = sigv4_presigned_with_query_headers(users, "PUT", name, key, headers, "bob", "bob-secret")
        answer = urllib3.PoolManager().request("PUT", url, body=b"from bob")
        return answer.status, answer.data

    status, body = presigned_put("tagged", {"x-amz-tagging": "project=blue"})
    assert status == 403 and b"<Code>AccessDenied</Code>" in body, body
    assert presigned_put("plain", {"x-amz-storage-class": "STANDARD_IA"})[0] == 200
    assert alice.head_object(Bucket=name, Key="plain")["StorageClass"] == "STANDARD_IA"
    _put_policy(
        alice, name,
        _grant(name, _id(bob), ["s3:PutObject", "s3:PutObjectTagging"]),
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{name}/*",
         "Condition": {"ForAnyValue:StringNotEquals": {"s3:RequestObjectTagKeys": ["project"]}}},
    )  # fmt: skip
    assert presigned_put("tagged", {"x-amz-tagging": "project=blue"})[0] == 200
    tagging = alice.get_object_tagging(Bucket=name, Key="tagged")
    assert tagging["TagSet"] == [{"Key": "project", "Value": "blue"}]
    status, body = presigned_put("other", {"x-amz-tagging": "cost=1"})
    assert status == 403 and b"<Code>AccessDenied</Code>" in body, body


def test_through_the_upstream_cache(tmp_path: Path) -> None:
    with cache_pair(tmp_path) as (_upstream, cache):
        s3 = cache.client()
        name = f"cache-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=name)
        _put_policy(s3, name, *REQUIRE_SSE)
        assert _error(s3.put_object, Bucket=name, Key="plain", Body=b"x") == ("AccessDenied", 403)
        s3.put_object(Bucket=name, Key="sealed", Body=b"x", ServerSideEncryption="AES256")
        assert s3.get_object(Bucket=name, Key="sealed")["Body"].read() == b"x"
        _put_policy(s3, name, {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/sealed"})
        assert _error(s3.get_object, Bucket=name, Key="sealed") == ("AccessDenied", 403)
        s3.delete_bucket_policy(Bucket=name)
        assert s3.get_object(Bucket=name, Key="sealed")["Body"].read() == b"x"


def test_a_denied_upload_is_refused_before_its_body(users: Server, alice) -> None:  # type: ignore[no-untyped-def]
    """Expect: 100-continue: the policy is read with the headers, so a denied upload's 1 GiB body
    is never asked for; an allowed one gets its 100."""
    name = _new_bucket(alice)
    _put_policy(alice, name, *REQUIRE_SSE)
    as_alice = dataclasses.replace(users, access_key="alice", secret_key="alice-secret")
    for headers, status in [({}, 403), ({"x-amz-server-side-encryption": "AES256"}, 100)]:
        with socket.create_connection(_address(users), timeout=PROMPT) as sock:
            sock.sendall(_head(as_alice, "PUT", f"/{name}/big", {"Content-Length": BIG, **headers}))
            answer, _ = _read_answer(sock)
            assert (answer.status, answer.code) == (status, "AccessDenied" if status == 403 else None), answer
