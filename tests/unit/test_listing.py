"""The listing engine against real directory trees and an independent reference implementation.

The reference collects every key with os.walk, sorts by UTF-8 bytes, filters and groups: the
simplest correct thing, with none of the engine's seeking. Cost checks count directory reads
(no timing): page N must not read more directories than page 1.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from s3serve import errors
from s3serve.storage import listing
from s3serve.storage.listing import RawPage, list_page

Item = tuple[str, str]  # ("k", key) or ("p", common prefix)


# -- helpers ---------------------------------------------------------------------------------


def make_tree(
    bucket: Path, keys: list[str], markers: Sequence[str] = (), empty_dirs: Sequence[str] = ()
) -> set[str]:
    """Files for ``keys`` (content = the key), directories for ``markers`` ("a/b/") and
    ``empty_dirs``; returns the set of marker paths for ``is_folder_marker``."""
    bucket.mkdir(parents=True, exist_ok=True)
    for key in keys:
        path = bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())
    marker_paths = set()
    for m in markers:
        (bucket / m).mkdir(parents=True, exist_ok=True)
        marker_paths.add(str(bucket / m.rstrip("/")))
    for d in empty_dirs:
        (bucket / d).mkdir(parents=True, exist_ok=True)
    return marker_paths


def marker_fn(marker_paths: set[str]) -> Callable[[str], bool]:
    return lambda path: path in marker_paths


def reference_keys(bucket: Path, marker_paths: set[str]) -> list[str]:
    """Every object key, from a plain os.walk (no symlinks followed), in UTF-8 byte order."""
    keys = []
    for dirpath, dirnames, filenames in os.walk(bucket):
        rel = os.path.relpath(dirpath, bucket)
        rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                keys.append(rel + name)
        for name in dirnames:
            if os.path.join(dirpath, name) in marker_paths:
                keys.append(rel + name + "/")
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def reference_listing(keys: list[str], prefix: str, delimiter: str, start_after: str) -> list[Item]:
    rest = start_after[len(prefix) :] if start_after.startswith(prefix) else ""
    idx = rest.find(delimiter) if delimiter else -1
    after_prefix = idx >= 0 and idx + len(delimiter) == len(rest)
    out: list[Item] = []
    seen: set[str] = set()
    for key in keys:
        if not key.startswith(prefix) or key.encode() <= start_after.encode():
            continue
        if after_prefix and key.startswith(start_after):
            continue
        remainder = key[len(prefix) :]
        if delimiter and delimiter in remainder:
            cp = prefix + remainder[: remainder.index(delimiter) + len(delimiter)]
            if cp not in seen:
                seen.add(cp)
                out.append(("p", cp))
        else:
            out.append(("k", key))
    return out


def page_items(page: RawPage) -> list[Item]:
    """A page's keys and common prefixes merged in the order the engine produced them."""
    items: list[Item] = [("k", e.key) for e in page.entries] + [("p", p) for p in page.common_prefixes]
    return sorted(items, key=lambda item: item[1].encode())


def list_all(
    bucket: Path,
    root: Path,
    prefix: str,
    delimiter: str,
    max_keys: int,
    markers: set[str],
    start_after: str = "",
) -> list[Item]:
    out: list[Item] = []
    for _ in range(100_000):
        page = list_page(str(bucket), prefix, delimiter, start_after, max_keys, marker_fn(markers), str(root))
        items = page_items(page)
        assert len(items) <= max_keys
        out.extend(items)
        if not page.is_truncated:
            assert page.next_marker is None
            return out
        assert len(items) == max_keys
        assert page.next_marker == items[-1][1]
        start_after = page.next_marker
    raise AssertionError("pagination did not end")


def keys_of(page: RawPage) -> list[str]:
    return [e.key for e in page.entries]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return Path(os.path.realpath(tmp_path))


# -- order -----------------------------------------------------------------------------------

ORDER_KEYS = [
    "a.c",
    "a/b",
    "a/b.x",
    "a/c/d",
    "a-b",
    "a0",
    "ab",
    "b",
    "z",
    "é",
    "\U0001d11e",
    "\uffff",
    "Z",
    "a/!",
]


def test_order_is_utf8_byte_order_not_walk_order(root: Path) -> None:
    bucket = root / "bkt"
    make_tree(bucket, ORDER_KEYS)
    page = list_page(str(bucket), "", "", "", 1000, marker_fn(set()), str(root))
    expected = sorted(ORDER_KEYS, key=lambda k: k.encode("utf-8"))
    assert keys_of(page) == expected
    # The cases that a name-sorted walk gets wrong, spelled out.
    got = keys_of(page)
    assert got.index("a-b") < got.index("a.c") < got.index("a/!") < got.index("a/b") < got.index("a0")
    assert got.index("z") < got.index("é") < got.index("\uffff") < got.index("\U0001d11e")
    assert page.is_truncated is False and page.next_marker is None
    # Entries point at the real files: read the bytes back.
    for entry in page.entries:
        assert entry.is_dir is False
        assert os.path.isabs(entry.path)
        assert Path(entry.path).read_bytes() == entry.key.encode()


def test_folder_markers_sort_before_their_contents(root: Path) -> None:
    bucket = root / "bkt"
    markers = make_tree(bucket, ["a/x", "a.b", "a0", "d/e/f"], markers=["a/", "d/", "d/e/", "m/"])
    page = list_page(str(bucket), "", "", "", 1000, marker_fn(markers), str(root))
    assert keys_of(page) == ["a.b", "a/", "a/x", "a0", "d/", "d/e/", "d/e/f", "m/"]
    by_key = {e.key: e for e in page.entries}
    assert by_key["m/"].is_dir and by_key["m/"].path == str(bucket / "m")
    assert by_key["a/"].is_dir and not by_key["a/x"].is_dir


def test_empty_plain_directories_contribute_nothing(root: Path) -> None:
    bucket = root / "bkt"
    make_tree(bucket, ["k"], empty_dirs=["e1", "e2/e3/e4", "zz"])
    for delimiter in ("", "/"):
        page = list_page(str(bucket), "", delimiter, "", 1000, marker_fn(set()), str(root))
        assert keys_of(page) == ["k"]
        assert page.common_prefixes == []
    assert list_page(str(bucket), "e2/", "/", "", 1000, marker_fn(set()), str(root)).common_prefixes == []


# -- prefix and delimiter --------------------------------------------------------------------

TREE = [
    "photos/2023/jan/a.jpg",
    "photos/2023/jan/b.jpg",
    "photos/2023/feb/c.jpg",
    "photos/2024/mar/d.jpg",
    "photos/2024-index",
    "photos/20x",
    "photos.txt",
    "photo",
    "docs/readme-1.md",
    "docs/readme-2.md",
    "docs/readme.md",
    "docs/abc/ab-x",
    "docs/xab",
    "zeta",
]


@pytest.mark.parametrize(
    ("prefix", "delimiter", "expected"),
    [
        ("", "/", [("p", "docs/"), ("k", "photo"), ("p", "photos/"), ("k", "photos.txt"), ("k", "zeta")]),
        ("photo", "/", [("k", "photo"), ("p", "photos/"), ("k", "photos.txt")]),
        (
            "photos/",
            "/",
            [("p", "photos/2023/"), ("k", "photos/2024-index"), ("p", "photos/2024/"), ("k", "photos/20x")],
        ),
        ("photos/202", "/", [("p", "photos/2023/"), ("k", "photos/2024-index"), ("p", "photos/2024/")]),
        ("photos/2023/j", "", [("k", "photos/2023/jan/a.jpg"), ("k", "photos/2023/jan/b.jpg")]),
        ("photos/2023/jan/", "/", [("k", "photos/2023/jan/a.jpg"), ("k", "photos/2023/jan/b.jpg")]),
        (
            "photos/20",
            "-",
            [
                ("p", "photos/2024-"),
                ("k", "photos/2023/feb/c.jpg"),
                ("k", "photos/2023/jan/a.jpg"),
                ("k", "photos/2023/jan/b.jpg"),
                ("k", "photos/2024/mar/d.jpg"),
                ("k", "photos/20x"),
            ],
        ),
        (
            "docs/",
            "-",
            [("p", "docs/abc/ab-"), ("p", "docs/readme-"), ("k", "docs/readme.md"), ("k", "docs/xab")],
        ),
        (
            "docs/",
            "ab",
            [
                ("p", "docs/ab"),
                ("k", "docs/readme-1.md"),
                ("k", "docs/readme-2.md"),
                ("k", "docs/readme.md"),
                ("p", "docs/xab"),
            ],
        ),
        ("", "s/", [("p", "docs/"), ("k", "photo"), ("p", "photos/"), ("k", "photos.txt"), ("k", "zeta")]),
        ("nothing", "/", []),
        ("photos/2023/jan/a.jpg", "/", [("k", "photos/2023/jan/a.jpg")]),
        ("photos/2023/jan/a.jpg/", "/", []),
        ("zeta/", "", []),
    ],
)
def test_prefix_and_delimiter(root: Path, prefix: str, delimiter: str, expected: list[Item]) -> None:
    bucket = root / "bkt"
    make_tree(bucket, TREE)
    expected_sorted = sorted(expected, key=lambda item: item[1].encode())
    assert expected_sorted == reference_listing(reference_keys(bucket, set()), prefix, delimiter, "")
    page = list_page(str(bucket), prefix, delimiter, "", 1000, marker_fn(set()), str(root))
    assert page_items(page) == expected_sorted
    assert page.is_truncated is False


def test_folder_marker_is_listed_under_its_own_prefix_and_rolls_up_otherwise(root: Path) -> None:
    bucket = root / "bkt"
    markers = make_tree(bucket, ["dir/f"], markers=["dir/", "dir/sub/", "empty/"])
    page = list_page(str(bucket), "dir/", "/", "", 1000, marker_fn(markers), str(root))
    assert keys_of(page) == ["dir/", "dir/f"]
    assert page.common_prefixes == ["dir/sub/"]  # an empty folder marker is an object, so it rolls up
    top = list_page(str(bucket), "", "/", "", 1000, marker_fn(markers), str(root))
    assert top.entries == [] and top.common_prefixes == ["dir/", "empty/"]
    # Paging one by one through a prefix whose folder marker is the first key.
    assert list_all(bucket, root, "dir/", "/", 1, markers) == [
        ("k", "dir/"),
        ("k", "dir/f"),
        ("p", "dir/sub/"),
    ]


@pytest.mark.parametrize(
    "prefix", ["", "a", "a/", "../", "/etc/", "a//b", "./a", "a/./b", "a\0b/", "\udcff/", "x" * 300 + "/"]
)
def test_hostile_prefixes_never_leave_the_bucket(root: Path, prefix: str) -> None:
    bucket = root / "bkt"
    make_tree(bucket, ["a/b", "a/c"])
    make_tree(root / "other", ["secret"])
    page = list_page(str(bucket), prefix, "/", "", 1000, marker_fn(set()), str(root))
    for entry in page.entries:
        assert entry.key.startswith(prefix)
        assert entry.path.startswith(str(bucket) + os.sep)
    expected = reference_listing(reference_keys(bucket, set()), prefix, "/", "")
    assert page_items(page) == expected


# -- pagination ------------------------------------------------------------------------------


def build_three_level(bucket: Path) -> tuple[list[str], set[str]]:
    keys = []
    for a in ("a", "a.b", "a-c", "b"):
        for b in ("x", "x.y", "x0", "é"):
            for c in ("1", "1/", "2", "\U0001f600"):
                if c == "1/":
                    continue
                keys.append(f"{a}/{b}/{c}")
    keys += ["a/x.txt", "a/x-", "top", "\U0001f600", "x/y/z/deep"]
    markers = make_tree(bucket, keys, markers=["a/", "b/é/", "c/"])
    return keys, markers


@pytest.mark.parametrize("max_keys", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize(
    ("prefix", "delimiter"),
    [("", ""), ("", "/"), ("a", "/"), ("a/", ""), ("a/x", "."), ("", "-"), ("", "x/")],
)
def test_pages_concatenate_to_the_full_listing(
    root: Path, max_keys: int, prefix: str, delimiter: str
) -> None:
    bucket = root / "bkt"
    _, markers = build_three_level(bucket)
    expected = reference_listing(reference_keys(bucket, markers), prefix, delimiter, "")
    assert expected  # the parameters are meant to select something
    assert list_all(bucket, root, prefix, delimiter, max_keys, markers) == expected


@pytest.mark.parametrize(
    "start_after",
    [
        "",
        "a",
        "a/",
        "a/x",
        "a/x/",
        "a/x/1",
        "a/x/2x",
        "a/x.z",
        "a0",
        "b/é/\U0001f600",
        "c",
        "c/",
        "zzz",
        "\U0010ffff",
        "0",
        " ",
    ],
)
@pytest.mark.parametrize("delimiter", ["", "/"])
def test_start_after_anywhere(root: Path, start_after: str, delimiter: str) -> None:
    bucket = root / "bkt"
    _, markers = build_three_level(bucket)
    keys = reference_keys(bucket, markers)
    page = list_page(str(bucket), "", delimiter, start_after, 1000, marker_fn(markers), str(root))
    assert page_items(page) == reference_listing(keys, "", delimiter, start_after)


def test_resuming_after_a_common_prefix_skips_everything_under_it(root: Path) -> None:
    bucket = root / "bkt"
    make_tree(bucket, ["a/1", "a/2", "a-x/1", "a-y", "a.z", "b"])
    pages = []
    start_after = ""
    while True:
        page = list_page(str(bucket), "", "/", start_after, 2, marker_fn(set()), str(root))
        pages.append(page_items(page))
        if not page.is_truncated:
            break
        start_after = page.next_marker or ""
    assert pages == [[("p", "a-x/"), ("k", "a-y")], [("k", "a.z"), ("p", "a/")], [("k", "b")]]
    # Directly after the common prefix "a/": no "a/" again, next comes "b".
    after = list_page(str(bucket), "", "/", "a/", 1000, marker_fn(set()), str(root))
    assert page_items(after) == [("k", "b")]
    # Multi-character delimiter: after "a-" every "a-..." key is skipped, even across directories.
    dash = list_page(str(bucket), "", "-", "a-", 1000, marker_fn(set()), str(root))
    assert page_items(dash) == [("k", "a.z"), ("k", "a/1"), ("k", "a/2"), ("k", "b")]
    # A start_after inside a common prefix but not the prefix itself: later keys roll up into it.
    inside = list_page(str(bucket), "", "/", "a/1", 1000, marker_fn(set()), str(root))
    assert page_items(inside) == [("p", "a/"), ("k", "b")]
    # A start_after ending in the delimiter that is a returned key (a folder marker), not a
    # common prefix: the keys under it still follow.
    markers = make_tree(bucket, ["m/k"], markers=["m/"])
    assert list_all(bucket, root, "m/", "/", 1, markers) == [("k", "m/"), ("k", "m/k")]


def test_max_keys_edges(root: Path) -> None:
    bucket = root / "bkt"
    make_tree(bucket, [f"k{i:04d}" for i in range(1005)])
    zero = list_page(str(bucket), "", "", "", 0, marker_fn(set()), str(root))
    assert zero == RawPage([], [], False, None)
    capped = list_page(str(bucket), "", "", "", 5000, marker_fn(set()), str(root))
    assert len(capped.entries) == 1000 and capped.is_truncated and capped.next_marker == "k0999"
    exact = list_page(str(bucket), "", "", "k0999", 5, marker_fn(set()), str(root))
    assert keys_of(exact) == ["k1000", "k1001", "k1002", "k1003", "k1004"]
    assert exact.is_truncated is False and exact.next_marker is None
    with pytest.raises(errors.S3Error) as info:
        list_page(str(bucket), "", "", "", -1, marker_fn(set()), str(root))
    assert info.value.code == "InvalidArgument"


# -- symlinks and odd files -----------------------------------------------------------------


def test_symlinks_inside_root_are_followed_outside_are_skipped(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bucket = root / "bkt"
    make_tree(bucket, ["real/f", "plain"])
    make_tree(root / "shared", ["s1", "sub/s2"])
    outside = Path(os.path.realpath(tmp_path_factory.mktemp("outside")))
    make_tree(outside, ["secret", "dir/secret2"])
    os.symlink(root / "shared", bucket / "in-dir")
    os.symlink(root / "shared" / "s1", bucket / "in-file")
    os.symlink(outside, bucket / "out-dir")
    os.symlink(outside / "secret", bucket / "out-file")
    os.symlink(bucket / "missing", bucket / "dangling")
    # Hidden state (ROOT/.s3serve: staging, metadata) is inside root but never reachable.
    make_tree(root / ".s3serve", ["tmp/upload-part"])
    os.symlink(root / ".s3serve", bucket / "hidden-dir")
    os.symlink(root / ".s3serve" / "tmp" / "upload-part", bucket / "hidden-file")
    os.symlink("../" * 20 + "etc", bucket / "relative-escape")
    page = list_page(str(bucket), "", "", "", 1000, marker_fn(set()), str(root))
    assert keys_of(page) == ["in-dir/s1", "in-dir/sub/s2", "in-file", "plain", "real/f"]
    by_key = {e.key: e for e in page.entries}
    assert Path(by_key["in-dir/sub/s2"].path).read_bytes() == b"sub/s2"
    assert Path(by_key["in-file"].path).read_bytes() == b"s1"
    # A prefix naming the escaping link is not followed either.
    assert list_page(str(bucket), "out-dir/", "", "", 1000, marker_fn(set()), str(root)).entries == []
    assert keys_of(list_page(str(bucket), "in-dir/s", "", "", 1000, marker_fn(set()), str(root))) == [
        "in-dir/s1",
        "in-dir/sub/s2",
    ]
    # Delimited: the escaping directory does not even become a common prefix.
    top = list_page(str(bucket), "", "/", "", 1000, marker_fn(set()), str(root))
    assert top.common_prefixes == ["in-dir/", "real/"]


def test_a_symlink_to_root_itself_is_not_followed(root: Path) -> None:
    # A link to ROOT listed every bucket below one key, and ROOT/.s3serve (staging, records,
    # the upload ids of other buckets) with them: _inside took ROOT itself for inside.
    bucket = root / "mine"
    make_tree(bucket, ["own"])
    make_tree(root / "other", ["theirs"])
    make_tree(root / ".s3serve", ["multipart/other/upload-1/upload.json"])
    os.symlink(root, bucket / "all")
    os.symlink(bucket / "all", bucket / "again")  # through another link
    assert keys_of(list_page(str(bucket), "", "", "", 1000, marker_fn(set()), str(root))) == ["own"]
    assert list_page(str(bucket), "", "/", "", 1000, marker_fn(set()), str(root)).common_prefixes == []
    assert list_page(str(bucket), "all/", "/", "", 1000, marker_fn(set()), str(root)) == RawPage([], [], False, None)
    assert list_page(str(bucket), "all/.s3serve/", "", "", 1000, marker_fn(set()), str(root)).entries == []


def test_names_longer_than_any_key_are_not_listed(root: Path) -> None:
    # Another program's file four 255-byte folders deep was listed under a 1,032-byte key that
    # GET and DELETE refuse (KeyTooLongError): a sync stopped on it.
    bucket = root / "bkt"
    deep = "/".join(["d" * 255] * 4)  # 1,023 bytes of folders
    longest = "/".join(["e" * 250] * 4) + "/" + "f" * 20  # exactly 1024 bytes
    wide = "/".join(["\u00e9" * 120] * 5) + "/x"  # 605 characters, 1,206 bytes
    make_tree(bucket, ["a", f"{deep}/too-long", longest, wide])
    assert len(longest.encode()) == 1024
    page = list_page(str(bucket), "", "", "", 1000, marker_fn(set()), str(root))
    assert keys_of(page) == ["a", longest]


def test_a_folder_of_only_over_long_names_does_not_roll_up(root: Path) -> None:
    # Its common prefix would lead a client to a listing with nothing in it.
    bucket = root / "bkt"
    deep = "/".join(["d" * 255] * 4)
    make_tree(bucket, ["a", f"{deep}/too-long", f"long/{deep}/too-long", f"long/{'e' * 255}/ok"])
    page = list_page(str(bucket), "", "/", "", 1000, marker_fn(set()), str(root))
    assert (keys_of(page), page.common_prefixes) == (["a"], ["long/"])
    page = list_page(str(bucket), "long/", "/", "", 1000, marker_fn(set()), str(root))
    assert (keys_of(page), page.common_prefixes) == ([], [f"long/{'e' * 255}/"])


def test_symlink_loops_terminate(root: Path) -> None:
    bucket = root / "bkt"
    make_tree(bucket, ["a/f", "b/g"])
    os.symlink(bucket, bucket / "a" / "up")  # to the bucket itself
    os.symlink(bucket / "b", bucket / "a" / "to-b")  # fine: b is not an ancestor of a
    os.symlink(bucket / "a", bucket / "b" / "to-a")  # a -> to-b -> to-a is a loop
    os.symlink("self", bucket / "self")  # ELOOP
    page = list_page(str(bucket), "", "", "", 1000, marker_fn(set()), str(root))
    # Each link is followed until it would re-enter a directory already on the path.
    assert keys_of(page) == ["a/f", "a/to-b/g", "b/g", "b/to-a/f"]
    # The delimited and prefixed variants stop too.
    assert list_page(str(bucket), "", "/", "", 1000, marker_fn(set()), str(root)).common_prefixes == [
        "a/",
        "b/",
    ]
    assert list_page(str(bucket), "a/up/", "", "", 1000, marker_fn(set()), str(root)).entries == []


def test_fifos_sockets_and_undecodable_names_are_skipped(root: Path) -> None:
    bucket = root / "bkt"
    make_tree(bucket, ["ok", "d/ok2"])
    os.mkfifo(bucket / "fifo")
    os.mkfifo(bucket / "d" / "fifo2")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path = bucket / "sock"
    try:
        sock.bind(str(sock_path))
        with open(os.path.join(os.fsencode(bucket), b"bad-\xff"), "wb") as f:
            f.write(b"x")
        os.mkdir(os.path.join(os.fsencode(bucket), b"baddir-\xfe"))
        with open(os.path.join(os.fsencode(bucket), b"baddir-\xfe", b"inner"), "wb") as f:
            f.write(b"x")
        page = list_page(str(bucket), "", "", "", 1000, marker_fn(set()), str(root))
        assert keys_of(page) == ["d/ok2", "ok"]
        assert list_page(str(bucket), "", "/", "", 1000, marker_fn(set()), str(root)).common_prefixes == [
            "d/"
        ]
    finally:
        sock.close()


def test_missing_bucket_and_bucket_outside_root(root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert list_page(str(root / "nope"), "", "", "", 10, marker_fn(set()), str(root)) == RawPage(
        [], [], False, None
    )
    outside = tmp_path_factory.mktemp("elsewhere")
    make_tree(outside, ["x"])
    assert list_page(str(outside), "", "", "", 10, marker_fn(set()), str(root)).entries == []


def test_vanishing_directory_mid_walk_is_skipped(root: Path) -> None:
    bucket = root / "bkt"
    make_tree(bucket, ["a/1", "b/1", "c/1"])
    real_scandir = os.scandir

    def scandir_removing_b(path: str) -> Iterator[os.DirEntry[str]]:
        if path == str(bucket / "b"):
            (bucket / "b" / "1").unlink()
            (bucket / "b").rmdir()
        return real_scandir(path)  # type: ignore[return-value]

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(listing, "_scandir", scandir_removing_b)
        page = list_page(str(bucket), "", "", "", 1000, marker_fn(set()), str(root))
    finally:
        mp.undo()
    assert keys_of(page) == ["a/1", "c/1"]


# -- randomized comparison against the reference --------------------------------------------

ALPHABET = ["a", "b", "-", ".", "0", "é", "\U0001d11e", "z", "ab", "A"]
DELIMITERS = ["", "/", "-", "a", "ab", "a/", ".", "/b"]


def random_tree(rng: random.Random, bucket: Path) -> set[str]:
    markers: set[str] = set()

    def fill(path: Path, depth: int) -> None:
        names = {
            "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 7))
        }
        names -= {".", ".."}
        for name in names:
            child = path / name
            if depth < 3 and rng.random() < 0.45:
                child.mkdir()
                if rng.random() < 0.3:
                    markers.add(str(child))
                fill(child, depth + 1)
            else:
                child.write_bytes(b"")

    bucket.mkdir(parents=True)
    fill(bucket, 0)
    return markers


def random_probe(rng: random.Random, keys: list[str]) -> str:
    choice = rng.random()
    if keys and choice < 0.5:
        key = rng.choice(keys)
        return key[: rng.randint(0, len(key))]
    if choice < 0.8:
        return "".join(rng.choice(ALPHABET + ["/"]) for _ in range(rng.randint(0, 4)))
    return ""


def test_randomized_against_reference(root: Path) -> None:
    rng = random.Random(20240611)
    for n in range(60):
        bucket = root / f"b{n}"
        markers = random_tree(rng, bucket)
        keys = reference_keys(bucket, markers)
        for _ in range(12):
            prefix = random_probe(rng, keys)
            delimiter = rng.choice(DELIMITERS)
            start_after = random_probe(rng, keys) if rng.random() < 0.5 else ""
            expected = reference_listing(keys, prefix, delimiter, start_after)
            page = list_page(str(bucket), prefix, delimiter, start_after, 1000, marker_fn(markers), str(root))
            assert page_items(page) == expected, (n, prefix, delimiter, start_after)
            max_keys = rng.choice([1, 2, 3, 5])
            assert list_all(bucket, root, prefix, delimiter, max_keys, markers, start_after) == expected, (
                n,
                prefix,
                delimiter,
                start_after,
                max_keys,
            )
