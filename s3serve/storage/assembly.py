"""The assembly file of a multipart upload: parts written in place, gaps collapsed at Complete.

Each upload folder may hold one sparse file, ``assembly``, in which part n lives at offset
``(n - 1) * SLOT``. SLOT is S3's maximum part size, so slots never overlap, and a multiple of
any block size, so every slot starts on a block boundary. When every listed part but the last
fills whole blocks, CompleteMultipartUpload turns the file into the object without copying a
byte: it truncates what follows the last part and removes the gaps between parts with
``fallocate(FALLOC_FL_COLLAPSE_RANGE)`` (ext4, XFS), which moves extents, not data.

Only the first upload of a part number writes in place: it creates ``slot-<n>`` with O_EXCL
(so the ``--workers`` processes agree) and holds an flock on it while it writes and commits,
so a Complete can tell a slot still being written (and then copies instead of collapsing).
A committed claim stays forever: a re-upload goes to a separate part file, so a slot's bytes
never change under a record that points to them.

A collapse can be undone (``FALLOC_FL_INSERT_RANGE`` puts the gaps back as holes, ``ftruncate``
the end), so a Complete that fails after collapsing gives the upload back intact. A crash in
the middle cannot be undone: the durable ``collapsing`` marker, written before the first
collapse, tells the GC to discard that claim instead of giving it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import errors
from ..checksums import MultiHasher
from . import gc, keys
from .base import Body, ObjectInfo, Precondition
from .gc import read_json, try_flock
from .metadata import Record

if TYPE_CHECKING:
    from .disk import DiskBackend

log = logging.getLogger("s3serve.multipart")

SLOT = 5 * 1024**3
ASSEMBLY = "assembly"
COLLAPSING = gc.COLLAPSING
SLOT_PREFIX = gc.SLOT_MARKER_PREFIX
OBJECT = "object"  # a second name of the collapsed file, the one handed to DiskBackend._publish

FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_INSERT_RANGE = 0x20

_COPY_PIECE = 1024 * 1024

_libc: ctypes.CDLL | None = None


def copy_range(src: int, src_offset: int, dst: int, dst_offset: int, length: int) -> None:
    """Copy bytes between files in the kernel (copy_file_range, which reflinks where the
    filesystem can), falling back to pread/pwrite across filesystems."""
    end = src_offset + length
    with contextlib.suppress(OSError):  # EXDEV, ENOSYS, EINVAL: copy by hand below
        while src_offset < end:
            n = os.copy_file_range(src, dst, end - src_offset, src_offset, dst_offset)
            if n == 0:
                break
            src_offset += n
            dst_offset += n
    while src_offset < end:
        piece = os.pread(src, min(_COPY_PIECE, end - src_offset), src_offset)
        if not piece:
            raise errors.InternalError("The data of a part is shorter than recorded; please retry.")
        os.pwrite(dst, piece, dst_offset)
        src_offset += len(piece)
        dst_offset += len(piece)


def hash_range(fd: int, names: list[str], offset: int, length: int) -> dict[str, bytes]:
    hasher = MultiHasher(names)
    end = offset + length
    while offset < end and (piece := os.pread(fd, min(_COPY_PIECE, end - offset), offset)):
        hasher.update(piece)
        offset += len(piece)
    return hasher.digests()


def slot_offset(number: int) -> int:
    return (number - 1) * SLOT


def marker_name(number: int) -> str:
    return f"{SLOT_PREFIX}{number:05d}"


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """libc ``fallocate`` (os.posix_fallocate has no mode); raises OSError with the errno."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        _libc.fallocate.restype = ctypes.c_int
    if _libc.fallocate(fd, mode, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@dataclass(frozen=True)
class Source:
    """Where a listed part's bytes are: a part file (from offset 0) or the assembly file."""

    path: str
    offset: int
    size: int
    in_slot: bool


def source_of(directory: str, doc: dict[str, Any]) -> Source:
    size = int(doc["s"])
    if "a" in doc:
        return Source(os.path.join(directory, ASSEMBLY), int(doc["a"]), size, True)
    return Source(os.path.join(directory, os.path.basename(str(doc["f"]))), 0, size, False)


def _slots_in_use(directory: str) -> set[int]:
    """The part numbers whose current record points into the assembly file."""
    numbers = set()
    with os.scandir(directory) as it:
        names = [e.name for e in it if len(e.name) == 10 and e.name.endswith(".json") and e.name[:5].isdigit()]
    for name in names:
        doc = read_json(os.path.join(directory, name))
        if doc is not None and "a" in doc:
            numbers.add(int(name[:5]))
    return numbers


@dataclass
class SlotClaim:
    """An in-place writer's hold on its slot: the flocked marker and the assembly file."""

    marker: str
    marker_fd: int
    fd: int
    offset: int

    def close(self, release: bool) -> None:
        """``release`` gives the slot up (unlinked while still flocked) for a later upload of the
        number; only for a write that never reached its commit (its bytes are referenced by nothing)."""
        os.close(self.fd)
        if release:
            with contextlib.suppress(OSError):
                os.unlink(self.marker)
        os.close(self.marker_fd)


def claim_slot(directory: str, number: int) -> SlotClaim | None:
    """The slot of part ``number`` if this is its first upload and it fits in the file; None:
    write a separate part file. FileNotFoundError when the upload folder is gone (claimed)."""
    marker = os.path.join(directory, marker_name(number))
    try:
        marker_fd = os.open(marker, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        return None
    # Non-blocking: waiting here would stall the event loop. Losing means a Complete or the GC is
    # checking the markers right now: use a part file, and give the slot back (nothing was written).
    if not try_flock(marker_fd):
        with contextlib.suppress(OSError):
            os.unlink(marker)
        os.close(marker_fd)
        return None
    offset = slot_offset(number)
    try:
        # After the flock, by the folder's own path: once a Complete has claimed (renamed) the
        # folder, this fails instead of writing into a file being collapsed.
        fd = os.open(os.path.join(directory, ASSEMBLY), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(marker)
        os.close(marker_fd)
        raise
    try:
        # lseek refuses offsets past the filesystem's maximum file size (ext4 with 4 KiB blocks:
        # 16 TiB, part ~3277): such a part goes to a file before a byte of its body is read.
        os.lseek(fd, offset + SLOT, os.SEEK_SET)
    except (OSError, OverflowError):
        SlotClaim(marker, marker_fd, fd, offset).close(release=False)
        return None
    return SlotClaim(marker, marker_fd, fd, offset)


class BoundedBody:
    """A request body that may not grow past its slot: refused before the extra bytes are written."""

    def __init__(self, body: Body, limit: int) -> None:
        self.body = body
        self.limit = limit
        self.digests_wanted = body.digests_wanted
        self.declared_checksum = body.declared_checksum

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self.body:
            size += len(chunk)
            if size > self.limit:
                raise errors.EntityTooLarge(MaxSizeAllowed=self.limit)
            yield chunk

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        return self.body.finish(digests)


def slot_being_written(directory: str) -> bool:
    """Whether a writer still holds one of a claimed upload's slot markers: it has the assembly
    file open and may still write into it. One check after the claim is enough: a writer flocks
    its marker before it opens the file by the folder's old path, which no longer exists."""
    return gc.held_by_writer(directory, (SLOT_PREFIX,))


@dataclass
class Collapse:
    """What was done to the assembly file, so that it can be undone."""

    original_size: int
    removed: list[tuple[int, int]] = field(default_factory=list)  # (offset, length), in order done


def gaps(ranges: list[tuple[int, int]], block: int) -> tuple[list[tuple[int, int]], int] | None:
    """For the (offset, size) of the listed parts in order: the gaps to remove, last first, and
    the size to truncate to first. None when a gap would not be block-aligned."""
    kept = [(offset, size) for offset, size in ranges if size > 0]
    if not kept:
        return [], 0
    removed: list[tuple[int, int]] = []
    position = 0
    for offset, size in kept:
        if offset % block or position % block:
            return None
        if offset > position:
            removed.append((position, offset - position))
        position = offset + size
    # Every part but the last ends on a block boundary (checked above as the next gap's start).
    removed.reverse()  # the last gap first: each collapse leaves the earlier offsets alone
    return removed, kept[-1][0] + kept[-1][1]


def collapse(fd: int, ranges: list[tuple[int, int]], block: int, done: Collapse) -> bool:
    """Make the assembly file exactly the listed parts, in order. False when the filesystem
    cannot collapse (or the layout does not qualify): the file is then unchanged, or as far as
    ``done`` records (undo it)."""
    plan = gaps(ranges, block)
    if plan is None:
        return False
    removed, end = plan
    try:
        os.ftruncate(fd, end)
        for offset, length in removed:
            fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, offset, length)
            done.removed.append((offset, length))
    except OSError as e:
        # EOPNOTSUPP (tmpfs, btrfs, ...) or EINVAL is the usual answer; whatever it is, copying
        # remains possible (and reports a full disk properly if that is what this was).
        log.debug("cannot collapse the assembly file here (%s): copying instead", e)
        return False
    return True


def undo(fd: int, done: Collapse) -> None:
    """Put the removed gaps back as holes and the original size back: every part is in its slot
    again. Raises OSError when the filesystem refuses (the upload must then be discarded)."""
    for offset, length in reversed(done.removed):
        fallocate(fd, FALLOC_FL_INSERT_RANGE, offset, length)
        done.removed.pop()
    os.ftruncate(fd, done.original_size)


def _block_size(fd: int) -> int:
    return max(os.fstatvfs(fd).f_bsize, os.fstat(fd).st_blksize, 1)


def _write_marker(directory: str, fsync: bool) -> None:
    """Durable before the first collapse: a crash after it must not give back the upload."""
    fd = os.open(os.path.join(directory, COLLAPSING), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if fsync:
        keys.fsync_dir(directory)


def _restore(fd: int, directory: str, done: Collapse) -> bool:
    """Undo a collapse; only once every part is back in its slot may the upload be given back
    (the marker goes). An undo the filesystem refuses leaves the marker: the upload is discarded."""
    try:
        undo(fd, done)
    except OSError:
        log.exception("could not undo the collapse of %s; the upload will be discarded", directory)
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, COLLAPSING))
    return True


def _collapse_claimed(directory: str, sources: list[Source], total: int, fsync: bool) -> Collapse | None:
    """Worker thread: make the claimed upload's assembly file the object's bytes; what was done,
    for an undo. None: it does not qualify or cannot be collapsed here, and the file is as it was."""
    path = os.path.join(directory, ASSEMBLY)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        done = Collapse(os.fstat(fd).st_size)
        if any(s.size and s.offset + s.size > done.original_size for s in sources):
            raise errors.InternalError("A part's data does not have its recorded size; please retry.")
        ranges = [(s.offset, s.size) for s in sources]
        if gaps(ranges, _block_size(fd)) is None:
            return None
        _write_marker(directory, fsync)
        try:
            collapsed = collapse(fd, ranges, _block_size(fd), done)
            if collapsed and os.fstat(fd).st_size != total:
                raise errors.InternalError("The assembled object does not have the expected size; please retry.")
        except BaseException:
            _restore(fd, directory, done)
            raise
        if not collapsed:
            if not _restore(fd, directory, done):
                # The parts are no longer where their records say: copying them would be wrong.
                raise errors.InternalError(
                    "The upload's parts could not be assembled; the upload was discarded, please upload it again."
                )
            return None
        return done
    finally:
        os.close(fd)


async def publish_in_place(
    disk: DiskBackend,
    bucket: str,
    kp: keys.KeyPath,
    directory: str,
    sources: list[Source],
    record: Record,
    precondition: Precondition | None,
) -> ObjectInfo | None:
    """Complete a claimed upload without copying: collapse its assembly file and publish it.
    None when that cannot be done (the caller copies); the upload is then untouched."""
    listed = {os.path.basename(s.path) for s in sources}
    if not sources or listed != {ASSEMBLY}:
        return None
    if await asyncio.to_thread(slot_being_written, directory):
        return None  # its writer's fd would see the collapse
    numbers = {s.offset // SLOT + 1 for s in sources}
    if not await asyncio.to_thread(_slots_in_use, directory) <= numbers:
        return None  # an unlisted part in its slot: collapsing would lose it if Complete fails
    if precondition is not None:
        # Checked again under the key lock by _publish; this one spares a collapse (and its undo)
        # for the usual refusal.
        bdir = disk._bucket_dir(bucket)
        current = await disk._lookup(bucket, kp, keys.object_path(bdir, kp))
        precondition(current.info if current else None)
    done = await _collapse_in_thread(directory, sources, record.size, disk.fsync)
    if done is None:
        return None
    # _publish consumes the name it is given, even when it fails: keep ours for the undo.
    link = os.path.join(directory, OBJECT)
    try:
        os.link(os.path.join(directory, ASSEMBLY), link)
        return await disk._publish(bucket, kp, link, record, precondition)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        _restore_file(directory, done)
        raise


async def _collapse_in_thread(directory: str, sources: list[Source], total: int, fsync: bool) -> Collapse | None:
    """The collapse in a worker thread, which goes on when the request is cancelled: wait for it,
    and undo what it did, before letting the cancellation through."""
    task = asyncio.ensure_future(asyncio.to_thread(_collapse_claimed, directory, sources, total, fsync))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled() and task.exception() is None and (done := task.result()) is not None:
            _restore_file(directory, done)
        raise


def _restore_file(directory: str, done: Collapse) -> None:
    fd = os.open(os.path.join(directory, ASSEMBLY), os.O_RDWR | os.O_CLOEXEC)
    try:
        _restore(fd, directory, done)
    finally:
        os.close(fd)
