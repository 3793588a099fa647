"""Object operations: Put/Get/Head/Delete, DeleteObjects, CopyObject, RenameObject, tagging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import BinaryIO, NamedTuple
from urllib.parse import unquote

from aiohttp import web

from .. import errors, s3xml
from ..payload import RequestBody, ascii_int, make_body
from ..storage.base import (
    SSE_HEADER,
    WEBSITE_REDIRECT,
    HeaderPrecondition,
    ObjectInfo,
    ObjectReader,
    PartInfo,
    Precondition,
    WriteMeta,
)
from ..storage.ssec import CustomerKey
from .common import (
    Context,
    answer_in_time,
    check_read_conditions,
    check_version_id,
    checksum_headers,
    copy_directive,
    etag_matches,
    header_checks,
    http_date,
    object_headers,
    read_precondition,
    refuse_object_lock,
    validate_tags,
    write_meta,
    write_precondition,
    xml_response,
)
from .encryption import (
    check_object_key,
    check_read_headers,
    described_without_key,
    source_key,
    source_precondition,
    write_encryption,
)

log = logging.getLogger("s3serve")

MAX_PUT_SIZE = 5 * 1024**3
# Bodies up to this size are read and written in one go; larger ones go out with sendfile.
SMALL_BODY = 64 * 1024
# The last bytes of a sendfile body go out only after a check that no other program wrote to the
# file meanwhile: until the last byte is out, the client can still be told (by a connection ended
# short of Content-Length) that what it got is not the object. One page: what the kernel reads
# after the check is what such a check cannot cover.
HELD_BACK = 4096
# Over TLS (_copy_tls): the size of a read, and the largest one made on the event loop's thread.
TLS_CHUNK = 256 * 1024
INLINE_READ = 64 * 1024
# A small object that another program keeps changing while it is read is looked up again this
# many times, then answered with a 503 to retry later.
READ_ATTEMPTS = 3
MAX_PARTS = 10000

# ASCII digits only: \d alone also takes other scripts' digits.
_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.ASCII)

# The headers an upload or CreateBucket names an ACL with, each grant header with the permission
# it grants. Here, not in acl.py, so that requests without them never load acl.py (a lazy
# module, see handlers) nor read the bucket's Object Ownership.
GRANT_HEADERS = {
    "x-amz-grant-read": "READ",
    "x-amz-grant-write": "WRITE",
    "x-amz-grant-read-acp": "READ_ACP",
    "x-amz-grant-write-acp": "WRITE_ACP",
    "x-amz-grant-full-control": "FULL_CONTROL",
}
ACL_HEADERS = ("x-amz-acl", *GRANT_HEADERS)


def names_acl(headers: Mapping[str, str]) -> bool:
    # An empty value names nothing, as acl.requested_acl_is_owner_only reads it.
    return any(headers.get(name) for name in ACL_HEADERS)


async def check_acl(ctx: Context) -> None:
    """Refuse an upload whose ACL grants anyone but the owner (acl.check_upload_acl), before a
    byte of it is stored; an upload without ACL headers costs the lookups of names_acl alone."""
    if names_acl(ctx.headers):
        from .acl import check_upload_acl

        await check_upload_acl(ctx)


class PutRequest(NamedTuple):
    body: RequestBody
    meta: WriteMeta
    precondition: Precondition | None


async def put_object_headers(ctx: Context) -> PutRequest:
    """PutObject's checks that need no body: run before the 100 Continue of a client that
    expects one (app._expect_handler), so a refused upload is never sent."""
    length = ctx.headers.get("x-amz-decoded-content-length") or ctx.request.headers.get("Content-Length")
    size = ascii_int(length) if length is not None else None
    if size is not None and size > MAX_PUT_SIZE:
        raise errors.EntityTooLarge(ProposedSize=length, MaxSizeAllowed=MAX_PUT_SIZE)
    meta = write_meta(ctx.headers)
    refuse_object_lock(ctx.headers)
    meta.encryption = await write_encryption(ctx)
    precondition = write_precondition(ctx.headers)
    body = make_body(ctx.request.content, ctx.headers, ctx.auth)
    # After make_body, which reads nothing but answers a body without a findable end with a
    # closed connection; a refusal here leaves the unread body to aiohttp, which drains it.
    await check_acl(ctx)
    # Last: storage, which refused such a key before it was asked here, did so after every
    # check above; a request that breaks two rules keeps the error it got.
    ctx.backend.check_key(ctx.key, size)
    return PutRequest(body, meta, precondition)


async def put_object(ctx: Context) -> web.StreamResponse:
    body, meta, precondition = await header_checks(ctx, put_object_headers)
    info = await ctx.backend.put_object(ctx.bucket, ctx.key, body, meta, precondition)
    headers = {"ETag": f'"{info.etag}"', **checksum_headers(info.checksums, info.checksum_type), **info.encryption.headers()}
    return web.Response(status=200, headers=headers)


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """A single 'bytes=' range -> (first, last) inclusive; None when S3 would ignore the header."""
    m = _RANGE_RE.fullmatch(value)
    if not m:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:
        suffix = _number(last)
        if suffix == 0:
            raise errors.InvalidRange(RangeRequested=value, ActualObjectSize=size)
        if size == 0:
            return None  # S3 answers the whole (empty) object: there is no last byte to name
        return max(0, size - suffix), size - 1
    start = _number(first)
    end = _number(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise errors.InvalidRange(RangeRequested=value, ActualObjectSize=size)
    return start, min(end, size - 1)


def _number(digits: str) -> int:
    number = ascii_int(digits)
    assert number is not None  # the caller's pattern matched ASCII digits
    return number


def _part_range(info: ObjectInfo, raw: str) -> tuple[int, int, int | None, PartInfo | None]:
    """partNumber=N -> (offset, length, parts count, part) of that part."""
    number = ascii_int(raw) or 0
    if not 1 <= number <= MAX_PARTS:
        raise errors.InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=raw,
        )
    if not info.parts:
        if number != 1:
            raise errors.InvalidPartNumber(PartNumberRequested=number, ActualPartCount=1)
        return 0, info.size, None, None
    # Parts keep the numbers they were uploaded with (1, 3, 5 stays 1, 3, 5).
    offset = 0
    for part in info.parts:
        if part.number == number:
            return offset, part.size, len(info.parts), part
        offset += part.size
    raise errors.InvalidPartNumber(PartNumberRequested=number, ActualPartCount=len(info.parts))


def _checksums_of(info: ObjectInfo, offset: int, length: int, part: PartInfo | None) -> tuple[dict[str, str], str | None]:
    """The checksums that describe the bytes answered, as S3 sends them: a part of a composite
    object has its own; the object's describe it whole, and so only a range or part that covers
    all of it (a FULL_OBJECT checksum says nothing of one part of several)."""
    if part is not None and info.checksum_type == "COMPOSITE" and part.checksums:
        return part.checksums, "COMPOSITE"
    if offset == 0 and length == info.size:
        return info.checksums, info.checksum_type
    return {}, None


class _Described(ObjectReader):
    """What HEAD reads: the object's description without its bytes."""

    def __init__(self, info: ObjectInfo) -> None:
        self.info = info

    def fileno(self) -> int | None:
        return None

    async def iter_range(self, offset: int, length: int) -> AsyncIterator[bytes]:
        return
        yield b""  # an async generator that yields nothing

    def close(self) -> None:
        return None


async def get_object(ctx: Context) -> web.StreamResponse:
    return await _get(ctx, head=False)


async def head_object(ctx: Context) -> web.StreamResponse:
    return await _get(ctx, head=True)


def _changed(reader: ObjectReader) -> bool:
    """Whether another program wrote to the file being read since it was looked up (only a
    local file can change under a reader; see DiskReader.changed)."""
    check = getattr(reader, "changed", None)
    return check is not None and bool(check())


async def _get(ctx: Context, *, head: bool) -> web.StreamResponse:
    given = check_read_headers(ctx)
    check_version_id(ctx.query)
    part_number = ctx.query.get("partNumber")
    range_header = ctx.headers.get("Range")
    if part_number is not None and range_header is not None:
        raise errors.InvalidRequest("Cannot specify both Range header and partNumber query parameter")
    for _ in range(READ_ATTEMPTS):
        response = await _answer(ctx, head, part_number, range_header, given)
        if response is not None:
            return response
    log.warning("GET %s/%s: changed by another program on every read; answered 503", ctx.bucket, ctx.key)
    raise errors.SlowDown("The object is being changed on the server's disk; please retry.")


async def _answer(
    ctx: Context, head: bool, part_number: str | None, range_header: str | None, given: CustomerKey | None
) -> web.StreamResponse | None:
    """The answer to a GET or HEAD; None when a small body read did not match its description
    (another program wrote to the file meanwhile): the caller looks it up again."""
    reader: ObjectReader
    if head:
        # HEAD never needs the bytes: an upstream cache answers it with a HEAD of its own, not a GET.
        reader = _Described(await ctx.backend.head_object(ctx.bucket, ctx.key))
    else:
        reader = await ctx.backend.open_object(ctx.bucket, ctx.key)
    with reader:
        info = reader.info
        check_object_key(info.encryption, given)  # before anything about the object is told
        try:
            check_read_conditions(ctx.headers, info)
        except errors.NotModified as exc:
            exc.headers.update({"ETag": f'"{info.etag}"', "Last-Modified": http_date(info.last_modified)})
            raise
        offset, length, status, parts, part = 0, info.size, 200, None, None
        if part_number is not None:
            offset, length, parts, part = _part_range(info, part_number)
            # An empty object has no byte range to name: S3 answers 200 without Content-Range.
            status = 206 if info.size else 200
        elif range_header is not None:
            span = parse_range(range_header, info.size)
            if span is not None:
                offset, length, status = span[0], span[1] - span[0] + 1, 206
        headers = object_headers(info, ctx, checksums=False, part_count=parts)
        if ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            headers.update(checksum_headers(*_checksums_of(info, offset, length, part)))
        if status == 206:
            headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{info.size}"
        if info.tag_count:  # on HEAD too: S3's HeadObject answers it (HeadObjectOutput.TagCount)
            headers["x-amz-tagging-count"] = str(info.tag_count)
        fd = reader.fileno()
        if not head and fd is not None and length <= SMALL_BODY:
            # One pread and one write beat sendfile's extra syscalls and event-loop round trips
            # for small bodies (measured in bench/RESULTS.md).
            body = os.pread(fd, length, offset)
            if len(body) != length or _changed(reader):
                return None  # cut short or rewritten since the lookup: its ETag is not these bytes
            return web.Response(status=status, headers=headers, body=body)
        if head:
            # A plain Response keeps an explicit Content-Length on HEAD and sends no body: cheaper
            # than a StreamResponse's prepare + write_eof round.
            headers["Content-Length"] = str(length)
            return web.Response(status=status, headers=headers)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = length
        await response.prepare(ctx.request)
        try:
            if not head and length:
                await _send(ctx, response, reader, offset, length)
            await response.write_eof()
        except ConnectionError:
            # The client left mid-body: drop the connection; nothing to answer and nothing to log
            # (raised out of the handler, aiohttp would log it with a traceback).
            response.force_close()
            if ctx.request.transport is not None:
                ctx.request.transport.abort()
        except errors.S3Error:
            # The body broke off after the status line and Content-Length went out (the upstream
            # S3 of a cache failing mid-way, a file cut short; logged where it failed): no error
            # can follow, and one written now would be read as part of the body on a connection
            # left open. End the connection short of the length instead, as S3 does.
            response.force_close()
            if ctx.request.transport is not None:
                ctx.request.transport.abort()
        return response


async def _sendfile(
    response: web.StreamResponse, transport: asyncio.WriteTransport, file: BinaryIO, offset: int, count: int
) -> int:
    """sendfile of ``count`` bytes from ``offset``; fewer only when the file ends first.

    What the socket takes at once goes straight in: loop.sendfile costs event-loop round trips
    even when nothing has to wait (it sets its result from a later writability callback), and a
    body split in two around the check of _send would pay them twice. Only on a plain socket
    with nothing buffered in the transport (bytes must not overtake it). The rest goes through
    loop.sendfile, which waits for the socket. Over TLS, which must encrypt the bytes, they are
    read and written here (_copy_tls)."""
    if transport.get_extra_info("sslcontext") is not None:
        return await _copy_tls(response, file, offset, count)
    sent = 0
    sock = transport.get_extra_info("socket")
    if sock is not None and not transport.get_write_buffer_size():
        with contextlib.suppress(OSError):  # full (EAGAIN), or else: loop.sendfile does it or reports it
            sent = os.sendfile(sock.fileno(), file.fileno(), offset, count)
    if sent < count:
        sent += await asyncio.get_running_loop().sendfile(transport, file, offset + sent, count - sent)
    return sent


async def _copy_tls(response: web.StreamResponse, file: BinaryIO, offset: int, count: int) -> int:
    """The file's bytes through a TLS connection, read here (in a worker thread but for small
    reads) and written with the response's flow control. Not asyncio's sendfile fallback, which
    does the same by swapping the transport's protocol, and breaks when the connection is lost
    under it (an AttributeError in restore, a RuntimeError in eof_received, a warning per write)."""
    sent = 0
    while sent < count:
        size = min(TLS_CHUNK, count - sent)
        if size <= INLINE_READ:
            chunk = os.pread(file.fileno(), size, offset + sent)
        else:
            chunk = await asyncio.to_thread(os.pread, file.fileno(), size, offset + sent)
        if not chunk:
            break  # the file ends first
        await response.write(chunk)
        sent += len(chunk)
    return sent


async def _send(ctx: Context, response: web.StreamResponse, reader: ObjectReader, offset: int, length: int) -> None:
    fd = reader.fileno()
    transport = ctx.request.transport
    if transport is None:
        raise ConnectionResetError("Connection lost")
    sent = 0
    if fd is not None:
        # The kernel copies file -> socket; over TLS the bytes pass through here (_copy_tls).
        held = min(HELD_BACK, length - 1)
        with open(fd, "rb", closefd=False) as file:
            sent = await _sendfile(response, transport, file, offset, length - held)
            if sent == length - held:
                if _changed(reader):
                    # Written to in place by another program while it was sent: what went out
                    # may mix two versions under one ETag. Ending short of Content-Length is
                    # the only way left to tell the client the body is not whole.
                    log.warning("GET %s/%s: the file was rewritten by another program while it was "
                                "sent; connection ended", ctx.bucket, ctx.key)
                    raise errors.InternalError()
                sent += await _sendfile(response, transport, file, offset + sent, held)
    else:
        async for chunk in reader.iter_range(offset, length):
            sent += len(chunk)
            await response.write(chunk)
    if sent < length:
        # The file was cut short by another program while it was sent (sendfile stops at its
        # end without an error): the Content-Length cannot be met, so the caller ends the
        # connection rather than leave the client waiting for bytes that never come.
        log.warning("GET %s/%s: the file ended %d bytes early (changed by another program?)",
                    ctx.bucket, ctx.key, length - sent)
        raise errors.InternalError()


async def delete_object(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    if_match = ctx.headers.get("If-Match")
    await ctx.backend.delete_object(ctx.bucket, ctx.key, delete_precondition(if_match) if if_match is not None else None)
    return web.Response(status=204)


def delete_precondition(if_match: str) -> HeaderPrecondition:
    """S3's conditional delete: If-Match (an ETag, or * for "exists") on DeleteObject, or an
    Object's ETag in DeleteObjects. An absent object fails it with NoSuchKey."""

    def check(current: ObjectInfo | None) -> None:
        if current is None:
            raise errors.NoSuchKey()
        if not etag_matches(if_match, current.etag):
            raise errors.PreconditionFailed(Condition="If-Match")

    return HeaderPrecondition(check, {"If-Match": if_match})


async def delete_objects(ctx: Context) -> web.StreamResponse:
    from .policy import key_checker  # handlers.policy imports this module

    keys, quiet = s3xml.parse_delete(await ctx.read_xml_body(digest_required=True))
    # S3 decides s3:DeleteObject per key: a key the bucket policy denies is one more <Error>.
    may_delete = await key_checker(ctx, ctx.bucket, "s3:DeleteObject")
    deleted: list[tuple[str, str | None]] = []
    failed: list[tuple[str, str | None, str, str]] = []
    for key, version, etag in keys:
        try:
            if not may_delete(key):
                raise errors.AccessDenied()
            if version is not None and version != "null":
                raise errors.NoSuchVersion("The specified version does not exist.")
            await ctx.backend.delete_object(ctx.bucket, key, delete_precondition(etag) if etag is not None else None)
        except errors.S3Error as exc:
            failed.append((key, version, exc.code, exc.message))
        else:
            deleted.append((key, version))
    return xml_response(s3xml.delete_result([] if quiet else deleted, failed))


def parse_copy_source(value: str) -> tuple[str, str]:
    """'/bucket/some%20key?versionId=null' -> ('bucket', 'some key')."""
    source, _, query = value.partition("?")
    if query:
        version = query.split("versionId=", 1)[-1] if "versionId=" in query else None
        if version not in (None, "null"):
            raise errors.NoSuchVersion()
    try:
        decoded = unquote(source, errors="strict")
    except UnicodeDecodeError:
        raise errors.InvalidArgument("Invalid copy source encoding", ArgumentName="x-amz-copy-source") from None
    bucket, _, key = decoded.lstrip("/").partition("/")
    if not bucket or not key:
        raise errors.InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source",
            ArgumentValue=value,
        )
    return bucket, key


async def check_source_bucket(ctx: Context, bucket: str, key: str) -> None:
    """A copy's source: s3:GetObject on it for the request's signer, by the source bucket's owner
    and policy (NoSuchBucket for a missing one)."""
    from .policy import check_source  # handlers.policy imports this module

    await check_source(ctx, bucket, key)


async def copy_object(ctx: Context) -> web.StreamResponse:
    src_bucket, src_key = parse_copy_source(ctx.headers["x-amz-copy-source"])
    await check_source_bucket(ctx, src_bucket, src_key)
    metadata_directive = copy_directive(ctx.headers, "x-amz-metadata-directive")
    tagging_directive = copy_directive(ctx.headers, "x-amz-tagging-directive")
    refuse_object_lock(ctx.headers)
    await check_acl(ctx)
    same = (src_bucket, src_key) == (ctx.bucket, ctx.key)
    # S3 never copies the website redirect location: the copy has the one the request gives.
    redirect = ctx.headers.get(WEBSITE_REDIRECT)
    source = source_key(ctx)
    encryption = await write_encryption(ctx, action="CopyObject")
    changes = "x-amz-storage-class" in ctx.headers or redirect is not None or SSE_HEADER in ctx.headers
    # A checksum algorithm named is one the copy gets, whatever the directive: the source's is
    # copied only when none is named; a copy onto itself that adds one is allowed.
    changes = changes or "x-amz-checksum-algorithm" in ctx.headers
    # An SSE-C key given for either side changes the encryption (a new key, or SSE-C no more).
    changes = changes or source is not None or (encryption is not None and encryption.is_customer)
    if same and metadata_directive == "COPY" and not changes and tagging_directive == "COPY":
        raise errors.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without changing "
            "the object's metadata, storage class, website redirect location or encryption attributes."
        )
    meta: WriteMeta | None = None
    if metadata_directive == "REPLACE":
        meta = write_meta(ctx.headers, with_tags=tagging_directive == "REPLACE")
    elif tagging_directive == "REPLACE" or changes or encryption is not None:
        # An encryption other than S3's default is the copy's own (never the source's): it
        # needs a WriteMeta to travel in.
        # Keep the source's metadata but change tags, storage class or redirect location.
        src = await ctx.backend.head_object(src_bucket, src_key)
        given = write_meta(ctx.headers, with_tags=tagging_directive == "REPLACE")
        headers = {name: value for name, value in src.headers.items() if name != WEBSITE_REDIRECT}
        meta = WriteMeta(
            headers=headers | ({WEBSITE_REDIRECT: redirect} if redirect is not None else {}),
            user_meta=dict(src.user_meta),
            tags=given.tags,
            storage_class=given.storage_class if "x-amz-storage-class" in ctx.headers else src.storage_class,
            checksum_algorithm=given.checksum_algorithm,
        )
    if meta is not None:
        meta.encryption = encryption
    if meta is not None and tagging_directive == "COPY" and meta.tags is None:
        meta.tags = await ctx.backend.get_object_tagging(src_bucket, src_key)
    elif meta is not None and meta.tags is None:
        meta.tags = {}  # REPLACE without x-amz-tagging: S3's default tag-set is the empty one
    work = ctx.backend.copy_object(
        src_bucket,
        src_key,
        ctx.bucket,
        ctx.key,
        meta,
        src_precondition=source_precondition(read_precondition(ctx.headers, "x-amz-copy-source-"), source),
        precondition=write_precondition(ctx.headers),
    )
    return await answer_in_time(
        ctx,
        work,
        lambda info: (
            s3xml.copy_object_result(info),
            {**checksum_headers(info.checksums, info.checksum_type), **info.encryption.headers()},
        ),
    )


def _destination_precondition(ctx: Context) -> Precondition | None:
    """If-Match / If-None-Match (as on writes) and If-(Un)Modified-Since on the destination."""
    base = write_precondition(ctx.headers)
    dates = {name: ctx.headers[name] for name in ("if-modified-since", "if-unmodified-since") if name in ctx.headers}
    if not dates:
        return base

    def check(current: ObjectInfo | None) -> None:
        if base is not None:
            base(current)
        if current is not None:
            try:
                check_read_conditions(dates, current)
            except errors.NotModified:
                raise errors.PreconditionFailed(Condition="If-Modified-Since") from None

    return check


async def rename_object(ctx: Context) -> web.StreamResponse:
    source = ctx.headers.get("x-amz-rename-source")
    if not source:
        raise errors.InvalidRequest("x-amz-rename-source is required for RenameObject.")
    src_bucket, src_key = parse_copy_source(source)
    if src_bucket != ctx.bucket:
        raise errors.InvalidRequest("RenameObject moves an object within one bucket; the source names another bucket.")
    from .policy import key_checker  # handlers.policy imports this module

    # The destination's s3:PutObject was dispatch's; the source goes away.
    if not (await key_checker(ctx, src_bucket, "s3:DeleteObject"))(src_key):
        raise errors.AccessDenied()
    await ctx.backend.rename_object(
        ctx.bucket,
        src_key,
        ctx.key,
        src_precondition=read_precondition(ctx.headers, "x-amz-rename-source-"),
        precondition=_destination_precondition(ctx),
        client_token=ctx.headers.get("x-amz-client-token"),
    )
    return web.Response(status=200)


async def get_object_tagging(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    tags = await ctx.backend.get_object_tagging(ctx.bucket, ctx.key)
    return xml_response(s3xml.tagging(tags))


async def put_object_tagging(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    tags = validate_tags(s3xml.parse_tagging(await ctx.read_xml_body()))
    await ctx.backend.put_object_tagging(ctx.bucket, ctx.key, tags)
    return web.Response(status=200)


async def delete_object_tagging(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    await ctx.backend.delete_object_tagging(ctx.bucket, ctx.key)
    return web.Response(status=204)


async def get_object_acl(ctx: Context) -> web.StreamResponse:
    await described_without_key(ctx)  # that it exists: an SSE-C object's ACL takes no key
    return xml_response(s3xml.acl(ctx.user.user_id, ctx.user.display_name))
