"""CopyObject and RenameObject for DiskBackend: cheap on one filesystem.

RenameObject is one ``rename`` (same inode, O(1) whatever the size). CopyObject of a large object
that s3serve wrote is a hard link: object files are never modified in place, so two keys may
share an inode as long as their metadata does not. The inode's xattr then holds ``SHARED``
(which is not a record, so ``MetaStore.load`` falls through to the per-key sidecar) and every
key of the inode has its own sidecar record. Tag updates of such a key go to its sidecar
(``DiskBackend.put_object_tagging``); a PUT over one of the keys renames a new file over that
directory entry and leaves the others alone. A linked copy keeps the source's Last-Modified (its
mtime is the inode's). Anything else is copied by the kernel (reflink or copy_file_range).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import stat
import time
import uuid
from typing import TYPE_CHECKING

from .. import errors
from ..checksums import ALGORITHM_DIGEST, MultiHasher, b64
from . import keys, metadata
from .base import ObjectInfo, Precondition, WriteMeta
from .faults import refusals
from .folders import drop_marker, make_folder, prune
from .gc import LINK_GUARD, create_locked
from .metadata import XATTR, Record
from .staging import copy_range

if TYPE_CHECKING:
    from .disk import DiskBackend, _Found

# Below this a byte copy costs less than the extra sidecar records of a link.
LINK_MIN_SIZE = 64 * 1024
SHARED = b'{"shared":1}'


def is_shared(target: int | str) -> bool:
    """Whether a file's inode is shared by several keys (its records are per-key sidecars)."""
    try:
        return os.getxattr(target, XATTR) == SHARED
    except OSError:
        return False


def records_per_key(target: int | str) -> bool:
    """Whether a file's record belongs in its key's sidecar rather than its inode's xattr: the
    inode is a linked copy's (SHARED), or has other names all the same (links another program
    made, or a linked copy whose marker another program removed), whose keys would all read a
    record put in the inode as their own."""
    if is_shared(target):
        return True
    try:
        st = os.fstat(target) if isinstance(target, int) else os.stat(target)
    except OSError:
        return False
    return st.st_nlink > 1


def _linkable(found: _Found, record: Record, want: str | None, spath: str) -> bool:
    """A hard link is safe for a file that s3serve wrote (a foreign file may be rewritten in place
    by its program: adopted records carry no checksums), reached by its own name (not a symlink)."""
    return (
        want is None
        and record.parts is None  # a multipart object's copy is hashed (its ETag is its MD5)
        and record.size >= LINK_MIN_SIZE
        and bool(found.record.checksums)
        and found.real == spath
    )


async def copy_object(
    disk: DiskBackend,
    src_bucket: str,
    src_key: str,
    dst_bucket: str,
    dst_key: str,
    meta: WriteMeta | None,
    src_precondition: Precondition | None = None,
    precondition: Precondition | None = None,
) -> ObjectInfo:
    disk._bucket_dir(src_bucket)
    _, dkp, _ = disk._locate(dst_bucket, dst_key)
    # After the destination's refusal, as for any source this disk does not have.
    _, _, spath = disk._locate(src_bucket, src_key, existing=True)
    found = await disk._find(src_bucket, src_key, keep_fd=True)
    tmp: str | None = None
    lock_fd: int | None = None
    try:
        if src_precondition is not None:
            src_precondition(found.info)
        record = found.record.copied(meta)
        want = meta.checksum_algorithm if meta is not None else None
        if want is not None and want not in record.checksums:
            if want not in ALGORITHM_DIGEST:
                raise errors.InvalidRequest(f"Checksum algorithm {want} is not supported.")
        else:
            want = None
        # S3 copies an object in one action however it was uploaded: the copy of a multipart
        # object is a single-part one, its ETag the MD5 of its bytes and a composite checksum
        # (of the parts' checksums) made a direct one of the whole.
        if record.parts is not None and want is None and record.checksum_type == "COMPOSITE":
            want = next(iter(record.checksums), None)
        if dkp.is_folder:
            if record.size:
                raise errors.InvalidArgument(
                    "A key ending in '/' is a folder on this server's filesystem and cannot have content.",
                    resource=dst_key,
                )
            record.folder = True
            _rehash(record, MultiHasher(["md5", *([ALGORITHM_DIGEST[want]] if want else [])]).digests(), want)
        else:
            if _linkable(found, record, want, spath):
                info = await _copy_by_link(disk, src_bucket, src_key, dst_bucket, dkp, meta, src_precondition, precondition)
                if info is not None:
                    return info
            tmp = os.path.join(disk._tmp_dir, f"copy-{uuid.uuid4().hex}")
            lock_fd = create_locked(tmp)  # held until published: the GC leaves it alone
            with refusals(dst_key):
                copied = await asyncio.to_thread(_clone_into, found.fd, lock_fd, record.size)
            if copied != record.size:
                raise errors.InternalError("The source object changed while it was being copied; please retry.")
            if want is not None or record.parts is not None:
                names = ["md5"] if record.parts is not None else []
                names += [ALGORITHM_DIGEST[want]] if want else []
                digests, _ = await asyncio.to_thread(metadata.hash_file, tmp, names)
                _rehash(record, digests, want)
    except BaseException:
        keys.unlink_quietly(tmp)
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    finally:
        if found.fd is not None:
            os.close(found.fd)
    try:
        return await disk._publish(dst_bucket, dkp, tmp, record, precondition)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _rehash(record: Record, digests: dict[str, bytes], want: str | None) -> None:
    """The copy's record made that of its bytes as hashed: ``want``'s checksum, and for the copy
    of a multipart object, the MD5 for ETag and no parts."""
    if want is not None:
        record.checksums = {want: b64(digests[ALGORITHM_DIGEST[want]])}
        record.checksum_type = "FULL_OBJECT"
    if record.parts is not None:
        record.etag = digests["md5"].hex()
        record.parts = None


def _clone_into(src: int | None, dst: int, size: int) -> int:
    """Reflink where the filesystem shares extents, else copy in the kernel; bytes copied."""
    if src is None:
        return 0
    try:
        fcntl.ioctl(dst, keys.FICLONE, src)
    except OSError:
        copy_range(src, 0, dst, 0, size)
    return os.fstat(dst).st_size


async def _copy_by_link(
    disk: DiskBackend,
    src_bucket: str,
    src_key: str,
    dst_bucket: str,
    dkp: keys.KeyPath,
    meta: WriteMeta | None,
    src_precondition: Precondition | None,
    precondition: Precondition | None,
) -> ObjectInfo | None:
    """Copy by hard link under both keys' locks; None when a link is not possible here."""
    _, skp, spath = disk._locate(src_bucket, src_key)
    ddir = disk._bucket_dir(dst_bucket)
    dpath = keys.object_path(ddir, dkp)
    held = frozenset({disk.locks.slot(src_bucket, src_key), disk.locks.slot(dst_bucket, dkp.key)})
    async with disk.locks.hold(*held):
        src = await disk._lookup(src_bucket, skp, spath, held=held)
        if src is None:
            raise disk._absent(src_key, spath)
        if src_precondition is not None:
            src_precondition(src.info)
        if src.real != spath:
            return None  # a symlink now
        if precondition is not None:
            current = await disk._lookup(dst_bucket, dkp, dpath, held=held)
            precondition(current.info if current else None)
        # The source by a checked descriptor of its folder, and as the inode its record is for:
        # when another program swapped a folder on the way (for a symlink leading out of ROOT) or
        # the file itself since the lookup, the caller copies the bytes the lookup opened instead.
        with keys.folder_of(disk._real_root, spath) as folder_fd:
            if folder_fd is None:
                return None
            try:
                src_fd = os.open(
                    os.path.basename(spath), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd
                )
            except OSError:
                return None
            try:
                linked = _link(disk, src_bucket, src_key, src.record, dst_bucket, ddir, dkp, dpath, meta, folder_fd, src_fd)
            finally:
                os.close(src_fd)
    if linked is None:
        return None
    record, folders = linked
    await disk.sync_folders(folders)
    return record.to_info(dkp.key)


def _link(
    disk: DiskBackend,
    src_bucket: str,
    src_key: str,
    src_record: Record,
    dst_bucket: str,
    ddir: str,
    dkp: keys.KeyPath,
    dpath: str,
    meta: WriteMeta | None,
    folder_fd: int,
    src_fd: int,
) -> tuple[Record, list[str]] | None:
    """_copy_by_link's work on the open source ``src_fd`` (a name in ``folder_fd``): the copy's
    record and the folders to fsync, or None when a link is not possible."""
    st = os.fstat(src_fd)
    xattrs = disk.meta.use_xattrs
    shared = xattrs and is_shared(src_fd)
    if not stat.S_ISREG(st.st_mode) or st.st_ino != src_record.inode:
        return None  # replaced by another program since the lookup
    if xattrs and st.st_nlink > 1 and not shared:
        return None  # hard links another program made
    record = src_record.copied(meta)
    record.blob = None
    record.modified_ns = time.time_ns()  # a new object to S3, on the source's inode
    tmp = os.path.join(disk._tmp_dir, f"link-{uuid.uuid4().hex}")
    name = keys.parse_key(src_key).segments[-1]
    # The temp link is not flocked, as other temp files are: that would be a flock on the
    # source's inode, the object's. Its guard is, from before the link until after it is gone:
    # the GC of another process sharing ROOT leaves the link alone while the guard is held.
    guard = create_locked(tmp + LINK_GUARD)
    try:
        try:
            os.link(name, tmp, src_dir_fd=folder_fd, follow_symlinks=False)
        except OSError as e:
            # ENOENT: removed since it was opened (the byte copy reads the file the lookup opened).
            if e.errno in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP, errno.ENOENT):
                return None
            raise
        if os.lstat(tmp).st_ino != st.st_ino:
            return None  # swapped by another program between the open and the link
        if xattrs and not shared:
            # The source's record becomes per key before the inode's record goes away.
            disk.meta.write_sidecar(src_bucket, src_key, src_record)
            os.setxattr(src_fd, XATTR, SHARED)
            if src_record.blob:
                disk.meta.drop_blob(src_record.blob)
        old = disk._existing_record(dst_bucket, dkp, dpath)
        # The copy's record goes into the destination's sidecar before the rename, beside the
        # destination's own when that is the sidecar too (MetaStore.renaming).
        keep = old if old is not None and _record_in_sidecar(disk, dpath) else None
        with disk.meta.renaming(dst_bucket, dkp.key, record, keep):
            folders = keys.place(disk._real_root, ddir, dkp, dpath, tmp)
        # Left for the finally below: when the destination already was a name of this inode
        # (a copy onto itself, or again onto an earlier linked copy), rename() did nothing
        # and the temp link is still there (both records in the sidecar match it then: the
        # first, the copy's, is the one read).
        if old is not None and old.blob:
            disk.meta.drop_blob(old.blob)
    finally:
        # The link before its guard: a link left without a guard is one whose copy is over.
        keys.unlink_quietly(tmp)
        keys.unlink_quietly(tmp + LINK_GUARD)
        os.close(guard)
    return record, folders


def _record_in_sidecar(disk: DiskBackend, target: int | str) -> bool:
    """Whether the record of the file ``target`` is its key's sidecar, not its inode's xattr: in
    sidecar mode, for a linked copy (SHARED), for a file that takes no xattr."""
    if not disk.meta.use_xattrs:
        return True
    try:
        return os.getxattr(target, XATTR) == SHARED
    except OSError:
        return True


def _relinked(
    disk: DiskBackend, src_fd: int, name: str, spath: str, dpath: str, real: str
) -> tuple[str, int] | None:
    """For a source that is a relative symlink (another program's) moving to another folder: a
    new link, at a temp path, that leads from the destination's folder where the source led,
    and its flocked guard; None when the link itself can move. Moved as it is, a relative link
    would lead from its new folder somewhere else: another object, or nowhere."""
    target = os.readlink(name, dir_fd=src_fd)
    src_dir, dst_dir = keys.realpath(os.path.dirname(spath)), keys.realpath(os.path.dirname(dpath))
    if os.path.isabs(target) or src_dir is None or dst_dir is None or src_dir == dst_dir:
        return None
    lead = os.path.normpath(os.path.join(src_dir, target))
    if keys.realpath(lead) != real:
        lead = real  # a '..' after a symlink in the target: the kernel's reading, not normpath's
    tmp = os.path.join(disk._tmp_dir, f"link-{uuid.uuid4().hex}")
    # Guarded as _link's temp link: the GC of another process sharing ROOT leaves it alone.
    guard = create_locked(tmp + LINK_GUARD)
    try:
        os.symlink(os.path.relpath(lead, dst_dir), tmp)
    except BaseException:
        keys.unlink_quietly(tmp + LINK_GUARD)
        os.close(guard)
        raise
    return tmp, guard


async def rename_object(
    disk: DiskBackend,
    bucket: str,
    src_key: str,
    dst_key: str,
    src_precondition: Precondition | None = None,
    precondition: Precondition | None = None,
) -> ObjectInfo:
    bdir = disk._bucket_dir(bucket)
    dkp = keys.parse_key(dst_key)
    skp = keys.lookup_key(src_key)
    if skp is None:  # never here: after the destination's refusal, as any source this disk has not
        raise errors.NoSuchKey(resource=src_key, Key=src_key)
    if skp.is_folder != dkp.is_folder:
        raise errors.InvalidArgument(
            "A folder key (ending in '/') can only be renamed to another folder key here.",
            resource=dst_key,
        )
    spath, dpath = keys.object_path(bdir, skp), keys.object_path(bdir, dkp)
    held = frozenset({disk.locks.slot(bucket, src_key), disk.locks.slot(bucket, dst_key)})
    info, folders, emptied = await _rename_locked(disk, bucket, bdir, src_key, dst_key, skp, dkp, spath, dpath,
                                                  held, src_precondition, precondition)  # fmt: skip
    # The folders' fsyncs after the keys' locks: they run in the write pool, whose threads wait
    # for key locks with a blocking flock; 32 writes queued behind this rename's locks would hold
    # every thread while the fsync this rename awaits waited for one (all writes stopped). The
    # new name (and any folder made for it) first, then the old name's folder, so a crash
    # cannot bring the source key back beside the destination.
    await disk.sync_folders(folders)
    if emptied is not None:
        await disk.sync_removal(bdir, emptied)
    return info


async def _rename_locked(
    disk: DiskBackend,
    bucket: str,
    bdir: str,
    src_key: str,
    dst_key: str,
    skp: keys.KeyPath,
    dkp: keys.KeyPath,
    spath: str,
    dpath: str,
    held: frozenset[int],
    src_precondition: Precondition | None,
    precondition: Precondition | None,
) -> tuple[ObjectInfo, list[str], str | None]:
    """rename_object's work under the keys' locks: the renamed object, the folders to fsync and
    the folder the source's name left (None when nothing moved)."""
    async with disk.locks.hold(*held):
        src = await disk._lookup(bucket, skp, spath, held=held)
        if src is None:
            raise disk._absent(src_key, spath)
        if src_precondition is not None:
            src_precondition(src.info)
        dst = await disk._lookup(bucket, dkp, dpath, held=held) if precondition is not None else None
        if precondition is not None:
            precondition(src.info if src_key == dst_key else (dst.info if dst else None))
        if src_key == dst_key:
            return src.info, [], None
        if skp.is_folder:
            # Renaming the directory would move every key below it too: move only the marker.
            record = src.record.copied(None)
            folders = make_folder(disk, bucket, bdir, dkp, dpath, record)
            drop_marker(disk, bucket, bdir, skp, src.real, src.record, held)
            return record.to_info(dst_key), folders, None
        old = disk._existing_record(bucket, dkp, dpath)
        # A record kept in a sidecar (sidecar mode, a linked copy) goes to the destination's
        # sidecar before the rename (MetaStore.renaming), else a crash right after the rename
        # left the renamed object without a record (ETag hashed again; type, tags and checksums
        # gone), and the source's goes after. A record in the xattr moves with the file.
        early = _record_in_sidecar(disk, src.real)
        keep = old if early and old is not None and _record_in_sidecar(disk, dpath) else None
        renaming: contextlib.AbstractContextManager[None]
        renaming = disk.meta.renaming(bucket, dst_key, src.record, keep) if early else contextlib.nullcontext()
        # The source by a checked descriptor of its folder: a folder on the way swapped for a
        # symlink leading out of ROOT since the lookup cannot bring a file from out there in.
        with keys.folder_of(disk._real_root, spath) as src_fd:
            name = os.path.basename(spath)
            try:
                if src_fd is None:
                    raise FileNotFoundError(spath)
                moved = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
                relinked = None
                if stat.S_ISLNK(moved.st_mode):
                    relinked = _relinked(disk, src_fd, name, spath, dpath, src.real)
                try:
                    with renaming:
                        if relinked is None:
                            folders = keys.place(disk._real_root, bdir, dkp, dpath, name, src_fd)
                        else:
                            folders = keys.place(disk._real_root, bdir, dkp, dpath, relinked[0])
                finally:
                    if relinked is not None:
                        # The link before its guard, as _link's.
                        keys.unlink_quietly(relinked[0])
                        keys.unlink_quietly(relinked[0] + LINK_GUARD)
                        os.close(relinked[1])
            except FileNotFoundError:
                raise errors.NoSuchKey(resource=src_key, Key=src_key) from None
            # rename(2) between two names of one inode (onto a linked copy of the source) does
            # nothing and leaves both: the source's name goes by hand.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(name, dir_fd=src_fd, follow_symlinks=False).st_ino == moved.st_ino:
                    os.unlink(name, dir_fd=src_fd)
        if early:
            disk.meta.forget(bucket, src_key, None)
        else:
            disk.meta.move_sidecar(bucket, src_key, dst_key)
        if old is not None and old.blob and old.blob != src.record.blob:
            disk.meta.drop_blob(old.blob)
        prune(disk, bucket, bdir, os.path.dirname(spath), held)
    info = src.info
    info.key = dst_key
    return info, folders, os.path.dirname(spath)

