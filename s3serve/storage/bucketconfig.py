"""Bucket configuration documents (CORS, tagging, policy, lifecycle, ...) under
``ROOT/.s3serve/bucket-config/<bucket>/<name>.xml`` (``policy.json`` for the JSON one).

Storage keeps the bytes and knows nothing of their meaning: handlers validate and render them.
A document is replaced with one rename (``metadata.write_atomic``), so a reader in any process
sees the old one or the new one. Writes hold the bucket's lock (the one CreateBucket and
DeleteBucket take), so a document written for a bucket being deleted cannot outlive it; the
folder of a bucket is removed with the bucket, and again before a bucket of that name is
created, so a new bucket never inherits an old one's configuration.

``cached`` serves the hot path (CORS on a GET with an Origin): one stat, and the parsed document
cached by the file's identity, safe when several processes share ROOT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
from collections.abc import Callable
from typing import Any, TypeVar

from .. import errors
from .keys import fsync_dir, is_bucket_folder_name
from .locks import KeyLocks
from .metadata import settled, write_atomic
from .registry import BucketRegistry, Stamp

log = logging.getLogger("s3serve")
T = TypeVar("T")

# Documents are small (S3 caps the biggest, a lifecycle configuration, well under this); a file
# bigger than that was not written by us and is not read into memory on the hot path.
MAX_DOCUMENT = 1024 * 1024
_NAME = re.compile(r"[a-z][A-Za-z-]{1,40}")
_CACHE_MAX = 4096


class BucketConfigStore:
    def __init__(
        self,
        hidden: str,
        locks: KeyLocks,
        bucket_dir: Callable[[str], str],
        durable: bool = False,
    ) -> None:
        """``bucket_dir`` raises NoSuchBucket for a bucket that does not exist."""
        self.dir = os.path.join(hidden, "bucket-config")
        self.tmp_dir = os.path.join(hidden, "tmp")
        self.locks = locks
        self.durable = durable
        self._bucket_dir = bucket_dir
        self._cache: dict[tuple[str, str, Callable[[bytes], Any]], tuple[Stamp, Any]] = {}
        # The checked paths ``cached`` stats: every signed request to a bucket asks for its
        # policy, most often to learn that there is none (a stat that fails), and building and
        # checking the path cost as much again.
        self._paths: dict[tuple[str, str], str] = {}

    def _path(self, bucket: str, name: str) -> str:
        # Both come from a request: never let either name a path outside the store.
        if not is_bucket_folder_name(bucket) or not _NAME.fullmatch(name):
            raise errors.NoSuchBucket(resource=bucket, BucketName=bucket)
        return os.path.join(self.dir, bucket, name + (".json" if name == "policy" else ".xml"))

    async def get(self, bucket: str, name: str) -> bytes | None:
        self._bucket_dir(bucket)
        return await asyncio.to_thread(self._read, self._path(bucket, name))

    async def put(self, bucket: str, name: str, document: bytes) -> None:
        path = self._path(bucket, name)
        if len(document) > MAX_DOCUMENT:
            # It could not be read back whole.
            raise errors.EntityTooLarge(
                "The configuration document exceeds the maximum allowed size.", MaxSizeAllowed=MAX_DOCUMENT
            )
        async with self.locks.hold(self.locks.slot(bucket, "")):
            self._bucket_dir(bucket)
            await asyncio.to_thread(write_atomic, self.tmp_dir, path, document, self.durable)

    async def delete(self, bucket: str, name: str) -> None:
        path = self._path(bucket, name)
        async with self.locks.hold(self.locks.slot(bucket, "")):
            self._bucket_dir(bucket)
            await asyncio.to_thread(self._remove, path)

    def drop_bucket(self, bucket: str) -> None:
        """Forget every document of a bucket (the caller holds the bucket's lock)."""
        if is_bucket_folder_name(bucket):
            shutil.rmtree(os.path.join(self.dir, bucket), ignore_errors=True)

    def with_owner(
        self, registry: BucketRegistry, bucket: str, name: str, parse: Callable[[bytes], T], default_owner: str
    ) -> tuple[str, T | None] | None:
        """The bucket's owner from the registry's record (without the stat of the bucket's folder
        that head_bucket makes), and the ``cached`` document. None for a bucket without a record.
        The document is stat'ed every time, never vouched for by the record: one written here
        by another program (a policy put in place by hand) binds the next request, as S3's
        binds the next one."""
        doc = registry.read(bucket) if is_bucket_folder_name(bucket) else None
        if doc is None:
            return None
        return str(doc.get("owner", default_owner)), self.cached(bucket, name, parse)

    def cached(self, bucket: str, name: str, parse: Callable[[bytes], T]) -> T | None:
        """``parse`` of the stored document, parsed once per version of the file; None when there
        is none. Runs inline: a stat, and on a miss a read of a small file."""
        path = self._paths.get((bucket, name))
        try:
            if path is None:
                path = self._path(bucket, name)
                if len(self._paths) >= _CACHE_MAX:
                    self._paths.clear()
                self._paths[(bucket, name)] = path
            st = os.stat(path)
        except (errors.S3Error, OSError):
            return None
        stamp = (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)
        key = (bucket, name, parse)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == stamp:
            value: T = hit[1]
            return value
        data = self._read(path)
        if data is None:
            return None
        try:
            value = parse(data)
        except Exception:
            # A document another program broke must not fail every request to the bucket.
            log.warning("ignoring unreadable %s configuration of bucket %s", name, bucket)
            return None
        if settled(st):
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (stamp, value)
        return value

    @staticmethod
    def _read(path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read(MAX_DOCUMENT)
        except OSError:
            return None

    def _remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        if self.durable:
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(os.path.dirname(path))


class BucketConfigMixin:
    """The Backend's bucket configuration operations, for a backend that keeps a store."""

    bucket_configs: BucketConfigStore

    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        return await self.bucket_configs.get(bucket, name)

    async def put_bucket_config(self, bucket: str, name: str, document: bytes) -> None:
        await self.bucket_configs.put(bucket, name, document)

    async def delete_bucket_config(self, bucket: str, name: str) -> None:
        await self.bucket_configs.delete(bucket, name)

    async def cached_bucket_config(self, bucket: str, name: str, parse: Callable[[bytes], T]) -> T | None:
        return self.bucket_configs.cached(bucket, name, parse)
