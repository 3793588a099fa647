"""Requests S3 refuses without a Content-MD5 or an x-amz-checksum-* of their body: 400
InvalidRequest "Missing required header for this request: Content-MD5", as AWS answered
PutBucketCors (brendanhay/amazonka#610), PutBucketLifecycleConfiguration (amazonka#369,
boto/botocore#1888), PutBucketTagging (aws-amplify/aws-sdk-ios#109) and DeleteObjects
(aws/aws-cli#400) sent without one. A checksum header in its place is taken, as S3 takes the
ones SDKs send since they stopped sending Content-MD5; boto3 sends one by itself."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from tests.conftest import Server, signed

CORS = (
    b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"
    b"</CORSRule></CORSConfiguration>"
)
LIFECYCLE = (
    b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status>"
    b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>"
)
TAGGING = b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"
DELETE = b"<Delete><Object><Key>doomed</Key></Object></Delete>"

CASES = [("PUT", "cors", CORS), ("PUT", "lifecycle", LIFECYCLE), ("PUT", "tagging", TAGGING), ("POST", "delete", DELETE)]


def _digest(header: str, body: bytes) -> str:
    """The value of the digest header ``header`` (Content-MD5 or x-amz-checksum-crc32) for ``body``."""
    raw = hashlib.md5(body).digest() if header == "Content-MD5" else zlib.crc32(body).to_bytes(4, "big")
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("digest", ["Content-MD5", "x-amz-checksum-crc32"])
@pytest.mark.parametrize(("method", "sub", "body"), CASES, ids=[c[1] for c in CASES])
def test_with_a_digest_is_taken(
    server: Server, s3, bucket: str, method: str, sub: str, body: bytes, digest: str
) -> None:
    s3.put_object(Bucket=bucket, Key="doomed", Body=b"x")
    r = signed(server, method, f"/{bucket}?{sub}", body, headers={digest: _digest(digest, body)})
    assert r.status in (200, 204), r.data
    if sub == "delete":
        assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    else:
        assert signed(server, "GET", f"/{bucket}?{sub}").status == 200


def test_boto3_sends_one_by_itself(s3, s3_when_required, bucket: str) -> None:
    rules = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=rules)
    s3_when_required.put_bucket_cors(Bucket=bucket, CORSConfiguration=rules)
    s3_when_required.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    s3.put_object(Bucket=bucket, Key="doomed", Body=b"x")
    s3_when_required.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "doomed"}]})
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


# No digest: no header at all, or headers of the x-amz-checksum- family that give no value to
# check the body by (an algorithm named alone, its value neither in a header nor in a trailer, or
# a checksum type).
NO_DIGEST = [
    {}, {"x-amz-checksum-algorithm": "CRC32"}, {"x-amz-checksum-type": "FULL_OBJECT"},
    {"x-amz-sdk-checksum-algorithm": "CRC32"},
]  # fmt: skip


@pytest.mark.parametrize("headers", NO_DIGEST, ids=[next(iter(h), "none") for h in NO_DIGEST])
@pytest.mark.parametrize(("method", "sub", "body"), CASES, ids=[c[1] for c in CASES])
def test_without_a_digest_is_refused(
    server: Server, s3, bucket: str, method: str, sub: str, body: bytes, headers: dict[str, str]
) -> None:
    s3.put_object(Bucket=bucket, Key="doomed", Body=b"x")
    r = signed(server, method, f"/{bucket}?{sub}", body, headers=headers)
    assert r.status == 400, r.data
    assert b"<Code>InvalidRequest</Code>" in r.data
    assert b"<Message>Missing required header for this request: Content-MD5</Message>" in r.data
    # Nothing was done: the object is there, the bucket has no such configuration.
    assert s3.get_object(Bucket=bucket, Key="doomed")["Body"].read() == b"x"
    if sub != "delete":
        assert signed(server, "GET", f"/{bucket}?{sub}").status == 404


@pytest.mark.parametrize("digest", ["Content-MD5", "x-amz-checksum-crc32"])
@pytest.mark.parametrize(("method", "sub", "body"), CASES, ids=[c[1] for c in CASES])
def test_a_digest_of_other_bytes_is_bad_digest(
    server: Server, s3, bucket: str, method: str, sub: str, body: bytes, digest: str
) -> None:
    s3.put_object(Bucket=bucket, Key="doomed", Body=b"x")
    r = signed(server, method, f"/{bucket}?{sub}", body, headers={digest: _digest(digest, body + b" ")})
    assert r.status == 400, r.data
    assert b"<Code>BadDigest</Code>" in r.data
    assert s3.get_object(Bucket=bucket, Key="doomed")["Body"].read() == b"x"
    if sub != "delete":
        assert signed(server, "GET", f"/{bucket}?{sub}").status == 404
