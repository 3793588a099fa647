"""PostObject (browser form uploads): the form's signature and its POST policy.

Pure functions over the form fields (no aiohttp here), so unit tests drive them directly:
``authenticate`` checks the SigV4 (``x-amz-signature``) or SigV2 (``signature``) signature of the
base64 policy text, ``parse_policy`` reads the policy document, and ``check_policy`` holds the
form against it and returns the size range the file must fall in, which only the upload itself
can check, as it streams.

Field names, in the form and in conditions, are case-insensitive; values are not. Codes and
messages are the ones S3 answers with, which differ from AWS's error table in places (a failed
condition is 403 AccessDenied on the wire, not the table's 400 InvalidPolicyDocument).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from s3serve import errors, sigv2
from s3serve.sigv4 import (
    ALGORITHM,
    UNSIGNED_PAYLOAD,
    AuthResult,
    Lookup,
    _parse_credential,
    _v4_result,
    lookup_user,
    parse_amz_date,
    sign,
    signatures_equal,
    signing_key,
)

FILENAME_VARIABLE = "${filename}"

# The form fields that authenticate a request: (lower-case name, the name S3's errors give it), in
# the order S3 reports the first one missing.
V4_FIELDS = (
    ("x-amz-algorithm", "X-Amz-Algorithm"),
    ("x-amz-credential", "X-Amz-Credential"),
    ("x-amz-date", "X-Amz-Date"),
    ("x-amz-signature", "X-Amz-Signature"),
)
V2_FIELDS = (("awsaccesskeyid", "AWSAccessKeyId"), ("signature", "Signature"))

# Fields no condition needs to mention: the signature itself, the policy, the file, and the ones
# a toolkit adds that the page author marks as ignorable. The SigV2 documentation adds the access key.
_EXEMPT = frozenset({"policy", "file", "x-amz-signature", "signature", "awsaccesskeyid"})
_IGNORED_PREFIX = "x-ignore-"

_OPERATIONS = ("eq", "starts-with", "content-length-range")
# ASCII digits only: \d alone also takes other scripts' digits, which int() reads.
_EXPIRATION = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?Z", re.ASCII)
_INTEGER = re.compile(r"-?\d{1,19}", re.ASCII)


@dataclass
class Fields:
    """The form fields that came before the file, by lower-case name.

    A name sent more than once has its values joined with ',' (the SigV2 documentation has the
    policy match "Ninja,Stallman" for two x-amz-meta-tag fields), and keeps its first spelling
    for error messages."""

    values: dict[str, str] = field(default_factory=dict)
    spelled: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Fields:
        fields = cls()
        for name, value in pairs:
            lower = name.lower()
            if lower in fields.values:
                fields.values[lower] += "," + value
            else:
                fields.values[lower] = value
                fields.spelled[lower] = name
        return fields

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def expand_filename(self, filename: str | None) -> None:
        """Replace ``${filename}`` in every value with the uploaded file's name, without any
        directory a browser sent with it. A file part with no filename parameter leaves the
        variable as it is, as S3 does; an empty filename empties it."""
        if filename is None:
            return
        base = re.split(r"[/\\]", filename)[-1]
        for name, value in self.values.items():
            if FILENAME_VARIABLE in value:
                self.values[name] = value.replace(FILENAME_VARIABLE, base)


# -- authentication ----------------------------------------------------------------------------


def missing_field(name: str) -> errors.S3Error:
    # Two spaces after the first sentence, as S3 writes it.
    return errors.InvalidArgument(
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields.",
        ArgumentName=name,
        ArgumentValue="",
    )


def _require(fields: Fields, names: tuple[tuple[str, str], ...]) -> list[str]:
    values = []
    for lower, shown in names:
        value = fields.get(lower)
        if value is None:
            raise missing_field(shown)
        values.append(value)
    return values


def authenticate(fields: Fields, lookup: Lookup) -> AuthResult | None:
    """The user who signed the form's policy; None for an anonymous form (one without a policy,
    which S3 lets through only to a publicly writable bucket). Raises InvalidArgument for a
    signature half given, InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied for a policy
    nobody signed."""
    policy = fields.get("policy")
    if not policy:
        return None
    if any(fields.get(lower) is not None for lower, _ in V4_FIELDS):
        algorithm, credential, amz_date, signature = _require(fields, V4_FIELDS)
        return _verify_v4(policy, algorithm, credential, amz_date, signature, lookup)
    if any(fields.get(lower) is not None for lower, _ in V2_FIELDS):
        access_key, signature = _require(fields, V2_FIELDS)
        return _verify_v2(policy, access_key, signature, lookup)
    raise errors.AccessDenied()


def _mismatch(access_key: str, policy: str, provided: str) -> errors.S3Error:
    # What was signed is the policy field exactly as sent.
    return errors.SignatureDoesNotMatch(
        AWSAccessKeyId=access_key,
        StringToSign=policy,
        SignatureProvided=provided,
        StringToSignBytes=" ".join(f"{b:02x}" for b in policy.encode("utf-8")),
    )


def _verify_v4(
    policy: str, algorithm: str, credential: str, amz_date: str, provided: str, lookup: Lookup
) -> AuthResult:
    def fail(message: str) -> errors.S3Error:
        return errors.InvalidArgument(message, ArgumentName="X-Amz-Credential", ArgumentValue=credential)

    if algorithm != ALGORITHM:
        raise errors.InvalidArgument(
            f'X-Amz-Algorithm only supports "{ALGORITHM}"', ArgumentName="X-Amz-Algorithm", ArgumentValue=algorithm
        )
    if credential.split("/", 1)[0] == "":
        raise fail("a non-empty Access Key (AKID) must be provided in the credential.")
    cred = _parse_credential(credential, fail)
    if parse_amz_date(amz_date) is None:
        # S3's wording, spelling included.
        raise errors.InvalidArgument(
            "X-Amz-Date must be formated via ISO8601 Long format", ArgumentName="X-Amz-Date", ArgumentValue=amz_date
        )
    user = lookup_user(lookup, cred.access_key)
    # Any region is accepted, as for every other request (see sigv4's leniency note).
    key = signing_key(user.secret_key, cred.date, cred.region)
    if not signatures_equal(sign(key, policy), provided):
        raise _mismatch(cred.access_key, policy, provided)
    return _v4_result(user, cred, key, amz_date, provided, UNSIGNED_PAYLOAD, presigned=False)


def _verify_v2(policy: str, access_key: str, provided: str, lookup: Lookup) -> AuthResult:
    user = lookup_user(lookup, access_key)
    if not hmac.compare_digest(sigv2.sign(user.secret_key, policy).encode(), provided.encode("utf-8", "replace")):
        raise _mismatch(access_key, policy, provided)
    return AuthResult(user=user, version=2, presigned=False, content_sha256=UNSIGNED_PAYLOAD, access_key=access_key)


# -- the policy document -----------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    operation: str  # one of _OPERATIONS
    first: object  # "$field" for eq / starts-with, the lower bound for content-length-range
    second: object  # the value or prefix, or the upper bound
    shown: str  # the condition as S3 prints it when it fails

    @property
    def field(self) -> str | None:
        """The lower-case form field an eq / starts-with condition is about; None when its name
        lacks the '$' (S3 then fails the condition rather than the policy)."""
        if isinstance(self.first, str) and self.first.startswith("$"):
            return self.first[1:].lower()
        return None


@dataclass(frozen=True)
class Policy:
    expiration: float  # epoch seconds
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class SizeRange:
    low: int
    high: int  # both inclusive


def _invalid(detail: str) -> errors.S3Error:
    return errors.InvalidPolicyDocument(f"Invalid Policy: {detail}")


def _no_constants(name: str) -> object:
    raise ValueError(name)  # NaN / Infinity are not JSON


def parse_policy(encoded: str) -> Policy:
    """The base64 policy field -> Policy; InvalidPolicyDocument for anything S3 would refuse."""
    try:
        # Some encoders wrap base64 at 60 or 76 columns; the signature covered the text as sent.
        raw = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("invalid Base64 encoding.") from None
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep
        raise _invalid("Invalid JSON.") from None
    if not isinstance(doc, dict):
        raise _invalid("Invalid JSON.")
    # Member names are case-sensitive: "EXPIRATION" is an unknown member, and S3 says so first.
    for name in doc:
        if name not in ("expiration", "conditions"):
            raise _invalid(f"Unexpected: '{name.lower()}'")
    if "expiration" not in doc:
        raise _invalid("Policy missing expiration.")
    expiration = _parse_expiration(doc["expiration"])
    if "conditions" not in doc:
        raise _invalid("Policy missing conditions.")
    conditions = doc["conditions"]
    if not isinstance(conditions, list):
        raise _invalid("Invalid 'conditions' value: must be a List.")
    return Policy(expiration, tuple(_condition(item) for item in conditions))


def _parse_expiration(value: object) -> float:
    """ISO 8601 in UTC with a 'Z' ('2015-12-30T12:00:00.000Z', or without the fraction as
    botocore writes it). S3 refuses an offset or a space for the 'T'."""
    m = _EXPIRATION.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise _invalid(f"Invalid 'expiration' value: '{value}'")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except ValueError:
        raise _invalid(f"Invalid 'expiration' value: '{value}'") from None
    return moment.timestamp() + (float(m.group(7)) if m.group(7) else 0.0)


def _shown(items: list[object]) -> str:
    return json.dumps(items, ensure_ascii=False)


def _condition(item: object) -> Condition:
    if isinstance(item, dict):
        if len(item) != 1:
            raise _invalid("Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.")
        ((name, value),) = item.items()
        if value is None:
            raise _invalid("Invalid JSON.")  # S3's answer to a null, where a number gets the next one
        if not isinstance(value, str):
            raise _invalid("Invalid Simple-Condition: value must be a string.")
        # S3 reports a failed simple condition as the eq array it stands for.
        return Condition("eq", "$" + name, value, _shown(["eq", "$" + name, value]))
    if isinstance(item, list):
        if not item or not isinstance(item[0], str):
            raise _invalid("Invalid Condition: missing operation identifier.")
        operation = item[0].lower()
        if operation not in _OPERATIONS:
            raise _invalid(f"Invalid Condition: unknown operation '{item[0]}'.")
        if len(item) != 3:
            raise _invalid(f"Invalid {item[0]}: wrong number of arguments.")
        first, second = item[1], item[2]
        if operation == "content-length-range":
            # Integers, or strings checked when the condition is (S3 then fails the condition);
            # a fraction is a JSON error to S3.
            if not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in (first, second)):
                raise _invalid("Invalid JSON.")
        elif not isinstance(first, str) or not isinstance(second, str):
            raise _invalid("Invalid JSON.")
        return Condition(operation, first, second, _shown(item))
    raise _invalid("Invalid condition test: must be a List or Object.")


# -- holding the form against the policy ---------------------------------------------------------


def _failed(condition: Condition) -> errors.S3Error:
    return errors.AccessDenied(f"Invalid according to Policy: Policy Condition failed: {condition.shown}")


def _bound(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return None


def _matches(operation: str, name: str, value: str, expected: str) -> bool:
    if operation == "eq":
        return value == expected
    if name == "content-type":
        # A comma-separated Content-Type is a list, and every item must start with the prefix.
        return all(item.strip().startswith(expected) for item in value.split(","))
    return value.startswith(expected)


def exempt(name: str) -> bool:
    """A lower-case field name no condition needs to cover."""
    return name in _EXEMPT or name.startswith(_IGNORED_PREFIX)


def check_policy(policy: Policy, fields: Fields, bucket: str, now: float) -> SizeRange | None:
    """Hold the form (``${filename}`` already expanded) against the policy. Raises AccessDenied
    for an expired policy, a failed condition or a field no condition covers; returns the file
    size range the policy allows (None for any size)."""
    if now > policy.expiration:
        raise errors.AccessDenied("Invalid according to Policy: Policy expired.")
    sizes: SizeRange | None = None
    covered: set[str] = set()
    for condition in policy.conditions:
        if condition.operation == "content-length-range":
            low, high = _bound(condition.first), _bound(condition.second)
            if low is None or high is None:
                raise _failed(condition)
            # Several ranges must all hold.
            sizes = SizeRange(low, high) if sizes is None else SizeRange(max(low, sizes.low), min(high, sizes.high))
            continue
        name = condition.field
        if name is None:
            raise _failed(condition)
        covered.add(name)
        # The bucket is the one the form was posted to; any 'bucket' field is only covered.
        value = bucket if name == "bucket" else fields.get(name)
        # A condition on a field the form lacks fails, even starts-with "" (S3 does so).
        if value is None or not _matches(condition.operation, name, value, str(condition.second)):
            raise _failed(condition)
    extra = [fields.spelled[name] for name in fields.values if name not in covered and not exempt(name)]
    if extra:
        raise errors.AccessDenied(f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")
    return sizes
