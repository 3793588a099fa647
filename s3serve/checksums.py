"""Digests of object bytes: MD5 for ETags, SHA-256 for SigV4 payloads, and S3's additional checksums.

All digests of one stream are computed in a single pass (``MultiHasher``), so storage can feed
each chunk once, in a worker thread, while it writes the chunk to disk. hashlib and awscrt both
release the GIL on large buffers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from functools import cache
from types import ModuleType
from typing import Protocol

from . import errors


@cache
def _crt() -> ModuleType:
    # Loading awscrt's native library takes ~50 ms: imported at the first CRC, not at start-up.
    from awscrt import checksums

    return checksums


class _Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    def __init__(self, fn: object, width: int) -> None:
        self._fn = fn
        self._width = width
        self._value = 0

    def update(self, data: bytes | memoryview) -> None:
        self._value = self._fn(data, self._value)  # type: ignore[operator]

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


def _new(name: str) -> _Digest:
    if name == "crc32":
        return _Crc(_crt().crc32, 4)
    if name == "crc32c":
        return _Crc(_crt().crc32c, 4)
    if name == "crc64nvme":
        return _Crc(_crt().crc64nvme, 8)
    return hashlib.new(name)


DIGESTS = ("md5", "sha1", "sha256", "crc32", "crc32c", "crc64nvme")

# S3's additional-checksum algorithm names (as in x-amz-checksum-<name> and
# x-amz-sdk-checksum-algorithm) -> digest names above.
ALGORITHM_DIGEST = {"CRC32": "crc32", "CRC32C": "crc32c", "CRC64NVME": "crc64nvme", "SHA1": "sha1", "SHA256": "sha256"}
# What S3 computes for an object whose writer asked for no checksum.
DEFAULT_CHECKSUM = "CRC64NVME"
DIGEST_LENGTH = {"md5": 16, "sha1": 20, "sha256": 32, "crc32": 4, "crc32c": 4, "crc64nvme": 8}


class MultiHasher:
    def __init__(self, names: Iterable[str]) -> None:
        self._hashers = {name: _new(name) for name in dict.fromkeys(names)}

    def update(self, data: bytes | memoryview) -> None:
        for h in self._hashers.values():
            h.update(data)

    def digests(self) -> dict[str, bytes]:
        return {name: h.digest() for name, h in self._hashers.items()}


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def combine_crc(algorithm: str, first: bytes, second: bytes, second_length: int) -> bytes:
    """The CRC of A+B from CRC(A), CRC(B) and len(B): full-object checksums of multipart uploads."""
    digest = ALGORITHM_DIGEST[algorithm]
    width = DIGEST_LENGTH[digest]
    crt = _crt()
    fn = {"crc32": crt.combine_crc32, "crc32c": crt.combine_crc32c, "crc64nvme": crt.combine_crc64nvme}[digest]
    value = fn(int.from_bytes(first, "big"), int.from_bytes(second, "big"), second_length)
    return int(value).to_bytes(width, "big")


def valid_checksum(algorithm: str, value: str) -> bool:
    """Whether ``value`` is the canonical base64 of a digest of ``algorithm``'s length. S3 refuses
    a value that decodes only leniently (non-zero padding bits) as invalid, not as a mismatch."""
    try:
        digest = base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return False
    return len(digest) == DIGEST_LENGTH[ALGORITHM_DIGEST[algorithm]] and b64(digest) == value


def check_part_checksum(algorithm: str | None, checksum_type: str | None, declared: str | None) -> None:
    """S3's refusal of a part whose checksum could never take part in its upload's: one of another
    algorithm, or none in an upload of COMPOSITE checksums, whose parts must each carry theirs.
    ``declared``: the algorithm the part's x-amz-checksum-* header or trailer names. Known from
    the headers, so checked before the body (and where the part is stored, against the upload
    read there)."""
    if algorithm is not None and declared != algorithm and (declared is not None or checksum_type == "COMPOSITE"):
        raise errors.InvalidRequest(
            f"Checksum Type mismatch occurred, expected checksum Type: {algorithm.lower()}, "
            f"actual checksum Type: {declared.lower() if declared is not None else 'null'}"
        )
