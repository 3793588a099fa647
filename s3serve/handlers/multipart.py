"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListMultipartUploads, ListParts."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import quote

from aiohttp import web

from .. import errors, s3xml
from ..checksums import ALGORITHM_DIGEST, check_part_checksum, valid_checksum
from ..payload import RequestBody, ascii_int, int_header, make_body
from ..sigv4 import joined_header
from ..storage.base import SSE_S3, ObjectInfo, PartInfo, Precondition
from ..storage.keys import check_key_size
from .common import (
    Context,
    XmlAnswer,
    answer_in_time,
    checksum_headers,
    checksum_type_of,
    header_checks,
    int_param,
    read_precondition,
    refuse_object_lock,
    url_encoding,
    write_meta,
    write_precondition,
    xml_response,
)
from .encryption import (
    answered,
    check_upload_key,
    refuse_write_only,
    source_key,
    source_precondition,
    write_encryption,
    write_key,
)
from .objects import check_acl, check_source_bucket, parse_copy_source

MAX_PART_NUMBER = 10000
MAX_PART_SIZE = 5 * 1024**3
MAX_LISTED = 1000
_COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)", re.ASCII)


def _upload_id(ctx: Context) -> str:
    upload_id = ctx.query.get("uploadId", "")
    if not upload_id:
        raise errors.NoSuchUpload(UploadId=upload_id)
    return upload_id


def _part_number(ctx: Context) -> int:
    raw = ctx.query.get("partNumber")
    if raw is None:
        raise errors.InvalidArgument("partNumber is required to upload a part.", ArgumentName="partNumber")
    number = ascii_int(raw)
    if number is None or not 1 <= number <= MAX_PART_NUMBER:
        raise errors.InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=raw,
        )
    return number


async def create_multipart_upload(ctx: Context) -> web.StreamResponse:
    meta = write_meta(ctx.headers)
    refuse_object_lock(ctx.headers)
    meta.encryption = await write_encryption(ctx)
    await check_acl(ctx)
    upload = await ctx.backend.create_multipart_upload(ctx.bucket, ctx.key, meta, ctx.user.user_id)
    headers = (upload.meta.encryption or SSE_S3).headers()
    if upload.meta.checksum_algorithm:
        headers["x-amz-checksum-algorithm"] = upload.meta.checksum_algorithm
    if upload.meta.checksum_type:
        headers["x-amz-checksum-type"] = upload.meta.checksum_type
    return xml_response(s3xml.initiate_multipart(ctx.bucket, ctx.key, upload.upload_id), headers=headers)


class PartRequest(NamedTuple):
    upload_id: str
    number: int
    body: RequestBody


async def upload_part_headers(ctx: Context) -> PartRequest:
    """UploadPart's checks that need no body, an upload that is not there (NoSuchUpload) among
    them: run before the 100 Continue of a client that expects one (app._expect_handler)."""
    upload_id, number = _upload_id(ctx), _part_number(ctx)
    length = ctx.headers.get("x-amz-decoded-content-length") or ctx.headers.get("Content-Length")
    size = ascii_int(length) if length is not None else None
    if size is not None and size > MAX_PART_SIZE:
        raise errors.EntityTooLarge(ProposedSize=length, MaxSizeAllowed=MAX_PART_SIZE)
    given = await write_key(ctx)
    refuse_write_only(ctx)
    # S3's limit, before the 100 Continue: a cache's upload lookup is its upstream's, after the
    # body. Not the backend's own rules for a write: a key this disk cannot hold has no upload,
    # which the lookup below answers (NoSuchUpload).
    check_key_size(ctx.key)
    # Looks the upload up (a local backend's upload.json); storage looks again as the part is
    # stored, for an upload completed or aborted since.
    upload = await check_upload_key(ctx, upload_id, given)
    body = make_body(ctx.request.content, ctx.headers, ctx.auth)
    if upload is not None:
        check_part_checksum(upload.meta.checksum_algorithm, upload.meta.checksum_type, body.declared_checksum)
    return PartRequest(upload_id, number, body)


async def upload_part(ctx: Context) -> web.StreamResponse:
    upload_id, number, body = await header_checks(ctx, upload_part_headers)
    part = await ctx.backend.upload_part(ctx.bucket, ctx.key, upload_id, number, body)
    headers = {"ETag": f'"{part.etag}"', **checksum_headers(part.checksums), **part.encryption.headers()}
    return web.Response(status=200, headers=headers)


def _copy_range(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    m = _COPY_RANGE.fullmatch(value.strip())
    first, last = (ascii_int(m.group(1)), ascii_int(m.group(2))) if m else (None, None)
    if first is None or last is None or first > last:
        raise errors.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last "
            "are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    return first, last


async def upload_part_copy(ctx: Context) -> web.StreamResponse:
    upload_id, number = _upload_id(ctx), _part_number(ctx)
    src_bucket, src_key = parse_copy_source(ctx.headers["x-amz-copy-source"])
    src_range = _copy_range(ctx.headers.get("x-amz-copy-source-range"))
    source = source_key(ctx)
    given = await write_key(ctx)
    refuse_write_only(ctx)
    await check_source_bucket(ctx, src_bucket, src_key)
    await check_upload_key(ctx, upload_id, given)
    work = ctx.backend.upload_part_copy(
        ctx.bucket,
        ctx.key,
        upload_id,
        number,
        src_bucket,
        src_key,
        src_range,
        src_precondition=source_precondition(read_precondition(ctx.headers, "x-amz-copy-source-"), source),
    )
    return await answer_in_time(ctx, work, lambda part: (s3xml.copy_part_result(part), part.encryption.headers()))


def _listed_parts(body: bytes) -> list[PartInfo]:
    parts = []
    for item in s3xml.parse_complete(body):
        raw = item.get("PartNumber", "")
        number = ascii_int(raw)
        if number is None:
            raise errors.MalformedXML()
        if not 1 <= number <= MAX_PART_NUMBER:
            raise errors.InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive",
                ArgumentName="PartNumber",
                ArgumentValue=raw,
            )
        etag = item.get("ETag", "").strip().strip('"')
        checksums = {
            name[len("Checksum") :]: value.strip()
            for name, value in item.items()
            if name.startswith("Checksum") and name[len("Checksum") :] in ALGORITHM_DIGEST
        }
        if len(checksums) > 1 or not all(valid_checksum(alg, value) for alg, value in checksums.items()):
            # S3's answer to a part checksum that is not one digest of its algorithm's size: it
            # never gets as far as comparing it with the stored part.
            raise errors.InvalidArgument(
                "Invalid Base64 or multiple checksums present in request",
                ArgumentName="Checksum",
                ArgumentValue="".join(f"{alg}:{value};" for alg, value in checksums.items()),
            )
        parts.append(PartInfo(number, 0, etag, 0.0, checksums))
    for before, after in zip(parts, parts[1:], strict=False):
        if after.number <= before.number:
            raise errors.InvalidPartOrder()
    return parts


def _object_size(ctx: Context) -> int | None:
    """The object's size a Complete names (x-amz-mp-object-size), for S3's check against the parts."""
    raw = ctx.headers.get("x-amz-mp-object-size")
    return None if raw is None else int_header("x-amz-mp-object-size", raw)


def _object_checksums(ctx: Context) -> dict[str, str]:
    """The whole-object checksums a Complete names, each a digest of its algorithm, with the
    part count of a composite one ("<base64>-<n>") or without; InvalidRequest otherwise, as S3
    answers a malformed value before it compares anything."""
    given: dict[str, str] = {}
    for name in ctx.headers:
        lower = name.lower()
        algorithm = lower[len("x-amz-checksum-") :].upper()
        if not lower.startswith("x-amz-checksum-") or algorithm not in ALGORITHM_DIGEST or algorithm in given:
            continue
        # A repeated header is one value, joined as signed: never the last one alone.
        value = (joined_header(ctx.headers, name) or "").strip()
        digest, dash, count = value.partition("-")
        if not valid_checksum(algorithm, digest) or (dash and not (count.isascii() and count.isdigit())):
            raise errors.InvalidRequest(f"Value for {lower} header is invalid.")
        given[algorithm] = value
    return given


class CompleteRequest(NamedTuple):
    upload_id: str
    precondition: Precondition | None


async def complete_multipart_upload_headers(ctx: Context) -> CompleteRequest:
    """CompleteMultipartUpload's checks before its list of parts is read."""
    upload_id = _upload_id(ctx)
    key = await write_key(ctx)
    refuse_write_only(ctx)
    await check_upload_key(ctx, upload_id, key, complete=True)
    return CompleteRequest(upload_id, write_precondition(ctx.headers))


async def complete_multipart_upload(ctx: Context) -> web.StreamResponse:
    upload_id, precondition = await header_checks(ctx, complete_multipart_upload_headers)
    parts = _listed_parts(await ctx.read_xml_body(object_checksums=True))
    given = _object_checksums(ctx)
    work = ctx.backend.complete_multipart_upload(
        ctx.bucket, ctx.key, upload_id, parts, precondition, given, checksum_type_of(ctx.headers), _object_size(ctx)
    )
    location = f"{ctx.request.scheme}://{ctx.request.host}/{quote(ctx.bucket)}/{quote(ctx.key)}"

    def answer(info: ObjectInfo) -> XmlAnswer:
        body = s3xml.complete_multipart(location, ctx.bucket, ctx.key, info)
        return body, {**checksum_headers(info.checksums, info.checksum_type), **answered(info.encryption)}

    return await answer_in_time(ctx, work, answer)


async def abort_multipart_upload(ctx: Context) -> web.StreamResponse:
    await ctx.backend.abort_multipart_upload(ctx.bucket, ctx.key, _upload_id(ctx))
    return web.Response(status=204)


async def list_multipart_uploads(ctx: Context) -> web.StreamResponse:
    url = url_encoding(ctx.query)
    prefix = ctx.query.get("prefix", "")
    delimiter = ctx.query.get("delimiter", "")
    key_marker = ctx.query.get("key-marker", "")
    # S3 ignores the upload-id marker without a key marker.
    upload_id_marker = ctx.query.get("upload-id-marker", "") if key_marker else ""
    max_uploads = int_param(ctx.query, "max-uploads", MAX_LISTED, 0, MAX_LISTED)
    page = await ctx.backend.list_multipart_uploads(
        ctx.bucket, prefix, delimiter, key_marker, upload_id_marker, max_uploads
    )
    names = {up.owner: ctx.display_name(up.owner) for up in page.uploads}
    body = s3xml.list_uploads(
        bucket=ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_id_marker=upload_id_marker,
        max_uploads=max_uploads,
        url=url,
        uploads=page.uploads,
        common_prefixes=page.common_prefixes,
        is_truncated=page.is_truncated,
        next_key_marker=page.next_key_marker,
        next_upload_id_marker=page.next_upload_id_marker,
        display_names=names,
    )
    return xml_response(body)


async def list_parts(ctx: Context) -> web.StreamResponse:
    upload_id = _upload_id(ctx)
    marker = int_param(ctx.query, "part-number-marker", 0, 0)
    max_parts = int_param(ctx.query, "max-parts", MAX_LISTED, 0, MAX_LISTED)
    page = await ctx.backend.list_parts(ctx.bucket, ctx.key, upload_id, marker, max_parts)
    body = s3xml.list_parts(
        bucket=ctx.bucket,
        upload=page.upload,
        parts=page.parts,
        part_number_marker=marker,
        next_part_number_marker=page.next_part_number_marker,
        max_parts=max_parts,
        is_truncated=page.is_truncated,
        display_name=ctx.display_name(page.upload.owner),
    )
    return xml_response(body)
