"""Server-side encryption headers: what a write asks for, checked as S3 checks it.

s3serve stores plain files and encrypts nothing; it keeps what each object was written with
(the request's x-amz-server-side-encryption*, else the bucket's default encryption) and answers it
as S3 does, since every S3 object has been encrypted (SSE-S3 at least) since January 2023.

Customer-provided keys (SSE-C) are enforced at the API as S3 enforces them: only over https,
only on buckets that do not block SSE-C (blocked by default, as S3's new buckets since April
2026), and an SSE-C object is read, copied and described only with its key. The key itself is
never kept (storage/ssec.py): the record has its MD5 and a salted HMAC to check later keys by.
The bytes rest in the clear like every s3serve object: whoever can read ROOT reads them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from .. import errors, s3xml
from ..storage.base import (
    SSE_BUCKET_KEY_HEADER,
    SSE_C_KEY_UNKNOWN,
    SSE_HEADER,
    SSE_KMS_KEY_HEADER,
    Encryption,
    HeaderPrecondition,
    ObjectInfo,
    Precondition,
    UploadInfo,
)
from ..storage.ssec import (
    COPY_SOURCE_CUSTOMER_PREFIX,
    CUSTOMER_PREFIX,
    INSECURE,
    KEY_REQUIRED,
    NOT_APPLICABLE,
    REQUEST_KEYS,
    WRONG_KEY,
    CustomerKey,
    RequestKeys,
    key_check,
    key_matches,
    key_md5,
)
from .common import Context

ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
_KMS = frozenset({"aws:kms", "aws:kms:dsse"})
# What only an object's creation chooses (PutObject, CopyObject, CreateMultipartUpload,
# PostObject): S3 refuses each on other requests (refuse_write_only).
WRITE_ONLY_HEADERS = (SSE_HEADER, SSE_KMS_KEY_HEADER, "x-amz-server-side-encryption-context", SSE_BUCKET_KEY_HEADER)
_KMS_REQUIRED = "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"

# S3's answers to SSE-C requests, as its SSE-C user guide and API reference give them and as
# recordings of S3's answers (LocalStack's, re-recorded against S3 in 2026) show them.
_SSE_C = "Requests specifying Server Side Encryption with Customer provided keys must"
NEEDS_ALGORITHM = f"{_SSE_C} provide a valid encryption algorithm."
NEEDS_KEY = f"{_SSE_C} provide an appropriate secret key."
NEEDS_MD5 = f"{_SSE_C} provide the client calculated MD5 of the secret key."
BAD_ALGORITHM = "The Encryption request you specified is not valid. Supported value: AES256."
BAD_KEY = "The secret key was invalid for the specified algorithm."
BAD_MD5 = "The calculated MD5 hash of the key did not match the hash that was provided."
WITH_SSE = "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
UPLOAD_MISMATCH = (
    "The multipart upload initiate requested encryption. "
    "Subsequent part requests must include the appropriate encryption parameters."
)
UPLOAD_OTHER_KEY = "The provided encryption parameters did not match the ones used originally."
_BLOCKED = (
    'User: {user} is not authorized to perform: s3:{action} on resource: "arn:aws:s3:::{bucket}/{key}" '
    "because this bucket has blocked upload requests that specify Server Side Encryption with Customer "
    "provided keys (SSE-C). Please specify a different server-side encryption type"
)


class BucketEncryption(NamedTuple):
    """A bucket's stored default encryption configuration, as writes apply it."""

    default: Encryption | None  # None: never configured (S3's default, SSE-S3)
    blocks_customer_keys: bool


# A bucket that was never configured, or whose configuration was deleted: SSE-S3, SSE-C blocked.
NEW_BUCKET = BucketEncryption(None, True)


def blocked_types(rule: Mapping[str, Any]) -> list[str]:
    """The EncryptionType values of a rule's BlockedEncryptionTypes ([] when it has none)."""
    blocked = rule.get("BlockedEncryptionTypes")
    if not isinstance(blocked, dict):
        return []
    return [s3xml.text(value) for value in s3xml.as_list(blocked.get("EncryptionType"))]


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


def bucket_encryption(document: bytes) -> BucketEncryption:
    """A stored configuration document as writes apply it. SSE-C is blocked unless the document
    says NONE: a document stored before s3serve knew the element is treated as S3 treated the
    buckets of accounts without SSE-C objects in April 2026."""
    if not document:
        return NEW_BUCKET
    content = s3xml.parse_document(document, "ServerSideEncryptionConfiguration")
    rules = s3xml.as_list(content.get("Rule"))
    types = blocked_types(rules[0]) if rules and isinstance(rules[0], dict) else []
    return BucketEncryption(bucket_default(content), "SSE-C" in types or not types)


async def _bucket(ctx: Context) -> BucketEncryption:
    found = await ctx.backend.cached_bucket_config(ctx.bucket, "encryption", bucket_encryption)
    return found if found is not None else NEW_BUCKET


# -- SSE-C keys --------------------------------------------------------------------------------


def _given(values: Mapping[str, str], prefix: str) -> tuple[str | None, str | None, str | None]:
    return values.get(prefix + "algorithm"), values.get(prefix + "key"), values.get(prefix + "key-md5")


def _invalid(message: str, value: str | None = None) -> errors.S3Error:
    # S3 names x-amz-server-side-encryption in each of these, whichever header was wrong.
    return errors.InvalidArgument(message, ArgumentName=SSE_HEADER, ArgumentValue=value if value is not None else "null")


def _secure(ctx: Context) -> None:
    if not ctx.request.secure:
        raise errors.InvalidRequest(INSECURE)


def _parse(values: Mapping[str, str], prefix: str, *, write: bool) -> CustomerKey:
    """The key the three headers name, checked in S3's order. A read does without the MD5 (S3
    computes it), and a read's key of the wrong length is just not the object's key (403)."""
    algorithm, encoded, md5 = _given(values, prefix)
    if algorithm is None:
        raise _invalid(NEEDS_ALGORITHM)
    if encoded is None:
        raise _invalid(NEEDS_KEY)
    if algorithm != "AES256":
        raise errors.InvalidEncryptionAlgorithmError(BAD_ALGORITHM, ArgumentName=SSE_HEADER, ArgumentValue=algorithm)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(BAD_KEY) from None
    if md5 is None:
        if write:
            raise _invalid(NEEDS_MD5)
        md5 = key_md5(key)
    elif md5 != key_md5(key):
        raise _invalid(BAD_MD5)
    if write and len(key) != 32:
        raise _invalid(BAD_KEY)
    return CustomerKey(algorithm, key, md5)


def _remember(*, read: CustomerKey | None = None, write: CustomerKey | None = None) -> None:
    """Keep the request's keys for an upstream's requests (a cache's); nowhere else. Each role
    is set by its own headers alone (see ssec.RequestKeys)."""
    current = REQUEST_KEYS.get() or RequestKeys()
    REQUEST_KEYS.set(RequestKeys(read or current.read, write or current.write))


async def _refuse_if_blocked(ctx: Context, action: str, object_key: str | None) -> None:
    if ctx.backend.upstream_encryption:
        return  # the upstream's bucket decides, and refuses alike
    if (await _bucket(ctx)).blocks_customer_keys:
        raise errors.AccessDenied(
            _BLOCKED.format(user=ctx.user.display_name, action=action, bucket=ctx.bucket, key=ctx.key if object_key is None else object_key)
        )


async def write_key(
    ctx: Context, values: Mapping[str, str] | None = None, action: str = "PutObject", object_key: str | None = None
) -> CustomerKey | None:
    """The SSE-C key a write (or a part of one) gives for the object it writes; None when it
    gives none. Over http refused first (S3 rejects every SSE-C request over HTTP), then on a
    bucket that blocks SSE-C (403 before the key is looked at), then the headers themselves."""
    given = ctx.headers if values is None else values
    if not any(part is not None for part in _given(given, CUSTOMER_PREFIX)):
        return None
    _secure(ctx)
    await _refuse_if_blocked(ctx, action, object_key)
    sse = given.get(SSE_HEADER)
    if sse is not None:
        raise _invalid(WITH_SSE, sse)
    key = _parse(given, CUSTOMER_PREFIX, write=True)
    # Not as the read key: a copy's source has its own (source_key), or none. A cache's HEAD of
    # what it wrote takes this one (ssec.reading_written).
    _remember(write=key)
    return key


def read_key(ctx: Context, prefix: str = CUSTOMER_PREFIX) -> CustomerKey | None:
    """The SSE-C key a request gives for the object it reads (GET, HEAD, GetObjectAttributes;
    ``prefix`` COPY_SOURCE_CUSTOMER_PREFIX: a copy's source)."""
    if not any(part is not None for part in _given(ctx.headers, prefix)):
        return None
    _secure(ctx)
    key = _parse(ctx.headers, prefix, write=False)
    _remember(read=key)
    return key


def source_key(ctx: Context) -> CustomerKey | None:
    """The SSE-C key a CopyObject or UploadPartCopy gives for its source."""
    return read_key(ctx, COPY_SOURCE_CUSTOMER_PREFIX)


def check_object_key(encryption: Encryption, given: CustomerKey | None) -> None:
    """S3's answers to a read of an object with (or without) a key."""
    if not encryption.is_customer:
        if given is not None:
            raise errors.InvalidRequest(NOT_APPLICABLE)
        return
    if given is None:
        raise errors.InvalidRequest(KEY_REQUIRED)
    if not _same_key(encryption, given):
        raise errors.AccessDenied(WRONG_KEY)


def _same_key(encryption: Encryption, given: CustomerKey) -> bool:
    if encryption.customer_key_check is not None:
        return key_matches(encryption.customer_key_check, given.key)
    # Described by an upstream S3, which checked the key it was sent: its MD5 is what it took.
    return given.md5 == encryption.customer_key_md5


def source_precondition(base: Precondition | None, given: CustomerKey | None) -> HeaderPrecondition:
    """A copy's source condition that also checks the source's key, under the source's lock. Its
    headers stay those of ``base``: an upstream is sent the key and checks it itself."""

    def check(current: ObjectInfo | None) -> None:
        if current is not None:
            check_object_key(current.encryption, given)
        if base is not None:
            base(current)

    return HeaderPrecondition(check, dict(base.headers) if isinstance(base, HeaderPrecondition) else {})


async def described_without_key(ctx: Context) -> ObjectInfo:
    """The request's object, for an operation that takes no SSE-C key however the object is
    encrypted (GetObjectAcl, PutObjectAcl, RestoreObject): NoSuchKey when it is not there. An
    upstream (a cache's) refuses a HEAD of an SSE-C object without its key (KEY_REQUIRED), as
    S3 does; its listing describes the object without one (size, ETag, storage class)."""
    try:
        return await ctx.backend.head_object(ctx.bucket, ctx.key)
    except errors.InvalidRequest as exc:
        if exc.message != KEY_REQUIRED:
            raise
    page = await ctx.backend.list_objects(ctx.bucket, ctx.key, "", "", 1)
    if not page.objects or page.objects[0].key != ctx.key:
        raise errors.NoSuchKey()  # deleted in between
    return replace(page.objects[0], encryption=SSE_C_KEY_UNKNOWN)


async def check_upload_key(
    ctx: Context, upload_id: str, given: CustomerKey | None, *, complete: bool = False
) -> UploadInfo | None:
    """A part (or the Complete) of an upload made with SSE-C gives its key, and one made without
    gives none. A cache's upstream checks that itself, with the key it is sent. The upload looked
    up, for the caller's other checks against it; None where none was."""
    if ctx.backend.upstream_encryption:
        return None
    try:
        upload = await ctx.backend.upload_info(ctx.bucket, ctx.key, upload_id)
    except errors.NoSuchUpload:
        if complete:
            return None  # completed already: the backend answers a retried Complete, or NoSuchUpload
        raise
    encryption = upload.meta.encryption
    if encryption is None or not encryption.is_customer:
        if given is not None:
            raise errors.InvalidRequest(UPLOAD_MISMATCH)
        return upload
    if given is None:
        # S3 asks Complete for the key only of an upload that has a checksum algorithm.
        if complete and upload.meta.checksum_algorithm is None:
            return upload
        if complete:
            raise _invalid(NEEDS_KEY)
        raise errors.InvalidRequest(UPLOAD_MISMATCH)
    if not _same_key(encryption, given):
        raise errors.InvalidRequest(UPLOAD_OTHER_KEY)
    return upload


def answered(encryption: Encryption) -> dict[str, str]:
    """The encryption headers of CompleteMultipartUpload's answer: S3 echoes no SSE-C there."""
    return {} if encryption.is_customer else encryption.headers()


# -- everything but SSE-C ----------------------------------------------------------------------


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


def check_read_headers(ctx: Context) -> CustomerKey | None:
    """GetObject / HeadObject / GetObjectAttributes: no header only a write may send; the SSE-C
    key given for the object, checked against it once it is found (check_object_key)."""
    given = read_key(ctx)
    refuse_write_only(ctx)
    return given


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


async def write_encryption(
    ctx: Context, values: Mapping[str, str] | None = None, action: str = "PutObject", object_key: str | None = None
) -> Encryption | None:
    """What a write (PutObject, CopyObject, CreateMultipartUpload, PostObject's form ``values``)
    stores: SSE-C with the key it gives, else the encryption it names, else the bucket's stored
    default; None when none of them, which is S3's default, SSE-S3 (and, through a cache,
    whatever the upstream bucket's default is)."""
    given = ctx.headers if values is None else values
    customer = await write_key(ctx, values, action, object_key)
    named = _named(given)
    if customer is not None:
        return Encryption.of(customer.algorithm, customer_key_md5=customer.md5, customer_key_check=key_check(customer.key))
    if named is not None and (named.algorithm != "aws:kms" or SSE_BUCKET_KEY_HEADER in given):
        return Encryption.of(named.algorithm, named.kms_key_id, named.bucket_key)
    if ctx.backend.upstream_encryption:
        return named  # the upstream bucket's default applies, and its S3 Bucket Key setting
    default = (await _bucket(ctx)).default
    if named is None:
        return default
    # aws:kms without the bucket-key header takes the bucket's S3 Bucket Key setting.
    return Encryption.of(named.algorithm, named.kms_key_id, default is not None and default.bucket_key)

