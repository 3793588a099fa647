"""The multipart garbage collector: idle uploads, claims whose process died, orphaned temp files,
the uploads of deleted buckets.

Runs in a worker thread, once at start-up (before serving: what a crash left is gone before any
request), then every ``gc_interval`` as an asyncio task (and once just after TEMP_GRACE when the
start-up round left temp files only for being too young). Safe when several processes share
ROOT: every file a live writer is filling is flocked by it, every claimed upload is flocked by its
claimant, and the GC removes only what it can lock itself (LOCK_NB).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import time
from typing import TYPE_CHECKING, Any

from . import keys

if TYPE_CHECKING:
    from .staging import Staging

log = logging.getLogger("s3serve.multipart")

# A lockable temp file younger than this may be one whose writer has created it but not yet
# taken its flock (a few microseconds): leave it for the next round. The start-up round, which
# finds what a crashed process wrote just before a quick restart, has one more round run just
# after that age (FOLLOW_UP_MARGIN past it) rather than a gc_interval later.
TEMP_GRACE = 1.0
FOLLOW_UP_MARGIN = 0.1
# Temp files under .s3serve/tmp/ that their writers flock for their whole life. "spool-": the
# upstream cache's uploads and fills (storage/replicas.py), as large as objects: without it a
# crashed cache's spools waited an hour for the next GC round instead of going at start-up.
LOCKED_TEMP_PREFIXES = ("put-", "copy-", "mpu-", "link-", "spool-")
# A hard-link copy's temp "link-<id>" (copies._link) is another name of the source object's
# inode: a flock on it would lock the object. Its writer flocks "link-<id>" + LINK_GUARD instead
# (itself a "link-" temp file, collected as any other).
LINK_GUARD = ".guard"
# Other temp files there (metadata records, probes) are tiny and short-lived but unlocked.
UNLOCKED_TEMP_AGE = 3600.0


# 16 hex digits of the creation time, 32 random: see staging.py.
UPLOAD_ID = re.compile(r"[0-9a-f]{48}")
# Files of an upload folder a writer holds flocked while it works (assembly.py names the slot markers).
UPLOAD_TEMP_PREFIX = "tmp-"
SLOT_MARKER_PREFIX = "slot-"
# In a claimed folder: Complete began collapsing the upload's assembly file (see assembly.py).
COLLAPSING = "collapsing"
# In a claimed folder: Complete handed the object's file to the publish's rename under the name
# this marker holds (assembly.hand_over); that name gone means the rename happened (published).
PUBLISHING = "publishing"
OBJECT = "object"  # that name: a second name of the object's file, in the claimed folder
# How an upload of a deleted bucket is claimed before its removal (drop_staged).
DROPPED = "dropped"


def try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


async def flock_given_back(fd: int, timeout: float = 10.0) -> bool:
    """Take the flock of the record of an upload at its own name (``fd``), its lock held by the
    caller. Whoever else holds it holds it for a moment, so it is waited for (False only after
    ``timeout``, against the unforeseen): a claimant that has just renamed the upload back (a
    Complete that failed, the GC giving back a dead Complete's claim), which closes it next, or a
    probe (``any_flocked``). Everyone else who flocks it (the GC expiring it) or takes it away
    (DeleteBucket) takes the upload's lock first. A Complete's retry or an Abort turned away then
    would be told NoSuchUpload of an upload that is there, intact."""
    delay = 0.001
    deadline = time.monotonic() + timeout
    while not try_flock(fd):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def held_by_writer(directory: str, prefixes: tuple[str, ...]) -> bool:
    """Whether a live writer holds the flock of a file in ``directory`` whose name starts with one
    of ``prefixes`` (a writer that died released it)."""
    with os.scandir(directory) as it:
        return any_flocked([e.path for e in it if e.name.startswith(prefixes)])


def any_flocked(paths: list[str]) -> bool:
    """Whether a live process holds the flock of one of these files."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # its holder finished (or gave it back)
        try:
            if not try_flock(fd):
                return True
        finally:
            os.close(fd)
    return False


def _open_holder(path: str, name: str) -> int | None:
    """The file whose flock says a temp file's writer is alive, opened: the temp file itself, or
    a hard-link copy's guard (None when that is gone: its copy is over)."""
    if name.startswith("link-") and not name.endswith(LINK_GUARD):
        try:
            return os.open(path + LINK_GUARD, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)


def create_locked(path: str) -> int:
    """A new file, flocked for as long as the returned descriptor stays open: the GC never
    removes a file whose writer is alive."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _claim_parts(path: str) -> tuple[str, str]:
    """'<dir>/<upload id>.complete-1a2b3c' -> ('<upload id>', 'complete')."""
    upload_id, _, how = os.path.basename(path).rpartition(".")
    return upload_id, how.split("-", 1)[0]


def drop_staged(staging: Staging, bucket: str, held: int) -> tuple[list[str], bool, bool]:
    """Take every upload of ``bucket`` out of reach (worker thread), once the bucket's folder is
    gone: S3 discards a deleted bucket's uploads with it. DeleteBucket calls this; so do
    CreateBucket of the name and the GC, for what a DeleteBucket killed in between left. The
    caller holds the bucket's lock (slot ``held``), so no upload is created meanwhile. Each
    upload is claimed (renamed) under its own lock, as Abort claims it: a part being committed
    or a Complete claiming it comes wholly before (and goes with it) or after (NoSuchUpload). A
    claim whose claimant died goes too; a live one is its claimant's.

    Returns the claimed folders, to remove (``remove_trees``); whether an upload's lock was busy
    (call again: it is held for a rename); and whether a live Complete has one claimed: it can no
    longer publish (the bucket's folder is gone), but gives its upload back here when it fails."""
    locks = staging.disk.locks
    top = staging.bucket_dir(bucket)
    try:
        names = os.listdir(top)
    except FileNotFoundError:
        return [], False, False
    doomed: list[str] = []
    busy = completing = False
    for name in names:
        path = os.path.join(top, name)
        upload_id, how = (name, "") if UPLOAD_ID.fullmatch(name) else _claim_parts(path)
        if not UPLOAD_ID.fullmatch(upload_id):
            continue  # not ours
        gone = os.path.join(top, f"{upload_id}.{DROPPED}-{secrets.token_hex(6)}")
        if not how:
            slot = staging.slot(upload_id)
            lock = None if slot == held else locks.try_lock(slot)  # flock: held once is held
            if lock is None and slot != held:
                busy = True
                continue
            try:
                _rename_away(path, gone, doomed)
            finally:
                if lock is not None:
                    os.close(lock)
            continue
        try:
            fd: int | None = os.open(os.path.join(path, "upload.json"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None  # a removal under way (or interrupted): no claimant holds it
        except NotADirectoryError:
            continue
        try:
            if fd is not None and not try_flock(fd):
                completing = completing or how == "complete"
                continue
            # Renamed while its flock is ours: the GC cannot give a dead Complete's claim back
            # into the deleted bucket in the meantime.
            _rename_away(path, gone, doomed)
        finally:
            if fd is not None:
                os.close(fd)
    return doomed, busy, completing


def published(directory: str) -> bool:
    """Whether the Complete that claimed ``directory`` published its object. Its marker names the
    file it handed to DiskBackend._publish, which consumes that name: renamed to the key, or
    removed when the publish was refused, after which the Complete forgets the marker before
    anything else (``forget_publish``). So a marker whose name is gone tells of a rename, even
    once the key has been written again or deleted, when the key can no longer tell."""
    doc = read_json(os.path.join(directory, PUBLISHING))
    name = os.path.basename(str(doc.get("name", ""))) if doc is not None else ""
    return bool(name) and not os.path.lexists(os.path.join(directory, name))


def forget_publish(directory: str, fsync: bool) -> None:
    """Undo ``assembly.hand_over`` for a publish that did not happen: the marker first (durably),
    then the name it holds; in the other order a crash in between would leave a marker whose
    name is gone, which says the object was published."""
    doc = read_json(os.path.join(directory, PUBLISHING))
    try:
        os.unlink(os.path.join(directory, PUBLISHING))
        if fsync:
            keys.fsync_dir(directory)
    except FileNotFoundError:
        pass
    name = os.path.basename(str(doc.get("name", ""))) if doc is not None else ""
    for stale in {name, OBJECT} - {""}:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, stale))


def _rename_away(path: str, gone: str, doomed: list[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, gone)
        doomed.append(gone)


def remove_trees(paths: list[str]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def _exists(path: str) -> bool:
    """Whether anything is at ``path``: True too when that cannot be told (an I/O error), so
    that only a bucket folder surely gone loses its uploads."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        pass
    return True


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _tree_size(path: str) -> int:
    """Bytes on disk (allocated blocks: an upload's sparse assembly file is mostly holes)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


class Collector:
    def __init__(self, staging: Staging, expiry: float, interval: float) -> None:
        self.staging = staging
        self.expiry = expiry
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        # Of the round under way: how long each temp file that nobody holds but that was too
        # young to remove has to go until it is old enough.
        self._young: list[float] = []

    async def start(self) -> None:
        soon = None
        try:
            soon = await asyncio.to_thread(self.collect, False)
        except Exception:  # serving matters more than tidying up
            log.exception("multipart GC at start-up failed")
        if soon is not None and soon + FOLLOW_UP_MARGIN < self.interval:
            # What a crashed process wrote just before a quick restart: gone in a second, not
            # after a whole gc_interval (an hour by default) of holding its disk space.
            log.info("multipart GC: temp files too young to remove at start-up; looking again in %.1fs", soon + FOLLOW_UP_MARGIN)
        else:
            soon = None
        self._task = asyncio.create_task(self._loop(soon), name="s3serve-multipart-gc")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, follow_up: float | None = None) -> None:
        """Rounds every ``interval``; the first after ``follow_up`` seconds (and without expiring
        uploads, as at start-up), when given."""
        delay, expire = (self.interval, True) if follow_up is None else (follow_up + FOLLOW_UP_MARGIN, False)
        while True:
            await asyncio.sleep(delay)
            try:
                await asyncio.to_thread(self.collect, expire)
            except Exception:  # one bad round (a disk error, a surprise) must not end the GC
                log.exception("multipart GC round failed; trying again in %ss", self.interval)
            delay, expire = self.interval, True

    def collect(self, expire: bool) -> float | None:
        """One GC round (worker thread): orphaned temp files and claims always, idle uploads when
        ``expire``. Everything that a live writer or claimant holds is flocked, so it survives.
        Returns how long until every temp file it left only for being too young is old enough
        (None: there was none)."""
        now = time.time()
        self._young = []
        try:
            self._collect(now, expire)
        finally:
            young, self._young = self._young, []
        return max(young) if young else None

    def _collect(self, now: float, expire: bool) -> None:
        self._collect_temp(self.staging.disk._tmp_dir, now)
        self.staging.disk.rename_tokens.prune(now)
        try:
            buckets = os.listdir(self.staging.dir)
        except FileNotFoundError:
            return
        for bucket in buckets:
            if self._collect_orphaned(bucket):
                continue
            try:
                names = os.listdir(self.staging.bucket_dir(bucket))
            except OSError:
                continue
            for name in names:
                path = os.path.join(self.staging.bucket_dir(bucket), name)
                try:
                    if UPLOAD_ID.fullmatch(name):
                        self._collect_upload(bucket, name, path, now, expire)
                    else:
                        self.collect_claim(bucket, path)
                except OSError as e:
                    if e.errno != errno.ENOENT:  # finished by its owner meanwhile: not a failure
                        log.warning("multipart GC: could not clean %s: %s", path, e)

    def _collect_temp(
        self, directory: str, now: float, prefixes: tuple[str, ...] = LOCKED_TEMP_PREFIXES, only_prefixed: bool = False
    ) -> int:
        """Remove temp files nobody holds (their writer died). Returns bytes freed. ``only_prefixed``:
        every other file of ``directory`` is kept (an upload folder's records and data)."""
        freed = 0
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            # A symlink: a RenameObject's new link for a symlink source (copies._relinked).
            if not entry.is_file(follow_symlinks=False) and not entry.is_symlink():
                continue
            locked_kind = entry.name.startswith(prefixes)
            if only_prefixed and not locked_kind:
                continue
            with contextlib.suppress(FileNotFoundError):
                st = entry.stat(follow_symlinks=False)
                # ctime: a fresh hard link to an old file has an old mtime.
                age = now - max(st.st_mtime, st.st_ctime)
                young = age < (TEMP_GRACE if locked_kind else UNLOCKED_TEMP_AGE)
                if young and not locked_kind:
                    continue
                fd = _open_holder(entry.path, entry.name)
                try:
                    if fd is not None and not try_flock(fd):
                        continue  # its writer is alive
                    if young:
                        # Nobody holds it, but its writer may be about to: when it is old enough.
                        self._young.append(TEMP_GRACE - age)
                        continue
                    os.unlink(entry.path)
                    freed += st.st_size
                    log.info("removed orphaned temp file %s (%d bytes)", entry.path, st.st_size)
                finally:
                    if fd is not None:
                        os.close(fd)
        return freed

    def _collect_upload(self, bucket: str, upload_id: str, path: str, now: float, expire: bool) -> None:
        if not os.path.lexists(os.path.join(path, "upload.json")):
            self._collect_unborn(bucket, path)
            return
        # The clock is the last part activity, read before removing a dead writer's temp file
        # (which touches the folder but is no activity).
        last = os.stat(path).st_mtime
        with os.scandir(path) as it:
            for entry in it:
                with contextlib.suppress(FileNotFoundError):
                    last = max(last, entry.stat(follow_symlinks=False).st_mtime)
        self._collect_temp(path, now, (UPLOAD_TEMP_PREFIX,), only_prefixed=True)
        if not expire or now - last <= self.expiry:
            return
        lock = self.staging.disk.locks.try_lock(self.staging.slot(upload_id))
        if lock is None:
            return  # a part is being committed right now: not idle
        try:
            fd = os.open(os.path.join(path, "upload.json"), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if not try_flock(fd) or self._receiving(path):
                    return
                key = str((read_json(os.path.join(path, "upload.json")) or {}).get("key", "?"))
                claimed = f"{path}.gc-{secrets.token_hex(6)}"
                os.rename(path, claimed)
            finally:
                os.close(fd)
        finally:
            os.close(lock)
        freed = _tree_size(claimed)
        shutil.rmtree(claimed, ignore_errors=True)
        log.info("multipart GC: removed upload %s of %s/%s idle %.0fs, %d bytes freed", upload_id, bucket, key, now - last, freed)

    def _collect_unborn(self, bucket: str, path: str) -> None:
        """An upload folder without upload.json: a CreateMultipartUpload that died between making
        the folder and renaming its record into it. It answered nothing, so nothing refers to
        the folder; but it was never listed nor expired, and made DeleteBucket refuse for ever.
        Create does both steps under the bucket's lock: under that lock, the folder is garbage."""
        locks = self.staging.disk.locks
        lock = locks.try_lock(locks.slot(bucket, ""))
        if lock is None:
            return  # a Create or DeleteBucket in that bucket right now: the next round will see
        try:
            if os.path.lexists(os.path.join(path, "upload.json")):
                return
            claimed = f"{path}.gc-{secrets.token_hex(6)}"
            os.rename(path, claimed)
        finally:
            os.close(lock)
        shutil.rmtree(claimed, ignore_errors=True)
        log.info("multipart GC: removed %s of bucket %s, left by an interrupted CreateMultipartUpload", os.path.basename(path), bucket)

    def _collect_orphaned(self, bucket: str) -> bool:
        """Whether ``bucket`` has no folder (nothing at all at its name), its uploads then taken
        away: a DeleteBucket was killed between removing the folder and discarding them, or a
        Complete that the deletion made fail gave its upload back. Under the bucket's lock, so
        not while a CreateBucket of the name (which discards them itself) makes it again."""
        disk = self.staging.disk
        locks = disk.locks
        if _exists(os.path.join(disk._real_root, bucket)):
            return False
        slot = locks.slot(bucket, "")
        lock = locks.try_lock(slot)
        if lock is None:
            return True  # a CreateBucket or DeleteBucket of it right now: the next round will see
        try:
            if _exists(os.path.join(disk._real_root, bucket)):
                return False
            doomed, _, _ = drop_staged(self.staging, bucket, slot)
        finally:
            os.close(lock)
        remove_trees(doomed)
        with contextlib.suppress(OSError):
            os.rmdir(self.staging.bucket_dir(bucket))
        if doomed:
            log.info("multipart GC: removed %d upload(s) of deleted bucket %s", len(doomed), bucket)
        return True

    @staticmethod
    def _receiving(path: str) -> bool:
        """Whether a writer holds one of the upload's temp files or slot markers (a part still
        arriving, in a file of its own or in place)."""
        return held_by_writer(path, (UPLOAD_TEMP_PREFIX, SLOT_MARKER_PREFIX))

    def collect_claim(self, bucket: str, path: str) -> None:
        """A claimed folder whose claimant died (its flock is gone) is finished off, except an
        interrupted CompleteMultipartUpload that had not published: that upload is given back, so
        the client's retry of Complete succeeds. One that had begun collapsing the assembly file
        is first undone (assembly.restore). One whose publish's rename happened (``published``,
        or for a claim of an older version, the collapsed file still at the key) is over: the
        object was whole at its key, and a write of the key since then must stand."""
        try:
            fd = os.open(os.path.join(path, "upload.json"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None  # a removal that got as far as upload.json, or not an upload at all
        except NotADirectoryError:
            return
        try:
            if fd is not None and not try_flock(fd):
                return
            if fd is not None and self._give_back(bucket, path):
                return
            freed = _tree_size(path)
            shutil.rmtree(path, ignore_errors=True)
            log.info("multipart GC: removed abandoned claim %s in %s, %d bytes freed", os.path.basename(path), bucket, freed)
        finally:
            if fd is not None:
                os.close(fd)

    def _give_back(self, bucket: str, path: str) -> bool:
        upload_id, how = _claim_parts(path)
        doc = read_json(os.path.join(path, "upload.json"))
        if how != "complete" or not UPLOAD_ID.fullmatch(upload_id) or doc is None or "key" not in doc:
            return False
        if published(path):
            # Even when the key no longer holds that object (written again, or deleted, since):
            # given back, the upload would be completed again, over the newer write.
            log.info("multipart GC: upload %s of %s/%s was published by its interrupted Complete", upload_id, bucket, doc["key"])
            return False
        if os.path.lexists(os.path.join(path, COLLAPSING)):
            from . import assembly  # not at the top: assembly imports this module

            outcome = assembly.restore(path, self.staging.disk.fsync)
            if outcome is assembly.Outcome.PUBLISHED:
                log.info("multipart GC: upload %s of %s/%s was published by its interrupted Complete", upload_id, bucket, doc["key"])
                return False
            if outcome is not assembly.Outcome.RESTORED:
                log.warning(
                    "multipart GC: discarding upload %s of %s/%s: its Complete was interrupted while collapsing its parts",
                    upload_id, bucket, doc["key"],
                )
                return False
        else:
            forget_publish(path, self.staging.disk.fsync)  # a copy handed over, never renamed
        target = os.path.join(os.path.dirname(path), upload_id)
        if os.path.exists(target):
            return False
        os.rename(path, target)
        log.info("multipart GC: gave back upload %s of %s/%s after an interrupted Complete", upload_id, bucket, doc["key"])
        return True
