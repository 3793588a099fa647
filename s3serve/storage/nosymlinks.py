"""openat2(2) with RESOLVE_NO_SYMLINKS: an O_PATH open that the kernel refuses (ELOOP) when any
component of the path is a symlink, where the kernel has the call (Linux 5.6+).

A GET or HEAD proves that the path it built has no symlink on the way before it trusts it. Without
this call that takes an O_PATH open and a readlink of /proc/self/fd/N (~6 us on its own here,
procfs walks the path again); with it the open itself is the proof. Python's os module does not
wrap openat2, so it goes through libc's syscall(). Where the call is missing or blocked (an old
kernel, a seccomp profile that does not know it), ``open_path`` answers None and callers keep to
the readlink check.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

# openat2's number where the syscall tables are unified (x86, arm, arm64, riscv, powerpc, s390...).
# Alpha and MIPS number their calls from other bases: there 437 is another call, or none.
_SYS_OPENAT2 = 437
_OTHER_NUMBERING = ("alpha", "mips")
_RESOLVE_NO_SYMLINKS = 0x04
_AT_FDCWD = -100

_call: Callable[[bytes, bool], int] | None = None
_checked = False


def _setup() -> Callable[[bytes, bool], int] | None:
    if not sys.platform.startswith("linux") or not hasattr(os, "O_PATH") or os.uname().machine.startswith(_OTHER_NUMBERING):
        return None
    import ctypes  # here, not at start-up

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    # Probed once on "/": ENOSYS (no such call), EPERM (a seccomp filter), EINVAL or E2BIG (a
    # flag or struct size it does not know) all mean "not here".
    try:
        syscall: Any = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
    # O_NOFOLLOW with O_PATH: a symlink as the last component is opened itself (the caller sees
    # S_ISLNK), as the plain O_PATH open it stands in for does.
    anything = OpenHow(os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, 0, _RESOLVE_NO_SYMLINKS)
    folder = OpenHow(os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, _RESOLVE_NO_SYMLINKS)
    refs = {False: ctypes.byref(anything), True: ctypes.byref(folder)}
    size = ctypes.sizeof(OpenHow)
    get_errno = ctypes.get_errno

    def call(path: bytes, directory: bool) -> int:
        fd: int = syscall(_SYS_OPENAT2, _AT_FDCWD, path, refs[directory], size)
        if fd < 0:
            err = get_errno()
            raise OSError(err, os.strerror(err))
        return fd

    call.keep = (anything, folder)  # type: ignore[attr-defined]  # the structs live as long as it
    try:
        os.close(call(b"/", True))
    except OSError:
        return None
    return call


def open_path(path: str, directory: bool = False) -> int | None:
    """An O_PATH|O_NOFOLLOW descriptor of ``path``, opened only if no component before the last is
    a symlink (OSError ELOOP otherwise, ENOENT/ENOTDIR when absent); None where openat2 cannot be
    used, for the caller to check the path another way. ``directory``: O_PATH|O_DIRECTORY, and
    no symlink as the last component either."""
    global _call, _checked
    if not _checked:
        _call, _checked = _setup(), True
    if _call is None:
        return None
    return _call(os.fsencode(path), directory)
