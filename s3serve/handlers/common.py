"""What every handler needs: the request context, header <-> metadata mapping, S3's conditions."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import email.utils
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web
from multidict import CIMultiDict

from .. import errors, s3xml
from ..checksums import ALGORITHM_DIGEST, MultiHasher
from ..config import Config, User
from ..payload import make_body, stored_content_encoding
from ..routing import Route
from ..sigv4 import AuthResult
from ..storage.base import (
    SSE_HEADER,
    SSE_S3,
    STORED_HEADERS,
    WEBSITE_REDIRECT,
    Backend,
    HeaderPrecondition,
    ObjectInfo,
    Precondition,
    WriteMeta,
)

log = logging.getLogger("s3serve")
T = TypeVar("T")

XML_TYPE = "application/xml"
MAX_XML_BODY = 2 * 1024 * 1024
MAX_USER_METADATA = 2048

STORAGE_CLASSES = frozenset(
    {
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "DEEP_ARCHIVE",
        "OUTPOSTS",
        "GLACIER_IR",
        "SNOW",
        "EXPRESS_ONEZONE",
    }
)


@dataclass
class Context:
    request: web.Request
    route: Route
    query: dict[str, str]
    # Who signed the request. None only in a handler that authenticates from the request body
    # (PostObject's form fields), until it has done so and set it.
    authenticated: AuthResult | None
    backend: Backend
    config: Config
    # The <Error> document of this request for an error, for answers that began with a 200.
    error_body: Callable[[errors.S3Error], bytes]

    @property
    def auth(self) -> AuthResult:
        if self.authenticated is None:
            # Reached before the handler authenticated: refuse rather than act for nobody.
            raise errors.AccessDenied()
        return self.authenticated

    @property
    def user(self) -> User:
        return self.auth.user

    @property
    def bucket(self) -> str:
        assert self.route.bucket is not None
        return self.route.bucket

    @property
    def key(self) -> str:
        assert self.route.key is not None
        return self.route.key

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    def display_name(self, user_id: str) -> str:
        for user in self.config.users:
            if user.user_id == user_id:
                return user.display_name
        return user_id

    async def read_xml_body(self, *, object_checksums: bool = False, digest_required: bool = False) -> bytes:
        """A small XML request body, read whole (after the payload checks).

        ``object_checksums``: the request's x-amz-checksum-* headers describe the object being
        made (CompleteMultipartUpload), not this body, so the body is not checked against them.
        ``digest_required``: S3 refuses the request without a Content-MD5 or a checksum of its body
        (DeleteObjects, PutBucketCors, PutBucketLifecycleConfiguration, PutBucketTagging)."""
        headers: Mapping[str, str] = self.headers
        if object_checksums:
            headers = CIMultiDict(
                (k, v) for k, v in self.headers.items() if not k.lower().startswith("x-amz-checksum-")
            )
        body = make_body(self.request.content, headers, self.auth)
        chunks: list[bytes] = []
        size = 0
        hasher = MultiHasher(["md5", *body.digests_wanted])
        async for chunk in body:
            size += len(chunk)
            if size > MAX_XML_BODY:
                raise errors.MalformedXML("The XML you provided was larger than the maximum allowed size.")
            hasher.update(chunk)
            chunks.append(chunk)
        body.finish(hasher.digests())
        # Refused once the body is read, so the connection stays in step for the next request.
        if digest_required and not body.has_digest:
            raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
        return b"".join(chunks)


# Operations whose storage call answers NoSuchBucket itself: their ownership check need not
# confirm the bucket's folder (Backend.bucket_owner), a stat saved on every small GET, HEAD and
# DELETE. None has a body, so none is checked before a 100 Continue.
STORAGE_CHECKS_BUCKET = frozenset({"GetObject", "HeadObject", "DeleteObject"})


async def bucket_owner(backend: Backend, bucket: str, operation: str) -> str:
    """The owner of the bucket an operation names; NoSuchBucket (from it or from its storage call)."""
    if operation in STORAGE_CHECKS_BUCKET:
        return await backend.bucket_owner(bucket)
    return (await backend.head_bucket(bucket)).owner


# A handler's checks of a request that need no body, returning what the handler goes on with.
HeaderPhase = Callable[[Context], Awaitable[Any]]
# The header phase run before the 100 Continue (app's expect handler) and what it returned, for
# the handler to take instead of checking the headers, and looking up storage, a second time.
EARLY_CHECKS: web.RequestKey[tuple[HeaderPhase, Any]] = web.RequestKey("s3serve.early_checks", tuple)


async def header_checks(ctx: Context, phase: Callable[[Context], Awaitable[T]]) -> T:
    """``phase(ctx)``, or its result when the expect handler ran it already. A header phase only
    checks and prepares: what may change between the 100 and the body (the upload is aborted,
    the key is written meanwhile) is checked again where the body is stored."""
    early = ctx.request.get(EARLY_CHECKS)
    if early is not None and early[0] is phase:
        return cast(T, early[1])
    return await phase(ctx)


def _unquote(text: str) -> str:
    # Most names and values carry no escapes: skip the decoder for them (every request goes here).
    if "%" in text or "+" in text:
        return _unquote_escaped(text)
    return text


@functools.lru_cache(maxsize=4096)
def _unquote_escaped(text: str) -> str:
    # Escaped values repeat across requests (credential scopes, prefixes, delimiters).
    return unquote_plus(text)


def parse_query(raw_query: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Query parameters decoded once, as S3 reads them ('+' is a space); valueless ones are ''."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((_unquote(name), _unquote(value)))
    first: dict[str, str] = {}
    for name, value in pairs:
        first.setdefault(name, value)
    return pairs, first


def xml_response(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=XML_TYPE, headers=headers)


# An XML body and the headers that go with it.
XmlAnswer = tuple[bytes, Mapping[str, str]]


async def answer_in_time(ctx: Context, work: Awaitable[T], answer: Callable[[T], XmlAnswer]) -> web.StreamResponse:
    """The answer of CompleteMultipartUpload, CopyObject and UploadPartCopy, whose work may take
    minutes (copying a big object). Clients give up on a silent connection after their read
    timeout (60 s for boto3 and the aws cli), so as S3 does, work still running after
    ``keepalive_after`` gets its 200 and the XML declaration at once, a space every
    ``keepalive_every``, then the result or the <Error> document, which SDKs look for
    in a 200 of these three operations. The work is never cancelled with the request (a
    half-done copy would be undone at a cost); its outcome is always retrieved."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can return the result and drop a
        # cancellation that arrives as the work finishes.
        async with asyncio.timeout(ctx.config.keepalive_after):
            result = await asyncio.shield(task)
    except TimeoutError:
        pass
    else:
        body, headers = answer(result)
        return xml_response(body, headers=headers)
    response = web.StreamResponse(status=200, headers={"Content-Type": XML_TYPE})
    await response.prepare(ctx.request)
    connected = True

    async def send(data: bytes) -> None:
        nonlocal connected
        if connected:
            try:
                await response.write(data)
            except (ConnectionError, RuntimeError):
                connected = False  # the client left; the work goes on, and its outcome stays

    await send(s3xml.HEADER.encode())
    while not (await asyncio.wait({task}, timeout=ctx.config.keepalive_every))[0]:
        await send(b" ")
    try:
        body = answer(task.result())[0]
    except errors.S3Error as exc:
        body = ctx.error_body(exc)
    except Exception:
        log.exception("internal error on %s %s", ctx.request.method, ctx.request.raw_path)
        body = ctx.error_body(errors.InternalError())
    await send(body.removeprefix(s3xml.HEADER.encode()))
    if connected:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
    return response


INT32_MAX = 2**31 - 1
# What S3's integer parameters take (Java's Integer.parseInt): a sign, then ASCII digits only, so
# " 5", "5.0" and "1_000" are not integers, while any number of leading zeros is.
_INT_RE = re.compile(r"[+-]?[0-9]+")


def _int32(raw: str) -> int | None:
    """``raw`` as an int32, or None where S3 answers "not an integer or within integer range"."""
    if not _INT_RE.fullmatch(raw):
        return None
    negative = raw[0] == "-"
    # Zeros off first: int() refuses more than 4300 digits, and S3 takes "0000…05" as 5.
    digits = raw.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 10:
        return None
    value = -int(digits) if negative else int(digits)
    return value if -INT32_MAX - 1 <= value <= INT32_MAX else None


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    """An integer parameter as S3 reads it: absent or empty is ``default``; not an int32 (a word,
    2147483648) and below ``low`` are refused apart, naming the argument; above ``high`` is served
    at ``high``, as S3 caps a page size."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    value = _int32(raw)
    if value is None:
        raise errors.InvalidArgument(
            f"Provided {name} not an integer or within integer range", ArgumentName=name, ArgumentValue=raw
        )
    if value < low:
        # S3 names the value as it read it: "-01" comes back as "-1".
        raise errors.InvalidArgument(
            f"Argument {name} must be an integer between {low} and {INT32_MAX}", ArgumentName=name, ArgumentValue=str(value)
        )
    return min(value, high) if high is not None else value


def url_encoding(query: Mapping[str, str]) -> bool:
    """encoding-type=url on listings: keys and prefixes go out percent-encoded."""
    encoding = query.get("encoding-type")
    if encoding is None:
        return False
    if encoding.lower() != "url":
        raise errors.InvalidArgument(
            "Invalid Encoding Method specified in Request", ArgumentName="encoding-type", ArgumentValue=encoding
        )
    return True


def check_version_id(query: Mapping[str, str]) -> None:
    """Buckets here are unversioned: only the 'null' version exists (rclone asks for it)."""
    version = query.get("versionId")
    if version is not None and version != "null":
        raise errors.InvalidArgument("Invalid version id specified", ArgumentName="versionId", ArgumentValue=version)


# -- metadata ------------------------------------------------------------------------------------


MAX_REDIRECT_LOCATION = 2048


def check_redirect_location(value: str) -> None:
    if not value.startswith(("/", "http://", "https://")):
        raise errors.InvalidRedirectLocation()
    if len(value) > MAX_REDIRECT_LOCATION:
        raise errors.InvalidRedirectLocation("The length of website redirect location cannot exceed 2,048 characters.")


def write_meta(headers: Mapping[str, str], *, with_tags: bool = True) -> WriteMeta:
    stored: dict[str, str] = {}
    for name in STORED_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if name == "content-encoding":
            encoding = stored_content_encoding(value)
            if encoding is None:
                continue
            value = encoding
        elif name == WEBSITE_REDIRECT:
            check_redirect_location(value)
        stored[name] = value
    user_meta: dict[str, str] = {}
    size = 0
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("x-amz-meta-"):
            meta_name = lower[len("x-amz-meta-") :]
            size += len(meta_name.encode()) + len(value.encode("utf-8", "surrogateescape"))
            # Several headers of one name are joined as S3 does.
            user_meta[meta_name] = f"{user_meta[meta_name]},{value}" if meta_name in user_meta else value
    if size > MAX_USER_METADATA:
        raise errors.MetadataTooLarge(MaxSizeAllowed=MAX_USER_METADATA, Size=size)
    storage_class = headers.get("x-amz-storage-class", "STANDARD") or "STANDARD"
    if storage_class not in STORAGE_CLASSES:
        raise errors.InvalidStorageClass(StorageClassRequested=storage_class)
    algorithm = (headers.get("x-amz-checksum-algorithm") or headers.get("x-amz-sdk-checksum-algorithm") or "").upper()
    if algorithm and algorithm not in ALGORITHM_DIGEST:
        raise errors.InvalidRequest("Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")
    checksum_type = checksum_type_of(headers)
    tags = parse_tagging_header(headers.get("x-amz-tagging")) if with_tags else None
    return WriteMeta(
        headers=stored,
        user_meta=user_meta,
        tags=tags,
        storage_class=storage_class,
        checksum_algorithm=algorithm or None,
        checksum_type=checksum_type,
    )


# The headers an object's creation asks Object Lock with. No bucket here has Object Lock (it
# needs versioning), so S3's answer for a bucket without it applies. S3 words it without the
# spaces its retention and legal hold APIs put in "Object Lock Configuration" (versitygw#1755).
OBJECT_LOCK_HEADERS = ("x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold")
NO_LOCK_CONFIGURATION = "Bucket is missing ObjectLockConfiguration"


def refuse_object_lock(headers: Mapping[str, str]) -> None:
    """PutObject, CopyObject and CreateMultipartUpload naming a retention or a legal hold: stored
    without one, the object would be deletable though its writer asked that it not be."""
    if any(headers.get(name) for name in OBJECT_LOCK_HEADERS):
        raise errors.InvalidRequest(NO_LOCK_CONFIGURATION)


def copy_directive(headers: Mapping[str, str], name: str) -> str:
    """CopyObject's x-amz-metadata-directive or x-amz-tagging-directive: COPY or REPLACE."""
    value = headers.get(name, "COPY")
    # S3 refuses a metadata directive not in upper case (s3.amazonaws.com answers "copy" with
    # InvalidArgument); that it does so for the tagging directive is not confirmed, so that
    # one is still read in any case.
    if name == "x-amz-tagging-directive":
        value = value.upper()
    if value not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument(f"Unknown {name.split('-')[2]} directive.", ArgumentName=name, ArgumentValue=value)
    return value


TAG_KEY_MAX, TAG_VALUE_MAX, MAX_TAGS = 128, 256, 10


def checksum_type_of(headers: Mapping[str, str]) -> str | None:
    """x-amz-checksum-type (CreateMultipartUpload's, and CompleteMultipartUpload's to check it)."""
    checksum_type = (headers.get("x-amz-checksum-type") or "").upper() or None
    if checksum_type not in (None, "COMPOSITE", "FULL_OBJECT"):
        raise errors.InvalidRequest("Value for x-amz-checksum-type header is invalid.")
    return checksum_type


# Characters XML 1.0 cannot carry, raw or as a reference, which x-amz-tagging can (%01): in no
# S3 tag (its pattern takes letters, numbers, spaces and + - = . _ : / @), and a tag holding one
# made every later GetObjectTagging a document no client could read.
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def validate_tags(tags: dict[str, str], max_tags: int = MAX_TAGS) -> dict[str, str]:
    """Object tags by default; a bucket's (up to 50) checks its count itself."""
    if len(tags) > max_tags:
        raise errors.BadRequest("Object tags cannot be greater than 10")
    for key, value in tags.items():
        if not key or len(key) > TAG_KEY_MAX or _NOT_IN_XML.search(key):
            raise errors.InvalidTag("The TagKey you have provided is invalid")
        if len(value) > TAG_VALUE_MAX or _NOT_IN_XML.search(value):
            raise errors.InvalidTag("The TagValue you have provided is invalid")
    return tags


def parse_tagging_header(value: str | None) -> dict[str, str] | None:
    if value is None:
        return None
    tags: dict[str, str] = {}
    for key, val in parse_qsl(value, keep_blank_values=True):
        if key in tags:
            raise errors.InvalidTag("Cannot provide multiple Tags with the same key")
        tags[key] = val
    return validate_tags(tags)


def _header_value(value: str) -> str:
    """Non-ASCII metadata goes out RFC 2047-encoded, as S3 returns it."""
    if value.isascii():
        return value
    raw = value.encode("utf-8", "surrogateescape")
    return f"=?UTF-8?B?{base64.b64encode(raw).decode()}?="


def checksum_headers(checksums: dict[str, str], checksum_type: str | None = None) -> dict[str, str]:
    """x-amz-checksum-<alg> (and x-amz-checksum-type) response headers of a write."""
    headers = {f"x-amz-checksum-{alg.lower()}": value for alg, value in checksums.items()}
    if headers and checksum_type:
        headers["x-amz-checksum-type"] = checksum_type
    return headers


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def http_date(ts: float) -> str:
    # Every GET and HEAD formats Last-Modified; formatdate costs more than the rest of the headers.
    return _http_date(int(ts))


def object_headers(info: ObjectInfo, ctx: Context, *, checksums: bool, part_count: int | None = None) -> dict[str, str]:
    headers: dict[str, str] = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": http_date(info.last_modified),
        "Accept-Ranges": "bytes",
        "Content-Type": info.headers.get("content-type") or "binary/octet-stream",
        # Every object is encrypted with SSE-S3 at least, as in S3 since January 2023; in the
        # literal, the common case costs no dict growth.
        SSE_HEADER: "AES256",
    }
    if info.encryption is not SSE_S3:
        if info.encryption.is_customer:
            del headers[SSE_HEADER]  # S3 answers an SSE-C object with its customer headers alone
        headers.update(info.encryption.headers())
    for name in STORED_HEADERS[1:]:
        if name in info.headers:
            headers[name.title()] = info.headers[name]
    for name, value in info.user_meta.items():
        headers[f"x-amz-meta-{name}"] = _header_value(value)
    if info.storage_class != "STANDARD":
        headers["x-amz-storage-class"] = info.storage_class
    if checksums and ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        headers.update(checksum_headers(info.checksums, info.checksum_type))
    if part_count is not None:
        headers["x-amz-mp-parts-count"] = str(part_count)
    # response-* query parameters override what the object stored (signed requests only).
    for name, header in RESPONSE_OVERRIDES.items():
        if name in ctx.query:
            value = ctx.query[name]
            if any((c < " " and c != "\t") or c == "\x7f" for c in value):
                # A header cannot carry it (CR/LF would split the answer): refuse, as for any bad argument.
                raise errors.InvalidArgument(f"Invalid value for {name}", ArgumentName=name, ArgumentValue=value)
            headers[header] = value
    return headers


RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


# -- conditions ----------------------------------------------------------------------------------

_ETAG_RE = re.compile(r'\s*(?:W/)?"?([^",\s]*)"?\s*')


def _etags(value: str) -> list[str]:
    return [m.group(1) for part in value.split(",") if (m := _ETAG_RE.fullmatch(part)) and m.group(1)]


def etag_matches(header: str, etag: str) -> bool:
    return any(tag == "*" or tag == etag for tag in _etags(header))


def _parse_date(value: str | None) -> float | None:
    """An If-(Un)Modified-Since date, or None for one S3 ignores: a date it cannot parse, and a
    date later than now, which RFC 9110 §13.1.3 calls invalid (S3 answers 200 for a future
    If-Modified-Since, not 304)."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            # asctime dates and "-0000" carry no zone; HTTP dates are GMT, not the server's zone.
            parsed = parsed.replace(tzinfo=datetime.UTC)
        when = parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when <= time.time() else None


def check_read_conditions(headers: Mapping[str, str], info: ObjectInfo, prefix: str = "") -> None:
    """If-Match / If-Unmodified-Since -> 412, If-None-Match / If-Modified-Since -> 304 (RFC 7232
    order, as S3 applies it). ``prefix`` is 'x-amz-copy-source-' for copy sources, where S3
    answers 412 for all four. A date header S3 ignores (see ``_parse_date``) counts as absent."""
    modified = int(info.last_modified)
    if_match = headers.get(prefix + "if-match")
    if if_match is not None:
        if not etag_matches(if_match, info.etag):
            raise errors.PreconditionFailed(Condition=prefix + "If-Match")
    else:
        since = _parse_date(headers.get(prefix + "if-unmodified-since"))
        if since is not None and modified > since:
            raise errors.PreconditionFailed(Condition=prefix + "If-Unmodified-Since")
    not_modified: type[errors.S3Error] = errors.PreconditionFailed if prefix else errors.NotModified
    if_none_match = headers.get(prefix + "if-none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, info.etag):
            raise not_modified(Condition=prefix + "If-None-Match")
    else:
        since = _parse_date(headers.get(prefix + "if-modified-since"))
        if since is not None and modified <= since:
            raise not_modified(Condition=prefix + "If-Modified-Since")


def write_precondition(headers: Mapping[str, str]) -> Precondition | None:
    """If-None-Match: * / If-Match: <etag> on PutObject, CompleteMultipartUpload, CopyObject."""
    if_none_match = headers.get("if-none-match")
    if_match = headers.get("if-match")
    if if_none_match is None and if_match is None:
        return None
    if if_none_match is not None and if_none_match.strip() != "*":
        raise errors.NotImplementedOp("A header you provided implies functionality that is not implemented", Header="If-None-Match")

    def check(current: ObjectInfo | None) -> None:
        if if_none_match is not None and current is not None:
            raise errors.PreconditionFailed(Condition="If-None-Match")
        if if_match is not None:
            if current is None:
                raise errors.NoSuchKey()
            if not etag_matches(if_match, current.etag):
                raise errors.PreconditionFailed(Condition="If-Match")

    given = {"If-None-Match": if_none_match, "If-Match": if_match}
    return HeaderPrecondition(check, {name: value for name, value in given.items() if value is not None})


def read_precondition(headers: Mapping[str, str], prefix: str) -> Precondition | None:
    """Source conditions of CopyObject / UploadPartCopy / RenameObject, checked under the lock."""
    names = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
    if not any(prefix + name in headers for name in names):
        return None

    def check(current: ObjectInfo | None) -> None:
        if current is None:
            raise errors.NoSuchKey()
        check_read_conditions(headers, current, prefix)

    return HeaderPrecondition(check, {prefix + name: headers[prefix + name] for name in names if prefix + name in headers})
