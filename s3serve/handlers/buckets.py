"""Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation, ...
(configuration sub-resources are in bucket_config.py)."""

from __future__ import annotations

import hashlib
import logging

from aiohttp import web

from .. import errors, s3xml
from .bucket_config import OWNERSHIP, OWNERSHIPS
from .common import Context, int_param, xml_response
from .listing import BUCKETS, decode_token, encode_token
from .objects import names_acl

log = logging.getLogger("s3serve")

MAX_BUCKETS = 10000


async def list_buckets(ctx: Context) -> web.StreamResponse:
    prefix = ctx.query.get("prefix")
    region = ctx.query.get("bucket-region")
    token = ctx.query.get("continuation-token")
    max_buckets = int_param(ctx.query, "max-buckets", MAX_BUCKETS, 1, MAX_BUCKETS)
    buckets = [b for b in await ctx.backend.list_buckets() if b.owner == ctx.user.user_id]
    if prefix:
        buckets = [b for b in buckets if b.name.startswith(prefix)]
    if region:
        buckets = [b for b in buckets if b.region == region]
    if token:
        # The token is opaque, as S3's: the last bucket name of the previous page with a check,
        # so a token s3serve did not issue is refused rather than read as a name to resume after.
        after = decode_token(token, BUCKETS)
        buckets = [b for b in buckets if b.name > after]
    page = buckets[:max_buckets]
    next_token = encode_token(page[-1].name, BUCKETS) if len(buckets) > max_buckets else None
    body = s3xml.list_buckets(page, ctx.user.user_id, ctx.user.display_name, next_token, prefix)
    return xml_response(body)


# The payload hash of no body at all.
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _requested_ownership(ctx: Context) -> str:
    """x-amz-object-ownership: the Object Ownership the new bucket gets (S3's default,
    BucketOwnerEnforced, without it). Checked before anything is created, as the ACL is."""
    ownership = ctx.headers.get("x-amz-object-ownership")
    if ownership is None:
        return OWNERSHIPS[0]
    if ownership not in OWNERSHIPS:
        raise errors.InvalidArgument(
            f"Invalid x-amz-object-ownership header: {ownership}", ArgumentName="x-amz-object-ownership"
        )
    return ownership


async def create_bucket(ctx: Context) -> web.StreamResponse:
    ownership = _requested_ownership(ctx)
    if names_acl(ctx.headers):
        from .acl import check_create_bucket_acl

        check_create_bucket_acl(ctx, ownership)
    if ctx.headers.get("x-amz-bucket-object-lock-enabled", "").strip().lower() == "true":
        # A plain bucket would give a caller who asked for write-once storage none at all.
        raise errors.NotImplementedOp(
            "Object Lock is not implemented by s3serve: it needs versioning, which s3serve does not implement."
        )
    constraint = s3xml.parse_create_bucket(await _create_bucket_body(ctx))
    # No constraint: the bucket is in the region this server answers for, which HeadBucket and
    # GetBucketLocation then report (a cache passes it upstream as the constraint). A regional
    # AWS endpoint refuses such a request ("The unspecified location constraint is incompatible
    # ..."), but s3serve takes requests signed for any region, and minio-go (restic) sends no
    # constraint unless it is told the region.
    region = constraint or ctx.config.region
    if constraint == "us-east-1":
        # S3 refuses an explicit us-east-1 constraint; the default region is implied by none.
        raise errors.InvalidLocationConstraint("The specified location-constraint is not valid", LocationConstraint=constraint)
    if constraint is not None and constraint != ctx.config.region and ctx.config.region != "us-east-1":
        raise errors.IllegalLocationConstraintException(
            f"The {constraint} location constraint is incompatible for the region specific endpoint this request was sent to."
        )
    try:
        await ctx.backend.create_bucket(ctx.bucket, ctx.user.user_id, region)
    except errors.BucketAlreadyOwnedByYou:
        # us-east-1 answers 200 to a repeated CreateBucket by the owner (legacy behaviour); the
        # bucket keeps the settings it has.
        if ctx.config.region != "us-east-1":
            raise
    else:
        if ownership != OWNERSHIPS[0]:
            await _store_ownership(ctx, ownership)
    return web.Response(status=200, headers={"Location": f"/{ctx.bucket}"})


async def _store_ownership(ctx: Context, ownership: str) -> None:
    """The ownership controls PutBucketOwnershipControls would store. A bucket left with
    BucketOwnerEnforced would refuse the ACLs its creator enabled: it goes again on failure."""
    document = s3xml.render_document(OWNERSHIP.root, {"Rule": {"ObjectOwnership": ownership}})
    try:
        await ctx.backend.put_bucket_config(ctx.bucket, OWNERSHIP.name, document)
    except Exception:
        try:
            await ctx.backend.delete_bucket(ctx.bucket)
        except Exception:
            log.warning("CreateBucket %s: its ownership controls could not be stored, nor the bucket removed", ctx.bucket)
        raise


async def _create_bucket_body(ctx: Context) -> bytes:
    """CreateBucket's optional configuration. S3 creates a bucket from a request that has no
    Content-Length at all (`curl -X PUT`, the AWS CRT's CreateBucket), where every other PUT gets
    411: HTTP gives such a request no body. Unless its signature vouches for a non-empty one."""
    headers = ctx.headers
    if "Content-Length" in headers or "Transfer-Encoding" in headers:
        return await ctx.read_xml_body()
    if ctx.auth.content_sha256.lower() not in (_EMPTY_SHA256, "unsigned-payload"):
        return await ctx.read_xml_body()  # a body was signed for, and is not there: 411
    return b""


async def head_bucket(ctx: Context) -> web.StreamResponse:
    info = await ctx.backend.confirm_bucket(ctx.bucket)
    # S3 answers whether the name was an access point alias; a bucket here is never reached by one.
    # Its Content-Type is that of the bucket's GET (a listing), with no length, as S3 sends it.
    return web.Response(status=200, headers={
        "x-amz-bucket-region": info.region, "x-amz-access-point-alias": "false", "Content-Type": "application/xml",
    })


async def delete_bucket(ctx: Context) -> web.StreamResponse:
    await ctx.backend.delete_bucket(ctx.bucket)
    return web.Response(status=204)


async def get_bucket_location(ctx: Context) -> web.StreamResponse:
    info = await ctx.backend.confirm_bucket(ctx.bucket)
    return xml_response(s3xml.location(info.region))


async def get_bucket_acl(ctx: Context) -> web.StreamResponse:
    return xml_response(s3xml.acl(ctx.user.user_id, ctx.user.display_name))
