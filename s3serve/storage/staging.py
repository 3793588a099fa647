"""Multipart uploads: staging under ``ROOT/.s3serve/multipart/``, assembly, and the garbage collector.

Layout (same filesystem as the buckets, so the finished object is published with one rename)::

    multipart/<bucket>/<upload id>/upload.json          key, owner, initiated, WriteMeta
    multipart/<bucket>/<upload id>/00007.json            part 7: size, etag, checksums, data file
    multipart/<bucket>/<upload id>/assembly              sparse: part n's bytes at (n-1) * 5 GiB
    multipart/<bucket>/<upload id>/slot-00007            part 7 was (or is being) written in place
    multipart/<bucket>/<upload id>/00007-<rand>.part     part 7's bytes, when not in its slot
    multipart/<bucket>/<upload id>/tmp-<rand>            a part being received (flocked by its writer)
    multipart/<bucket>/<upload id>.<how>-<rand>/         an upload claimed by Complete/Abort/GC/DeleteBucket

Upload ids are 16 hex digits of the creation time (so ids sort by initiation, as S3 lists them)
and 32 random hex digits; anything else is NoSuchUpload before it can become a path. Complete,
Abort and the GC *claim* an upload by renaming its folder under a per-upload lock, so each upload
is consumed exactly once; an UploadPart that loses the race finds its folder gone (NoSuchUpload).
A claimant holds an flock on the claimed ``upload.json`` (taken before the rename), so the GC can
tell a claim whose process died (lockable) from one still at work.

The first upload of a part number writes into the upload's assembly file (see assembly.py), so
Complete can usually make that file the object without copying; a re-upload, or anything that
cannot go there, gets a part file of its own, and Complete (completion.py) then concatenates by
copying.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .. import errors
from ..checksums import ALGORITHM_DIGEST, DEFAULT_CHECKSUM, MultiHasher, b64, check_part_checksum
from . import assembly, completion, gc, keys
from .assembly import copy_range, hash_range
from .base import (
    SSE_S3,
    Body,
    Encryption,
    ObjectInfo,
    PartInfo,
    PartsPage,
    Precondition,
    UploadInfo,
    UploadListPage,
    WriteMeta,
)
from .faults import as_s3_errors, refusals
from .gc import UPLOAD_ID, UPLOAD_TEMP_PREFIX, Collector, create_locked, read_json
from .listing import page_uploads
from .streams import write_body

if TYPE_CHECKING:
    from .disk import DiskBackend

log = logging.getLogger("s3serve.multipart")

MAX_PART_NUMBER = 10000
MAX_PART_SIZE = 5 * 1024**3
# Uploads of one bucket whose records ListMultipartUploads keeps in memory (~1 KiB each).
_LISTED_MAX = 20000
_PART_JSON = re.compile(r"(\d{5})\.json")
# S3's defaults when CreateMultipartUpload names an algorithm but no type.
_FULL_OBJECT_ONLY = {"CRC64NVME"}
_COMPOSITE_ONLY = {"SHA1", "SHA256"}


def check_checksum_choice(meta: WriteMeta) -> WriteMeta:
    """Resolve the upload's checksum algorithm and type as S3 does; refuse impossible pairs."""
    algorithm, kind = meta.checksum_algorithm, meta.checksum_type
    if algorithm is None:
        if kind is not None:
            raise errors.InvalidRequest(
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            )
        return meta
    if kind is None:
        kind = "FULL_OBJECT" if algorithm in _FULL_OBJECT_ONLY else "COMPOSITE"
    if (kind == "COMPOSITE" and algorithm in _FULL_OBJECT_ONLY) or (
        kind == "FULL_OBJECT" and algorithm in _COMPOSITE_ONLY
    ):
        raise errors.InvalidRequest(f"The {kind} checksum type cannot be used with the {algorithm} algorithm.")
    return dataclasses.replace(meta, checksum_type=kind)


def _write_json(directory: str, name: str, doc: dict[str, Any]) -> None:
    """Replace ``directory/name`` atomically; FileNotFoundError when the folder was claimed."""
    tmp = os.path.join(directory, f"tmp-{secrets.token_hex(8)}.json")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _prepare_json(directory: str, doc: dict[str, Any]) -> tuple[str, int]:
    """A part record written and fsynced to a flocked temp file in ``directory`` (worker thread),
    for ``os.replace`` under the upload's lock; FileNotFoundError when the folder was claimed."""
    tmp = os.path.join(directory, f"{UPLOAD_TEMP_PREFIX}{secrets.token_hex(8)}.json")
    fd = create_locked(tmp)  # flocked: the GC leaves it alone however long the fsync takes
    try:
        data = json.dumps(doc, separators=(",", ":")).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp, fd


def _sync_upload(directory: str, top: str) -> None:
    """fsync a new upload's record and the folders up to ``top`` (the staging folder) whose
    entries changed (worker thread); an upload claimed meanwhile was consumed, nothing to keep."""
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(os.path.join(directory, "upload.json"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folder = directory
        while folder.startswith(top + os.sep) or folder == top:
            keys.fsync_dir(folder)
            folder = os.path.dirname(folder)


def _part_info(doc: dict[str, Any]) -> PartInfo:
    return PartInfo(int(doc["n"]), int(doc["s"]), str(doc["e"]), float(doc["t"]), dict(doc.get("c", {})))


def _upload_meta(doc: dict[str, Any]) -> WriteMeta:
    fields = {f.name for f in dataclasses.fields(WriteMeta)}
    meta = WriteMeta(**{k: v for k, v in dict(doc.get("meta", {})).items() if k in fields})
    if isinstance(meta.encryption, dict):  # asdict's form of it in upload.json
        meta.encryption = Encryption.of(**meta.encryption)
    return meta



@dataclasses.dataclass
class _Target:
    """A part being received: into a new part file ``tmp``, or into its slot (``claim``)."""

    fd: int
    tmp: str | None
    claim: assembly.SlotClaim | None
    committing: bool = False  # from then on a record may point at the slot: never give it back

    def close(self, keep_slot: bool) -> None:
        if self.claim is not None:
            # A failed write's bytes in the slot are referenced by nothing: the next upload may reuse it.
            self.claim.close(release=not (self.committing or keep_slot))
            return
        os.close(self.fd)
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)


class Staging:
    """The multipart operations of a DiskBackend, and its background GC."""

    def __init__(self, disk: DiskBackend, expiry: float, gc_interval: float) -> None:
        self.disk = disk
        self.dir = os.path.join(disk.meta.hidden, "multipart")
        self.collector = Collector(self, expiry, gc_interval)
        # Per bucket, the uploads its last ListMultipartUploads found. An upload id is never reused
        # and upload.json never rewritten, so an entry stays right for as long as the upload lives:
        # each page reads only the records of uploads new since the last one.
        self._listed: dict[str, dict[str, UploadInfo]] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        await self.collector.start()

    async def stop(self) -> None:
        await self.collector.stop()

    # -- paths and records ----------------------------------------------------------------------
    def bucket_dir(self, bucket: str) -> str:
        return os.path.join(self.dir, bucket)

    def upload_dir(self, bucket: str, upload_id: str) -> str:
        if not UPLOAD_ID.fullmatch(upload_id):
            raise errors.NoSuchUpload(UploadId=upload_id)
        return os.path.join(self.dir, bucket, upload_id)

    def slot(self, upload_id: str) -> int:
        return self.disk.locks.slot(".multipart", upload_id)

    @staticmethod
    def load_upload(directory: str, upload_id: str, key: str | None) -> UploadInfo:
        doc = read_json(os.path.join(directory, "upload.json"))
        if doc is None or (key is not None and doc.get("key") != key):
            raise errors.NoSuchUpload(UploadId=upload_id)
        try:
            return UploadInfo(upload_id, str(doc["key"]), float(doc["initiated"]), str(doc["owner"]), _upload_meta(doc))
        except (KeyError, TypeError, ValueError):
            raise errors.NoSuchUpload(UploadId=upload_id) from None

    async def drop_bucket(self, bucket: str, held: int) -> bool:
        """Discard the uploads of a bucket whose folder is gone (gc.drop_staged): in-progress
        uploads do not keep a general purpose bucket from being deleted on S3; they go with it.
        The caller holds the bucket's lock (slot ``held``). False when a Complete that claimed
        one before is still at work: it cannot publish (no folder), but gives its upload back
        here when it fails, for the next drop or GC round."""
        self._listed.pop(bucket, None)
        delay = 0.001
        dropped = 0
        while True:
            doomed, busy, completing = await asyncio.to_thread(gc.drop_staged, self, bucket, held)
            if doomed:
                await asyncio.to_thread(gc.remove_trees, doomed)
                dropped += len(doomed)
            if not busy:
                break
            await asyncio.sleep(delay)  # a part being committed, a claim being made: a rename
            delay = min(delay * 2, 0.05)
        with contextlib.suppress(OSError):
            os.rmdir(self.bucket_dir(bucket))
        if dropped:
            log.info("discarded %d upload(s) of deleted bucket %s", dropped, bucket)
        return not completing

    # -- operations -----------------------------------------------------------------------------
    async def create(self, bucket: str, key: str, meta: WriteMeta, owner: str) -> UploadInfo:
        kp = keys.parse_key(key)
        if kp.is_folder:
            raise errors.InvalidArgument(
                "A key ending in '/' is a folder on this server's filesystem and cannot be a multipart upload.",
                resource=key,
            )
        meta = check_checksum_choice(meta)
        upload_id = f"{time.time_ns():016x}{secrets.token_hex(16)}"
        initiated = time.time()
        doc = {"key": key, "owner": owner, "initiated": initiated, "meta": dataclasses.asdict(meta)}
        # The bucket lock orders this against DeleteBucket, which discards the bucket's uploads.
        async with self.disk.locks.hold(self.disk.locks.slot(bucket, "")):
            self.disk._bucket_dir(bucket)
            directory = self.upload_dir(bucket, upload_id)
            os.makedirs(directory)
            try:
                _write_json(directory, "upload.json", doc)
            except BaseException:
                # A full disk: no upload was made, so no folder of one may stay.
                shutil.rmtree(directory, ignore_errors=True)
                raise
        if self.disk.fsync:
            # An upload whose creation was answered must not be forgotten by a crash.
            await asyncio.to_thread(_sync_upload, directory, self.dir)
        return UploadInfo(upload_id, key, initiated, owner, meta)

    def locate_upload(self, bucket: str, key: str, upload_id: str) -> tuple[str, keys.KeyPath]:
        """The bucket's folder and the upload's key path, the bucket checked first, as S3 does; a
        key this disk cannot hold has no upload (keys.upload_key)."""
        return self.disk._bucket_dir(bucket), keys.upload_key(key, upload_id)

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: Body) -> PartInfo:
        self.locate_upload(bucket, key, upload_id)
        directory = self.upload_dir(bucket, upload_id)
        upload = self.load_upload(directory, upload_id, key)
        algorithm = upload.meta.checksum_algorithm
        check_part_checksum(algorithm, upload.meta.checksum_type, body.declared_checksum)
        names = ["md5", ALGORITHM_DIGEST[DEFAULT_CHECKSUM], *sorted(body.digests_wanted)]
        if algorithm is not None:
            names.append(ALGORITHM_DIGEST[algorithm])
        hasher = MultiHasher(names)
        target = self._part_target(directory, upload_id, number)
        keep = False
        try:
            try:
                with refusals(), open(target.fd, "wb", closefd=False) as f:
                    if target.claim is not None:
                        f.seek(target.claim.offset)
                        body = assembly.BoundedBody(body, assembly.SLOT)
                    size = await write_body(f, body, hasher, writeback=self.disk.fsync)
            except errors.EntityTooLarge as e:
                # EFBIG, past the file size limit: a retry of this part must not come back to its slot.
                keep = isinstance(e.__cause__, OSError)
                raise
            digests = hasher.digests()
            given = body.finish(digests)
            part = await self._commit_part(directory, upload_id, number, target, size, digests, given, algorithm)
            return dataclasses.replace(part, encryption=upload.meta.encryption or SSE_S3)
        finally:
            target.close(keep)

    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        src_bucket: str,
        src_key: str,
        src_range: tuple[int, int] | None,
        src_precondition: Precondition | None,
    ) -> PartInfo:
        self.locate_upload(bucket, key, upload_id)
        directory = self.upload_dir(bucket, upload_id)
        upload = self.load_upload(directory, upload_id, key)
        found = await self.disk._find(src_bucket, src_key, keep_fd=True)
        try:
            if src_precondition is not None:
                src_precondition(found.info)
            size = found.info.size
            first, last = src_range if src_range is not None else (0, size - 1)
            if src_range is not None and (first > last or last >= size):
                raise errors.InvalidArgument(
                    f"Range specified is not valid for source object of size: {size}",
                    ArgumentName="x-amz-copy-source-range",
                )
            if last - first + 1 > MAX_PART_SIZE:
                # A part is 5 GiB at most, whatever it is made from.
                raise errors.InvalidRequest(
                    f"The specified copy source is larger than the maximum allowable size for a copy source: {MAX_PART_SIZE}"
                )
            algorithm = upload.meta.checksum_algorithm
            names = ["md5", ALGORITHM_DIGEST[DEFAULT_CHECKSUM]]
            if algorithm is not None:
                names.append(ALGORITHM_DIGEST[algorithm])
            length = last - first + 1 if size else 0
            # found.fd is None for a folder marker ("key/"): an empty object, copied as one.
            target = self._part_target(directory, upload_id, number, length <= assembly.SLOT)
            try:
                offset = target.claim.offset if target.claim is not None else 0
                with refusals():
                    digests = await asyncio.to_thread(self._copy_and_hash, found.fd, first, target.fd, offset, length, names)
                given = {algorithm: b64(digests[ALGORITHM_DIGEST[algorithm]])} if algorithm else {}
                part = await self._commit_part(directory, upload_id, number, target, length, digests, given, algorithm)
                return dataclasses.replace(part, encryption=upload.meta.encryption or SSE_S3)
            finally:
                target.close(False)
        finally:
            if found.fd is not None:
                os.close(found.fd)

    @staticmethod
    def _copy_and_hash(
        src: int | None, offset: int, dst: int, dst_offset: int, length: int, names: list[str]
    ) -> dict[str, bytes]:
        if src is not None:
            copy_range(src, offset, dst, dst_offset, length)
        return hash_range(dst, names, dst_offset, length)

    def _part_target(self, directory: str, upload_id: str, number: int, in_place: bool = True) -> _Target:
        """Where a part's bytes go: its slot in the assembly file on the first upload of its number,
        a new part file otherwise."""
        try:
            claim = assembly.claim_slot(directory, number) if in_place else None
        except FileNotFoundError:
            raise errors.NoSuchUpload(UploadId=upload_id) from None
        if claim is not None:
            return _Target(claim.fd, None, claim)
        tmp, fd = self._new_part_file(directory, upload_id)
        return _Target(fd, tmp, None)

    @staticmethod
    def _new_part_file(directory: str, upload_id: str) -> tuple[str, int]:
        tmp = os.path.join(directory, f"tmp-{secrets.token_hex(12)}")
        try:
            return tmp, create_locked(tmp)
        except FileNotFoundError:
            raise errors.NoSuchUpload(UploadId=upload_id) from None

    async def _commit_part(
        self,
        directory: str,
        upload_id: str,
        number: int,
        target: _Target,
        size: int,
        digests: dict[str, bytes],
        given: dict[str, str],
        algorithm: str | None,
    ) -> PartInfo:
        """Make a received part the upload's part ``number`` (replacing an earlier one)."""
        target.committing = True
        tmp, fd = target.tmp, target.fd
        if self.disk.fsync:
            # Of the assembly file this also flushes other parts still arriving: their own fsync
            # then has less to do.
            await asyncio.to_thread(os.fsync, fd)
        every = {alg: b64(digests[name]) for alg, name in ALGORITHM_DIGEST.items() if name in digests}
        shown = dict(given)
        if algorithm is not None:
            shown = {algorithm: every[algorithm], **{k: v for k, v in given.items() if k == algorithm}}
        data_name = f"{number:05d}-{secrets.token_hex(8)}.part" if tmp is not None else None
        part = PartInfo(number, size, digests["md5"].hex(), time.time(), shown)
        doc = {"n": number, "s": size, "e": part.etag, "t": part.last_modified, "c": shown, "x": every}
        doc.update({"f": data_name} if target.claim is None else {"a": target.claim.offset})
        json_name = f"{number:05d}.json"
        durable = self.disk.fsync
        prepared: tuple[str, int] | None = None
        try:
            if durable:
                # The record's bytes on disk before its name, so an answered part cannot come
                # back empty after a crash; written in a thread, renamed under the lock.
                try:
                    prepared = await asyncio.to_thread(_prepare_json, directory, doc)
                except FileNotFoundError:
                    raise errors.NoSuchUpload(UploadId=upload_id) from None
            # Under the upload's lock, so a Complete/Abort claim comes wholly before or after this.
            async with self.disk.locks.hold(self.slot(upload_id)):
                old = read_json(os.path.join(directory, json_name))
                try:
                    if tmp is not None and data_name is not None:
                        os.rename(tmp, os.path.join(directory, data_name))
                    if prepared is not None:
                        os.replace(prepared[0], os.path.join(directory, json_name))
                    else:
                        _write_json(directory, json_name, doc)
                except FileNotFoundError:
                    raise errors.NoSuchUpload(UploadId=upload_id) from None
                if old is not None and isinstance(old.get("f"), str) and old["f"] != data_name:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, os.path.basename(old["f"])))
        finally:
            if prepared is not None:
                os.close(prepared[1])
                with contextlib.suppress(OSError):
                    os.unlink(prepared[0])  # still there only when it was not renamed into place
        if durable:
            # The part's names (record, data file); a folder claimed meanwhile by a Complete or
            # Abort consumed the part, so there is nothing left to keep.
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(keys.fsync_dir, directory)
        return part

    @contextlib.asynccontextmanager
    async def claimed(self, bucket: str, upload_id: str, key: str, how: str) -> AsyncIterator[str]:
        """Take the upload away from everyone else; yields the claimed folder. Giving it back on
        failure is the caller's choice (``_release``); the flock on upload.json lasts until exit."""
        directory = self.upload_dir(bucket, upload_id)
        claimed = f"{directory}.{how}-{secrets.token_hex(6)}"
        async with self.disk.locks.hold(self.slot(upload_id)):
            try:
                fd = os.open(os.path.join(directory, "upload.json"), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise errors.NoSuchUpload(UploadId=upload_id) from None
            try:
                if not await gc.flock_given_back(fd):
                    raise errors.NoSuchUpload(UploadId=upload_id)
                self.load_upload(directory, upload_id, key)
                os.rename(directory, claimed)
            except FileNotFoundError:
                os.close(fd)
                raise errors.NoSuchUpload(UploadId=upload_id) from None
            except BaseException:
                os.close(fd)
                raise
        try:
            yield claimed
        finally:
            os.close(fd)

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        self.locate_upload(bucket, key, upload_id)
        async with self.claimed(bucket, upload_id, key, "abort") as claimed:
            await asyncio.to_thread(shutil.rmtree, claimed, True)

    # -- listings -------------------------------------------------------------------------------
    def _uploads(self, bucket: str) -> list[UploadInfo]:
        directory = self.bucket_dir(bucket)
        try:
            with os.scandir(directory) as it:
                names = [e.name for e in it if UPLOAD_ID.fullmatch(e.name)]
        except FileNotFoundError:
            names = []
        known = self._listed.get(bucket, {})
        found: dict[str, UploadInfo] = {}
        for name in names:
            info = known.get(name)
            if info is None:
                with contextlib.suppress(errors.NoSuchUpload):
                    info = self.load_upload(os.path.join(directory, name), name, None)
            if info is not None:
                found[name] = info
        # Only the uploads that still exist are kept, and only up to a bound on memory.
        if found and len(found) <= _LISTED_MAX:
            self._listed[bucket] = found
        else:
            self._listed.pop(bucket, None)
        return list(found.values())

    async def list_uploads(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> UploadListPage:
        self.disk._bucket_dir(bucket)
        uploads = await asyncio.to_thread(self._uploads, bucket)
        return page_uploads(uploads, prefix, delimiter, key_marker, upload_id_marker, max_uploads)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int, max_parts: int
    ) -> PartsPage:
        self.locate_upload(bucket, key, upload_id)
        directory = self.upload_dir(bucket, upload_id)
        upload = self.load_upload(directory, upload_id, key)
        parts: list[PartInfo] = []
        numbers: list[int] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(directory) as it:
            numbers = sorted(int(m.group(1)) for e in it if (m := _PART_JSON.fullmatch(e.name)))
        for number in numbers:
            if number <= part_number_marker:
                continue
            if len(parts) == max_parts:
                return PartsPage(upload, parts, True, parts[-1].number if parts else part_number_marker)
            doc = read_json(os.path.join(directory, f"{number:05d}.json"))
            if doc is not None:
                parts.append(_part_info(doc))
        return PartsPage(upload, parts, False, None)


class MultipartMixin:
    """The Backend's multipart operations, for a backend that keeps a ``Staging``; filesystem
    refusals (a full disk, a folder the server may not write) as S3 errors (faults.py)."""

    staging: Staging

    @as_s3_errors
    async def create_multipart_upload(self, bucket: str, key: str, meta: WriteMeta, owner: str) -> UploadInfo:
        return await self.staging.create(bucket, key, meta, owner)

    @as_s3_errors
    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: Body) -> PartInfo:
        return await self.staging.upload_part(bucket, key, upload_id, number, body)

    @as_s3_errors
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
        return await self.staging.upload_part_copy(
            bucket, key, upload_id, number, src_bucket, src_key, src_range, src_precondition
        )

    @as_s3_errors
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
        return await completion.complete(
            self.staging, bucket, key, upload_id, parts, precondition, checksums, checksum_type, object_size
        )

    @as_s3_errors
    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await completion.abort(self.staging, bucket, key, upload_id)

    @as_s3_errors
    async def list_multipart_uploads(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> UploadListPage:
        return await self.staging.list_uploads(bucket, prefix, delimiter, key_marker, upload_id_marker, max_uploads)

    @as_s3_errors
    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int, max_parts: int
    ) -> PartsPage:
        return await self.staging.list_parts(bucket, key, upload_id, part_number_marker, max_parts)

    @as_s3_errors
    async def upload_info(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        # The upload's record alone: ListParts would read the folder, on every part of the upload.
        staging = self.staging
        staging.locate_upload(bucket, key, upload_id)
        return staging.load_upload(staging.upload_dir(bucket, upload_id), upload_id, key)
