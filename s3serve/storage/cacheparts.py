"""The verified parts of multipart uploads going through the upstream cache, kept on the local disk
until CompleteMultipartUpload: the object it makes then becomes a replica from them, as a single
PUT's does, instead of being read back from the upstream on its first GET.

``ROOT/.s3serve/cache-parts/<hash of the bucket>-<hash of the upload id>/<part number>-<md5>``:
every worker process serving ROOT sees the parts the others received. A part uploaded again
replaces the one of its number; what Complete does not name is dropped with the folder, and
DeleteBucket drops the folders of its bucket (the upstream discards its uploads with it).
Uploads neither completed nor aborted are swept after the multipart expiry.

The parts count against ``--cache-size`` as the replicas do (eviction.py, ledger.py): a part is
kept only into room reserved for it. They are only ever a shortcut: the upstream has every part
it acknowledged, and its Complete joins them there, so an upload whose parts are not all here
is completed all the same and its object is fetched on its first read. So when a part finds no
room, or eviction needs theirs, the parts of its upload go at once (the others cannot make the
object without it), and a mark (MARK) in its folder keeps its later parts from taking room.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from .. import errors
from . import keys, replicas, ssec
from .base import (
    Body,
    BucketInfo,
    ObjectInfo,
    PartInfo,
    PartsPage,
    Precondition,
    UploadInfo,
    UploadListPage,
    WriteMeta,
)
from .completion import multipart_etag
from .gc import create_locked
from .ledger import alive
from .readthrough import CacheReads
from .spool import FileBody, Spool

log = logging.getLogger("s3serve.cache")

R = TypeVar("R")

COPY_PIECE = 64 << 20
# In an upload's folder: its parts were given up (PartStore.remove). A part is "<n>-<md5>".
MARK = "not-kept"
# The start of the names of folders on their way out (PartStore.remove), with the remover's pid.
TRASH = ".gone-"


@dataclass
class KeptUpload:
    name: str  # of its folder
    size: int  # bytes of its parts
    touched: float  # when a part was last added (the folder's mtime)

    @property
    def leaving(self) -> bool:
        """Being removed (PartStore.remove) already."""
        return self.name.startswith(TRASH)


@dataclass
class Arriving:
    """The parts of one upload on their way from the upstream to be kept (CacheMultipart)."""

    parts: int = 0
    ended: bool = False  # completed, aborted or its bucket forgotten since they were sent


class PartStore:
    def __init__(self, hidden: str) -> None:
        self.root = os.path.join(hidden, "cache-parts")

    @staticmethod
    def _bucket_prefix(bucket: str) -> str:
        return hashlib.sha256(bucket.encode("utf-8", "surrogateescape")).hexdigest()[:16] + "-"

    def _folder(self, bucket: str, upload_id: str) -> str:
        # Upload ids are the upstream's: any length, any characters.
        return os.path.join(self.root, self._bucket_prefix(bucket) + hashlib.sha256(upload_id.encode()).hexdigest()[:40])

    def keep(self, bucket: str, upload_id: str, number: int, spooled: Spool) -> tuple[bool, int]:
        """Move a part the upstream acknowledged here (consumes the spool), into the folder
        ``open`` made for it: whether it was kept, and the bytes of the parts of its number it took
        the place of. Not kept: the upload's parts were given up meanwhile, or these very bytes
        are here, or the folder was removed since ``open`` (the upload completed, aborted, its
        bucket forgotten: a folder made again here would outlive them until the multipart expiry)."""
        folder = self._folder(bucket, upload_id)
        name = f"{number}-{spooled.md5.hex()}"
        replaced = 0
        try:
            if self.given_up(bucket, upload_id):
                return False, 0
            for other in os.listdir(folder):
                if other != name and other.split("-", 1)[0] == str(number):
                    with contextlib.suppress(FileNotFoundError):
                        size = os.stat(os.path.join(folder, other)).st_size
                        os.unlink(os.path.join(folder, other))
                        replaced += size  # removed by this call: nobody else counts it
            # A link, not a rename: it fails rather than replace a file of the same name (that
            # another process counted).
            os.link(spooled.path, os.path.join(folder, name))
        except (FileExistsError, FileNotFoundError):
            return False, replaced  # here already; or the folder went (remove) as this ran
        finally:
            spooled.discard()
        return True, replaced

    def assemble(
        self, bucket: str, upload_id: str, parts: list[PartInfo], temp_path: str
    ) -> tuple[Spool, list[PartInfo]] | None:
        """The parts Complete named, in its order, joined into a new temp file (with their sizes),
        or None when one of them is not here (copied by UploadPartCopy on the upstream, say)."""
        folder = self._folder(bucket, upload_id)
        sources = []
        for part in parts:
            path = os.path.join(folder, f"{part.number}-{part.etag.strip(chr(34)).lower()}")
            if not os.path.isfile(path):
                return None
            sources.append((part.number, path))
        lock_fd = create_locked(temp_path)
        spooled = Spool(temp_path, lock_fd, 0, b"")
        sizes = []
        try:
            for number, path in sources:
                with open(path, "rb") as src:
                    size = os.fstat(src.fileno()).st_size
                    _copy(src.fileno(), lock_fd, size)
                sizes.append(PartInfo(number, size, path.rsplit("-", 1)[1]))
        except BaseException:
            spooled.discard()
            raise
        spooled.size = sum(part.size for part in sizes)
        return spooled, sizes

    def open(self, bucket: str, upload_id: str) -> bool:
        """Make the upload's folder, for a part to be kept (see keep): whether this call made it."""
        try:
            os.makedirs(self._folder(bucket, upload_id))
        except FileExistsError:
            return False
        return True

    def given_up(self, bucket: str, upload_id: str) -> bool:
        """Whether the upload's parts were given up (see remove): one stat."""
        return os.path.exists(os.path.join(self._folder(bucket, upload_id), MARK))

    def name(self, bucket: str, upload_id: str) -> str:
        """The name of the upload's folder."""
        return os.path.basename(self._folder(bucket, upload_id))

    def names_of(self, bucket: str) -> list[str]:
        """The folders of the bucket's uploads."""
        prefix = self._bucket_prefix(bucket)
        return [name for name in self._names() if name.startswith(prefix)]

    def stale(self, max_age: float) -> list[str]:
        """The folders of uploads nobody touched for ``max_age`` seconds, and those a process
        that is gone was removing."""
        limit = time.time() - max_age
        found = []
        for name in self._names():
            if name.startswith(TRASH):
                pid = name[len(TRASH) :].split("-", 1)[0]
                if not (pid.isdigit() and alive(int(pid))):
                    found.append(name)
                continue
            with contextlib.suppress(FileNotFoundError):
                if os.stat(os.path.join(self.root, name)).st_mtime < limit:
                    found.append(name)
        return found

    def size(self, name: str) -> int:
        """The bytes of the parts in folder ``name``."""
        return _bytes(os.path.join(self.root, name))

    def usage(self) -> list[KeptUpload]:
        """Every folder (those on their way out too), with the bytes of its parts."""
        found = []
        for name in self._names():
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                touched = os.stat(os.path.join(self.root, name)).st_mtime
                found.append(KeptUpload(name, self.size(name), touched))
        return found

    def remove(self, name: str, *, mark: bool = False) -> bool:
        """Remove folder ``name``; whether this call did (not another one). Renamed out of the way
        first: a part that lands after that goes to a new folder. ``mark``: leave one in its place
        with MARK in it, so that the upload's later parts are not kept (its parts were given up)."""
        path = os.path.join(self.root, name)
        trash = os.path.join(self.root, f"{TRASH}{os.getpid()}-{os.urandom(6).hex()}")
        removed = True
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            removed = False
        except OSError:  # cannot be renamed (its permissions changed?): removed where it is
            trash = path
        if removed:
            shutil.rmtree(trash, ignore_errors=True)
        if mark:
            try:
                os.makedirs(path, exist_ok=True)
                with open(os.path.join(path, MARK), "wb"):
                    pass
            except OSError as exc:  # its later parts are kept (and evicted) as others are
                log.debug("kept parts of %s not marked as given up: %s", path, exc)
        return removed

    def _names(self) -> list[str]:
        try:
            return os.listdir(self.root)
        except FileNotFoundError:
            return []


def _bytes(folder: str) -> int:
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def _copy(src: int, dst: int, size: int) -> None:
    """Append ``size`` bytes of ``src`` to ``dst``, in the kernel where it can."""
    done = 0
    try:
        while done < size:
            copied = os.copy_file_range(src, dst, min(COPY_PIECE, size - done))
            if copied <= 0:
                break
            done += copied
    except OSError:
        pass  # no copy_file_range here (or across these files): plain reads and writes
    os.lseek(src, done, os.SEEK_SET)
    while done < size:
        piece = memoryview(os.read(src, min(COPY_PIECE, size - done)))
        if not piece:
            raise OSError(f"part file shorter than {size} bytes")
        done += len(piece)
        while piece:
            piece = piece[os.write(dst, piece) :]


class CacheMultipart(CacheReads):
    """CacheBackend's multipart operations: staged by the upstream; each part verified here first,
    and kept (PartStore) so that the completed object becomes a replica, as reads keep theirs."""

    parts: PartStore
    # Parts of an upload (bucket, upload id) waiting for room (_keep_part_later), in this process.
    _part_keeps: dict[tuple[str, str], set[asyncio.Task[None]]]
    # Uploads (bucket, upload id) with parts sent to the upstream and not yet kept nor waiting for
    # room, in this process (see upload_part). Another worker process sharing ROOT sees none.
    _arriving: dict[tuple[str, str], Arriving]

    if TYPE_CHECKING:

        async def _write(
            self, bucket: str, keys: Sequence[str], write: Awaitable[R], *, then_read: bool = False
        ) -> tuple[R, int]: ...
        async def _drop_local(self, bucket: str, key: str, only: ObjectInfo | None = None) -> bool: ...
        async def head_bucket(self, name: str) -> BucketInfo: ...

    async def sweep_parts(self) -> None:
        """Drop the kept parts of uploads abandoned for longer than the multipart expiry."""
        for name in await asyncio.to_thread(self.parts.stale, self.local.staging.collector.expiry):
            await self.remove_parts(name)

    async def remove_parts(self, name: str, *, mark: bool = False) -> None:
        """Remove the kept parts in folder ``name`` (PartStore.remove). Under a size limit, their
        bytes are taken off the count before they go and held as reserved until they are gone:
        a round counting the disk meanwhile in another worker process, whether it sees them or
        not, never counts short (which would let the cache outgrow its limit until the next)."""
        size = 0
        if self.evictor.max_bytes is not None:
            size = await asyncio.to_thread(self.parts.size, name)
        self.evictor.hold(size)
        removed = False
        try:
            removed = await asyncio.to_thread(self.parts.remove, name, mark=mark)
        finally:
            self.evictor.unhold(size, removed=removed)

    async def sweep_parts_every_gc_interval(self) -> None:
        """Sweep as the multipart GC collects (after the one at start): on its own schedule, not
        on the next CreateMultipartUpload, which may never come, while the parts of an upload
        abandoned (or completed just before a crash) hold as many bytes as its object."""
        collector = self.local.staging.collector
        while True:
            await asyncio.sleep(collector.interval)
            try:
                await self.sweep_parts()
            except Exception:  # one bad round must not end the sweeps
                log.exception("sweep of kept multipart parts failed; trying again in %ss", collector.interval)

    async def create_multipart_upload(self, bucket: str, key: str, meta: WriteMeta, owner: str) -> UploadInfo:
        return await self.in_buckets(self.upstream.create_multipart_upload(bucket, key, meta, owner), bucket)

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: Body) -> PartInfo:
        spooled = await replicas.spool(self.local, body)
        # Only the checksum the client sent goes on: one computed here by default (CRC64NVME)
        # would name an algorithm the upload may not have been created with, and the upstream
        # judges a part without one as S3 does (a composite upload requires it).
        sent = FileBody(spooled.path, spooled.size, spooled.md5, {
            algorithm: value for algorithm, value in spooled.checksums.items() if algorithm == body.declared_checksum
        })  # fmt: skip
        arriving = self._arriving.setdefault((bucket, upload_id), Arriving())
        arriving.parts += 1
        try:
            try:
                sending = self.upstream.upload_part(bucket, key, upload_id, number, sent)
                part = await self.in_buckets(sending, bucket)
            except BaseException:
                spooled.discard()
                raise
            checksums = dict(spooled.checksums)
            await self._keep_arrived(bucket, key, upload_id, number, spooled, arriving)
        finally:
            arriving.parts -= 1
            if not arriving.parts and self._arriving.get((bucket, upload_id)) is arriving:
                del self._arriving[(bucket, upload_id)]
        return replace(part, checksums=checksums or part.checksums)

    async def _keep_arrived(
        self, bucket: str, key: str, upload_id: str, number: int, spooled: Spool, arriving: Arriving
    ) -> None:
        """Keep a part the upstream acknowledged (consumes the spool), unless its upload ended
        meanwhile. Its folder is made first, and the end looked for after: an end that came
        first (its folder removed already, none made again) is seen here, and this part and the
        folder it made go; one that comes later removes the folder with what is kept in it."""
        try:
            # Not at all for an upload whose parts were given up: it would take room for nothing.
            made = not self.parts.given_up(bucket, upload_id) and await asyncio.to_thread(
                self.parts.open, bucket, upload_id
            )
        except OSError as exc:
            spooled.discard()
            log.warning("part %d of %s/%s not kept here: %s", number, bucket, key, exc)
            await self._give_up_parts(bucket, upload_id)
            return
        except BaseException:
            spooled.discard()
            raise
        if arriving.ended or self.parts.given_up(bucket, upload_id):
            spooled.discard()
            if arriving.ended and made:
                await self.remove_parts(self.parts.name(bucket, upload_id))
            return
        # Kept only into room under --cache-size. Asked without waiting: the client waits for
        # this answer. When there is none now, a task waits for a round to make some (and an
        # end waits for it: _parts_settled, _end_bucket_parts).
        if self.evictor.reserve_now(spooled.size):
            await self._keep_part(bucket, key, upload_id, number, spooled)
            return
        task = self.spawn(self._keep_part_later(bucket, key, upload_id, number, spooled))
        self._part_keeps.setdefault((bucket, upload_id), set()).add(task)
        task.add_done_callback(lambda done: self._part_kept(bucket, upload_id, done))

    def _end(self, bucket: str, upload_id: str | None = None) -> None:
        """The upload ended (completed, aborted; every upload of the bucket, forgotten: None):
        its parts still on their way from the upstream are not kept (_keep_arrived)."""
        for (of, upload), arriving in self._arriving.items():
            if of == bucket and upload_id in (None, upload):
                arriving.ended = True

    async def _end_bucket_parts(self, bucket: str) -> None:
        """``_end`` every upload of the bucket, and wait for its parts waiting for room: its
        folders can then be removed for good."""
        self._end(bucket)
        while pending := [task for (of, _), tasks in self._part_keeps.items() if of == bucket for task in tasks]:
            await asyncio.wait(pending)

    def _part_kept(self, bucket: str, upload_id: str, task: asyncio.Task[None]) -> None:
        pending = self._part_keeps.get((bucket, upload_id))
        if pending is not None:
            pending.discard(task)
            if not pending:
                del self._part_keeps[(bucket, upload_id)]

    async def _parts_settled(self, bucket: str, upload_id: str) -> None:
        """Once no part of the upload waits for room in this process (a few seconds at most:
        eviction.ADMIT_WAIT, twice moments after start)."""
        while pending := self._part_keeps.get((bucket, upload_id)):
            await asyncio.wait(list(pending))

    async def _keep_part(self, bucket: str, key: str, upload_id: str, number: int, spooled: Spool) -> None:
        """Keep a part room was reserved for (consumes the spool), into its folder (PartStore.open)."""
        # Counted unless known not to be: cancelled, the thread may still keep it, and a count
        # short of the disk would let the cache outgrow its limit (one too high costs a round).
        kept, replaced = True, 0
        try:
            kept, replaced = await asyncio.to_thread(self.parts.keep, bucket, upload_id, number, spooled)
        except OSError as exc:
            kept = False
            log.warning("part %d of %s/%s not kept here: %s", number, bucket, key, exc)
            await self._give_up_parts(bucket, upload_id)
        finally:
            self.evictor.settle_part(spooled.size, kept=kept, replaced=replaced)

    async def _keep_part_later(
        self, bucket: str, key: str, upload_id: str, number: int, spooled: Spool
    ) -> None:
        try:
            room = await self.evictor.admit(spooled.size, patient=True)
        except BaseException:
            spooled.discard()
            raise
        if room:
            await self._keep_part(bucket, key, upload_id, number, spooled)
            return
        spooled.discard()
        log.debug("part %d of %s/%s not kept: no room under the cache's size", number, bucket, key)
        await self._give_up_parts(bucket, upload_id)

    async def _give_up_parts(self, bucket: str, upload_id: str) -> None:
        """A part of the upload is not here: the others cannot make its object, so their room is
        given back, and its later parts take none (its object is fetched on its first read)."""
        await self.remove_parts(self.parts.name(bucket, upload_id), mark=True)

    async def _drop_parts(self, bucket: str, upload_id: str) -> None:
        """Remove the parts of an upload completed or aborted, once none waits for room."""
        await self._parts_settled(bucket, upload_id)
        await self.remove_parts(self.parts.name(bucket, upload_id))

    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        src_bucket: str,
        src_key: str,
        src_range: tuple[int, int] | None,
        src_precondition: Precondition | None = None,
    ) -> PartInfo:
        # S3 refuses a key over 1024 bytes before anything else; the upstream's copy would first
        # look the source up (to pin its ETag) and answer for that instead.
        keys.lookup_key(key)
        copying = self.upstream.upload_part_copy(
            bucket, key, upload_id, number, src_bucket, src_key, src_range, src_precondition
        )
        return await self.in_buckets(copying, bucket, src_bucket)

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[PartInfo],
        precondition: Precondition | None = None,
        checksums: dict[str, str] | None = None,
        checksum_type: str | None = None,
        object_size: int | None = None,
    ) -> ObjectInfo:
        info, since = await self._write(
            bucket,
            [key],
            self.upstream.complete_multipart_upload(
                bucket, key, upload_id, parts, precondition, checksums, checksum_type, object_size
            ),
            then_read=True,
        )
        self._end(bucket, upload_id)
        await self._drop_local(bucket, key)
        # Joining the parts copies the whole object: after the answer, not before it.
        self.spawn(self._keep_completed(bucket, key, upload_id, parts, info, since))
        return info

    async def _keep_completed(
        self, bucket: str, key: str, upload_id: str, parts: list[PartInfo], info: ObjectInfo, since: int
    ) -> None:
        await self._parts_settled(bucket, upload_id)
        try:
            joined = await asyncio.to_thread(
                self.parts.assemble, bucket, upload_id, parts, self.local.writer.temp_name("spool")
            )
        except OSError as exc:
            self.not_kept(bucket, key, exc)
            joined = None
        finally:
            # Given back before the joined copy asks for room (_keep): as much again.
            await self.remove_parts(self.parts.name(bucket, upload_id))
        if joined is None:
            return  # a part is not here (UploadPartCopy): the first read fetches the object
        spooled, sizes = joined
        # ``info`` is the upstream's description of the key after Complete (RemoteBackend asks
        # for it with a HEAD): another client's write landing in between would lend its ETag to
        # these bytes, and the replica would be confirmed as current while other bytes are served.
        # The ETag of a multipart object is made from its parts' MD5s: these parts must make it.
        if spooled.size != info.size or multipart_etag([part.etag for part in sizes]) != info.etag.lower():
            spooled.discard()
            return
        try:
            # Described again: the answer to Complete carries this upload's ETag even when another
            # write overtook it, with the metadata of whatever the key held then. Read with the
            # key the upload was written with (an SSE-C object's).
            with ssec.reading_written():
                current = await self.upstream.head_object(bucket, key)
                tags = await self.upstream.get_object_tagging(bucket, key)  # given at Create, maybe
                # The parts as the upstream lists them, with their checksums (GetObjectAttributes
                # shows them), when it tells them in one answer; their sizes joined here otherwise.
                listed = await self._parts(bucket, key, info, 0)
        except errors.S3Error:
            current, tags, listed = None, {}, None
        except BaseException:
            spooled.discard()
            raise
        if current is None or (current.etag, current.size) != (info.etag, info.size):
            spooled.discard()
            return
        info = current
        if listed is None or [(p.number, p.size) for p in listed] != [(p.number, p.size) for p in sizes]:
            listed = sizes
        await self._keep(
            bucket, key, spooled, replace(info, parts=listed, tag_count=len(tags)), tags, since, patient=True
        )

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self.in_buckets(self.upstream.abort_multipart_upload(bucket, key, upload_id), bucket)
        self._end(bucket, upload_id)
        if (bucket, upload_id) in self._part_keeps:
            self.spawn(self._drop_parts(bucket, upload_id))  # after the parts waiting for room
        else:
            await self._drop_parts(bucket, upload_id)

    async def list_multipart_uploads(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> UploadListPage:
        listing = self.upstream.list_multipart_uploads(
            bucket, prefix, delimiter, key_marker, upload_id_marker, max_uploads
        )
        page = await self.in_buckets(listing, bucket)
        # The upstream names the owner of the cache's credentials there, none of this server's
        # users; which of them began an upload is not kept: each is its bucket's owner's, the
        # owner this server's ListObjects and ListBuckets name.
        owner = (await self.head_bucket(bucket)).owner
        page.uploads = [replace(upload, owner=owner) for upload in page.uploads]
        return page

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int, max_parts: int
    ) -> PartsPage:
        page = await self.in_buckets(
            self.upstream.list_parts(bucket, key, upload_id, part_number_marker, max_parts), bucket
        )
        page.upload = replace(page.upload, owner=(await self.head_bucket(bucket)).owner)  # as above
        return page
