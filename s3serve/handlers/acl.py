"""PutBucketAcl and PutObjectAcl. s3serve has one owner per bucket and no ACL model: what
GetBucketAcl / GetObjectAcl return (the owner's FULL_CONTROL) is all there is.

S3 buckets have ACLs disabled since April 2023 (Object Ownership BucketOwnerEnforced, the default
here too). S3 then refuses every request that sets an ACL with AccessControlListNotSupported, even
one that grants the owner alone (`private`): only uploads may still name an owner-only ACL. A bucket
whose ownership controls enable ACLs (ObjectWriter, BucketOwnerPreferred, or deleted controls, as
buckets were before Object Ownership) accepts an ACL that grants its owner alone, which is what it
already has; one that grants anybody else would need an ACL model, so it answers 501.

Uploads (PutObject, CopyObject, CreateMultipartUpload, PostObject) and CreateBucket may name an
ACL too (headers, or PostObject's acl field; never a body): one that grants the owner alone is
what every object and bucket here has, and is accepted on any bucket; any other is refused before
anything is stored, as S3 refuses it on a bucket with ACLs disabled (check_upload_acl,
check_create_bucket_acl). objects.py and buckets.py load this module only for a request that
names an ACL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .. import errors, s3xml
from .bucket_config import OWNERSHIP
from .common import Context, check_version_id
from .encryption import described_without_key
from .objects import GRANT_HEADERS

ENFORCED = "BucketOwnerEnforced"
CANNED = frozenset(
    {
        "private",
        "public-read",
        "public-read-write",
        "authenticated-read",
        "aws-exec-read",
        "bucket-owner-read",
        "bucket-owner-full-control",
        "log-delivery-write",
    }
)
# What an object may be given (log-delivery-write is for buckets only).
OBJECT_CANNED = CANNED - {"log-delivery-write"}
# Canned ACLs that grant the owner alone here: an object's owner is its bucket's (one owner per
# bucket), and S3 ignores bucket-owner-* on a bucket, which leaves it private.
OWNER_ONLY_CANNED = frozenset({"private", "bucket-owner-read", "bucket-owner-full-control"})
PERMISSIONS = frozenset(GRANT_HEADERS.values())
GROUPS = frozenset(
    {
        "http://acs.amazonaws.com/groups/global/AllUsers",
        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
        "http://acs.amazonaws.com/groups/s3/LogDelivery",
    }
)
_CANONICAL_ID = re.compile(r"[0-9a-f]{64}")

# (grantee type, grantee, permission); the grantee is an id, a group URI or an e-mail address.
Grant = tuple[str, str, str]


async def put_bucket_acl(ctx: Context) -> web.StreamResponse:
    owner_only = requested_acl_is_owner_only(ctx.headers, await ctx.read_xml_body(), ctx.user.user_id)
    await _accept_or_refuse(ctx, owner_only)
    return web.Response(status=200)


async def put_object_acl(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    body = await ctx.read_xml_body()
    await described_without_key(ctx)  # that it exists: an SSE-C object's ACL takes no key
    owner_only = requested_acl_is_owner_only(ctx.headers, body, ctx.user.user_id)
    await _accept_or_refuse(ctx, owner_only)
    return web.Response(status=200)


async def _accept_or_refuse(ctx: Context, owner_only: bool) -> None:
    if await object_ownership(ctx) == ENFORCED:
        raise errors.AccessControlListNotSupported()
    if not owner_only:
        raise _no_acl_model()


def _no_acl_model() -> errors.S3Error:
    return errors.NotImplementedOp("ACLs that grant access to anyone but the bucket owner are not implemented by s3serve.")


async def check_upload_acl(ctx: Context, named: Mapping[str, str] | None = None) -> None:
    """The ACL an upload names (``named``: its x-amz-acl / x-amz-grant-* as headers; the
    request's headers by default), validated as S3 validates it. S3 accepts an owner-only ACL
    on a bucket with ACLs disabled ("bucket owner full control" is what the bucket owner has
    anyway) and refuses any other with AccessControlListNotSupported; with ACLs enabled, another
    grantee would need an ACL model: 501. The bucket's setting is read only for such an ACL."""
    if requested_acl_is_owner_only(ctx.headers if named is None else named, b"", ctx.user.user_id, OBJECT_CANNED):
        return
    if await object_ownership(ctx) == ENFORCED:
        raise errors.AccessControlListNotSupported()
    raise _no_acl_model()


def check_create_bucket_acl(ctx: Context, ownership: str) -> None:
    """The ACL a CreateBucket names, for a bucket that will have Object Ownership ``ownership``:
    S3 refuses one that grants anyone but the owner when ACLs will be disabled."""
    if requested_acl_is_owner_only(ctx.headers, b"", ctx.user.user_id):
        return
    if ownership == ENFORCED:
        raise errors.InvalidBucketAclWithObjectOwnership()
    raise _no_acl_model()


async def object_ownership(ctx: Context) -> str | None:
    """The bucket's Object Ownership setting; None once its ownership controls were deleted."""
    document = await ctx.backend.get_bucket_config(ctx.bucket, OWNERSHIP.name)
    if document is None:
        document = OWNERSHIP.default
    if not document:
        return None
    try:
        rules = s3xml.as_list(s3xml.parse_document(document, OWNERSHIP.root).get("Rule"))
        return s3xml.text(rules[0]["ObjectOwnership"])
    except (errors.S3Error, LookupError, TypeError):
        return ENFORCED  # a document someone else broke on disk: S3's default


def requested_acl_is_owner_only(
    headers: Mapping[str, str], body: bytes, owner: str, canned_acls: frozenset[str] = CANNED
) -> bool:
    """Validate the ACL a request names (canned, x-amz-grant-* headers or an AccessControlPolicy
    body, exactly one of them, as S3 checks) and tell whether it grants the owner alone.
    ``canned_acls``: the canned ACLs the request may name (an object's exclude log-delivery-write)."""
    canned = headers.get("x-amz-acl")
    granted = {name: headers[name] for name in GRANT_HEADERS if headers.get(name)}
    has_body = bool(body.strip())
    if not (canned or granted or has_body):
        raise errors.MissingSecurityHeader(MissingHeaderName="x-amz-acl")
    if canned and granted:
        raise errors.InvalidRequest("Specifying both Canned ACLs and Header Grants is not allowed")
    if (canned or granted) and has_body:
        raise errors.UnexpectedContent()
    if canned:
        if canned not in canned_acls:
            raise errors.InvalidArgument(ArgumentName="x-amz-acl", ArgumentValue=canned)
        return canned in OWNER_ONLY_CANNED
    if granted:
        grants = [grant for name, value in granted.items() for grant in _header_grants(name, value, owner)]
        return _only_owner(grants, owner)
    policy_owner, grants = _policy(body, owner)
    return policy_owner == owner and _only_owner(grants, owner)


def _only_owner(grants: list[Grant], owner: str) -> bool:
    # Grants to the owner besides FULL_CONTROL add nothing to it; without FULL_CONTROL the
    # owner would lose rights, which s3serve cannot take away either.
    everyone = {(kind, grantee) for kind, grantee, _ in grants}
    full = any(permission == "FULL_CONTROL" for _, _, permission in grants)
    return everyone == {("CanonicalUser", owner)} and full


def _check_id(value: str, owner: str, argument: str) -> None:
    # The owner's id is whatever the configuration says; anyone else's must look like S3's.
    if value != owner and not _CANONICAL_ID.fullmatch(value):
        raise errors.InvalidArgument("Invalid id", ArgumentName=argument, ArgumentValue=value)


def _header_grants(header: str, value: str, owner: str) -> list[Grant]:
    """'id="abc", uri="http://acs.amazonaws.com/groups/global/AllUsers"' -> grants."""
    grants: list[Grant] = []
    for item in value.split(","):
        kind, sep, grantee = item.strip().partition("=")
        grantee = grantee.strip().strip('"')
        if not sep or kind not in ("id", "uri", "emailAddress"):
            raise errors.InvalidArgument(
                "Argument format not recognized", ArgumentName=header, ArgumentValue=item.strip()
            )
        if kind == "uri" and grantee not in GROUPS:
            raise errors.InvalidArgument("Invalid group uri", ArgumentName="uri", ArgumentValue=grantee)
        if kind == "id":
            _check_id(grantee, owner, "id")
        grant_type = {"id": "CanonicalUser", "uri": "Group", "emailAddress": "AmazonCustomerByEmail"}[kind]
        grants.append((grant_type, grantee, GRANT_HEADERS[header]))
    return grants


def _policy(body: bytes, owner: str) -> tuple[str, list[Grant]]:
    """An AccessControlPolicy body -> (its owner id, its grants)."""
    try:
        policy = s3xml.parse_document(body, "AccessControlPolicy")
    except errors.MalformedXML:
        raise errors.MalformedACLError() from None
    policy_owner = policy.get("Owner")
    if not isinstance(policy_owner, dict) or "ID" not in policy_owner or "AccessControlList" not in policy:
        raise errors.MalformedACLError()
    owner_id = _text(policy_owner["ID"])
    _check_id(owner_id, owner, "CanonicalUser/ID")
    acl = policy["AccessControlList"]
    if acl is not None and not isinstance(acl, dict):
        raise errors.MalformedACLError()
    grants = [_policy_grant(grant, owner) for grant in s3xml.as_list((acl or {}).get("Grant"))]
    return owner_id, grants


def _policy_grant(grant: Any, owner: str) -> Grant:
    if not isinstance(grant, dict) or not isinstance(grant.get("Grantee"), dict):
        raise errors.MalformedACLError()
    permission = _text(grant.get("Permission"))
    grantee = grant["Grantee"]
    # The xsi:type attribute, whatever prefix the client bound the XML Schema instance namespace to.
    kind = next((str(v) for k, v in grantee.items() if k.startswith("@") and k.split(":")[-1] == "type"), "")
    fields = {"CanonicalUser": "ID", "Group": "URI", "AmazonCustomerByEmail": "EmailAddress"}
    if permission not in PERMISSIONS or kind not in fields or fields[kind] not in grantee:
        raise errors.MalformedACLError()
    value = _text(grantee[fields[kind]])
    if kind == "Group" and value not in GROUPS:
        raise errors.InvalidArgument("Invalid group uri", ArgumentName="Group/URI", ArgumentValue=value)
    if kind == "CanonicalUser":
        _check_id(value, owner, "CanonicalUser/ID")
    return kind, value, permission


def _text(value: Any) -> str:
    try:
        return s3xml.text(value).strip()
    except errors.MalformedXML:
        raise errors.MalformedACLError() from None
