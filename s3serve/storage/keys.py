"""Names to paths: bucket-name rules, object-key validation, the key -> filesystem path mapping,
and the file mechanics of putting a file at a key (parents, conflicts, symlinks, copies).

Every path that storage touches is built here by joining validated segments onto a bucket
folder; nothing is ever built from a user string otherwise. Percent-decoding is the caller's job:
a key arrives here exactly as the client meant it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .. import errors
from . import nosymlinks

MAX_KEY_BYTES = 1024
# NAME_MAX of Linux filesystems: one path segment of a key becomes one directory entry.
MAX_SEGMENT_BYTES = 255

# The reserved folder for hidden state. Bucket names can never start with '.', so it never
# collides with a bucket.
HIDDEN_DIR = ".s3serve"

_STRICT_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Folders another program made: looser than S3 (uppercase and '_' exist in legacy bucket names),
# but never a leading '.', never anything that is not a plain name.
_LENIENT_BUCKET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
# Reserved by AWS (general purpose bucket naming rules).
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def validate_bucket_name(name: str) -> None:
    """S3's rules for a new bucket; raises InvalidBucketName naming the rule that failed."""
    if not 3 <= len(name) <= 63:
        raise errors.InvalidBucketName(
            "Bucket names must be between 3 and 63 characters long.", resource=name
        )
    if not _STRICT_BUCKET.fullmatch(name):
        raise errors.InvalidBucketName(
            "Bucket names can consist only of lowercase letters, numbers, dots (.) and hyphens (-), "
            "and must begin and end with a letter or number.",
            resource=name,
        )
    if ".." in name:
        raise errors.InvalidBucketName("Bucket names must not contain two adjacent periods.", resource=name)
    if _is_ip_address(name):
        raise errors.InvalidBucketName("Bucket names must not be formatted as an IP address.", resource=name)
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        raise errors.InvalidBucketName("The bucket name uses a reserved prefix or suffix.", resource=name)


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def is_bucket_folder_name(name: str) -> bool:
    """Whether a folder in ROOT may be served as a bucket (lenient, for folders made by others)."""
    return bool(_LENIENT_BUCKET.fullmatch(name))


@dataclass(frozen=True)
class KeyPath:
    key: str
    segments: tuple[str, ...]  # path segments; for a folder marker, without the trailing ''
    is_folder: bool  # "key/": a directory with a marker, empty body

    @property
    def parents(self) -> tuple[str, ...]:
        return self.segments[:-1]


def _unstorable(key: str, why: str) -> errors.S3Error:
    return errors.InvalidArgument(
        f"The key cannot be stored on this server's filesystem: {why}.", resource=key
    )


def _too_long(key: str, size: int) -> errors.S3Error:
    return errors.KeyTooLongError(f"Your key is too long: {size} bytes, the limit is {MAX_KEY_BYTES}.", resource=key)


def folder_with_content(key: str) -> errors.S3Error:
    return errors.InvalidArgument(
        "A key ending in '/' is a folder on this server's filesystem and cannot have content.", resource=key
    )


def check_key_size(key: str) -> None:
    """S3's own limit on a key, whatever stores it (parse_key applies it with the disk's rules)."""
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise _too_long(key, size)


def parse_key(key: str) -> KeyPath:
    """Validate ``key`` and split it into path segments, or raise a clear S3Error: what a write
    asks, which refuses a key this server's filesystem cannot hold."""
    parsed = _parse(key)
    if isinstance(parsed, errors.S3Error):
        raise parsed
    return parsed


def lookup_key(key: str) -> KeyPath | None:
    """``parse_key`` for an operation on an object that is already there (a read, a delete, the
    source of a copy): None for a key S3 accepts but this filesystem cannot hold, which is
    therefore never here, and is answered as absent (NoSuchKey, or a DELETE's 204) as S3
    answers for a key it does not have. Keys S3 itself refuses still raise."""
    parsed = _parse(key)
    return None if isinstance(parsed, errors.S3Error) else parsed


def upload_key(key: str, upload_id: str) -> KeyPath:
    """``lookup_key`` for an operation on an upload (a part, its copy, the Complete, Abort,
    ListParts): a key this filesystem cannot hold has no upload, creation refusing it, so the
    upload id is one S3 would not know: NoSuchUpload, not a write's refusal."""
    kp = lookup_key(key)
    if kp is None:
        raise errors.NoSuchUpload(UploadId=upload_id)
    return kp


def _parse(key: str) -> KeyPath | errors.S3Error:
    """The key's path segments; the error refusing a key that S3 accepts but no filesystem path
    can name is returned (never mapped onto another path), S3's own refusals raised."""
    if not key:
        raise _unstorable(key, "the key is empty")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates: not valid UTF-8, so not a key any client could have sent.
        raise _unstorable(key, "the key is not valid UTF-8") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise _too_long(key, len(encoded))
    if "\x00" in key:
        # Whether S3 takes a NUL in a key is not known here: refused on every operation. Echoed,
        # the key would make the error unreadable: no XML parser reads a NUL, even as &#x0;.
        # Without a resource the error names the request's path, percent-encoded.
        raise errors.InvalidArgument(
            "The key cannot be stored on this server's filesystem: it contains a NUL character."
        )
    is_folder = key.endswith("/")
    segments = (key[:-1] if is_folder else key).split("/")
    for segment in segments:
        # S3 keys are flat names ('a//b', 'a/./b' and 'a/../b' are keys of their own there); as
        # a path each of these would name another key's file, or none.
        if segment == "":
            return _unstorable(key, "it has an empty path segment (a leading '/', '//' or a lone '/')")
        if segment in (".", ".."):
            return _unstorable(key, f"it has a '{segment}' path segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return errors.KeyTooLongError(
                f"A path segment of the key is longer than {MAX_SEGMENT_BYTES} bytes, "
                "the most this server's filesystem can store.",
                resource=key,
            )
    return KeyPath(key, tuple(segments), is_folder)


def object_path(bucket_dir: str, kp: KeyPath) -> str:
    return os.path.join(bucket_dir, *kp.segments)


def is_inside(real_root: str, real_path: str) -> bool:
    """Whether an already-resolved path lies inside a bucket of ROOT (not ROOT itself, not the
    hidden folder): where a symlink may lead and still be followed."""
    if not real_path.startswith(real_root + os.sep):
        return False
    first = real_path[len(real_root) + 1 :].split(os.sep, 1)[0]
    return bool(first) and not first.startswith(".")


# -- placing a file at a key ------------------------------------------------------------------
# A put racing a delete that prunes the put's fresh parent folders retries the rename this often.
PLACE_ATTEMPTS = 8


def _outside(key: str, what: str) -> errors.S3Error:
    return errors.AccessDenied(
        f"The key {what} a symbolic link that leads outside the storage root.", resource=key
    )


_O_PATH = getattr(os, "O_PATH", 0)
PROC_FD = "/proc/self/fd/"
_HAS_PROC_FD = bool(_O_PATH) and os.path.isdir(PROC_FD)


def _resolve_plain(
    path: str, reopen: bool = False
) -> tuple[bool, tuple[str, os.stat_result] | None, int | None]:
    """Fast path of ``resolve`` for the common case of a path without symlinks: one O_PATH open
    (no side effects, even on a FIFO or device), and the kernel's name of what it opened. realpath
    costs an lstat per component (~25 us here), this about 5 us. (False, None, None) means "not
    decided here" (a symlink somewhere): take the slow path. With ``reopen``, a regular file found
    this way also comes with a read-only fd on that very inode (reopened through /proc/self/fd, so
    nothing renamed in between can be opened instead)."""
    try:
        # openat2 refuses (ELOOP) a symlink before the last component: no readlink needed.
        fd = nosymlinks.open_path(path)
        proven = fd is not None
        if fd is None:
            fd = os.open(path, _O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        # ENOENT/ENOTDIR mean absent whatever symlinks lie on the way (realpath + stat would fail
        # the same way); ELOOP, a symlink on the way, is for the slow path to follow.
        return e.errno in (errno.ENOENT, errno.ENOTDIR), None, None
    try:
        st = os.fstat(fd)
        # The path is built from real ROOT and validated segments (no '.', '..' or '//'), so the
        # kernel's name for what it opened is the path itself unless a symlink was on the way.
        if stat.S_ISLNK(st.st_mode) or (not proven and os.readlink(PROC_FD + str(fd)) != path):
            return False, None, None
        if reopen and stat.S_ISREG(st.st_mode):
            return True, (path, st), os.open(PROC_FD + str(fd), os.O_RDONLY | os.O_CLOEXEC)
        return True, (path, st), None
    except OSError:
        return False, None, None
    finally:
        os.close(fd)


def realpath(path: str) -> str | None:
    """os.path.realpath, or None when the path changed while it was being resolved (realpath
    raises EINVAL or ENOENT when a symlink it saw is replaced before it reads it)."""
    try:
        return os.path.realpath(path)
    except OSError:
        return None


def _fd_inside(real_root: str, fd: int, path: str) -> bool:
    """Whether what ``fd`` has open lies in ROOT's buckets, by the kernel's own name for it (no
    race with another program swapping a folder on the way for a symlink); by ``path`` where
    there is no /proc."""
    try:
        real = os.readlink(PROC_FD + str(fd)) if _HAS_PROC_FD else os.path.realpath(path)
    except OSError:
        return False
    return is_inside(real_root, real)


def open_folder(real_root: str, folder: str) -> int | None:
    """A descriptor of ``folder`` (symlinks followed) for ``*at`` calls, or None when it is not a
    folder inside ROOT's buckets at the moment it is opened. Entries removed, renamed or created
    through it stay inside ROOT whatever another program does to the path meanwhile (a folder on
    the way replaced by a symlink that leads out)."""
    try:
        fd = nosymlinks.open_path(folder, directory=True)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None  # missing before any symlink: missing whatever a symlink would lead to
        fd = None  # a symlink on the way: the general way below decides
    else:
        if fd is not None:
            # No symlink on the way: the folder is where its path, built from real ROOT and
            # validated segments, says it is.
            if is_inside(real_root, folder):
                return fd
            os.close(fd)
            return None
    try:
        fd = os.open(folder, (_O_PATH or os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    if not _fd_inside(real_root, fd, folder):
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def folder_of(real_root: str, path: str) -> Iterator[int | None]:
    """``open_folder`` of the folder holding ``path``, closed on exit."""
    fd = open_folder(real_root, os.path.dirname(path))
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def open_file(real_root: str, path: str) -> tuple[str, int, os.stat_result] | None:
    """Real path, read-only fd and stat of the regular file at ``path``; None when absent, not a
    regular file (a folder, FIFO or device is never opened for reading), or reached through a
    symlink leading outside ROOT. Without symlinks on the way this opens the inode it checked,
    two syscalls fewer than resolve + open_regular on every GET and HEAD."""
    if _HAS_PROC_FD:
        decided, found, fd = _resolve_plain(path, reopen=True)
        if decided:
            return None if found is None or fd is None else (path, fd, found[1])
    found = _resolve_slow(real_root, path)
    if found is None or not stat.S_ISREG(found[1].st_mode):
        return None
    fd = open_inside(real_root, found[0])
    return None if fd is None else (found[0], fd, os.fstat(fd))


def resolve(real_root: str, path: str) -> tuple[str, os.stat_result] | None:
    """The real path and stat of an existing entry, or None when absent or when a symlink on the
    way leads outside ROOT's buckets (such a path is treated as absent)."""
    if _HAS_PROC_FD:
        decided, found, _ = _resolve_plain(path)
        if decided:
            return found
    return _resolve_slow(real_root, path)


def _resolve_slow(real_root: str, path: str) -> tuple[str, os.stat_result] | None:
    real = realpath(path)
    if real is None or (real != path and not is_inside(real_root, real)):
        return None
    try:
        return real, os.stat(real)
    except OSError:
        return None


def denied(real_root: str, path: str) -> bool:
    """Whether a key that a lookup found absent is there but out of the server's reach: a folder
    on the way it may not search, or a regular file it may not read. Asked only on that miss
    path, to answer 403 AccessDenied instead of a NoSuchKey that would tell a client (or a sync
    tool about to delete its copy) that the object is gone. Nothing is read, and what lies
    outside ROOT's buckets (through a symlink) never turns the answer into 403."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False  # the usual miss, in one syscall (clients ask for absent keys a lot)
    except OSError:
        pass
    real = realpath(path)
    if real is None or not is_inside(real_root, real):
        return False
    try:
        st = os.stat(real)
    except PermissionError:
        return True
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    try:
        os.close(os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC))
    except PermissionError:
        return True
    except OSError:
        return False
    return False  # readable now: it changed since the lookup, which answers as what it found


def ensure_parents(real_root: str, bdir: str, kp: KeyPath) -> list[str] | None:
    """Create the folders above ``kp``: the folders it created (a durable write must fsync their
    entries in their parents too), or None when a concurrent prune removed one mid-way."""
    if not os.path.isdir(bdir):
        raise errors.NoSuchBucket(resource=os.path.basename(bdir))
    created: list[str] = []
    current = bdir
    for segment in kp.parents:
        current = os.path.join(current, segment)
        try:
            os.mkdir(current)
            created.append(current)
            continue
        except FileExistsError:
            pass
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise errors.ObjectParentIsFile(resource=kp.key) from None
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None  # removed by another program since the mkdir: look again
        if stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISLNK(st.st_mode):
            real = realpath(current)
            if real is None:
                return None  # replaced while it was being resolved
            if not is_inside(real_root, real):
                raise _outside(kp.key, "leads through")
            if os.path.isdir(real):
                continue
        raise errors.ObjectParentIsFile(resource=kp.key)
    return created


def changed_folders(path: str, created: list[str]) -> list[str]:
    """The folders to fsync so that a new entry at ``path`` survives a crash: its own folder and
    the parent of every folder created for it."""
    return [os.path.dirname(path), *(os.path.dirname(folder) for folder in reversed(created))]


def check_destination(real_root: str, path: str, kp: KeyPath) -> bool:
    """Refuse to put a file where a folder is, or through a symlink that leaves ROOT. False when
    the entry changed while it was being looked at (look again)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    if stat.S_ISLNK(st.st_mode):
        real = realpath(path)
        if real is None:
            return False
        if not is_inside(real_root, real):
            raise _outside(kp.key, "names")
        # A link inside ROOT is replaced by the rename, never written through.
        if not os.path.isdir(real):
            return True
    elif not stat.S_ISDIR(st.st_mode):
        return True
    raise errors.ExistingObjectIsDirectory(resource=kp.key)


def place(real_root: str, bdir: str, kp: KeyPath, path: str, src: str, src_dir_fd: int | None = None) -> list[str]:
    """rename ``src`` (relative to ``src_dir_fd`` when given) to ``path`` (the file of ``kp``),
    creating parents; the caller holds the key lock. Raises FileNotFoundError when ``src`` is
    gone. Returns the folders to fsync for a durable rename (``changed_folders``).

    The rename goes into a descriptor of the destination folder, checked to lie inside ROOT
    after it was opened: a folder on the way that another program swaps for a symlink leading
    out between the checks and the rename cannot take the file out of ROOT."""
    created: list[str] = []
    for _ in range(PLACE_ATTEMPTS):
        made = ensure_parents(real_root, bdir, kp)
        if made is None:
            continue
        created += [folder for folder in made if folder not in created]
        if not check_destination(real_root, path, kp):
            continue
        try:
            with folder_of(real_root, path) as folder_fd:
                if folder_fd is None:
                    continue  # gone or changed since ensure_parents: it looks again
                os.rename(src, os.path.basename(path), src_dir_fd=src_dir_fd, dst_dir_fd=folder_fd)
            return changed_folders(path, created)
        except FileNotFoundError:
            try:
                os.lstat(src, dir_fd=src_dir_fd)
            except FileNotFoundError:
                raise
            # A delete pruned our fresh parent folder before the rename: make it again.
        except IsADirectoryError:
            raise errors.ExistingObjectIsDirectory(resource=kp.key) from None
        except NotADirectoryError:
            raise errors.ObjectParentIsFile(resource=kp.key) from None
    raise errors.OperationAborted(resource=kp.key)


# -- file mechanics -----------------------------------------------------------------------------
FICLONE = 0x40049409  # _IOW(0x94, 9, int): share the source's extents (btrfs, XFS, bcachefs)
_COPY_PIECE = 1024 * 1024


def unlink_quietly(path: str | None) -> None:
    """Remove a temp file that may already be gone (renamed into place, or never made)."""
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def open_regular(path: str) -> int | None:
    """An fd on a regular file, or None. Never opens a FIFO or device another program left."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def open_inside(real_root: str, path: str) -> int | None:
    """``open_regular``, and None too when the file it opened is not inside ROOT's buckets (a
    folder on the way was swapped for a symlink leading out after the path was checked)."""
    fd = open_regular(path)
    if fd is not None and not _fd_inside(real_root, fd, path):
        os.close(fd)
        return None
    return fd


def fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clone_file(src_fd: int | None, dst_path: str) -> int:
    """Copy an open file into a new file, in the kernel when it can: reflink, else
    copy_file_range, else read/write. Never a hard link: metadata xattrs belong to the inode.
    Returns the number of bytes copied (``src_fd`` None: an empty file)."""
    dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        if src_fd is None:
            return 0
        try:
            fcntl.ioctl(dst, FICLONE, src_fd)
            return os.fstat(dst).st_size
        except OSError:
            pass  # not a reflink filesystem, or another filesystem
        copied = 0
        with contextlib.suppress(OSError):  # EXDEV, ENOSYS, EINVAL: fall back to plain copying
            while n := os.copy_file_range(src_fd, dst, 1 << 30, copied, copied):
                copied += n
        while piece := os.pread(src_fd, _COPY_PIECE, copied):
            copied += os.pwrite(dst, piece, copied)
        return copied
    finally:
        os.close(dst)


def remove_empty_tree(path: str, is_marker: Callable[[str, str, os.stat_result], bool]) -> bool:
    """Remove a bucket folder that holds only empty plain folders; False (nothing removed) when
    it holds a file, a symlink or a folder marker (``is_marker(path, key_prefix, stat)``)."""
    dirs: list[str] = []
    stack = [path]
    while stack:
        current = stack.pop()
        dirs.append(current)
        with os.scandir(current) as it:
            for entry in it:
                if not entry.is_dir(follow_symlinks=False):
                    return False
                rel = os.path.relpath(entry.path, path).replace(os.sep, "/")
                if is_marker(entry.path, rel, entry.stat(follow_symlinks=False)):
                    return False
                stack.append(entry.path)
    for directory in reversed(dirs):  # children before their parents
        try:
            os.rmdir(directory)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False  # a concurrent put created something meanwhile
            if e.errno != errno.ENOENT:
                raise
    return True
