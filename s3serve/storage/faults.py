"""What the filesystem's refusals mean to an S3 client.

The disk under ROOT is shared with other programs and with the operator: it fills up, runs out of
inodes, has folders the server may not read or write, is mounted read-only, or holds paths longer
than PATH_MAX. None of that is a bug in s3serve or a fault of the request, and none of it should
reach the client as a 500 with a traceback in the log. ``translate`` names each such errno as the
S3 error a client can act on; every other errno (EIO, ...) stays an OSError, so it is still logged
with its traceback as the InternalError it is.

AWS has no disk-full error. MinIO answers ``XMinioStorageFull`` with HTTP 507 (Insufficient Storage)
when its drives are full; that code is reused here, as errors.py reuses versitygw's codes, so
clients and scripts that know MinIO's answer recognise this one. 507 is not a status SDKs retry
(boto3, the aws cli and rclone retry 500 and 503), which is right: resending a large body to a full
disk only fills the network.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from .. import errors

log = logging.getLogger("s3serve")


_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM}


def translate(exc: OSError, key: str | None = None) -> errors.S3Error | None:
    """The S3 error for a filesystem refusal, or None for an errno that is a real fault."""
    code = exc.errno
    if code in _FULL:
        # The operator has to act: said once per refusal, without a traceback.
        log.warning("disk full under ROOT (%s): %s", errno.errorcode.get(code or 0, code), exc.filename)
        return errors.StorageFull(resource=key)
    if code in _DENIED:
        log.warning("permission denied under ROOT: %s", exc.filename)
        return errors.AccessDenied(
            "The server's filesystem does not allow this: permission denied on a file or folder of the key.",
            resource=key,
        )
    if code == errno.EROFS:
        log.warning("read-only filesystem under ROOT: %s", exc.filename)
        return errors.AccessDenied("The server's storage is read-only.", resource=key)
    if code == errno.ENAMETOOLONG:
        # Each segment is checked against NAME_MAX up front (keys.parse_key); what is left is a
        # whole path (ROOT's own path plus the key) over PATH_MAX, or a filesystem with a
        # shorter NAME_MAX than 255.
        return errors.KeyTooLongError(
            "The key is too long for this server's filesystem (a name or the whole path exceeds its limits).",
            resource=key,
        )
    if code == errno.EFBIG:
        return errors.EntityTooLarge(resource=key)
    if code in (errno.EMFILE, errno.ENFILE):
        log.warning("out of file descriptors: %s", exc)
        return errors.SlowDown("The server has too many files open; please retry.", resource=key)
    return None


class refusals:  # lower case: used as a function, ``with refusals(key):``
    """Raise ``translate``'s S3 error in place of an OSError that has one. A class, not a generator
    context manager: it wraps every backend call (as_s3_errors), and a wrapped call cost ~2.8 us
    with a generator against ~1.0 us with this (microbenchmark, bench/RESULTS.md)."""

    __slots__ = ("key",)

    def __init__(self, key: str | None = None) -> None:
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if isinstance(exc, OSError):
            mapped = translate(exc, self.key)
            if mapped is not None:
                raise mapped from exc


P = ParamSpec("P")
T = TypeVar("T")


def as_s3_errors(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A Backend operation whose filesystem refusals come out as S3 errors (``translate``)."""

    @functools.wraps(fn)
    async def operation(*args: P.args, **kwargs: P.kwargs) -> T:
        with refusals():
            return await fn(*args, **kwargs)

    return operation
