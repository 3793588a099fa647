"""CompleteMultipartUpload: the client's part list checked against the stored parts, the object
published without a copy where the parts lie in place (assembly.py) or concatenated otherwise, and
a retried Complete answered as S3 answers it; a Complete's or an Abort's upload held by the claim
of a Complete that died is taken back."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import logging
import os
import secrets
import shutil
from typing import TYPE_CHECKING, Any

from .. import errors
from ..checksums import ALGORITHM_DIGEST, DEFAULT_CHECKSUM, MultiHasher, b64, combine_crc
from . import assembly, gc, keys
from .assembly import copy_range
from .base import ObjectInfo, PartInfo, Precondition, UploadInfo
from .faults import refusals
from .gc import any_flocked, create_locked, read_json
from .metadata import Record

if TYPE_CHECKING:
    from .disk import DiskBackend
    from .staging import Staging

log = logging.getLogger("s3serve.multipart")


async def complete(
    staging: Staging,
    bucket: str,
    key: str,
    upload_id: str,
    parts: list[PartInfo],
    precondition: Precondition | None,
    checksums: dict[str, str] | None = None,
    checksum_type: str | None = None,
    object_size: int | None = None,
) -> ObjectInfo:
    bdir, kp = staging.locate_upload(bucket, key, upload_id)
    path = keys.object_path(bdir, kp)
    if not parts:
        raise errors.MalformedXML()
    for before, after in zip(parts, parts[1:], strict=False):
        if after.number <= before.number:
            raise errors.InvalidPartOrder()
    delay = 0.005
    reclaimed = False
    looked_again = 0
    while True:
        try:
            return await _complete(
                staging, bucket, kp, upload_id, parts, precondition, checksums, checksum_type, object_size
            )
        except errors.NoSuchUpload:
            # S3 answers a retried Complete (the first one's answer lost to a timeout or a
            # dropped connection) with the same success. One still running is waited for:
            # it may yet fail and give the upload back.
            done = _completed(staging, bucket, kp, path, upload_id, parts)
            if done is not None:
                return done
            claims = _complete_claims(staging, bucket, upload_id)
            if not _live(claims):
                if not claims and looked_again < 3 and _given_back(staging, bucket, upload_id, key):
                    # The claim this attempt met was given back since (the Complete holding it
                    # failed, or the GC undid a dead one's): the upload is there again.
                    looked_again += 1
                    continue
                # None is live: the claims left are of Completes whose process died (one of
                # several --workers, killed mid-Complete, while the others serve on). Finished
                # off as the GC's next round would (the upload given back), the client's retry
                # need not wait for it.
                if reclaimed or not claims:
                    raise
                await _collect(staging, bucket, claims)
                reclaimed = True
                continue
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def abort(staging: Staging, bucket: str, key: str, upload_id: str) -> None:
    """AbortMultipartUpload. An upload held by the claim of a Complete whose process died (one of
    several --workers, killed mid-Complete) is given back first, as its retried Complete would
    take it back, and aborted: the client need not wait for the GC's next round, and its space
    is freed now. A claim whose Complete published the object ends the upload, as S3's does."""
    try:
        await staging.abort(bucket, key, upload_id)
        return
    except errors.NoSuchUpload:
        claims = _complete_claims(staging, bucket, upload_id)
        if not claims or _live(claims):
            raise
    await _collect(staging, bucket, claims)
    await staging.abort(bucket, key, upload_id)


async def _complete(
    staging: Staging,
    bucket: str,
    kp: keys.KeyPath,
    upload_id: str,
    parts: list[PartInfo],
    precondition: Precondition | None,
    checksums: dict[str, str] | None,
    checksum_type: str | None,
    object_size: int | None,
) -> ObjectInfo:
    key = kp.key
    directory = staging.upload_dir(bucket, upload_id)
    published = False
    async with staging.claimed(bucket, upload_id, key, "complete") as claimed:
        try:
            if _settle(claimed, staging.disk.fsync):
                published = True  # before: the upload is over, and goes now
                raise errors.NoSuchUpload(UploadId=upload_id)
            upload = staging.load_upload(claimed, upload_id, key)
            record, sources = _plan(staging.disk, claimed, upload, parts)
            if checksum_type is not None and checksum_type != record.checksum_type:
                # S3's answer when Complete names another type than the upload was created with.
                raise errors.BadDigest(
                    f"The upload was created using the {str(record.checksum_type).lower()} checksum type, "
                    f"but the Complete request specified {checksum_type.lower()}."
                )
            _check_object_checksums(record.checksums, checksums or {})
            if object_size is not None and object_size != record.size:
                # S3's answer to a client whose idea of the object's size is not the parts' sum.
                raise errors.InvalidRequest(
                    f"The provided x-amz-mp-object-size {object_size} does not match the size of the "
                    f"object, {record.size} bytes."
                )
            # No copy when the parts are in place and fill whole blocks; a copy otherwise.
            with refusals():
                in_place = await assembly.publish_in_place(staging.disk, bucket, kp, claimed, sources, record, precondition)
            info = in_place or await _publish_copy(staging.disk, bucket, kp, claimed, sources, record, precondition)
            published = True
        finally:
            # The collapsing marker stays only after a collapse that could not be undone (the
            # parts are no longer in their slots), the publishing one only after a publish whose
            # rename happened before the failure (the object was whole at its key): either way
            # the upload cannot be given back.
            if published or gc.published(claimed) or os.path.exists(os.path.join(claimed, assembly.COLLAPSING)):
                # Out of the "complete" claim in one rename before the removal: a crash in the
                # middle of the removal left a claim the GC took for a Complete that never got
                # to publish, and gave back with its records and data half removed.
                gone = f"{directory}.removing-{secrets.token_hex(6)}"
                os.rename(claimed, gone)
                await asyncio.to_thread(shutil.rmtree, gone, True)
            else:
                # Nothing was published: the upload stays completable and abortable.
                os.rename(claimed, directory)
    log.info("completed multipart upload %s of %s/%s: %d parts, %d bytes", upload_id, bucket, key, len(parts), info.size)
    return info


def _completed(staging: Staging, bucket: str, kp: keys.KeyPath, path: str, upload_id: str, parts: list[PartInfo]) -> ObjectInfo | None:
    """The object this upload made, when it is still at the key and ``parts`` are the parts
    it was made of; None otherwise."""
    opened = keys.open_file(staging.disk._real_root, path)
    if opened is None:
        return None
    _, fd, st = opened
    try:
        record = staging.disk.meta.load(fd, bucket, kp.key, st)
    finally:
        os.close(fd)
    if record is None or record.upload_id != upload_id:
        return None
    try:
        etag = multipart_etag([p.etag for p in parts])
    except ValueError:
        return None  # not hex: no part of ours
    return record.to_info(kp.key) if record.etag == etag else None


def _given_back(staging: Staging, bucket: str, upload_id: str, key: str) -> bool:
    """Whether the upload of ``key`` is at its own name (unclaimed)."""
    try:
        staging.load_upload(staging.upload_dir(bucket, upload_id), upload_id, key)
    except errors.NoSuchUpload:
        return False
    return True


def _complete_claims(staging: Staging, bucket: str, upload_id: str) -> list[str]:
    """The folders of this upload claimed by a Complete (of any process sharing ROOT), live or
    left by one that died."""
    prefix = f"{upload_id}.complete-"
    try:
        with os.scandir(staging.bucket_dir(bucket)) as it:
            return [e.path for e in it if e.name.startswith(prefix)]
    except FileNotFoundError:
        return []


def _live(claims: list[str]) -> bool:
    """Whether a Complete holding one of ``claims`` is still at work (its record's flock held)."""
    return any_flocked([os.path.join(claim, "upload.json") for claim in claims])


async def _collect(staging: Staging, bucket: str, claims: list[str]) -> None:
    """Finish off the claims of Completes that died, as the GC's next round would."""
    for claim in claims:
        await asyncio.to_thread(staging.collector.collect_claim, bucket, claim)


def _settle(claimed: str, fsync: bool) -> bool:
    """Whether the upload just claimed was published already: a Complete's claim given back after
    its publish's rename by a process of an older version, which did not know the ``publishing``
    marker. Otherwise what a Complete that died before its rename left there (the marker, its
    file) goes, before it could be taken for a publish of this one."""
    if gc.published(claimed):
        return True
    gc.forget_publish(claimed, fsync)
    return False


async def _publish_copy(
    disk: DiskBackend,
    bucket: str,
    kp: keys.KeyPath,
    claimed: str,
    sources: list[assembly.Source],
    record: Record,
    precondition: Precondition | None,
) -> ObjectInfo:
    tmp = os.path.join(disk._tmp_dir, f"mpu-{secrets.token_hex(16)}")
    link = os.path.join(claimed, assembly.OBJECT)
    fd = create_locked(tmp)
    try:
        with refusals():
            await asyncio.to_thread(_assemble, fd, sources, record.size)
            # Published under a second name in the claim, which the marker names: a dead
            # Complete's publish is then told from one that never happened (gc.published).
            await assembly.to_the_end(asyncio.ensure_future(
                asyncio.to_thread(assembly.hand_over, claimed, tmp, record, disk.fsync)
            ))  # fmt: skip
        return await disk._publish(bucket, kp, link, record, precondition)
    except BaseException:
        # _publish consumes the link: renamed to the key, or removed when refused. Published
        # only if it is gone and the file has a name besides ``tmp`` (a failure after the
        # rename, in the fsync of the key's folder): otherwise the marker goes, and the upload
        # may be given back.
        if os.path.lexists(link) or os.fstat(fd).st_nlink < 2:
            gc.forget_publish(claimed, disk.fsync)
        raise
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # the object's other name (the key's) stands, or nothing was made


def _plan(disk: DiskBackend, directory: str, upload: UploadInfo, parts: list[PartInfo]) -> tuple[Record, list[assembly.Source]]:
    """Check the client's part list against the stored parts; the object's record and where
    the bytes to concatenate are."""
    docs: list[dict[str, Any]] = []
    meta = upload.meta
    # The object's checksum of a composite upload is made of the parts' checksums, so S3 wants
    # the client to name each one it relies on.
    composite = meta.checksum_algorithm if meta.checksum_type == "COMPOSITE" else None
    if meta.checksum_algorithm is not None and any(p.number != n for n, p in enumerate(parts, 1)):
        # With a checksum per part (named at creation), S3 wants parts 1..N, every one listed.
        raise errors.InvalidPartOrder(
            "Part numbers must start at 1 and be consecutive when the upload has additional checksums."
        )
    for wanted in parts:
        if composite is not None and composite not in wanted.checksums:
            raise errors.InvalidRequest(
                f"The upload was created using a {composite.lower()} checksum. The complete request must include "
                f"the checksum for each part. It was missing for part {wanted.number} in the request."
            )
        doc = read_json(os.path.join(directory, f"{wanted.number:05d}.json"))
        if doc is None or doc.get("e") != wanted.etag:
            raise errors.InvalidPart(PartNumber=wanted.number, ETag=wanted.etag, UploadId=upload.upload_id)
        stored = dict(doc.get("x", {}))
        for alg, claimed in wanted.checksums.items():
            if stored.get(alg) != claimed:
                # S3 names no checksum here: the same InvalidPart as for a wrong ETag.
                raise errors.InvalidPart(PartNumber=wanted.number, ETag=wanted.etag, UploadId=upload.upload_id)
        docs.append(doc)
    # Sizes only once every listed part is known to exist, as S3 orders its checks.
    for doc in docs[:-1]:
        if int(doc["s"]) < disk.min_part_size:
            raise errors.EntityTooSmall(
                ProposedSize=int(doc["s"]), MinSizeAllowed=disk.min_part_size, PartNumber=int(doc["n"])
            )
    n = len(docs)
    algorithm = meta.checksum_algorithm or DEFAULT_CHECKSUM
    kind = meta.checksum_type or "FULL_OBJECT"
    raw = [base64.b64decode(str(d["x"][algorithm])) for d in docs]
    if kind == "COMPOSITE":
        digest = ALGORITHM_DIGEST[algorithm]
        hasher = MultiHasher([digest])
        for value in raw:
            hasher.update(value)
        checksum = f"{b64(hasher.digests()[digest])}-{n}"
    else:
        combined = raw[0]
        for value, doc in zip(raw[1:], docs[1:], strict=True):
            combined = combine_crc(algorithm, combined, value, int(doc["s"]))
        checksum = b64(combined)
    size = sum(int(d["s"]) for d in docs)
    record = Record.for_write(dataclasses.replace(meta, checksum_type=kind), multipart_etag([str(d["e"]) for d in docs]), size, {algorithm: checksum})
    record.upload_id = upload.upload_id
    record.parts = [
        PartInfo(int(d["n"]), int(d["s"]), str(d["e"]), 0.0, {algorithm: str(d["x"][algorithm])} if kind == "COMPOSITE" else {})
        for d in docs
    ]
    sources = [assembly.source_of(directory, d) for d in docs]
    return record, sources


def _assemble(fd: int, sources: list[assembly.Source], total: int) -> None:
    offset = 0
    for source in sources:
        src = os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st_size = os.fstat(src).st_size
            # An empty part in its slot may lie past the end of the file: nothing was written.
            short = 0 < source.size and st_size < source.offset + source.size if source.in_slot else st_size != source.size
            if short:
                raise errors.InternalError("A part's data does not have its recorded size; please retry.")
            copy_range(src, source.offset, fd, offset, source.size)
        finally:
            os.close(src)
        offset += source.size
    if os.fstat(fd).st_size != total:
        raise errors.InternalError("The assembled object does not have the expected size; please retry.")


def multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of a multipart object: the MD5 of its parts' MD5s, then "-" and their count."""
    return f"{hashlib.md5(b''.join(bytes.fromhex(e) for e in part_etags)).hexdigest()}-{len(part_etags)}"


def _check_object_checksums(computed: dict[str, str], given: dict[str, str]) -> None:
    """The whole-object checksum a client sends with CompleteMultipartUpload must match what the
    parts add up to. A composite value may leave out its '-N' part count; when it has one, the
    count is part of what must match."""
    for algorithm, value in given.items():
        mine = computed.get(algorithm)
        if mine is None:
            raise errors.InvalidRequest(
                f"The upload was created using the {next(iter(computed), 'CRC64NVME').lower()} checksum algorithm, "
                f"but the Complete request specified {algorithm.lower()}."
            )
        if value not in (mine, mine.split("-")[0]):
            raise errors.BadDigest(f"The {algorithm.lower()} you specified did not match the calculated checksum.")
