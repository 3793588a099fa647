"""AWS Signature Version 2 for S3: ``Authorization: AWS AKID:sig`` and presigned
``?AWSAccessKeyId=&Expires=&Signature=`` URLs. Reached through ``sigv4.authenticate``.

StringToSign = METHOD \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
               CanonicalizedAmzHeaders CanonicalizedResource

Clients disagree on a few details (the path as sent or decoded, which sub-resources count), so
when the string built the documented way does not match, the known variants are tried before
SignatureDoesNotMatch.
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote, unquote_plus

from s3serve import errors
from s3serve.config import User

if TYPE_CHECKING:
    from s3serve.sigv4 import AuthResult, Lookup, RequestView

# Sub-resources that belong in the CanonicalizedResource: the list in the S3 SigV2 docs, the one
# botocore's HmacV1Auth signs (QSAOfInterest), and the newer bucket/object sub-resources.
SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "attributes", "cors", "defaultObjectAcl", "delete", "encryption",
        "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location", "logging", "metrics",
        "notification", "object-lock", "ownershipControls", "partNumber", "policy", "policyStatus",
        "publicAccessBlock", "replication", "requestPayment", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "response-content-language",
        "response-content-type", "response-expires", "restore", "retention", "select", "select-type",
        "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions",
        "website",
    }
)  # fmt: skip
# Exactly botocore's list: a client built on it signs these and nothing else.
BOTOCORE_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
        "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
        "response-content-type", "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging",
        "restore", "storageClass", "notification", "replication", "analytics", "metrics", "inventory",
        "select", "select-type", "object-lock",
    }
)  # fmt: skip

_PRESIGN_PARAMS = ("AWSAccessKeyId", "Expires", "Signature")
_FAR_FUTURE = 10**12


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name)


def canonical_amz_headers(amz: Iterable[tuple[str, str]]) -> str:
    """'name:v1,v2\\n' per x-amz-* header, names lower-case and sorted."""
    grouped: dict[str, list[str]] = {}
    for name, value in amz:
        lower = name.lower()
        if lower.startswith("x-amz-"):
            grouped.setdefault(lower, []).append(value.strip())
    return "".join(f"{name}:{','.join(grouped[name])}\n" for name in sorted(grouped))


def canonical_resource(
    path: str, raw_query: str, vhost_bucket: str | None, subresources: frozenset[str] = SUBRESOURCES
) -> str:
    resource = (f"/{vhost_bucket}" + (path or "/")) if vhost_bucket else (path or "/")
    picked: list[tuple[str, str | None]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        # Decoded as the handlers decode them ('+' a space, handlers.common.parse_query): a
        # signed '%2B' made '+' is then another value, not the one signed served as a space.
        name = unquote_plus(name)
        if name in subresources:
            picked.append((name, unquote_plus(value) if sep else None))
    if picked:
        picked.sort(key=lambda nv: nv[0])
        resource += "?" + "&".join(n if v is None else f"{n}={v}" for n, v in picked)
    return resource


def string_to_sign(
    method: str, content_md5: str, content_type: str, date: str, amz_headers: str, resource: str
) -> str:
    return f"{method}\n{content_md5}\n{content_type}\n{date}\n{amz_headers}{resource}"


def sign(secret: str, text: str) -> str:
    return base64.b64encode(
        hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    ).decode()


def _all_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    # A multidict yields every occurrence of a repeated header, which SigV2 joins with ','.
    return list(headers.items())


def _verify(
    req: RequestView,
    user: User,
    access_key: str,
    provided: str,
    dates: list[str],
    content_md5: str,
    content_type: str,
    amz: list[tuple[str, str]],
) -> None:
    method = req.method.upper()
    amz_headers = canonical_amz_headers(amz)
    paths = [req.raw_path or "/"]
    decoded = unquote(req.raw_path or "/")
    if decoded != paths[0]:
        paths.append(decoded)
    if not req.vhost_bucket and paths[0].count("/") == 1 and paths[0] != "/":
        # A path-style bucket request ("/bucket"): botocore signs the resource as "/bucket/".
        paths.append(paths[0] + "/")
    first: str | None = None
    for subresources in (SUBRESOURCES, BOTOCORE_SUBRESOURCES):
        for path in paths:
            resource = canonical_resource(path, req.raw_query, req.vhost_bucket, subresources)
            for date in dates:
                sts = string_to_sign(method, content_md5, content_type, date, amz_headers, resource)
                if hmac.compare_digest(
                    sign(user.secret_key, sts).encode(), provided.encode("utf-8", "replace")
                ):
                    return
                if first is None:
                    first = sts
    assert first is not None
    raise errors.SignatureDoesNotMatch(
        AWSAccessKeyId=access_key,
        StringToSign=first,
        SignatureProvided=provided,
        StringToSignBytes=" ".join(f"{b:02x}" for b in first.encode("utf-8")),
    )


def parse_http_date(value: str) -> float | None:
    """Epoch seconds of an HTTP (RFC 2822) date, or None; one without a zone ("-0000") is UTC."""
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # Overflow: a year past C's int
        return None
    return dt.timestamp() if dt.tzinfo else calendar.timegm(dt.timetuple())


def _parse_v2_date(value: str) -> float | None:
    stamp = parse_http_date(value)
    # S3 takes a date before 1970 for no date at all (AccessDenied), not for a skewed clock
    # (ceph s3-tests' bad_date_before_epoch_aws2 tests).
    return stamp if stamp is not None and stamp >= 0 else None


def verify_header(req: RequestView, authorization: str, lookup: Lookup, now: float) -> AuthResult:
    from s3serve.sigv4 import (
        UNSIGNED_PAYLOAD,
        AuthResult,
        check_skew,
        joined_header,
        lookup_user,
        parse_amz_date,
    )

    credentials = authorization[len("AWS ") :].strip()
    access_key, sep, provided = credentials.rpartition(":")
    if not sep or not access_key or not provided:
        raise errors.InvalidArgument(
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            ArgumentName="Authorization",
            ArgumentValue=authorization,
        )
    user = lookup_user(lookup, access_key)
    headers = req.headers
    amz_date = _header(headers, "x-amz-date")
    http_date = _header(headers, "Date")
    sent = amz_date if amz_date is not None else http_date
    request_time: float | None = None
    if sent is not None:
        request_time = _parse_v2_date(sent)
        if request_time is None:
            # Some clients send x-amz-date in SigV4's ISO 8601 basic form even with SigV2.
            request_time = parse_amz_date(sent)
    if sent is None or request_time is None:
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    # With x-amz-date the Date line is empty (it travels among the x-amz headers instead); a few
    # clients still put the Date header there.
    dates = [""] if amz_date is not None else [http_date or ""]
    if amz_date is not None and http_date:
        dates.append(http_date)
    _verify(
        req,
        user,
        access_key,
        provided,
        dates,
        _header(headers, "Content-MD5") or "",
        _header(headers, "Content-Type") or "",
        _all_headers(headers),
    )
    check_skew(sent, request_time, now)
    return AuthResult(
        user=user,
        version=2,
        presigned=False,
        content_sha256=joined_header(headers, "x-amz-content-sha256") or UNSIGNED_PAYLOAD,
        access_key=access_key,
    )


def verify_presigned(req: RequestView, params: dict[str, str], lookup: Lookup, now: float) -> AuthResult:
    from s3serve.sigv4 import UNSIGNED_PAYLOAD, AuthResult, joined_header, lookup_user

    if any(not params.get(name) for name in _PRESIGN_PARAMS):
        raise errors.AccessDenied(
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
        )
    access_key = params["AWSAccessKeyId"]
    # A '+' in the base64 signature that the client left unencoded arrives as a space.
    provided = params["Signature"].replace(" ", "+")
    expires_text = params["Expires"]
    # ASCII digits only: str.isdigit also takes '²', which int() refuses.
    if not (expires_text.isascii() and expires_text.isdigit()):
        raise errors.AccessDenied(f"Invalid date (should be seconds since epoch): {expires_text}")
    # Longer is past any clock (and int() refuses over 4300 digits): never expired.
    digits = expires_text.lstrip("0") or "0"
    expires = int(digits) if len(digits) <= 12 else _FAR_FUTURE
    user = lookup_user(lookup, access_key)
    headers = req.headers
    lowered = {k.lower(): v for k, v in req.query}
    # botocore moves signed x-amz-*, Content-Type and Content-MD5 headers into the query string.
    amz = _all_headers(headers)
    header_names = {k.lower() for k, _ in amz}
    amz += [(k, v) for k, v in req.query if k.lower().startswith("x-amz-") and k.lower() not in header_names]
    _verify(
        req,
        user,
        access_key,
        provided,
        [expires_text],
        _header(headers, "Content-MD5") or lowered.get("content-md5", ""),
        _header(headers, "Content-Type") or lowered.get("content-type", ""),
        amz,
    )
    if now > expires:
        raise errors.AccessDenied(
            "Request has expired",
            Expires=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            ServerTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        )
    return AuthResult(
        user=user,
        version=2,
        presigned=True,
        content_sha256=joined_header(headers, "x-amz-content-sha256") or UNSIGNED_PAYLOAD,
        access_key=access_key,
    )
