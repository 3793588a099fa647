"""Another program (or another request) changing ROOT while a request is at work: a folder on the
way swapped for a symlink leading out of ROOT, a pruned folder replaced by a file, a symlink
replaced while it is resolved. Each race is staged at the exact moment by wrapping the step
before it. The answer is an S3 error or success, never a 500, and nothing out of ROOT is
removed, moved in, or written."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from s3serve import errors
from s3serve.storage import copies, folders, keys, listing, smallwrites
from s3serve.storage.base import WriteMeta
from s3serve.storage.disk import DiskBackend
from s3serve.storage.metadata import EMPTY_MD5
from tests.conftest import until

from .test_small_writes import OWNER, Body


@pytest.fixture
async def be(tmp_path: Path) -> AsyncIterator[DiskBackend]:
    backend = DiskBackend(tmp_path / "root", OWNER, fsync=True)
    await backend.start()
    await backend.create_bucket("bkt", OWNER, "us-east-1")
    yield backend
    await backend.stop()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder out of ROOT holding a file named like the keys below."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "f").write_bytes(b"SECRET")
    return folder


def bucket_dir(be: DiskBackend) -> Path:
    return Path(be._real_root) / "bkt"


def swap_for_link(folder: Path, target: Path) -> None:
    """What another program does: the folder goes away and a symlink leading out takes its name."""
    folder.rename(folder.with_name(folder.name + "-moved"))
    folder.symlink_to(target)


# -- a pruned folder replaced by a file -------------------------------------------------------------


async def test_rename_whose_pruned_source_folder_became_a_file_succeeds(
    be: DiskBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await be.put_object("bkt", "a/b/c", Body(b"data"), WriteMeta())
    real_prune = copies.prune

    def prune_then_put_a_file(disk: DiskBackend, bucket: str, bdir: str, *args: Any, **kwargs: Any) -> None:
        real_prune(disk, bucket, bdir, *args, **kwargs)
        Path(bdir, "a").write_bytes(b"a file now")  # a PUT of "a" right after the prune

    monkeypatch.setattr(copies, "prune", prune_then_put_a_file)
    info = await be.rename_object("bkt", "a/b/c", "x")  # was a 500: fsync of the folder "a/b"
    assert info.key == "x"
    assert (bucket_dir(be) / "x").read_bytes() == b"data"


async def test_delete_whose_pruned_folder_became_a_file_succeeds(be: DiskBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    await be.put_object("bkt", "a/b/c", Body(b"data"), WriteMeta())
    real_prune = smallwrites.prune

    def prune_then_put_a_file(disk: DiskBackend, bucket: str, bdir: str, *args: Any, **kwargs: Any) -> None:
        real_prune(disk, bucket, bdir, *args, **kwargs)
        Path(bdir, "a").write_bytes(b"a file now")

    monkeypatch.setattr(smallwrites, "prune", prune_then_put_a_file)
    await be.delete_object("bkt", "a/b/c")
    assert (bucket_dir(be) / "a").read_bytes() == b"a file now"


async def test_fsync_of_a_folder_that_became_a_file_is_skipped(be: DiskBackend) -> None:
    (bucket_dir(be) / "f").write_bytes(b"x")
    await be.sync_folders([str(bucket_dir(be) / "f"), str(bucket_dir(be) / "f" / "below")])
    await be.sync_removal(str(bucket_dir(be)), str(bucket_dir(be) / "f" / "below"))


# -- deletes emptying one folder at once ----------------------------------------------------------


async def test_deletes_during_a_prune_of_their_folder_wait_for_one_look_at_most(
    be: DiskBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one delete's prune looks at the folder, the next waits for its own look and the
    rest leave it theirs: one look at a time, and still no empty folder left behind."""
    for name in ("a", "b", "c"):
        await be.put_object("bkt", f"f/{name}", Body(b"1"), WriteMeta())
    folder = bucket_dir(be) / "f"
    real_look = folders._remove_if_empty
    looks: list[bool] = []
    first_look_done, release = threading.Event(), threading.Event()

    def look_then_wait(*args: Any) -> bool:
        removed = real_look(*args)
        looks.append(removed)
        if len(looks) == 1:
            first_look_done.set()
            assert release.wait(10)
        return removed

    monkeypatch.setattr(folders, "_remove_if_empty", look_then_wait)
    first = asyncio.ensure_future(be.delete_object("bkt", "f/a"))
    assert await asyncio.to_thread(first_look_done.wait, 10)
    assert looks == [False]  # f/b and f/c are still there
    second = asyncio.ensure_future(be.delete_object("bkt", "f/b"))
    await until(lambda: be.prune_turns.waiting(str(folder)), "the second delete to wait for its turn")
    await be.delete_object("bkt", "f/c")  # answered at once: the waiting look comes after it
    assert looks == [False]
    assert folder.is_dir() and not second.done()
    release.set()
    await asyncio.gather(first, second)
    assert looks == [False, True]  # the second delete's look found the folder empty
    assert os.listdir(bucket_dir(be)) == []


async def test_many_deletes_emptying_folders_at_once_prune_them_all(be: DiskBackend) -> None:
    names = [f"p/q{i % 3}/k{i}" for i in range(96)]
    for name in names:
        await be.put_object("bkt", name, Body(b"x"), WriteMeta())
    await asyncio.gather(*(be.delete_object("bkt", name) for name in names))
    assert os.listdir(bucket_dir(be)) == []


def test_a_prune_is_covered_only_by_a_waiting_look_at_least_as_patient() -> None:
    turns = folders.PruneTurns()
    assert turns.begin("/r/b/f", 0.05) == "look"
    assert turns.begin("/r/b/f", 0.0) == "alone"  # the event loop never waits, nor is it covered yet
    waiter = threading.Thread(target=lambda: turns.begin("/r/b/f", 0.05))
    waiter.start()
    deadline = time.monotonic() + 10
    while not turns.waiting("/r/b/f"):
        assert time.monotonic() < deadline, "the waiter never waited"
        time.sleep(0.001)
    assert turns.begin("/r/b/f", 0.05) == "covered"
    assert turns.begin("/r/b/f", 0.0) == "covered"
    assert turns.begin("/r/b/f", 0.5) == "alone"  # more patient than the waiting look
    turns.end("/r/b/f")  # the waiting caller's turn
    waiter.join(10)
    assert not waiter.is_alive() and not turns.waiting("/r/b/f")
    assert turns.begin("/r/b/f", 0.0) == "alone"  # its look is under way
    turns.end("/r/b/f")
    assert turns.begin("/r/b/f", 0.0) == "look"  # none under way any more


async def test_a_folder_marker_whose_parent_is_pruned_meanwhile_is_made(
    be: DiskBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent folder of a marker being made, emptied and pruned by a concurrent delete
    between its open and the marker's mkdir: the mkdir's ENOENT was a 500."""
    await be.put_object("bkt", "p/x", Body(b"1"), WriteMeta())
    real_folder_of = keys.folder_of
    pruned: list[str] = []

    @contextlib.contextmanager
    def folder_of_then_prune(real_root: str, path: str) -> Iterator[int | None]:
        with real_folder_of(real_root, path) as fd:
            if path.endswith(os.sep + "m") and not pruned:
                (bucket_dir(be) / "p" / "x").unlink()  # a DELETE of p/x, and its prune of p
                (bucket_dir(be) / "p").rmdir()
                pruned.append(path)
            yield fd

    monkeypatch.setattr(keys, "folder_of", folder_of_then_prune)
    await be.put_object("bkt", "p/m/", Body(b""), WriteMeta())
    assert pruned and (bucket_dir(be) / "p" / "m").is_dir()
    assert [o.key for o in (await be.list_objects("bkt", "", "", "", 10)).objects] == ["p/m/"]


async def test_a_marker_delete_waits_for_a_busy_folder_lock_like_any_delete(
    be: DiskBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last delete in a folder, a marker's, met the folder's lock held by another delete's
    prune (which found the folder not yet empty) and gave up at once: the empty folder stayed
    for good, and a PUT of its name was refused as a folder."""
    await be.put_object("bkt", "f/m/", Body(b""), WriteMeta())
    folder_slot = be.locks.slot("bkt", "f/")
    real_try_lock = be.locks.try_lock
    refused: list[int] = []

    def busy_once(slot: int) -> int | None:
        if slot == folder_slot and not refused:
            refused.append(slot)  # another prune's look under way at that instant
            return None
        return real_try_lock(slot)

    monkeypatch.setattr(be.locks, "try_lock", busy_once)
    await be.delete_object("bkt", "f/m/")
    assert refused == [folder_slot]
    assert os.listdir(bucket_dir(be)) == []
    await be.put_object("bkt", "f", Body(b"a key now"), WriteMeta())


async def test_a_page_whose_keys_vanish_after_the_walk_walks_on(be: DiskBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys the walk met, gone before the page described them, were dropped from a page still
    marked truncated: it could be empty, and a ListObjects (V1) client without a delimiter, which
    resumes from the last key it got, stopped there, short of keys present all along."""
    for name in ("a", *(f"b{i:03d}" for i in range(20)), "c"):
        await be.put_object("bkt", name, Body(b"1"), WriteMeta())
    real_list_page = listing.list_page
    removed: list[str] = []

    def walk_then_another_program_deletes(*args: Any) -> listing.RawPage:
        page = real_list_page(*args)
        if not removed:
            for entry in page.entries:
                os.unlink(entry.path)
                removed.append(entry.key)
        return page

    monkeypatch.setattr(listing, "list_page", walk_then_another_program_deletes)
    page = await be.list_objects("bkt", "", "", "a", 5)
    assert removed == [f"b{i:03d}" for i in range(5)]
    assert [o.key for o in page.objects] == [f"b{i:03d}" for i in range(5, 10)] and page.is_truncated
    page = await be.list_objects("bkt", "", "", "b015", 5)
    assert [o.key for o in page.objects] == ["b016", "b017", "b018", "b019", "c"]


# -- a folder on the way swapped for a symlink leading out ------------------------------------------


async def test_delete_never_removes_a_file_out_of_root(
    be: DiskBackend, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await be.put_object("bkt", "d/f", Body(b"mine"), WriteMeta())
    real_resolve = be._resolve

    def resolve_then_swap(path: str) -> Any:
        found = real_resolve(path)
        swap_for_link(bucket_dir(be) / "d", outside)
        return found

    monkeypatch.setattr(be, "_resolve", resolve_then_swap)
    await be.delete_object("bkt", "d/f")
    assert (outside / "f").read_bytes() == b"SECRET"


async def test_rename_never_moves_a_file_in_from_out_of_root(
    be: DiskBackend, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await be.put_object("bkt", "d/f", Body(b"mine"), WriteMeta())
    real_existing = be._existing_record

    def look_then_swap(*args: Any) -> Any:
        record = real_existing(*args)
        swap_for_link(bucket_dir(be) / "d", outside)
        return record

    monkeypatch.setattr(be, "_existing_record", look_then_swap)
    with pytest.raises(errors.NoSuchKey):
        await be.rename_object("bkt", "d/f", "moved")
    assert (outside / "f").read_bytes() == b"SECRET"
    assert not (bucket_dir(be) / "moved").exists()


@pytest.mark.parametrize("size", [5, 300_000])  # the one-hop small path and the streaming path
async def test_put_never_lands_out_of_root(
    be: DiskBackend, outside: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    await be.put_object("bkt", "d/other", Body(b"1"), WriteMeta())
    real_check = keys.check_destination

    def check_then_swap(real_root: str, path: str, kp: keys.KeyPath) -> bool:
        ok = real_check(real_root, path, kp)
        if not os.path.islink(bucket_dir(be) / "d"):
            swap_for_link(bucket_dir(be) / "d", outside)
        return ok

    monkeypatch.setattr(keys, "check_destination", check_then_swap)
    with pytest.raises(errors.AccessDenied):
        await be.put_object("bkt", "d/f", Body(b"x" * size), WriteMeta())
    assert (outside / "f").read_bytes() == b"SECRET"
    assert sorted(p.name for p in outside.iterdir()) == ["f"]


async def test_folder_marker_is_never_made_out_of_root(
    be: DiskBackend, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await be.put_object("bkt", "d/other", Body(b"1"), WriteMeta())
    real_parents = keys.ensure_parents

    def parents_then_swap(real_root: str, bdir: str, kp: keys.KeyPath) -> list[str] | None:
        made = real_parents(real_root, bdir, kp)
        if not os.path.islink(bucket_dir(be) / "d"):
            swap_for_link(bucket_dir(be) / "d", outside)
        return made

    monkeypatch.setattr(keys, "ensure_parents", parents_then_swap)
    with pytest.raises(errors.AccessDenied):
        await be.put_object("bkt", "d/marker/", Body(b""), WriteMeta())
    assert sorted(p.name for p in outside.iterdir()) == ["f"]


async def test_copy_by_link_never_links_a_file_from_out_of_root(
    be: DiskBackend, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = os.urandom(copies.LINK_MIN_SIZE)
    await be.put_object("bkt", "d/f", Body(body), WriteMeta())
    real_lookup = be._lookup

    async def lookup_then_swap(bucket: str, kp: keys.KeyPath, path: str, **kwargs: Any) -> Any:
        found = await real_lookup(bucket, kp, path, **kwargs)
        if kwargs.get("held") and kp.key == "d/f" and not os.path.islink(bucket_dir(be) / "d"):
            swap_for_link(bucket_dir(be) / "d", outside)  # between the lookup and the link
        return found

    monkeypatch.setattr(be, "_lookup", lookup_then_swap)
    monkeypatch.setattr(copies, "_linkable", lambda *args: True)  # these test bodies carry no checksums
    await be.copy_object("bkt", "d/f", "bkt", "copy", None)
    assert (bucket_dir(be) / "copy").read_bytes() == body  # the bytes the lookup opened
    assert (outside / "f").read_bytes() == b"SECRET"
    assert os.stat(outside / "f").st_nlink == 1


def test_open_inside_refuses_a_file_out_of_root(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "r"
    (root / "bkt").mkdir(parents=True)
    (root / "bkt" / "d").symlink_to(outside)
    (root / "bkt" / "own").write_bytes(b"mine")
    assert keys.open_inside(str(root), str(root / "bkt" / "d" / "f")) is None
    fd = keys.open_inside(str(root), str(root / "bkt" / "own"))
    assert fd is not None
    os.close(fd)


# -- a symlink replaced while it is resolved --------------------------------------------------------


def test_a_path_changing_under_realpath_is_looked_at_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    (root / "bkt" / "real").mkdir(parents=True)
    (root / "bkt" / "link").symlink_to(root / "bkt" / "real")

    def changing(path: str) -> str:
        raise OSError(22, "Invalid argument", path)  # readlink of what is no longer a symlink

    monkeypatch.setattr(os.path, "realpath", changing)
    kp = keys.parse_key("link/k")
    assert keys.ensure_parents(str(root), str(root / "bkt"), kp) is None
    assert keys.resolve(str(root), str(root / "bkt" / "link" / "k")) is None
    assert keys.check_destination(str(root), str(root / "bkt" / "link"), keys.parse_key("link")) is False


# -- UploadPartCopy of a folder marker -------------------------------------------------------------


async def test_upload_part_copy_of_a_folder_marker_is_an_empty_part(be: DiskBackend) -> None:
    await be.put_object("bkt", "folder/", Body(b""), WriteMeta())
    upload = await be.create_multipart_upload("bkt", "dst", WriteMeta(), OWNER)
    part = await be.upload_part_copy("bkt", "dst", upload.upload_id, 1, "bkt", "folder/", None, None)  # was a 500
    assert (part.size, part.etag) == (0, EMPTY_MD5)
    info = await be.complete_multipart_upload("bkt", "dst", upload.upload_id, [part])
    assert info.size == 0
