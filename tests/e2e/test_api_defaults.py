"""S3's answers for the newer request shapes and defaults of the API, which a strict client or a
test written against AWS relies on: ListBuckets' bucket-region filter, HeadBucket's headers, and
the newer sub-resources (ABAC, S3 Metadata, object annotations, UpdateObjectEncryption), which
must be refused by name rather than fall back to the plain operation of their method."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, signed


@pytest.fixture
def other_region_bucket(s3) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"rg-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield name
    s3.delete_bucket(Bucket=name)


def test_list_buckets_filters_by_bucket_region(s3, bucket: str, other_region_bucket: str) -> None:
    """AWS: bucket-region "limits the response to buckets that are located in the specified Region"
    (ListBuckets, API reference); s3serve ignored it and listed every bucket."""
    names = lambda **kw: {b["Name"] for b in s3.list_buckets(**kw)["Buckets"]}  # noqa: E731
    assert {bucket, other_region_bucket} <= names()
    in_eu = names(BucketRegion="eu-west-1")
    assert other_region_bucket in in_eu and bucket not in in_eu
    in_us = names(BucketRegion="us-east-1")
    assert bucket in in_us and other_region_bucket not in in_us
    page = s3.list_buckets(BucketRegion="eu-west-1", Prefix=other_region_bucket)
    assert [(b["Name"], b["BucketRegion"]) for b in page["Buckets"]] == [(other_region_bucket, "eu-west-1")]
    assert "ContinuationToken" not in page


def test_head_bucket_says_it_is_not_an_access_point_alias(s3, bucket: str) -> None:
    """AWS answers HeadBucket of a bucket with x-amz-access-point-alias: false beside
    x-amz-bucket-region; boto3 and `aws s3api head-bucket` report it as AccessPointAlias."""
    answer = s3.head_bucket(Bucket=bucket)
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amz-access-point-alias"] == "false"
    assert answer["AccessPointAlias"] is False
    assert answer["BucketRegion"] == "us-east-1"


def _refused(response: object, operation: str) -> None:
    status, data = response.status, response.data  # type: ignore[attr-defined]
    assert status == 501, data
    assert b"<Code>NotImplemented</Code>" in data
    assert operation.encode() in data


def test_newer_object_sub_resources_do_not_touch_the_object(server: Server, s3, bucket: str) -> None:
    """PUT ?encryption (UpdateObjectEncryption) was served as PutObject, storing the request's
    XML as the object; DELETE ?annotation (DeleteObjectAnnotation) as DeleteObject."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"payload")
    document = (
        b"<ObjectEncryption><SSE-KMS><KMSKeyArn>arn:aws:kms:us-east-1:1:key/x</KMSKeyArn></SSE-KMS></ObjectEncryption>"
    )
    _refused(signed(server, "PUT", f"/{bucket}/k?encryption", document), "UpdateObjectEncryption")
    _refused(signed(server, "PUT", f"/{bucket}/k?annotation&annotationName=a", b"x"), "PutObjectAnnotation")
    _refused(signed(server, "DELETE", f"/{bucket}/k?annotation&annotationName=a"), "DeleteObjectAnnotation")
    _refused(signed(server, "GET", f"/{bucket}/k?annotation&annotationName=a"), "GetObjectAnnotation")
    _refused(signed(server, "GET", f"/{bucket}/k?annotation"), "ListObjectAnnotations")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"


def test_newer_bucket_sub_resources_do_not_touch_the_bucket(server: Server, s3, bucket: str) -> None:
    """DELETE ?metadataConfiguration was served as DeleteBucket (an empty bucket was gone), GET
    ?abac and ?metadataConfiguration as ListObjects, POST ?metadataTable as a form upload."""
    _refused(signed(server, "DELETE", f"/{bucket}?metadataConfiguration"), "DeleteBucketMetadataConfiguration")
    _refused(signed(server, "GET", f"/{bucket}?metadataConfiguration"), "GetBucketMetadataConfiguration")
    _refused(signed(server, "POST", f"/{bucket}?metadataConfiguration", b"<x/>"), "CreateBucketMetadataConfiguration")
    _refused(signed(server, "POST", f"/{bucket}?metadataTable", b"<x/>"), "CreateBucketMetadataTableConfiguration")
    for sub in ("metadataAnnotationTable", "metadataInventoryTable", "metadataJournalTable"):
        _refused(signed(server, "PUT", f"/{bucket}?{sub}", b"<x/>"), f"UpdateBucketMetadata{sub[8:]}Configuration")
    _refused(signed(server, "PUT", f"/{bucket}?abac", b"<AbacStatus/>"), "PutBucketAbac")
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_abac(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "NotImplemented"
    s3.head_bucket(Bucket=bucket)
