"""ListObjects (v1) and ListObjectsV2."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from .. import errors, s3xml
from .common import Context, int_param, url_encoding, xml_response

MAX_KEYS = 1000


def encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8", "surrogateescape")).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise errors.InvalidArgument(
            "The continuation token provided is incorrect", ArgumentName="continuation-token", ArgumentValue=token
        ) from None


async def list_objects(ctx: Context) -> web.StreamResponse:
    return await _list(ctx, v2=False)


async def list_objects_v2(ctx: Context) -> web.StreamResponse:
    return await _list(ctx, v2=True)


async def _list(ctx: Context, *, v2: bool) -> web.StreamResponse:
    q = ctx.query
    url = url_encoding(ctx.query)
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    max_keys = int_param(q, "max-keys", MAX_KEYS, 0, MAX_KEYS)
    token = q.get("continuation-token") if v2 else None
    if token is not None and token == "":
        raise errors.InvalidArgument(
            "The continuation token provided is incorrect", ArgumentName="continuation-token", ArgumentValue=""
        )
    start_after = q.get("start-after", "") if v2 else ""
    marker = q.get("marker", "") if not v2 else ""
    resume = decode_token(token) if token is not None else (start_after if v2 else marker)
    page = await ctx.backend.list_objects(ctx.bucket, prefix, delimiter, resume, max_keys)
    show_owner = not v2 or q.get("fetch-owner", "").lower() == "true"
    bucket_info = await ctx.backend.head_bucket(ctx.bucket) if show_owner else None
    owner = (bucket_info.owner, ctx.display_name(bucket_info.owner)) if bucket_info else None
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
    return xml_response(body)


async def list_object_versions(ctx: Context) -> web.StreamResponse:
    q = ctx.query
    url = url_encoding(ctx.query)
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    max_keys = int_param(q, "max-keys", MAX_KEYS, 0, MAX_KEYS)
    key_marker = q.get("key-marker", "")
    page = await ctx.backend.list_objects(ctx.bucket, prefix, delimiter, key_marker, max_keys)
    bucket = await ctx.backend.head_bucket(ctx.bucket)
    body = s3xml.list_versions(
        bucket=ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        max_keys=max_keys,
        url=url,
        objects=page.objects,
        common_prefixes=page.common_prefixes,
        is_truncated=page.is_truncated,
        next_key_marker=page.next_marker if page.is_truncated else None,
        owner=(bucket.owner, ctx.display_name(bucket.owner)),
    )
    return xml_response(body)
