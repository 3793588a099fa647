"""PostObject: browser form uploads, ``POST /<bucket>`` with a multipart/form-data body, as HTML
forms and boto3's ``generate_presigned_post`` send them.

The form authenticates itself: app.dispatch leaves PostObject to this handler, which checks the
policy's signature (postpolicy.authenticate), then that the signer owns the bucket or its bucket
policy may grant the upload, then the form's policy (postpolicy.check_policy), then the bucket
policy for the form's key (s3:PutObject), all before a byte of the file is read. Fields come in order, the file
last: the fields before it are read whole (at most MAX_PRE_DATA bytes, S3's limit), the file
streams into storage through FileBody, which counts it against the policy's content-length-range
as it goes, so an upload over the limit stops before anything is published. Fields after the file
are never read: S3 ignores them.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError, PayloadEncodingError
from aiohttp.multipart import parse_content_disposition

from .. import errors, postpolicy, s3xml
from ..checksums import ALGORITHM_DIGEST, DEFAULT_CHECKSUM, b64
from ..payload import declared_checksums, decode_content_md5
from ..policy import load as load_policy
from ..postpolicy import Fields, SizeRange
from ..storage.base import ObjectInfo, WriteMeta
from .acl import OBJECT_CANNED, check_upload_acl
from .common import Context, checksum_headers, validate_tags, write_meta, xml_response
from .encryption import write_encryption
from .objects import MAX_PUT_SIZE
from .policy import POLICY, authorize_form

# "The form data and boundaries (excluding the contents of the file) cannot exceed 20KB": S3
# refuses more than 20,480 bytes with MaxPostPreDataLengthExceeded. It also bounds what a form costs us.
MAX_PRE_DATA = 20 * 1024
# Bytes asked of the file part per read: large enough that the boundary search aiohttp does per
# read is cheap per byte, small enough to keep memory flat for any size of file.
FILE_CHUNK = 256 * 1024
FIELD_CHUNK = 8 * 1024

_NOT_A_FORM = "Bucket POST must be of the enclosure-type multipart/form-data"
_FILENAME = re.compile(r';\s*filename\s*=\s*(?:"([^"]*)"|([^;\s]*))', re.IGNORECASE)
# What aiohttp refuses to send in a header (and HTTP forbids): a field that becomes one of the
# object's headers must not hold them, or no answer about the object could be sent.
_NOT_IN_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# The transport's ways of saying the body ended early or the client went away.
_READ_ERRORS = (ValueError, HttpProcessingError, ConnectionResetError)


async def post_object(ctx: Context) -> web.StreamResponse:
    pairs, part = await _read_form(ctx.request)
    fields = Fields.from_pairs(pairs)
    if not fields.get("key"):
        raise postpolicy.missing_field("key")
    auth = postpolicy.authenticate(fields, ctx.config.user_by_access_key)
    if auth is None:
        raise errors.AccessDenied("Anonymous access is not allowed on this server.")
    ctx.authenticated = auth
    # What dispatch checks for every other bucket operation, once the form said who this is: the
    # signer's bucket, or one whose policy may grant it the key (authorize_form, below).
    if (await ctx.backend.head_bucket(ctx.bucket)).owner != auth.user.user_id and (
        await ctx.backend.cached_bucket_config(ctx.bucket, POLICY, load_policy) is None
    ):
        raise errors.AccessDenied()
    if part is None:
        raise errors.InvalidArgument(
            "POST requires exactly one file upload per request.", ArgumentName="file", ArgumentValue="0"
        )
    # Variables are expanded before the policy is checked: conditions match the expanded values.
    fields.expand_filename(_file_name(part))
    policy = postpolicy.parse_policy(fields.values["policy"])
    sizes = postpolicy.check_policy(policy, fields, ctx.bucket, time.time())
    key = fields.values["key"]
    if not key:
        raise postpolicy.missing_field("key")  # "${filename}" of a file chosen without a name
    # The bucket policy's s3:PutObject on the key; a grant runs as the bucket's owner.
    ctx.authenticated = await authorize_form(ctx, auth, key, fields.values)
    meta = _write_meta(fields)
    # A form's route has no key: the form names it.
    meta.encryption = await write_encryption(ctx, fields.values, object_key=key)
    acl = fields.get("acl")
    if acl is not None:
        # Before the file is read: an ACL that grants anyone but the owner is refused, as
        # PutObject's x-amz-acl is. (PostObject documents no x-amz-grant-* fields: any are ignored.)
        await check_upload_acl(ctx, {"x-amz-acl": acl})
    body = _file_body(part, fields, meta, sizes)
    info = await ctx.backend.put_object(ctx.bucket, key, body, meta)
    return _answer(ctx, fields, key, info)


# -- the form ------------------------------------------------------------------------------------


def _malformed(exc: Exception) -> errors.S3Error:
    if isinstance(exc, (PayloadEncodingError, ConnectionResetError)):
        return errors.IncompleteBody()  # the body ended before its Content-Length
    return errors.MalformedPOSTRequest()


async def _read_form(request: web.Request) -> tuple[list[tuple[str, str]], BodyPartReader | None]:
    """The fields before the file, in order, and the file part (None when the form has none)."""
    mimetype = parse_mimetype(request.headers.get(hdrs.CONTENT_TYPE, ""))
    if (mimetype.type, mimetype.subtype) != ("multipart", "form-data"):
        raise errors.PreconditionFailed(Condition=_NOT_A_FORM)
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):  # no boundary, or one over 70 characters
        raise errors.MalformedPOSTRequest() from None
    pairs: list[tuple[str, str]] = []
    budget = MAX_PRE_DATA
    while True:
        try:
            part = await reader.next()
        except _READ_ERRORS as exc:
            raise _malformed(exc) from None
        if part is None:
            return pairs, None
        if not isinstance(part, BodyPartReader):
            raise errors.MalformedPOSTRequest()  # a nested multipart/* part
        name = part.name
        if name is None or not _is_utf8(name):
            raise errors.MalformedPOSTRequest()
        # Only a form-data part named "file" is the file; anything else is a field, and counts
        # against the limit (S3 answers a misnamed file part with MaxPostPreDataLengthExceeded).
        disposition, _ = parse_content_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
        if name.lower() == "file" and disposition == "form-data":
            return pairs, part
        # The part's header lines count too: the limit is on everything before the file.
        budget -= sum(len(k) + len(v) + 4 for k, v in part.headers.items())
        data = await _read_field(part, budget)
        budget -= len(data)
        try:
            pairs.append((name, data.decode(part.get_charset("utf-8"))))
        except (LookupError, UnicodeDecodeError):
            raise errors.MalformedPOSTRequest() from None


def _is_utf8(text: str) -> bool:
    """Whether header text aiohttp decoded was UTF-8 (other bytes come through as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _file_name(part: BodyPartReader) -> str | None:
    """The file part's filename as the client sent it. Browsers escape only '"', CR and LF (as
    %22, %0D, %0A) and send a Windows path's backslashes as they are, which S3 cuts the name at;
    aiohttp's parser would read those backslashes as quoted-pair escapes and drop them."""
    m = _FILENAME.search(part.headers.get(hdrs.CONTENT_DISPOSITION, ""))
    if m is None:
        name = part.filename  # none at all, or only an RFC 5987 filename*= (RFC 7578 forbids it)
    else:
        name = m.group(1) if m.group(1) is not None else m.group(2)
    if name is not None and not _is_utf8(name):
        raise errors.MalformedPOSTRequest()
    return name


def _too_much_form() -> errors.S3Error:
    return errors.MaxPostPreDataLengthExceeded(MaxPostPreDataLengthBytes=MAX_PRE_DATA)


async def _read_field(part: BodyPartReader, budget: int) -> bytes:
    if budget < 0:
        raise _too_much_form()
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await part.read_chunk(FIELD_CHUNK)
        except _READ_ERRORS as exc:
            raise _malformed(exc) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > budget:
            raise _too_much_form()
        chunks.append(chunk)


# -- what is written -----------------------------------------------------------------------------


def _write_meta(fields: Fields) -> WriteMeta:
    """Form fields play the part PutObject's headers do (Content-Type, Cache-Control,
    x-amz-meta-*, x-amz-storage-class...); an absent Content-Type leaves the object to be served
    as binary/octet-stream, as S3 does (the file part's own Content-Type is not used)."""
    meta = write_meta(fields.values, with_tags=False)
    for name in fields.values:
        if name.startswith("x-amz-meta-") and not _TOKEN.fullmatch(name):
            raise errors.InvalidArgument(
                "Metadata names must be HTTP header names.", ArgumentName=fields.spelled[name], ArgumentValue=""
            )
        if (name in meta.headers or name.startswith("x-amz-meta-")) and _NOT_IN_HEADER.search(fields.values[name]):
            raise errors.InvalidArgument(
                "The field's value holds characters an HTTP header cannot.", ArgumentName=fields.spelled[name]
            )
    tagging = fields.get("tagging")
    if tagging is not None:
        meta.tags = validate_tags(s3xml.parse_tagging(tagging.encode("utf-8")))
    acl = fields.get("acl")
    # S3 refuses an ACL it does not know, naming the field; what a known one grants is judged
    # in post_object (acl.check_upload_acl).
    if acl is not None and acl not in OBJECT_CANNED:
        raise errors.InvalidArgument(ArgumentName="acl", ArgumentValue=acl)
    return meta


def _file_body(part: BodyPartReader, fields: Fields, meta: WriteMeta, sizes: SizeRange | None) -> FileBody:
    given = declared_checksums(fields.values.items(), "field")
    if len(given) > 1:
        raise errors.InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    requested = meta.checksum_algorithm
    if requested is not None and (not given or given[0][0] != requested):
        # "If a value is specified, you must include the matching checksum header."
        raise errors.InvalidRequest(
            f"x-amz-checksum-algorithm {requested} requires the field x-amz-checksum-{requested.lower()}."
        )
    algorithm, expected = given[0] if given else (DEFAULT_CHECKSUM, None)
    content_md5 = fields.get("content-md5")
    return FileBody(
        part,
        low=sizes.low if sizes is not None else 0,
        high=min(sizes.high, MAX_PUT_SIZE) if sizes is not None else MAX_PUT_SIZE,
        content_md5=decode_content_md5(content_md5) if content_md5 is not None else None,
        checksum_algorithm=algorithm,
        checksum_value=expected,
    )


class FileBody:
    """The form's file part as a storage ``Body``: streamed as it arrives, held to the policy's
    size range while it streams (storage then discards what it wrote), and checked against the
    form's Content-MD5 and x-amz-checksum-* in ``finish``."""

    # Unknown until the part ends, so storage always takes its streaming (temp file) path.
    decoded_length: int | None = None

    def __init__(
        self,
        part: BodyPartReader,
        *,
        low: int,
        high: int,
        content_md5: bytes | None,
        checksum_algorithm: str,
        checksum_value: str | None,
    ) -> None:
        self._part = part
        self._low = low
        self._high = high
        self._content_md5 = content_md5
        self.checksum_algorithm = checksum_algorithm
        self._checksum_value = checksum_value
        self.declared_checksum = checksum_algorithm if checksum_value is not None else None
        self.digests_wanted: frozenset[str] = frozenset({ALGORITHM_DIGEST[checksum_algorithm]})
        self.size = 0
        self._iterated = False
        self._completed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterated:
            raise RuntimeError("a form's file can be iterated only once")
        self._iterated = True
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await self._part.read_chunk(FILE_CHUNK)
            except _READ_ERRORS as exc:
                raise _malformed(exc) from None
            if not chunk:
                if not self._part.at_eof():
                    # The body ended inside the file: no boundary closed it.
                    raise errors.MalformedPOSTRequest()
                break
            self.size += len(chunk)
            if self.size > self._high:
                # The rest is never read: its size is unknown, so S3's ProposedSize is left out.
                raise errors.EntityTooLarge(
                    "Your proposed upload exceeds the maximum allowed size", MaxSizeAllowed=self._high
                )
            yield chunk
        if self.size < self._low:
            raise errors.EntityTooSmall(
                "Your proposed upload is smaller than the minimum allowed size",
                ProposedSize=self.size,
                MinSizeAllowed=self._low,
            )
        self._completed = True

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        if not self._completed:
            raise errors.IncompleteBody()
        if self._content_md5 is not None and digests["md5"] != self._content_md5:
            raise errors.BadDigest(ExpectedDigest=b64(self._content_md5), CalculatedDigest=b64(digests["md5"]))
        algorithm = self.checksum_algorithm
        computed = b64(digests[ALGORITHM_DIGEST[algorithm]])
        if self._checksum_value is not None and computed != self._checksum_value:
            raise errors.BadDigest(f"The {algorithm} you specified did not match the calculated checksum.")
        return {algorithm: computed}


# -- the answer ----------------------------------------------------------------------------------


def _object_url(ctx: Context, key: str) -> str:
    # S3 percent-encodes the whole key here, '/' included.
    path = quote(key, safe="")
    if not ctx.route.vhost:
        path = f"{quote(ctx.bucket, safe='')}/{path}"
    return f"{ctx.request.scheme}://{ctx.request.host}/{path}"


def _redirect_url(target: str, bucket: str, key: str, etag: str) -> str | None:
    """``target`` with bucket, key and etag appended to its query (form-encoded, after any query
    it has); None for a URL S3 cannot use (relative, or not http/https), which it ignores."""
    try:
        parts = urlsplit(target)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or _NOT_IN_HEADER.search(target):
        return None
    added = urlencode([("bucket", bucket), ("key", key), ("etag", etag)])
    return urlunsplit(parts._replace(query=f"{parts.query}&{added}" if parts.query else added))


def _answer(ctx: Context, fields: Fields, key: str, info: ObjectInfo) -> web.StreamResponse:
    etag = f'"{info.etag}"'
    location = _object_url(ctx, key)
    headers = {"ETag": etag, "Location": location, **checksum_headers(info.checksums, info.checksum_type), **info.encryption.headers()}
    target = fields.get("success_action_redirect") or fields.get("redirect")
    redirect = _redirect_url(target, ctx.bucket, key, etag) if target else None
    if redirect is not None:
        headers["Location"] = redirect
        return web.Response(status=303, headers=headers)
    status = fields.get("success_action_status")
    if status == "201":
        return xml_response(s3xml.post_response(location, ctx.bucket, key, info.etag), status=201, headers=headers)
    # 200 and 204 answer with no body; any other value counts as absent.
    return web.Response(status=200 if status == "200" else 204, headers=headers)
