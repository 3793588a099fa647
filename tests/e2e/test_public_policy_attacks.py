"""Anonymous requests trying to get more than the bucket policy grants them, or than S3 would
give them: each of these was once answered with more."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Server
from tests.e2e.test_public_policy import OPEN, _code, _fetch


def _grant(s3, bucket: str, actions: list[str], resource: str = "*") -> None:  # type: ignore[no-untyped-def]
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=OPEN)
    statement = {"Effect": "Allow", "Principal": "*", "Action": actions, "Resource": f"arn:aws:s3:::{bucket}/{resource}"}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))


def test_response_overrides_are_refused_to_anonymous_gets(server: Server, s3, bucket: str) -> None:
    """S3 honours response-content-type & co. on signed requests only: anonymously they would let
    anyone serve a public (user-uploaded) object as text/html from the bucket's origin."""
    s3.put_object(Bucket=bucket, Key="public/avatar.png", Body=b"<script>alert(1)</script>", ContentType="image/png")
    _grant(s3, bucket, ["s3:GetObject"], "public/*")
    url = f"{server.endpoint}/{bucket}/public/avatar.png"
    status, headers, _ = _fetch(url)
    assert (status, headers["Content-Type"]) == (200, "image/png")
    for query in ("response-content-type=text/html", "response-content-disposition=inline", "response-cache-control=x"):
        status, headers, body = _fetch(f"{url}?{query}")
        assert (status, _code(body)) == (400, "InvalidRequest"), query
        assert b"Request specific response headers cannot be used for anonymous GET requests." in body
        assert _fetch(f"{url}?{query}", "HEAD")[0] == 400
    # Signed requests keep them.
    assert s3.get_object(Bucket=bucket, Key="public/avatar.png", ResponseContentType="text/plain")["ContentType"] == "text/plain"


def test_upload_with_tags_or_acl_needs_those_actions_too(server: Server, s3, bucket: str) -> None:
    """PutObject (and CreateMultipartUpload) that tags what it writes also needs
    s3:PutObjectTagging, one that names an ACL s3:PutObjectAcl, as on S3."""
    _grant(s3, bucket, ["s3:PutObject"], "drop/*")
    base = f"{server.endpoint}/{bucket}/drop"
    assert _fetch(f"{base}/plain", "PUT", b"x")[0] == 200
    status, _, body = _fetch(f"{base}/tagged", "PUT", b"x", **{"x-amz-tagging": "owner=mallory"})
    assert (status, _code(body)) == (403, "AccessDenied")
    status, _, body = _fetch(f"{base}/mpu?uploads", "POST", b"", **{"x-amz-tagging": "owner=mallory"})
    assert (status, _code(body)) == (403, "AccessDenied")
    status, _, body = _fetch(f"{base}/acl", "PUT", b"x", **{"x-amz-acl": "private"})
    assert (status, _code(body)) == (403, "AccessDenied")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["drop/plain"]

    _grant(s3, bucket, ["s3:PutObject", "s3:PutObjectTagging"], "drop/*")
    assert _fetch(f"{base}/tagged", "PUT", b"x", **{"x-amz-tagging": "a=b"})[0] == 200
    assert s3.get_object_tagging(Bucket=bucket, Key="drop/tagged")["TagSet"] == [{"Key": "a", "Value": "b"}]


def test_get_object_attributes_needs_get_object_too(server: Server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
    _grant(s3, bucket, ["s3:GetObjectAttributes"])
    url = f"{server.endpoint}/{bucket}/k?attributes"
    status, _, body = _fetch(url, **{"x-amz-object-attributes": "ETag,ObjectSize"})
    assert (status, _code(body)) == (403, "AccessDenied")
    _grant(s3, bucket, ["s3:GetObjectAttributes", "s3:GetObject"])
    assert _fetch(url, **{"x-amz-object-attributes": "ETag,ObjectSize"})[0] == 200


def test_missing_keys_are_not_told_apart_without_list_bucket(server: Server, s3, bucket: str) -> None:
    """Not by GET/HEAD only: every operation on an object answers a missing key with 403 to an
    anonymous requester that may not list the bucket, as on S3."""
    s3.put_object(Bucket=bucket, Key="there", Body=b"x")
    actions = ["s3:GetObjectTagging", "s3:PutObjectTagging", "s3:DeleteObjectTagging", "s3:GetObjectAcl", "s3:GetObject", "s3:GetObjectAttributes"]
    _grant(s3, bucket, actions)
    tagging = b"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>"
    requests: list[tuple[str, str, bytes | None, dict[str, Any]]] = [
        ("GET", "tagging", None, {}),
        ("PUT", "tagging", tagging, {}),
        ("DELETE", "tagging", None, {}),
        ("GET", "acl", None, {}),
        ("GET", "attributes", None, {"x-amz-object-attributes": "ETag"}),
    ]
    for method, sub, data, headers in requests:
        there = _fetch(f"{server.endpoint}/{bucket}/there?{sub}", method, data, **headers)[0]
        status, _, body = _fetch(f"{server.endpoint}/{bucket}/missing?{sub}", method, data, **headers)
        assert there in (200, 204), (method, sub)
        assert (status, _code(body)) == (403, "AccessDenied"), (method, sub)
    # With s3:ListBucket, the missing key is told.
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": "*", "Action": actions, "Resource": f"arn:aws:s3:::{bucket}/*"},
                    {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
                ],
            }
        ),
    )
    status, _, body = _fetch(f"{server.endpoint}/{bucket}/missing?tagging")
    assert (status, _code(body)) == (404, "NoSuchKey")


def test_a_whole_internet_address_block_is_public_however_written(server: Server, s3, bucket: str) -> None:
    """With the default public access block, a policy for everyone whose aws:SourceIp is a /0
    written as "0.0.0.0/00" was taken for a fixed source: stored despite BlockPublicPolicy, then
    granted every address despite RestrictPublicBuckets."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"IpAddress": {"aws:SourceIp": ["0.0.0.0/00", "::/00"]}},
    }
    document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    from botocore.exceptions import ClientError

    try:
        s3.put_bucket_policy(Bucket=bucket, Policy=document)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied"
    else:
        raise AssertionError("a public policy was stored while BlockPublicPolicy is on")
    assert _fetch(f"{server.endpoint}/{bucket}/k")[0] == 403
