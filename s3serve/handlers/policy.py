"""The bucket policy: its sub-resource (Get/Put/Delete, the policy status) and its enforcement for
anonymous requests (``grant_anonymous``). The rules themselves are in s3serve/policy.py.

Policies are evaluated for anonymous requests only: a signed request is decided by bucket
ownership, as before (README, "Bucket configuration and CORS").
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .. import errors, policy, s3xml
from ..config import Config, User
from ..routing import Route
from ..sigv4 import UNSIGNED_PAYLOAD, AuthResult
from ..storage.base import Backend
from .common import RESPONSE_OVERRIDES, Context, bucket_owner, xml_response
from .objects import ACL_HEADERS

# The stored documents' names (bucket_config's Kinds use the same).
POLICY = "policy"
PUBLIC_ACCESS_BLOCK = "publicAccessBlock"


def _parse_policy(body: bytes) -> dict[str, Any]:
    if not body.strip().startswith(b"{"):
        raise errors.MalformedPolicy()
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays or objects nested too deep
        raise errors.MalformedPolicy("This policy contains invalid Json") from None
    if not isinstance(document, dict):
        raise errors.MalformedPolicy()
    if "Statement" not in document:
        raise errors.MalformedPolicy("Missing required field Statement")
    if not document["Statement"]:
        raise errors.MalformedPolicy("Could not parse the policy: Statement is empty!")
    return document


async def _block(backend: Backend, bucket: str) -> policy.PublicAccessBlock:
    found = await backend.cached_bucket_config(bucket, PUBLIC_ACCESS_BLOCK, policy.public_access_block)
    return policy.DEFAULT_BLOCK if found is None else found


async def get_bucket_policy(ctx: Context) -> web.StreamResponse:
    document = await ctx.backend.get_bucket_config(ctx.bucket, POLICY)
    if not document:
        raise errors.NoSuchBucketPolicy(BucketName=ctx.bucket)
    return web.Response(body=document, content_type="application/json")


async def put_bucket_policy(ctx: Context) -> web.StreamResponse:
    body = await ctx.read_xml_body()
    document = _parse_policy(body)
    if policy.is_public(document) and (await _block(ctx.backend, ctx.bucket)).block_public_policy:
        # S3's answer since public access blocks are on by default (April 2023); its message names
        # the caller's IAM ARN, which s3serve users do not have: the display name stands in.
        raise errors.AccessDenied(
            f"User: {ctx.user.display_name} is not authorized to perform: s3:PutBucketPolicy on resource: "
            f'"{policy.bucket_arn(ctx.bucket)}" because public policies are blocked by the BlockPublicPolicy '
            "block public access setting."
        )
    await ctx.backend.put_bucket_config(ctx.bucket, POLICY, body.strip())
    return web.Response(status=204)


async def delete_bucket_policy(ctx: Context) -> web.StreamResponse:
    await ctx.backend.delete_bucket_config(ctx.bucket, POLICY)
    return web.Response(status=204)


async def get_bucket_policy_status(ctx: Context) -> web.StreamResponse:
    document = await ctx.backend.get_bucket_config(ctx.bucket, POLICY)
    if not document:
        raise errors.NoSuchBucketPolicy(BucketName=ctx.bucket)
    try:
        public = policy.is_public(_parse_policy(document))
    except errors.S3Error:
        public = False  # a document someone else broke on disk
    return xml_response(s3xml.render_document("PolicyStatus", {"IsPublic": "true" if public else "false"}))


# -- anonymous requests ---------------------------------------------------------------------------


def _anonymous_request(request: web.Request, route: Route, query: dict[str, str], action: str, on_object: bool) -> policy.Request:
    assert route.bucket is not None
    resource = policy.object_arn(route.bucket, route.key or "") if on_object else policy.bucket_arn(route.bucket)
    context = policy.request_context(
        secure=request.secure,
        source_ip=request.remote,
        headers=request.headers,
        query=query,
        listing=route.operation in policy.LISTINGS,
    )
    return policy.Request(action, resource, context)


async def _effective_policy(backend: Backend, bucket: str) -> policy.Policy | None:
    """The bucket's policy as it applies to anonymous requests: none when there is none, or when
    RestrictPublicBuckets (on by default) takes a public one out of effect."""
    found = await backend.cached_bucket_config(bucket, POLICY, policy.load)
    if found is None or (found.public and (await _block(backend, bucket)).restrict_public_buckets):
        return None
    return found


def _also_needed(request: web.Request, route: Route) -> tuple[str, ...]:
    """The actions an operation needs besides its own (AWS's API reference, "Permissions"):
    GetObjectAttributes also s3:GetObject; an upload that tags or sets an ACL on what it creates
    also s3:PutObjectTagging or s3:PutObjectAcl."""
    if route.operation == "GetObjectAttributes":
        return ("s3:GetObject",)
    if route.operation not in ("PutObject", "CreateMultipartUpload"):
        return ()
    needed = []
    if "x-amz-tagging" in request.headers:
        needed.append("s3:PutObjectTagging")
    if any(name in request.headers for name in ACL_HEADERS):
        needed.append("s3:PutObjectAcl")
    return tuple(needed)


async def grant_anonymous(
    request: web.Request, route: Route, query: dict[str, str], backend: Backend, config: Config
) -> AuthResult:
    """An anonymous request the bucket's policy allows runs as its owner would (the ownership
    checks pass, what it writes is the owner's); any other is refused, as S3 refuses it."""
    if route.bucket is None or route.operation == "CreateBucket":
        raise errors.AccessDenied()
    # A missing bucket is told to anyone (404 NoSuchBucket), as S3 tells it: bucket names are
    # public. What a bucket that exists holds is the policy's to tell.
    owner = await bucket_owner(backend, route.bucket, route.operation)
    mapped = policy.ACTIONS.get(route.operation)
    if mapped is None or (mapped[1] and route.key is None):
        raise errors.AccessDenied()
    effective = await _effective_policy(backend, route.bucket)
    if effective is None or not all(
        policy.allows(effective, _anonymous_request(request, route, query, action, mapped[1]))
        for action in (mapped[0], *_also_needed(request, route))
    ):
        raise errors.AccessDenied()
    if route.operation in ("GetObject", "HeadObject") and any(name in query for name in RESPONSE_OVERRIDES):
        # S3 honours response-* only on a signed request: on an anonymous one they would let
        # anyone serve a public object as text/html (or any type) from the bucket's origin.
        raise errors.InvalidRequest("Request specific response headers cannot be used for anonymous GET requests.")
    user = next((u for u in config.users if u.user_id == owner), None) or User("", "", display_name=owner, user_id=owner)
    content_sha256 = request.headers.get("x-amz-content-sha256") or UNSIGNED_PAYLOAD
    return AuthResult(user=user, version=0, presigned=False, content_sha256=content_sha256)


async def may_list(request: web.Request, route: Route, backend: Backend) -> bool:
    """Whether the policy lets an anonymous request list the bucket: S3 tells a missing key
    (404 NoSuchKey) only to a requester who could have listed it, else answers 403."""
    assert route.bucket is not None
    effective = await _effective_policy(backend, route.bucket)
    return effective is not None and policy.allows(effective, _anonymous_request(request, route, {}, "s3:ListBucket", False))
