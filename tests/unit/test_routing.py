"""Routing: real request shapes from the S3 API reference -> operation names."""

from __future__ import annotations

import pytest

from s3serve import errors
from s3serve.routing import TABLE, bucket_from_host, resolve, split_path

# (method, path, query string, extra headers) -> (operation, bucket, key)
CASES = [
    ("GET", "/", "", {}, ("ListBuckets", None, None)),
    ("GET", "/", "max-buckets=10&prefix=a", {}, ("ListBuckets", None, None)),
    ("PUT", "/photos", "", {}, ("CreateBucket", "photos", None)),
    ("PUT", "/photos/", "", {}, ("CreateBucket", "photos", None)),
    ("HEAD", "/photos", "", {}, ("HeadBucket", "photos", None)),
    ("DELETE", "/photos", "", {}, ("DeleteBucket", "photos", None)),
    ("GET", "/photos", "", {}, ("ListObjects", "photos", None)),
    ("GET", "/photos", "list-type=2&prefix=a%2F&delimiter=%2F", {}, ("ListObjectsV2", "photos", None)),
    ("GET", "/photos", "location", {}, ("GetBucketLocation", "photos", None)),
    ("GET", "/photos", "uploads", {}, ("ListMultipartUploads", "photos", None)),
    ("GET", "/photos", "versioning", {}, ("GetBucketVersioning", "photos", None)),
    ("GET", "/photos", "versions", {}, ("ListObjectVersions", "photos", None)),
    ("GET", "/photos", "acl", {}, ("GetBucketAcl", "photos", None)),
    ("PUT", "/photos", "tagging", {}, ("PutBucketTagging", "photos", None)),
    ("DELETE", "/photos", "policy", {}, ("DeleteBucketPolicy", "photos", None)),
    ("GET", "/photos", "lifecycle", {}, ("GetBucketLifecycleConfiguration", "photos", None)),
    ("POST", "/photos", "delete", {}, ("DeleteObjects", "photos", None)),
    ("PUT", "/photos/2024/cat.jpg", "", {}, ("PutObject", "photos", "2024/cat.jpg")),
    ("PUT", "/photos/cat.jpg", "", {"x-amz-copy-source": "/other/dog.jpg"}, ("CopyObject", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "", {}, ("GetObject", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "partNumber=2", {}, ("GetObject", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "versionId=null", {}, ("GetObject", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "response-content-type=text%2Fplain", {}, ("GetObject", "photos", "cat.jpg")),
    ("HEAD", "/photos/cat.jpg", "", {}, ("HeadObject", "photos", "cat.jpg")),
    ("DELETE", "/photos/cat.jpg", "", {}, ("DeleteObject", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "tagging", {}, ("GetObjectTagging", "photos", "cat.jpg")),
    ("PUT", "/photos/cat.jpg", "tagging", {}, ("PutObjectTagging", "photos", "cat.jpg")),
    ("DELETE", "/photos/cat.jpg", "tagging", {}, ("DeleteObjectTagging", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "acl", {}, ("GetObjectAcl", "photos", "cat.jpg")),
    # Newer sub-resources: named, not taken for the plain operation of their method.
    ("PUT", "/photos/cat.jpg", "encryption", {}, ("UpdateObjectEncryption", "photos", "cat.jpg")),
    ("DELETE", "/photos/cat.jpg", "annotation&annotationName=a", {}, ("DeleteObjectAnnotation", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "annotation", {}, ("ListObjectAnnotations", "photos", "cat.jpg")),
    ("DELETE", "/photos", "metadataConfiguration", {}, ("DeleteBucketMetadataConfiguration", "photos", None)),
    ("POST", "/photos", "metadataTable", {}, ("CreateBucketMetadataTableConfiguration", "photos", None)),
    ("GET", "/photos", "abac", {}, ("GetBucketAbac", "photos", None)),
    ("GET", "/photos/cat.jpg", "attributes", {}, ("GetObjectAttributes", "photos", "cat.jpg")),
    ("POST", "/photos/big.iso", "uploads", {}, ("CreateMultipartUpload", "photos", "big.iso")),
    ("PUT", "/photos/big.iso", "partNumber=1&uploadId=abc", {}, ("UploadPart", "photos", "big.iso")),
    (
        "PUT", "/photos/big.iso", "partNumber=1&uploadId=abc", {"x-amz-copy-source": "photos/a"},
        ("UploadPartCopy", "photos", "big.iso"),
    ),
    ("POST", "/photos/big.iso", "uploadId=abc", {}, ("CompleteMultipartUpload", "photos", "big.iso")),
    ("DELETE", "/photos/big.iso", "uploadId=abc", {}, ("AbortMultipartUpload", "photos", "big.iso")),
    ("GET", "/photos/big.iso", "uploadId=abc&max-parts=2", {}, ("ListParts", "photos", "big.iso")),
    ("PUT", "/photos/new.jpg", "renameObject", {"x-amz-rename-source": "/photos/old.jpg"}, ("RenameObject", "photos", "new.jpg")),
    ("POST", "/photos/cat.jpg", "restore", {}, ("RestoreObject", "photos", "cat.jpg")),
    # CORS preflights, for the URL the browser is about to use, whatever its query.
    ("OPTIONS", "/photos", "", {}, ("OptionsObject", "photos", None)),
    ("OPTIONS", "/photos/", "", {}, ("OptionsObject", "photos", None)),
    ("OPTIONS", "/photos/2024/cat.jpg", "", {}, ("OptionsObject", "photos", "2024/cat.jpg")),
    ("OPTIONS", "/photos/big.iso", "partNumber=1&uploadId=abc&X-Amz-Signature=x", {}, ("OptionsObject", "photos", "big.iso")),
    ("OPTIONS", "/photos", "list-type=2&prefix=a", {}, ("OptionsObject", "photos", None)),
    ("GET", "/photos", "cors", {}, ("GetBucketCors", "photos", None)),
    ("PUT", "/photos", "cors", {}, ("PutBucketCors", "photos", None)),
    ("DELETE", "/photos", "cors", {}, ("DeleteBucketCors", "photos", None)),
    ("PUT", "/photos", "versioning", {}, ("PutBucketVersioning", "photos", None)),
    ("GET", "/photos", "policyStatus", {}, ("GetBucketPolicyStatus", "photos", None)),
    ("GET", "/photos", "publicAccessBlock", {}, ("GetPublicAccessBlock", "photos", None)),
    ("GET", "/photos", "object-lock", {}, ("GetObjectLockConfiguration", "photos", None)),
    ("PUT", "/photos", "acl", {}, ("PutBucketAcl", "photos", None)),
    ("PUT", "/photos/cat.jpg", "acl", {"x-amz-acl": "private"}, ("PutObjectAcl", "photos", "cat.jpg")),
    ("PUT", "/photos/cat.jpg", "acl&versionId=null", {}, ("PutObjectAcl", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "retention", {}, ("GetObjectRetention", "photos", "cat.jpg")),
    ("PUT", "/photos/cat.jpg", "retention&versionId=null", {}, ("PutObjectRetention", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "legal-hold", {}, ("GetObjectLegalHold", "photos", "cat.jpg")),
    ("PUT", "/photos/cat.jpg", "legal-hold", {}, ("PutObjectLegalHold", "photos", "cat.jpg")),
    ("GET", "/photos/cat.jpg", "torrent", {}, ("GetObjectTorrent", "photos", "cat.jpg")),
    # Analytics, metrics, inventory, intelligent-tiering: a GET names one configuration by its id;
    # without one it is the List operation (which pages with continuation-token).
    ("GET", "/photos", "analytics&id=report", {}, ("GetBucketAnalyticsConfiguration", "photos", None)),
    ("GET", "/photos", "analytics", {}, ("ListBucketAnalyticsConfigurations", "photos", None)),
    ("GET", "/photos", "analytics&continuation-token=t1", {}, ("ListBucketAnalyticsConfigurations", "photos", None)),
    ("PUT", "/photos", "analytics&id=report", {}, ("PutBucketAnalyticsConfiguration", "photos", None)),
    ("DELETE", "/photos", "analytics&id=report", {}, ("DeleteBucketAnalyticsConfiguration", "photos", None)),
    ("DELETE", "/photos", "analytics", {}, ("DeleteBucketAnalyticsConfiguration", "photos", None)),
    ("GET", "/photos", "metrics&id=EntireBucket", {}, ("GetBucketMetricsConfiguration", "photos", None)),
    ("GET", "/photos", "metrics", {}, ("ListBucketMetricsConfigurations", "photos", None)),
    ("DELETE", "/photos", "metrics&id=EntireBucket", {}, ("DeleteBucketMetricsConfiguration", "photos", None)),
    ("GET", "/photos", "inventory&id=weekly", {}, ("GetBucketInventoryConfiguration", "photos", None)),
    ("GET", "/photos", "inventory", {}, ("ListBucketInventoryConfigurations", "photos", None)),
    ("PUT", "/photos", "inventory&id=weekly", {}, ("PutBucketInventoryConfiguration", "photos", None)),
    ("GET", "/photos", "intelligent-tiering&id=tier", {}, ("GetBucketIntelligentTieringConfiguration", "photos", None)),
    ("GET", "/photos", "intelligent-tiering", {}, ("ListBucketIntelligentTieringConfigurations", "photos", None)),
    ("DELETE", "/photos", "intelligent-tiering&id=tier", {}, ("DeleteBucketIntelligentTieringConfiguration", "photos", None)),
    # An id alone selects nothing: a plain listing, as S3 ignores query parameters it does not know.
    ("GET", "/photos", "id=report", {}, ("ListObjects", "photos", None)),
    # Keys are decoded exactly once, and keep what S3 keeps.
    ("GET", "/photos/a%20b%2Bc", "", {}, ("GetObject", "photos", "a b+c")),
    ("GET", "/photos/a+b", "", {}, ("GetObject", "photos", "a+b")),
    ("GET", "/photos/%252F", "", {}, ("GetObject", "photos", "%2F")),
    ("GET", "/photos/dir/", "", {}, ("GetObject", "photos", "dir/")),
    ("GET", "/photos/%E6%97%A5%E6%9C%AC", "", {}, ("GetObject", "photos", "日本")),
    ("GET", "/photos/a%3Fb%23c", "", {}, ("GetObject", "photos", "a?b#c")),
    ("GET", "/photos/%2e%2e%2fetc", "", {}, ("GetObject", "photos", "../etc")),
]


def _query(qs: str) -> dict[str, str]:
    from s3serve.handlers.common import parse_query

    return parse_query(qs)[1]


@pytest.mark.parametrize("method,path,qs,headers,expected", CASES)
def test_route(method: str, path: str, qs: str, headers: dict[str, str], expected: tuple[str, str | None, str | None]) -> None:
    route = resolve(method, "127.0.0.1:9000", path, _query(qs), headers)
    assert (route.operation, route.bucket, route.key) == expected
    assert not route.vhost


def test_virtual_host_style() -> None:
    route = resolve("GET", "photos.s3.example.test:9000", "/2024/cat.jpg", {}, {}, "s3.example.test")
    assert (route.operation, route.bucket, route.key, route.vhost) == ("GetObject", "photos", "2024/cat.jpg", True)
    route = resolve("GET", "photos.s3.example.test", "/", {"list-type": "2"}, {}, "s3.example.test")
    assert (route.operation, route.bucket, route.key) == ("ListObjectsV2", "photos", None)
    # The bare domain is path-style.
    route = resolve("GET", "s3.example.test:9000", "/photos/x", {}, {}, "s3.example.test")
    assert (route.operation, route.bucket, route.key, route.vhost) == ("GetObject", "photos", "x", False)
    assert bucket_from_host("my.dotted.bucket.localhost:80", "localhost") == "my.dotted.bucket"
    assert bucket_from_host("localhost:80", "localhost") is None
    assert bucket_from_host("photos.localhost", None) is None


def test_unknown_method_is_refused() -> None:
    with pytest.raises(errors.S3Error) as info:
        resolve("PATCH", "h", "/photos/x", {}, {})
    assert info.value.code == "MethodNotAllowed" and info.value.status == 405


def test_options_needs_a_bucket() -> None:
    # S3 has no preflight for the service itself.
    with pytest.raises(errors.S3Error) as info:
        resolve("OPTIONS", "h", "/", {}, {})
    assert info.value.code == "MethodNotAllowed"
    route = resolve("OPTIONS", "photos.s3.example.test", "/cat.jpg", {}, {"Origin": "https://a.test"}, "s3.example.test")
    assert (route.operation, route.bucket, route.key, route.vhost) == ("OptionsObject", "photos", "cat.jpg", True)


def test_invalid_utf8_path() -> None:
    with pytest.raises(errors.S3Error) as info:
        split_path("/photos/%ff")
    assert info.value.code == "InvalidURI"


def test_every_operation_has_a_name() -> None:
    # Every table entry names a real AWS operation (CamelCase, no spaces); this is what a 501 says.
    assert all(op[0].isupper() and op.isalnum() for op in TABLE.values())
    assert len(set(TABLE.values())) > 60
