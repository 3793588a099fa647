"""The XML of an upstream S3's answers, parsed into storage's dataclasses, and the few request
bodies RemoteBackend sends. No HTTP here (remote.py does that).

An upstream's malformed answer is its fault, not the client's: parse failures raise
ServiceUnavailable, never the MalformedXML that s3xml raises for a client's body.
"""

from __future__ import annotations

import datetime
import re
from typing import Any
from urllib.parse import unquote_plus

from .. import errors, s3xml
from .base import (
    S3_CHECKSUM_ALGORITHMS,
    BucketInfo,
    ObjectInfo,
    PartInfo,
    PartsPage,
    UploadInfo,
    UploadListPage,
    WriteMeta,
)


def parse(body: bytes, root: str, *, strip_whitespace: bool = True) -> dict[str, Any]:
    """The content of the answer S3 names ``root``, whatever the upstream named it: clients never
    check the name, and moto answers ListParts with a ListPartsResponse. ``strip_whitespace``
    False keeps text as sent (and the indentation between elements under '#text')."""
    from xml.parsers.expat import ExpatError

    import xmltodict

    parked = b"&#" in body and _CONTROL_REF.search(body) is not None
    if parked:
        body = _CONTROL_REF.sub(_park, body)
    try:
        doc = xmltodict.parse(
            body,
            process_namespaces=False,
            disable_entities=True,
            strip_whitespace=strip_whitespace,
            postprocessor=_unpark if parked else None,
        )
    except (ExpatError, ValueError, LookupError):
        doc = None
    content = next(iter(doc.values()), None) if isinstance(doc, dict) and len(doc) == 1 else False
    if content is None or (isinstance(content, str) and not content.strip()):
        return {}
    if not isinstance(content, dict):
        raise errors.ServiceUnavailable(f"The upstream S3 answered with a document that is not a {root}.")
    return {k.split(":")[-1]: v for k, v in content.items() if not k.startswith("@")}


# S3 writes a key's control characters as character references that XML 1.0 refuses (&#x1;),
# in every answer naming the key (InitiateMultipartUploadResult, CompleteMultipartUploadResult,
# ...), and so the noncharacters U+FFFE and U+FFFF (&#xFFFE;): each is parked in a character of
# Unicode's plane-15 private use area for the parser, and put back in the text it parsed.
_CONTROL_REF = re.compile(rb"&#(?:x0*([0-9a-fA-F]{1,4})|0*([0-9]{1,5}));")
_PARK = 0xF0000
_PARKED = (*(c for c in range(0x20) if c not in (0x9, 0xA, 0xD)), 0xFFFE, 0xFFFF)
_PARK_AT = {c: _PARK + i for i, c in enumerate(_PARKED)}
_UNPARK = {at: c for c, at in _PARK_AT.items()}


def _park(ref: re.Match[bytes]) -> bytes:
    c = int(ref[1], 16) if ref[1] is not None else int(ref[2])
    at = _PARK_AT.get(c)
    return ref[0] if at is None else chr(at).encode()


def _unpark(_path: object, key: str, value: Any) -> tuple[str, Any]:
    return key, value.translate(_UNPARK) if isinstance(value, str) else value


# Elements of an upstream's <Error> not passed on: this server's own answer has its own
# request ids and resource, and an upstream's signature material must never reach a client.
_NOT_PASSED_ON = frozenset({
    "Code", "Message", "RequestId", "HostId", "Resource", "StringToSign", "StringToSignBytes",
    "CanonicalRequest", "CanonicalRequestBytes", "SignatureProvided", "AWSAccessKeyId",
})  # fmt: skip


# The start of an HTML page, after a BOM, an XML declaration (XHTML) and comments: a captive
# portal's or a proxy's. No S3 answer begins so: its XML's root is the answer's own element (an
# object's key or a tag's value in it is escaped), and a bucket policy is JSON.
_WEB_PAGE = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)[\s>]", re.I | re.S
)


def is_web_page(body: bytes) -> bool:
    """Whether an answer's body is an HTML page rather than an S3 document."""
    return _WEB_PAGE.match(body[:4096]) is not None


def error_of(body: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(Code, Message, the other elements S3 names a fault with: PartNumber, ArgumentName, ...)
    of an ``<Error>`` document, None for anything else."""
    head = body.lstrip()[:512]
    if b"<Error" not in head:
        return None
    try:
        # This module's parse, not s3xml's: an error naming a key with control characters
        # writes them as character references XML 1.0 refuses (&#x1;), which parse puts back.
        doc = parse(body, "Error")
    except errors.S3Error:
        return None
    extra = {
        name: value
        for name, value in doc.items()
        if name not in _NOT_PASSED_ON and not name.startswith(("@", "#")) and isinstance(value, str)
    }
    return text(doc.get("Code")), text(doc.get("Message")), extra


def text(value: Any) -> str:
    try:
        return s3xml.text(value)
    except errors.S3Error:
        return ""


def items(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [item for item in s3xml.as_list(doc.get(name)) if isinstance(item, dict)]


def iso_epoch(value: str) -> float:
    """'2009-10-12T17:50:30.000Z' -> epoch seconds (0.0 when absent or unreadable)."""
    try:
        return datetime.datetime.fromisoformat(value.strip()).timestamp() if value else 0.0
    except ValueError:
        return 0.0


def unquote_etag(value: str | None) -> str:
    return (value or "").strip().strip('"')


def written_etag(value: Any, answer: str) -> str:
    """The ETag (a header's or an element's value) of what a write's 2xx answer says it made:
    S3's always names one. An answer without is not S3's (a captive portal's or a proxy's page,
    or nothing): the write is not known to have happened, so it is not acknowledged as if it had."""
    etag = unquote_etag(text(value))
    if not etag:
        raise errors.ServiceUnavailable(f"The upstream S3 answered {answer} without an ETag.")
    return etag


def _truthy(value: Any) -> bool:
    return text(value).strip().lower() == "true"


def checksums_in(doc: dict[str, Any]) -> dict[str, str]:
    return {alg: text(doc[f"Checksum{alg}"]) for alg in S3_CHECKSUM_ALGORITHMS if doc.get(f"Checksum{alg}")}


def _url(value: Any, encoded: bool) -> str:
    # ListObjectsV2 / ListMultipartUploads with encoding-type=url: decoded as botocore decodes
    # them ('+' is a space; a literal '+' comes as %2B), which every S3 we know encodes for.
    raw = text(value)
    return unquote_plus(raw) if encoded else raw


def _owner_id(doc: dict[str, Any], name: str = "Owner") -> str:
    owner = doc.get(name)
    return text(owner.get("ID")) if isinstance(owner, dict) else ""


# -- answers -------------------------------------------------------------------------------------


def list_buckets(body: bytes) -> list[BucketInfo]:
    doc = parse(body, "ListAllMyBucketsResult")
    owner = _owner_id(doc)
    buckets = doc.get("Buckets")
    out = []
    for item in items(buckets if isinstance(buckets, dict) else {}, "Bucket"):
        region = text(item.get("BucketRegion")) or "us-east-1"
        out.append(BucketInfo(text(item.get("Name")), iso_epoch(text(item.get("CreationDate"))), owner, region))
    return out


def list_objects(body: bytes) -> tuple[list[ObjectInfo], list[str], bool]:
    """ListObjectsV2: (objects, common prefixes, is_truncated). A listing names an object's
    checksum algorithms, not their values: each is in ``checksums`` with an empty value."""
    doc = parse(body, "ListBucketResult")
    encoded = text(doc.get("EncodingType")) == "url"
    objects = []
    for item in items(doc, "Contents"):
        key = _url(item.get("Key"), encoded)
        # S3's schema lets <ChecksumAlgorithm> come more than once per object.
        algorithms = [text(alg).strip() for alg in s3xml.as_list(item.get("ChecksumAlgorithm"))]
        objects.append(
            ObjectInfo(
                key=key,
                size=int(text(item.get("Size")) or 0),
                etag=unquote_etag(text(item.get("ETag"))),
                last_modified=iso_epoch(text(item.get("LastModified"))),
                checksums=dict.fromkeys(filter(None, algorithms), ""),
                checksum_type=text(item.get("ChecksumType")).strip() or None,
                storage_class=text(item.get("StorageClass")) or "STANDARD",
                is_folder=key.endswith("/"),
            )
        )
    prefixes = [_url(item.get("Prefix"), encoded) for item in items(doc, "CommonPrefixes")]
    return objects, prefixes, _truthy(doc.get("IsTruncated"))


def upload_id(body: bytes) -> str:
    upload = text(parse(body, "InitiateMultipartUploadResult").get("UploadId"))
    if not upload:
        raise errors.ServiceUnavailable("The upstream S3 answered CreateMultipartUpload without an UploadId.")
    return upload


def copy_result(body: bytes, root: str, operation: str) -> tuple[str, float, dict[str, str]]:
    """CopyObjectResult / CopyPartResult, the answer to ``operation``: (etag, last modified,
    checksums)."""
    doc = parse(body, root)
    return written_etag(doc.get("ETag"), operation), iso_epoch(text(doc.get("LastModified"))), checksums_in(doc)


def tagging(body: bytes) -> dict[str, str]:
    # Whitespace kept: " v" and "v" are different tag values (s3xml.parse_tagging).
    doc = parse(body, "Tagging", strip_whitespace=False)
    tagset = doc.get("TagSet")
    tags = items(tagset, "Tag") if isinstance(tagset, dict) else []
    return {text(tag.get("Key")): text(tag.get("Value")) for tag in tags}


def _upload_meta(doc: dict[str, Any]) -> WriteMeta:
    return WriteMeta(
        storage_class=text(doc.get("StorageClass")) or "STANDARD",
        checksum_algorithm=text(doc.get("ChecksumAlgorithm")) or None,
        checksum_type=text(doc.get("ChecksumType")) or None,
    )


def list_uploads(body: bytes) -> UploadListPage:
    doc = parse(body, "ListMultipartUploadsResult")
    encoded = text(doc.get("EncodingType")) == "url"
    uploads = [
        UploadInfo(
            upload_id=text(item.get("UploadId")),
            key=_url(item.get("Key"), encoded),
            initiated=iso_epoch(text(item.get("Initiated"))),
            owner=_owner_id(item) or _owner_id(item, "Initiator"),
            meta=_upload_meta(item),
        )
        for item in items(doc, "Upload")
    ]
    truncated = _truthy(doc.get("IsTruncated"))
    next_key = _url(doc.get("NextKeyMarker"), encoded) if truncated else None
    next_id = text(doc.get("NextUploadIdMarker")) if truncated else None
    prefixes = [_url(item.get("Prefix"), encoded) for item in items(doc, "CommonPrefixes")]
    return UploadListPage(uploads, prefixes, truncated, next_key or None, next_id or None)


def _part(item: dict[str, Any]) -> PartInfo:
    return PartInfo(
        number=int(text(item.get("PartNumber")) or 0),
        size=int(text(item.get("Size")) or 0),
        etag=unquote_etag(text(item.get("ETag"))),
        last_modified=iso_epoch(text(item.get("LastModified"))),
        checksums=checksums_in(item),
    )


def list_parts(body: bytes, key: str, upload: str) -> PartsPage:
    doc = parse(body, "ListPartsResult")
    info = UploadInfo(upload, key, 0.0, _owner_id(doc) or _owner_id(doc, "Initiator"), _upload_meta(doc))
    truncated = _truthy(doc.get("IsTruncated"))
    marker = text(doc.get("NextPartNumberMarker"))
    return PartsPage(info, [_part(item) for item in items(doc, "Part")], truncated, int(marker) if truncated and marker else None)


def object_parts(body: bytes) -> tuple[list[PartInfo], int | None] | None:
    """GetObjectAttributes' ObjectParts: (this page's parts, the marker of the next page or None);
    None when the answer lists no parts (an object not made by multipart, or S3 giving only
    PartsCount, as it does for an object without an additional checksum)."""
    parts = parse(body, "GetObjectAttributesResponse").get("ObjectParts")
    if not isinstance(parts, dict):
        return None
    page = [_part(item) for item in items(parts, "Part")]
    if not page:
        return None
    marker = text(parts.get("NextPartNumberMarker"))
    return page, (int(marker) if _truthy(parts.get("IsTruncated")) and marker else None)


# -- request bodies ------------------------------------------------------------------------------


def _el(tag: str, value: object) -> str:
    return f"<{tag}>{s3xml.escape(str(value))}</{tag}>"


def _doc(root: str, body: str) -> bytes:
    return f'{s3xml.HEADER}<{root} xmlns="{s3xml.NS}">{body}</{root}>'.encode()


def complete(parts: list[PartInfo]) -> bytes:
    out = []
    for part in parts:
        etag = _el("ETag", '"' + part.etag + '"')
        checksums = "".join(_el(f"Checksum{alg}", value) for alg, value in sorted(part.checksums.items()))
        out.append(f"<Part>{_el('PartNumber', part.number)}{etag}{checksums}</Part>")
    return _doc("CompleteMultipartUpload", "".join(out))


def create_bucket(region: str) -> bytes:
    return _doc("CreateBucketConfiguration", _el("LocationConstraint", region))
