"""What the metadata store keeps of the records it reads: bounded in bytes, not only in count.
A multipart object's record lists its parts; parsed, thousands of parts come to megabytes, and
HEADs of a few hundred such objects held gigabytes in the 1024-entry parsed cache."""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from pathlib import Path

from s3serve.storage.base import PartInfo
from s3serve.storage.metadata import CACHE_MIN_AGE_NS, MetaStore, Record

MiB = 1 << 20


def _multipart_record(parts: int, user_meta: int = 0) -> Record:
    return Record(
        etag=f"{'0' * 32}-{parts}",
        size=parts,
        headers={"content-type": "application/octet-stream"},
        user_meta={f"key-{i}": "v" * 40 for i in range(user_meta)},
        parts=[
            PartInfo(number=n, size=1, etag=f"{n:032x}", last_modified=1.7e9, checksums={"SHA256": "x" * 44})
            for n in range(1, parts + 1)
        ],
    )


def _store(tmp_path: Path) -> tuple[MetaStore, Path]:
    """A store with xattrs, and a bucket's folder for its files."""
    store = MetaStore(str(tmp_path / "hidden"), use_xattrs=True)
    os.makedirs(store.tmp_dir)
    folder = tmp_path / "bkt"
    folder.mkdir()
    return store, folder


def _files(folder: Path, count: int, record: Record, store: MetaStore) -> list[tuple[str, os.stat_result]]:
    made = []
    for i in range(count):
        path = str(folder / f"obj-{i}")
        with open(path, "wb") as f:
            f.write(b"x" * record.size)
        fd = os.open(path, os.O_RDONLY)
        try:
            record.stamp(os.fstat(fd))
            assert store.attach(fd, record)
        finally:
            os.close(fd)
        made.append(path)
    # Only records of inodes whose ctime has settled are kept (metadata.CACHE_MIN_AGE_NS).
    time.sleep(CACHE_MIN_AGE_NS / 1e9 + 0.02)
    return [(path, os.stat(path)) for path in made]


def _held_after_loading(store: MetaStore, files: list[tuple[str, os.stat_result]]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for path, st in files:
            loaded = store.load(path, "bkt", os.path.basename(path), st)
            assert loaded is not None and len(loaded.parts or ()) > 0
            del loaded
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_records_with_thousands_of_parts_are_kept_within_the_budget(tmp_path: Path) -> None:
    store, folder = _store(tmp_path)
    # 2,000 parts: ~0.7 MiB parsed, far more than an xattr holds (an overflow blob).
    files = _files(folder, 60, _multipart_record(2000), store)
    held = _held_after_loading(store, files)
    assert held < 4 * MiB, f"{held / MiB:.1f} MiB held after reading 60 records"


def test_records_in_the_xattr_are_kept_within_a_budget(tmp_path: Path) -> None:
    store, folder = _store(tmp_path)
    # Records that fit an ext4 xattr (a block) but parse to ~12 KiB each: 1024 of them, the
    # count the cache allows, came to ~12 MiB.
    files = _files(folder, 1024, _multipart_record(12), store)
    held = _held_after_loading(store, files)
    assert held < 5 * MiB, f"{held / MiB:.1f} MiB held after reading 1024 records"
    # What is kept is used: the record of a file read again comes back the same.
    path, st = files[-1]
    assert store.load(path, "bkt", os.path.basename(path), st) == store.load(path, "bkt", os.path.basename(path), st)


def test_a_listing_reads_a_big_record_once_and_a_read_gets_its_parts(tmp_path: Path) -> None:
    # Listings show no parts: what they read of a record too big to keep whole is kept without
    # them, and a listing page of such objects read every one's blob again.
    store, folder = _store(tmp_path)
    files = _files(folder, 20, _multipart_record(2000), store)
    real_blob_path = store._blob_path
    blob_reads: list[str] = []

    def counted(name: str) -> str:
        blob_reads.append(name)
        return real_blob_path(name)

    store._blob_path = counted  # type: ignore[method-assign]
    for path, st in files:  # the first listing: nothing cached yet
        assert store.peek(st) is None
        assert store.load(path, "bkt", os.path.basename(path), st) is not None
    assert len(blob_reads) == 20
    for _, st in files:  # the next page of the same keys
        listed = store.peek(st)
        assert listed is not None and listed.etag == f"{'0' * 32}-2000" and listed.size == 2000
    assert len(blob_reads) == 20
    # A read that needs the parts (partNumber, GetObjectAttributes) still gets them all.
    path, st = files[0]
    read = store.load(path, "bkt", os.path.basename(path), st)
    assert read is not None and read.parts is not None and len(read.parts) == 2000
