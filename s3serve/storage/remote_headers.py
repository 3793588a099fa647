"""The headers of an upstream S3's answers and of the requests sent to it: an ObjectInfo read
from a HeadObject / GetObject answer, and a write's metadata, checksums and conditions as headers
(remote.py builds the requests with them, remote_xml.py reads the XML bodies)."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from . import remote_xml as rx
from . import ssec
from .base import S3_CHECKSUM_ALGORITHMS, STORED_HEADERS, Encryption, ObjectInfo, WriteMeta

META_PREFIX = "x-amz-meta-"
CHECKSUM_PREFIX = "x-amz-checksum-"
SOURCE_PREFIXES = ("x-amz-copy-source-", "x-amz-rename-source-")


def http_date(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0


def total_size(headers: Mapping[str, str]) -> int:
    content_range = headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    return int(headers.get("Content-Length") or 0)


def info_from_headers(key: str, headers: Mapping[str, str]) -> ObjectInfo:
    """An ObjectInfo from a HeadObject / GetObject answer."""
    user_meta: dict[str, str] = {}
    checksums: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(META_PREFIX):
            user_meta[lower[len(META_PREFIX) :]] = value
        elif lower.startswith(CHECKSUM_PREFIX) and lower[len(CHECKSUM_PREFIX) :].upper() in S3_CHECKSUM_ALGORITHMS:
            checksums[lower[len(CHECKSUM_PREFIX) :].upper()] = value
    return ObjectInfo(
        key=key,
        size=total_size(headers),
        etag=rx.unquote_etag(headers.get("ETag")),
        last_modified=http_date(headers.get("Last-Modified")),
        headers={name: headers[name] for name in STORED_HEADERS if name in headers},
        user_meta=user_meta,
        checksums=checksums,
        checksum_type=headers.get("x-amz-checksum-type"),
        storage_class=headers.get("x-amz-storage-class") or "STANDARD",
        tag_count=int(headers.get("x-amz-tagging-count") or 0),
        is_folder=key.endswith("/"),
        encryption=ssec.described(Encryption.from_headers(headers)),
    )


def meta_headers(meta: WriteMeta, tags: bool = True) -> dict[str, str]:
    headers = {name.lower(): value for name, value in meta.headers.items()}
    headers.update({META_PREFIX + name.lower(): value for name, value in meta.user_meta.items()})
    if tags and meta.tags:
        headers["x-amz-tagging"] = urlencode(meta.tags, quote_via=quote)
    if meta.storage_class and meta.storage_class != "STANDARD":
        headers["x-amz-storage-class"] = meta.storage_class
    if meta.encryption is not None:  # else the upstream bucket's own default applies
        headers.update(meta.encryption.headers())
    return headers


def checksum_headers(checksums: Mapping[str, str], sdk: bool = False) -> dict[str, str]:
    headers = {CHECKSUM_PREFIX + alg.lower(): value for alg, value in checksums.items()}
    if sdk and len(checksums) == 1:
        # As the SDKs send it with a body's checksum; moto stores the checksum only then.
        headers["x-amz-sdk-checksum-algorithm"] = next(iter(checksums))
    return headers


def condition_name(name: str) -> str:
    lower = name.lower()
    for prefix in SOURCE_PREFIXES:
        if lower.startswith(prefix):
            return lower[len(prefix) :]
    return lower
