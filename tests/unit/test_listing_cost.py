"""Listing cost, counted in directory reads rather than time: page N reads no more directories
than page 1, a prefix starts in the directory it names, delimiters do not walk what they roll up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3serve.storage import listing
from s3serve.storage.listing import list_page
from tests.unit.test_listing import keys_of, make_tree, marker_fn, page_items


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return Path(os.path.realpath(tmp_path))


class ScanCounter:
    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        real = os.scandir

        def counting(path: str) -> Iterator[os.DirEntry[str]]:
            self.paths.append(str(path))
            return real(path)  # type: ignore[return-value]

        mp.setattr(listing, "_scandir", counting)

    def take(self) -> list[str]:
        paths, self.paths = self.paths, []
        return paths


def test_page_n_reads_only_the_directories_it_covers(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = root / "bkt"
    keys = [f"d{a}/e{b}/f{c}" for a in range(8) for b in range(8) for c in range(8)]  # 512 keys, 73 dirs
    make_tree(bucket, keys)
    counter = ScanCounter(monkeypatch)
    start_after = ""
    pages = 0
    while True:
        page = list_page(str(bucket), "", "", start_after, 5, marker_fn(set()), str(root))
        scanned = counter.take()
        pages += 1
        # Descending to the marker reads the bucket, one d-dir and one e-dir (3 = depth); the page's
        # 5 keys, plus the one peeked at for is_truncated, span at most two e-dirs and the d-dir
        # beside. Never anything proportional to the page number.
        assert len(scanned) <= 6, (start_after, scanned)
        assert len(set(scanned)) == len(scanned)  # nothing read twice
        if not page.is_truncated:
            break
        start_after = page.next_marker or ""
    assert pages == len(keys) // 5 + 1
    # The last page in particular: the bucket, d7, d7/e7 and nothing else.
    last = list_page(str(bucket), "", "", "d7/e7/f5", 5, marker_fn(set()), str(root))
    assert keys_of(last) == ["d7/e7/f6", "d7/e7/f7"]
    assert sorted(counter.take()) == sorted([str(bucket), str(bucket / "d7"), str(bucket / "d7" / "e7")])


def test_prefix_starts_in_the_directory_it_names(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = root / "bkt"
    make_tree(
        bucket,
        [f"a/b/c{i}" for i in range(3)] + [f"a/b/x{i}" for i in range(3)] + [f"a/z{i}/q" for i in range(20)],
    )
    counter = ScanCounter(monkeypatch)
    page = list_page(str(bucket), "a/b/c", "", "", 1000, marker_fn(set()), str(root))
    assert keys_of(page) == ["a/b/c0", "a/b/c1", "a/b/c2"]
    assert counter.take() == [str(bucket / "a" / "b")]


def test_slash_delimited_listing_reads_only_up_to_the_first_object(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = root / "bkt"
    keys = []
    for i in range(10):
        keys.append(f"dir{i}/first")  # a file right at the top of each sub-directory
        keys += [f"dir{i}/sub{j}/deep/k{k}" for j in range(5) for k in range(5)]
    keys += ["nested/x/y/only", "nested/z/other", "top-file"]
    make_tree(bucket, keys, empty_dirs=["hollow/a/b", "hollow/c"])
    counter = ScanCounter(monkeypatch)
    page = list_page(str(bucket), "", "/", "", 1000, marker_fn(set()), str(root))
    assert page.common_prefixes == [f"dir{i}/" for i in range(10)] + ["nested/"]
    assert keys_of(page) == ["top-file"]
    scanned = counter.take()
    expected = [str(bucket)] + [str(bucket / f"dir{i}") for i in range(10)]
    # nested/ holds no file itself: depth-first to the first object, not its sibling z.
    expected += [str(bucket / "nested"), str(bucket / "nested" / "x"), str(bucket / "nested" / "x" / "y")]
    # An empty tree has to be read completely to know it is empty.
    expected += [
        str(bucket / "hollow"),
        str(bucket / "hollow" / "a"),
        str(bucket / "hollow" / "a" / "b"),
        str(bucket / "hollow" / "c"),
    ]
    assert sorted(scanned) == sorted(expected)


def test_other_delimiter_jumps_over_a_common_prefix(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = root / "bkt"
    keys = [f"log-{i:03d}/part/{j}" for i in range(30) for j in range(3)] + ["log.txt", "m-1", "m-2"]
    make_tree(bucket, keys)
    counter = ScanCounter(monkeypatch)
    page = list_page(str(bucket), "", "-", "", 1000, marker_fn(set()), str(root))
    assert page_items(page) == [("p", "log-"), ("k", "log.txt"), ("p", "m-")]
    # Only the first "log-..." directory is opened (down to its first object); the other 29 never are.
    assert counter.take() == [str(bucket), str(bucket / "log-000"), str(bucket / "log-000" / "part")]
