"""A bucket policy's Condition block, the condition keys of a request, and IAM's wildcards
(``Glob``, which Action and Resource match with too).

Three-valued like the rest of the evaluator (s3serve/policy.py): a part this module cannot read
(an operator or key it does not know, a malformed value, a policy variable) answers None, which
never lets an Allow grant and always lets a Deny deny. The keys it can read are the ones a request
to s3serve can honestly tell (``KNOWN_KEYS``); a key it knows but the request lacks is absent, and
an absent key satisfies only the negated operators, ``...IfExists``, ``Null: true`` and
``ForAllValues:``, as in AWS's "IAM JSON policy elements: Condition operators".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

Tri = bool | None
# A request's condition keys, named in lower case (keys are case-insensitive); a multivalued key
# (s3:RequestObjectTagKeys) holds a tuple.
Value = str | tuple[str, ...]
Context = Mapping[str, Value]

# Keys a request's context is built with (request_context), or that s3serve knows it never has:
# aws:username names an IAM user, and every s3serve user is an account's root, which has none.
KNOWN_KEYS = frozenset(
    {
        "aws:securetransport",
        "aws:sourceip",
        "aws:referer",
        "aws:useragent",
        "aws:principaltype",
        "aws:userid",
        "aws:username",
        "s3:prefix",
        "s3:delimiter",
        "s3:max-keys",
        "s3:x-amz-server-side-encryption",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
        "s3:x-amz-acl",
        "s3:x-amz-content-sha256",
        "s3:x-amz-storage-class",
        "s3:x-amz-metadata-directive",
        "s3:x-amz-copy-source",
        "s3:signatureversion",
        "s3:authtype",
        "s3:tlsversion",
        "s3:requestobjecttagkeys",
    }
)
# s3:RequestObjectTag/<tag key>: the prefix is case-insensitive, the tag key is not.
TAG_PREFIX = "s3:requestobjecttag/"
# Request headers whose value is the s3: condition key of the same name (AWS's "Actions,
# resources, and condition keys for Amazon S3").
HEADER_KEYS = (
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-acl",
    "x-amz-content-sha256",
    "x-amz-storage-class",
    "x-amz-metadata-directive",
    "x-amz-copy-source",
)

class Glob:
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


_STRING = frozenset(
    {"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike", "StringNotLike"}
)
_NUMERIC = frozenset(
    {
        "NumericEquals",
        "NumericNotEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
    }
)
_OPERATORS = _STRING | _NUMERIC | {"Bool", "IpAddress", "NotIpAddress", "Null"}
_NEGATED = frozenset({"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NumericNotEquals", "NotIpAddress"})


def normal_key(key: str) -> str | None:
    """The context's name for a policy's condition key; None for a key s3serve cannot read."""
    lower = key.lower()
    if lower in KNOWN_KEYS:
        return lower
    if lower.startswith(TAG_PREFIX) and len(key) > len(TAG_PREFIX):
        return TAG_PREFIX + key[len(TAG_PREFIX) :]
    return None


def conditions_hold(condition: object, context: Context) -> Tri:
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


def condition_values(values: object, *, numbers: bool = False) -> list[str] | None:
    """A condition's values as strings (JSON booleans as "true"/"false", numbers only where
    ``numbers``); None for anything else."""
    items = values if isinstance(values, list) else [values]
    if not items:
        return None
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str):
            out.append(item)
        elif numbers and isinstance(item, (int, float)):
            out.append(str(item))
        else:
            return None
    return out


def _condition(operator: object, key: object, raw_values: object, context: Context) -> Tri:
    if not isinstance(operator, str) or not isinstance(key, str):
        return None
    qualifier, _, base = operator.rpartition(":")
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        return None
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    name = normal_key(key)
    if base not in _OPERATORS or name is None or (if_exists and base == "Null"):
        return None
    values = condition_values(raw_values, numbers=base in _NUMERIC)
    if values is None:
        return None
    # A value the operator cannot read spoils the condition whether or not the request has the key.
    if base in _NUMERIC and any(_number(v) is None for v in values):
        return None
    if base == "Bool" and not {v.lower() for v in values} <= {"true", "false"}:
        return None
    actual = context.get(name)
    if base == "Null":
        if qualifier or not {v.lower() for v in values} <= {"true", "false"}:
            return None
        return (actual is None) in {v.lower() == "true" for v in values}
    if qualifier:
        if base not in _STRING:
            return None  # sets of numbers, booleans or addresses: no key here has one
        members = () if actual is None else (actual,) if isinstance(actual, str) else actual
        return _set_operator(qualifier, base, members, values)
    if actual is None:
        # AWS: a key the request does not have matches nothing, so only negated operators hold.
        return True if if_exists else base in _NEGATED
    if isinstance(actual, tuple):
        return None  # a multivalued key needs ForAnyValue/ForAllValues
    return _single(base, actual, values)


def _single(base: str, actual: str, values: list[str]) -> Tri:
    negated = base in _NEGATED
    found: Tri
    if base == "Bool":
        wanted = {v.lower() for v in values}
        if not wanted <= {"true", "false"}:
            return None
        return actual in wanted
    if base in ("IpAddress", "NotIpAddress"):
        found = ip_in(actual, values)
    elif base in _NUMERIC:
        found = _numeric(base, actual, values)
    else:
        found = _string_match(base, actual, values)
    return None if found is None else found != negated


def _set_operator(qualifier: str, base: str, members: tuple[str, ...], values: list[str]) -> Tri:
    """ForAnyValue: some member of the request's set matches; ForAllValues: every member does
    (an empty or absent set: ForAnyValue fails, ForAllValues holds)."""
    verdicts = [_single(base, member, values) for member in members]
    if None in verdicts:
        return None
    return any(verdicts) if qualifier == "ForAnyValue" else all(verdicts)


def _string_match(operator: str, actual: str, values: list[str]) -> bool | None:
    if any("${" in v for v in values):
        return None  # policy variables are not substituted here
    if operator in ("StringLike", "StringNotLike"):
        return any(Glob(v, ignore_case=False).fullmatch(actual) for v in values)
    if operator.endswith("IgnoreCase"):
        return actual.casefold() in {v.casefold() for v in values}
    return actual in values


def _number(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _numeric(operator: str, actual: str, values: list[str]) -> bool | None:
    """Whether the request's number compares as the operator says with any of the values (for
    NumericNotEquals: equals any, which the caller negates)."""
    wanted = [_number(v) for v in values]
    if None in wanted:
        return None
    have = _number(actual)
    if have is None:
        return False  # not a number (s3:max-keys=abc): it compares with nothing
    compare = {
        "NumericEquals": have.__eq__,
        "NumericNotEquals": have.__eq__,
        "NumericLessThan": have.__lt__,
        "NumericLessThanEquals": have.__le__,
        "NumericGreaterThan": have.__gt__,
        "NumericGreaterThanEquals": have.__ge__,
    }[operator]
    return any(compare(w) for w in wanted if w is not None)


def networks(values: list[str]) -> list[Any] | None:
    """aws:SourceIp's address blocks, or None when one is no address block."""
    # Imported here: only policies with address conditions need it, and start-up time is watched.
    import ipaddress

    try:
        return [ipaddress.ip_network(v.strip(), strict=False) for v in values]
    except ValueError:
        return None


def ip_in(actual: str, values: list[str]) -> bool | None:
    import ipaddress

    blocks = networks(values)
    if blocks is None:
        return None
    try:
        address = ipaddress.ip_address(actual.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == n.version and address in n for n in blocks)


# -- a request's keys -----------------------------------------------------------------------------


def request_context(
    *,
    secure: bool,
    source_ip: str | None,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    listing: bool,
    principal: str | None = None,
    signature_version: int | None = None,
    auth_type: str | None = None,
    tls_version: str | None = None,
) -> dict[str, Value]:
    """The condition keys of a request, named in lower case. ``principal`` is the signer's
    canonical id (None: anonymous); ``auth_type`` S3's REST-HEADER, REST-QUERY-STRING or POST."""
    context: dict[str, Value] = {"aws:securetransport": "true" if secure else "false"}
    if source_ip:
        context["aws:sourceip"] = source_ip
    for header, key in (("Referer", "aws:referer"), ("User-Agent", "aws:useragent")):
        value = headers.get(header)
        if value is not None:
            context[key] = value
    if listing:
        for name in ("prefix", "delimiter", "max-keys"):
            if name in query:
                context[f"s3:{name}"] = query[name]
    for header in HEADER_KEYS:
        value = headers.get(header)
        if value is not None:
            context[f"s3:{header}"] = value
    tagging = headers.get("x-amz-tagging")
    if tagging is not None:
        tags = parse_qsl(tagging, keep_blank_values=True)
        context["s3:requestobjecttagkeys"] = tuple(k for k, _ in tags)
        for k, v in tags:
            context[TAG_PREFIX + k] = v
    if tls_version is not None:
        context["s3:tlsversion"] = tls_version
    # Every s3serve user is the root of an account of its own: AWS's aws:PrincipalType "Account",
    # and its aws:userid is the account's id, for which the canonical id stands in here.
    if principal is None:
        context["aws:principaltype"] = "Anonymous"
        context["aws:userid"] = "anonymous"
    else:
        context["aws:principaltype"] = "Account"
        context["aws:userid"] = principal
        if signature_version is not None:
            context["s3:signatureversion"] = "AWS4-HMAC-SHA256" if signature_version == 4 else "AWS"
        if auth_type is not None:
            context["s3:authtype"] = auth_type
    return context
