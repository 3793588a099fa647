"""The verified parts of multipart uploads going through the upstream cache, kept on the local disk
until CompleteMultipartUpload: the object it makes then becomes a replica from them, as a single
PUT's does, instead of being read back from the upstream on its first GET.

``ROOT/.s3serve/cache-parts/<hash of the bucket>-<hash of the upload id>/<part number>-<md5>``:
every worker process serving ROOT sees the parts the others received. A part uploaded again
replaces the one of its number; what Complete does not name is dropped with the folder, and
DeleteBucket drops the folders of its bucket (the upstream discards its uploads with it).
Uploads neither completed nor aborted are swept after the multipart expiry.
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
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from .. import errors
from . import replicas, ssec
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
from .readthrough import CacheReads
from .spool import FileBody, Spool

log = logging.getLogger("s3serve.cache")

R = TypeVar("R")

COPY_PIECE = 64 << 20


class PartStore:
    def __init__(self, hidden: str) -> None:
        self.root = os.path.join(hidden, "cache-parts")

    @staticmethod
    def _bucket_prefix(bucket: str) -> str:
        return hashlib.sha256(bucket.encode("utf-8", "surrogateescape")).hexdigest()[:16] + "-"

    def _folder(self, bucket: str, upload_id: str) -> str:
        # Upload ids are the upstream's: any length, any characters.
        return os.path.join(self.root, self._bucket_prefix(bucket) + hashlib.sha256(upload_id.encode()).hexdigest()[:40])

    def keep(self, bucket: str, upload_id: str, number: int, spooled: Spool) -> None:
        """Move a part the upstream acknowledged here (consumes the spool)."""
        folder = self._folder(bucket, upload_id)
        try:
            os.makedirs(folder, exist_ok=True)
            for name in os.listdir(folder):
                if name.split("-", 1)[0] == str(number):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))
            os.rename(spooled.path, os.path.join(folder, f"{number}-{spooled.md5.hex()}"))
        except BaseException:
            spooled.discard()
            raise
        spooled.release()

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

    def drop(self, bucket: str, upload_id: str) -> None:
        shutil.rmtree(self._folder(bucket, upload_id), ignore_errors=True)

    def drop_bucket(self, bucket: str) -> None:
        """The parts of every upload of a bucket that is gone upstream (with its uploads). A part
        whose UploadPart was answered just before the DeleteBucket may land after this: swept."""
        prefix = self._bucket_prefix(bucket)
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(prefix):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def sweep(self, max_age: float) -> None:
        """Remove the parts of uploads nobody touched for ``max_age`` seconds."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return
        limit = time.time() - max_age
        for name in names:
            path = os.path.join(self.root, name)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_mtime < limit:
                    shutil.rmtree(path, ignore_errors=True)


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

    if TYPE_CHECKING:

        async def _write(
            self, bucket: str, keys: Sequence[str], write: Awaitable[R], *, then_read: bool = False
        ) -> tuple[R, int]: ...
        async def _drop_local(self, bucket: str, key: str, only: ObjectInfo | None = None) -> bool: ...
        async def head_bucket(self, name: str) -> BucketInfo: ...

    async def sweep_parts(self) -> None:
        """Drop the kept parts of uploads abandoned for longer than the multipart expiry."""
        await asyncio.to_thread(self.parts.sweep, self.local.staging.collector.expiry)

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
        return await self.upstream.create_multipart_upload(bucket, key, meta, owner)

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: Body) -> PartInfo:
        spooled = await replicas.spool(self.local, body)
        # Only the checksum the client sent goes on: one computed here by default (CRC64NVME)
        # would name an algorithm the upload may not have been created with, and the upstream
        # judges a part without one as S3 does (a composite upload requires it).
        sent = FileBody(spooled.path, spooled.size, spooled.md5, {
            algorithm: value for algorithm, value in spooled.checksums.items() if algorithm == body.declared_checksum
        })  # fmt: skip
        try:
            part = await self.upstream.upload_part(bucket, key, upload_id, number, sent)
        except BaseException:
            spooled.discard()
            raise
        checksums = dict(spooled.checksums)
        try:
            await asyncio.to_thread(self.parts.keep, bucket, upload_id, number, spooled)
        except OSError as exc:
            log.warning("part %d of %s/%s not kept here: %s", number, bucket, key, exc)
        return replace(part, checksums=checksums or part.checksums)

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
        try:
            return await self.upstream.upload_part_copy(
                bucket, key, upload_id, number, src_bucket, src_key, src_range, src_precondition
            )
        except errors.NoSuchBucket:
            for gone in {bucket, src_bucket}:  # either (bucket_gone asks which)
                await self.bucket_gone(gone)
            raise

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
        await self._drop_local(bucket, key)
        # Joining the parts copies the whole object: after the answer, not before it.
        self.spawn(self._keep_completed(bucket, key, upload_id, parts, info, since))
        return info

    async def _keep_completed(
        self, bucket: str, key: str, upload_id: str, parts: list[PartInfo], info: ObjectInfo, since: int
    ) -> None:
        try:
            joined = await asyncio.to_thread(
                self.parts.assemble, bucket, upload_id, parts, self.local.writer.temp_name("spool")
            )
        except OSError as exc:
            self.not_kept(bucket, key, exc)
            joined = None
        finally:
            await asyncio.to_thread(self.parts.drop, bucket, upload_id)
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
        await self.upstream.abort_multipart_upload(bucket, key, upload_id)
        await asyncio.to_thread(self.parts.drop, bucket, upload_id)

    async def list_multipart_uploads(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> UploadListPage:
        page = await self.upstream.list_multipart_uploads(
            bucket, prefix, delimiter, key_marker, upload_id_marker, max_uploads
        )
        # The upstream names the owner of the cache's credentials there, none of this server's
        # users; which of them began an upload is not kept: each is its bucket's owner's, the
        # owner this server's ListObjects and ListBuckets name.
        owner = (await self.head_bucket(bucket)).owner
        page.uploads = [replace(upload, owner=owner) for upload in page.uploads]
        return page

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int, max_parts: int
    ) -> PartsPage:
        page = await self.upstream.list_parts(bucket, key, upload_id, part_number_marker, max_parts)
        page.upload = replace(page.upload, owner=(await self.head_bucket(bucket)).owner)  # as above
        return page
