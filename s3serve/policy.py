"""Bucket policies: parsing, S3's notion of a public policy, and evaluation of a request.

Pure functions over the parsed JSON, so that the rules can be tested without a server. A request
is anonymous or signed by an s3serve user, each user standing for the root of an AWS account of
its own; which statements name it (Principal/NotPrincipal), Action/NotAction,
Resource/NotResource and the Condition block (s3serve/policy_conditions.py) decide. Anything else
in a statement is treated so that it can never widen access: an Allow that depends on it grants
nothing, a Deny that depends on it denies (see ``_Statement.applies``). What the verdict means for
the bucket's owner and for other users is the handlers' (s3serve/handlers/policy.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .policy_conditions import Glob, Tri, Value, condition_values, conditions_hold, networks
from .policy_conditions import request_context as request_context  # the handlers' one import

# Operations an anonymous request may be granted (with the action they need, ``action``).
# The rest are never granted to one: the bucket-policy and public-access-block operations (S3
# answers them to the bucket owner's account only), CopyObject and UploadPartCopy (a second
# bucket's policy), DeleteObjects (a decision per key), PostObject (an anonymous form has no
# policy to check) and whatever changes bucket configuration.
ANONYMOUS = frozenset(
    {
        "GetObject", "HeadObject", "GetObjectAttributes", "GetObjectTagging", "PutObjectTagging",
        "DeleteObjectTagging", "GetObjectAcl", "GetObjectRetention", "GetObjectLegalHold", "PutObject",
        "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload", "ListParts",
        "DeleteObject", "RestoreObject", "HeadBucket", "ListObjects", "ListObjectsV2", "ListObjectVersions",
        "ListMultipartUploads", "GetBucketLocation", "GetBucketTagging", "GetBucketCors", "GetBucketVersioning",
        "GetBucketAcl", "GetBucketWebsite",
    }
)  # fmt: skip
# Operations that need no bucket policy: ListBuckets is the account's own, CreateBucket makes a
# bucket that has none yet (AWS: both are decided by identity policies alone).
UNEVALUATED = frozenset({"ListBuckets", "CreateBucket", "OptionsObject"})
# S3's own: the bucket owner's account root may always run these, whatever the policy denies, so
# that a policy that locks everyone out can be undone (API reference, DeleteBucketPolicy).
OWNER_KEEPS = frozenset({"GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"})
# The IAM action of each operation whose action is not "s3:" + its name, after AWS's "Actions,
# resources, and condition keys for Amazon S3" and the API reference's "Permissions" sections.
_ACTION_NAMES = {
    "HeadObject": "s3:GetObject",
    "SelectObjectContent": "s3:GetObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "PostObject": "s3:PutObject",
    "RenameObject": "s3:PutObject",
    "DeleteObjects": "s3:DeleteObject",
    "ListParts": "s3:ListMultipartUploadParts",
    "HeadBucket": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "GetBucketCors": "s3:GetBucketCORS",
    "PutBucketCors": "s3:PutBucketCORS",
    "DeleteBucketCors": "s3:PutBucketCORS",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "GetBucketReplication": "s3:GetReplicationConfiguration",
    "PutBucketReplication": "s3:PutReplicationConfiguration",
    "DeleteBucketReplication": "s3:PutReplicationConfiguration",
    "GetBucketAccelerateConfiguration": "s3:GetAccelerateConfiguration",
    "PutBucketAccelerateConfiguration": "s3:PutAccelerateConfiguration",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "DeleteBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketAnalyticsConfiguration": "s3:GetAnalyticsConfiguration",
    "ListBucketAnalyticsConfigurations": "s3:GetAnalyticsConfiguration",
    "PutBucketAnalyticsConfiguration": "s3:PutAnalyticsConfiguration",
    "DeleteBucketAnalyticsConfiguration": "s3:PutAnalyticsConfiguration",
    "GetBucketMetricsConfiguration": "s3:GetMetricsConfiguration",
    "ListBucketMetricsConfigurations": "s3:GetMetricsConfiguration",
    "PutBucketMetricsConfiguration": "s3:PutMetricsConfiguration",
    "DeleteBucketMetricsConfiguration": "s3:PutMetricsConfiguration",
    "GetBucketInventoryConfiguration": "s3:GetInventoryConfiguration",
    "ListBucketInventoryConfigurations": "s3:GetInventoryConfiguration",
    "PutBucketInventoryConfiguration": "s3:PutInventoryConfiguration",
    "DeleteBucketInventoryConfiguration": "s3:PutInventoryConfiguration",
    "GetBucketIntelligentTieringConfiguration": "s3:GetIntelligentTieringConfiguration",
    "ListBucketIntelligentTieringConfigurations": "s3:GetIntelligentTieringConfiguration",
    "PutBucketIntelligentTieringConfiguration": "s3:PutIntelligentTieringConfiguration",
    "DeleteBucketIntelligentTieringConfiguration": "s3:PutIntelligentTieringConfiguration",
}
# The listing operations, whose query parameters are the s3:prefix, s3:delimiter and s3:max-keys keys.
LISTINGS = frozenset({"ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads"})


def action(operation: str) -> str:
    """The IAM action an operation needs (the operation's name where AWS named it so)."""
    return _ACTION_NAMES.get(operation) or f"s3:{operation}"


_ARN_PREFIX = "arn:aws:s3:::"


def bucket_arn(bucket: str) -> str:
    return f"{_ARN_PREFIX}{bucket}"


def object_arn(bucket: str, key: str) -> str:
    return f"{_ARN_PREFIX}{bucket}/{key}"


@dataclass(frozen=True)
class Request:
    """What a statement is matched against. ``context`` holds the condition keys the request has,
    named in lower case (condition keys are case-insensitive); a key it does not have is absent.
    ``principal`` is the signer's canonical user id, None for an anonymous request."""

    action: str
    resource: str
    context: Mapping[str, Value]
    principal: str | None = None


# -- parsing --------------------------------------------------------------------------------------


def _pattern(text: str, *, ignore_case: bool) -> Glob:
    return Glob(text, ignore_case=ignore_case)


def _strings(value: object) -> list[str] | None:
    """A policy element that is a string or a list of strings; None for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


@dataclass(frozen=True)
class _Principals:
    """Whom a Principal (or NotPrincipal) names: everyone, and canonical user ids."""

    everyone: bool
    ids: frozenset[str]

    def names(self, principal: str | None) -> bool:
        return self.everyone or (principal is not None and principal in self.ids)


def _principals(value: object) -> _Principals | None:
    """"*" and {"AWS": "*"} name everyone (anonymous requests included); {"CanonicalUser": id}
    names the s3serve user with that user_id. AWS account and IAM ARNs, services and federated
    identities name no s3serve user. None for a malformed element."""
    if value == "*":
        return _Principals(True, frozenset())
    if not isinstance(value, dict) or not value:
        return None
    everyone, ids = False, set[str]()
    for kind, raw in value.items():
        names = _strings(raw)
        if names is None or kind not in ("AWS", "CanonicalUser", "Service", "Federated"):
            return None
        if kind == "AWS":
            everyone = everyone or "*" in names
        elif kind == "CanonicalUser":
            ids.update(names)
    return _Principals(everyone, frozenset(ids))


def _everyone(principal: object) -> Tri:
    """Whether a Principal names everyone (anonymous requests included): "*" or {"AWS": "*"}."""
    found = _principals(principal)
    return None if found is None else found.everyone


@dataclass(frozen=True)
class _Match:
    """Action/NotAction or Resource/NotResource: patterns and whether they are negated."""

    patterns: tuple[Glob, ...]
    negated: bool

    def test(self, value: str) -> bool:
        hit = any(p.fullmatch(value) for p in self.patterns)
        return hit != self.negated


def _match(statement: Mapping[str, Any], name: str, *, ignore_case: bool) -> _Match | None:
    """The statement's ``name`` or ``Not<name>`` (exactly one of them), or None if malformed."""
    plain, negated = name in statement, f"Not{name}" in statement
    if plain == negated:
        return None
    values = _strings(statement[name] if plain else statement[f"Not{name}"])
    if values is None:
        return None
    return _Match(tuple(_pattern(v, ignore_case=ignore_case) for v in values), negated)


@dataclass(frozen=True)
class _Statement:
    allow: bool | None  # None: an Effect that is neither Allow nor Deny
    principals: _Principals | None  # None: unreadable
    not_principal: bool
    actions: _Match | None
    resources: _Match | None
    conditions: Any  # the Condition element as written (None: none)

    def covers(self, action: str, resource: str, principal: str | None) -> Tri:
        """Whether the statement names the principal, action and resource (its conditions aside)."""
        named: Tri = None
        if self.principals is not None:
            named = self.principals.names(principal) != self.not_principal
        parts: list[Tri] = [
            named,
            None if self.actions is None else self.actions.test(action),
            None if self.resources is None else self.resources.test(resource),
        ]
        if False in parts:
            return False
        return None if None in parts else True

    def applies(self, request: Request) -> Tri:
        """Whether the statement covers the request (three-valued AND of its parts)."""
        covered = self.covers(request.action, request.resource, request.principal)
        if covered is False:
            return False
        verdict = conditions_hold(self.conditions, request.context) if self.conditions is not None else True
        if verdict is False:
            return False
        return None if covered is None or verdict is None else True


@dataclass(frozen=True)
class Policy:
    statements: tuple[_Statement, ...]
    public: bool
    # Whether any statement may deny (a Deny, or an Effect that cannot be read): without one, the
    # bucket owner's requests need no evaluation at all.
    may_deny: bool = True


def _statement(raw: object) -> _Statement:
    if not isinstance(raw, dict):
        return _Statement(None, None, False, None, None, None)
    effect = raw.get("Effect")
    allow = True if effect == "Allow" else False if effect == "Deny" else None
    not_principal = "NotPrincipal" in raw
    if not_principal == ("Principal" in raw) or (not_principal and allow is not False):
        # Both or neither; or NotPrincipal (everyone but ...) in an Allow, which AWS advises
        # against and s3serve does not grant by: it can deny, never grant.
        principals = None
    else:
        principals = _principals(raw["NotPrincipal" if not_principal else "Principal"])
    return _Statement(
        allow=allow,
        principals=principals,
        not_principal=not_principal,
        actions=_match(raw, "Action", ignore_case=True),
        resources=_match(raw, "Resource", ignore_case=False),
        conditions=raw.get("Condition"),
    )


def parse(document: dict[str, Any]) -> Policy:
    raw = document.get("Statement")
    statements = tuple(_statement(s) for s in (raw if isinstance(raw, list) else [raw]))
    return Policy(statements, is_public(document), any(s.allow is not True for s in statements))


def validate(document: Mapping[str, Any], bucket: str) -> None:
    """PutBucketPolicy's checks of each statement, with S3's messages: what S3 refuses is never
    stored here either (a Deny missing its Resource would otherwise deny the owner everything)."""
    raw = document["Statement"]
    for statement in raw if isinstance(raw, list) else [raw]:
        if not isinstance(statement, dict):
            raise errors.MalformedPolicy("Policy has an invalid statement")
        effect = statement.get("Effect")
        if effect is None:
            raise errors.MalformedPolicy("Missing required field Effect")
        if effect not in ("Allow", "Deny"):
            raise errors.MalformedPolicy(f"Invalid effect: {effect}")
        for name in ("Principal", "Action", "Resource"):
            if name not in statement and f"Not{name}" not in statement:
                raise errors.MalformedPolicy(f"Missing required field {name}")
        actions = _strings(statement.get("Action", statement.get("NotAction")))
        if actions is None or not all(a == "*" or a.lower().startswith("s3:") for a in actions):
            raise errors.MalformedPolicy("Policy has invalid action")
        resources = _strings(statement.get("Resource", statement.get("NotResource")))
        if resources is None or not all(_names_bucket(r, bucket) for r in resources):
            raise errors.MalformedPolicy("Policy has invalid resource")


def _names_bucket(resource: str, bucket: str) -> bool:
    """An S3 ARN of this bucket or of keys in it (the bucket part may be a pattern)."""
    if not resource.startswith(_ARN_PREFIX):
        return False
    return Glob(resource[len(_ARN_PREFIX) :].split("/", 1)[0], ignore_case=False).fullmatch(bucket)


def load(document: bytes) -> Policy:
    """A stored policy document (for Backend.cached_bucket_config); raises on one that is not
    JSON, which the store then ignores (logged), as no policy."""
    value = json.loads(document)
    if not isinstance(value, dict):
        raise ValueError("a policy is a JSON object")
    return parse(value)


# -- evaluation -----------------------------------------------------------------------------------


def evaluate(policy: Policy, request: Request) -> str:
    """AWS's evaluation of one policy for a request: "Deny" if a Deny statement applies (or may:
    a statement this module cannot read is not allowed to hide a denial), else "Allow" if an
    Allow statement certainly applies, else "Default" (an implicit deny)."""
    allowed = False
    for statement in policy.statements:
        applies = statement.applies(request)
        if applies is False:
            continue
        if statement.allow is not True:
            return "Deny"
        if applies:
            allowed = True
    return "Allow" if allowed else "Default"


def allows(policy: Policy, request: Request) -> bool:
    return evaluate(policy, request) == "Allow"


def may_deny(policy: Policy, action: str, resource: str, principal: str | None) -> bool:
    """Whether a Deny (or a statement that cannot be read) could apply to such a request, before
    its conditions are read: for the bucket owner's requests, which only a Deny can refuse, this
    spares building the request's condition keys for every request the Deny is not about."""
    return any(s.allow is not True and s.covers(action, resource, principal) is not False for s in policy.statements)


# -- S3's notion of public ------------------------------------------------------------------------


# Condition keys whose fixed values S3 counts as narrowing a grant to someone in particular
# (AWS: "The meaning of public"). aws:SourceIp is among them when it names fixed CIDR blocks.
_NARROWING_KEYS = frozenset(
    {
        "aws:sourceip",
        "aws:sourcearn",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:sourceowner",
        "aws:sourceaccount",
        "aws:principalorgid",
        "aws:principalaccount",
        "aws:userid",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
    }
)
_FIXED_OPERATORS = frozenset({"StringEquals", "StringEqualsIgnoreCase", "ArnEquals", "StringLike", "ArnLike", "IpAddress"})


def _narrows(condition: object) -> bool:
    """Whether a condition limits a grant to fixed sources: a non-negated operator on one of the
    narrowing keys, with values free of wildcards and policy variables, and no address range
    that is all of the internet (a /0)."""
    if not isinstance(condition, dict):
        return False
    for operator, keys in condition.items():
        if operator not in _FIXED_OPERATORS or not isinstance(keys, dict):
            continue
        for key, raw in keys.items():
            if not isinstance(key, str) or key.lower() not in _NARROWING_KEYS:
                continue
            values = condition_values(raw)
            if not values or any("*" in v or "?" in v or "${" in v for v in values):
                continue
            if key.lower() == "aws:sourceip" and not _fixed_networks(values):
                continue
            return True
    return False


def _fixed_networks(values: list[str]) -> bool:
    """Whether aws:SourceIp values are address blocks none of which is all of the internet: parsed
    as the evaluator parses them, so that "0.0.0.0/00", "0.0.0.0/0.0.0.0" or "::/000" (a /0 that
    does not end in "/0") is not taken for a fixed source while it grants to everyone."""
    blocks = networks(values)
    return blocks is not None and all(n.prefixlen > 0 for n in blocks)


def is_public(document: Mapping[str, Any]) -> bool:
    """S3's judgement, simplified: a policy is public when an Allow statement grants to everyone
    ("*" or {"AWS": "*"}, or NotPrincipal) without a condition that narrows it to fixed
    sources (_narrows). Which actions it grants is not weighed: S3's "bad actions" (Get*, List*,
    Put*, Delete*, ...) are nearly everything a bucket policy grants."""
    raw = document.get("Statement")
    for statement in raw if isinstance(raw, list) else [raw]:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        everyone = "NotPrincipal" in statement or _everyone(statement.get("Principal")) is True
        if everyone and not _narrows(statement.get("Condition")):
            return True
    return False


# -- public access block --------------------------------------------------------------------------


def _flag(name: str) -> re.Pattern[bytes]:
    return re.compile(rb"<" + name.encode() + rb">\s*false\s*</", re.IGNORECASE)


_RESTRICT = _flag("RestrictPublicBuckets")
_BLOCK_POLICY = _flag("BlockPublicPolicy")


@dataclass(frozen=True)
class PublicAccessBlock:
    block_public_policy: bool
    restrict_public_buckets: bool


# A bucket that never had a configuration: S3's default since April 2023, all four flags on.
DEFAULT_BLOCK = PublicAccessBlock(True, True)


def public_access_block(document: bytes) -> PublicAccessBlock:
    """The stored PublicAccessBlockConfiguration (s3serve writes it normalised, every flag named;
    an empty document is a deleted configuration: nothing blocked). A flag is off only where the
    document says false: one damaged on disk blocks, rather than opening the bucket."""
    if not document.strip():
        return PublicAccessBlock(False, False)
    return PublicAccessBlock(not _BLOCK_POLICY.search(document), not _RESTRICT.search(document))
