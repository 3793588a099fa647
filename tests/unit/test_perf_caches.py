"""The small-object fast paths stay correct: the symlink-free resolve shortcut, the parsed-record
cache and the bucket-registry cache, including when another process (a second backend on the same
ROOT) changes what was cached."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from s3serve import errors
from s3serve.storage import keys, metadata, nosymlinks
from s3serve.storage.base import WriteMeta
from s3serve.storage.disk import DiskBackend

OWNER = "owner-1"
OTHER = "owner-2"
# Longer than the age below which records are not cached (metadata.CACHE_MIN_AGE_NS).
SETTLE = 0.08


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.digests_wanted: frozenset[str] = frozenset()
        self.declared_checksum: str | None = None
        self.decoded_length: int | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        return {}


def meta(content_type: str = "text/plain", **user: str) -> WriteMeta:
    return WriteMeta(headers={"content-type": content_type}, user_meta=dict(user))


async def backend(root: Path) -> DiskBackend:
    be = DiskBackend(root, OWNER, fsync=False, use_xattrs=True)
    await be.start()
    return be


def count_getxattr(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The targets of every getxattr from now on."""
    reads: list[object] = []
    real_getxattr = os.getxattr

    def counting_getxattr(target: Any, name: str, *args: Any, **kwargs: Any) -> bytes:
        reads.append(target)
        return real_getxattr(target, name, *args, **kwargs)

    monkeypatch.setattr(os, "getxattr", counting_getxattr)
    return reads


async def read_all(be: DiskBackend, key: str) -> bytes:
    with await be.open_object("bkt", key) as reader:
        return b"".join([piece async for piece in reader.iter_range(0, reader.info.size)])


# -- resolve ------------------------------------------------------------------------------------
def test_openat2_is_used_where_the_kernel_has_it(tmp_path: Path) -> None:
    # Linux 5.6+ (this project's test machines): the check costs no readlink.
    (tmp_path / "f").write_bytes(b"x")
    fd = nosymlinks.open_path(str(tmp_path / "f"))
    assert fd is not None
    try:
        assert os.fstat(fd).st_ino == os.stat(tmp_path / "f").st_ino
    finally:
        os.close(fd)
    os.symlink(tmp_path, tmp_path / "link")
    with pytest.raises(OSError) as refused:
        nosymlinks.open_path(str(tmp_path / "link" / "f"))
    assert refused.value.errno == errno.ELOOP
    with pytest.raises(FileNotFoundError):
        nosymlinks.open_path(str(tmp_path / "missing"))


def test_resolve_plain_path_gives_the_path_and_its_stat(tmp_path: Path, symlink_proof: str) -> None:
    real_root = os.path.realpath(tmp_path)
    (tmp_path / "bkt" / "a").mkdir(parents=True)
    (tmp_path / "bkt" / "a" / "f").write_bytes(b"x" * 5)
    found = keys.resolve(real_root, os.path.join(real_root, "bkt", "a", "f"))
    assert found is not None
    assert found[0] == os.path.join(real_root, "bkt", "a", "f")
    assert found[1].st_size == 5
    assert keys.resolve(real_root, os.path.join(real_root, "bkt", "a", "missing")) is None
    # Through a file: ENOTDIR, absent.
    assert keys.resolve(real_root, os.path.join(real_root, "bkt", "a", "f", "g")) is None


def test_resolve_follows_symlinks_only_inside_root(tmp_path: Path, symlink_proof: str) -> None:
    real_root = os.path.realpath(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    bkt = Path(real_root) / "bkt"
    (bkt / "dir").mkdir(parents=True)
    (bkt / "dir" / "f").write_bytes(b"inside")
    os.symlink(bkt / "dir", bkt / "dirlink")
    os.symlink(bkt / "dir" / "f", bkt / "filelink")
    os.symlink(outside, bkt / "outdir")
    os.symlink(outside / "secret", bkt / "outfile")
    # A symlinked folder on the way (not the last component) inside ROOT resolves to the target.
    found = keys.resolve(real_root, str(bkt / "dirlink" / "f"))
    assert found is not None and found[0] == str(bkt / "dir" / "f")
    found = keys.resolve(real_root, str(bkt / "filelink"))
    assert found is not None and found[0] == str(bkt / "dir" / "f")
    # Leading outside, by a folder on the way or by the last component: absent.
    assert keys.resolve(real_root, str(bkt / "outdir" / "secret")) is None
    assert keys.resolve(real_root, str(bkt / "outfile")) is None
    assert keys.resolve(real_root, str(bkt / "outdir" / "missing")) is None


async def test_reads_through_symlinked_folder_outside_root_are_refused(
    root: Path, tmp_path: Path, symlink_proof: str
) -> None:
    be = await backend(root)
    await be.create_bucket("bkt", OWNER, "us-east-1")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    os.symlink(outside, root / "bkt" / "out")
    with pytest.raises(errors.NoSuchKey):
        await be.open_object("bkt", "out/secret")
    with pytest.raises(errors.NoSuchKey):
        await be.head_object("bkt", "out/secret")
    # A symlinked folder that stays inside ROOT is followed, by GET and HEAD alike.
    await be.put_object("bkt", "dir/f", Body(b"inside"), meta())
    os.symlink(root / "bkt" / "dir", root / "bkt" / "in")
    assert await read_all(be, "in/f") == b"inside"
    assert (await be.head_object("bkt", "in/f")).size == 6


# -- the record cache ---------------------------------------------------------------------------
async def test_cached_record_sees_metadata_changed_by_another_process(root: Path) -> None:
    first = await backend(root)
    second = await backend(root)
    await first.create_bucket("bkt", OWNER, "us-east-1")
    await first.put_object("bkt", "k", Body(b"one"), meta(colour="red"))
    await asyncio.sleep(SETTLE)
    assert (await first.head_object("bkt", "k")).user_meta == {"colour": "red"}
    assert await first.get_object_tagging("bkt", "k") == {}
    # Served from the cache now; the other process changes the tags (xattr only, same data).
    await second.put_object_tagging("bkt", "k", {"a": "1"})
    assert await first.get_object_tagging("bkt", "k") == {"a": "1"}
    assert (await first.head_object("bkt", "k")).tag_count == 1
    # And replaces the object (a new inode): new bytes, new metadata.
    await second.put_object("bkt", "k", Body(b"two!"), meta("image/png", colour="blue"))
    info = await first.head_object("bkt", "k")
    assert (info.size, info.headers["content-type"], info.user_meta) == (4, "image/png", {"colour": "blue"})
    assert await read_all(first, "k") == b"two!"


async def test_plain_records_are_served_from_the_cache_without_reading_the_xattr(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain PUT's record is cached as its packed bytes, a record with user metadata parsed:
    read again, by HEAD, GET or a listing, neither costs a getxattr, and both still describe
    their objects."""
    be = await backend(root)
    await be.create_bucket("bkt", OWNER, "us-east-1")
    plain = await be.put_object("bkt", "plain", Body(b"plain bytes"), meta("text/csv"))
    rich = await be.put_object("bkt", "rich", Body(b"rich bytes"), meta(colour="red"))
    await asyncio.sleep(SETTLE)
    assert (await be.head_object("bkt", "plain")).etag == plain.etag
    assert (await be.head_object("bkt", "rich")).etag == rich.etag
    reads = count_getxattr(monkeypatch)
    for _ in range(2):
        head = await be.head_object("bkt", "plain")
        assert (head.etag, head.size, head.headers["content-type"]) == (plain.etag, 11, "text/csv")
        assert (await be.head_object("bkt", "rich")).user_meta == {"colour": "red"}
        assert await read_all(be, "plain") == b"plain bytes"
        page = await be.list_objects("bkt", "", "", "", 1000)
        assert [(o.key, o.etag) for o in page.objects] == [("plain", plain.etag), ("rich", rich.etag)]
    assert reads == []


async def test_more_json_records_than_the_parsed_cache_holds_are_served_from_their_bytes(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects with user metadata (every object s3fs or rclone writes) have JSON records. Read
    in a cycle longer than the parsed cache, they come from their cached bytes, not the xattr."""
    monkeypatch.setattr(metadata, "_PARSED_MAX", 2)
    be = await backend(root)
    await be.create_bucket("bkt", OWNER, "us-east-1")
    written = {f"k{i}": await be.put_object("bkt", f"k{i}", Body(b"x" * i), meta(mtime=str(i))) for i in range(6)}
    await asyncio.sleep(SETTLE)
    for key in written:
        await be.head_object("bkt", key)
    reads = count_getxattr(monkeypatch)
    for _ in range(2):
        for key, info in written.items():
            head = await be.head_object("bkt", key)
            assert (head.etag, head.size, head.user_meta) == (info.etag, info.size, {"mtime": key[1:]})
            assert await read_all(be, key) == b"x" * int(key[1:])
    assert reads == []


async def test_the_record_bytes_cache_stays_within_its_budget(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "_RAW_BUDGET", 3 * (metadata._RAW_ENTRY + 300))
    be = await backend(root)
    await be.create_bucket("bkt", OWNER, "us-east-1")
    written = {f"k{i}": await be.put_object("bkt", f"k{i}", Body(b"y"), meta(note="n" * 200)) for i in range(10)}
    await asyncio.sleep(SETTLE)
    for _ in range(2):
        for key, info in written.items():
            assert (await be.head_object("bkt", key)).etag == info.etag
            store = be.meta
            assert 0 < len(store._raw) <= 3
            assert store._raw_cost == sum(len(v) + metadata._RAW_ENTRY for v in store._raw.values())
            assert store._raw_cost <= metadata._RAW_BUDGET


async def test_cached_record_is_not_shared_with_callers(root: Path) -> None:
    be = await backend(root)
    await be.create_bucket("bkt", OWNER, "us-east-1")
    await be.put_object("bkt", "k", Body(b"data"), meta(colour="red"))
    await asyncio.sleep(SETTLE)
    first = await be.head_object("bkt", "k")
    first.user_meta["colour"] = "changed by a caller"
    first.headers["content-type"] = "changed/too"
    again = await be.head_object("bkt", "k")
    assert again.user_meta == {"colour": "red"}
    assert again.headers["content-type"] == "text/plain"


async def test_foreign_rewrite_of_a_cached_object_is_noticed(root: Path) -> None:
    be = await backend(root)
    await be.create_bucket("bkt", OWNER, "us-east-1")
    info = await be.put_object("bkt", "k", Body(b"ours"), meta())
    await asyncio.sleep(SETTLE)
    assert (await be.head_object("bkt", "k")).etag == info.etag
    # Another program rewrites the file in place (same inode): size/mtime/ctime move.
    with open(root / "bkt" / "k", "r+b") as f:
        f.write(b"THEIRS, longer")
    again = await be.head_object("bkt", "k")
    assert again.size == len(b"THEIRS, longer")
    assert again.etag != info.etag
    assert await read_all(be, "k") == b"THEIRS, longer"


# -- the bucket registry cache ------------------------------------------------------------------
async def test_bucket_owner_follows_another_process(root: Path) -> None:
    first = await backend(root)
    second = await backend(root)
    await first.create_bucket("bkt", OWNER, "us-east-1")
    await asyncio.sleep(SETTLE)
    assert (await first.head_bucket("bkt")).owner == OWNER
    assert (await first.head_bucket("bkt")).owner == OWNER  # now cached
    await second.delete_bucket("bkt")
    with pytest.raises(errors.NoSuchBucket):
        await first.head_bucket("bkt")
    await second.create_bucket("bkt", OTHER, "eu-west-1")
    info = await first.head_bucket("bkt")
    assert (info.owner, info.region) == (OTHER, "eu-west-1")


async def test_listing_uses_cached_records_only_while_they_match(root: Path) -> None:
    first = await backend(root)
    second = await backend(root)
    await first.create_bucket("bkt", OWNER, "us-east-1")
    for name in ("a", "b", "c"):
        await first.put_object("bkt", name, Body(name.encode() * 3), meta())
    await asyncio.sleep(SETTLE)
    page = await first.list_objects("bkt", "", "", "", 1000)
    assert [(o.key, o.size) for o in page.objects] == [("a", 3), ("b", 3), ("c", 3)]
    # Replaced by another process, rewritten in place by another program: both show at once.
    await second.put_object("bkt", "b", Body(b"bigger body"), meta())
    with open(root / "bkt" / "c", "ab") as f:
        f.write(b"++")
    page = await first.list_objects("bkt", "", "", "", 1000)
    assert [(o.key, o.size) for o in page.objects] == [("a", 3), ("b", 11), ("c", 5)]
    assert page.objects[2].etag == hashlib.md5(b"ccc++").hexdigest()


async def test_listing_ignores_a_record_copied_onto_another_file(root: Path) -> None:
    """Listing reads records by path: one copied with the file's xattrs (cp --preserve=xattr)
    describes another inode, so the listing hashes the file instead of trusting it."""
    be = await backend(root)
    await be.create_bucket("bkt", OWNER, "us-east-1")
    await be.put_object("bkt", "orig", Body(b"original"), meta())
    record = os.getxattr(root / "bkt" / "orig", "user.s3serve")
    (root / "bkt" / "copy").write_bytes(b"changed!")  # same size as "original"
    os.setxattr(root / "bkt" / "copy", "user.s3serve", record)
    st = os.stat(root / "bkt" / "orig")
    os.utime(root / "bkt" / "copy", ns=(st.st_atime_ns, st.st_mtime_ns))
    await asyncio.sleep(SETTLE)
    page = await be.list_objects("bkt", "", "", "", 1000)
    etags = {o.key: o.etag for o in page.objects}
    assert etags == {"copy": hashlib.md5(b"changed!").hexdigest(), "orig": hashlib.md5(b"original").hexdigest()}
