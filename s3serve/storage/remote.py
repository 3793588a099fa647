"""RemoteBackend: the Backend interface served by an upstream S3 (AWS S3, MinIO, Ceph RGW, moto,
another s3serve) through its REST API: SigV4 header auth, path-style addressing.

This module maps the Backend's operations onto S3 requests; remote_http.py sends them (with this
module, the only part of storage/ that talks HTTP: it is the upstream's client) and remote_xml.py
reads the answers. Bodies go upstream as they were verified locally (a spool's FileBody) with
Content-Length, Content-MD5 and x-amz-checksum-* declared, so the upstream checks the transfer
itself; conditional writes carry their If-* headers, so the upstream checks them atomically.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import quote, urlencode

from .. import errors, s3xml
from . import remote_xml as rx
from . import ssec
from .base import (
    SSE_C_KEY_UNKNOWN,
    Backend,
    Body,
    BucketInfo,
    Encryption,
    HeaderPrecondition,
    ListPage,
    ObjectInfo,
    PartInfo,
    PartsPage,
    Precondition,
    UploadInfo,
    UploadListPage,
    WriteMeta,
)
from .credentials import Source
from .remote_headers import (
    checksum_headers,
    condition_name,
    http_date,
    info_from_headers,
    meta_headers,
)
from .remote_http import RemoteReader, Upstream, stream_of

log = logging.getLogger("s3serve")

# Configurations S3 answers with a default until they are deleted (handlers/bucket_config.py keeps
# that deletion as an empty document): the upstream's "not found" for them is that deleted state.
TOMBSTONE_CONFIGS = frozenset({"ownershipControls", "publicAccessBlock"})
# HEAD ?partNumber=N requests in flight at once, where part sizes must be asked one by one, and
# how many part sizes so found are remembered (an ETag's parts never change).
PART_HEADS = 16
REMEMBERED_PARTS = 100_000


class RemoteBackend(Backend):
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        *,
        ssl_context: ssl.SSLContext | None = None,
        verify: bool = True,
        max_connections: int = 64,
        timeout: float | None = None,
        session_token: str | None = None,
        credentials: Source | None = None,
    ) -> None:
        """``endpoint`` is scheme://host[:port] (ValueError otherwise); ``session_token`` goes with
        temporary credentials (AWS STS); ``credentials`` (an AWS profile's) replaces all three."""
        self._http = Upstream(
            endpoint,
            access_key,
            secret_key,
            region,
            ssl_context=ssl_context,
            verify=verify,
            max_connections=max_connections,
            timeout=timeout,
            session_token=session_token,
            credentials=credentials,
        )
        self.endpoint = self._http.endpoint
        self.region = region
        self._rename_support: bool | None = None  # learnt at the first rename
        # Whether this upstream's HEAD answers tell the tag count (x-amz-tagging-count, sent only
        # when there are tags): learnt at the first that does. S3's HeadObject has TagCount;
        # older S3s answer it on GET alone, and their HEAD without it says nothing of the tags.
        self.head_tag_counts = False
        self._head_parts: OrderedDict[tuple[str, str, str], list[PartInfo]] = OrderedDict()
        self._head_parts_held = 0

    def __repr__(self) -> str:  # never the secret
        return f"RemoteBackend({self.endpoint!r}, region={self.region!r})"

    async def start(self) -> None:
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()

    @staticmethod
    def _source(bucket: str, key: str) -> str:
        return Upstream.path(bucket, key)

    # -- preconditions ------------------------------------------------------------------------
    async def _current(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            return await self.head_object(bucket, key)
        except errors.NoSuchKey:
            return None

    async def _write_condition(self, bucket: str, key: str, precondition: Precondition | None) -> dict[str, str]:
        if precondition is None:
            return {}
        if isinstance(precondition, HeaderPrecondition):
            return dict(precondition.headers)
        # Not expressible as headers: checked on a HEAD first, which a concurrent writer can race.
        precondition(await self._current(bucket, key))
        return {}

    async def _source_condition(
        self, bucket: str, key: str, precondition: Precondition | None, prefix: str, current: ObjectInfo | None = None
    ) -> dict[str, str]:
        if precondition is None:
            return {}
        if isinstance(precondition, HeaderPrecondition):
            return {prefix + condition_name(name): value for name, value in precondition.headers.items()}
        precondition(current or await self._current(bucket, key))
        return {}

    # -- buckets ------------------------------------------------------------------------------
    async def list_buckets(self) -> list[BucketInfo]:
        _, body = await self._http.read("GET", "")
        return rx.list_buckets(body)

    async def create_bucket(self, name: str, owner: str, region: str) -> BucketInfo:
        body = rx.create_bucket(region) if region and region != "us-east-1" else None
        await self._http.read("PUT", name, body=body, missing=errors.NoSuchBucket, idempotent=False)
        return BucketInfo(name, time.time(), owner, region or self.region)

    async def head_bucket(self, name: str) -> BucketInfo:
        headers, _ = await self._http.read("HEAD", name, missing=errors.NoSuchBucket, quick=True)
        return BucketInfo(name, 0.0, "", headers.get("x-amz-bucket-region") or self.region)

    async def delete_bucket(self, name: str) -> None:
        await self._http.read("DELETE", name, missing=errors.NoSuchBucket)

    # -- objects ------------------------------------------------------------------------------
    async def put_object(
        self, bucket: str, key: str, body: Body, meta: WriteMeta, precondition: Precondition | None = None
    ) -> ObjectInfo:
        stream = stream_of(body)
        headers = meta_headers(meta)
        headers.update(checksum_headers(stream.checksums, sdk=True))
        headers.update(await self._write_condition(bucket, key, precondition))
        answer, _ = await self._http.read("PUT", bucket, key, headers=headers, body=stream, missing=errors.NoSuchBucket)
        etag = rx.written_etag(answer.get("ETag"), "PutObject")
        checksums = body.finish({})
        return ObjectInfo(
            key=key,
            size=stream.size,
            etag=etag,
            # S3's PutObject answer has no Last-Modified; its Date is when the object was written.
            last_modified=http_date(answer.get("Date")) or time.time(),
            headers=dict(meta.headers),
            user_meta=dict(meta.user_meta),
            checksums=checksums,
            checksum_type=(answer.get("x-amz-checksum-type") or "FULL_OBJECT") if checksums else None,
            storage_class=meta.storage_class,
            tag_count=len(meta.tags or {}),
            is_folder=key.endswith("/"),
            encryption=ssec.described(Encryption.from_headers(answer)),
        )

    async def head_object(self, bucket: str, key: str) -> ObjectInfo:
        try:
            headers, _ = await self._http.read(
                "HEAD", bucket, key, headers={"x-amz-checksum-mode": "ENABLED"}, quick=True
            )
        except errors.NoSuchKey as exc:
            raise await self._missing(bucket, exc) from None
        if "x-amz-tagging-count" in headers:
            self.head_tag_counts = True
        return info_from_headers(key, headers)

    async def _missing(self, bucket: str, exc: errors.S3Error) -> errors.S3Error:
        """What a HEAD's 404 means: it has no body to tell NoSuchKey from NoSuchBucket, which a
        GET's would (a cache's reader, GetObjectAttributes and CopyObject answer with a body).
        A HEAD of the bucket tells, asked only on this path; any other answer leaves NoSuchKey
        (on S3, a 404 to a HEAD of a key means s3:ListBucket, which HeadBucket needs)."""
        try:
            await self.head_bucket(bucket)
        except errors.NoSuchBucket as gone:
            return gone
        except errors.S3Error:
            pass
        return exc

    async def open_object(self, bucket: str, key: str) -> RemoteReader:
        response = await self._http.send("GET", bucket, key, headers={"x-amz-checksum-mode": "ENABLED"})
        return RemoteReader(self._http, bucket, key, info_from_headers(key, response.headers), response)

    async def read_range(self, bucket: str, key: str, etag: str, offset: int, length: int) -> AsyncIterator[bytes]:
        """Bytes [offset, offset + length) of the version of ``key`` whose ETag is ``etag`` (a
        ranged GET pinned to it), without a GET of the whole object first."""
        with RemoteReader(self._http, bucket, key, ObjectInfo(key, -1, etag, 0.0), None) as reader:
            async for chunk in reader.iter_range(offset, length):
                yield chunk

    async def object_parts(
        self, bucket: str, key: str, etag: str | None = None, max_heads: int | None = None
    ) -> list[PartInfo] | None:
        """The parts of a multipart object (number, size, checksums; no ETags), from
        GetObjectAttributes, or where that lists none (S3 for an object uploaded without
        checksums; moto always) from HEAD ?partNumber=N; None for an object not made by
        multipart, or parts the upstream does not tell (any error). ``etag``: the object's, whose
        "-N" the parts must match; ``max_heads``: None rather than more HEADs than that."""
        parts: list[PartInfo] = []
        marker: int | None = 0
        try:
            while marker is not None:
                headers = {"x-amz-object-attributes": "ObjectParts", "x-amz-max-parts": "1000"}
                if marker:
                    headers["x-amz-part-number-marker"] = str(marker)
                # A small answer, asked before a read is answered: a HEAD's budget (QUICK_TIMEOUT).
                _, body = await self._http.read(
                    "GET", bucket, key, [("attributes", None)], headers, quick=True
                )
                page = rx.object_parts(body)
                if page is None:
                    return None if parts else await self._parts_by_head(bucket, key, etag, max_heads)
                parts.extend(page[0])
                # A marker that does not advance would page forever.
                marker = page[1] if page[1] is not None and page[1] > (marker or 0) else None
        except errors.S3Error as exc:
            log.debug("upstream S3 %s: no parts of %s/%s: %s %s", self.endpoint, bucket, key, exc.code, exc.message)
            return None
        return parts

    async def _parts_by_head(
        self, bucket: str, key: str, etag: str | None, max_heads: int | None = None
    ) -> list[PartInfo] | None:
        """Part sizes from HEAD ?partNumber=N (each answers its part's Content-Length and the
        object's x-amz-mp-parts-count); S3Error when one fails. Not pinned with If-Match: moto
        holds that against the part's ETag. The caller checks that the sizes add up."""
        seen = self._head_parts.get((bucket, key, etag)) if etag else None
        if seen is not None:
            return seen
        count_of_etag = etag.rpartition("-")[2] if etag else ""
        if max_heads is not None and count_of_etag.isdigit() and int(count_of_etag) > max_heads:
            return None
        limit = asyncio.Semaphore(PART_HEADS)

        async def head(number: int) -> tuple[int, int]:
            async with limit:
                query = [("partNumber", str(number))]
                headers, _ = await self._http.read("HEAD", bucket, key, query, quick=True)
            return int(headers.get("Content-Length") or -1), int(headers.get("x-amz-mp-parts-count") or 0)

        first, count = await head(1)
        if count < 1 or (etag is not None and not etag.endswith(f"-{count}")):
            return None  # not a multipart object, or not the version asked about
        rest = await asyncio.gather(*(head(number) for number in range(2, count + 1)), return_exceptions=True)
        sizes = [first]
        for answer in rest:
            if isinstance(answer, BaseException):
                raise answer
            sizes.append(answer[0])
        if min(sizes) < 0:
            return None
        parts = [PartInfo(number, size, "") for number, size in enumerate(sizes, 1)]
        if etag and (bucket, key, etag) not in self._head_parts:
            # One HEAD per part is dear: asked again for each read of an object not yet copied.
            self._head_parts[(bucket, key, etag)] = parts
            self._head_parts_held += len(parts)
            while self._head_parts_held > REMEMBERED_PARTS and len(self._head_parts) > 1:
                self._head_parts_held -= len(self._head_parts.popitem(last=False)[1])
        return parts

    async def delete_object(self, bucket: str, key: str, precondition: Precondition | None = None) -> None:
        headers = await self._write_condition(bucket, key, precondition)
        try:
            await self._http.read("DELETE", bucket, key, headers=headers, idempotent=not headers)
        except errors.NoSuchKey:
            if precondition is not None:
                raise  # If-Match on an absent object

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
        headers = {"x-amz-copy-source": self._source(src_bucket, src_key), "x-amz-metadata-directive": "COPY"}
        if meta is not None:
            headers.update(meta_headers(meta, tags=False))
            headers["x-amz-metadata-directive"] = "REPLACE"
            if meta.checksum_algorithm:  # else the upstream copies the source's checksums
                headers["x-amz-checksum-algorithm"] = meta.checksum_algorithm
            if meta.tags is not None:
                headers["x-amz-tagging-directive"] = "REPLACE"
                headers["x-amz-tagging"] = urlencode(meta.tags, quote_via=quote)
        headers.update(await self._source_condition(src_bucket, src_key, src_precondition, "x-amz-copy-source-"))
        headers.update(await self._write_condition(dst_bucket, dst_key, precondition))
        answer, body = await self._http.read("PUT", dst_bucket, dst_key, headers=headers, error_in_body=True)
        # The copy's answer holds only ETag and LastModified; the rest comes from the copy itself.
        etag, modified, checksums = rx.copy_result(body, "CopyObjectResult", "CopyObject")
        made = ObjectInfo(dst_key, 0, etag, modified or time.time(), checksums=checksums)
        return await self._made(dst_bucket, dst_key, replace(made, encryption=Encryption.from_headers(answer)))

    async def rename_object(
        self,
        bucket: str,
        src_key: str,
        dst_key: str,
        src_precondition: Precondition | None = None,
        precondition: Precondition | None = None,
        client_token: str | None = None,
    ) -> ObjectInfo:
        if not await self._renames(bucket):
            return await self._copy_rename(bucket, src_key, dst_key, src_precondition, precondition, client_token)
        headers = {"x-amz-rename-source": self._source(bucket, src_key)}
        headers.update(await self._source_condition(bucket, src_key, src_precondition, "x-amz-rename-source-"))
        headers.update(await self._write_condition(bucket, dst_key, precondition))
        if client_token:
            headers["x-amz-client-token"] = client_token
        # Only a rename with a client token can be repeated safely: the upstream recognises it.
        await self._http.read(
            "PUT", bucket, dst_key, [("renameObject", None)], headers, idempotent=bool(client_token), error_in_body=True
        )
        return await self._made(bucket, dst_key, ObjectInfo(dst_key, 0, "", time.time()))

    async def _made(self, bucket: str, key: str, made: ObjectInfo) -> ObjectInfo:
        """What a write (a copy, a rename, a Complete) just made at ``key``, from a HEAD carrying
        the key of the object written (ssec.reading_written); ``made``, what the write's own
        answer told, when that HEAD fails: the write happened all the same (an SSE-C object
        renamed, which no key goes with, or completed without its key; a delete in between), and
        an error now would tell the client, and a cache, that it did not."""
        try:
            with ssec.reading_written():
                return await self.head_object(bucket, key)
        except errors.S3Error as exc:
            log.debug("upstream S3 %s: %s/%s written, not described: %s %s", self.endpoint, bucket, key, exc.code, exc)
            key_required = isinstance(exc, errors.InvalidRequest) and exc.message == ssec.KEY_REQUIRED
            if key_required and not made.encryption.is_customer:
                # An SSE-C object, whose key's MD5 is unknown here; S3 asks for the key on a read.
                made = replace(made, encryption=SSE_C_KEY_UNKNOWN)
            return made

    async def _renames(self, bucket: str) -> bool:
        """Whether the upstream knows RenameObject (a recent operation few S3s have). One that
        does not may take ``PUT ?renameObject`` for a PutObject of nothing, as moto does, and
        empty the destination: so ask once, renaming a missing key to a fresh one, which such an
        upstream answers by creating it (removed again), and one that renames by NoSuchKey."""
        if self._rename_support is None:
            probe = f".s3serve-rename-probe-{uuid.uuid4().hex}"
            headers = {"x-amz-rename-source": self._source(bucket, probe + "-missing"), "if-none-match": "*"}
            try:
                await self._http.read("PUT", bucket, probe, [("renameObject", None)], headers, idempotent=False)
            except errors.NoSuchKey:
                self._rename_support = True
            except (errors.AccessDenied, errors.ServiceUnavailable, errors.NoSuchBucket):
                raise  # says nothing about RenameObject: ask again next time
            except errors.S3Error:
                self._rename_support = False
            else:
                self._rename_support = False
                await self.delete_object(bucket, probe)
            log.info("upstream S3 %s %s RenameObject", self.endpoint, "supports" if self._rename_support else "lacks")
        return self._rename_support

    async def _copy_rename(
        self,
        bucket: str,
        src_key: str,
        dst_key: str,
        src_precondition: Precondition | None,
        precondition: Precondition | None,
        client_token: str | None,
    ) -> ObjectInfo:
        """RenameObject where the upstream has none: a server-side copy, then the source's delete
        (not atomic: a reader may see both keys for a moment)."""
        try:
            info = await self.copy_object(bucket, src_key, bucket, dst_key, None, src_precondition, precondition)
        except errors.NoSuchKey:
            if client_token is None:
                raise
            # Perhaps the retry of a rename that happened: the destination stands then.
            return await self.head_object(bucket, dst_key)
        await self.delete_object(bucket, src_key)
        return info

    async def list_objects(
        self, bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int
    ) -> ListPage:
        query: list[tuple[str, str | None]] = [("list-type", "2"), ("encoding-type", "url"), ("max-keys", str(max_keys))]
        if prefix:
            query.append(("prefix", prefix))
        if delimiter:
            query.append(("delimiter", delimiter))
            rest = start_after[len(prefix) :] if start_after.startswith(prefix) else ""
            if rest.endswith(delimiter) and rest.find(delimiter) == len(rest) - len(delimiter):
                # A previous page's common prefix: S3's start-after would resume inside it, so
                # skip past every key under it (U+10FFFF sorts after any character in UTF-8).
                start_after += "\U0010ffff"
        if start_after:
            query.append(("start-after", start_after))
        _, body = await self._http.read("GET", bucket, query=query, missing=errors.NoSuchBucket)
        objects, prefixes, truncated = rx.list_objects(body)
        last = [objects[-1].key] if objects else []
        last += prefixes[-1:]
        return ListPage(objects, prefixes, truncated, max(last) if truncated and last else None)

    # -- tagging ------------------------------------------------------------------------------
    async def get_object_tagging(self, bucket: str, key: str) -> dict[str, str]:
        try:
            _, body = await self._http.read("GET", bucket, key, [("tagging", None)])
        except errors.NoSuchTagSet:
            return {}
        return rx.tagging(body) if body.strip() else {}

    async def put_object_tagging(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        await self._http.read("PUT", bucket, key, [("tagging", None)], {"content-type": "application/xml"}, s3xml.tagging(tags))

    async def delete_object_tagging(self, bucket: str, key: str) -> None:
        await self._http.read("DELETE", bucket, key, [("tagging", None)])

    # -- bucket configuration -----------------------------------------------------------------
    @staticmethod
    def _not_configured(exc: errors.S3Error) -> bool:
        code = exc.code
        return exc.status == 404 and code != "NoSuchBucket" and (code.startswith("NoSuch") or code.endswith("NotFoundError"))

    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        try:
            _, body = await self._http.read("GET", bucket, query=[(name, None)], missing=errors.NoSuchBucket)
        except errors.S3Error as exc:
            if self._not_configured(exc):
                return b"" if name in TOMBSTONE_CONFIGS else None
            raise
        return body

    async def put_bucket_config(self, bucket: str, name: str, document: bytes) -> None:
        if not document and name in TOMBSTONE_CONFIGS:
            await self.delete_bucket_config(bucket, name)
            return
        await self._http.read("PUT", bucket, query=[(name, None)], body=document, missing=errors.NoSuchBucket)

    async def delete_bucket_config(self, bucket: str, name: str) -> None:
        try:
            await self._http.read("DELETE", bucket, query=[(name, None)], missing=errors.NoSuchBucket)
        except errors.S3Error as exc:
            if not self._not_configured(exc):
                raise

    # -- multipart ----------------------------------------------------------------------------
    async def create_multipart_upload(self, bucket: str, key: str, meta: WriteMeta, owner: str) -> UploadInfo:
        headers = meta_headers(meta)
        if meta.checksum_algorithm:
            headers["x-amz-checksum-algorithm"] = meta.checksum_algorithm
        if meta.checksum_type:
            headers["x-amz-checksum-type"] = meta.checksum_type
        answer, body = await self._http.read("POST", bucket, key, [("uploads", None)], headers, missing=errors.NoSuchBucket)
        # The upstream's encryption of the upload, which its parts and object report.
        meta = replace(meta, encryption=Encryption.from_headers(answer))
        return UploadInfo(rx.upload_id(body), key, time.time(), owner, meta)

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: Body) -> PartInfo:
        stream = stream_of(body)
        query = [("partNumber", str(number)), ("uploadId", upload_id)]
        answer, _ = await self._http.read(
            "PUT", bucket, key, query, checksum_headers(stream.checksums, sdk=True), stream, missing=errors.NoSuchUpload
        )
        etag = rx.written_etag(answer.get("ETag"), "UploadPart")
        checksums = body.finish({})
        modified = http_date(answer.get("Date")) or time.time()
        return PartInfo(number, stream.size, etag, modified, checksums, Encryption.from_headers(answer))

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
        headers = {"x-amz-copy-source": self._source(src_bucket, src_key)}
        current = None
        if src_range is None:
            # The part's size is the source's: pin the source seen here with its ETag.
            current = await self.head_object(src_bucket, src_key)
            headers["x-amz-copy-source-if-match"] = f'"{current.etag}"'
        else:
            headers["x-amz-copy-source-range"] = f"bytes={src_range[0]}-{src_range[1]}"
        headers.update(await self._source_condition(src_bucket, src_key, src_precondition, "x-amz-copy-source-", current))
        query = [("partNumber", str(number)), ("uploadId", upload_id)]
        answer, body = await self._http.read("PUT", bucket, key, query, headers, missing=errors.NoSuchUpload, error_in_body=True)
        etag, modified, checksums = rx.copy_result(body, "CopyPartResult", "UploadPartCopy")
        size = src_range[1] - src_range[0] + 1 if src_range is not None else current.size if current else 0
        return PartInfo(number, size, etag, modified or time.time(), checksums, Encryption.from_headers(answer))

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
        headers = {"content-type": "application/xml", **checksum_headers(checksums or {})}
        if checksum_type is not None:
            headers["x-amz-checksum-type"] = checksum_type
        if object_size is not None:
            headers["x-amz-mp-object-size"] = str(object_size)
        headers.update(await self._write_condition(bucket, key, precondition))
        answer, body = await self._http.read(
            "POST", bucket, key, [("uploadId", upload_id)], headers, rx.complete(parts),
            missing=errors.NoSuchUpload, error_in_body=True,
        )  # fmt: skip
        doc = rx.parse(body, "CompleteMultipartUploadResult")
        etag = rx.written_etag(doc.get("ETag"), "CompleteMultipartUpload")
        # The rest (size, time, metadata) from a HEAD; but the answer is this upload's, not that of
        # a write of the key that landed between the two. An SSE-C object completed without its
        # key (S3 asks for it only with a checksum) is described by the answer alone.
        encryption = Encryption.from_headers(answer)
        made = ObjectInfo(key, 0, etag, time.time(), checksums=rx.checksums_in(doc), encryption=encryption)
        info = await self._made(bucket, key, made)
        if etag != info.etag:
            return replace(info, etag=etag, checksums=rx.checksums_in(doc), parts=None)
        return info

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self._http.read("DELETE", bucket, key, [("uploadId", upload_id)], missing=errors.NoSuchUpload)

    async def list_multipart_uploads(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> UploadListPage:
        query: list[tuple[str, str | None]] = [("uploads", None), ("encoding-type", "url"), ("max-uploads", str(max_uploads))]
        for name, value in (("prefix", prefix), ("delimiter", delimiter), ("key-marker", key_marker)):
            if value:
                query.append((name, value))
        if key_marker and upload_id_marker:
            query.append(("upload-id-marker", upload_id_marker))
        _, body = await self._http.read("GET", bucket, query=query, missing=errors.NoSuchBucket)
        return rx.list_uploads(body)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int, max_parts: int
    ) -> PartsPage:
        query: list[tuple[str, str | None]] = [("uploadId", upload_id), ("max-parts", str(max_parts))]
        if part_number_marker:
            query.append(("part-number-marker", str(part_number_marker)))
        _, body = await self._http.read("GET", bucket, key, query, missing=errors.NoSuchUpload)
        return rx.list_parts(body, key, upload_id)

