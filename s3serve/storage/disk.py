"""DiskBackend: buckets are folders of ROOT, objects are plain files, metadata lives beside them.

Writes stream into a temp file under ``ROOT/.s3serve/tmp/`` and become visible with one
``rename`` (``_publish``, the single commit path, which CompleteMultipartUpload will reuse), under
a cross-process key lock that also makes conditional writes atomic. Files are never modified in
place, so a reader holding an fd always sees one whole object.

Blocking work goes to worker threads in large units (big chunks, hashing, copying, listing
pages); the cheap syscalls of the read path (stat, getxattr) run inline. A small PutObject and
every DeleteObject run as one unit in the write pool (smallwrites.py): their create, rename and
unlink can wait on the filesystem journal for milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .. import errors
from ..checksums import MultiHasher
from . import copies, foreign, keys, listing
from .base import (
    Backend,
    Body,
    BucketInfo,
    ListPage,
    ObjectInfo,
    ObjectReader,
    Precondition,
    WriteMeta,
)
from .bucketconfig import BucketConfigMixin, BucketConfigStore
from .faults import as_s3_errors, refusals
from .filereader import DiskReader
from .folders import PruneTurns, make_folder
from .keys import KeyPath
from .locks import KeyLocks
from .metadata import EMPTY_MD5, MetaStore, Record
from .registry import BucketRegistry
from .smallwrites import Writer
from .staging import MultipartMixin, Staging
from .streams import THREAD_CHUNK, write_body
from .tokens import RenameTokens

T = TypeVar("T")

# A listed regular file with no record of ours (see _entry_info).
_FOREIGN = ObjectInfo(key="", size=0, etag="", last_modified=0.0)

@dataclass
class _Found:
    info: ObjectInfo
    record: Record
    real: str  # resolved path of the file or folder-marker directory
    fd: int | None = None  # only with keep_fd, only for files
    st: os.stat_result | None = None  # the file's, as the record was matched against it


class DiskBackend(MultipartMixin, BucketConfigMixin, Backend):
    def __init__(
        self,
        root: Path,
        default_owner: str,
        fsync: bool = True,
        min_part_size: int = 5 * 1024 * 1024,
        *,
        use_xattrs: bool | None = None,
        multipart_expiry: float = 24 * 3600.0,
        gc_interval: float = 3600.0,
    ) -> None:
        """``use_xattrs`` None probes the filesystem at start; False forces sidecar files."""
        self.root = Path(root)
        self.default_owner = default_owner
        self.fsync = fsync
        self.min_part_size = min_part_size
        self._want_xattrs = use_xattrs
        real = os.path.realpath(self.root)
        self._real_root = real
        hidden = os.path.join(real, keys.HIDDEN_DIR)
        self._tmp_dir = os.path.join(hidden, "tmp")
        self.meta = MetaStore(hidden, use_xattrs is not False, durable=fsync)
        self.registry = BucketRegistry(hidden, durable=fsync)
        self.locks = KeyLocks(hidden)
        self.prune_turns = PruneTurns()
        self.bucket_configs = BucketConfigStore(hidden, self.locks, self._bucket_dir, durable=fsync)
        self.rename_tokens = RenameTokens(hidden)
        self.staging = Staging(self, multipart_expiry, gc_interval)
        self.writer = Writer(self)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._start)
        # Also removes what a crashed process left (gc.Collector).
        await self.staging.start()

    async def stop(self) -> None:
        await self.staging.stop()
        await self.writer.close()

    def _start(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        for sub in ("tmp", "meta", "buckets"):
            os.makedirs(os.path.join(self.meta.hidden, sub), exist_ok=True)
        self.locks.create_dir()
        self.writer.prepare()
        self.meta.use_xattrs = self._want_xattrs is not False and MetaStore.probe(self._tmp_dir)

    # -- paths --------------------------------------------------------------------------------
    def _bucket_dir(self, name: str) -> str:
        return self._bucket_stat(name)[0]

    def _bucket_stat(self, name: str) -> tuple[str, os.stat_result]:
        if not keys.is_bucket_folder_name(name):
            raise errors.NoSuchBucket(resource=name, BucketName=name)
        path = os.path.join(self._real_root, name)
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) and keys.is_inside(self._real_root, os.path.realpath(path)):
                st = os.stat(path)
        except OSError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise errors.NoSuchBucket(resource=name, BucketName=name)
        return path, st

    def _resolve(self, path: str) -> tuple[str, os.stat_result] | None:
        return keys.resolve(self._real_root, path)

    def check_key(self, key: str, size: int | None = None) -> None:
        if keys.parse_key(key).is_folder and size:
            raise keys.folder_with_content(key)

    def _locate(self, bucket: str, key: str, *, existing: bool = False) -> tuple[str, KeyPath, str]:
        """Bucket folder, parsed key and path; the bucket is checked first, as S3 does. For an
        object that must be there already (``existing``), a key this disk cannot hold is NoSuchKey
        (keys.lookup_key), as any other key it does not have."""
        bdir = self._bucket_dir(bucket)
        kp = keys.lookup_key(key) if existing else keys.parse_key(key)
        if kp is None:
            raise errors.NoSuchKey(resource=key, Key=key)
        return bdir, kp, keys.object_path(bdir, kp)

    async def _find(
        self, bucket: str, key: str, *, keep_fd: bool = False, held: frozenset[int] = frozenset()
    ) -> _Found:
        # A key found proves its bucket's folder is there: it is stat'ed only to tell NoSuchBucket
        # (S3 answers it first) from a missing or invalid key (bucket_owner skips its stat too).
        if not keys.is_bucket_folder_name(bucket):
            raise errors.NoSuchBucket(resource=bucket, BucketName=bucket)
        try:
            kp = keys.lookup_key(key)
        except errors.S3Error:
            self._bucket_stat(bucket)
            raise
        if kp is None:  # a key this disk cannot hold is never here
            self._bucket_stat(bucket)
            raise errors.NoSuchKey(resource=key, Key=key)
        path = keys.object_path(os.path.join(self._real_root, bucket), kp)
        found = await self._lookup(bucket, kp, path, keep_fd=keep_fd, held=held)
        if found is None:
            self._bucket_stat(bucket)
            raise self._absent(key, path)
        return found

    def _absent(self, key: str, path: str) -> errors.S3Error:
        """The error for a key a lookup did not find: AccessDenied when it is there but out of
        the server's reach (keys.denied), else NoSuchKey."""
        if keys.denied(self._real_root, path):
            return errors.AccessDenied(
                "The server's filesystem does not let it reach this key (permission denied).", resource=key
            )
        return errors.NoSuchKey(resource=key, Key=key)

    # -- metadata lookups ---------------------------------------------------------------------
    async def _lookup(
        self,
        bucket: str,
        kp: KeyPath,
        path: str,
        *,
        keep_fd: bool = False,
        held: frozenset[int] = frozenset(),
    ) -> _Found | None:
        if kp.is_folder:
            found = self._resolve(path)
            if found is None:
                return None
            real, st = found
            record = self.meta.load(real, bucket, kp.key, st) if stat.S_ISDIR(st.st_mode) else None
            if record is None or not record.folder:
                return None
            return _Found(record.to_info(kp.key), record, real)
        if not keep_fd:
            # A description needs no open file when the record is at hand (HEAD): two syscalls
            # fewer. The record counts only if it matches the stat of what was resolved.
            resolved = self._resolve(path)
            if resolved is None or not stat.S_ISREG(resolved[1].st_mode):
                return None
            record = self.meta.load(resolved[0], bucket, kp.key, resolved[1])
            if record is not None:
                return _Found(record.to_info(kp.key), record, resolved[0])
        opened = keys.open_file(self._real_root, path)
        if opened is None:
            return None
        real, fd, st = opened
        try:
            record = self.meta.load(fd, bucket, kp.key, st)
            if record is None:
                record = await asyncio.to_thread(foreign.adopt, self, fd, bucket, kp.key, path, held)
        except BaseException:
            os.close(fd)
            raise
        if keep_fd:
            return _Found(record.to_info(kp.key), record, real, fd, st)
        os.close(fd)
        return _Found(record.to_info(kp.key), record, real)

    def _existing_record(self, bucket: str, kp: KeyPath, path: str) -> Record | None:
        """The stored record at a key without hashing anything (for cleanup of what it leaves)."""
        found = self._resolve(path)
        return self.meta.load(found[0], bucket, kp.key, found[1]) if found else None

    # -- buckets ------------------------------------------------------------------------------
    @as_s3_errors
    async def list_buckets(self) -> list[BucketInfo]:
        return await asyncio.to_thread(self._list_buckets)

    def _list_buckets(self) -> list[BucketInfo]:
        result = []
        with os.scandir(self._real_root) as it:
            for entry in it:
                if not keys.is_bucket_folder_name(entry.name):
                    continue
                if entry.is_symlink() and not keys.is_inside(self._real_root, os.path.realpath(entry.path)):
                    continue
                try:
                    if not entry.is_dir():
                        continue
                    mtime = entry.stat().st_mtime
                except OSError:
                    continue
                result.append(self.registry.info(entry.name, mtime, self.default_owner))
        result.sort(key=lambda b: b.name)
        return result

    def _is_marker_of(self, bucket: str) -> Callable[[str, str, os.stat_result], bool]:
        def is_marker(path: str, rel: str, st: os.stat_result) -> bool:
            return self.meta.load(path, bucket, rel + "/", st) is not None

        return is_marker

    @as_s3_errors
    async def head_bucket(self, name: str) -> BucketInfo:
        _, st = self._bucket_stat(name)
        return self.registry.info(name, st.st_mtime, self.default_owner)

    @as_s3_errors
    async def check_bucket(self, name: str) -> None:
        self._bucket_stat(name)  # the folder alone: the caller has read the record

    @as_s3_errors
    async def bucket_owner(self, name: str) -> str:
        # The registry's stat alone; the folder's is head_bucket's, for a bucket without a record.
        doc = self.registry.read(name) if keys.is_bucket_folder_name(name) else None
        return (await self.head_bucket(name)).owner if doc is None else str(doc.get("owner", self.default_owner))

    @as_s3_errors
    async def owner_and_config(self, bucket: str, name: str, parse: Callable[[bytes], T]) -> tuple[str, T | None]:
        found = self.bucket_configs.with_owner(self.registry, bucket, name, parse, self.default_owner)
        return found if found is not None else await super().owner_and_config(bucket, name, parse)

    @as_s3_errors
    async def create_bucket(self, name: str, owner: str, region: str) -> BucketInfo:
        keys.validate_bucket_name(name)
        slot = self.locks.slot(name, "")
        async with self.locks.hold(slot):
            path = os.path.join(self._real_root, name)
            if os.path.lexists(path):
                existing = self.registry.read(name) if os.path.isdir(path) else None
                if os.path.isdir(path) and str((existing or {}).get("owner", self.default_owner)) == owner:
                    raise errors.BucketAlreadyOwnedByYou(resource=name, BucketName=name)
                raise errors.BucketAlreadyExists(resource=name, BucketName=name)
            self.bucket_configs.drop_bucket(name)  # what a bucket of this name left behind
            if not await self.staging.drop_bucket(name, slot):
                # A Complete in the deleted bucket of this name still at work would publish here.
                raise errors.OperationAborted(resource=name, BucketName=name)
            # Record first: a folder without one would briefly look foreign (default owner).
            created = self.registry.write(name, owner, region)
            try:
                os.mkdir(path)
            except BaseException:
                self.registry.remove(name)
                raise
        return BucketInfo(name=name, created=created, owner=owner, region=region)

    @as_s3_errors
    async def delete_bucket(self, name: str) -> None:
        path = self._bucket_dir(name)
        slot = self.locks.slot(name, "")
        async with self.locks.hold(slot):  # CreateMultipartUpload takes it too
            # Once the folder is gone no write can land (keys.place has no folder to rename into);
            # then the uploads go (S3 does not count them as content), or the GC drops them later.
            if not await asyncio.to_thread(keys.remove_empty_tree, path, self._is_marker_of(name)):
                raise errors.BucketNotEmpty(resource=name, BucketName=name)
            self.registry.remove(name)
            self.meta.drop_bucket(name)
            self.bucket_configs.drop_bucket(name)
            if self.fsync:
                await asyncio.to_thread(keys.fsync_dir, self._real_root)
            await self.staging.drop_bucket(name, slot)

    # -- the commit path ----------------------------------------------------------------------
    def _seal(self, tmp: str, record: Record) -> bool:
        """fsync a finished temp file, bind the record to it and attach it as an xattr, so data and
        metadata appear together with the rename. False when the record needs a sidecar."""
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if self.fsync:
                os.fsync(fd)
            record.stamp(os.fstat(fd))
            return self.meta.attach(fd, record)
        finally:
            os.close(fd)

    async def _publish(
        self, bucket: str, kp: KeyPath, tmp: str | None, record: Record, precondition: Precondition | None
    ) -> ObjectInfo:
        """Atomically make a finished temp file (None: a folder marker) the object at ``kp``.

        The temp file must be closed and complete; it is consumed: renamed into place, or removed
        on any failure (including cancellation). ``precondition`` runs under the key lock. A
        full disk or a folder the server may not write is an S3 error (faults.py), for every
        caller (CompleteMultipartUpload commits through here too).
        """
        with refusals(kp.key):
            return await self._commit(bucket, kp, tmp, record, precondition)

    async def _commit(
        self, bucket: str, kp: KeyPath, tmp: str | None, record: Record, precondition: Precondition | None
    ) -> ObjectInfo:
        try:
            bdir = self._bucket_dir(bucket)
            path = keys.object_path(bdir, kp)
            attached = False
            if tmp is not None:
                if self.fsync or record.size >= THREAD_CHUNK:
                    attached = await asyncio.to_thread(self._seal, tmp, record)
                else:
                    attached = self._seal(tmp, record)
            slot = self.locks.slot(bucket, kp.key)
            async with self.locks.hold(slot):
                old = self._existing_record(bucket, kp, path)
                if precondition is not None:
                    current = await self._lookup(bucket, kp, path, held=frozenset({slot}))
                    precondition(current.info if current else None)
                if tmp is None:
                    folders = make_folder(self, bucket, bdir, kp, path, record)
                else:
                    # Without an xattr the record is the key's sidecar, written before the rename.
                    with contextlib.nullcontext() if attached else self.meta.renaming(bucket, kp.key, record, old):
                        folders = keys.place(self._real_root, bdir, kp, path, tmp)
                    tmp = None
            if old is not None and old.blob and old.blob != record.blob:
                self.meta.drop_blob(old.blob)
        except BaseException:
            keys.unlink_quietly(tmp)
            raise
        await self.sync_folders(folders)
        return record.to_info(kp.key)

    async def sync_folders(self, folders: list[str]) -> None:
        """fsync folders whose entries changed (keys.place's answer), sharing concurrent fsyncs;
        nothing under --no-fsync."""
        if not self.fsync:
            return
        for folder in folders:
            # Gone means a later delete emptied and pruned it: nothing of ours left to keep; not a
            # folder any more (a later put made a file of that name): the same.
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                await self.writer.sync(folder)

    async def sync_removal(self, bdir: str, folder: str) -> None:
        """fsync the folder a name was removed from, so a delete or rename that was answered
        cannot come back after a crash; when a prune removed that folder too, the nearest one
        still there (which lost the pruned folder's entry). Nothing under --no-fsync."""
        if not self.fsync:
            return
        while True:
            try:
                await self.writer.sync(folder)
                return
            except (FileNotFoundError, NotADirectoryError):
                # Pruned, and perhaps a file of that name put there since: its parent lost the entry.
                if not folder.startswith(bdir + os.sep):
                    return  # the bucket itself went away meanwhile
                folder = os.path.dirname(folder)

    # -- objects ------------------------------------------------------------------------------
    @as_s3_errors
    async def put_object(
        self, bucket: str, key: str, body: Body, meta: WriteMeta, precondition: Precondition | None = None
    ) -> ObjectInfo:
        bdir = self._bucket_dir(bucket)
        kp = keys.parse_key(key)
        if not kp.is_folder and precondition is None and self.writer.fits(body):
            return await self.writer.put(bucket, bdir, kp, body, meta)
        hasher = MultiHasher(["md5", *sorted(body.digests_wanted)])
        if kp.is_folder:
            async for chunk in body:
                if chunk:
                    raise keys.folder_with_content(key)
            record = Record.for_write(meta, EMPTY_MD5, 0, body.finish(hasher.digests()))
            record.folder = True
            return await self._publish(bucket, kp, None, record, precondition)
        tmp = self.writer.temp_name("put")
        # The flock lasts until the rename is done (fd closed last): the GC of another process
        # sharing ROOT removes only temp files nobody holds.
        lock_fd = self.writer.create_temp(tmp)
        try:
            try:
                with open(lock_fd, "wb", closefd=False) as f:
                    size = await write_body(f, body, hasher, writeback=self.fsync)
                digests = hasher.digests()
                record = Record.for_write(meta, digests["md5"].hex(), size, body.finish(digests))
            except BaseException:
                keys.unlink_quietly(tmp)
                raise
            return await self._publish(bucket, kp, tmp, record, precondition)
        finally:
            os.close(lock_fd)

    @as_s3_errors
    async def head_object(self, bucket: str, key: str) -> ObjectInfo:
        return (await self._find(bucket, key)).info

    @as_s3_errors
    async def open_object(self, bucket: str, key: str) -> ObjectReader:
        found = await self._find(bucket, key, keep_fd=True)
        return DiskReader(found.fd, found.info, found.st)

    @as_s3_errors
    async def delete_object(self, bucket: str, key: str, precondition: Precondition | None = None) -> None:
        bdir = self._bucket_dir(bucket)
        kp = keys.lookup_key(key)
        if kp is None:  # never here (keys.lookup_key): S3's 204, or a condition's failure on no object
            if precondition is not None:
                precondition(None)
            return
        path = keys.object_path(bdir, kp)
        if precondition is not None:
            # A file another program put here gets its record (its ETag) first; the check itself
            # runs again under the key's lock, on what is then there.
            await self._lookup(bucket, kp, path)
        await self.writer.delete(bucket, bdir, kp, path, precondition)

    @as_s3_errors
    async def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        meta: WriteMeta | None,
        src_precondition: Precondition | None = None,
        precondition: Precondition | None = None,
    ) -> ObjectInfo:
        return await copies.copy_object(
            self, src_bucket, src_key, dst_bucket, dst_key, meta, src_precondition, precondition
        )

    @as_s3_errors
    async def rename_object(
        self,
        bucket: str,
        src_key: str,
        dst_key: str,
        src_precondition: Precondition | None = None,
        precondition: Precondition | None = None,
        client_token: str | None = None,
    ) -> ObjectInfo:
        try:
            info = await copies.rename_object(self, bucket, src_key, dst_key, src_precondition, precondition)
        except errors.NoSuchKey:
            if not client_token:
                raise
            if not await asyncio.to_thread(self.rename_tokens.recalls, client_token, bucket, src_key, dst_key):
                raise
            return await self.head_object(bucket, dst_key)  # the retry succeeds while the result stands
        if client_token:
            await asyncio.to_thread(self.rename_tokens.remember, client_token, bucket, src_key, dst_key)
        return info

    @as_s3_errors
    async def list_objects(
        self, bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int
    ) -> ListPage:
        bdir = self._bucket_dir(bucket)
        return await asyncio.to_thread(
            self._list_page, bucket, bdir, prefix, delimiter, start_after, max_keys
        )

    def _list_page(
        self, bucket: str, bdir: str, prefix: str, delimiter: str, start_after: str, max_keys: int
    ) -> ListPage:
        def is_folder_marker(dir_path: str) -> bool:
            return self.meta.is_folder_marker(self._real_root, dir_path)

        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        while True:
            raw = listing.list_page(
                bdir, prefix, delimiter, start_after, max_keys, is_folder_marker, self._real_root
            )
            described = self._describe(bucket, raw.entries)
            objects += described
            prefixes += raw.common_prefixes
            # Entries the walk met but that are gone or unreadable since: the page walks on in
            # their place. A truncated page short of them could be empty, and a ListObjects (V1)
            # client without a delimiter, which resumes from the last key it got, stopped there.
            dropped = len(raw.entries) - len(described)
            if not raw.is_truncated or not dropped or raw.next_marker is None:
                return ListPage(objects, prefixes, raw.is_truncated, raw.next_marker)
            start_after, max_keys = raw.next_marker, dropped

    def _describe(self, bucket: str, entries: list[listing.Entry]) -> list[ObjectInfo]:
        """The listed objects of ``entries``, without those vanished since the walk saw them."""
        infos: list[ObjectInfo | None] = []
        unknown: list[int] = []  # foreign files without a record yet
        for entry in entries:
            info = self._entry_info(bucket, entry.key, entry.path, entry.is_dir)
            if info is _FOREIGN:
                unknown.append(len(infos))
                info = None
            infos.append(info)
        if unknown:
            adopted = foreign.adopt_paths(self, bucket, [(entries[i].key, entries[i].path) for i in unknown])
            for i, info in zip(unknown, adopted, strict=True):
                infos[i] = info
        return [info for info in infos if info is not None]

    def _entry_info(self, bucket: str, key: str, path: str, is_dir: bool) -> ObjectInfo | None:
        """The listed object from what is stored, None when gone, _FOREIGN when only hashing the
        file can tell (the page hashes those together)."""
        if is_dir:
            try:
                st = os.stat(path)
            except OSError:
                return None
            record = self.meta.load(path, bucket, key, st)
            return record.to_info(key) if record is not None and record.folder else None
        # A listing page reads a thousand records: one lstat and the record cache when it can.
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISREG(st.st_mode):
            cached = self.meta.peek(st)
            if cached is not None:
                return cached.to_info(key)
            # By path, without opening the file (three syscalls fewer per key): a record counts
            # only if it matches this lstat, so a file swapped in since then is not taken for it.
            record = self.meta.load(path, bucket, key, st)
            if record is not None:
                return record.to_info(key)
        return _FOREIGN

    # -- tagging ------------------------------------------------------------------------------
    @as_s3_errors
    async def get_object_tagging(self, bucket: str, key: str) -> dict[str, str]:
        return dict((await self._find(bucket, key)).record.tags)

    @as_s3_errors
    async def put_object_tagging(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        self._locate(bucket, key, existing=True)
        slot = self.locks.slot(bucket, key)
        async with self.locks.hold(slot):
            found = await self._find(bucket, key, keep_fd=True, held=frozenset({slot}))
            try:
                found.record.tags = dict(tags)
                target = found.fd if found.fd is not None else found.real
                if copies.records_per_key(target):
                    # A hard-linked object (a cheap copy): its metadata is per key, never in the inode.
                    self.meta.write_sidecar(bucket, key, found.record)
                else:
                    self.meta.store(target, bucket, key, found.record)
            finally:
                if found.fd is not None:
                    os.close(found.fd)

    @as_s3_errors
    async def delete_object_tagging(self, bucket: str, key: str) -> None:
        await self.put_object_tagging(bucket, key, {})
