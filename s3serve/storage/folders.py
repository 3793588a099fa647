"""Folder markers ("key/" objects, which are real folders here) and the pruning of folders that a
delete or rename left empty."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import errors
from . import keys
from .keys import KeyPath
from .metadata import XATTR, Record

if TYPE_CHECKING:
    from .disk import DiskBackend


def make_folder(disk: DiskBackend, bucket: str, bdir: str, kp: KeyPath, path: str, record: Record) -> list[str]:
    """Make the folder marker at ``path``; the folders to fsync for it to be durable (the
    marker itself, which carries the record, and the folders whose entries changed)."""
    created: list[str] = []
    for _ in range(keys.PLACE_ATTEMPTS):
        made = keys.ensure_parents(disk._real_root, bdir, kp)
        if made is None:
            continue
        created += [folder for folder in made if folder not in created]
        # In a checked descriptor of the parent: never a folder made (and a record written) out
        # of ROOT through a folder on the way that another program swapped for a symlink.
        with keys.folder_of(disk._real_root, path) as parent_fd:
            if parent_fd is None:
                continue  # pruned by a concurrent delete, or changed: ensure_parents looks again
            name = os.path.basename(path)
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_fd=parent_fd)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            except FileNotFoundError:
                continue  # pruned by a concurrent delete
            except (NotADirectoryError, OSError) as e:
                if e.errno in (errno.ENOTDIR, errno.ELOOP):
                    # "a/" where the object "a" is a file (or a symlink we will not follow).
                    raise errors.ObjectParentIsFile(resource=kp.key) from None
                raise
        try:
            record.folder = True
            record.stamp(os.fstat(fd))
            record.mtime_ns = time.time_ns()
            disk.meta.store(fd, bucket, kp.key, record)
        finally:
            os.close(fd)
        return [path, *keys.changed_folders(path, created)]
    raise errors.OperationAborted(resource=kp.key)


def _rmdir(disk: DiskBackend, path: str) -> None:
    """rmdir through a checked descriptor of the parent, so it never removes a folder out of ROOT."""
    with keys.folder_of(disk._real_root, path) as parent_fd:
        if parent_fd is None:
            raise FileNotFoundError(errno.ENOENT, "the folder is gone or leads out of ROOT", path)
        os.rmdir(os.path.basename(path), dir_fd=parent_fd)


class PruneTurns:
    """The folders whose emptiness this process is checking now. Concurrent deletes in one folder
    each pruned it, and under its lock: 16 at once took turns by polling that lock, a ~1 ms sleep
    per miss, several per delete (bench/RESULTS.md). Now a prune that finds a check of its folder
    under way, by a caller at least as patient, asks that caller to look once more after it
    ends (the new look starts after this caller's change, so it sees it) and returns."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        # folder -> [patience of the caller checking it, whether someone asked for another look]
        self._under_way: dict[str, list[Any]] = {}

    def join(self, directory: str, patience: float) -> bool | None:
        """True: the caller checks ``directory`` (and calls ``finish``); None: a check under way
        looks again for it; False: the caller checks without a turn (that check is less patient)."""
        with self._mutex:
            turn = self._under_way.get(directory)
            if turn is None:
                self._under_way[directory] = [patience, False]
                return True
            if turn[0] < patience:
                return False
            turn[1] = True
            return None

    def finish(self, directory: str) -> bool:
        """Whether to look again: someone joined during the look that just ended."""
        with self._mutex:
            turn = self._under_way[directory]
            if turn[1]:
                turn[1] = False
                return True
            del self._under_way[directory]
            return False

    def abandon(self, directory: str) -> None:
        with self._mutex:
            self._under_way.pop(directory, None)


def prune(
disk: DiskBackend, bucket: str, bdir: str, directory: str, held: frozenset[int], patience: float = 0.0
) -> None:
    """Remove folders left empty by a delete or rename, up to the bucket, keeping markers.

    Each folder is removed under its own "key/" lock, so a concurrent PutObject of that folder
    marker is never undone. A busy lock is skipped, after up to ``patience`` seconds of
    retrying (worker threads only): the holder is usually another process's prune that found the
    folder not yet empty, and without a retry the last delete would leave it behind. Never a
    blocking wait: the key locks already held could close a cycle."""
    while directory.startswith(bdir + os.sep):
        key = directory[len(bdir) + 1 :].replace(os.sep, "/") + "/"
        slot = disk.locks.slot(bucket, key)
        # A caller holding the folder's lock slot (its own key's, by a hash collision) checks by
        # itself: the one with the turn could not take that lock.
        turn = disk.prune_turns.join(directory, patience) if slot not in held else False
        if turn is None:
            return
        try:
            removed = _remove_if_empty(disk, bucket, directory, key, slot, held, patience)
            while turn and disk.prune_turns.finish(directory):
                # Removed by an earlier look, the parent lost an entry all the same.
                removed = _remove_if_empty(disk, bucket, directory, key, slot, held, patience) or removed
            turn = False
        finally:
            if turn:
                disk.prune_turns.abandon(directory)
        if not removed:
            return
        directory = os.path.dirname(directory)


def _remove_if_empty(
    disk: DiskBackend, bucket: str, directory: str, key: str, slot: int, held: frozenset[int], patience: float
) -> bool:
    """rmdir ``directory`` under its lock if it is empty and no folder marker; whether it did."""
    lock = None if slot in held else disk.locks.try_lock(slot)
    deadline = time.monotonic() + patience
    while lock is None and slot not in held and time.monotonic() < deadline:
        time.sleep(0.001)
        lock = disk.locks.try_lock(slot)
    if lock is None and slot not in held:
        return False
    try:
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or disk.meta.load(directory, bucket, key, st) is not None:
            return False
        _rmdir(disk, directory)
        return True
    except OSError:
        return False  # not empty (or gone): the usual way a prune ends
    finally:
        if lock is not None:
            os.close(lock)


def drop_marker(
disk: DiskBackend, bucket: str, bdir: str, kp: KeyPath, real: str, record: Record, held: frozenset[int]
) -> None:
    if disk.meta.use_xattrs:
        with contextlib.suppress(OSError):
            os.removexattr(real, XATTR)
    disk.meta.forget(bucket, kp.key, record)
    path = keys.object_path(bdir, kp)
    with contextlib.suppress(OSError):
        _rmdir(disk, path)  # only when empty: keys below it stay
    prune(disk, bucket, bdir, os.path.dirname(path), held)
