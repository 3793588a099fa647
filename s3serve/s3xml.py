"""S3 XML: one function per response shape, and parsers for the request bodies S3 accepts.

Rendering writes strings directly (listings of 1000 keys are on the hot path; a generic
dict-to-XML library costs several times more). Parsing uses xmltodict, with entities disabled.

xmltodict, expat and xml.sax are imported where they are first used: few requests carry an XML
body or a key that needs escaping, and importing them is ~10 ms of every start-up.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Collection, Iterable
from typing import Any

from . import errors
from .sigv4 import uri_encode_path
from .storage.base import BucketInfo, ObjectInfo, PartInfo, UploadInfo

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'


def iso8601(ts: float) -> str:
    """S3's timestamp format in XML bodies: 2009-10-12T17:50:30.000Z."""
    # S3 keeps times to the second, its milliseconds always .000, and a listing says what the
    # Last-Modified header says (both truncated). `aws s3 sync --exact-timestamps` sets a
    # download's mtime to the whole second and compares it with the listed time: listed
    # milliseconds made every sync download every file again.
    return f"{_iso_second(int(ts))}.000Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    # Listing pages repeat the same seconds many times over: strftime once per second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _esc(text: str) -> str:
    """Text of an element of a response. Most keys have nothing to escape: skip escape()'s
    passes for them (isprintable() is one C scan, False for every control character)."""
    if not text.isprintable():
        return escape(text).translate(_CONTROL_REFS)
    if "&" in text or "<" in text or ">" in text:
        return escape(text)
    return text


def _esc_plain(text: str) -> str:
    # ETags and storage classes (hex, a few names; an upstream's as it sent them) hold no
    # control characters: the hot path of a listing page skips _esc's scan for them.
    if "&" in text or "<" in text or ">" in text:
        return escape(text)
    return text


# A raw CR in XML text reaches the parser's caller as LF (end-of-line normalisation): a key
# holding one would be listed as another key. &#13; survives parsing, in responses and in the
# request bodies sent upstream alike.
_CR_REF = {0x0D: "&#13;"}
# The other control characters a key may hold (S3 accepts all but NUL) are not XML 1.0
# characters at all. S3 writes them in responses as character references (&#x1;), which strict
# parsers refuse as they would the raw byte; clients that need them ask for encoding-type=url.
# TAB and LF pass through unchanged. U+FFFE and U+FFFF, valid in a UTF-8 key, are no XML
# characters either.
_CONTROL_REFS = {c: f"&#x{c:X};" for c in (*range(0x20), 0xFFFE, 0xFFFF) if c not in (0x09, 0x0A)} | _CR_REF


def escape(text: str) -> str:
    from xml.sax.saxutils import escape as sax_escape

    escaped = sax_escape(text)
    return escaped.translate(_CR_REF) if "\r" in escaped else escaped


def _t(tag: str, value: object) -> str:
    return f"<{tag}>{_esc(str(value))}</{tag}>"


def _b(value: bool) -> str:
    return "true" if value else "false"


def _doc(root: str, body: str) -> bytes:
    return f'{HEADER}<{root} xmlns="{NS}">{body}</{root}>'.encode()


def _owner(user_id: str, display_name: str) -> str:
    return f"<Owner>{_t('ID', user_id)}{_t('DisplayName', display_name)}</Owner>"


def _checksums(checksums: dict[str, str], checksum_type: str | None = None) -> str:
    out = "".join(_t(f"Checksum{alg}", value) for alg, value in sorted(checksums.items()))
    if checksum_type and checksums:
        out += _t("ChecksumType", checksum_type)
    return out


def error(code: str, message: str, resource: str | None, request_id: str, extra: dict[str, object]) -> bytes:
    parts = [_t("Code", code), _t("Message", message)]
    parts.extend(_t(name, value) for name, value in extra.items() if value is not None)
    if resource:
        parts.append(_t("Resource", resource))
    parts.append(_t("RequestId", request_id))
    parts.append(_t("HostId", request_id))
    return f"{HEADER}<Error>{''.join(parts)}</Error>".encode()


def list_buckets(
    buckets: Iterable[BucketInfo],
    user_id: str,
    display_name: str,
    continuation_token: str | None,
    prefix: str | None,
) -> bytes:
    items = "".join(
        f"<Bucket>{_t('Name', b.name)}{_t('CreationDate', iso8601(b.created))}{_t('BucketRegion', b.region)}</Bucket>"
        for b in buckets
    )
    body = f"<Buckets>{items}</Buckets>{_owner(user_id, display_name)}"
    if continuation_token:
        body += _t("ContinuationToken", continuation_token)
    if prefix is not None:
        body += _t("Prefix", prefix)
    return _doc("ListAllMyBucketsResult", body)


def location(region: str) -> bytes:
    # us-east-1 is reported as an empty LocationConstraint, as S3 does.
    value = "" if region == "us-east-1" else escape(region)
    return f'{HEADER}<LocationConstraint xmlns="{NS}">{value}</LocationConstraint>'.encode()


def _enc(value: str, url: bool) -> str:
    return uri_encode_path(value) if url else value


def _contents(obj: ObjectInfo, url: bool, owner: tuple[str, str] | None) -> str:
    # One f-string per entry: a 1000-key page renders in a few ms.
    etag = _esc_plain(f'"{obj.etag}"')
    out = (
        f"<Contents><Key>{_esc(_enc(obj.key, url))}</Key>"
        f"<LastModified>{iso8601(obj.last_modified)}</LastModified>"
        f"<ETag>{etag}</ETag><Size>{obj.size}</Size>"
    )
    if owner:
        out += _owner(*owner)
    out += f"<StorageClass>{_esc_plain(obj.storage_class)}</StorageClass>"
    return out + _listed_checksums(obj) + "</Contents>"


def _listed_checksums(obj: ObjectInfo) -> str:
    """The algorithms of an object's checksums, as listings name them (without their values)."""
    if not obj.checksums:
        return ""
    out = "".join(f"<ChecksumAlgorithm>{_esc(alg)}</ChecksumAlgorithm>" for alg in sorted(obj.checksums))
    if obj.checksum_type:
        out += f"<ChecksumType>{_esc(obj.checksum_type)}</ChecksumType>"
    return out


def list_objects(
    *,
    v2: bool,
    bucket: str,
    prefix: str,
    delimiter: str,
    max_keys: int,
    url: bool,
    objects: list[ObjectInfo],
    common_prefixes: list[str],
    is_truncated: bool,
    owner: tuple[str, str] | None,
    marker: str = "",
    next_marker: str | None = None,
    start_after: str | None = None,
    continuation_token: str | None = None,
    next_continuation_token: str | None = None,
) -> bytes:
    parts = [_t("Name", bucket), _t("Prefix", _enc(prefix, url))]
    if v2:
        if start_after:
            parts.append(_t("StartAfter", _enc(start_after, url)))
        if continuation_token is not None:
            parts.append(_t("ContinuationToken", continuation_token))
        if next_continuation_token:
            parts.append(_t("NextContinuationToken", next_continuation_token))
        parts.append(_t("KeyCount", len(objects) + len(common_prefixes)))
    else:
        parts.append(_t("Marker", _enc(marker, url)))
        if next_marker:
            parts.append(_t("NextMarker", _enc(next_marker, url)))
    parts.append(_t("MaxKeys", max_keys))
    if delimiter:
        parts.append(_t("Delimiter", _enc(delimiter, url)))
    if url:
        parts.append(_t("EncodingType", "url"))
    parts.append(_t("IsTruncated", _b(is_truncated)))
    parts.extend(_contents(obj, url, owner) for obj in objects)
    parts.extend(f"<CommonPrefixes>{_t('Prefix', _enc(p, url))}</CommonPrefixes>" for p in common_prefixes)
    return _doc("ListBucketResult", "".join(parts))


def list_versions(
    *,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    max_keys: int,
    url: bool,
    objects: list[ObjectInfo],
    common_prefixes: list[str],
    is_truncated: bool,
    next_key_marker: str | None,
    owner: tuple[str, str],
    version_id_marker: str = "",
) -> bytes:
    """An unversioned bucket lists each object once, as its 'null' version."""
    parts = [
        _t("Name", bucket),
        _t("Prefix", _enc(prefix, url)),
        _t("KeyMarker", _enc(key_marker, url)),
        _t("VersionIdMarker", version_id_marker),
    ]
    if next_key_marker is not None:
        parts.append(_t("NextKeyMarker", _enc(next_key_marker, url)))
        parts.append(_t("NextVersionIdMarker", "null"))
    parts.append(_t("MaxKeys", max_keys))
    if delimiter:
        parts.append(_t("Delimiter", _enc(delimiter, url)))
    if url:
        parts.append(_t("EncodingType", "url"))
    parts.append(_t("IsTruncated", _b(is_truncated)))
    for obj in objects:
        parts.append(
            "<Version>"
            + _t("Key", _enc(obj.key, url))
            + _t("VersionId", "null")
            + _t("IsLatest", "true")
            + _t("LastModified", iso8601(obj.last_modified))
            + _t("ETag", f'"{obj.etag}"')
            + _t("Size", obj.size)
            + _owner(*owner)
            + _t("StorageClass", obj.storage_class)
            + _listed_checksums(obj)
            + "</Version>"
        )
    parts.extend(f"<CommonPrefixes>{_t('Prefix', _enc(p, url))}</CommonPrefixes>" for p in common_prefixes)
    return _doc("ListVersionsResult", "".join(parts))


def copy_object_result(info: ObjectInfo, root: str = "CopyObjectResult") -> bytes:
    body = _t("ETag", f'"{info.etag}"') + _t("LastModified", iso8601(info.last_modified))
    body += _checksums(info.checksums, info.checksum_type)
    return _doc(root, body)


def copy_part_result(part: PartInfo) -> bytes:
    body = _t("ETag", f'"{part.etag}"') + _t("LastModified", iso8601(part.last_modified))
    body += _checksums(part.checksums)
    return _doc("CopyPartResult", body)


def delete_result(deleted: list[tuple[str, str | None]], failed: list[tuple[str, str | None, str, str]]) -> bytes:
    """DeleteObjects' answer from (Key, VersionId) of each key deleted and (Key, VersionId, Code,
    Message) of each that failed: an entry has the VersionId its Object gave, as S3's do."""
    parts = [f"<Deleted>{_t('Key', key)}{_version(version)}</Deleted>" for key, version in deleted]
    parts.extend(
        f"<Error>{_t('Key', key)}{_version(version)}{_t('Code', code)}{_t('Message', message)}</Error>"
        for key, version, code, message in failed
    )
    return _doc("DeleteResult", "".join(parts))


def _version(version: str | None) -> str:
    return "" if version is None else _t("VersionId", version)


def tagging(tags: dict[str, str]) -> bytes:
    items = "".join(f"<Tag>{_t('Key', k)}{_t('Value', v)}</Tag>" for k, v in tags.items())
    return _doc("Tagging", f"<TagSet>{items}</TagSet>")


def initiate_multipart(bucket: str, key: str, upload_id: str) -> bytes:
    return _doc(
        "InitiateMultipartUploadResult", _t("Bucket", bucket) + _t("Key", key) + _t("UploadId", upload_id)
    )


def complete_multipart(location_url: str, bucket: str, key: str, info: ObjectInfo) -> bytes:
    body = _t("Location", location_url) + _t("Bucket", bucket) + _t("Key", key) + _t("ETag", f'"{info.etag}"')
    body += _checksums(info.checksums, info.checksum_type)
    return _doc("CompleteMultipartUploadResult", body)


def post_response(location_url: str, bucket: str, key: str, etag: str) -> bytes:
    """PostObject's answer to success_action_status=201. S3 sends it without a namespace (clients
    find <Key> with a plain ElementTree lookup)."""
    body = _t("Location", location_url) + _t("Bucket", bucket) + _t("Key", key) + _t("ETag", f'"{etag}"')
    return f"{HEADER}<PostResponse>{body}</PostResponse>".encode()


def list_uploads(
    *,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_id_marker: str,
    max_uploads: int,
    url: bool,
    uploads: list[UploadInfo],
    common_prefixes: list[str],
    is_truncated: bool,
    next_key_marker: str | None,
    next_upload_id_marker: str | None,
    display_names: dict[str, str],
) -> bytes:
    parts = [
        _t("Bucket", bucket),
        _t("KeyMarker", _enc(key_marker, url)),
        _t("UploadIdMarker", upload_id_marker),
    ]
    if next_key_marker is not None:
        parts.append(_t("NextKeyMarker", _enc(next_key_marker, url)))
    if next_upload_id_marker is not None:
        parts.append(_t("NextUploadIdMarker", next_upload_id_marker))
    parts.append(_t("Prefix", _enc(prefix, url)))
    if delimiter:
        parts.append(_t("Delimiter", _enc(delimiter, url)))
    parts.append(_t("MaxUploads", max_uploads))
    if url:
        parts.append(_t("EncodingType", "url"))
    parts.append(_t("IsTruncated", _b(is_truncated)))
    for up in uploads:
        who = _t("ID", up.owner) + _t("DisplayName", display_names.get(up.owner, up.owner))
        parts.append(
            "<Upload>"
            + _t("Key", _enc(up.key, url))
            + _t("UploadId", up.upload_id)
            + f"<Initiator>{who}</Initiator><Owner>{who}</Owner>"
            + _t("StorageClass", up.meta.storage_class)
            + _t("Initiated", iso8601(up.initiated))
            + (_t("ChecksumAlgorithm", up.meta.checksum_algorithm) if up.meta.checksum_algorithm else "")
            + (_t("ChecksumType", up.meta.checksum_type) if up.meta.checksum_type else "")
            + "</Upload>"
        )
    parts.extend(f"<CommonPrefixes>{_t('Prefix', _enc(p, url))}</CommonPrefixes>" for p in common_prefixes)
    return _doc("ListMultipartUploadsResult", "".join(parts))


def list_parts(
    *,
    bucket: str,
    upload: UploadInfo,
    parts: list[PartInfo],
    part_number_marker: int,
    next_part_number_marker: int | None,
    max_parts: int,
    is_truncated: bool,
    display_name: str,
) -> bytes:
    who = _t("ID", upload.owner) + _t("DisplayName", display_name)
    out = [
        _t("Bucket", bucket),
        _t("Key", upload.key),
        _t("UploadId", upload.upload_id),
        f"<Initiator>{who}</Initiator><Owner>{who}</Owner>",
        _t("StorageClass", upload.meta.storage_class),
        _t("PartNumberMarker", part_number_marker),
    ]
    if next_part_number_marker is not None:
        out.append(_t("NextPartNumberMarker", next_part_number_marker))
    out.append(_t("MaxParts", max_parts))
    out.append(_t("IsTruncated", _b(is_truncated)))
    if upload.meta.checksum_algorithm:
        out.append(_t("ChecksumAlgorithm", upload.meta.checksum_algorithm))
    if upload.meta.checksum_type:
        out.append(_t("ChecksumType", upload.meta.checksum_type))
    for p in parts:
        out.append(
            "<Part>"
            + _t("PartNumber", p.number)
            + _t("LastModified", iso8601(p.last_modified))
            + _t("ETag", f'"{p.etag}"')
            + _t("Size", p.size)
            + _checksums(p.checksums)
            + "</Part>"
        )
    return _doc("ListPartsResult", "".join(out))


def object_attributes(
    info: ObjectInfo,
    wanted: Collection[str],
    *,
    parts: list[PartInfo] | None = None,
    part_number_marker: int = 0,
    max_parts: int = 1000,
    is_truncated: bool = False,
) -> bytes:
    """GetObjectAttributes: only the ``wanted`` elements. ``parts`` is the page of a multipart
    object's parts to list, None to give only their count (S3 lists no parts of an object without
    a checksum); an object not made by a multipart upload has no ObjectParts at all."""
    out = []
    if "ETag" in wanted:
        out.append(_t("ETag", info.etag))  # unquoted here, unlike every other ETag S3 sends
    if "Checksum" in wanted and info.checksums:
        # S3 drops a composite checksum's "-<part count>" here, which HeadObject keeps.
        values = {alg: value.split("-")[0] for alg, value in info.checksums.items()}
        out.append(f"<Checksum>{_checksums(values, info.checksum_type)}</Checksum>")
    if "ObjectParts" in wanted and info.parts is not None:
        inner = _t("PartsCount", len(info.parts))
        if parts is not None:
            inner += _t("PartNumberMarker", part_number_marker)
            if parts:
                inner += _t("NextPartNumberMarker", parts[-1].number)
            inner += _t("MaxParts", max_parts) + _t("IsTruncated", _b(is_truncated))
            for p in parts:
                inner += f"<Part>{_t('PartNumber', p.number)}{_t('Size', p.size)}{_checksums(p.checksums)}</Part>"
        out.append(f"<ObjectParts>{inner}</ObjectParts>")
    if "StorageClass" in wanted:
        out.append(_t("StorageClass", info.storage_class))
    if "ObjectSize" in wanted:
        out.append(_t("ObjectSize", info.size))
    return _doc("GetObjectAttributesResponse", "".join(out))


def versioning() -> bytes:
    return _doc("VersioningConfiguration", "")


def acl(user_id: str, display_name: str) -> bytes:
    grant = (
        '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
        f"{_t('ID', user_id)}{_t('DisplayName', display_name)}</Grantee>"
        "<Permission>FULL_CONTROL</Permission></Grant>"
    )
    return _doc("AccessControlPolicy", f"{_owner(user_id, display_name)}<AccessControlList>{grant}</AccessControlList>")


# -- request bodies ------------------------------------------------------------------------------


def parse(body: bytes, root: str, *, strip_whitespace: bool = True) -> dict[str, Any]:
    """Parse an XML request body whose document element must be ``root`` (namespace ignored).
    ``strip_whitespace=False`` keeps text exactly as sent (object keys), and leaves the
    indentation between elements under '#text'."""
    if not body.strip():
        raise errors.MalformedXML()
    from xml.parsers.expat import ExpatError

    import xmltodict

    try:
        doc = xmltodict.parse(body, process_namespaces=False, disable_entities=True, strip_whitespace=strip_whitespace)
    except (ExpatError, ValueError, LookupError) as exc:
        # LookupError: an encoding declaration that names no text encoding ("EBCDIC", "base64"),
        # which expat asks Python's codec registry for.
        raise errors.MalformedXML() from exc
    if not isinstance(doc, dict) or len(doc) != 1:
        raise errors.MalformedXML()
    name, content = next(iter(doc.items()))
    if name.split(":")[-1] != root:
        raise errors.MalformedXML()
    if content is None or (isinstance(content, str) and not content.strip()):
        return {}
    if not isinstance(content, dict):
        raise errors.MalformedXML()
    # Drop namespace declarations and prefixes so callers see plain element names.
    return {k.split(":")[-1]: v for k, v in content.items() if not k.startswith("@")}


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "#text" in value:
        return str(value["#text"])
    raise errors.MalformedXML()


# S3's deepest configuration document nests a few levels; far deeper ones would exhaust Python's
# recursion here and when the document is rendered back.
MAX_DOCUMENT_DEPTH = 32


def _unprefixed(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DOCUMENT_DEPTH:
        raise errors.MalformedXML()
    if isinstance(value, list):
        return [_unprefixed(item, depth) for item in value]
    if isinstance(value, dict):
        return {(k if k.startswith("@") else k.split(":")[-1]): _unprefixed(v, depth + 1) for k, v in value.items()}
    return value


def parse_document(body: bytes, root: str) -> dict[str, Any]:
    """A bucket configuration document (CORSConfiguration, WebsiteConfiguration, ...) as nested
    dicts and lists, element prefixes dropped and attributes kept (a logging grantee's xsi:type),
    ready for validation and for ``render_document``."""
    return {k: _unprefixed(v) for k, v in parse(body, root).items()}


def render_document(root: str, content: dict[str, Any]) -> bytes:
    """The inverse of ``parse_document``, in S3's namespace: what a Get of the configuration returns."""
    import xmltodict

    tree = {root: {"@xmlns": NS, **content}}
    return (HEADER + xmltodict.unparse(tree, full_document=False)).encode()


def parse_delete(body: bytes) -> tuple[list[tuple[str, str | None, str | None]], bool]:
    """(key, VersionId, ETag) of each Object, and Quiet. An ETag makes its delete conditional."""
    # Whitespace kept: "a " and " a" are keys of their own, and stripping them deleted "a".
    doc = parse(body, "Delete", strip_whitespace=False)
    quiet = text(doc.get("Quiet")).strip().lower() == "true"
    keys: list[tuple[str, str | None, str | None]] = []
    for item in as_list(doc.get("Object")):
        if not isinstance(item, dict) or "Key" not in item:
            raise errors.MalformedXML()
        key = item["Key"]
        # A Key with elements inside is no key: its text alone would name another object.
        if isinstance(key, list) or (isinstance(key, dict) and any(k[0] not in "@#" for k in key)):
            raise errors.MalformedXML()
        version, etag = item.get("VersionId"), item.get("ETag")
        keys.append((
            text(key),
            text(version).strip() if version is not None else None,
            text(etag).strip() if etag is not None else None,
        ))  # fmt: skip
    if not keys or len(keys) > 1000:
        raise errors.MalformedXML()
    return keys, quiet


def parse_tagging(body: bytes) -> dict[str, str]:
    # Whitespace kept: " v" and "v" are different tag values, as they are through x-amz-tagging.
    doc = parse(body, "Tagging", strip_whitespace=False)
    tagset = doc.get("TagSet")
    if tagset is not None and not isinstance(tagset, dict):
        if text(tagset).strip():
            raise errors.MalformedXML()
        tagset = None
    tags: dict[str, str] = {}
    for tag in as_list((tagset or {}).get("Tag")):
        if not isinstance(tag, dict) or "Key" not in tag:
            raise errors.MalformedXML()
        key, value = text(tag.get("Key")), text(tag.get("Value"))
        if key in tags:
            raise errors.InvalidTag("Cannot provide multiple Tags with the same key")
        tags[key] = value
    return tags


def parse_complete(body: bytes) -> list[dict[str, str]]:
    doc = parse(body, "CompleteMultipartUpload")
    parts = []
    for part in as_list(doc.get("Part")):
        if not isinstance(part, dict):
            raise errors.MalformedXML()
        parts.append({k.split(":")[-1]: text(v) for k, v in part.items() if not k.startswith("@")})
    if not parts:
        raise errors.MalformedXML()
    return parts


def parse_create_bucket(body: bytes) -> str | None:
    """The LocationConstraint of a CreateBucketConfiguration, if any."""
    if not body.strip():
        return None
    doc = parse(body, "CreateBucketConfiguration")
    value = doc.get("LocationConstraint")
    return text(value) if value is not None else None
