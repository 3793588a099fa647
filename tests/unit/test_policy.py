"""s3serve.policy: bucket policies evaluated for anonymous requests, S3's notion of public, the
public access block document."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from s3serve import policy
from s3serve.policy_conditions import Glob

BUCKET = "arn:aws:s3:::b"


def _policy(*statements: dict[str, Any]) -> policy.Policy:
    return policy.parse({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(**fields: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*", **fields}


def _deny(**fields: Any) -> dict[str, Any]:
    return {**_allow(**fields), "Effect": "Deny"}


def _req(action: str = "s3:GetObject", resource: str = "arn:aws:s3:::b/k", **context: str) -> policy.Request:
    defaults = {"aws:securetransport": "false", "aws:sourceip": "127.0.0.1"}
    return policy.Request(action, resource, {**defaults, **{k.replace("__", ":"): v for k, v in context.items()}})


def test_no_statement_applies_is_an_implicit_deny() -> None:
    assert policy.evaluate(_policy(_allow(Resource="arn:aws:s3:::other/*")), _req()) == "Default"
    assert policy.evaluate(_policy(_allow()), _req()) == "Allow"


@pytest.mark.parametrize(
    "principal,applies",
    [
        ("*", True),
        ({"AWS": "*"}, True),
        ({"AWS": ["arn:aws:iam::123456789012:root", "*"]}, True),
        ({"AWS": "arn:aws:iam::123456789012:root"}, False),
        ({"Service": "logging.s3.amazonaws.com"}, False),
        ({"CanonicalUser": "abc"}, False),
    ],
)
def test_principal_must_be_everyone(principal: object, applies: bool) -> None:
    assert policy.allows(_policy(_allow(Principal=principal)), _req()) is applies


@pytest.mark.parametrize(
    "action,allowed",
    [
        ("s3:GetObject", True),
        ("S3:getobject", True),  # action names are case-insensitive
        ("s3:Get*", True),
        ("s3:*", True),
        ("*", True),
        ("s3:GetObjec?", True),
        ("s3:GetObjectTagging", False),
        ("s3:Put*", False),
        (["s3:PutObject", "s3:GetObject"], True),
    ],
)
def test_action_wildcards(action: object, allowed: bool) -> None:
    assert policy.allows(_policy(_allow(Action=action)), _req()) is allowed


@pytest.mark.parametrize(
    "resource,key,allowed",
    [
        ("arn:aws:s3:::b/public/*", "public/x", True),
        ("arn:aws:s3:::b/public/*", "public/deep/er/x", True),  # * crosses slashes
        ("arn:aws:s3:::b/public/*", "private/y", False),
        ("arn:aws:s3:::b/public/*", "Public/x", False),  # resources are case-sensitive
        ("arn:aws:s3:::b/?.txt", "a.txt", True),
        ("arn:aws:s3:::b/?.txt", "ab.txt", False),
        ("arn:aws:s3:::b/a.txt", "a.txt", True),
        ("arn:aws:s3:::b/a.txt", "aXtxt", False),  # the dot is literal
        ("arn:aws:s3:::b*", "x", True),
        ("arn:aws:s3:::b", "x", False),
    ],
)
def test_resource_wildcards(resource: str, key: str, allowed: bool) -> None:
    assert policy.allows(_policy(_allow(Resource=resource)), _req(resource=f"arn:aws:s3:::b/{key}")) is allowed


def test_key_with_newline_matches_star() -> None:
    assert policy.allows(_policy(_allow()), _req(resource="arn:aws:s3:::b/a\nb"))


def test_explicit_deny_wins_in_any_order() -> None:
    deny = _deny(Resource="arn:aws:s3:::b/secret/*")
    for statements in ((_allow(), deny), (deny, _allow())):
        assert policy.evaluate(_policy(*statements), _req(resource="arn:aws:s3:::b/secret/x")) == "Deny"
        assert policy.evaluate(_policy(*statements), _req(resource="arn:aws:s3:::b/open/x")) == "Allow"


def test_deny_for_someone_else_does_not_apply() -> None:
    deny = _deny(Principal={"AWS": "arn:aws:iam::123456789012:root"})
    assert policy.allows(_policy(_allow(), deny), _req())


def test_not_action_and_not_resource() -> None:
    everything_but_delete = _allow(Action=None, NotAction="s3:DeleteObject")
    del everything_but_delete["Action"]
    p = _policy(everything_but_delete)
    assert policy.allows(p, _req("s3:GetObject"))
    assert policy.allows(p, _req("s3:PutObject"))
    assert not policy.allows(p, _req("s3:DeleteObject"))
    not_secret = _allow(NotResource="arn:aws:s3:::b/secret/*")
    del not_secret["Resource"]
    p = _policy(not_secret)
    assert policy.allows(p, _req(resource="arn:aws:s3:::b/open"))
    assert not policy.allows(p, _req(resource="arn:aws:s3:::b/secret/x"))
    deny_all_but_get = {"Effect": "Deny", "Principal": "*", "NotAction": "s3:GetObject", "Resource": "*"}
    p = _policy(_allow(Action="s3:*"), deny_all_but_get)
    assert policy.allows(p, _req("s3:GetObject"))
    assert policy.evaluate(p, _req("s3:PutObject")) == "Deny"


@pytest.mark.parametrize(
    "statement",
    [
        "not an object",
        {"Effect": "Allow", "Principal": "*", "Resource": "arn:aws:s3:::b/*"},  # no Action
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"},  # no Resource
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},  # no Principal
        _allow(Action=42),
        _allow(Action=[]),
        _allow(Principal={}),
        _allow(Principal={"AWS": 7}),
        _allow(NotAction="s3:PutObject"),  # both Action and NotAction
        {**_allow(), "Effect": "allow"},  # Effect is case-sensitive
        {**_allow(), "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}},
    ],
)
def test_malformed_statement_never_grants(statement: object) -> None:
    assert not policy.allows(policy.parse({"Statement": [statement]}), _req())


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Deny", "Principal": "*", "Resource": "arn:aws:s3:::b/*"},  # no Action: may cover it
        {"Effect": "Deny", "Principal": {"AWS": 7}, "Action": "s3:*", "Resource": "*"},
        {"Effect": "Maybe", "Principal": "*", "Action": "s3:*", "Resource": "*"},
    ],
)
def test_unreadable_deny_denies(statement: dict[str, Any]) -> None:
    assert policy.evaluate(_policy(_allow(), statement), _req()) == "Deny"


def test_unreadable_deny_that_cannot_cover_the_request_is_ignored() -> None:
    # Its Action is readable and does not match: whatever else it says, it is not about GetObject.
    statement = {"Effect": "Deny", "Principal": {"AWS": 7}, "Action": "s3:PutObject", "Resource": "*"}
    assert policy.allows(_policy(_allow(), statement), _req())


def test_statement_may_be_a_single_object() -> None:
    assert policy.allows(policy.parse({"Statement": _allow()}), _req())


def test_load_rejects_what_is_not_a_json_object() -> None:
    with pytest.raises(ValueError):
        policy.load(b"[1]")
    with pytest.raises(ValueError):
        policy.load(b"{")
    assert policy.allows(policy.load(json.dumps({"Statement": [_allow()]}).encode()), _req())


# -- conditions -----------------------------------------------------------------------------------


def _cond(condition: object, **context: str) -> bool:
    return policy.allows(_policy(_allow(Condition=condition)), _req(**context))


def test_secure_transport() -> None:
    https = {"Bool": {"aws:SecureTransport": "true"}}
    assert _cond(https, aws__securetransport="true")
    assert not _cond(https, aws__securetransport="false")
    assert _cond({"Bool": {"aws:SecureTransport": True}}, aws__securetransport="true")
    assert _cond({"Bool": {"AWS:SECURETRANSPORT": "TRUE"}}, aws__securetransport="true")  # keys are case-insensitive
    deny_plain = _deny(Action="s3:*", Condition={"Bool": {"aws:SecureTransport": "false"}})
    assert policy.evaluate(_policy(_allow(), deny_plain), _req(aws__securetransport="false")) == "Deny"
    assert policy.evaluate(_policy(_allow(), deny_plain), _req(aws__securetransport="true")) == "Allow"


@pytest.mark.parametrize(
    "operator,cidrs,ip,allowed",
    [
        ("IpAddress", "127.0.0.1/32", "127.0.0.1", True),
        ("IpAddress", "10.0.0.0/8", "127.0.0.1", False),
        ("IpAddress", ["10.0.0.0/8", "127.0.0.0/8"], "127.0.0.5", True),
        ("IpAddress", "127.0.0.1", "127.0.0.1", True),  # a bare address is a /32
        ("IpAddress", "::1/128", "::1", True),
        ("IpAddress", "127.0.0.1/32", "::ffff:127.0.0.1", True),  # IPv4-mapped
        ("IpAddress", "2001:db8::/32", "127.0.0.1", False),
        ("NotIpAddress", "10.0.0.0/8", "127.0.0.1", True),
        ("NotIpAddress", "127.0.0.0/8", "127.0.0.1", False),
        ("IpAddress", "not-an-address", "127.0.0.1", False),
    ],
)
def test_source_ip(operator: str, cidrs: object, ip: str, allowed: bool) -> None:
    assert _cond({operator: {"aws:SourceIp": cidrs}}, aws__sourceip=ip) is allowed


def test_malformed_cidr_in_a_deny_denies() -> None:
    deny = _deny(Condition={"NotIpAddress": {"aws:SourceIp": "bogus"}})
    assert policy.evaluate(_policy(_allow(), deny), _req()) == "Deny"


@pytest.mark.parametrize(
    "operator,wanted,actual,allowed",
    [
        ("StringEquals", "https://example.com/", "https://example.com/", True),
        ("StringEquals", "https://example.com/", "https://EXAMPLE.com/", False),
        ("StringEqualsIgnoreCase", "https://example.com/", "https://EXAMPLE.com/", True),
        ("StringNotEquals", "https://evil.example/", "https://example.com/", True),
        ("StringNotEquals", ["https://a/", "https://example.com/"], "https://example.com/", False),
        ("StringLike", "https://example.com/*", "https://example.com/page?x=1", True),
        ("StringLike", "https://*.example.com/*", "https://example.com/page", False),
        ("StringLike", "https://example.com/?", "https://example.com/a", True),
        ("StringNotLike", "https://evil.*", "https://example.com/", True),
        ("StringNotLike", "https://example.*", "https://example.com/", False),
        ("StringNotEqualsIgnoreCase", "HTTPS://EXAMPLE.COM/", "https://example.com/", False),
    ],
)
def test_string_operators_on_referer(operator: str, wanted: object, actual: str, allowed: bool) -> None:
    assert _cond({operator: {"aws:Referer": wanted}}, aws__referer=actual) is allowed


def test_missing_key_matches_only_negated_operators_and_if_exists() -> None:
    assert not _cond({"StringEquals": {"aws:Referer": "x"}})
    assert not _cond({"StringLike": {"aws:UserAgent": "*"}})
    assert _cond({"StringNotEquals": {"aws:Referer": "x"}})
    assert _cond({"StringEqualsIfExists": {"aws:Referer": "x"}})
    assert not _cond({"StringEqualsIfExists": {"aws:Referer": "x"}}, aws__referer="y")
    assert not _cond({"Bool": {"aws:SecureTransport": "true"}}, aws__securetransport="false")


def test_prefix_and_delimiter() -> None:
    listing = _allow(Action="s3:ListBucket", Resource=BUCKET, Condition={"StringLike": {"s3:prefix": ["public/*", ""]}})
    p = _policy(listing)
    assert policy.allows(p, _req("s3:ListBucket", BUCKET, s3__prefix="public/a"))
    assert policy.allows(p, _req("s3:ListBucket", BUCKET, s3__prefix=""))
    assert not policy.allows(p, _req("s3:ListBucket", BUCKET, s3__prefix="private/"))
    assert not policy.allows(p, _req("s3:ListBucket", BUCKET))  # no prefix at all
    delimited = _policy(_allow(Action="s3:ListBucket", Resource=BUCKET, Condition={"StringEquals": {"s3:delimiter": "/"}}))
    assert policy.allows(delimited, _req("s3:ListBucket", BUCKET, s3__delimiter="/"))
    assert not policy.allows(delimited, _req("s3:ListBucket", BUCKET))


def test_conditions_are_anded() -> None:
    both = {"Bool": {"aws:SecureTransport": "true"}, "IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}
    assert _cond(both, aws__securetransport="true")
    assert not _cond(both, aws__securetransport="false")
    assert not _cond(both, aws__securetransport="true", aws__sourceip="10.1.1.1")


@pytest.mark.parametrize(
    "condition",
    [
        {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},  # unsupported operator
        {"StringEquals": {"aws:SourceVpce": "vpce-1"}},  # unsupported key
        {"StringEquals": {"s3:x-amz-grant-read": "id=x"}},  # a header s3serve keeps no key for
        {"ForAnyValue:NumericEquals": {"s3:max-keys": "10"}},  # no key holds a set of numbers
        {"StringLike": {"aws:Referer": "${aws:username}"}},  # policy variables
        {"StringEquals": {"aws:Referer": 5}},
        {"StringEquals": {"aws:Referer": []}},
        {"StringEquals": {}},
        {"StringEquals": "aws:Referer"},
        {"Bool": {"aws:SecureTransport": "yes"}},
        "not a block",
        {"NumericLessThan": {"s3:max-keys": "ten"}},
        {"NullIfExists": {"aws:Referer": "true"}},
    ],
)
def test_unsupported_condition_never_grants_and_always_denies(condition: object) -> None:
    assert not _cond(condition, aws__referer="x")
    deny = _deny(Condition=condition)
    assert policy.evaluate(_policy(_allow(), deny), _req(aws__referer="x")) == "Deny"


def test_unsupported_condition_beside_one_that_fails_does_not_deny() -> None:
    # The statement's conditions are ANDed: one that certainly fails settles it.
    condition = {"Bool": {"aws:SecureTransport": "false"}, "DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}
    assert policy.evaluate(_policy(_allow(), _deny(Condition=condition)), _req(aws__securetransport="true")) == "Allow"


# -- S3's notion of public ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement,public",
    [
        (_allow(), True),
        (_allow(Principal={"AWS": "*"}), True),
        (_allow(Principal={"AWS": "arn:aws:iam::123456789012:root"}), False),
        (_deny(), False),
        (_allow(Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}), False),
        (_allow(Condition={"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}), True),
        (_allow(Condition={"NotIpAddress": {"aws:SourceIp": "192.0.2.0/24"}}), True),
        (_allow(Condition={"StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}), False),
        (_allow(Condition={"StringLike": {"aws:SourceVpce": "vpce-*"}}), True),
        (_allow(Condition={"StringEquals": {"aws:SourceAccount": "123456789012"}}), False),
        (_allow(Condition={"Bool": {"aws:SecureTransport": "true"}}), True),
        (_allow(Condition={"StringLike": {"aws:Referer": "https://example.com/*"}}), True),
        ({**_allow(), "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}}, True),
    ],
)
def test_is_public(statement: dict[str, Any], public: bool) -> None:
    assert policy.is_public({"Statement": [statement]}) is public
    assert policy.parse({"Statement": [statement]}).public is public


# -- public access block --------------------------------------------------------------------------


def _block_document(**flags: bool) -> bytes:
    names = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    body = "".join(f"<{n}>{'true' if flags.get(n) else 'false'}</{n}>" for n in names)
    return f'<?xml version="1.0" encoding="UTF-8"?><PublicAccessBlockConfiguration xmlns="x">{body}</PublicAccessBlockConfiguration>'.encode()


def test_public_access_block_document() -> None:
    assert policy.public_access_block(_block_document()) == policy.PublicAccessBlock(False, False)
    assert policy.public_access_block(_block_document(BlockPublicPolicy=True)) == policy.PublicAccessBlock(True, False)
    assert policy.public_access_block(_block_document(RestrictPublicBuckets=True)) == policy.PublicAccessBlock(False, True)
    assert policy.public_access_block(b"") == policy.PublicAccessBlock(False, False)  # deleted
    assert policy.DEFAULT_BLOCK == policy.PublicAccessBlock(True, True)


@pytest.mark.parametrize(
    "damaged",
    [b"garbage", b"<PublicAccessBlockConfiguration>", _block_document()[:60], b"<BlockPublicPolicy>maybe</BlockPublicPolicy>"],
)
def test_a_damaged_public_access_block_blocks(damaged: bytes) -> None:
    """A document that names no flag false (damaged on disk, cut short) blocks: a bucket is never
    opened by a file s3serve cannot read."""
    assert policy.public_access_block(damaged) == policy.PublicAccessBlock(True, True)


def test_request_context() -> None:
    context = policy.request_context(
        secure=True,
        source_ip="127.0.0.1",
        headers={"Referer": "https://example.com/", "User-Agent": "curl/8"},
        query={"prefix": "p/", "delimiter": "/", "max-keys": "5"},
        listing=True,
    )
    assert context == {
        "aws:securetransport": "true",
        "aws:sourceip": "127.0.0.1",
        "aws:referer": "https://example.com/",
        "aws:useragent": "curl/8",
        "s3:prefix": "p/",
        "s3:delimiter": "/",
        "s3:max-keys": "5",
        "aws:principaltype": "Anonymous",
        "aws:userid": "anonymous",
    }
    assert "s3:prefix" not in policy.request_context(secure=False, source_ip=None, headers={}, query={"prefix": "p"}, listing=False)


# -- attacks --------------------------------------------------------------------------------------


class _CountedScans:
    """A segment's compiled expression that counts the scans asked of it."""

    def __init__(self, expression: re.Pattern[str], scans: list[int]) -> None:
        self._expression, self._scans = expression, scans

    def match(self, *args: Any) -> re.Match[str] | None:
        self._scans[0] += 1
        return self._expression.match(*args)

    def search(self, *args: Any) -> re.Match[str] | None:
        self._scans[0] += 1
        return self._expression.search(*args)

    def fullmatch(self, *args: Any) -> re.Match[str] | None:
        self._scans[0] += 1
        return self._expression.fullmatch(*args)


def test_wildcards_do_not_backtrack_on_a_hostile_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Resource with several stars against a key of many slashes: matched as one regular
    expression (a ``.*`` per star) this took seconds of the event loop per anonymous request at
    200 bytes, hours at 1,024 (O(n^stars)). The matcher scans for each segment between the stars
    at most once, and a segment is a run of literals and ``?`` (a fixed length, nothing to repeat
    or backtrack into), so the work is linear in the text whatever it holds. Counted, not timed."""
    matched: list[tuple[int, int, str]] = []  # (segments, scans, text) of every Glob match
    real = Glob.fullmatch

    def counting(self: Glob, value: str) -> bool:
        segments, scans = self._segments, [0]
        self._segments = [(_CountedScans(expression, scans), length) for expression, length in segments]
        try:
            return real(self, value)
        finally:
            self._segments = segments
            matched.append((len(segments), scans[0], value))

    monkeypatch.setattr(Glob, "fullmatch", counting)
    statement = _allow(Resource="arn:aws:s3:::b/*/*/*/*/*.jpg")
    referer = _allow(Condition={"StringLike": {"aws:Referer": "*a*a*a*a*b"}})
    # A key may be 1,024 bytes, a header 8 KiB.
    for slashes, a_run in ((200, 200), (1024, 8192)):
        key = "/" * slashes
        assert policy.evaluate(_policy(statement), _req(resource="arn:aws:s3:::b/" + key)) == "Default"
        assert policy.evaluate(_policy(referer), _req(aws__referer="a" * a_run)) == "Default"
    hostile = [(segments, scans) for segments, scans, text in matched if len(text) >= 200]
    assert len(hostile) == 4, "every hostile text went through the matcher"
    for segments, scans in hostile:
        assert segments == 6 and 0 < scans <= segments, (segments, scans)
    for expression, _ in policy._pattern("b/*/*/*/*/*.jpg", ignore_case=False)._segments:
        assert not set(expression.pattern) & set("*+{|"), expression.pattern


@pytest.mark.parametrize(
    "pattern,value,matches",
    [
        ("*", "", True),
        ("a*", "a", True),
        ("*a", "ba", True),
        ("a*a", "a", False),
        ("a*a", "aa", True),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "axxcyyb", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("*.jpg", "x.jpg.png", False),
        ("*/*/*", "a/b/c", True),
        ("*/*/*", "a/b", False),
        ("a.b", "axb", False),  # regex metacharacters are literal
        ("a[bc]*", "ab", False),
        ("?*?", "ab", True),
        ("?*?", "a", False),
    ],
)
def test_wildcard_semantics(pattern: str, value: str, matches: bool) -> None:
    assert bool(policy._pattern(pattern, ignore_case=False).fullmatch(value)) is matches


@pytest.mark.parametrize("cidr", ["0.0.0.0/00", "0.0.0.0/0.0.0.0", "::/000", " ::/0 "])
def test_an_address_condition_for_the_whole_internet_is_public(cidr: str) -> None:
    """RestrictPublicBuckets and BlockPublicPolicy must not take a /0 written differently (which
    the evaluator parses as the whole internet and grants to everyone) for a fixed source."""
    document = {"Statement": [_allow(Condition={"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", cidr]}})]}
    assert policy.is_public(document)
    assert not policy.is_public({"Statement": [_allow(Condition={"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]}})]})
