"""The bucket policy: its sub-resource (Get/Put/Delete, the policy status) and its enforcement,
as AWS enforces it with every s3serve user standing for the root of an AWS account of its own.
The rules themselves are in s3serve/policy.py.

- A signed request to the signer's own bucket is allowed unless a Deny applies (an account's
  root needs no Allow in its own account); GetBucketPolicy, PutBucketPolicy and
  DeleteBucketPolicy stay the owner's whatever the policy denies, so a lock-out can be undone.
- A signed request to another user's bucket (cross-account) needs an Allow that names the signer
  (``{"CanonicalUser": user_id}``, or everyone) and no Deny; it then runs as the bucket's owner
  (``authorize_signed``: what it writes is the owner's, as with S3's default BucketOwnerEnforced).
- An anonymous request needs an Allow for everyone (``grant_anonymous``), and runs as the owner.
- With RestrictPublicBuckets on, a public policy grants nothing to anyone but the owner; its Deny
  statements still apply.
- DeleteObjects, PostObject and the source of CopyObject, UploadPartCopy and RenameObject are
  decided where the handler knows the keys (``key_checker``, ``authorize_form``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
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
    policy.validate(document, ctx.bucket)
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


# -- evaluation -----------------------------------------------------------------------------------


def _tls_version(request: web.Request) -> str | None:
    """s3:TlsVersion ("1.2", "1.3"): over TLS only."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    version = ssl_object.version() if ssl_object is not None else None
    return version.removeprefix("TLSv") if isinstance(version, str) and version.startswith("TLSv") else None


def _context(
    request: web.Request,
    operation: str,
    query: Mapping[str, str],
    auth: AuthResult | None,
    *,
    headers: Mapping[str, str] | None = None,
    auth_type: str | None = None,
) -> dict[str, policy.Value]:
    principal = version = None
    if auth is not None and auth.version != 0:  # version 0: an anonymous request granted as the owner
        principal, version = auth.principal.user_id, auth.version
        if auth_type is None:
            auth_type = "REST-QUERY-STRING" if auth.presigned else "REST-HEADER"
    return policy.request_context(
        secure=request.secure,
        source_ip=request.remote,
        headers=request.headers if headers is None else headers,
        query=query,
        listing=operation in policy.LISTINGS,
        principal=principal,
        signature_version=version,
        auth_type=auth_type,
        tls_version=_tls_version(request) if request.secure else None,
    )


def _resource(route: Route) -> str:
    assert route.bucket is not None
    return policy.bucket_arn(route.bucket) if route.key is None else policy.object_arn(route.bucket, route.key)


def _permitted(found: policy.Policy, requests: list[policy.Request], *, owner: bool, restricted: bool) -> bool:
    """The bucket owner: no Deny applies. Anyone else: an Allow applies to every action, no Deny
    does, and the policy is not a public one that RestrictPublicBuckets takes out of effect."""
    for request in requests:
        verdict = policy.evaluate(found, request)
        if verdict == "Deny" or (not owner and (verdict != "Allow" or restricted)):
            return False
    return True


async def _restricted(backend: Backend, bucket: str, found: policy.Policy) -> bool:
    return found.public and (await _block(backend, bucket)).restrict_public_buckets


def _run_as(config: Config, owner: str) -> User:
    return next((u for u in config.users if u.user_id == owner), None) or User("", "", display_name=owner, user_id=owner)


def _also_needed(request: web.Request, route: Route) -> tuple[str, ...]:
    """The actions an operation needs besides its own (AWS's API reference, "Permissions"):
    GetObjectAttributes also s3:GetObject; an upload or copy that tags or sets an ACL on what it
    creates also s3:PutObjectTagging or s3:PutObjectAcl."""
    if route.operation == "GetObjectAttributes":
        return ("s3:GetObject",)
    if route.operation not in ("PutObject", "CreateMultipartUpload", "CopyObject"):
        return ()
    needed = []
    if "x-amz-tagging" in request.headers:
        needed.append("s3:PutObjectTagging")
    if any(name in request.headers for name in ACL_HEADERS):
        needed.append("s3:PutObjectAcl")
    return tuple(needed)


# Operations whose keys only their handler knows (the body's list, the form's field): dispatch
# lets them in, the handler asks ``key_checker`` or ``authorize_form`` for each key.
_PER_KEY = frozenset({"DeleteObjects", "PostObject"})


# -- signed requests ------------------------------------------------------------------------------


async def authorize_signed(
    request: web.Request, route: Route, query: dict[str, str], backend: Backend, config: Config, auth: AuthResult
) -> AuthResult:
    """The signed request as it may run: as it is for the bucket's owner, as the owner for a
    user the policy grants it to; AccessDenied otherwise (NoSuchBucket for a missing bucket).
    A bucket without a policy costs one cached lookup beyond the ownership check."""
    assert route.bucket is not None
    operation = route.operation
    owner = await bucket_owner(backend, route.bucket, operation)
    found = await backend.cached_bucket_config(route.bucket, POLICY, policy.load)
    is_owner = owner == auth.user.user_id
    if is_owner and (found is None or not found.may_deny or operation in policy.OWNER_KEEPS):
        return auth
    if found is None:
        raise errors.AccessDenied()
    if not is_owner and operation in policy.OWNER_KEEPS:
        raise errors.AccessDenied()  # the owner account's alone (S3 answers others 403 or 405)
    if operation not in _PER_KEY:
        resource, signer = _resource(route), auth.user.user_id
        actions = (policy.action(operation), *_also_needed(request, route))
        if is_owner and not any(policy.may_deny(found, action, resource, signer) for action in actions):
            return auth
        context = _context(request, operation, query, auth)
        requests = [policy.Request(action, resource, context, signer) for action in actions]
        restricted = not is_owner and await _restricted(backend, route.bucket, found)
        if not _permitted(found, requests, owner=is_owner, restricted=restricted):
            raise errors.AccessDenied()
    return auth if is_owner else dataclasses.replace(auth, user=_run_as(config, owner), requester=auth.user)


async def key_checker(ctx: Context, bucket: str, action: str) -> Callable[[str], bool]:
    """Whether the request's signer may do ``action`` on a key of ``bucket`` (the keys of a
    DeleteObjects, the source of a copy): one lookup of the bucket's owner and policy for every
    key. NoSuchBucket for a missing bucket."""
    auth = ctx.auth
    # The request's own bucket: dispatch made sure it runs as the owner.
    owner = ctx.user.user_id if bucket == ctx.route.bucket else (await ctx.backend.head_bucket(bucket)).owner
    if auth.version == 0:
        return lambda key: False  # an anonymous request is granted none of these operations
    signer = auth.principal.user_id
    found = await ctx.backend.cached_bucket_config(bucket, POLICY, policy.load)
    is_owner = owner == signer
    if is_owner and (found is None or not found.may_deny):
        return lambda key: True
    if found is None:
        return lambda key: False
    restricted = not is_owner and await _restricted(ctx.backend, bucket, found)
    context = _context(ctx.request, ctx.route.operation, ctx.query, auth)
    return lambda key: _permitted(
        found, [policy.Request(action, policy.object_arn(bucket, key), context, signer)], owner=is_owner, restricted=restricted
    )


async def check_source(ctx: Context, bucket: str, key: str) -> None:
    """CopyObject's and UploadPartCopy's source: s3:GetObject on it, by its bucket's policy."""
    if not (await key_checker(ctx, bucket, "s3:GetObject"))(key):
        raise errors.AccessDenied()


async def authorize_form(ctx: Context, auth: AuthResult, key: str, fields: Mapping[str, str]) -> AuthResult:
    """A signed PostObject: s3:PutObject on the form's key (s3:authType POST; the form's fields
    stand for the headers a PutObject would send), as ``authorize_signed`` decides."""
    owner = (await ctx.backend.head_bucket(ctx.bucket)).owner
    found = await ctx.backend.cached_bucket_config(ctx.bucket, POLICY, policy.load)
    is_owner = owner == auth.user.user_id
    if is_owner and (found is None or not found.may_deny):
        return auth
    if found is None:
        raise errors.AccessDenied()
    # The form's fields stand for the headers a PutObject would send (its acl field for x-amz-acl).
    headers = _Lower({name.lower(): value for name, value in ctx.request.headers.items() if name.lower() in _FORM_HEADERS})
    headers.update(fields)
    if "acl" in fields:
        headers["x-amz-acl"] = fields["acl"]
    context = _context(ctx.request, "PostObject", ctx.query, auth, headers=headers, auth_type="POST")
    requests = [policy.Request("s3:PutObject", policy.object_arn(ctx.bucket, key), context, auth.user.user_id)]
    restricted = not is_owner and await _restricted(ctx.backend, ctx.bucket, found)
    if not _permitted(found, requests, owner=is_owner, restricted=restricted):
        raise errors.AccessDenied()
    return auth if is_owner else dataclasses.replace(auth, user=_run_as(ctx.config, owner), requester=auth.user)


_FORM_HEADERS = frozenset({"referer", "user-agent"})


class _Lower(dict[str, str]):
    """Form fields by lower-case name, read as headers are (case-insensitively)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


# -- anonymous requests ---------------------------------------------------------------------------


async def _effective_policy(backend: Backend, bucket: str) -> policy.Policy | None:
    """The bucket's policy as it applies to anonymous requests: none when there is none, or when
    RestrictPublicBuckets (on by default) takes a public one out of effect."""
    found = await backend.cached_bucket_config(bucket, POLICY, policy.load)
    if found is None or await _restricted(backend, bucket, found):
        return None
    return found


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
    if route.operation not in policy.ANONYMOUS or (route.key is None and route.operation not in _BUCKET_LEVEL):
        raise errors.AccessDenied()
    effective = await _effective_policy(backend, route.bucket)
    context = _context(request, route.operation, query, None)
    if effective is None or not all(
        policy.allows(effective, policy.Request(action, _resource(route), context))
        for action in (policy.action(route.operation), *_also_needed(request, route))
    ):
        raise errors.AccessDenied()
    if route.operation in ("GetObject", "HeadObject") and any(name in query for name in RESPONSE_OVERRIDES):
        # S3 honours response-* only on a signed request: on an anonymous one they would let
        # anyone serve a public object as text/html (or any type) from the bucket's origin.
        raise errors.InvalidRequest("Request specific response headers cannot be used for anonymous GET requests.")
    content_sha256 = request.headers.get("x-amz-content-sha256") or UNSIGNED_PAYLOAD
    return AuthResult(user=_run_as(config, owner), version=0, presigned=False, content_sha256=content_sha256)


# The operations of ANONYMOUS on the bucket itself; the others act on an object, and a request
# for them that names no key is refused.
_BUCKET_LEVEL = frozenset(
    {
        "HeadBucket", "ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads",
        "GetBucketLocation", "GetBucketTagging", "GetBucketCors", "GetBucketVersioning", "GetBucketAcl",
        "GetBucketWebsite",
    }
)  # fmt: skip


async def may_list(request: web.Request, route: Route, backend: Backend, auth: AuthResult | None = None) -> bool:
    """Whether the requester (anonymous, or a user granted access to another's bucket) may list
    the bucket: S3 tells a missing key (404 NoSuchKey) only to a requester who could have listed
    it, else answers 403."""
    assert route.bucket is not None
    if auth is None:
        effective = await _effective_policy(backend, route.bucket)
        return effective is not None and policy.allows(
            effective, policy.Request("s3:ListBucket", policy.bucket_arn(route.bucket), _context(request, "ListObjects", {}, None))
        )
    found = await backend.cached_bucket_config(route.bucket, POLICY, policy.load)
    if found is None or await _restricted(backend, route.bucket, found):
        return False
    context = _context(request, "ListObjects", {}, auth)
    listing = policy.Request("s3:ListBucket", policy.bucket_arn(route.bucket), context, auth.principal.user_id)
    return policy.evaluate(found, listing) == "Allow"
