"""Bucket policies evaluated for anonymous (unsigned) requests, and the public access block that
stands in front of them, as on S3: a bucket, or part of one, made publicly readable. Signed
requests: tests/e2e/test_policy_signed.py."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from tests.conftest import Server, https_server, start_server, stop_server
from tests.e2e.conftest import cache_pair

OPEN = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False, "RestrictPublicBuckets": False}


def _statement(bucket: str, action: str | list[str] = "s3:GetObject", resource: str = "public/*", **extra: Any) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{bucket}" + (f"/{resource}" if resource is not None else "")
    return {"Effect": "Allow", "Principal": "*", "Action": action, "Resource": arn, **extra}


def _put_policy(s3, bucket: str, *statements: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


def _open(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=OPEN)


def _fetch(
    url: str, method: str = "GET", data: bytes | None = None, context: ssl.SSLContext | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """A plain unsigned request, as a browser or curl sends it."""
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        with exc:  # its connection, closed now rather than whenever the collector finds it
            return exc.code, dict(exc.headers), exc.read()


def _code(body: bytes) -> str:
    return body.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode() if b"<Code>" in body else ""


def _error(call, **kwargs: Any) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _status(call, **kwargs: Any) -> int:  # type: ignore[no-untyped-def]
    try:
        return int(call(**kwargs)["ResponseMetadata"]["HTTPStatusCode"])
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


@pytest.fixture(scope="module")
def anon(server: Server):  # type: ignore[no-untyped-def]
    return server.client(signature_version=UNSIGNED)


def test_public_policy_is_refused_while_block_public_policy_is_on(s3, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        _put_policy(s3, bucket, _statement(bucket))
    error = exc.value.response["Error"]
    assert (error["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    assert "because public policies are blocked by the BlockPublicPolicy block public access setting" in error["Message"]
    assert _error(s3.get_bucket_policy, Bucket=bucket) == ("NoSuchBucketPolicy", 404)
    # A policy that is not public (fixed addresses) is accepted with the default block.
    _put_policy(s3, bucket, _statement(bucket, Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"] == {"IsPublic": False}


def test_public_read_of_a_prefix(server: Server, s3, anon, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="public/x", Body=b"public bytes", ContentType="image/png")
    s3.put_object(Bucket=bucket, Key="private/y", Body=b"secret")
    url = f"{server.endpoint}/{bucket}/public/x"
    status, _, body = _fetch(url)
    assert (status, _code(body)) == (403, "AccessDenied")  # no policy yet
    _open(s3, bucket)
    _put_policy(s3, bucket, _statement(bucket))

    status, headers, body = _fetch(url)
    signed = s3.get_object(Bucket=bucket, Key="public/x")
    assert signed["Body"].read() == b"public bytes"  # read whole: its connection goes back to the pool
    assert (status, body) == (200, b"public bytes")
    assert headers["ETag"] == signed["ETag"] and headers["Content-Type"] == signed["ContentType"] == "image/png"
    head = anon.head_object(Bucket=bucket, Key="public/x")
    assert (head["ETag"], head["ContentLength"], head["ContentType"]) == (signed["ETag"], 12, "image/png")
    assert anon.get_object(Bucket=bucket, Key="public/x", Range="bytes=0-5")["Body"].read() == b"public"
    status, _, body = _fetch(f"{server.endpoint}/{bucket}/private/y")
    assert (status, _code(body)) == (403, "AccessDenied")
    assert _error(anon.get_object, Bucket=bucket, Key="private/y") == ("AccessDenied", 403)
    assert _status(anon.head_object, Bucket=bucket, Key="private/y") == 403

    # A missing key: 403 to who may not list the bucket, 404 NoSuchKey to who may.
    status, _, body = _fetch(f"{server.endpoint}/{bucket}/public/missing")
    assert (status, _code(body)) == (403, "AccessDenied")
    assert _status(anon.head_object, Bucket=bucket, Key="public/missing") == 403
    _put_policy(s3, bucket, _statement(bucket), _statement(bucket, "s3:ListBucket", resource=None))
    status, _, body = _fetch(f"{server.endpoint}/{bucket}/public/missing")
    assert (status, _code(body)) == (404, "NoSuchKey")
    assert _status(anon.head_object, Bucket=bucket, Key="public/missing") == 404

    # Only reads were granted.
    assert _error(anon.put_object, Bucket=bucket, Key="public/new", Body=b"x") == ("AccessDenied", 403)
    assert _error(anon.delete_object, Bucket=bucket, Key="public/x") == ("AccessDenied", 403)
    assert _error(anon.get_object_tagging, Bucket=bucket, Key="public/x") == ("AccessDenied", 403)
    assert _error(anon.get_bucket_policy, Bucket=bucket) == ("AccessDenied", 403)
    assert s3.get_object(Bucket=bucket, Key="public/x")["Body"].read() == b"public bytes"


def test_anonymous_listing_needs_list_bucket(s3, anon, bucket: str) -> None:
    for key in ("public/a", "public/b", "private/c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    _open(s3, bucket)
    _put_policy(s3, bucket, _statement(bucket))
    assert _error(anon.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)
    assert _error(anon.list_objects, Bucket=bucket) == ("AccessDenied", 403)
    _put_policy(
        s3,
        bucket,
        _statement(bucket),
        _statement(bucket, "s3:ListBucket", resource=None, Condition={"StringLike": {"s3:prefix": "public/*"}}),
    )
    listed = anon.list_objects_v2(Bucket=bucket, Prefix="public/")
    assert [o["Key"] for o in listed["Contents"]] == ["public/a", "public/b"]
    assert listed == {**listed, "KeyCount": 2, "Prefix": "public/"}
    assert [o["Key"] for o in anon.list_objects(Bucket=bucket, Prefix="public/")["Contents"]] == ["public/a", "public/b"]
    assert _error(anon.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)
    assert _error(anon.list_objects_v2, Bucket=bucket, Prefix="private/") == ("AccessDenied", 403)
    assert _status(anon.head_bucket, Bucket=bucket) == 403  # HeadBucket has no prefix
    _put_policy(s3, bucket, _statement(bucket, "s3:ListBucket", resource=None))
    assert [o["Key"] for o in anon.list_objects_v2(Bucket=bucket)["Contents"]] == ["private/c", "public/a", "public/b"]
    assert _status(anon.head_bucket, Bucket=bucket) == 200


def test_anonymous_writes_only_where_granted(s3, anon, bucket: str) -> None:
    _open(s3, bucket)
    _put_policy(s3, bucket, _statement(bucket, "s3:GetObject", resource="*"))
    assert _error(anon.put_object, Bucket=bucket, Key="uploads/a", Body=b"anon") == ("AccessDenied", 403)
    assert _status(s3.head_object, Bucket=bucket, Key="uploads/a") == 404
    _put_policy(s3, bucket, _statement(bucket, "s3:GetObject", resource="*"), _statement(bucket, "s3:PutObject", "uploads/*"))
    anon.put_object(Bucket=bucket, Key="uploads/a", Body=b"anon", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="uploads/a")
    assert (got["Body"].read(), got["ContentType"]) == (b"anon", "text/plain")
    owner = s3.list_buckets()["Owner"]["ID"]
    listed = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"]
    assert [(o["Key"], o["Owner"]["ID"]) for o in listed] == [("uploads/a", owner)]
    # Multipart, through the same grant.
    upload = anon.create_multipart_upload(Bucket=bucket, Key="uploads/mp")
    part = anon.upload_part(Bucket=bucket, Key="uploads/mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"parts")
    anon.complete_multipart_upload(
        Bucket=bucket, Key="uploads/mp", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="uploads/mp")["Body"].read() == b"parts"
    assert _error(anon.put_object, Bucket=bucket, Key="elsewhere", Body=b"x") == ("AccessDenied", 403)
    assert _error(anon.delete_object, Bucket=bucket, Key="uploads/a") == ("AccessDenied", 403)


def test_deny_wins_for_anonymous_and_signed_requests(server: Server, s3, anon, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="public/ok", Body=b"ok")
    s3.put_object(Bucket=bucket, Key="public/secret/k", Body=b"no")
    _open(s3, bucket)
    deny = {**_statement(bucket, "s3:*", "public/secret/*"), "Effect": "Deny"}
    _put_policy(s3, bucket, deny, _statement(bucket))
    assert _fetch(f"{server.endpoint}/{bucket}/public/ok")[::2] == (200, b"ok")
    status, _, body = _fetch(f"{server.endpoint}/{bucket}/public/secret/k")
    assert (status, _code(body)) == (403, "AccessDenied")
    # The Deny names everyone: the owner's signed requests too, as on S3 (tests/e2e/test_policy_signed.py).
    assert _error(s3.get_object, Bucket=bucket, Key="public/secret/k") == ("AccessDenied", 403)
    assert _error(s3.put_object, Bucket=bucket, Key="public/secret/k2", Body=b"x") == ("AccessDenied", 403)
    assert s3.get_object(Bucket=bucket, Key="public/ok")["Body"].read() == b"ok"
    s3.delete_bucket_policy(Bucket=bucket)  # the owner keeps the policy; the fixture empties the bucket
    s3.delete_object(Bucket=bucket, Key="public/secret/k")


def test_source_ip_condition(server: Server, s3, anon, bucket: str) -> None:
    """An allow narrowed to fixed addresses is not public: the default public access block
    lets it be stored and lets it apply."""
    s3.put_object(Bucket=bucket, Key="public/x", Body=b"local")
    url = f"{server.endpoint}/{bucket}/public/x"
    _put_policy(s3, bucket, _statement(bucket, Condition={"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}))
    assert _fetch(url)[::2] == (200, b"local")
    _put_policy(s3, bucket, _statement(bucket, Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert _fetch(url)[0] == 403
    _open(s3, bucket)
    _put_policy(s3, bucket, _statement(bucket, Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert _fetch(url)[::2] == (200, b"local")


def test_secure_transport_condition(tmp_path: Path, server: Server, s3, bucket: str) -> None:
    https_only = _statement("BUCKET", Condition={"Bool": {"aws:SecureTransport": "true"}})
    # Over plain http: the condition does not hold.
    s3.put_object(Bucket=bucket, Key="public/x", Body=b"tls")
    _open(s3, bucket)
    _put_policy(s3, bucket, {**https_only, "Resource": f"arn:aws:s3:::{bucket}/public/*"})
    assert _fetch(f"{server.endpoint}/{bucket}/public/x")[0] == 403
    with https_server(tmp_path / "root") as (srv, tls_s3):
        name = f"tls-{uuid.uuid4().hex[:12]}"
        tls_s3.create_bucket(Bucket=name)
        tls_s3.put_object(Bucket=name, Key="public/x", Body=b"tls")
        _open(tls_s3, name)
        _put_policy(tls_s3, name, {**https_only, "Resource": f"arn:aws:s3:::{name}/public/*"})
        context = ssl.create_default_context(cafile=str(tmp_path / "root" / ".s3serve" / "tls" / "cert.pem"))
        context.check_hostname = False
        assert _fetch(f"{srv.endpoint}/{name}/public/x", context=context)[::2] == (200, b"tls")
        _put_policy(tls_s3, name, {**https_only, "Condition": {"Bool": {"aws:SecureTransport": "false"}}, "Resource": f"arn:aws:s3:::{name}/public/*"})
        assert _fetch(f"{srv.endpoint}/{name}/public/x", context=context)[0] == 403


def test_restrict_public_buckets_and_delete_policy_close_it_again(server: Server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="public/x", Body=b"open")
    url = f"{server.endpoint}/{bucket}/public/x"
    _open(s3, bucket)
    _put_policy(s3, bucket, _statement(bucket))
    assert _fetch(url)[::2] == (200, b"open")
    # RestrictPublicBuckets takes a public policy out of effect; the policy stays.
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={**OPEN, "RestrictPublicBuckets": True})
    status, _, body = _fetch(url)
    assert (status, _code(body)) == (403, "AccessDenied")
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0]["Action"] == "s3:GetObject"
    s3.delete_public_access_block(Bucket=bucket)  # a deleted configuration blocks nothing
    assert _fetch(url)[::2] == (200, b"open")
    s3.delete_bucket_policy(Bucket=bucket)
    assert _fetch(url)[0] == 403
    assert s3.get_object(Bucket=bucket, Key="public/x")["Body"].read() == b"open"


@pytest.fixture(scope="module")
def two_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("policy-users")
    users = base / "users.json"
    users.write_text(
        json.dumps(
            {
                "users": [
                    {"access_key": "alice", "secret_key": "alice-secret"},
                    {"access_key": "bob", "secret_key": "bob-secret"},
                ]
            }
        )
    )
    root = base / "root"
    root.mkdir()
    srv = start_server(root, "--credentials", str(users), "--no-fsync", access_key="", secret_key="")
    yield srv
    stop_server(srv)


def test_a_public_policy_opens_the_bucket_to_other_users_too(two_users: Server) -> None:
    """As on S3, a policy for everyone applies to other users' signed requests as to anonymous
    ones, and RestrictPublicBuckets takes it away from both."""
    import boto3

    def client(key: str):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3", endpoint_url=two_users.endpoint, aws_access_key_id=key, aws_secret_access_key=f"{key}-secret",
            region_name="us-east-1",
        )  # fmt: skip

    alice, bob = client("alice"), client("bob")
    name = f"alice-{uuid.uuid4().hex[:8]}"
    alice.create_bucket(Bucket=name)
    alice.put_object(Bucket=name, Key="public/x", Body=b"alice's")
    alice.put_object(Bucket=name, Key="private/y", Body=b"alice's")
    assert _error(bob.get_object, Bucket=name, Key="public/x") == ("AccessDenied", 403)
    _open(alice, name)
    _put_policy(alice, name, _statement(name))
    assert _fetch(f"{two_users.endpoint}/{name}/public/x")[::2] == (200, b"alice's")
    assert bob.get_object(Bucket=name, Key="public/x")["Body"].read() == b"alice's"
    assert _error(bob.get_object, Bucket=name, Key="private/y") == ("AccessDenied", 403)
    assert _error(bob.put_object, Bucket=name, Key="public/z", Body=b"bob's") == ("AccessDenied", 403)
    alice.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={**OPEN, "RestrictPublicBuckets": True})
    assert _error(bob.get_object, Bucket=name, Key="public/x") == ("AccessDenied", 403)


def test_through_the_upstream_cache(tmp_path: Path) -> None:
    with cache_pair(tmp_path) as (_upstream, cache):
        s3 = cache.client()
        name = f"cache-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="public/x", Body=b"cached", ContentType="text/css")
        s3.put_object(Bucket=name, Key="private/y", Body=b"hidden")
        _open(s3, name)
        _put_policy(s3, name, _statement(name))
        status, headers, body = _fetch(f"{cache.endpoint}/{name}/public/x")
        assert (status, body, headers["Content-Type"]) == (200, b"cached", "text/css")
        status, _, body = _fetch(f"{cache.endpoint}/{name}/private/y")
        assert (status, _code(body)) == (403, "AccessDenied")


def test_a_missing_bucket_is_told_to_anonymous_requests(server: Server, anon) -> None:  # type: ignore[no-untyped-def]
    """S3 answers an anonymous request to a bucket that does not exist with 404 NoSuchBucket
    (bucket names are public); creating or listing buckets stays refused."""
    missing = f"no-such-{uuid.uuid4().hex[:12]}"
    assert _error(anon.get_object, Bucket=missing, Key="k") == ("NoSuchBucket", 404)
    assert _error(anon.list_objects_v2, Bucket=missing) == ("NoSuchBucket", 404)
    assert _error(anon.put_object, Bucket=missing, Key="k", Body=b"x") == ("NoSuchBucket", 404)
    assert _status(anon.head_object, Bucket=missing, Key="k") == 404
    status, _, body = _fetch(f"{server.endpoint}/{missing}/some/key")
    assert (status, _code(body)) == (404, "NoSuchBucket")
    assert _error(anon.create_bucket, Bucket=missing) == ("AccessDenied", 403)
    assert _error(anon.list_buckets) == ("AccessDenied", 403)
