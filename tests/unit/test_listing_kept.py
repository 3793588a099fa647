"""A large directory's sorted names are kept for the next page, under the directory's stamp:
counted in directory reads, and checked against every change that can come between two pages."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from s3serve.storage import dirnames, listing, metadata
from s3serve.storage.listing import list_page
from s3serve.storage.metadata import settled
from tests.unit.test_listing import keys_of, make_tree, marker_fn
from tests.unit.test_listing_cost import ScanCounter

# Folders of this many names are kept: smaller than the server's threshold, to keep the tests quick.
KEEP = 60
N = KEEP + 20


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(dirnames, "KEEP_MIN_ENTRIES", KEEP)
    return Path(os.path.realpath(tmp_path))


def flat(root: Path, n: int = N) -> tuple[Path, list[str]]:
    keys = [f"k{i:05d}" for i in range(n)]
    make_tree(root / "bkt", keys)
    return root / "bkt", keys


def wait_settled(folder: Path) -> None:
    """Until the folder's stamp is old enough to be trusted: a wait on the stamp, not a time."""
    while not settled(os.stat(folder)):
        time.sleep(0.02)


def walk(bucket: Path, root: Path, max_keys: int = 30, prefix: str = "") -> list[str]:
    keys: list[str] = []
    after = ""
    while True:
        page = list_page(str(bucket), prefix, "", after, max_keys, marker_fn(set()), str(root))
        keys += keys_of(page)
        if not page.is_truncated:
            return keys
        assert page.next_marker is not None
        after = page.next_marker


def test_pages_after_the_first_do_not_read_a_large_folder_again(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket, keys = flat(root)
    wait_settled(bucket)
    scans = ScanCounter(monkeypatch)
    assert walk(bucket, root) == keys
    assert scans.take() == [str(bucket)]  # three pages, one read
    assert walk(bucket, root, prefix="k0001") == [k for k in keys if k.startswith("k0001")]
    assert scans.take() == []


def test_a_small_folder_is_read_for_every_page(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket, keys = flat(root, KEEP - 1)
    wait_settled(bucket)
    scans = ScanCounter(monkeypatch)
    assert walk(bucket, root) == keys
    assert scans.take() == [str(bucket)] * 2


def test_the_server_keeps_folders_of_a_thousand_names(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    assert dirnames.KEEP_MIN_ENTRIES == 1000
    bucket, keys = flat(root, 1000)
    wait_settled(bucket)
    scans = ScanCounter(monkeypatch)
    assert walk(bucket, root, max_keys=400) == keys
    assert scans.take() == [str(bucket)]


def test_a_folder_changed_since_its_names_were_kept_is_read_again(root: Path) -> None:
    bucket, keys = flat(root)
    wait_settled(bucket)
    assert walk(bucket, root) == keys
    # Each change below sets the folder's mtime and ctime, whatever writes it.
    (bucket / "k00001").unlink()
    (bucket / "k99999").write_bytes(b"new")
    keys = [k for k in keys if k != "k00001"] + ["k99999"]
    assert walk(bucket, root) == keys
    wait_settled(bucket)
    assert walk(bucket, root) == keys
    (bucket / "k00002").unlink()
    (bucket / "k00002").mkdir()
    (bucket / "k00002" / "x").write_bytes(b"x")
    os.rename(bucket / "k00003", bucket / "k99998")
    expected = sorted({*keys, "k00002/x", "k99998"} - {"k00002", "k00003"})
    assert walk(bucket, root) == expected


def test_a_folder_with_a_recent_stamp_is_not_kept(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stamp too recent to be trusted may be shared with a change still to come (a coarse
    clock): such a folder is read again for every page until its stamp has aged."""
    bucket, keys = flat(root)
    wait_settled(bucket)
    with monkeypatch.context() as mp:
        # Every stamp is recent, as one is in the moments after a change.
        mp.setattr(metadata, "CACHE_MIN_AGE_NS", 10**15)
        mp.setattr(metadata, "COARSE_MIN_AGE_NS", 10**15)
        scans = ScanCounter(mp)
        assert walk(bucket, root) == keys
        assert scans.take() == [str(bucket)] * 3
    scans = ScanCounter(monkeypatch)
    assert walk(bucket, root) == keys
    assert walk(bucket, root) == keys
    assert scans.take() == [str(bucket)]


def test_a_stamp_recent_when_taken_is_not_kept_however_long_the_read(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change made while a large folder is read, within the clock's grain of the last one, gives
    the folder the very stamp its names were read under (a coarse clock: Linux before 6.13). So
    the stamp must have aged by the time it was taken, not by the end of a long read."""
    bucket, keys = flat(root)
    wait_settled(bucket)
    real_scandir = os.scandir
    reads: list[str] = []

    recent = pytest.MonkeyPatch()

    def aging(path: str):  # type: ignore[no-untyped-def]
        # The stamp, just taken, was recent; by the end of the read it has aged.
        recent.undo()
        reads.append(str(path))
        return real_scandir(path)

    recent.setattr(metadata, "CACHE_MIN_AGE_NS", 10**15)
    recent.setattr(metadata, "COARSE_MIN_AGE_NS", 10**15)
    recent.setattr(listing, "_scandir", aging)
    try:
        page = list_page(str(bucket), "", "", "", 10, marker_fn(set()), str(root))
    finally:
        recent.undo()
    assert keys_of(page) == keys[:10] and reads == [str(bucket)]
    scans = ScanCounter(monkeypatch)
    assert walk(bucket, root) == keys
    assert scans.take() == [str(bucket)]  # read again, then kept under the aged stamp


def test_a_folder_holding_symlinks_is_never_kept(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a link leads can change without its folder's stamp changing."""
    bucket, keys = flat(root)
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "f").write_bytes(b"f")
    os.symlink(root / "elsewhere" / "f", bucket / "link")
    wait_settled(bucket)
    stamp = os.stat(bucket).st_mtime_ns
    assert walk(bucket, root) == [*keys, "link"]
    (root / "elsewhere" / "f").unlink()
    (root / "elsewhere" / "f").mkdir()
    (root / "elsewhere" / "f" / "g").write_bytes(b"g")
    assert os.stat(bucket).st_mtime_ns == stamp  # the bucket's own stamp is unchanged
    assert walk(bucket, root) == [*keys, "link/g"]


def test_a_folder_holding_a_dangling_symlink_is_never_kept(root: Path) -> None:
    """A link left out of the listing (its target missing) leads to a file once the target is
    made, elsewhere: the link's folder's stamp does not change."""
    bucket, keys = flat(root)
    (root / "elsewhere").mkdir()
    os.symlink(root / "elsewhere" / "f", bucket / "link")
    wait_settled(bucket)
    assert walk(bucket, root) == keys
    (root / "elsewhere" / "f").write_bytes(b"f")
    assert walk(bucket, root) == [*keys, "link"]


def test_a_folder_holding_a_symlink_out_of_the_root_is_never_kept(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A link that leads out of the root through another link is left out, until that other
    link is pointed inside."""
    bucket, keys = flat(root)
    outside = tmp_path_factory.mktemp("outside")
    (outside / "f").write_bytes(b"out")
    (root / "inside").mkdir()
    (root / "inside" / "f").write_bytes(b"in")
    (root / "hop").mkdir()
    os.symlink(outside, root / "hop" / "to")
    os.symlink(root / "hop" / "to" / "f", bucket / "link")
    wait_settled(bucket)
    assert walk(bucket, root) == keys
    os.unlink(root / "hop" / "to")
    os.symlink(root / "inside", root / "hop" / "to")
    assert walk(bucket, root) == [*keys, "link"]


def test_a_folder_holding_a_symlink_to_a_fifo_is_never_kept(root: Path) -> None:
    bucket, keys = flat(root)
    (root / "elsewhere").mkdir()
    os.mkfifo(root / "elsewhere" / "f")
    os.symlink(root / "elsewhere" / "f", bucket / "link")
    wait_settled(bucket)
    assert walk(bucket, root) == keys
    (root / "elsewhere" / "f").unlink()
    (root / "elsewhere" / "f").write_bytes(b"f")
    assert walk(bucket, root) == [*keys, "link"]


def test_kept_names_are_bounded(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dirnames, "KEEP_MAX_BYTES", dirnames.size_of(["k00000"]) * (N + N // 2))
    first, keys = flat(root / "one")
    second, _ = flat(root / "two")
    wait_settled(first)
    wait_settled(second)
    scans = ScanCounter(monkeypatch)
    assert walk(first, root) == keys
    assert walk(second, root) == keys  # pushes the first folder's names out
    assert walk(second, root) == keys
    assert walk(first, root) == keys
    assert scans.take() == [str(first), str(second), str(first)]


def test_a_folder_too_large_to_keep_does_not_push_the_others_out(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept, a folder of more names than may be kept at all would push out every other folder's
    names, then its own: for every page of it, as it is read again for each."""
    monkeypatch.setattr(dirnames, "KEEP_MAX_BYTES", dirnames.size_of(["k00000"]) * (N + N // 2))
    small, keys = flat(root / "small")
    huge, huge_keys = flat(root / "huge", 2 * N)
    wait_settled(small)
    wait_settled(huge)
    scans = ScanCounter(monkeypatch)
    assert walk(small, root) == keys
    assert walk(huge, root, max_keys=100) == huge_keys
    assert walk(small, root) == keys
    assert scans.take() == [str(small), str(huge), str(huge)]



def test_long_names_count_for_what_they_take(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound is on memory: as many names of 200 characters take four times the room."""
    monkeypatch.setattr(dirnames, "KEEP_MAX_BYTES", dirnames.size_of(["k00000"]) * 2 * N)
    short, keys = flat(root / "short")
    long_keys = [f"{'x' * 194}{i:05d}" for i in range(N)]
    make_tree(root / "long", long_keys)
    wait_settled(short)
    wait_settled(root / "long")
    scans = ScanCounter(monkeypatch)
    assert walk(short, root) == keys
    assert walk(short, root) == keys
    assert walk(root / "long", root, max_keys=N) == long_keys  # one page: one read of the folder
    assert walk(root / "long", root, max_keys=N) == long_keys
    assert scans.take() == [str(short), str(root / "long"), str(root / "long")]
