"""What the upstream cache asks of the local disk beyond the Backend interface: spool a body
into a temp file, and publish a spooled file as the local copy (replica) of an upstream object,
with the upstream's ETag, time and metadata rather than ones of its own."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .. import errors
from ..checksums import MultiHasher
from . import keys
from .base import STORED_HEADERS, Body, ObjectInfo, Precondition
from .faults import refusals
from .gc import create_locked
from .metadata import Record
from .spool import Spool
from .streams import write_body

if TYPE_CHECKING:
    from .disk import DiskBackend


async def spool(disk: DiskBackend, body: Body) -> Spool:
    """Write ``body`` to a temp file while hashing it; ``body.finish`` has passed when this returns."""
    path = disk.writer.temp_name("spool")
    lock_fd = create_locked(path)
    try:
        hasher = MultiHasher(["md5", *sorted(body.digests_wanted)])
        with refusals(), open(lock_fd, "wb", closefd=False) as f:
            size = await write_body(f, body, hasher, writeback=disk.fsync)
        digests = hasher.digests()
        checksums = body.finish(digests)
    except BaseException:
        Spool(path, lock_fd, 0, b"").discard()
        raise
    return Spool(path, lock_fd, size, digests["md5"], checksums)


def replica_record(info: ObjectInfo, tags: dict[str, str]) -> Record:
    return Record(
        etag=info.etag,
        size=info.size,
        headers={name: value for name, value in info.headers.items() if name in STORED_HEADERS},
        user_meta=dict(info.user_meta),
        checksums=dict(info.checksums),
        checksum_type=info.checksum_type,
        storage_class=info.storage_class,
        parts=list(info.parts) if info.parts else None,
        tags=dict(tags),
        folder=info.is_folder,
        # The upstream's time, not the rename's: listings (from the upstream) and GETs (from
        # here) must agree, or sync tools copy the object again.
        modified_ns=int(info.last_modified * 1e9),
        encryption=info.encryption,
    )


class Superseded(Exception):
    """The local copy at the key is a newer version than the one being published."""


def not_superseded(info: ObjectInfo, *, optional: bool) -> Precondition:
    """Checked under the key's lock against the local object: a copy of an older version than
    the one there must not replace it. Every process serving ROOT sees it, unlike a process's
    own record of its writes. Upstream times have a second's grain: on a tie with other bytes an
    ``optional`` copy (a read's) gives way, a write's own copy does not."""

    def check(current: ObjectInfo | None) -> None:
        if current is None or current.etag == info.etag:
            return
        ahead = current.last_modified - info.last_modified
        if ahead > 1e-3 or (optional and ahead >= -1e-3):
            raise Superseded()

    return check


async def publish_replica(
    disk: DiskBackend,
    bucket: str,
    key: str,
    spooled: Spool,
    info: ObjectInfo,
    tags: dict[str, str],
    precondition: Precondition | None = None,
) -> ObjectInfo:
    """Make ``spooled`` the local object at ``key``, described by the upstream's ``info``.
    The spool is consumed (renamed into place or removed), whatever happens."""
    try:
        kp = keys.parse_key(key)
        record = replica_record(info, tags)
        if kp.is_folder:
            spooled.discard()
            if info.size or spooled.size:
                # S3 lets "dir/" hold bytes; here it is a folder, which cannot: an empty folder
                # recorded with the upstream's size would be served as that many missing bytes.
                raise errors.InvalidArgument(
                    "A key ending in '/' is a folder on this server's filesystem and cannot have content.",
                    resource=key,
                )
            return await disk._publish(bucket, kp, None, record, precondition)
    except BaseException:
        spooled.discard()
        raise
    try:
        return await disk._publish(bucket, kp, spooled.path, record, precondition)  # consumes the file
    finally:
        spooled.release()


def replica_at(disk: DiskBackend, bucket: str, key: str) -> ObjectInfo | None:
    """The replica at ``key`` as its record describes it; None when there is none (nothing, or
    a file another program put into ROOT, the only copy of its data). Replicas carry the
    upstream's time in their record; in a cache's ROOT nothing else does (no local CopyObject
    runs there). Nothing is read or hashed: a stat and the record."""
    try:
        _, kp, path = disk._locate(bucket, key)
    except errors.S3Error:
        return None
    found = disk._resolve(path)
    if found is None:
        return None
    real, st = found
    if not (stat.S_ISDIR(st.st_mode) if kp.is_folder else stat.S_ISREG(st.st_mode)):
        return None
    record = disk.meta.load(real, bucket, kp.key, st)
    if record is None or record.modified_ns is None or record.folder != kp.is_folder:
        return None
    return record.to_info(kp.key)


def same_file(a: ObjectInfo, b: ObjectInfo) -> bool:
    """Whether two descriptions of the object at a key are of one version of it (a replica
    written over since has another ETag or time: the upstream's)."""
    return (a.etag, a.size, a.last_modified) == (b.etag, b.size, b.last_modified)


async def objects_of(disk: DiskBackend, bucket: str, page_size: int = 1000) -> AsyncIterator[ObjectInfo]:
    """Every object in the local bucket, page by page (nothing once the bucket is gone)."""
    marker = ""
    while True:
        try:
            page = await disk.list_objects(bucket, "", "", marker, page_size)
        except errors.NoSuchBucket:
            return
        for info in page.objects:
            yield info
        if not page.is_truncated or not page.next_marker:
            return
        marker = page.next_marker
