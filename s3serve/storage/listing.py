"""One pagination engine for ListObjects / ListObjectsV2 over a directory tree.

Keys must come out in UTF-8 byte order (Python ``str`` order of code points is the same order),
which is not the order of a naive sorted directory walk: a directory ``a`` holds keys that all
start with ``a/``, so among its siblings it sorts as ``a/`` ("a.c" < "a/b" < "a0"). Sorting each
directory by ``name + '/'`` for directories makes a depth-first walk emit keys in key order.

Cost is kept independent of the page's position:
- a prefix descends straight to the deepest directory it names;
- ``start_after`` is reached by descending along its path, skipping siblings below it;
- a directory that rolls up into one common prefix is never walked: it only has to prove that it
  holds at least one object (the first one found ends the search);
- after a common prefix the walk skips everything under it inside the directories it has
  already read, instead of iterating those keys.

Symlinks are followed only when they resolve inside ``root``; a directory whose real path is an
ancestor's is skipped, so a symlink loop cannot hang the walk. Names that are not valid UTF-8,
non-regular files and entries that vanish mid-walk are skipped.

This runs in a worker thread (blocking I/O, one call per page) and knows nothing of HTTP.
"""

from __future__ import annotations

import bisect
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from s3serve import errors

from . import dirnames
from .base import UploadInfo, UploadListPage
from .dirnames import Names, classified, valid_name
from .keys import MAX_KEY_BYTES, is_inside

MAX_KEYS = 1000

# Indirection so tests can count directory reads without timing anything.
_scandir = os.scandir


@dataclass
class Entry:
    key: str  # object key
    path: str  # absolute filesystem path of the file (or of the directory, for a "key/" folder marker)
    is_dir: bool  # True for a folder marker


@dataclass
class RawPage:
    entries: list[Entry]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str | None  # last key or common prefix returned, when truncated


@dataclass(slots=True)
class _Child:
    """One entry of a frame, made only for the entries the walk reaches."""

    sort_key: str  # name, plus '/' for a directory: where the keys below it sort among siblings
    path: str
    is_dir: bool
    real: str  # real path (only meaningful for directories, for loop detection)


@dataclass
class _Bound:
    """Keys must be > ``key``; with ``past`` they must also not start with it (resume after a
    common prefix)."""

    key: str
    past: bool = False


@dataclass
class _Frame:
    path: str
    rel: str  # key prefix of everything in this directory ("" for the bucket, else "a/b/")
    real: str
    children: list[str]  # the sort keys of the directory's entries, in order (dirnames.Names)
    links: dict[str, str]  # sort key -> real path of the entries that are symlinks
    index: int = 0
    # Lower bound still in force inside this directory (None once every key below is past it).
    bound: _Bound | None = None


# What a lower bound says about a whole directory subtree.
_SKIP, _DESCEND, _ALL = 0, 1, 2


# Keys of at most this many characters are within S3's 1024 bytes whatever they hold (4 bytes a
# character at most in UTF-8): only longer ones are encoded to be measured.
_SURELY_SHORT = MAX_KEY_BYTES // 4


def _denied() -> errors.S3Error:
    return errors.AccessDenied("The server's filesystem does not allow it to read the folder this listing starts in.")


def _scan(path: str, real: str, root: str, name_prefix: str = "", strict: bool = False) -> Names:
    """The listable entries of one directory, in key order. Unreadable or vanished -> empty; with
    ``strict`` (the folder the listing starts in) unreadable is AccessDenied: an empty page would
    tell a client, or a sync tool about to delete its copies, that nothing is there. Folders
    met further down are skipped instead, so one of them cannot fail a whole bucket's listing."""
    try:
        names = dirnames.read(path, real, root, _scandir)
    except PermissionError:
        if strict:
            raise _denied() from None
        return _NOTHING
    except OSError:
        return _NOTHING
    if not name_prefix:
        return names
    # A name_prefix holds no '/': the sort keys starting with it are those of the names that do,
    # one run of the sorted list.
    keys = names.keys
    lo = bisect.bisect_left(keys, name_prefix)
    hi = bisect.bisect_left(keys, 1, lo=lo, key=lambda k: 0 if k.startswith(name_prefix) else 1)
    return Names(keys[lo:hi], names.links)


_NOTHING = Names([], {})


def _child(frame: _Frame, sort_key: str) -> _Child:
    if sort_key[-1] == "/":
        name = sort_key[:-1]
        real = frame.links.get(sort_key) or os.path.join(frame.real, name)
        return _Child(sort_key, os.path.join(frame.path, name), True, real)
    return _Child(sort_key, os.path.join(frame.path, sort_key), False, frame.links.get(sort_key, ""))


def _decide(bound: _Bound | None, key: str) -> int:
    """Where a directory whose keys all start with ``key`` (ending in '/') stands against a bound."""
    if bound is None:
        return _ALL
    b = bound.key
    if bound.past and key.startswith(b):
        return _SKIP
    if b.startswith(key):
        return _DESCEND
    return _ALL if key > b else _SKIP


def _key_ok(bound: _Bound | None, key: str) -> bool:
    if bound is None:
        return True
    return key > bound.key and not (bound.past and key.startswith(bound.key))


class _Walker:
    """Depth-first walk in key order, yielding Entry objects and common prefixes (str)."""

    def __init__(
        self,
        root: str,
        prefix: str,
        delimiter: str,
        bound: _Bound | None,
        is_folder_marker: Callable[[str], bool],
        ancestors: set[str],
    ) -> None:
        self.root = root
        self.prefix = prefix
        self.delimiter = delimiter
        self.bound = bound
        self.is_folder_marker = is_folder_marker
        self.stack: list[_Frame] = []
        # Real paths of the directories on the current path from the bucket down (loop guard).
        self.ancestors = ancestors

    def start(
        self, path: str, rel: str, real: str, name_prefix: str, strict: bool = False
    ) -> Iterator[Entry | str]:
        """Walk the directory ``path`` (key prefix ``rel``), only entries starting with
        ``name_prefix`` at its top level; ``strict``: see _scan."""
        bound = self.bound
        if bound is not None:
            decision = _decide(bound, rel) if rel else _DESCEND
            if decision == _SKIP:
                return
            if decision == _ALL:
                bound = None
        # The directory's own folder marker (key == rel) is the first key under it; it is in the
        # listing only when the prefix is exactly this directory ("a/b/"), so it never rolls up.
        if rel and rel.startswith(self.prefix) and bound is None and self._marker(path):
            yield Entry(rel, path, True)
        names = _scan(path, real, self.root, name_prefix, strict)
        self._push(_Frame(path, rel, real, names.keys, names.links, 0, bound))
        yield from self._run()

    def _marker(self, path: str) -> bool:
        try:
            return self.is_folder_marker(path)
        except OSError:
            return False

    def _push(self, frame: _Frame) -> None:
        if frame.bound is not None:
            frame.index = self._seek(frame, frame.bound)
        self.stack.append(frame)
        self.ancestors.add(frame.real)

    def _pop(self) -> None:
        self.ancestors.discard(self.stack.pop().real)

    @staticmethod
    def _seek(frame: _Frame, bound: _Bound) -> int:
        """First child that can hold a key above the bound (children below it are skipped)."""
        rest = bound.key[len(frame.rel) :]
        slash = rest.find("/")
        # Children sorting below the bound's next path component hold only keys below the bound.
        component = rest if slash < 0 else rest[: slash + 1]
        i = bisect.bisect_left(frame.children, component)
        while i < len(frame.children):
            sort_key = frame.children[i]
            key = frame.rel + sort_key
            if (_decide(bound, key) != _SKIP) if sort_key[-1] == "/" else _key_ok(bound, key):
                break
            i += 1
        return i

    def _rollup(self, key: str) -> str | None:
        """The common prefix ``key`` (and, for a directory key, everything under it) rolls up into."""
        if not self.delimiter:
            return None
        rest = key[len(self.prefix) :]
        idx = rest.find(self.delimiter)
        if idx < 0:
            return None
        # For a directory key the first delimiter inside it is also the first in every key below.
        return self.prefix + rest[: idx + len(self.delimiter)]

    def _run(self) -> Iterator[Entry | str]:
        while self.stack:
            frame = self.stack[-1]
            if frame.index >= len(frame.children):
                self._pop()
                continue
            sort_key = frame.children[frame.index]
            frame.index += 1
            key = frame.rel + sort_key
            if _too_long(key):
                continue  # a name no S3 request can give (GET, DELETE: KeyTooLongError), nor any below
            bound = frame.bound
            if sort_key[-1] != "/":
                if not _key_ok(bound, key):
                    continue
                cp = self._rollup(key)
                if cp is None:
                    yield Entry(key, os.path.join(frame.path, sort_key), False)
                else:
                    yield cp
                    self._skip_past(cp)
                continue
            decision = _decide(bound, key)
            if decision == _SKIP:
                continue
            child = _child(frame, sort_key)
            if child.real in self.ancestors:
                continue
            sub_bound = bound if decision == _DESCEND else None
            cp = self._rollup(key)
            if cp is not None:
                # Every key below rolls up into cp: only prove one object is there, don't walk it.
                if self._has_object(child, key, sub_bound):
                    yield cp
                    self._skip_past(cp)
                continue
            # With a bound cutting through this directory its marker (key < bound) is excluded.
            if sub_bound is None and self._marker(child.path):
                yield Entry(key, child.path, True)
            names = _scan(child.path, child.real, self.root)
            self._push(_Frame(child.path, key, child.real, names.keys, names.links, 0, sub_bound))

    def _skip_past(self, cp: str) -> None:
        """Move the walk past every key starting with ``cp``, using only directories already read."""
        while self.stack and self.stack[-1].rel.startswith(cp):
            self._pop()
        for frame in self.stack:
            # Every remaining frame's rel is a prefix of cp. From the walk's position on, the
            # children holding keys under cp form one run; binary-search its end, not iterate it.
            rest = cp[len(frame.rel) :]

            def outside(sort_key: str, rest: str = rest) -> int:
                return 0 if sort_key.startswith(rest) else 1

            frame.index = bisect.bisect_left(frame.children, 1, lo=frame.index, key=outside)

    def _has_object(self, child: _Child, key: str, bound: _Bound | None) -> bool:
        if bound is not None:
            # The bound cuts through this directory: find the first key above it, in order.
            sub = _Walker(self.root, self.prefix, "", bound, self.is_folder_marker, set(self.ancestors))
            return next(sub.start(child.path, key, child.real, ""), None) is not None
        return _any_object(child.path, child.real, key, self.root, self.is_folder_marker, self.ancestors)


def _too_long(key: str) -> bool:
    return len(key) > _SURELY_SHORT and len(key.encode("utf-8")) > MAX_KEY_BYTES


def _any_object(
    path: str, real: str, key: str, root: str, is_folder_marker: Callable[[str], bool], ancestors: set[str]
) -> bool:
    """Whether the directory (whose key is ``key``) is a folder marker or holds any object, in any
    order: stops reading at the first regular file whose key S3 allows, and goes depth-first into
    subdirectories only when it has none."""
    try:
        if is_folder_marker(path):
            return True
    except OSError:
        return False
    # (path, real, subdirectories still to try) per level: an explicit stack, since a foreign
    # tree can be deeper than Python's recursion limit.
    seen = set(ancestors)
    pending: list[tuple[str, str, str]] = [(path, real, key)]
    while pending:
        dir_path, dir_real, dir_key = pending.pop()
        if dir_real in seen:
            continue
        seen.add(dir_real)
        subdirs: list[tuple[str, str, str]] = []
        try:
            with _scandir(dir_path) as it:
                for entry, kind in classified(it, dir_real, root):
                    if kind is None:
                        continue
                    is_dir, child_real = kind
                    child_key = dir_key + entry.name + ("/" if is_dir else "")
                    if _too_long(child_key):
                        continue  # left out of listings, as is all below it
                    if not is_dir:
                        return True
                    subdirs.append((entry.path, child_real, child_key))
        except OSError:
            continue
        # Depth-first in name order (reversed onto the stack): a folder marker is itself an object.
        subdirs.sort(reverse=True)
        for sub_path, sub_real, _ in subdirs:
            try:
                if sub_real not in seen and is_folder_marker(sub_path):
                    return True
            except OSError:
                continue
        pending.extend(subdirs)
    return False


def _descend(bucket_dir: str, bucket_real: str, dir_part: str, root: str) -> tuple[str, str, set[str]] | None:
    """Path and real path of the directory ``dir_part`` ("a/b/") names, with the real paths of the
    directories on the way; None when no listable key can start with it."""
    path, real = bucket_dir, bucket_real
    ancestors = {bucket_real}
    for comp in dir_part.split("/")[:-1]:
        # No key has an empty, "." or ".." segment, a NUL or an undecodable byte; and such a
        # component must never be joined into a path.
        if comp in ("", ".", "..") or "\0" in comp or not valid_name(comp):
            return None
        path = os.path.join(path, comp)
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(path)
                if not is_inside(root, real):
                    return None
                st = os.stat(real)
            else:
                real = os.path.join(real, comp)
        except PermissionError:
            raise _denied() from None
        except (OSError, ValueError):
            return None
        if not stat.S_ISDIR(st.st_mode) or real in ancestors:
            return None
        ancestors.add(real)
    ancestors.discard(real)  # the walk adds the start directory itself
    return path, real, ancestors


def list_page(
    bucket_dir: str,
    prefix: str,
    delimiter: str,
    start_after: str,
    max_keys: int,
    is_folder_marker: Callable[[str], bool],
    root: str,
) -> RawPage:
    """One page of keys > start_after that start with prefix, in UTF-8 byte order, grouped by
    delimiter. Each common prefix counts once towards max_keys."""
    if max_keys < 0:
        raise errors.InvalidArgument("max-keys must be between 0 and 1000")
    max_keys = min(max_keys, MAX_KEYS)
    if max_keys == 0:
        return RawPage([], [], False, None)
    root = os.path.realpath(root)
    bucket_dir = os.path.abspath(bucket_dir)
    bucket_real = os.path.realpath(bucket_dir)
    if not is_inside(root, bucket_real) or not os.path.isdir(bucket_real):
        return RawPage([], [], False, None)

    # Resuming after a common prefix a previous page returned skips everything under it. It has
    # exactly a common prefix's shape: prefix + text whose first delimiter is at its very end.
    # (A returned key never has that shape, since such a key would have rolled up.)
    rest = start_after[len(prefix) :] if start_after.startswith(prefix) else ""
    idx = rest.find(delimiter) if delimiter else -1
    past = idx >= 0 and idx + len(delimiter) == len(rest)
    bound = _Bound(start_after, past) if start_after else None

    slash = prefix.rfind("/")
    dir_part, name_prefix = prefix[: slash + 1], prefix[slash + 1 :]
    start = _descend(bucket_dir, bucket_real, dir_part, root)
    if start is None:
        return RawPage([], [], False, None)
    path, real, ancestors = start
    walker = _Walker(root, prefix, delimiter, bound, is_folder_marker, ancestors)
    items = walker.start(path, dir_part, real, name_prefix, strict=True)

    entries: list[Entry] = []
    prefixes: list[str] = []
    last: str | None = None
    for item in items:
        if len(entries) + len(prefixes) == max_keys:
            return RawPage(entries, prefixes, True, last)
        if isinstance(item, Entry):
            entries.append(item)
            last = item.key
        else:
            prefixes.append(item)
            last = item
    return RawPage(entries, prefixes, False, None)



def page_uploads(
    uploads: list[UploadInfo], prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
) -> UploadListPage:
    """One ListMultipartUploads page: uploads in UTF-8 byte order of key, then upload id, with
    delimiter roll-up into common prefixes and the key/upload-id markers S3 resumes from."""
    uploads = sorted(uploads, key=lambda u: (u.key.encode("utf-8", "surrogateescape"), u.upload_id))
    marker = key_marker.encode("utf-8", "surrogateescape")
    page = UploadListPage([], [], False)
    last: tuple[str, str | None] | None = None
    for up in uploads:
        if not up.key.startswith(prefix):
            continue
        encoded = up.key.encode("utf-8", "surrogateescape")
        cut = up.key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            common = up.key[: cut + len(delimiter)]
            if common.encode("utf-8", "surrogateescape") <= marker or common in page.common_prefixes[-1:]:
                continue
            entry: tuple[str, str | None] = (common, None)
        else:
            if key_marker and (encoded < marker or (encoded == marker and (not upload_id_marker or up.upload_id <= upload_id_marker))):
                continue
            entry = (up.key, up.upload_id)
        if len(page.uploads) + len(page.common_prefixes) >= max_uploads:
            page.is_truncated = True
            break
        if entry[1] is None:
            page.common_prefixes.append(entry[0])
        else:
            page.uploads.append(up)
        last = entry
    if page.is_truncated and last is not None:
        page.next_key_marker, page.next_upload_id_marker = last[0], last[1]
    return page


__all__ = ["Entry", "RawPage", "list_page", "page_uploads", "MAX_KEYS"]
