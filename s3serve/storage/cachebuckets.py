"""The upstream cache's buckets (CacheBuckets): the upstream's, each with a folder here that holds
its replicas and this server's configuration of it (CORS, policy, ...), which is enforced here.
A bucket deleted on the upstream behind this server's back is forgotten here (its folder, copies
and kept parts) as soon as a request learns it is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from .. import errors
from . import replicas
from .base import BucketInfo, T
from .cacheparts import CacheMultipart
from .locks import Turns

log = logging.getLogger("s3serve.cache")

# The bucket configuration the upstream keeps and applies itself (see get_bucket_config).
UPSTREAM_CONFIG = "encryption"


class CacheBuckets(CacheMultipart):
    """CacheBackend's buckets and their configuration."""

    # Buckets being forgotten (bucket_gone), in this process.
    _forgetting: dict[str, asyncio.Task[None]]
    # A bucket's name, from an upstream's answer about it to its folder made or forgotten here:
    # the folder a request forgets is never of a bucket created again meanwhile (its
    # configuration is kept here alone). Within this process; workers sharing ROOT can still race.
    _bucket_turns: Turns

    async def list_buckets(self) -> list[BucketInfo]:
        """The upstream's buckets, each owned here by whoever made it through this server (the
        first user for the others)."""
        result = []
        for bucket in await self.upstream.list_buckets():
            try:
                owner = (await self.local.head_bucket(bucket.name)).owner
            except errors.S3Error:
                owner = self.local.default_owner
            result.append(replace(bucket, owner=owner))
        return result

    async def _local_bucket(self, name: str, region: str = "us-east-1", owner: str | None = None) -> BucketInfo:
        """The bucket's folder here, made when missing (every replica published asks: a stat,
        not a CreateBucket under its lock, when it is there)."""
        with contextlib.suppress(errors.NoSuchBucket):
            return await self.local.head_bucket(name)
        with contextlib.suppress(errors.BucketAlreadyOwnedByYou, errors.BucketAlreadyExists):
            await self.local.create_bucket(name, owner or self.local.default_owner, region)
        return await self.local.head_bucket(name)

    async def head_bucket(self, name: str) -> BucketInfo:
        try:
            return await self.local.head_bucket(name)
        except errors.NoSuchBucket:
            info = await self.upstream.head_bucket(name)
            return await self._local_bucket(name, info.region)

    async def confirm_bucket(self, name: str) -> BucketInfo:
        """The upstream's answer, not the folder here: a bucket deleted on the upstream leaves
        its folder (and copies) behind until now, and "HeadBucket, create when missing" must
        see it gone. While the upstream cannot be reached, the folder here answers."""
        await self._upstream_has(name, errors.ServiceUnavailable)
        return await self.head_bucket(name)

    async def _upstream_has(self, name: str, tolerated: type[errors.S3Error] = errors.S3Error) -> None:
        """NoSuchBucket, and the folder here forgotten, when the upstream has no bucket ``name``;
        a ``tolerated`` refusal leaves it to the folder here to answer."""
        async with self._bucket_turns.hold(name):
            try:
                await self.upstream.head_bucket(name)
            except errors.NoSuchBucket:
                await self._forget_bucket(name)
                raise
            except tolerated:
                pass

    async def create_bucket(self, name: str, owner: str, region: str) -> BucketInfo:
        async with self._bucket_turns.hold(name):
            try:
                await self.upstream.create_bucket(name, owner, region)
            except errors.BucketAlreadyOwnedByYou:
                await self._local_bucket(name, region, owner)
                raise
            return await self._local_bucket(name, region, owner)

    async def delete_bucket(self, name: str) -> None:
        async with self._bucket_turns.hold(name):
            await self.upstream.delete_bucket(name)
            await self._forget_bucket(name)

    async def bucket_gone(self, name: str) -> None:
        """The upstream answered NoSuchBucket to a request naming ``name`` (perhaps deleted there
        directly): its folder here goes now, as on a HeadBucket (confirm_bucket), or this
        server's configuration of it (CORS, policy, ...) would still be answered. Asked of the
        upstream first: a copy's NoSuchBucket may be of the other bucket. A stat when there is
        no folder; one HEAD and one walk of its copies however many requests learn it at once.
        Never raises: the caller's error stands."""
        try:
            await self.local.check_bucket(name)
        except errors.S3Error:
            return
        forgetting = self._forgetting.get(name)
        if forgetting is None:
            forgetting = self._forgetting[name] = self.spawn(self._forget_if_gone(name))
            forgetting.add_done_callback(lambda _: self._forgetting.pop(name, None))
        await asyncio.shield(forgetting)

    async def _forget_if_gone(self, name: str) -> None:
        try:
            await self._upstream_has(name, errors.S3Error)
        except errors.NoSuchBucket:
            pass  # forgotten
        except Exception as exc:  # noqa: BLE001 - a folder left behind: the next NoSuchBucket tries again
            log.warning("cache: folder of %s (gone upstream) not removed: %s", name, exc)

    async def _forget_bucket(self, name: str) -> None:
        """The upstream has no bucket ``name`` (any more): every replica here is of an object
        gone there, and the folder goes unless it holds files that are not copies; the parts
        kept of its uploads (gone there too) go."""
        await self._end_bucket_parts(name)  # before the folders are listed: none is made after
        for folder in await asyncio.to_thread(self.parts.names_of, name):
            await self.remove_parts(folder)
        kept = 0
        async for info in replicas.objects_of(self.local, name):
            if not await self.drop_stale(name, info.key):
                kept += 1
        try:
            await self.local.delete_bucket(name)
        except errors.NoSuchBucket:
            pass  # never had a folder here
        except errors.BucketNotEmpty:
            log.warning("cache: folder %s kept: it holds %d file(s) that are not copies", name, kept)

    # -- bucket configuration: this server's own (the request's head_bucket made the folder) --
    # except default encryption and its SSE-C block, which the upstream applies to every write
    # that reaches it (upstream_encryption): asked of and told to the upstream. Each request
    # (rare; not the cached lookups of every request) asks the upstream whether the bucket is
    # there: the folder here outlives a bucket deleted on the upstream until something asks.
    # Any answer but NoSuchBucket (an upstream away, credentials that may not HeadBucket)
    # leaves it to the folder.
    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        if name == UPSTREAM_CONFIG:
            return await self.upstream.get_bucket_config(bucket, name)
        await self._upstream_has(bucket)
        return await self.local.get_bucket_config(bucket, name)

    async def put_bucket_config(self, bucket: str, name: str, document: bytes) -> None:
        if name == UPSTREAM_CONFIG:
            await self.upstream.put_bucket_config(bucket, name, document)
            return
        await self._upstream_has(bucket)
        await self.local.put_bucket_config(bucket, name, document)

    async def delete_bucket_config(self, bucket: str, name: str) -> None:
        if name == UPSTREAM_CONFIG:
            await self.upstream.delete_bucket_config(bucket, name)
            return
        await self._upstream_has(bucket)
        await self.local.delete_bucket_config(bucket, name)

    async def cached_bucket_config(self, bucket: str, name: str, parse: Callable[[bytes], T]) -> T | None:
        return await self.local.cached_bucket_config(bucket, name, parse)
