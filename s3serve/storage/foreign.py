"""Foreign files: files another program put into a bucket, which carry no record of ours (or one
made for an older version of the file). Their ETag is made once, on first sight, and cached like
any record.

A listing page is where first sight usually happens (a folder of photos served for the first
time): ``adopt_paths`` hashes the page's foreign files in parallel. hashlib releases the GIL while
it hashes a large buffer and the reads are preads, so a page is read and hashed on every core
instead of one.
"""

from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import copies, keys, metadata
from .base import ObjectInfo
from .metadata import Record

if TYPE_CHECKING:
    from .disk import DiskBackend

READ_PIECE = 1024 * 1024
# Foreign files up to this size get the MD5 of their bytes as ETag, read once and cached. Bigger
# ones get an ETag of multipart shape made from the file's identity (device, inode, size, mtime)
# without reading a byte: hashing a folder of large files on first sight (a listing page of a
# thousand of them, a HEAD of a 50 GiB file) would outlast every client's read timeout. Above this
# size the aws cli and boto3 upload in parts, so S3's own ETags of such objects are not MD5s
# either, and clients do not take them for one.
HASHED_FOREIGN_MAX = 8 * 1024 * 1024
# Hashing threads shared by every listing: enough for the cores, and few enough that a page of
# foreign files cannot crowd out the rest of the server's worker threads.
HASH_THREADS = min(8, os.cpu_count() or 1)
# Threads start on first use only.
_pool = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="s3serve-hash")


def adopt(disk: DiskBackend, fd: int, bucket: str, key: str, path: str, held: frozenset[int]) -> Record:
    """The record of the foreign file open as ``fd`` at ``path``: its ETag (see
    HASHED_FOREIGN_MAX), made once and cached. Runs in a worker thread."""
    before = os.fstat(fd)
    record = disk.meta.load(fd, bucket, key, before)  # adopted meanwhile by someone else
    if record is not None:
        return record
    if before.st_size > HASHED_FOREIGN_MAX:
        etag, size = identity_etag(before), before.st_size
    else:
        md5 = hashlib.md5()
        size = 0
        while piece := os.pread(fd, READ_PIECE, size):
            md5.update(piece)
            size += len(piece)
        etag = md5.hexdigest()
    after = os.fstat(fd)
    record = Record(etag=etag, size=size, headers={"content-type": metadata.guess_content_type(key)})
    record.stamp(after)
    if (before.st_size, before.st_mtime_ns) != (
        after.st_size,
        after.st_mtime_ns,
    ) or size != after.st_size:
        return record  # still being written by its owner: do not cache a torn hash
    slot = disk.locks.slot(bucket, key)
    try:
        lock = None if slot in held else disk.locks.try_lock(slot)
    except OSError:
        return record  # no inode left for the slot's lock file: a read must not fail for a cache
    if lock is None and slot not in held:
        return record  # a writer holds the key: the cache can wait for the next reader
    try:
        # A sidecar is found by key: only cache it while the key still names this file.
        current = os.stat(path)
        if current.st_ino == after.st_ino and current.st_dev == after.st_dev:
            if copies.records_per_key(fd):
                # A linked copy (copies._link), reached through a symlink or with its marker
                # removed, or a file with other names: a record in the inode would be each
                # name's, and replacing the marker would take the others' metadata away.
                disk.meta.write_sidecar(bucket, key, record)
            else:
                disk.meta.store(fd, bucket, key, record)
    except OSError:
        pass  # caching is an optimisation; a read-only place only costs a re-hash next time
    finally:
        if lock is not None:
            os.close(lock)
    return record


def identity_etag(st: os.stat_result) -> str:
    """An ETag of multipart shape from a file's identity, without reading a byte of it."""
    identity = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.md5(identity.encode()).hexdigest() + "-1"


def _adopt_path(disk: DiskBackend, bucket: str, key: str, path: str) -> ObjectInfo | None:
    # Opened as GET opens it: a symlink that stays inside ROOT is followed (the walk listed it, and
    # GET serves it), and what was opened is checked to lie inside ROOT: a folder on the way may
    # have been swapped for a symlink leading out since the walk (adopt writes a record to it).
    opened = keys.open_file(disk._real_root, path)
    if opened is None:
        return _unreadable(disk, key, path)
    _, fd, _ = opened
    try:
        # adopt takes a record that matches the open file before it hashes anything.
        return adopt(disk, fd, bucket, key, path, frozenset()).to_info(key)
    finally:
        os.close(fd)


def _unreadable(disk: DiskBackend, key: str, path: str) -> ObjectInfo | None:
    """A listed file the server may not read is still listed (GET answers 403 for it): left out,
    it would look deleted to a sync tool, which then deletes its own copy. None when it is gone,
    not a regular file or not inside ROOT (what the walk saw changed since)."""
    if not keys.denied(disk._real_root, path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return ObjectInfo(key=key, size=st.st_size, etag=identity_etag(st), last_modified=st.st_mtime)


def adopt_paths(disk: DiskBackend, bucket: str, found: list[tuple[str, str]]) -> list[ObjectInfo | None]:
    """The listed objects of (key, path) pairs of foreign files, in order; None for one that is
    gone. Called from a listing's worker thread."""
    if len(found) == 1 or HASH_THREADS == 1:
        return [_adopt_path(disk, bucket, key, path) for key, path in found]
    return list(_pool.map(lambda pair: _adopt_path(disk, bucket, *pair), found))
