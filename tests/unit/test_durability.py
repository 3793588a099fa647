"""With fsync on, an acknowledged write survives a crash: besides the file itself, every folder
whose entries changed is fsynced before the answer — the object's folder, the parents of folders
created for it, the folder a delete or rename removed a name from, and the hidden folders of
sidecar records. A crash cannot be staged in-process, so these tests record which folders the
real fsync was called on (the call still happens) and check the set."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3serve import errors
from s3serve.storage import keys, metadata
from s3serve.storage.base import WriteMeta
from s3serve.storage.disk import DiskBackend

from .test_small_writes import OWNER, Body


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Folders fsynced through keys.fsync_dir, in order (the real fsync still runs)."""
    calls: list[str] = []
    real = keys.fsync_dir

    def recording(path: str) -> None:
        real(path)
        calls.append(os.path.realpath(path))

    monkeypatch.setattr(keys, "fsync_dir", recording)
    monkeypatch.setattr(metadata, "fsync_dir", recording)
    yield calls


async def _backend(root: Path, use_xattrs: bool = True) -> tuple[DiskBackend, str]:
    be = DiskBackend(root, OWNER, fsync=True, use_xattrs=use_xattrs)
    await be.start()
    await be.create_bucket("bkt", OWNER, "us-east-1")
    return be, os.path.realpath(root / "bkt")


@pytest.mark.parametrize("size", [3, 300_000])  # the one-hop small path and the streaming path
async def test_put_fsyncs_every_folder_it_created(tmp_path: Path, synced: list[str], size: int) -> None:
    be, bdir = await _backend(tmp_path / "root")
    try:
        synced.clear()
        await be.put_object("bkt", "a/b/c/obj", Body(b"x" * size), WriteMeta())
        # The object's folder, and each new folder's entry in its parent, up to the bucket.
        assert {f"{bdir}/a/b/c", f"{bdir}/a/b", f"{bdir}/a", bdir} <= set(synced)
        synced.clear()
        await be.put_object("bkt", "a/b/c/obj2", Body(b"y" * size), WriteMeta())
        assert synced == [f"{bdir}/a/b/c"]  # nothing new above it: only its own folder
    finally:
        await be.stop()


async def test_folder_marker_fsyncs_itself_and_new_parents(tmp_path: Path, synced: list[str]) -> None:
    be, bdir = await _backend(tmp_path / "root")
    try:
        synced.clear()
        await be.put_object("bkt", "x/y/", Body(b""), WriteMeta())
        assert {f"{bdir}/x/y", f"{bdir}/x", bdir} <= set(synced)
    finally:
        await be.stop()


async def test_delete_fsyncs_the_folder_that_lost_the_name(tmp_path: Path, synced: list[str]) -> None:
    be, bdir = await _backend(tmp_path / "root")
    try:
        await be.put_object("bkt", "d/keep", Body(b"1"), WriteMeta())
        await be.put_object("bkt", "d/gone", Body(b"2"), WriteMeta())
        await be.put_object("bkt", "p/q/only", Body(b"3"), WriteMeta())
        synced.clear()
        await be.delete_object("bkt", "d/gone")
        assert synced == [f"{bdir}/d"]
        synced.clear()
        await be.delete_object("bkt", "p/q/only")  # empties p/q and p: both pruned
        assert not os.path.exists(f"{bdir}/p")
        assert synced == [bdir]  # the nearest folder still there, which lost the entry "p"
        synced.clear()
        await be.delete_object("bkt", "never-there")
        assert synced == []
    finally:
        await be.stop()


async def test_rename_fsyncs_source_and_destination_folders(tmp_path: Path, synced: list[str]) -> None:
    be, bdir = await _backend(tmp_path / "root")
    try:
        await be.put_object("bkt", "src/k", Body(b"1"), WriteMeta())
        await be.put_object("bkt", "src/other", Body(b"2"), WriteMeta())
        synced.clear()
        await be.rename_object("bkt", "src/k", "dst/new/k")
        assert {f"{bdir}/dst/new", f"{bdir}/dst", bdir, f"{bdir}/src"} <= set(synced)
        synced.clear()
        await be.rename_object("bkt", "src/other", "top")  # empties src, which is pruned
        assert not os.path.exists(f"{bdir}/src")
        assert synced == [bdir, bdir]  # the new name's folder, then the folder that lost "src"
    finally:
        await be.stop()


async def test_sidecar_records_and_bucket_records_are_fsynced(tmp_path: Path, synced: list[str]) -> None:
    root = tmp_path / "root"
    be, _ = await _backend(root, use_xattrs=False)
    try:
        hidden = os.path.realpath(root / ".s3serve")
        assert f"{hidden}/buckets" in synced  # CreateBucket's owner record
        synced.clear()
        await be.put_object("bkt", "m/n/obj", Body(b"z"), WriteMeta())
        sidecar = os.path.realpath(be.meta.sidecar_path("bkt", "m/n/obj"))
        assert os.path.dirname(sidecar) in synced
        assert os.path.isfile(sidecar)
    finally:
        await be.stop()


def test_changed_folders() -> None:
    assert keys.changed_folders("/r/b/a/c/f", []) == ["/r/b/a/c"]
    assert keys.changed_folders("/r/b/a/c/f", ["/r/b/a", "/r/b/a/c"]) == ["/r/b/a/c", "/r/b/a", "/r/b"]


async def test_multipart_records_are_fsynced(tmp_path: Path, synced: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An answered CreateMultipartUpload or UploadPart survives a crash: the upload's record and
    each part's record are fsynced (the record's bytes before its name), then their folders."""
    files: list[str] = []
    real_fsync = os.fsync

    def recording(fd: int) -> None:
        real_fsync(fd)
        files.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", recording)
    be, _ = await _backend(tmp_path / "root")
    try:
        synced.clear()
        upload = await be.create_multipart_upload("bkt", "k", WriteMeta(), "owner-1")
        folder = os.path.realpath(be.staging.upload_dir("bkt", upload.upload_id))
        assert f"{folder}/upload.json" in files
        assert {folder, os.path.dirname(folder), os.path.realpath(be.staging.dir)} <= set(synced)
        synced.clear()
        files.clear()
        await be.upload_part("bkt", "k", upload.upload_id, 1, Body(b"part"))
        # The part record's bytes under its temp name, before the rename that names it.
        assert any(os.path.basename(f).startswith("tmp-") and f.endswith(".json") for f in files)
        assert folder in synced
        assert sorted(n for n in os.listdir(folder) if n.endswith(".json")) == ["00001.json", "upload.json"]
    finally:
        await be.stop()


@pytest.mark.parametrize("size", [3, 300_000])  # the one-hop small path and the streaming path
async def test_sidecar_goes_in_before_the_rename_and_back_when_it_fails(
    tmp_path: Path, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In sidecar mode a write's record is in the key's sidecar before the rename, beside the
    record of the object it replaces (crash safety: the e2e tests kill a server there); a rename
    that fails puts the sidecar back as it was: none for a new key, the old record alone."""
    be, _ = await _backend(tmp_path / "root", use_xattrs=False)
    try:
        await be.put_object("bkt", "a", Body(b"o" * size), WriteMeta(headers={"content-type": "text/x-old"}))
        with pytest.raises(errors.ObjectParentIsFile):
            await be.put_object("bkt", "a/b", Body(b"n" * size), WriteMeta())
        assert not os.path.exists(be.meta.sidecar_path("bkt", "a/b"))
        seen: list[bytes] = []
        place = keys.place

        def failing(*args: object, **kwargs: object) -> list[str]:
            with open(be.meta.sidecar_path("bkt", "a"), "rb") as f:
                seen.append(f.read())
            raise OSError(errno.EIO, "the disk says no")

        monkeypatch.setattr(keys, "place", failing)
        with pytest.raises(OSError):
            await be.put_object("bkt", "a", Body(b"n" * size), WriteMeta(headers={"content-type": "text/x-new"}))
        assert seen[0].startswith(b"[") and b"text/x-new" in seen[0] and b"text/x-old" in seen[0]
        with open(be.meta.sidecar_path("bkt", "a"), "rb") as f:
            assert f.read().startswith(b"{")  # the old record alone again
        assert (await be.head_object("bkt", "a")).headers["content-type"] == "text/x-old"
        monkeypatch.setattr(keys, "place", place)
        await be.put_object("bkt", "a", Body(b"n" * size), WriteMeta(headers={"content-type": "text/x-new"}))
        assert (await be.head_object("bkt", "a")).headers["content-type"] == "text/x-new"
    finally:
        await be.stop()
