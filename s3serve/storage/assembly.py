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
the end), so a Complete that fails after collapsing gives the upload back intact. So does one that
dies (killed, or the power lost) in the middle: its plan, written durably to the ``collapsing``
marker before the first step, and the file's size, which every step changes by a known amount,
tell the GC what to undo before it gives the upload back (see ``Plan`` and ``restore``).

Either way (collapsed here, or concatenated by completion.py), the object's file is handed to
the publish's rename under a second name in the claimed folder, which the durable ``publishing``
marker names (``hand_over``): a Complete that dies after that rename leaves a claim that says so,
even once the key has been written again, so the upload is never given back to be published a
second time over the newer object (gc.published).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import functools
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .. import errors
from ..checksums import MultiHasher
from . import gc, keys
from .base import Body, ObjectInfo, Precondition
from .gc import read_json, try_flock
from .metadata import Record
from .streams import fallocate

if TYPE_CHECKING:
    from .disk import DiskBackend

log = logging.getLogger("s3serve.multipart")
T = TypeVar("T")

SLOT = 5 * 1024**3
ASSEMBLY = "assembly"
COLLAPSING = gc.COLLAPSING
SLOT_PREFIX = gc.SLOT_MARKER_PREFIX
PUBLISHING = gc.PUBLISHING
OBJECT = gc.OBJECT  # a second name of the collapsed file, the one handed to DiskBackend._publish

FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_INSERT_RANGE = 0x20

_COPY_PIECE = 1024 * 1024


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
    return {int(doc["n"]) for doc in _slot_records(directory)}


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
        # What write_body reserves ahead of the bytes: never past the slot, which the next
        # part's slot follows.
        length = body.decoded_length
        self.decoded_length = length if length is not None and length <= limit else None

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


@functools.cache
def boot_id() -> str:
    """This boot of the kernel ('' where unknown). A process that dies leaves its files exactly as
    its finished syscalls made them; after a reboot, they are what the filesystem's journal kept."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Plan:
    """A collapse of the assembly file, fixed before its first step and kept in the durable
    ``collapsing`` marker: truncate the file from ``size`` to ``end``, then remove each of
    ``removed`` in order. Every removal shrinks the file by its length (never 0) and the
    truncation by ``size - end`` (when that is 0, the states before and after it are the same
    file), so the file's size alone says how many steps were taken. Undone in reverse order, the
    steps pass through the same sizes again: a crash in the middle of a collapse or of its undo
    leaves a file whose size says what is left to undo."""

    size: int
    end: int
    removed: tuple[tuple[int, int], ...]
    boot: str  # boot_id() when it began

    def steps_done(self, size: int) -> int | None:
        """How many steps (the truncation, then each removal) a file of ``size`` has been
        through; None when no state of this plan has that size."""
        if size == self.end:
            return 1
        if size == self.size:
            return 0
        current = self.end
        for done, (_, length) in enumerate(self.removed, 2):
            current -= length
            if size == current:
                return done
        return None

    def dump(self) -> bytes:
        return json.dumps({"size": self.size, "end": self.end, "removed": self.removed, "boot": self.boot}).encode()

    @classmethod
    def load(cls, path: str) -> Plan | None:
        """The plan in a marker; None for one that has none (an empty marker, which versions
        before plans were kept wrote)."""
        doc = read_json(path)
        if doc is None:
            return None
        try:
            removed = tuple((int(offset), int(length)) for offset, length in doc["removed"])
            return cls(int(doc["size"]), int(doc["end"]), removed, str(doc["boot"]))
        except (KeyError, TypeError, ValueError):
            return None


class Outcome(enum.Enum):
    """What ``restore`` made of an upload whose Complete began collapsing it."""

    RESTORED = "restored"  # every part back in its slot, the marker gone: the upload can be given back
    PUBLISHED = "published"  # the file is an object now, whole: left alone, the upload is over
    LOST = "lost"  # neither: the upload can only be discarded


def collapse(fd: int, plan: Plan, fsync: bool) -> bool:
    """Take the plan's steps: the file becomes exactly the listed parts, in order. False when the
    filesystem cannot collapse: the file is then as far as its size says (``restore`` it)."""
    try:
        os.ftruncate(fd, plan.end)
        for offset, length in plan.removed:
            if fsync:
                # The step before durable before this one begins: after a power loss the file
                # is still some state of the plan, as far as its size says (about 0.2 ms a step).
                os.fsync(fd)
            fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, offset, length)
    except OSError as e:
        # EOPNOTSUPP (tmpfs, btrfs, ...) or EINVAL is the usual answer; whatever it is, copying
        # remains possible (and reports a full disk properly if that is what this was).
        log.debug("cannot collapse the assembly file here (%s): copying instead", e)
        return False
    return True


def roll_back(fd: int, plan: Plan, fsync: bool) -> None:
    """Undo as much of ``plan`` as the file's size says was done: the removed ranges put back as
    holes (the last removed first), then the size. Every part is in its slot again. Raises
    OSError when the filesystem refuses, or when the size is no state of the plan."""
    done = plan.steps_done(os.fstat(fd).st_size)
    if done is None:
        raise OSError(errno.EINVAL, f"the assembly file's size is no state of its collapse {plan}")
    for offset, length in reversed(plan.removed[: max(done - 1, 0)]):
        fallocate(fd, FALLOC_FL_INSERT_RANGE, offset, length)
        if fsync:
            os.fsync(fd)  # in order, as the collapse: a crash here leaves a state of the plan
    os.ftruncate(fd, plan.size)
    if fsync:
        os.fsync(fd)  # before the marker goes


def restore(directory: str, fsync: bool, plan: Plan | None = None) -> Outcome:
    """Put every part of the claimed upload in ``directory`` back in its slot after its Complete
    collapsed the assembly file, wholly or partly, and then failed (``plan`` given) or died (the
    marker's plan, read by the GC once the claimant's flock is gone).

    A file that has a name outside the folder was published (renamed to its key, perhaps linked
    since by a copy): it is an object, whole, and stays as it is. After a reboot, the parts are
    hashed before the upload is given back: the filesystem guarantees the order of the steps
    (each was fsynced before the next), but not that a step itself, shifting extents, was
    all-or-nothing when the power went."""
    marker = os.path.join(directory, COLLAPSING)
    verify = False
    if plan is None:
        plan = Plan.load(marker)
        if plan is None:
            return Outcome.LOST
        verify = not plan.boot or plan.boot != boot_id()
    try:
        fd = os.open(os.path.join(directory, ASSEMBLY), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return Outcome.LOST
    try:
        link = os.path.join(directory, OBJECT)
        if os.fstat(fd).st_nlink > (2 if os.path.lexists(link) else 1):
            return Outcome.PUBLISHED
        # The name a publish would have consumed, and its marker (the next Complete makes both
        # again); the marker gone before the undo: a crash in it must not say "published".
        gc.forget_publish(directory, fsync)
        roll_back(fd, plan, fsync)
        if verify and not _parts_intact(directory, fd):
            log.error("the parts of %s do not have their recorded MD5 after the undo of its collapse; the upload will be discarded", directory)
            return Outcome.LOST
    except OSError:
        log.exception("could not undo the collapse of %s; the upload will be discarded", directory)
        return Outcome.LOST
    finally:
        os.close(fd)
    # Only once every part is back in its slot (and durably so) may the upload be given back.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(marker)
    if fsync:
        keys.fsync_dir(directory)
    return Outcome.RESTORED


def _slot_records(directory: str) -> list[dict[str, Any]]:
    """The records of the parts whose current data is their slot in the assembly file."""
    with os.scandir(directory) as it:
        names = [e.name for e in it if len(e.name) == 10 and e.name.endswith(".json") and e.name[:5].isdigit()]
    docs = (read_json(os.path.join(directory, name)) for name in sorted(names))
    return [doc for doc in docs if doc is not None and "a" in doc]


def _parts_intact(directory: str, fd: int) -> bool:
    size = os.fstat(fd).st_size
    for doc in _slot_records(directory):
        offset, length = int(doc["a"]), int(doc["s"])
        if length and offset + length > size:
            return False
        if hash_range(fd, ["md5"], offset, length)["md5"].hex() != doc["e"]:
            return False
    return True


def _block_size(fd: int) -> int:
    return max(os.fstatvfs(fd).f_bsize, os.fstat(fd).st_blksize, 1)


def _write_marker(directory: str, plan: Plan, fsync: bool) -> None:
    _write_durably(directory, COLLAPSING, plan.dump(), fsync)


def _write_durably(directory: str, name: str, data: bytes, fsync: bool, claim_synced: bool = False) -> None:
    """A marker (the collapse's plan, or what is being published), durable before the step it
    announces: whatever a crash leaves, it can be told and undone. Written whole under a temp
    name first (one the GC removes from an upload folder when left behind). Whole: a full disk
    cuts a write short rather than failing it (a plan of many parts is more than a block), and a
    marker with part of a plan could not be undone after a crash."""
    tmp = os.path.join(directory, f"{gc.UPLOAD_TEMP_PREFIX}{name}-{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]  # ENOSPC once nothing more fits
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.replace(tmp, os.path.join(directory, name))
    if fsync:
        keys.fsync_dir(directory)
    if fsync and not claim_synced:
        # The claim's rename too: were it lost in a power cut while the steps survived, the
        # upload would be back at its name with its parts collapsed (or published), and only a
        # claim is undone.
        keys.fsync_dir(os.path.dirname(directory))


def hand_over(directory: str, source: str, record: Record, fsync: bool, claim_synced: bool = False) -> str:
    """Worker thread: the object's finished file (``source``) linked into the claimed
    ``directory`` as OBJECT, the name to hand to DiskBackend._publish, and the durable
    ``publishing`` marker naming it. From then on, that name gone means published (gc.published):
    the Complete's process may die after the rename, and the key be written again before its
    claim is found, and the upload is still known to be over. ``claim_synced``: the claim's
    rename is durable already (the collapse's marker made it so). Returns the name."""
    link = os.path.join(directory, OBJECT)
    os.link(source, link)
    doc = {"name": OBJECT, "etag": record.etag, "size": record.size}
    _write_durably(directory, PUBLISHING, json.dumps(doc).encode(), fsync, claim_synced)
    return link


async def to_the_end(task: asyncio.Future[T]) -> T:
    """A worker thread's result; a cancellation waits for the thread to finish first (it goes on
    regardless), so that undoing what it did comes after it, never beside it."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        raise


def _collapse_claimed(directory: str, sources: list[Source], total: int, fsync: bool) -> Plan | None:
    """Worker thread: make the claimed upload's assembly file the object's bytes; the plan taken,
    for an undo. None: it does not qualify or cannot be collapsed here, and the file is as it was."""
    path = os.path.join(directory, ASSEMBLY)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if any(s.size and s.offset + s.size > size for s in sources):
            raise errors.InternalError("A part's data does not have its recorded size; please retry.")
        layout = gaps([(s.offset, s.size) for s in sources], _block_size(fd))
        if layout is None:
            return None
        plan = Plan(size, layout[1], tuple(layout[0]), boot_id())
        _write_marker(directory, plan, fsync)
        try:
            collapsed = collapse(fd, plan, fsync)
            if collapsed and os.fstat(fd).st_size != total:
                raise errors.InternalError("The assembled object does not have the expected size; please retry.")
        except BaseException:
            restore(directory, fsync, plan)
            raise
        if not collapsed:
            if restore(directory, fsync, plan) is not Outcome.RESTORED:
                # The parts are no longer where their records say: copying them would be wrong.
                raise errors.InternalError(
                    "The upload's parts could not be assembled; the upload was discarded, please upload it again."
                )
            return None
        return plan
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
    plan = await _collapse_in_thread(directory, sources, record.size, disk.fsync)
    if plan is None:
        return None
    # _publish consumes the name it is given, even when it fails: keep ours for the undo.
    try:
        link = await to_the_end(asyncio.ensure_future(
            asyncio.to_thread(hand_over, directory, os.path.join(directory, ASSEMBLY), record, disk.fsync, True)
        ))  # fmt: skip
        return await disk._publish(bucket, kp, link, record, precondition)
    except BaseException:
        # Left alone, with its marker (and the upload discarded), if _publish failed after its
        # rename, e.g. in the fsync of the key's folder: the file is the object then. Otherwise
        # the marker and the link go first, then the collapse is undone.
        restore(directory, disk.fsync, plan)
        raise


async def _collapse_in_thread(directory: str, sources: list[Source], total: int, fsync: bool) -> Plan | None:
    """The collapse in a worker thread, which goes on when the request is cancelled: wait for it,
    and undo what it did, before letting the cancellation through."""
    task = asyncio.ensure_future(asyncio.to_thread(_collapse_claimed, directory, sources, total, fsync))
    try:
        return await to_the_end(task)
    except asyncio.CancelledError:
        if not task.cancelled() and task.exception() is None and (plan := task.result()) is not None:
            restore(directory, fsync, plan)
        raise

