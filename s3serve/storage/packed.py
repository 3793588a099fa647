"""The packed form of a common record: small enough for the inode's own xattr space.

An ext4 filesystem made with default settings has 256-byte inodes. Such an inode holds an xattr
value of at most 64 bytes (for the name ``user.s3serve``). A longer value goes to an extra 4 KiB
block, allocated for that one file. The JSON record of a typical small object (~220 bytes) always
got such a block. That doubled the disk use of a 4 KiB object, added a block read to a cold GET,
and added a block to free on every overwrite and delete; on a filesystem mounted with
``discard``, freeing a block is a synchronous discard. A plain PUT's record (an MD5 ETag, size,
inode, mtime, at most one checksum, a content type and nothing else) packs into 40-60 bytes, an
upstream cache's copy of one (the same, and the upstream's time) into 48-68.
Every other record stays JSON, and JSON records written earlier still read as before: JSON
always starts with ``{``, a packed record with ``FORMAT``.

Layout: FORMAT, flags, MD5 (16 bytes), size and inode (LEB128), mtime_ns (8 bytes, signed,
little-endian), modified_ns when the record has its own (8 more bytes: an upstream cache's replica
keeps the upstream's time, a linked copy its own), checksum algorithm number and raw digest, then
the content type (length byte, UTF-8) when it is not the default one.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import TYPE_CHECKING, Any

from ..checksums import ALGORITHM_DIGEST, DIGEST_LENGTH
from .base import SSE_S3

if TYPE_CHECKING:
    from .metadata import Record

FORMAT = 0x01
_FOLDER = 0x01
_CONTENT_TYPE = 0x02
_CHECKSUM_TYPES = (None, "FULL_OBJECT", "COMPOSITE")  # flags bits 2-3
_MODIFIED = 0x10
_KNOWN_FLAGS = _FOLDER | _CONTENT_TYPE | 0x0C | _MODIFIED
_ALGORITHMS = (None, "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
_MTIME = struct.Struct("<q")


def _varint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def pack(record: Record, default_content_type: str) -> bytes | None:
    """The packed form of ``record``, or None when it has more than the format holds."""
    if record.user_meta or record.tags or record.parts is not None or record.storage_class != "STANDARD":
        return None
    if record.encryption is not SSE_S3:
        return None  # SSE-KMS and the like are rare: JSON
    if record.upload_id is not None or len(record.checksums) > 1 or record.size < 0 or record.inode < 0:
        return None
    if not -(2**63) <= record.mtime_ns < 2**63:
        return None
    if record.modified_ns is not None and not -(2**63) <= record.modified_ns < 2**63:
        return None
    content_type = record.headers.get("content-type")
    if set(record.headers) - {"content-type"} or record.checksum_type not in _CHECKSUM_TYPES:
        return None
    try:
        md5 = bytes.fromhex(record.etag)
    except ValueError:
        return None
    if len(md5) != 16 or md5.hex() != record.etag:
        return None  # a multipart ETag ("...-N"), or not in the canonical lowercase form
    flags = _CHECKSUM_TYPES.index(record.checksum_type) << 2
    if record.folder:
        flags |= _FOLDER
    if record.modified_ns is not None:
        flags |= _MODIFIED
    if content_type is not None and (content_type != default_content_type or record.folder):
        flags |= _CONTENT_TYPE
    elif content_type is None and not record.folder:
        return None  # an object always has one; keep whatever this is in JSON
    out = bytearray((FORMAT, flags))
    out += md5
    _varint(record.size, out)
    _varint(record.inode, out)
    out += _MTIME.pack(record.mtime_ns)
    if record.modified_ns is not None:
        out += _MTIME.pack(record.modified_ns)
    if record.checksums:
        ((algorithm, value),) = record.checksums.items()
        if algorithm not in _ALGORITHMS:
            return None
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(digest) != DIGEST_LENGTH[ALGORITHM_DIGEST[algorithm]] or base64.b64encode(digest).decode() != value:
            return None
        out.append(_ALGORITHMS.index(algorithm))
        out += digest
    else:
        out.append(0)
    if flags & _CONTENT_TYPE:
        assert content_type is not None
        encoded = content_type.encode("utf-8")
        if len(encoded) > 255:
            return None
        out.append(len(encoded))
        out += encoded
    return bytes(out)


def unpack(data: bytes, default_content_type: str) -> dict[str, Any] | None:
    """The record document (as JSON would give it) of a packed record; None if malformed."""
    try:
        if data[0] != FORMAT:
            return None
        flags = data[1]
        if flags & ~_KNOWN_FLAGS:
            return None
        etag = data[2:18].hex()
        size, pos = _read_varint(data, 18)
        inode, pos = _read_varint(data, pos)
        (mtime_ns,) = _MTIME.unpack_from(data, pos)
        pos += 8
        modified_ns = None
        if flags & _MODIFIED:
            (modified_ns,) = _MTIME.unpack_from(data, pos)
            pos += 8
        algorithm = _ALGORITHMS[data[pos]]
        pos += 1
        checksums = {}
        if algorithm is not None:
            width = DIGEST_LENGTH[ALGORITHM_DIGEST[algorithm]]
            checksums[algorithm] = base64.b64encode(data[pos : pos + width]).decode()
            pos += width
        folder = bool(flags & _FOLDER)
        if flags & _CONTENT_TYPE:
            length = data[pos]
            content_type: str | None = data[pos + 1 : pos + 1 + length].decode("utf-8")
            pos += 1 + length
        else:
            content_type = None if folder else default_content_type
        checksum_type = _CHECKSUM_TYPES[(flags >> 2) & 0x03]
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    if pos != len(data) or len(etag) != 32:
        return None
    doc: dict[str, Any] = {"etag": etag, "size": size, "mtime_ns": mtime_ns, "inode": inode}
    if content_type is not None:
        doc["headers"] = {"content-type": content_type}
    if checksums:
        doc["checksums"] = checksums
    if checksum_type:
        doc["checksum_type"] = checksum_type
    if folder:
        doc["folder"] = True
    if modified_ns is not None:
        doc["modified_ns"] = modified_ns
    return doc
