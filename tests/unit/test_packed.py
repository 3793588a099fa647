"""storage/packed.py: common records in the inode's own xattr space, everything else in JSON."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from s3serve.storage import metadata, packed
from s3serve.storage.base import PartInfo, WriteMeta
from s3serve.storage.disk import DiskBackend
from s3serve.storage.metadata import DEFAULT_CONTENT_TYPE, MetaStore, Record

from .test_disk import Body

MD5 = "20439f79e4e9dc95be34b21029221f80"
# ext4 with 256-byte inodes (mkfs' default) keeps a user.s3serve value up to this size in the inode.
EXT4_IN_INODE = 64


def record(**fields: object) -> Record:
    base: dict[str, object] = {
        "etag": MD5,
        "size": 4096,
        "mtime_ns": 1_795_335_790_852_127_600,
        "inode": 1_630_404,
        "headers": {"content-type": DEFAULT_CONTENT_TYPE},
    }
    base.update(fields)
    return Record(**base)  # type: ignore[arg-type]


def digest(n: int) -> str:
    return base64.b64encode(bytes(range(n))).decode()


def round_trip(rec: Record) -> Record | None:
    data = packed.pack(rec, DEFAULT_CONTENT_TYPE)
    assert data is not None and data[0] == packed.FORMAT
    doc = packed.unpack(data, DEFAULT_CONTENT_TYPE)
    assert doc is not None
    return Record.from_doc(doc)


@pytest.mark.parametrize(
    "rec",
    [
        record(),
        record(checksums={"CRC32": digest(4)}, checksum_type="FULL_OBJECT"),
        record(checksums={"CRC32C": digest(4)}, checksum_type="FULL_OBJECT"),
        record(checksums={"CRC64NVME": digest(8)}, checksum_type="FULL_OBJECT"),
        record(checksums={"SHA1": digest(20)}, checksum_type="FULL_OBJECT"),
        record(checksums={"SHA256": digest(32)}, checksum_type="COMPOSITE"),
        record(headers={"content-type": "application/json; charset=utf-8"}),
        record(size=0, etag="d41d8cd98f00b204e9800998ecf8427e"),
        record(size=5 * 1024**4, inode=2**40, mtime_ns=-1_000_000_123),  # huge, pre-1970
        record(folder=True, headers={}, size=0),
        record(folder=True, headers={"content-type": DEFAULT_CONTENT_TYPE}, size=0),
        # An upstream cache's replica (the upstream's time), a linked copy (its own time).
        record(modified_ns=1_795_335_790_000_000_000, checksums={"CRC32": digest(4)}, checksum_type="FULL_OBJECT"),
        record(modified_ns=-(2**63), folder=True, headers={}, size=0),
    ],
)
def test_round_trip(rec: Record) -> None:
    assert round_trip(rec) == rec


@pytest.mark.parametrize(
    "rec",
    [
        record(checksums={"CRC32": digest(4)}, checksum_type="FULL_OBJECT"),
        record(checksums={"CRC64NVME": digest(8)}, checksum_type="FULL_OBJECT"),
        record(checksums={"CRC32": digest(4)}, checksum_type="FULL_OBJECT", headers={"content-type": "application/json"}),
        # An upstream cache's copy of a boto3 upload: what the upstream answered, and its time.
        record(checksums={"CRC32": digest(4)}, checksum_type="FULL_OBJECT", modified_ns=1_795_335_790_000_000_000),
        record(checksums={"CRC64NVME": digest(8)}, checksum_type="FULL_OBJECT", modified_ns=1_795_335_790_000_000_000),
    ],
)
def test_plain_put_records_fit_in_the_inode(rec: Record) -> None:
    data = packed.pack(rec, DEFAULT_CONTENT_TYPE)
    assert data is not None and len(data) <= EXT4_IN_INODE
    assert len(rec.to_json()) > EXT4_IN_INODE  # what the JSON form cost: an extra block per file


@pytest.mark.parametrize(
    "rec",
    [
        record(user_meta={"a": "b"}),
        record(tags={"t": "v"}),
        record(storage_class="STANDARD_IA"),
        record(headers={"content-type": "text/plain", "cache-control": "no-cache"}),
        record(headers={}),  # an object without a content type is not one we write
        record(headers={"content-type": "x" * 256}),
        record(etag=MD5 + "-3", parts=[PartInfo(1, 5, MD5, 0.0, {})]),
        record(etag=MD5.upper()),
        record(checksums={"CRC32": digest(4), "SHA1": digest(20)}, checksum_type="FULL_OBJECT"),
        record(checksums={"CRC32": digest(5)}, checksum_type="FULL_OBJECT"),  # wrong width
        record(checksums={"CRC32": "AAAA AA=="}, checksum_type="FULL_OBJECT"),  # not canonical base64
        record(checksums={"MD5": digest(16)}, checksum_type="FULL_OBJECT"),
        record(mtime_ns=2**63),  # past what 8 signed bytes hold
        record(modified_ns=2**63),
    ],
)
def test_everything_else_stays_json(rec: Record) -> None:
    assert packed.pack(rec, DEFAULT_CONTENT_TYPE) is None


def test_malformed_packed_data_is_no_record(tmp_path: Path) -> None:
    data = packed.pack(record(checksums={"CRC32": digest(4)}, checksum_type="FULL_OBJECT"), DEFAULT_CONTENT_TYPE)
    assert data is not None
    store = MetaStore(str(tmp_path), use_xattrs=True)
    assert store.parse(data) == record(checksums={"CRC32": digest(4)}, checksum_type="FULL_OBJECT")
    for bad in (data[:-1], data + b"\0", data[:10], bytes((packed.FORMAT,)), data[:18] + b"\xff" * 30):
        assert store.parse(bad) is None
    # An unknown algorithm number (the byte before the 4-byte CRC32) or checksum type (flags bits 2-3).
    at = len(data) - 5
    assert store.parse(data[:at] + bytes((9,)) + data[at + 1 :]) is None
    assert store.parse(data[:1] + bytes((data[1] | 0x0C,)) + data[2:]) is None
    # A flag this version does not know: whatever it adds, the rest cannot be read safely.
    assert store.parse(data[:1] + bytes((data[1] | 0x20,)) + data[2:]) is None


def test_json_records_written_earlier_still_read(tmp_path: Path) -> None:
    store = MetaStore(str(tmp_path), use_xattrs=True)
    rec = record(checksums={"CRC32": digest(4)}, checksum_type="FULL_OBJECT")
    assert store.parse(rec.to_json()) == rec


async def test_backend_packs_plain_puts_and_keeps_json_for_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    be = DiskBackend(root, "owner", fsync=False, use_xattrs=True)
    await be.start()
    try:
        await be.create_bucket("bkt", "owner", "us-east-1")
        await be.put_object("bkt", "plain", Body(b"x" * 4096), WriteMeta(headers={"Content-Type": "text/plain"}))
        await be.put_object("bkt", "meta", Body(b"y"), WriteMeta(user_meta={"a": "b"}))
        plain = os.getxattr(root / "bkt" / "plain", metadata.XATTR)
        assert plain[0] == packed.FORMAT and len(plain) <= EXT4_IN_INODE
        assert os.getxattr(root / "bkt" / "meta", metadata.XATTR).startswith(b"{")
        info = await be.head_object("bkt", "plain")
        assert (info.size, info.content_type, info.user_meta) == (4096, "text/plain", {})
        assert (await be.head_object("bkt", "meta")).user_meta == {"a": "b"}
    finally:
        await be.stop()
