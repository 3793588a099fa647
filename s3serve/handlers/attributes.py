"""GetObjectAttributes: what HeadObject and ListParts tell about a finished object, in one XML answer."""

from __future__ import annotations

from aiohttp import web

from .. import errors, s3xml
from ..storage.base import ObjectInfo, PartInfo
from .common import Context, check_read_conditions, check_version_id, http_date, int_param, xml_response
from .encryption import check_object_key, read_key

ATTRIBUTES = frozenset({"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"})
MAX_PARTS = 1000  # x-amz-max-parts' default and ceiling, as for ListParts


def requested_attributes(values: list[str]) -> frozenset[str]:
    """The x-amz-object-attributes header(s) -> attribute names. S3 answers a missing or empty
    header with the same InvalidArgument as an unknown name."""
    names = [name.strip() for value in values for name in value.split(",")]
    names = [name for name in names if name]
    if not names:
        raise errors.InvalidArgument("Invalid attribute name specified.")
    for name in names:
        if name not in ATTRIBUTES:
            raise errors.InvalidArgument(
                "Invalid attribute name specified.", ArgumentName="x-amz-object-attributes", ArgumentValue=name
            )
    return frozenset(names)


def parts_page(info: ObjectInfo, marker: int, max_parts: int) -> tuple[list[PartInfo], bool] | None:
    """The parts listed after ``marker`` and whether more follow; None when S3 would give only
    their count: it lists the parts of an object that has an additional checksum, and s3serve
    gives every object it assembles one."""
    if info.parts is None or not info.checksums:
        return None
    after = [part for part in info.parts if part.number > marker]
    return after[:max_parts], len(after) > max_parts


async def get_object_attributes(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    wanted = requested_attributes(ctx.request.headers.getall("x-amz-object-attributes", []))
    max_parts = int_param(ctx.headers, "x-amz-max-parts", MAX_PARTS, 0, MAX_PARTS)
    marker = int_param(ctx.headers, "x-amz-part-number-marker", 0, 0)
    given = read_key(ctx)
    info = await ctx.backend.head_object(ctx.bucket, ctx.key)
    check_object_key(info.encryption, given)
    try:
        # The operation's reference describes HeadObject's conditions for it, and MinIO checks them.
        check_read_conditions(ctx.headers, info)
    except errors.NotModified as exc:
        exc.headers.update({"ETag": f'"{info.etag}"', "Last-Modified": http_date(info.last_modified)})
        raise
    page = parts_page(info, marker, max_parts) if "ObjectParts" in wanted else None
    body = s3xml.object_attributes(
        info,
        wanted,
        parts=page[0] if page is not None else None,
        part_number_marker=marker,
        max_parts=max_parts,
        is_truncated=page is not None and page[1],
    )
    return xml_response(body, headers={"Last-Modified": http_date(info.last_modified)})
