"""ListObjects (v1) and ListObjectsV2."""

from __future__ import annotations

import base64
import binascii
import zlib

from aiohttp import web

from .. import errors, s3xml
from .common import INT32_MAX, Context, int_param, url_encoding, xml_response

MAX_KEYS = 1000

# Parameters of one listing that the other refuses rather than ignores (S3's messages, the
# continuation token checked before start-after): a client asking list-type=3 for a V2 page
# learns it got V1 instead of paging forever from the first key.
_V2_ONLY = (
    ("continuation-token", "continuation-token only supported in REST.GET.BUCKET with list-type=2"),
    ("start-after", "startAfter only supported in REST.GET.BUCKET with list-type=2"),
)
_V1_ONLY = (("marker", "Marker unsupported with REST.GET.BUCKET in list-type=2"),)


# What a token resumes: a listing's token is no ListBuckets token, nor the other way round.
OBJECTS = b"s3serve-list:"
BUCKETS = b"s3serve-buckets:"


def _token_check(marker: bytes, kind: bytes) -> bytes:
    return zlib.crc32(kind + marker).to_bytes(4, "big")


def encode_token(marker: str, kind: bytes = OBJECTS) -> str:
    """A continuation token: the marker to resume after, with a check that tells our tokens
    from garbage (S3's tokens are opaque, and it refuses one it did not issue)."""
    raw = marker.encode("utf-8", "surrogateescape")
    return base64.urlsafe_b64encode(_token_check(raw, kind) + raw).decode()


def bad_token() -> errors.S3Error:
    # S3 names the argument but does not echo the token.
    return errors.InvalidArgument("The continuation token provided is incorrect", ArgumentName="continuation-token")


def decode_token(token: str, kind: bytes = OBJECTS) -> str:
    try:
        data = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError too
        raise bad_token() from None
    check, raw = data[:4], data[4:]
    if len(data) < 4 or check != _token_check(raw, kind):
        raise bad_token()
    # surrogateescape both ways: a key from a file name that is not UTF-8 pages on like any other.
    return raw.decode("utf-8", "surrogateescape")


def _max_keys(raw: int) -> int:
    if raw < 0:
        # The range is judged after the bucket, encoding-type and token; S3 spells the name
        # in camel case here and names the value as it read it.
        raise errors.InvalidArgument(
            f"Argument maxKeys must be an integer between 0 and {INT32_MAX}", ArgumentName="maxKeys", ArgumentValue=str(raw)
        )
    return min(raw, MAX_KEYS)


async def list_objects(ctx: Context) -> web.StreamResponse:
    # Any list-type but 2 (absent, 1, 3, abc) is V1, as S3 answers them.
    return await _list(ctx, v2=False)


async def list_objects_v2(ctx: Context) -> web.StreamResponse:
    return await _list(ctx, v2=True)


async def _list(ctx: Context, *, v2: bool) -> web.StreamResponse:
    q = ctx.query
    # S3's order of refusals: an unreadable max-keys, the other listing's parameters, then
    # encoding-type, the continuation token and a negative max-keys.
    requested = int_param(q, "max-keys", MAX_KEYS, -INT32_MAX - 1)
    for name, message in _V1_ONLY if v2 else _V2_ONLY:
        if name in q:
            raise errors.InvalidArgument(message, ArgumentName=name)
    url = url_encoding(q)
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    token = q.get("continuation-token") if v2 else None
    start_after = q.get("start-after", "") if v2 else ""
    marker = q.get("marker", "") if not v2 else ""
    # An empty token is no token: S3 answers the first page and echoes it empty (ceph s3-tests'
    # test_bucket_listv2_continuationtoken_empty, not marked as failing on AWS); a garbled one is refused.
    resume = decode_token(token) if token else (start_after if v2 else marker)
    max_keys = _max_keys(requested)
    page = await ctx.backend.list_objects(ctx.bucket, prefix, delimiter, resume, max_keys)
    show_owner = not v2 or q.get("fetch-owner", "").lower() == "true"
    bucket_info = await ctx.backend.head_bucket(ctx.bucket)
    owner = (bucket_info.owner, ctx.display_name(bucket_info.owner)) if show_owner else None
    next_marker = page.next_marker if page.is_truncated else None
    body = s3xml.list_objects(
        v2=v2,
        bucket=ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        max_keys=max_keys,
        url=url,
        objects=page.objects,
        common_prefixes=page.common_prefixes,
        is_truncated=page.is_truncated,
        owner=owner,
        marker=marker,
        # v1 returns NextMarker only with a delimiter; without one the client resumes from the last key.
        next_marker=next_marker if delimiter else None,
        start_after=start_after or None,
        continuation_token=token,
        next_continuation_token=encode_token(next_marker) if v2 and next_marker is not None else None,
    )
    response = xml_response(body)
    response.headers["x-amz-bucket-region"] = bucket_info.region  # as S3 sends with every listing
    return response


async def list_object_versions(ctx: Context) -> web.StreamResponse:
    q = ctx.query
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    requested = int_param(q, "max-keys", MAX_KEYS, -INT32_MAX - 1)
    key_marker = q.get("key-marker", "")
    version_marker = q.get("version-id-marker")
    _check_version_marker(key_marker, version_marker)
    url = url_encoding(q)
    if requested < 0:
        # ListObjectVersions words it its own way, with no ArgumentValue.
        raise errors.InvalidArgument("max-keys cannot be negative", ArgumentName="max-keys")
    max_keys = min(requested, MAX_KEYS)
    page = await ctx.backend.list_objects(ctx.bucket, prefix, delimiter, key_marker, max_keys)
    bucket = await ctx.backend.head_bucket(ctx.bucket)
    body = s3xml.list_versions(
        bucket=ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        version_id_marker=version_marker or "",
        max_keys=max_keys,
        url=url,
        objects=page.objects,
        common_prefixes=page.common_prefixes,
        is_truncated=page.is_truncated,
        next_key_marker=page.next_marker if page.is_truncated else None,
        owner=(bucket.owner, ctx.display_name(bucket.owner)),
    )
    return xml_response(body)


def _check_version_marker(key_marker: str, version_marker: str | None) -> None:
    """S3's refusals of a version-id-marker, in its order. Every object here is its 'null'
    version, the only id a marker can name; resuming after (key, null) is resuming after key."""
    if version_marker is None or not (key_marker or version_marker):
        # Both sent empty, as a first page from a client that always sends both: nothing to
        # resume from (S3 was measured refusing a marker without a key, not this shape).
        return
    if not key_marker:
        raise errors.InvalidArgument(
            "A version-id marker cannot be specified without a key marker.",
            ArgumentName="version-id-marker",
            ArgumentValue=version_marker,
        )
    if not version_marker:
        raise errors.InvalidArgument(
            "A version-id marker cannot be empty.", ArgumentName="version-id-marker", ArgumentValue=""
        )
    if version_marker != "null":
        # Case matters: S3 refuses "NULL" too.
        raise errors.InvalidArgument(
            "Invalid version id specified", ArgumentName="version-id-marker", ArgumentValue=version_marker
        )
