"""Folder markers ("key/" objects, which are real folders here) and the pruning of folders that a
delete or rename left empty."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from typing import TYPE_CHECKING, Literal

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
            try:
                os.mkdir(name, dir_fd=parent_fd)
            except FileExistsError:
                pass
            except FileNotFoundError:
                continue  # the parent pruned by a concurrent delete since it was opened
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
    """Who looks at each folder a prune of this process is at. Concurrent deletes in one folder
    each pruned it, and under its lock: 16 at once took turns by polling that lock, a ~1 ms sleep
    per miss, several per delete (bench/RESULTS.md). Now one caller looks at a time, one more
    waits for the look under way to end (it began before that caller's change, so it may miss
    it), and the rest return at once: the waiting caller's look begins after their changes."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._turns: dict[str, _Turn] = {}

    def begin(self, directory: str, patience: float) -> Literal["look", "covered", "alone"]:
        """"look": the caller's turn (it calls ``end`` after); "covered": a waiting caller at least
        as patient looks after this call; "alone": look without a turn. Waits only where
        ``patience`` allows it to (worker threads), for one look under way."""
        with self._mutex:
            turn = self._turns.get(directory)
            if turn is None:
                self._turns[directory] = _Turn()
                return "look"
            if turn.gate is not None:
                return "covered" if turn.patience >= patience else "alone"
            if patience <= 0:
                return "alone"  # the event loop never waits
            gate = threading.Lock()
            gate.acquire()
            turn.gate, turn.patience = gate, patience
        gate.acquire()  # released by end() of the look under way
        return "look"

    def end(self, directory: str) -> None:
        with self._mutex:
            turn = self._turns[directory]
            gate, turn.gate, turn.patience = turn.gate, None, 0.0
            if gate is None:
                del self._turns[directory]
        if gate is not None:
            gate.release()  # the waiting caller's turn

    def waiting(self, directory: str) -> bool:
        """Whether a caller waits for its turn at ``directory`` (observable: the tests wait for it)."""
        with self._mutex:
            turn = self._turns.get(directory)
            return turn is not None and turn.gate is not None


class _Turn:
    """A folder's look under way, and the caller waiting to look next, if any."""

    __slots__ = ("gate", "patience")

    def __init__(self) -> None:
        self.gate: threading.Lock | None = None  # the waiting caller's, held until its turn
        self.patience = 0.0  # the waiting caller's


def prune(
disk: DiskBackend, bucket: str, bdir: str, directory: str, held: frozenset[int], patience: float = 0.0
) -> None:
    """Remove folders left empty by a delete or rename, up to the bucket, keeping markers.

    Each folder is removed under its own "key/" lock, so a concurrent PutObject of that folder
    marker is never undone. A busy lock is skipped, after up to ``patience`` seconds of
    retrying (worker threads only): the holder is usually another process's prune that found the
    folder not yet empty, and without a retry the last delete would leave it behind. Never a
    blocking wait on a lock: the key locks already held could close a cycle. (A turn's wait is
    for a look that needs none of them.)"""
    while directory.startswith(bdir + os.sep):
        key = directory[len(bdir) + 1 :].replace(os.sep, "/") + "/"
        slot = disk.locks.slot(bucket, key)
        # A caller holding the folder's lock slot (its own key's, by a hash collision) looks by
        # itself: a caller with the turn could not take that lock.
        how = disk.prune_turns.begin(directory, patience) if slot not in held else "alone"
        if how == "covered":
            return
        try:
            removed = _remove_if_empty(disk, bucket, directory, key, slot, held, patience)
        finally:
            if how == "look":
                disk.prune_turns.end(directory)
        if not removed:
            return
        directory = os.path.dirname(directory)


def _remove_if_empty(
    disk: DiskBackend, bucket: str, directory: str, key: str, slot: int, held: frozenset[int], patience: float
) -> bool:
    """rmdir ``directory`` under its lock if it is empty and no folder marker; whether it did."""
    lock = None
    if slot not in held:
        lock = disk.locks.try_lock(slot)
        deadline = time.monotonic() + patience
        while lock is None and time.monotonic() < deadline:
            time.sleep(0.001)
            lock = disk.locks.try_lock(slot)
        if lock is None:
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
    disk: DiskBackend,
    bucket: str,
    bdir: str,
    kp: KeyPath,
    real: str,
    record: Record,
    held: frozenset[int],
    patience: float = 0.0,
) -> None:
    """Remove the folder marker at ``real`` (the folder too, when empty) and prune its parents;
    ``patience`` as prune's (worker threads only)."""
    if disk.meta.use_xattrs:
        with contextlib.suppress(OSError):
            os.removexattr(real, XATTR)
    disk.meta.forget(bucket, kp.key, record)
    path = keys.object_path(bdir, kp)
    with contextlib.suppress(OSError):
        _rmdir(disk, path)  # only when empty: keys below it stay
    prune(disk, bucket, bdir, os.path.dirname(path), held, patience)
