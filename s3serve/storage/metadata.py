"""Hidden state under ``ROOT/.s3serve/``: object metadata records (the bucket registry:
registry.py; key locks: locks.py).

Metadata lives beside the data, never inside it: a record in the ``user.s3serve`` xattr of the
object's file (or folder-marker directory), packed (packed.py) or compact JSON, where the
filesystem has user xattrs, otherwise a JSON sidecar file under ``.s3serve/meta/<bucket>/``. A
record names the size, mtime_ns and inode it was computed for; when the file no longer matches,
another program changed it and the record is ignored.

Nothing here touches the event loop: this is plain blocking I/O that callers run inline (cheap
calls) or in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mimetypes
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..checksums import MultiHasher
from . import packed
from .base import (
    SSE_S3,
    STORED_HEADERS,
    WEBSITE_REDIRECT,
    Encryption,
    ObjectInfo,
    PartInfo,
    WriteMeta,
)
from .keys import fsync_dir

XATTR = "user.s3serve"
PACKED = bytes((packed.FORMAT,))  # first byte of a packed record (a JSON one starts with "{")
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
DEFAULT_CONTENT_TYPE = "binary/octet-stream"

# errnos of setxattr that mean "the value is too large for this inode": ext4 keeps all xattrs of
# an inode in one block, so a record with many tags or parts goes to an overflow blob.
_TOO_BIG = {errno.E2BIG, errno.ENOSPC, errno.ERANGE}
# errnos that mean "no xattrs here": a read-only foreign file, a filesystem without user xattrs.
_NO_XATTR = {errno.EACCES, errno.EPERM, errno.ENOTSUP, errno.EROFS}

# Parsed records (and registry entries, registry.py) are cached by the inode's (dev, ino, ctime): any change to
# an inode's data or xattrs moves its ctime, and a rename-replaced file is a new inode, so a cache
# entry stays correct even when other processes share ROOT. ctime comes from the kernel's coarse
# clock (one tick, a few ms), so two changes within a tick may share a ctime: only inodes whose
# ctime is older than this are cached.
CACHE_MIN_AGE_NS = 50_000_000
# Filesystems that keep timestamps to the second (ext3, ext4 with 128-byte inodes, HFS+; FAT to two)
# give every change within that second one ctime, and a file renamed over another often gets the
# inode number freed by the one before: the stamp of the object written two writes ago, whose
# cached record (ETag, metadata) was then served with the new bytes. A ctime on a 10 ms boundary is
# taken for one of such a grain (on a filesystem of nanoseconds, 1 in 10**7 is: it is cached later).
COARSE_GRAIN_NS = 10_000_000
COARSE_MIN_AGE_NS = 2_000_000_000 + CACHE_MIN_AGE_NS
# Two caches. A parsed Record costs ~1.3 KiB (its dict, three small dicts, the strings). A record's
# xattr bytes cost what they hold (a packed record ~50, a JSON one with user metadata or tags
# 200-500) and _RAW_ENTRY more (the key, its ints, the dict's slot). Rebuilding a Record from
# packed bytes costs ~1.8 us, from JSON ~4.7, a copy of a parsed one 0.35, a miss 10-25 (getxattr,
# the xattr's own block for a JSON record, parse). So _RAW_BUDGET holds the bytes of ~16,000
# packed records (a benchmark's ~10,000 keys) or ~8,000 JSON ones (objects written by s3fs or
# rclone, which set user metadata on every object), and backs 1024 parsed ones (JSON records: a
# listing page, read again and again).
_RAW_BUDGET = 4 << 20
_RAW_ENTRY = 200
_RAW_LONGEST = 1024  # records with more metadata or tags than this are kept parsed only
_PARSED_MAX = 1024
# Parsed records are charged ~1 KiB plus 4 bytes per byte of their JSON (measured: 3.7 for
# metadata or a parts list), within this budget: a record listing thousands of parts parses to
# megabytes, and 1024 of them would hold gigabytes. One over a sixteenth of it is not kept; for
# listings, which show no parts, such a record is kept without them (_summaries, by count).
_PARSED_BUDGET = 4 << 20
_PARSED_ENTRY = 1024
_SUMMARIES_MAX = 2048

# The built-in table only: the same guess on every host, whatever /etc/mime.types says.
_MIME = mimetypes.MimeTypes()
_COMPRESSED_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def settled(st: os.stat_result) -> bool:
    """Whether no later change to the inode can have the ctime ``st`` shows: what was read of the
    file is then known by its stamp, and may be cached by it."""
    ctime = st.st_ctime_ns
    return time.time_ns() - ctime > (COARSE_MIN_AGE_NS if ctime % COARSE_GRAIN_NS == 0 else CACHE_MIN_AGE_NS)


def guess_content_type(key: str) -> str:
    """Content type of a foreign file, which nobody told us."""
    kind, encoding = _MIME.guess_type(key, strict=False)
    if encoding is not None:
        # "x.tar.gz" is a gzip file; calling it application/x-tar would make clients misread it.
        return _COMPRESSED_TYPES.get(encoding, DEFAULT_CONTENT_TYPE)
    return kind or DEFAULT_CONTENT_TYPE


def _stored_headers(meta: WriteMeta) -> dict[str, str]:
    headers = {k.lower(): v for k, v in meta.headers.items() if k.lower() in STORED_HEADERS}
    # What S3 answers for an object written without a Content-Type.
    headers.setdefault("content-type", DEFAULT_CONTENT_TYPE)
    return headers


@dataclass
class Record:
    etag: str
    size: int
    mtime_ns: int = 0
    inode: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    checksum_type: str | None = None
    storage_class: str = "STANDARD"
    parts: list[PartInfo] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    folder: bool = False
    # When the key was written, where that is not the file's mtime: a copy made as a hard link
    # shares the source's inode, and with it its mtime (None: the file's mtime is the time).
    modified_ns: int | None = None
    # The multipart upload that wrote this object: a retried CompleteMultipartUpload of that
    # upload (its answer lost, say) gets the same success again, as S3 gives it.
    upload_id: str | None = None
    encryption: Encryption = SSE_S3  # SSE_S3 is left out of the record: no bytes for the default
    # Overflow blob this record was stored in (not serialized): lets a delete remove it.
    blob: str | None = None

    @classmethod
    def for_write(cls, meta: WriteMeta, etag: str, size: int, checksums: dict[str, str]) -> Record:
        return cls(
            etag=etag,
            size=size,
            headers=_stored_headers(meta),
            user_meta=dict(meta.user_meta),
            checksums=dict(checksums),
            checksum_type=meta.checksum_type or ("FULL_OBJECT" if checksums else None),
            storage_class=meta.storage_class,
            tags=dict(meta.tags or {}),
            encryption=meta.encryption or SSE_S3,
        )

    def copied(self, meta: WriteMeta | None) -> Record:
        """The record of a copy: this one's metadata (directive COPY, ``meta`` None) or ``meta``'s
        (REPLACE); tags follow ``meta.tags`` when given. Etag, checksums and parts stay."""
        record = Record.from_json(self.to_json())
        assert record is not None
        record.modified_ns = None  # the copy is written now, whatever the source's time
        record.upload_id = None
        record.encryption = (meta and meta.encryption) or SSE_S3  # the request's or bucket's, never the source's
        if meta is None:
            record.headers.pop(WEBSITE_REDIRECT, None)  # S3 never copies it
        else:
            record.headers = _stored_headers(meta)
            record.user_meta = dict(meta.user_meta)
            record.storage_class = meta.storage_class
            if meta.tags is not None:
                record.tags = dict(meta.tags)
        return record

    def clone(self) -> Record:
        """A shallow copy (fields shared): what the record cache hands out. copy.copy goes
        through __reduce_ex__ and cost 4x as much on every listed key."""
        twin = object.__new__(Record)
        twin.__dict__.update(self.__dict__)
        return twin

    def stamp(self, st: os.stat_result) -> None:
        """Bind the record to the file it describes."""
        self.inode = st.st_ino
        if not self.folder:
            self.size = st.st_size
            self.mtime_ns = st.st_mtime_ns

    def matches(self, st: os.stat_result) -> bool:
        if self.folder:
            # A directory's mtime moves whenever an entry is added below it; its inode does not.
            return stat.S_ISDIR(st.st_mode) and st.st_ino == self.inode
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_ino == self.inode
            and st.st_size == self.size
            and st.st_mtime_ns == self.mtime_ns
        )

    def to_info(self, key: str, st: os.stat_result | None = None) -> ObjectInfo:
        if self.modified_ns is not None:
            modified = self.modified_ns / 1e9
        elif self.folder or st is None:
            modified = self.mtime_ns / 1e9
        else:
            modified = st.st_mtime
        parts = self.parts
        # Positional, in ObjectInfo's field order: a listing page makes a thousand of these, and
        # binding 13 keywords took half of each (1.43 vs 0.77 us). test_record_info pins the order.
        return ObjectInfo(
            key,
            self.size,
            self.etag,
            modified,
            dict(self.headers),
            dict(self.user_meta),
            dict(self.checksums),
            self.checksum_type,
            self.storage_class,
            None
            if parts is None
            else [PartInfo(p.number, p.size, p.etag, p.last_modified, dict(p.checksums)) for p in parts],
            len(self.tags),
            self.folder,
            self.encryption,
        )

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "etag": self.etag,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "inode": self.inode,
        }
        # Empty fields are left out: the record should fit in the inode's xattr space.
        for name in ("headers", "user_meta", "checksums", "tags"):
            if value := getattr(self, name):
                doc[name] = value
        if self.checksum_type:
            doc["checksum_type"] = self.checksum_type
        if self.storage_class != "STANDARD":
            doc["storage_class"] = self.storage_class
        if self.parts is not None:
            doc["parts"] = [
                {"n": p.number, "s": p.size, "e": p.etag, **({"c": p.checksums} if p.checksums else {})}
                for p in self.parts
            ]
        if self.folder:
            doc["folder"] = True
        if self.modified_ns is not None:
            doc["modified_ns"] = self.modified_ns
        if self.upload_id is not None:
            doc["upload_id"] = self.upload_id
        if self.encryption is not SSE_S3:
            doc["sse"] = self.encryption.to_doc()
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Record | None:
        """None for anything that is not a record we wrote (garbage, another program's xattr)."""
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        return cls.from_doc(doc)

    @classmethod
    def from_doc(cls, doc: Any) -> Record | None:
        """``from_json`` of an already parsed document."""
        try:
            parts = doc.get("parts")
            return cls(
                etag=str(doc["etag"]),
                size=int(doc["size"]),
                mtime_ns=int(doc["mtime_ns"]),
                inode=int(doc["inode"]),
                headers={str(k): str(v) for k, v in doc.get("headers", {}).items()},
                user_meta={str(k): str(v) for k, v in doc.get("user_meta", {}).items()},
                checksums={str(k): str(v) for k, v in doc.get("checksums", {}).items()},
                checksum_type=doc.get("checksum_type"),
                storage_class=str(doc.get("storage_class", "STANDARD")),
                parts=[
                    PartInfo(int(p["n"]), int(p["s"]), str(p["e"]), 0.0, dict(p.get("c", {}))) for p in parts
                ]
                if parts is not None
                else None,
                tags={str(k): str(v) for k, v in doc.get("tags", {}).items()},
                folder=bool(doc.get("folder", False)),
                modified_ns=int(doc["modified_ns"]) if doc.get("modified_ns") is not None else None,
                upload_id=str(doc["upload_id"]) if doc.get("upload_id") is not None else None,
                encryption=Encryption.from_doc(doc.get("sse")),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def hash_file(target: int | str, names: list[str]) -> tuple[dict[str, bytes], int]:
    """Digests and size of a file (open fd or path), read in large pieces (worker thread)."""
    fd = target if isinstance(target, int) else os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        hasher = MultiHasher(names)
        size = 0
        while piece := os.pread(fd, 1024 * 1024, size):
            hasher.update(piece)
            size += len(piece)
        return hasher.digests(), size
    finally:
        if fd is not target:
            os.close(fd)


def write_atomic(tmp_dir: str, path: str, data: bytes, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new content, never half.

    ``durable``: the content and the name are on disk when this returns (the file, its folder,
    and the entries of any folders created for it, up to ``tmp_dir``'s parent)."""
    tmp = os.path.join(tmp_dir, f"meta-{uuid.uuid4().hex}")
    synced = [os.path.dirname(path)]
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            if durable:
                os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except FileNotFoundError:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            os.replace(tmp, path)
            top = os.path.dirname(tmp_dir)
            while folder.startswith(top + os.sep):
                folder = os.path.dirname(folder)
                synced.append(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        for folder in synced:
            fsync_dir(folder)


class MetaStore:
    """Reads and writes records: xattr first, sidecar as the fallback."""

    def __init__(self, hidden: str, use_xattrs: bool, durable: bool = False) -> None:
        self.hidden = hidden
        self.use_xattrs = use_xattrs
        self.durable = durable  # sidecars and blobs fsynced (the backend's fsync setting)
        self.tmp_dir = os.path.join(hidden, "tmp")
        self.meta_dir = os.path.join(hidden, "meta")
        # Bucket names never start with '.', so this never collides with a bucket's sidecars.
        self.blob_dir = os.path.join(self.meta_dir, ".blobs")
        # Both by (dev, ino, ctime); the Records are never handed out, only copies of them.
        self._records: dict[tuple[int, int, int], Record] = {}
        self._raw: dict[tuple[int, int, int], bytes] = {}
        self._raw_cost = 0
        self._parsed_cost = 0
        # Records too big to keep, without their parts, for listings (peek) only.
        self._summaries: dict[tuple[int, int, int], Record] = {}

    @staticmethod
    def probe(directory: str) -> bool:
        """Whether files in ``directory`` take user xattrs (decided once, at start)."""
        path = os.path.join(directory, f"probe-{uuid.uuid4().hex}")
        try:
            with open(path, "xb") as f:
                os.setxattr(f.fileno(), XATTR, b"{}")
                return os.getxattr(f.fileno(), XATTR) == b"{}"
        except OSError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def sidecar_path(self, bucket: str, key: str) -> str:
        # Named by a hash of the key: "a/" (a directory) and "a/b" (a file in it) would collide in a
        # mirrored tree, and a mirrored name plus a suffix could exceed NAME_MAX.
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return os.path.join(self.meta_dir, bucket, digest[:2], digest + ".json")

    def _blob_path(self, name: str) -> str:
        return os.path.join(self.blob_dir, name[:2], name + ".json")

    def parse(self, data: bytes) -> Record | None:
        """The record in an xattr value or sidecar file (packed or JSON, or a pointer to a blob)."""
        return self._parse_sized(data)[0]

    def _parse_sized(self, data: bytes) -> tuple[Record | None, int]:
        """``parse``, and the length of the JSON it parsed (the blob's, for a pointer to one)."""
        if data[:1] == PACKED:
            # unpack checks every field's type itself: no second pass through from_doc.
            doc = packed.unpack(data, DEFAULT_CONTENT_TYPE)
            return (Record(**doc) if doc is not None else None), len(data)
        try:
            doc = json.loads(data)
        except ValueError:
            return None, 0
        if isinstance(doc, dict) and set(doc) == {"blob"} and isinstance(doc["blob"], str):
            name = doc["blob"]
            if not all(c in "0123456789abcdef" for c in name) or len(name) != 64:
                return None, 0
            try:
                with open(self._blob_path(name), "rb") as f:
                    blob = f.read()
            except OSError:
                return None, 0
            record = Record.from_json(blob)
            if record is not None:
                record.blob = name
            return record, len(blob)
        return Record.from_doc(doc), len(data)

    def load(self, target: int | str, bucket: str, key: str, st: os.stat_result) -> Record | None:
        """The record of the file (path or fd) ``target`` whose stat is ``st``, if it still
        describes that file."""
        if self.use_xattrs:
            cache_key = (st.st_dev, st.st_ino, st.st_ctime_ns)
            record = self._records.get(cache_key)
            if record is not None and record.matches(st):
                # Callers reassign fields (tags, blob), never mutate them in place: a shallow copy will do.
                return record.clone()
            data = self._raw.get(cache_key)
            if data is not None and (record := self.parse(data)) is not None and record.matches(st):
                return record
            try:
                data = os.getxattr(target, XATTR)
            except OSError:
                data = b""
            record, size = self._parse_sized(data) if data else (None, 0)
            if record is not None and record.matches(st):
                if settled(st):
                    if record.blob is None:  # a blob's pointer would cost a file read per parse
                        self._keep_raw(cache_key, data)
                    if data[:1] != PACKED and not self._remember(cache_key, record.clone(), size):
                        self._summarize(cache_key, record)
                return record
        try:
            with open(self.sidecar_path(bucket, key), "rb") as f:
                data = f.read()
        except OSError:
            return None
        return next((r for r in self._sidecar_records(data) if r.matches(st)), None)

    def _sidecar_records(self, data: bytes) -> list[Record]:
        """A sidecar's record; or two (``write_sidecar``'s ``keep``), while a rename is under way."""
        if data[:1] != b"[":
            record = self.parse(data)
            return [record] if record is not None else []
        try:
            docs = json.loads(data)
        except ValueError:
            return []
        records = [Record.from_doc(doc) for doc in docs] if isinstance(docs, list) else []
        return [record for record in records if record is not None]

    def _keep_raw(self, cache_key: tuple[int, int, int], data: bytes) -> None:
        if len(data) > _RAW_LONGEST or cache_key in self._raw:
            return
        cost = len(data) + _RAW_ENTRY
        if self._raw_cost + cost > _RAW_BUDGET:
            self._raw.clear()
            self._raw_cost = 0
        self._raw[cache_key] = data
        self._raw_cost += cost

    def _remember(self, cache_key: tuple[int, int, int], record: Record, size: int) -> bool:
        """Keep ``record``, parsed from ``size`` bytes of JSON; whether it was."""
        cost = _PARSED_ENTRY + 4 * size
        if cost > _PARSED_BUDGET // 16:
            return False  # one would crowd out too many others
        if len(self._records) >= _PARSED_MAX or self._parsed_cost + cost > _PARSED_BUDGET:
            self._records.clear()
            self._parsed_cost = 0
        self._records[cache_key] = record
        self._parsed_cost += cost
        return True

    def _summarize(self, cache_key: tuple[int, int, int], record: Record) -> None:
        """Keep what a listing shows of a record too big to keep whole: all of it but its parts
        (a listing page of objects uploaded in thousands of parts read each one's blob)."""
        if record.parts is None or len(record.user_meta) + len(record.tags) > 64:
            return
        if len(self._summaries) >= _SUMMARIES_MAX:
            self._summaries.clear()
        summary = record.clone()
        summary.parts = None
        self._summaries[cache_key] = summary

    def peek(self, st: os.stat_result) -> Record | None:
        """The cached record of a file whose stat is ``st``, not copied (read-only use: listings),
        or None when ``load`` has to look. A listing reads the same page again and again: cached
        bytes met here are kept parsed from then on."""
        if not self.use_xattrs:
            return None
        cache_key = (st.st_dev, st.st_ino, st.st_ctime_ns)
        record = self._records.get(cache_key) or self._summaries.get(cache_key)
        if record is None:
            data = self._raw.get(cache_key)
            if data is None or (record := self.parse(data)) is None:
                return None
            self._remember(cache_key, record, len(data))
        return record if record.matches(st) else None

    def attach(self, fd: int | str, record: Record) -> bool:
        """Put the record in the xattr of an open file; False when only a sidecar can hold it."""
        if not self.use_xattrs:
            return False
        data = packed.pack(record, DEFAULT_CONTENT_TYPE) or record.to_json()
        try:
            os.setxattr(fd, XATTR, data)
            return True
        except OSError as e:
            if e.errno in _NO_XATTR:
                return False
            if e.errno not in _TOO_BIG:
                raise
        data = record.to_json()
        # Content-addressed, so it is immutable: no reader can see it half-written or replaced.
        name = hashlib.sha256(data).hexdigest()
        path = self._blob_path(name)
        if not os.path.exists(path):
            write_atomic(self.tmp_dir, path, data, self.durable)
        try:
            os.setxattr(fd, XATTR, json.dumps({"blob": name}).encode())
        except OSError as e:
            if e.errno in _NO_XATTR:
                return False
            raise
        record.blob = name
        return True

    def store(self, target: int | str, bucket: str, key: str, record: Record) -> None:
        """Record the metadata of an existing object (open fd, or path of a folder marker):
        xattr, else sidecar."""
        old_blob = record.blob
        if not self.attach(target, record):
            write_atomic(self.tmp_dir, self.sidecar_path(bucket, key), record.to_json(), self.durable)
        if old_blob and old_blob != record.blob:
            self.drop_blob(old_blob)

    def write_sidecar(self, bucket: str, key: str, record: Record, keep: Record | None = None) -> None:
        """``keep``: the record the key has now, kept beside the new one (see ``renaming``)."""
        data = record.to_json() if keep is None else b"[" + record.to_json() + b"," + keep.to_json() + b"]"
        write_atomic(self.tmp_dir, self.sidecar_path(bucket, key), data, self.durable)

    @contextlib.contextmanager
    def renaming(self, bucket: str, key: str, record: Record, old: Record | None) -> Iterator[None]:
        """Around the rename that puts at ``key`` a file whose record is to be the key's sidecar
        (sidecar mode, a linked copy): the record is written first, beside ``old`` (the record of
        the file the key names now, when that is a sidecar too), so a crash on either side of the
        rename leaves the file the key then names with its own record: ``load`` takes the one that
        matches the file's stat, which a rename keeps. Written after the rename, a crash in
        between left the new object without one (content type, metadata, checksums, tags).

        Not rewritten without ``old`` afterwards: that cost two more fsyncs per write (and one
        not fsynced could leave an empty sidecar after a power cut), while the old record no
        longer matches the file at the key (or, where the rename was onto another name of the
        same inode, comes second), and the key's next write or delete replaces the sidecar. A
        failed rename puts the sidecar back as it was."""
        self.write_sidecar(bucket, key, record, old)
        try:
            yield
        except BaseException:
            with contextlib.suppress(OSError):
                if old is None:
                    os.unlink(self.sidecar_path(bucket, key))
                else:
                    self.write_sidecar(bucket, key, old)
            raise

    def forget(self, bucket: str, key: str, record: Record | None) -> None:
        """Remove what a deleted object left in the hidden folder (sidecar, overflow blob)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sidecar_path(bucket, key))
        if record is not None and record.blob:
            self.drop_blob(record.blob)

    def move_sidecar(self, bucket: str, src_key: str, dst_key: str) -> None:
        src, dst = self.sidecar_path(bucket, src_key), self.sidecar_path(bucket, dst_key)
        if not os.path.exists(src):
            return
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(src, dst)

    def drop_blob(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._blob_path(name))

    def drop_bucket(self, bucket: str) -> None:
        shutil.rmtree(os.path.join(self.meta_dir, bucket), ignore_errors=True)

    def is_folder_marker(self, real_root: str, dir_path: str) -> bool:
        """For listing: whether a directory was made as an explicit "key/" object."""
        try:
            st = os.stat(dir_path)
        except OSError:
            return False
        rel = os.path.relpath(dir_path, real_root)
        bucket, _, key = rel.partition(os.sep)
        if not key or rel.startswith(".."):
            return False
        return self.load(dir_path, bucket, key.replace(os.sep, "/") + "/", st) is not None
