"""Request shape -> S3 operation name. A pure function over (method, host, path, query, headers).

The operation is found by a dict lookup on (method, level, sub-resource), where level is
service / bucket / object and the sub-resource is the first query parameter, in priority order,
that names one (``?uploads``, ``?tagging``, ...). Every AWS operation we know of is in the table,
implemented or not, so an unimplemented one can be answered with 501 naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from . import errors

SERVICE, BUCKET, OBJECT = "service", "bucket", "object"

# Query parameters that select a sub-resource, highest priority first (uploadId beats partNumber,
# which alone is only a GetObject/HeadObject option).
SUBRESOURCES = (
    "uploads",
    "uploadId",
    "renameObject",
    "tagging",
    "annotation",
    "acl",
    "attributes",
    "restore",
    "select",
    "retention",
    "legal-hold",
    "torrent",
    "delete",
    "location",
    "versioning",
    "versions",
    "policy",
    "policyStatus",
    "cors",
    "lifecycle",
    "encryption",
    "website",
    "logging",
    "notification",
    "replication",
    "requestPayment",
    "accelerate",
    "object-lock",
    "ownershipControls",
    "publicAccessBlock",
    "analytics",
    "metrics",
    "inventory",
    "intelligent-tiering",
    "session",
    "metadataTable",
    "metadataConfiguration",
    "metadataAnnotationTable",
    "metadataInventoryTable",
    "metadataJournalTable",
    "abac",
)

_BUCKET_CONFIG = {
    # sub-resource: (Get, Put, Delete) operation names
    "tagging": ("GetBucketTagging", "PutBucketTagging", "DeleteBucketTagging"),
    "acl": ("GetBucketAcl", "PutBucketAcl", None),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning", None),
    "policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    "policyStatus": ("GetBucketPolicyStatus", None, None),
    "cors": ("GetBucketCors", "PutBucketCors", "DeleteBucketCors"),
    "lifecycle": (
        "GetBucketLifecycleConfiguration",
        "PutBucketLifecycleConfiguration",
        "DeleteBucketLifecycle",
    ),
    "encryption": ("GetBucketEncryption", "PutBucketEncryption", "DeleteBucketEncryption"),
    "website": ("GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"),
    "logging": ("GetBucketLogging", "PutBucketLogging", None),
    "notification": (
        "GetBucketNotificationConfiguration",
        "PutBucketNotificationConfiguration",
        None,
    ),
    "replication": ("GetBucketReplication", "PutBucketReplication", "DeleteBucketReplication"),
    "requestPayment": ("GetBucketRequestPayment", "PutBucketRequestPayment", None),
    "accelerate": ("GetBucketAccelerateConfiguration", "PutBucketAccelerateConfiguration", None),
    "object-lock": ("GetObjectLockConfiguration", "PutObjectLockConfiguration", None),
    "ownershipControls": (
        "GetBucketOwnershipControls",
        "PutBucketOwnershipControls",
        "DeleteBucketOwnershipControls",
    ),
    "publicAccessBlock": ("GetPublicAccessBlock", "PutPublicAccessBlock", "DeletePublicAccessBlock"),
    "analytics": (
        "GetBucketAnalyticsConfiguration",
        "PutBucketAnalyticsConfiguration",
        "DeleteBucketAnalyticsConfiguration",
    ),
    "metrics": (
        "GetBucketMetricsConfiguration",
        "PutBucketMetricsConfiguration",
        "DeleteBucketMetricsConfiguration",
    ),
    "inventory": (
        "GetBucketInventoryConfiguration",
        "PutBucketInventoryConfiguration",
        "DeleteBucketInventoryConfiguration",
    ),
    "intelligent-tiering": (
        "GetBucketIntelligentTieringConfiguration",
        "PutBucketIntelligentTieringConfiguration",
        "DeleteBucketIntelligentTieringConfiguration",
    ),
    "metadataTable": ("GetBucketMetadataTableConfiguration", None, "DeleteBucketMetadataTableConfiguration"),
    "metadataConfiguration": ("GetBucketMetadataConfiguration", None, "DeleteBucketMetadataConfiguration"),
    "metadataAnnotationTable": (None, "UpdateBucketMetadataAnnotationTableConfiguration", None),
    "metadataInventoryTable": (None, "UpdateBucketMetadataInventoryTableConfiguration", None),
    "metadataJournalTable": (None, "UpdateBucketMetadataJournalTableConfiguration", None),
    "abac": ("GetBucketAbac", "PutBucketAbac", None),
}


def _build_table() -> dict[tuple[str, str, str], str]:
    table: dict[tuple[str, str, str], str] = {
        ("GET", SERVICE, ""): "ListBuckets",
        ("HEAD", SERVICE, ""): "ListBuckets",
        ("GET", BUCKET, ""): "ListObjects",
        ("PUT", BUCKET, ""): "CreateBucket",
        ("HEAD", BUCKET, ""): "HeadBucket",
        ("DELETE", BUCKET, ""): "DeleteBucket",
        ("POST", BUCKET, ""): "PostObject",
        # A browser's CORS preflight ("OPTIONS object" in the API reference), for a bucket or a key.
        ("OPTIONS", BUCKET, ""): "OptionsObject",
        ("OPTIONS", OBJECT, ""): "OptionsObject",
        ("POST", BUCKET, "delete"): "DeleteObjects",
        # S3 Metadata creates its configurations with POST.
        ("POST", BUCKET, "metadataTable"): "CreateBucketMetadataTableConfiguration",
        ("POST", BUCKET, "metadataConfiguration"): "CreateBucketMetadataConfiguration",
        ("GET", BUCKET, "location"): "GetBucketLocation",
        ("GET", BUCKET, "uploads"): "ListMultipartUploads",
        ("GET", BUCKET, "versions"): "ListObjectVersions",
        ("GET", BUCKET, "session"): "CreateSession",
        ("GET", OBJECT, ""): "GetObject",
        ("HEAD", OBJECT, ""): "HeadObject",
        ("PUT", OBJECT, ""): "PutObject",
        ("DELETE", OBJECT, ""): "DeleteObject",
        ("GET", OBJECT, "tagging"): "GetObjectTagging",
        ("PUT", OBJECT, "tagging"): "PutObjectTagging",
        ("DELETE", OBJECT, "tagging"): "DeleteObjectTagging",
        ("GET", OBJECT, "acl"): "GetObjectAcl",
        ("PUT", OBJECT, "acl"): "PutObjectAcl",
        ("GET", OBJECT, "attributes"): "GetObjectAttributes",
        ("GET", OBJECT, "retention"): "GetObjectRetention",
        ("PUT", OBJECT, "retention"): "PutObjectRetention",
        ("GET", OBJECT, "legal-hold"): "GetObjectLegalHold",
        ("PUT", OBJECT, "legal-hold"): "PutObjectLegalHold",
        ("GET", OBJECT, "torrent"): "GetObjectTorrent",
        ("POST", OBJECT, "restore"): "RestoreObject",
        ("POST", OBJECT, "select"): "SelectObjectContent",
        # Newer object sub-resources: without their rows they would fall back to PutObject
        # (overwriting the object with the request's document) and DeleteObject.
        ("PUT", OBJECT, "encryption"): "UpdateObjectEncryption",
        ("GET", OBJECT, "annotation"): "GetObjectAnnotation",
        ("PUT", OBJECT, "annotation"): "PutObjectAnnotation",
        ("DELETE", OBJECT, "annotation"): "DeleteObjectAnnotation",
        ("PUT", OBJECT, "renameObject"): "RenameObject",
        ("POST", OBJECT, "uploads"): "CreateMultipartUpload",
        ("PUT", OBJECT, "uploadId"): "UploadPart",
        ("POST", OBJECT, "uploadId"): "CompleteMultipartUpload",
        ("DELETE", OBJECT, "uploadId"): "AbortMultipartUpload",
        ("GET", OBJECT, "uploadId"): "ListParts",
    }
    for sub, (get, put, delete) in _BUCKET_CONFIG.items():
        for method, op in (("GET", get), ("PUT", put), ("DELETE", delete)):
            if op:
                table[(method, BUCKET, sub)] = op
    return table


TABLE = _build_table()

# A GET of these sub-resources without an ``id`` lists the bucket's configurations of that kind.
LIST_WITHOUT_ID = {
    "GetBucketAnalyticsConfiguration": "ListBucketAnalyticsConfigurations",
    "GetBucketMetricsConfiguration": "ListBucketMetricsConfigurations",
    "GetBucketInventoryConfiguration": "ListBucketInventoryConfigurations",
    "GetBucketIntelligentTieringConfiguration": "ListBucketIntelligentTieringConfigurations",
}
# Operations that resolve() tells from a table row's by a query parameter or a header.
DERIVED = frozenset(
    {"ListObjectsV2", "CopyObject", "UploadPartCopy", "ListObjectAnnotations", *LIST_WITHOUT_ID.values()}
)


@dataclass(frozen=True)
class Route:
    operation: str
    bucket: str | None
    key: str | None
    vhost: bool = False  # bucket came from the Host header


def split_path(raw_path: str) -> tuple[str | None, str | None]:
    """'/bucket/some%20key' -> ('bucket', 'some key'); decoded exactly once."""
    path = raw_path.split("?", 1)[0]
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError as exc:
        raise errors.InvalidURI("Couldn't parse the specified URI.") from exc
    if not decoded.startswith("/"):
        raise errors.InvalidURI("Couldn't parse the specified URI.")
    bucket, _, key = decoded[1:].partition("/")
    return (bucket or None), (key or None)


def bucket_from_host(host: str, domain: str | None) -> str | None:
    """Virtual-host style: 'photos.s3.example.test:9000' with domain 's3.example.test' -> 'photos'."""
    if not domain or not host:
        return None
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower().rstrip(".")
    suffix = "." + domain.lower()
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return None


_SUBRESOURCE_RANK = {name: rank for rank, name in enumerate(SUBRESOURCES)}


def _subresource(query: Mapping[str, str]) -> str:
    """The first of SUBRESOURCES present in the query. Queries are short and the list is long, so
    look the query's names up rather than every sub-resource in the query."""
    found = [name for name in query if name in _SUBRESOURCE_RANK]
    if not found:
        return ""
    return found[0] if len(found) == 1 else min(found, key=_SUBRESOURCE_RANK.__getitem__)


def resolve(
    method: str,
    host: str,
    raw_path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    domain: str | None = None,
) -> Route:
    vhost_bucket = bucket_from_host(host, domain)
    if vhost_bucket is not None:
        path = raw_path.split("?", 1)[0]
        try:
            key: str | None = unquote(path, errors="strict")[1:] or None
        except UnicodeDecodeError as exc:
            raise errors.InvalidURI("Couldn't parse the specified URI.") from exc
        bucket: str | None = vhost_bucket
    else:
        bucket, key = split_path(raw_path)
        if bucket is None and key is not None:
            # "//key" (or "/%2Fkey"): a key in a bucket whose name is empty. No bucket has that
            # name, and no handler can act on a key without its bucket.
            raise errors.InvalidBucketName(resource=raw_path.split("?", 1)[0], BucketName="")

    level = OBJECT if key is not None else BUCKET if bucket is not None else SERVICE
    sub = _subresource(query)
    operation = TABLE.get((method, level, sub))
    if operation is None:
        # A sub-resource that does not apply at this level falls back to the plain operation
        # (S3 ignores unknown query parameters), but a method S3 does not have is refused.
        operation = TABLE.get((method, level, ""))
        if operation is None:
            raise errors.MethodNotAllowed(resource=raw_path.split("?", 1)[0])
    if operation == "ListObjects" and query.get("list-type") == "2":
        operation = "ListObjectsV2"
    elif operation in LIST_WITHOUT_ID and "id" not in query:
        operation = LIST_WITHOUT_ID[operation]
    elif operation == "GetObjectAnnotation" and "annotationName" not in query:
        operation = "ListObjectAnnotations"
    elif "x-amz-copy-source" in headers:
        if operation == "PutObject":
            operation = "CopyObject"
        elif operation == "UploadPart":
            operation = "UploadPartCopy"
    return Route(operation, bucket, key, vhost_bucket is not None)
