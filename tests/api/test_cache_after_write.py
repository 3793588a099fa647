"""A copy, rename or Complete through the cache is more than one request to the upstream: the
write, then a read describing what it made (RemoteBackend's HEAD). A failure of that read comes
after the write happened: the copies here of what it changed must not stay to be served."""

from __future__ import annotations

from typing import Any

from s3serve import errors
from s3serve.storage.base import ObjectInfo
from s3serve.storage.disk import DiskBackend
from tests.api.conftest import Send


class _Undescribed(DiskBackend):
    """An upstream that makes each copy and rename, then fails to describe it (a 4xx)."""

    async def copy_object(self, *args: Any, **kwargs: Any) -> ObjectInfo:
        await super().copy_object(*args, **kwargs)
        raise errors.InvalidRequest("The written object could not be described.")

    async def rename_object(self, *args: Any, **kwargs: Any) -> ObjectInfo:
        await super().rename_object(*args, **kwargs)
        raise errors.InvalidRequest("The written object could not be described.")


async def _put(send: Send, key: str, body: bytes) -> None:
    response = await send("PUT", f"/bkt/{key}", body)
    assert response.status == 200, await response.read()


async def test_copies_are_dropped_when_a_write_fails_after_it_was_made(make_cached) -> None:  # type: ignore[no-untyped-def]
    # Replicas are confirmed for an hour: one left behind would be served as current.
    send, _, here, there = await make_cached(upstream_type=_Undescribed, revalidate_after=3600)
    for key, body in (("a", b"new a"), ("b", b"old b"), ("c", b"new c"), ("d", b"old d")):
        await _put(send, key, body)
        assert (here / key).read_bytes() == body
    copied = await send("PUT", "/bkt/b", headers={"x-amz-copy-source": "/bkt/a"})
    assert copied.status == 400  # the upstream copied all the same
    assert (there / "b").read_bytes() == b"new a"
    assert not (here / "b").exists()
    assert await (await send("GET", "/bkt/b")).read() == b"new a"
    renamed = await send("PUT", "/bkt/d?renameObject", headers={"x-amz-rename-source": "/bkt/c"})
    assert renamed.status == 400
    assert (there / "d").read_bytes() == b"new c" and not (there / "c").exists()
    assert not (here / "c").exists() and not (here / "d").exists()
    assert await (await send("GET", "/bkt/d")).read() == b"new c"
    assert (await send("GET", "/bkt/c")).status == 404
