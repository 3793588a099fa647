"""The listable entries of one directory in key order, as the listing walk reads them; those of
large directories kept, by the directory's stamp, for the next page.

Every page of a listing reads each directory it passes through whole, since the kernel hands
entries out in hash order, not key order. For a flat folder of 200,000 files that was ~0.5 s of
reading, classifying and sorting a page, so a client walking it page by page (``aws s3 ls``,
``sync``) spent minutes on what it reads in seconds from S3. A directory's names can only change
with its mtime and ctime (a create, unlink or rename in it sets both), so the sorted names of a
large directory are kept under its stamp and the next page only finds its place in them.

Entries are kept as their sort keys alone (a name, plus '/' for a directory): plain strings sort
and bisect in C, and a page builds paths only for the few hundred entries it walks. A directory
holding symlinks is never kept: where a link leads (a file, a folder, or outside the root) can
change without its folder's stamp changing.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .keys import is_inside
from .metadata import settled

# Smaller directories are read again each time: a few milliseconds at most.
KEEP_MIN_ENTRIES = 1000
# Memory the kept names take over all directories, as Python holds them: 200,000 names of 20
# characters take ~14 MB, and names of 255 bytes four times as much.
KEEP_MAX_BYTES = 32 << 20

Scandir = Callable[[str], AbstractContextManager[Iterator[os.DirEntry[str]]]]


@dataclass(frozen=True, slots=True)
class Names:
    keys: list[str]  # sort keys in order: a name, plus '/' for a directory
    links: dict[str, str]  # sort key -> real path, for the entries that are symlinks


def size_of(keys: list[str]) -> int:
    """Bytes the names take in memory: each str object, and its slot in the list."""
    return sum(map(sys.getsizeof, keys)) + 8 * len(keys)


def valid_name(name: str) -> bool:
    # os.fsdecode turns undecodable bytes into lone surrogates; such a name has no S3 key.
    if name.isascii():  # most names, told without encoding them (a flag of the str)
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def classify(entry: os.DirEntry[str], parent_real: str, root: str) -> tuple[bool, str] | None:
    """(is_dir, real path) for a regular file or a directory that may be listed, else None."""
    if entry.is_symlink():
        real = os.path.realpath(entry.path)
        if not is_inside(root, real):
            return None
        st = os.stat(real)
        if stat.S_ISDIR(st.st_mode):
            return True, real
        if stat.S_ISREG(st.st_mode):
            return False, real
        return None
    if entry.is_dir(follow_symlinks=False):
        return True, os.path.join(parent_real, entry.name)
    if entry.is_file(follow_symlinks=False):
        return False, ""
    return None  # fifo, socket, device


def classified(
    entries: Iterator[os.DirEntry[str]], parent_real: str, root: str
) -> Iterator[tuple[os.DirEntry[str], tuple[bool, str] | None]]:
    """Each entry whose name can be a key, with what classify says of it (None: not listed)."""
    for entry in entries:
        if not valid_name(entry.name):
            continue
        try:
            yield entry, classify(entry, parent_real, root)
        except OSError:
            # Vanished, permission denied or a symlink loop (ELOOP) on this one entry: it cannot
            # be served either, so it is not listed.
            yield entry, None


def _read(path: str, root: str, scandir: Scandir) -> tuple[Names, bool]:
    """Read the directory, and whether it holds a symlink, listed or not (OSError as the caller's
    to handle)."""
    keys: list[str] = []
    links: dict[str, str] = {}
    any_link = False
    append = keys.append
    with scandir(path) as it:
        for entry, kind in classified(it, path, root):
            # Dangling, leading outside the root or to a fifo, a link left out now can lead to a
            # file later, with no change to this folder's stamp.
            try:
                any_link = any_link or entry.is_symlink()
            except OSError:
                any_link = True  # an entry that cannot be told apart is taken for one
            if kind is None:
                continue
            name = entry.name
            is_dir, real = kind
            if is_dir:
                name += "/"
            if entry.is_symlink():
                links[name] = real
            append(name)
    keys.sort()
    return Names(keys, links), any_link


class _Kept:
    """Sorted names of large directories by real path, least recently read first out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # pages are read in worker threads
        self._dirs: OrderedDict[str, tuple[tuple[int, int, int, int], Names, int]] = OrderedDict()
        self._bytes = 0

    def get(self, real: str, stamp: tuple[int, int, int, int]) -> Names | None:
        with self._lock:
            kept = self._dirs.get(real)
            if kept is None or kept[0] != stamp:
                return None
            self._dirs.move_to_end(real)
            return kept[1]

    def put(self, real: str, stamp: tuple[int, int, int, int], names: Names, size: int) -> None:
        with self._lock:
            old = self._dirs.pop(real, None)
            if old is not None:
                self._bytes -= old[2]
            self._dirs[real] = (stamp, names, size)
            self._bytes += size
            while self._bytes > KEEP_MAX_BYTES and self._dirs:
                _, (_, _, dropped) = self._dirs.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._dirs.clear()
            self._bytes = 0


KEPT = _Kept()


def read(path: str, real: str, root: str, scandir: Scandir = os.scandir) -> Names:
    """The listable entries of the directory ``path`` (whose real path is ``real``), in key order.
    OSError (unreadable, vanished) is the caller's to handle."""
    # The stamp is taken before the names: a change while they are read gives the directory a
    # later stamp than the one they are kept under, so they are never used again.
    st = os.stat(path)
    stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    names = KEPT.get(real, stamp)
    if names is not None:
        return names
    # A stamp too recent may be shared with a change still to come (coarse timestamps): one made
    # while the names are read, too, so it must have aged when taken, not once they are read.
    trusted = settled(st)
    names, any_link = _read(path, root, scandir)
    if len(names.keys) >= KEEP_MIN_ENTRIES and not any_link and trusted:
        size = size_of(names.keys)
        # A folder of more names than may be kept at all would only push the others out, then itself.
        if size <= KEEP_MAX_BYTES:
            KEPT.put(real, stamp, names, size)
    return names
