"""s3serve.policy_conditions and the principals of s3serve.policy: what a signed request's
statement is matched with (Null, Numeric*, ForAnyValue/ForAllValues, the s3: keys of a request,
CanonicalUser and NotPrincipal)."""

from __future__ import annotations

from typing import Any

import pytest

from s3serve import policy
from s3serve.policy_conditions import conditions_hold, request_context

ALICE, BOB = "a" * 64, "b" * 64


def _cond(condition: object, **context: Any) -> bool | None:
    return conditions_hold(condition, {k.replace("__", ":").replace("_", "-").lower(): v for k, v in context.items()})


@pytest.mark.parametrize(
    "value,present,holds",
    [("true", False, True), ("true", True, False), ("false", True, True), ("false", False, False), (True, False, True)],
)
def test_null(value: object, present: bool, holds: bool) -> None:
    context = {"s3__x_amz_server_side_encryption": "AES256"} if present else {}
    assert _cond({"Null": {"s3:x-amz-server-side-encryption": value}}, **context) is holds


def test_null_with_a_value_it_cannot_read() -> None:
    assert _cond({"Null": {"s3:x-amz-acl": "maybe"}}) is None


@pytest.mark.parametrize(
    "operator,wanted,actual,holds",
    [
        ("NumericEquals", "10", "10", True),
        ("NumericEquals", 10, "10.0", True),
        ("NumericNotEquals", "10", "10", False),
        ("NumericNotEquals", ["10", "20"], "30", True),
        ("NumericLessThan", "10", "9", True),
        ("NumericLessThan", "10", "10", False),
        ("NumericLessThanEquals", "10", "10", True),
        ("NumericGreaterThan", "100", "1000", True),
        ("NumericGreaterThanEquals", "1.2", "1.3", True),
        ("NumericGreaterThanEquals", "1.2", "1.0", False),
        ("NumericLessThan", "10", "not a number", False),
    ],
)
def test_numeric(operator: str, wanted: object, actual: str, holds: bool) -> None:
    assert _cond({operator: {"s3:max-keys": wanted}}, s3__max_keys=actual) is holds


def test_numeric_on_an_absent_key() -> None:
    assert _cond({"NumericLessThan": {"s3:max-keys": "10"}}) is False
    assert _cond({"NumericNotEquals": {"s3:max-keys": "10"}}) is True
    assert _cond({"NumericLessThanIfExists": {"s3:max-keys": "10"}}) is True
    assert _cond({"NumericLessThan": {"s3:max-keys": "ten"}}) is None


def test_tls_version_is_numeric() -> None:
    condition = {"NumericLessThan": {"s3:TlsVersion": 1.2}}
    assert _cond(condition, s3__tlsversion="1.3") is False
    assert _cond(condition, s3__tlsversion="1.1") is True
    assert _cond(condition) is False  # plain http: no TLS version at all


@pytest.mark.parametrize(
    "operator,tags,holds",
    [
        ("ForAnyValue:StringEquals", ("a", "z"), True),
        ("ForAnyValue:StringEquals", ("z",), False),
        ("ForAnyValue:StringEquals", None, False),
        ("ForAllValues:StringEquals", ("a", "b"), True),
        ("ForAllValues:StringEquals", ("a", "z"), False),
        ("ForAllValues:StringEquals", None, True),  # vacuously: no tag at all
        ("ForAnyValue:StringNotEquals", ("a", "z"), True),
        ("ForAnyValue:StringNotEquals", ("a",), False),
        ("ForAllValues:StringLike", ("ab", "ac"), True),
    ],
)
def test_set_operators(operator: str, tags: tuple[str, ...] | None, holds: bool) -> None:
    pattern = ["a*"] if "Like" in operator else ["a", "b"]
    context = {} if tags is None else {"s3:requestobjecttagkeys": tags}
    assert conditions_hold({operator: {"s3:RequestObjectTagKeys": pattern}}, context) is holds


def test_a_set_needs_a_set_operator() -> None:
    assert conditions_hold({"StringEquals": {"s3:RequestObjectTagKeys": "a"}}, {"s3:requestobjecttagkeys": ("a",)}) is None


def test_request_context_of_a_signed_request() -> None:
    context = request_context(
        secure=True,
        source_ip="127.0.0.1",
        headers={
            "x-amz-server-side-encryption": "AES256",
            "x-amz-acl": "private",
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
            "x-amz-storage-class": "STANDARD_IA",
            "x-amz-tagging": "project=blue&Owner=me%20too",
        },
        query={},
        listing=False,
        principal=ALICE,
        signature_version=4,
        auth_type="REST-QUERY-STRING",
        tls_version="1.3",
    )
    assert context == {
        "aws:securetransport": "true",
        "aws:sourceip": "127.0.0.1",
        "s3:x-amz-server-side-encryption": "AES256",
        "s3:x-amz-acl": "private",
        "s3:x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "s3:x-amz-storage-class": "STANDARD_IA",
        "s3:requestobjecttagkeys": ("project", "Owner"),
        "s3:requestobjecttag/project": "blue",
        "s3:requestobjecttag/Owner": "me too",
        "s3:tlsversion": "1.3",
        "aws:principaltype": "Account",
        "aws:userid": ALICE,
        "s3:signatureversion": "AWS4-HMAC-SHA256",
        "s3:authtype": "REST-QUERY-STRING",
    }
    assert conditions_hold({"StringEquals": {"S3:RequestObjectTag/Owner": "me too"}}, context) is True
    assert conditions_hold({"StringEquals": {"s3:RequestObjectTag/owner": "me too"}}, context) is False  # tag keys keep their case
    # aws:username names an IAM user: an account's root (every s3serve user) has none.
    assert conditions_hold({"Null": {"aws:username": "true"}}, context) is True
    sigv2 = request_context(secure=False, source_ip=None, headers={}, query={}, listing=False, principal=BOB, signature_version=2)
    assert sigv2["s3:signatureversion"] == "AWS" and "s3:tlsversion" not in sigv2


# -- principals -----------------------------------------------------------------------------------


def _req(principal: str | None, action: str = "s3:GetObject") -> policy.Request:
    return policy.Request(action, "arn:aws:s3:::b/k", {"aws:securetransport": "false"}, principal)


def _statement(**fields: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": {"CanonicalUser": BOB}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*", **fields}


@pytest.mark.parametrize(
    "principal,anonymous,alice,bob",
    [
        ({"CanonicalUser": BOB}, False, False, True),
        ({"CanonicalUser": [ALICE, BOB]}, False, True, True),
        ({"AWS": "*"}, True, True, True),
        ("*", True, True, True),
        ({"AWS": "arn:aws:iam::123456789012:root"}, False, False, False),
        ({"AWS": "*", "CanonicalUser": BOB}, True, True, True),
        ({"Service": "logging.s3.amazonaws.com"}, False, False, False),
    ],
)
def test_who_a_principal_names(principal: object, anonymous: bool, alice: bool, bob: bool) -> None:
    parsed = policy.parse({"Statement": [_statement(Principal=principal)]})
    assert [policy.allows(parsed, _req(p)) for p in (None, ALICE, BOB)] == [anonymous, alice, bob]


def test_not_principal_denies_everyone_else_and_never_grants() -> None:
    deny = {**_statement(), "Effect": "Deny", "Principal": None, "NotPrincipal": {"CanonicalUser": ALICE}}
    del deny["Principal"]
    parsed = policy.parse({"Statement": [_statement(Principal="*"), deny]})
    assert [policy.evaluate(parsed, _req(p)) for p in (None, ALICE, BOB)] == ["Deny", "Allow", "Deny"]
    allow = {**_statement(), "NotPrincipal": {"CanonicalUser": ALICE}}
    del allow["Principal"]
    assert policy.evaluate(policy.parse({"Statement": [allow]}), _req(BOB)) == "Default"


def test_may_deny() -> None:
    assert not policy.parse({"Statement": [_statement()]}).may_deny
    assert policy.parse({"Statement": [_statement(), {**_statement(), "Effect": "Deny"}]}).may_deny
    assert policy.parse({"Statement": [{**_statement(), "Effect": "allow"}]}).may_deny  # unreadable: may


@pytest.mark.parametrize(
    "operation,action",
    [
        ("HeadObject", "s3:GetObject"),
        ("CopyObject", "s3:PutObject"),
        ("DeleteObjects", "s3:DeleteObject"),
        ("PutBucketCors", "s3:PutBucketCORS"),
        ("DeleteBucketCors", "s3:PutBucketCORS"),
        ("GetBucketLifecycleConfiguration", "s3:GetLifecycleConfiguration"),
        ("DeletePublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
        ("DeleteBucket", "s3:DeleteBucket"),
        ("GetBucketPolicyStatus", "s3:GetBucketPolicyStatus"),
        ("PutBucketTagging", "s3:PutBucketTagging"),
    ],
)
def test_actions(operation: str, action: str) -> None:
    assert policy.action(operation) == action


def test_may_deny_reads_no_condition() -> None:
    deny_put = {**_statement(Principal="*", Action="s3:PutObject"), "Effect": "Deny", "Condition": {"Null": {"s3:x-amz-acl": "true"}}}
    parsed = policy.parse({"Statement": [_statement(), deny_put]})
    assert not policy.may_deny(parsed, "s3:GetObject", "arn:aws:s3:::b/k", ALICE)
    assert policy.may_deny(parsed, "s3:PutObject", "arn:aws:s3:::b/k", ALICE)
    assert not policy.may_deny(parsed, "s3:PutObject", "arn:aws:s3:::other/k", ALICE)
    unreadable = {"Effect": "Deny", "Principal": "*", "Action": "s3:*"}  # no Resource: it may cover anything
    assert policy.may_deny(policy.parse({"Statement": [unreadable]}), "s3:GetObject", "arn:aws:s3:::b/k", ALICE)
