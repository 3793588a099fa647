"""Server-side encryption headers: what a write asks for, checked as S3 checks it.

s3serve stores plain files and encrypts nothing; it keeps what each object was written with
(the request's x-amz-server-side-encryption*, else the bucket's default encryption) and answers it
as S3 does, since every S3 object has been encrypted (SSE-S3 at least) since January 2023.
Customer-provided keys (SSE-C) are refused: accepting them silently would tell a client that
only the holder of its key can read what anyone with access to ROOT can.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors, s3xml
from ..storage.base import SSE_BUCKET_KEY_HEADER, SSE_HEADER, SSE_KMS_KEY_HEADER, Encryption
from .common import Context

ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
_KMS = frozenset({"aws:kms", "aws:kms:dsse"})
CUSTOMER_HEADERS = (
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
)
COPY_SOURCE_CUSTOMER_HEADERS = tuple(name.replace("x-amz-", "x-amz-copy-source-", 1) for name in CUSTOMER_HEADERS)
# What only an object's creation chooses (PutObject, CopyObject, CreateMultipartUpload,
# PostObject): S3 refuses each on other requests (refuse_write_only).
WRITE_ONLY_HEADERS = (SSE_HEADER, SSE_KMS_KEY_HEADER, "x-amz-server-side-encryption-context", SSE_BUCKET_KEY_HEADER)
_KMS_REQUIRED = "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"


def check_customer_keys(ctx: Context, names: tuple[str, ...] = CUSTOMER_HEADERS, values: Mapping[str, str] | None = None) -> None:
    """SSE-C: S3 refuses its keys over plain HTTP; over HTTPS s3serve does not implement it."""
    given = ctx.headers if values is None else values
    if not any(name in given for name in names):
        return
    if not ctx.request.secure:
        raise errors.InvalidRequest(
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
        )
    raise errors.NotImplementedOp(
        "Server-side encryption with customer-provided keys (SSE-C) is not implemented by s3serve.",
        Header=next(name for name in names if name in given),
    )


def refuse_write_only(ctx: Context) -> None:
    """S3's 400 for an encryption header that only an object's creation takes (PutObject,
    CopyObject, CreateMultipartUpload, PostObject) sent with any other request: reads, and the
    parts and Complete of an upload, whose encryption its creation chose."""
    for name in WRITE_ONLY_HEADERS:
        value = ctx.headers.get(name)
        if value is not None:
            raise errors.InvalidArgument(
                f"{name} header is not supported for this operation.", ArgumentName=name, ArgumentValue=value
            )


def check_read_headers(ctx: Context) -> None:
    """GetObject / HeadObject: SSE-C keys as on every request (check_customer_keys: nothing here
    is stored under a customer's key), and no header only a write may send."""
    check_customer_keys(ctx)
    refuse_write_only(ctx)


def _named(values: Mapping[str, str]) -> Encryption | None:
    """The encryption a request or form names, or None; S3's errors for a value it refuses."""
    algorithm = values.get(SSE_HEADER)
    key_id = values.get(SSE_KMS_KEY_HEADER)
    bucket_key = values.get(SSE_BUCKET_KEY_HEADER)
    if algorithm is None:
        if key_id is not None or bucket_key is not None:
            raise errors.InvalidArgument(_KMS_REQUIRED, ArgumentName=SSE_HEADER, ArgumentValue="null")
        return None
    if algorithm not in ALGORITHMS:
        raise errors.InvalidArgument(
            "The encryption method specified is not supported", ArgumentName=SSE_HEADER, ArgumentValue=algorithm
        )
    if algorithm not in _KMS and (key_id is not None or bucket_key is not None):
        raise errors.InvalidArgument(_KMS_REQUIRED, ArgumentName=SSE_HEADER, ArgumentValue=algorithm)
    # An unset bucket key (None) is the bucket's setting, filled in by the caller.
    return Encryption(algorithm, key_id or None, bucket_key.lower() == "true" if bucket_key is not None else False)


def bucket_default(content: dict[str, Any]) -> Encryption:
    """The default encryption of a ServerSideEncryptionConfiguration (as PutBucketEncryption stored it)."""
    rules = s3xml.as_list(content.get("Rule"))
    rule = rules[0] if rules and isinstance(rules[0], dict) else {}
    default = rule.get("ApplyServerSideEncryptionByDefault")
    default = default if isinstance(default, dict) else {}
    algorithm = s3xml.text(default.get("SSEAlgorithm")) or "AES256"
    key_id = s3xml.text(default.get("KMSMasterKeyID")) or None
    bucket_key = s3xml.text(rule.get("BucketKeyEnabled")) == "true" and algorithm == "aws:kms"
    return Encryption.of(algorithm, key_id if algorithm in _KMS else None, bucket_key)


def _parse_default(document: bytes) -> Encryption | None:
    if not document:
        return None
    return bucket_default(s3xml.parse_document(document, "ServerSideEncryptionConfiguration"))


async def write_encryption(ctx: Context, values: Mapping[str, str] | None = None) -> Encryption | None:
    """What a write (PutObject, CopyObject, CreateMultipartUpload, PostObject's form ``values``)
    stores: the encryption it names, else the bucket's stored default; None when neither, which
    is S3's default, SSE-S3 (and, through a cache, whatever the upstream bucket's default is)."""
    given = ctx.headers if values is None else values
    check_customer_keys(ctx, values=values)
    named = _named(given)
    if named is not None and (named.algorithm != "aws:kms" or SSE_BUCKET_KEY_HEADER in given):
        return Encryption.of(named.algorithm, named.kms_key_id, named.bucket_key)
    default = await ctx.backend.cached_bucket_config(ctx.bucket, "encryption", _parse_default)
    if named is None:
        return default
    # aws:kms without the bucket-key header takes the bucket's S3 Bucket Key setting.
    return Encryption.of(named.algorithm, named.kms_key_id, default is not None and default.bucket_key)
