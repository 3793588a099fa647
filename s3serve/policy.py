"""Bucket policies: parsing, S3's notion of a public policy, and evaluation for anonymous requests.

Pure functions over the parsed JSON, so that the rules can be tested without a server. Only what
an anonymous request needs is modelled: statements whose Principal is everyone, Action/NotAction,
Resource/NotResource, and a few condition operators and keys. Anything else in a statement is
treated so that it can never widen access: an Allow that depends on it grants nothing, a Deny
that depends on it denies (see ``_Statement.applies``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Three-valued logic: True, False, or None for "cannot tell" (an unsupported or malformed part).
Tri = bool | None

# S3 operation -> (IAM action, whether its resource is the object rather than the bucket), after
# AWS's "Actions, resources, and condition keys for Amazon S3". Operations missing here are never
# granted to anonymous requests: the bucket-policy and public-access-block operations (S3 answers
# them to the bucket owner's account only), CopyObject and UploadPartCopy (they would need the
# source bucket's policy too), DeleteObjects (a decision per key), and whatever changes bucket
# configuration.
ACTIONS: dict[str, tuple[str, bool]] = {
    "GetObject": ("s3:GetObject", True),
    "HeadObject": ("s3:GetObject", True),
    "GetObjectAttributes": ("s3:GetObjectAttributes", True),
    "GetObjectTagging": ("s3:GetObjectTagging", True),
    "PutObjectTagging": ("s3:PutObjectTagging", True),
    "DeleteObjectTagging": ("s3:DeleteObjectTagging", True),
    "GetObjectAcl": ("s3:GetObjectAcl", True),
    "GetObjectRetention": ("s3:GetObjectRetention", True),
    "GetObjectLegalHold": ("s3:GetObjectLegalHold", True),
    "PutObject": ("s3:PutObject", True),
    "CreateMultipartUpload": ("s3:PutObject", True),
    "UploadPart": ("s3:PutObject", True),
    "CompleteMultipartUpload": ("s3:PutObject", True),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", True),
    "ListParts": ("s3:ListMultipartUploadParts", True),
    "DeleteObject": ("s3:DeleteObject", True),
    "RestoreObject": ("s3:RestoreObject", True),
    "HeadBucket": ("s3:ListBucket", False),
    "ListObjects": ("s3:ListBucket", False),
    "ListObjectsV2": ("s3:ListBucket", False),
    "ListObjectVersions": ("s3:ListBucketVersions", False),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads", False),
    "GetBucketLocation": ("s3:GetBucketLocation", False),
    "GetBucketTagging": ("s3:GetBucketTagging", False),
    "GetBucketCors": ("s3:GetBucketCORS", False),
    "GetBucketVersioning": ("s3:GetBucketVersioning", False),
    "GetBucketAcl": ("s3:GetBucketAcl", False),
    "GetBucketWebsite": ("s3:GetBucketWebsite", False),
}
# The listing operations, whose query parameters are the s3:prefix and s3:delimiter keys.
LISTINGS = frozenset({"ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads"})


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


@dataclass(frozen=True)
class Request:
    """What a statement is matched against. ``context`` holds the condition keys the request has,
    named in lower case (condition keys are case-insensitive); a key it does not have is absent."""

    action: str
    resource: str
    context: Mapping[str, str]


# -- parsing --------------------------------------------------------------------------------------


class _Glob:
    """IAM's wildcards: * any run of characters (slashes included), ? one character.

    Matched segment by segment (the text between the stars, leftmost first), never as one regular
    expression with a ``.*`` per star: that backtracks polynomially in the number of stars, and an
    anonymous request's key or header is the text matched (``*/*/*/*`` against a key of 200
    slashes took seconds of the event loop)."""

    def __init__(self, text: str, *, ignore_case: bool) -> None:
        flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
        # Each segment matches exactly len(segment) characters ("?" is one, any literal is one).
        self._segments = [(re.compile("".join("." if c == "?" else re.escape(c) for c in part), flags), len(part)) for part in text.split("*")]

    def fullmatch(self, value: str) -> bool:
        segments = self._segments
        if len(segments) == 1:
            return segments[0][0].fullmatch(value) is not None
        (head, head_len), (tail, tail_len) = segments[0], segments[-1]
        end = len(value) - tail_len
        if end < head_len or head.match(value) is None or tail.fullmatch(value, end) is None:
            return False
        position = head_len
        for segment, length in segments[1:-1]:
            if length:
                found = segment.search(value, position, end)
                if found is None:
                    return False
                position = found.end()
        return True


def _pattern(text: str, *, ignore_case: bool) -> _Glob:
    return _Glob(text, ignore_case=ignore_case)


def _strings(value: object) -> list[str] | None:
    """A policy element that is a string or a list of strings; None for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _everyone(principal: object) -> Tri:
    """Whether a Principal names everyone (anonymous requests included): "*" or {"AWS": "*"}."""
    if principal == "*":
        return True
    if not isinstance(principal, dict) or not principal:
        return None
    aws = principal.get("AWS")
    if aws is None:
        return False  # {"Service": ...}, {"CanonicalUser": ...}, {"Federated": ...}
    names = _strings(aws)
    if names is None:
        return None
    return "*" in names


@dataclass(frozen=True)
class _Match:
    """Action/NotAction or Resource/NotResource: patterns and whether they are negated."""

    patterns: tuple[_Glob, ...]
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
    everyone: Tri
    actions: _Match | None
    resources: _Match | None
    conditions: Any  # the Condition element as written (None: none)

    def applies(self, request: Request) -> Tri:
        """Whether the statement covers the request (three-valued AND of its parts)."""
        parts: list[Tri] = [
            self.everyone,
            None if self.actions is None else self.actions.test(request.action),
            None if self.resources is None else self.resources.test(request.resource),
        ]
        if False in parts:
            return False
        verdict = conditions_hold(self.conditions, request.context) if self.conditions is not None else True
        if verdict is False:
            return False
        return None if None in parts or verdict is None else True


@dataclass(frozen=True)
class Policy:
    statements: tuple[_Statement, ...]
    public: bool


def _statement(raw: object) -> _Statement:
    if not isinstance(raw, dict):
        return _Statement(None, None, None, None, None)
    effect = raw.get("Effect")
    if "NotPrincipal" in raw or "Principal" not in raw:
        # NotPrincipal (everyone but ...) is not modelled; it can deny, never grant.
        everyone: Tri = None
    else:
        everyone = _everyone(raw["Principal"])
    return _Statement(
        allow=True if effect == "Allow" else False if effect == "Deny" else None,
        everyone=everyone,
        actions=_match(raw, "Action", ignore_case=True),
        resources=_match(raw, "Resource", ignore_case=False),
        conditions=raw.get("Condition"),
    )


def parse(document: dict[str, Any]) -> Policy:
    raw = document.get("Statement")
    statements = raw if isinstance(raw, list) else [raw]
    return Policy(tuple(_statement(s) for s in statements), is_public(document))


def load(document: bytes) -> Policy:
    """A stored policy document (for Backend.cached_bucket_config); raises on one that is not
    JSON, which the store then ignores (logged), as no policy."""
    value = json.loads(document)
    if not isinstance(value, dict):
        raise ValueError("a policy is a JSON object")
    return parse(value)


# -- evaluation -----------------------------------------------------------------------------------


def evaluate(policy: Policy, request: Request) -> str:
    """AWS's evaluation of one policy for an anonymous request: "Deny" if a Deny statement
    applies (or may: a statement this module cannot read is not allowed to hide a denial),
    else "Allow" if an Allow statement certainly applies, else "Default" (an implicit deny)."""
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


# -- conditions -----------------------------------------------------------------------------------


SUPPORTED_KEYS = frozenset({"aws:securetransport", "aws:sourceip", "aws:referer", "aws:useragent", "s3:prefix", "s3:delimiter"})
_STRING_OPERATORS = frozenset(
    {"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike", "StringNotLike"}
)
_OPERATORS = _STRING_OPERATORS | {"Bool", "IpAddress", "NotIpAddress"}


def conditions_hold(condition: object, context: Mapping[str, str]) -> Tri:
    """A Condition block: every operator's every key must hold (AND); None if any part is an
    operator, key or value this module does not support, unless another part is False."""
    if not isinstance(condition, dict):
        return None
    verdicts: list[Tri] = []
    for operator, keys in condition.items():
        if not isinstance(keys, dict) or not keys:
            verdicts.append(None)
            continue
        for key, values in keys.items():
            verdicts.append(_condition(operator, key, values, context))
    if False in verdicts:
        return False
    return None if None in verdicts else True


def _condition_values(values: object) -> list[str] | None:
    items = values if isinstance(values, list) else [values]
    if not items:
        return None
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str):
            out.append(item)
        else:
            return None
    return out


def _condition(operator: object, key: object, raw_values: object, context: Mapping[str, str]) -> Tri:
    if not isinstance(operator, str) or not isinstance(key, str):
        return None
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base not in _OPERATORS or key.lower() not in SUPPORTED_KEYS:
        return None
    values = _condition_values(raw_values)
    if values is None:
        return None
    negated = base.startswith(("StringNot", "NotIp"))
    actual = context.get(key.lower())
    if actual is None:
        # AWS: a key the request does not have matches nothing, so only negated operators hold.
        return True if if_exists else negated
    if base == "Bool":
        wanted = {v.lower() for v in values}
        if not wanted <= {"true", "false"}:
            return None
        return actual in wanted
    if base in ("IpAddress", "NotIpAddress"):
        found = _ip_in(actual, values)
        return None if found is None else found != negated
    found = _string_match(base, actual, values)
    return None if found is None else found != negated


def _string_match(operator: str, actual: str, values: list[str]) -> bool | None:
    if any("${" in v for v in values):
        return None  # policy variables are not substituted here
    if operator in ("StringLike", "StringNotLike"):
        return any(_pattern(v, ignore_case=False).fullmatch(actual) for v in values)
    if operator.endswith("IgnoreCase"):
        return actual.casefold() in {v.casefold() for v in values}
    return actual in values


def _networks(values: list[str]) -> list[Any] | None:
    """aws:SourceIp's address blocks, or None when one is no address block."""
    # Imported here: only policies with address conditions need it, and start-up time is watched.
    import ipaddress

    try:
        return [ipaddress.ip_network(v.strip(), strict=False) for v in values]
    except ValueError:
        return None


def _ip_in(actual: str, values: list[str]) -> bool | None:
    import ipaddress

    networks = _networks(values)
    if networks is None:
        return None
    try:
        address = ipaddress.ip_address(actual.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == n.version and address in n for n in networks)


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
            values = _condition_values(raw)
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
    networks = _networks(values)
    return networks is not None and all(n.prefixlen > 0 for n in networks)


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


def request_context(
    *,
    secure: bool,
    source_ip: str | None,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    listing: bool,
) -> dict[str, str]:
    """The condition keys of a request, named in lower case."""
    context = {"aws:securetransport": "true" if secure else "false"}
    if source_ip:
        context["aws:sourceip"] = source_ip
    for header, key in (("Referer", "aws:referer"), ("User-Agent", "aws:useragent")):
        value = headers.get(header)
        if value is not None:
            context[key] = value
    if listing:
        for name in ("prefix", "delimiter"):
            if name in query:
                context[f"s3:{name}"] = query[name]
    return context
