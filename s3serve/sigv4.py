"""Request authentication: AWS Signature Version 4 (header and presigned), dispatching to SigV2.

Pure functions over a ``RequestView`` (no aiohttp here), so the same code serves the app, the
unit tests, and any tool that wants to check a signature. Verifying the request *body* against
``x-amz-content-sha256`` or chunk signatures is payload.py's job; this module only hands it the
signing material (``AuthResult.signing_key`` and friends).

Leniency, on purpose: s3serve is a local server that many differently-configured clients point
at, so any region in the credential scope is accepted, and when the canonical request built the
way the specification says does not match, a well-known client deviation is tried before giving
up (the raw path as sent). A '+' in the query is a space, as S3 reads it: only that, never also a
literal plus, so the value a signature covers is the value the request is served with.
"""

from __future__ import annotations

import calendar
import email.utils
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, unquote_to_bytes

from s3serve import errors
from s3serve.config import User
from s3serve.signing import SERVICE, TERMINATOR, sign, signing_key

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z\Z")
_DATE8 = re.compile(r"\d{8}")
_EXPIRES = re.compile(r"-?\d{1,12}")
_CREDENTIAL_HELP = (
    'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
)


@dataclass
class RequestView:
    method: str
    raw_path: str  # path exactly as sent on the wire (percent-encoded), no query
    query: list[tuple[str, str]]  # query parameters decoded once, in wire order; valueless -> ""
    raw_query: str  # query string exactly as sent
    headers: Mapping[str, str]  # case-insensitive mapping (multidict.CIMultiDictProxy); values as sent
    vhost_bucket: str | None = None  # bucket taken from the Host header, for SigV2's canonical resource


@dataclass
class AuthResult:
    user: User
    version: int  # 2 or 4
    presigned: bool
    content_sha256: str  # x-amz-content-sha256 value (UNSIGNED-PAYLOAD for presigned/SigV2 when absent)
    # For STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER): what payload.py needs to check chunk signatures.
    signing_key: bytes | None = None
    scope: str | None = None  # "20130524/us-east-1/s3/aws4_request"
    amz_date: str | None = None  # "20130524T000000Z"
    seed_signature: str | None = None
    access_key: str = ""
    region: str | None = None  # region named in the credential scope (SigV4)
    # The signer, when a bucket policy granted its request on another user's bucket: ``user`` is
    # then the bucket's owner, whom the request runs as (what it writes is the owner's).
    requester: User | None = None

    @property
    def principal(self) -> User:
        """Who signed the request (the one a bucket policy is evaluated for)."""
        return self.requester or self.user


Lookup = Callable[[str], User | None]


# -- building blocks (public: the unit tests drive them with AWS's published vectors) --------


def uri_encode(data: str | bytes, safe: str = "") -> str:
    """SigV4 URI encoding: unreserved characters (A-Za-z0-9-._~) stay, every other byte is %XX."""
    return quote(data, safe=safe)


def canonical_uri(raw_path: str) -> str:
    """Decode the wire path once, re-encode per SigV4 with '/' kept. S3 does not normalise the
    path (no '.'/'..' resolution, no collapsing of '//'), so neither do we."""
    if not raw_path:
        return "/"
    if _PLAIN_PATH.fullmatch(raw_path):
        return raw_path  # nothing to decode or encode (most keys): skip two byte-wise passes
    return quote(unquote_to_bytes(raw_path), safe="/")


_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")


def uri_encode_path(text: str) -> str:
    """``uri_encode`` of a decoded path or key with '/' kept. A key of unreserved characters only
    (most) takes one C scan, not quote()'s encode, strip and decode: 0.23 vs 0.60 us."""
    return text if _PLAIN_PATH.fullmatch(text) else quote(text, safe="/")


def parse_query(raw_query: str, plus_is_space: bool = False) -> list[tuple[str, str]]:
    """Split a raw query string into (name, value) pairs, decoding each part exactly once."""
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if plus_is_space:
            name, value = name.replace("+", " "), value.replace("+", " ")
        pairs.append((unquote(name, errors="surrogateescape"), unquote(value, errors="surrogateescape")))
    return pairs


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _encode_component(text: str) -> str:
    # Most names and values (X-Amz-Date, list-type, 1000) need no encoding: skip quote() for them.
    if _UNRESERVED.fullmatch(text):
        return text
    # surrogateescape keeps bytes that were not valid UTF-8 in the wire query byte-exact.
    return quote(text.encode("utf-8", errors="surrogateescape"), safe="")


def canonical_query(params: Iterable[tuple[str, str]], exclude: str | None = None) -> str:
    """Re-encode decoded parameters per SigV4 and sort by encoded name, then encoded value."""
    encoded = sorted((_encode_component(k), _encode_component(v)) for k, v in params if k != exclude)
    return "&".join(f"{k}={v}" for k, v in encoded)


@functools.lru_cache(maxsize=4096)
def _canonical_raw(raw: str) -> str:
    # Encoded components repeat (credential scopes, signed-header lists, prefixes): decode and
    # re-encode each distinct one once.
    return _encode_component(unquote(raw.replace("+", " "), errors="surrogateescape"))


def canonical_query_raw(raw_query: str, exclude: str | None = None) -> str:
    """``canonical_query(parse_query(raw_query, plus_is_space=True), exclude)`` straight from the
    wire text: components already in canonical form (most of them) are used as they are. A '+'
    is a space, as S3 and the handlers (handlers.common.parse_query) read it, and nothing else:
    were a literal plus (signed '%2B') also taken, whoever holds a signed URL could turn any
    '%2B' into '+', and have a value served that the signature never covered."""
    encoded = []
    fullmatch = _UNRESERVED.fullmatch
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if not fullmatch(name):
            name = _canonical_raw(name)
        # exclude is a plain parameter name, so comparing canonical forms compares decoded names.
        if name == exclude:
            continue
        if not fullmatch(value):
            value = _canonical_raw(value)
        encoded.append((name, value))
    encoded.sort()
    return "&".join([f"{k}={v}" for k, v in encoded])


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [] if value is None else [value]


def joined_header(headers: Mapping[str, str], name: str) -> str | None:
    """A header as the body's checks read it: repeated, its values joined with ',' as the canonical
    request's header lines join them (RFC 9110 5.3), never the first alone with the others
    passed over (two Content-MD5 headers are one malformed digest, even two equal ones)."""
    values = _header_values(headers, name)
    if len(values) < 2:
        return values[0] if values else None
    return ",".join(values)


def canonical_headers(headers: Mapping[str, str], signed: list[str]) -> str:
    """One 'name:value\\n' line per signed header; repeated headers are joined with ',', each value
    trimmed and inner runs of whitespace collapsed to one space."""
    getall = getattr(headers, "getall", None)
    lines = []
    for name in signed:
        values = getall(name, ()) if getall is not None else _header_values(headers, name)
        if len(values) == 1:  # the common case, without a generator per header
            lines.append(f"{name}:{' '.join(values[0].split())}\n")
        else:
            lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


def canonical_request(
    method: str, uri: str, query: str, headers: Mapping[str, str], signed: list[str], payload_hash: str
) -> str:
    return "\n".join([method, uri, query, canonical_headers(headers, signed), ";".join(signed), payload_hash])


def string_to_sign(amz_date: str, scope: str, creq: str) -> str:
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode('utf-8')).hexdigest()}"


def signatures_equal(expected: str, provided: str) -> bool:
    return hmac.compare_digest(
        expected.encode("ascii", "replace"), provided.lower().encode("ascii", "replace")
    )


def authorization(
    access_key: str,
    key: bytes,
    amz_date: str,
    region: str,
    request: tuple[str, str, Iterable[tuple[str, str]]],
    headers: Mapping[str, str],
    payload_hash: str,
) -> str:
    """Client side (s3serve calling an upstream S3): the Authorization header for ``request``
    (method, path as sent, which is already SigV4-encoded, decoded query pairs), signing every
    header in ``headers`` (lower-case names, host and x-amz-date among them)."""
    method, uri, query = request
    signed = sorted(headers)
    scope = f"{amz_date[:8]}/{region}/{SERVICE}/{TERMINATOR}"
    creq = canonical_request(method, uri, canonical_query(query), headers, signed, payload_hash)
    signature = sign(key, string_to_sign(amz_date, scope, creq))
    return f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"


# -- dispatch --------------------------------------------------------------------------------


def authenticate(req: RequestView, lookup: Lookup, now: float | None = None) -> AuthResult | None:
    """None for an anonymous request; otherwise the verified user, or raises an S3Error."""
    now = time.time() if now is None else now
    # An empty Authorization header is none: S3 answers it as an anonymous request (403).
    authorization = req.headers.get("Authorization") or None
    params = dict(req.query)
    if authorization is not None:
        if "X-Amz-Algorithm" in params or ("Signature" in params and "AWSAccessKeyId" in params):
            raise errors.InvalidArgument(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
                "string parameter or the Authorization header should be specified",
                ArgumentName="Authorization",
                ArgumentValue=authorization,
            )
        scheme = authorization.split(" ", 1)[0]
        if scheme == ALGORITHM:
            return _verify_header_v4(req, authorization, lookup, now)
        if scheme == "AWS":
            from s3serve import sigv2

            return sigv2.verify_header(req, authorization, lookup, now)
        raise errors.InvalidArgument(
            "Unsupported Authorization Type", ArgumentName="Authorization", ArgumentValue=authorization
        )
    if "X-Amz-Algorithm" in params:
        return _verify_presigned_v4(req, params, lookup, now)
    if "AWSAccessKeyId" in params or "Signature" in params:
        from s3serve import sigv2

        return sigv2.verify_presigned(req, params, lookup, now)
    return None


# -- SigV4 header ----------------------------------------------------------------------------


@dataclass
class _Credential:
    access_key: str
    date: str
    region: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{SERVICE}/{TERMINATOR}"


def _parse_credential(value: str, fail: Callable[[str], errors.S3Error]) -> _Credential:
    # The access key may in theory hold anything but '/', so split the scope off from the right.
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or not parts[0]:
        raise fail(_CREDENTIAL_HELP)
    access_key, date, region, service, terminator = parts
    if not _DATE8.fullmatch(date) or not region:
        raise fail(_CREDENTIAL_HELP)
    if service != SERVICE:
        raise fail(f'incorrect service "{service}". This endpoint belongs to "{SERVICE}".')
    if terminator != TERMINATOR:
        raise fail(f'incorrect terminal "{terminator}". This endpoint uses "{TERMINATOR}".')
    return _Credential(access_key, date, region)


def _parse_authorization(value: str) -> dict[str, str]:
    """'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...' -> components."""
    rest = value[len(ALGORITHM) :].strip()
    components: dict[str, str] = {}
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        if not sep:
            raise errors.AuthorizationHeaderMalformed(
                f'The authorization header is malformed; the authorization component "{part}" is malformed.'
            )
        components[key.strip()] = val.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if required not in components:
            raise errors.AuthorizationHeaderMalformed(
                f"The authorization header is malformed; the authorization header requires three components: "
                f"Credential, SignedHeaders, and Signature. Missing: {required}."
            )
    return components


def _request_time(headers: Mapping[str, str]) -> tuple[str, float]:
    """The request timestamp as (ISO 8601 basic string, epoch seconds), from x-amz-date or Date."""
    amz_date = headers.get("x-amz-date")
    if amz_date is not None:
        parsed = parse_amz_date(amz_date)
        if parsed is not None:
            return amz_date, parsed
    else:
        from s3serve.sigv2 import parse_http_date  # SDKs sign with x-amz-date: rarely imported

        date = headers.get("Date")
        epoch = None if date is None else parse_http_date(date)
        if epoch is not None:
            return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch)), epoch
    raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header")


@functools.lru_cache(maxsize=256)
def parse_amz_date(value: str) -> float | None:
    # Cached: every request parses its x-amz-date, and requests signed in the same second share it.
    if not _AMZ_DATE.match(value):
        return None
    # By hand rather than strptime: this runs for every request and strptime is slow.
    midnight = _day_start(value[0:8])
    if midnight is None:
        return None
    hour, minute, second = int(value[9:11]), int(value[11:13]), int(value[13:15])
    if hour > 23 or minute > 59 or second > 60:
        return None
    return midnight + hour * 3600 + minute * 60 + second


@functools.lru_cache(maxsize=64)
def _day_start(yyyymmdd: str) -> float | None:
    """Epoch seconds of 00:00:00Z on that day, or None for a day that does not exist."""
    year, month, day = int(yyyymmdd[0:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8])
    # Year 0000 matches the pattern but no datetime has it: timegm would raise.
    if year < 1 or not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    return float(calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0)))


def format_http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def _iso_z(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def check_skew(sent: str, request_time: float, now: float) -> None:
    if abs(request_time - now) > MAX_SKEW_SECONDS:
        raise errors.RequestTimeTooSkewed(
            RequestTime=sent,
            ServerTime=_iso_z(now),
            MaxAllowedSkewMilliseconds=MAX_SKEW_SECONDS * 1000,
        )


def lookup_user(lookup: Lookup, access_key: str) -> User:
    user = lookup(access_key)
    if user is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)
    return user


def _unsigned_amz_headers(headers: Mapping[str, str], signed: list[str], exempt: Iterable[str]) -> list[str]:
    """x-amz-* headers present but not signed: S3 refuses them, since anyone on the path could
    have added them (x-amz-meta-*, x-amz-acl, x-amz-copy-source...)."""
    signed_set = set(signed) | set(exempt)
    seen: dict[str, None] = {}
    for name in headers.keys():
        lower = name.lower()
        if lower.startswith("x-amz-") and lower not in signed_set:
            seen[lower] = None
    return list(seen)


def _v4_result(
    user: User, cred: _Credential, key: bytes, amz_date: str, signature: str, content_sha256: str, *, presigned: bool
) -> AuthResult:
    """A verified SigV4 request, with what payload.py needs to check chunk signatures."""
    return AuthResult(
        user=user,
        version=4,
        presigned=presigned,
        content_sha256=content_sha256,
        signing_key=key,
        scope=cred.scope,
        amz_date=amz_date,
        seed_signature=signature.lower(),
        access_key=cred.access_key,
        region=cred.region,
    )


def _verify_header_v4(req: RequestView, authorization: str, lookup: Lookup, now: float) -> AuthResult:
    parts = _parse_authorization(authorization)
    cred = _parse_credential(
        parts["Credential"],
        lambda m: errors.AuthorizationHeaderMalformed(f"The authorization header is malformed; {m}"),
    )
    signed = parts["SignedHeaders"].split(";")
    if not all(signed) or "host" not in signed:
        raise errors.AuthorizationHeaderMalformed(
            "The authorization header is malformed; the SignedHeaders component must include host."
            if all(signed)
            else "The authorization header is malformed; the SignedHeaders component is malformed."
        )
    user = lookup_user(lookup, cred.access_key)
    amz_date, request_time = _request_time(req.headers)
    if amz_date[:8] != cred.date:
        raise errors.AuthorizationHeaderMalformed(
            f'The authorization header is malformed; Invalid credential date "{cred.date}". '
            f'This date is not the same as X-Amz-Date: "{amz_date[:8]}".'
        )
    content_sha256 = req.headers.get("x-amz-content-sha256")
    if content_sha256 is None:
        raise errors.InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    key = signing_key(user.secret_key, cred.date, cred.region)
    signature = parts["Signature"]
    _verify_signature(req, cred, key, amz_date, signed, content_sha256, signature, exclude=None)
    check_skew(req.headers.get("x-amz-date") or req.headers.get("Date") or amz_date, request_time, now)
    _check_signed_amz_headers(req.headers, signed)
    return _v4_result(user, cred, key, amz_date, signature, _payload_claim(req, content_sha256), presigned=False)


def _payload_claim(req: RequestView, signed_payload: str) -> str:
    """What the body is checked against: the payload line of the signature holds the first
    x-amz-content-sha256, as botocore builds it, but a repeated header is all its values joined
    (payload.py then refuses it), never the first with the others ignored."""
    return joined_header(req.headers, "x-amz-content-sha256") or signed_payload


def _check_signed_amz_headers(headers: Mapping[str, str], signed: list[str]) -> None:
    # x-amz-content-sha256 is covered as the payload-hash line even when not listed.
    unsigned = _unsigned_amz_headers(headers, signed, exempt=("x-amz-content-sha256",))
    if unsigned:
        raise errors.AccessDenied(
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(unsigned),
        )


def _verify_signature(
    req: RequestView,
    cred: _Credential,
    key: bytes,
    amz_date: str,
    signed: list[str],
    payload_hash: str,
    provided: str,
    exclude: str | None,
) -> None:
    """Try the canonical request as the spec builds it, then the known client deviations; raise
    SignatureDoesNotMatch with the spec's canonical request when none matches."""
    method = req.method.upper()
    uris = [canonical_uri(req.raw_path)]
    if req.raw_path and req.raw_path not in uris:
        uris.append(req.raw_path)
    if req.raw_query or not req.query:
        query = canonical_query_raw(req.raw_query, exclude)
    else:
        query = canonical_query(req.query, exclude)
    first: tuple[str, str] | None = None
    for uri in uris:
        creq = canonical_request(method, uri, query, req.headers, signed, payload_hash)
        sts = string_to_sign(amz_date, cred.scope, creq)
        if signatures_equal(sign(key, sts), provided):
            return
        if first is None:
            first = (creq, sts)
    assert first is not None
    creq, sts = first
    raise errors.SignatureDoesNotMatch(
        AWSAccessKeyId=cred.access_key,
        StringToSign=sts,
        SignatureProvided=provided,
        CanonicalRequest=creq,
    )


# -- SigV4 presigned -------------------------------------------------------------------------

_PRESIGNED_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)


def _verify_presigned_v4(req: RequestView, params: dict[str, str], lookup: Lookup, now: float) -> AuthResult:
    def fail(message: str) -> errors.S3Error:
        return errors.AuthorizationQueryParametersError(message)

    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise fail(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    if any(name not in params for name in _PRESIGNED_REQUIRED):
        raise fail(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    cred = _parse_credential(
        params["X-Amz-Credential"], lambda m: fail(f"Error parsing the X-Amz-Credential parameter; {m}")
    )
    amz_date = params["X-Amz-Date"]
    request_time = parse_amz_date(amz_date)
    if request_time is None:
        raise fail("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if amz_date[:8] != cred.date:
        raise fail(
            f'Error parsing the X-Amz-Credential parameter; Invalid credential date "{cred.date}". '
            f'This date is not the same as X-Amz-Date: "{amz_date[:8]}".'
        )
    expires_text = params["X-Amz-Expires"]
    if not _EXPIRES.fullmatch(expires_text):
        raise fail("X-Amz-Expires should be a number")
    expires = int(expires_text)
    if expires < 0:
        raise fail("X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGNED_EXPIRES:
        raise fail("X-Amz-Expires must be less than a week (in seconds) that is; 604800 seconds")
    signed = params["X-Amz-SignedHeaders"].split(";")
    if not all(signed) or "host" not in signed:
        raise fail("X-Amz-SignedHeaders must include host and be a ';'-separated list of header names")
    user = lookup_user(lookup, cred.access_key)
    content_sha256 = (
        req.headers.get("x-amz-content-sha256") or params.get("X-Amz-Content-Sha256") or UNSIGNED_PAYLOAD
    )
    key = signing_key(user.secret_key, cred.date, cred.region)
    signature = params["X-Amz-Signature"]
    _verify_signature(req, cred, key, amz_date, signed, content_sha256, signature, exclude="X-Amz-Signature")
    if now > request_time + expires:
        raise errors.AccessDenied(
            "Request has expired",
            **{
                "X-Amz-Expires": expires_text,
                "Expires": _iso_z(request_time + expires),
                "ServerTime": _iso_z(now),
            },
        )
    if request_time - now > MAX_SKEW_SECONDS:
        raise errors.AccessDenied("Request is not valid yet")
    _check_signed_amz_headers(req.headers, signed)
    return _v4_result(user, cred, key, amz_date, signature, _payload_claim(req, content_sha256), presigned=True)
