"""A part the upstream acknowledged, on its way to be kept by the cache (cacheparts.py), while its
upload ends: aborted or completed through the cache, or its bucket deleted on the upstream and
forgotten by the cache. The part must not be kept after that end removed the upload's folder:
nothing would remove it again before the multipart expiry, its bytes counted against
--cache-size (and kept over replicas, which eviction takes first) all that time. Live processes
on loopback: an s3serve cache in front of a second s3serve, via boto3; the cache's UploadPart is
held, once the upstream answered it, at a gate (a file) of the test's own."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server
from tests.e2e.conftest import error_code, running_cache, until

pytestmark = pytest.mark.skipif(bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="own servers")

GATE_WAIT = 10.0  # the longest a held UploadPart waits for its gate to open
BODY = b"part one"


def _gated(gates: Path) -> str:
    # An UploadPart in a bucket named race-*, answered by the upstream, waits for the gate
    # GATES/<bucket> (GATES/<bucket>.held tells it waits) before the cache keeps its part; and
    # its client is answered once what the part does after that (wait for room) is done.
    return f"""
import asyncio, os, time
from s3serve.storage import cache, remote
_cache_part = cache.CacheBackend.upload_part
async def _settled(self, bucket, key, upload_id, number, body):
    part = await _cache_part(self, bucket, key, upload_id, number, body)
    await self._parts_settled(bucket, upload_id)
    return part
cache.CacheBackend.upload_part = _settled
_upload_part = remote.RemoteBackend.upload_part
async def _held(self, bucket, key, upload_id, number, body):
    part = await _upload_part(self, bucket, key, upload_id, number, body)
    if bucket.startswith("race-"):
        gate = os.path.join({str(gates)!r}, bucket)
        open(gate + ".held", "w").close()
        until = time.monotonic() + {GATE_WAIT}
        while not os.path.exists(gate) and time.monotonic() < until:
            await asyncio.sleep(0.01)
    return part
remote.RemoteBackend.upload_part = _held
"""


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gates")


def _cache(tmp_path_factory: pytest.TempPathFactory, upstream: Server, gates: Path, *extra: str) -> Iterator[Server]:
    with running_cache(tmp_path_factory.mktemp("cache") / "root", upstream, *extra, patch=_gated(gates)) as srv:
        yield srv
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory, upstream: Server, gates: Path) -> Iterator[Server]:
    """A cache without a size limit: a part is kept before UploadPart is answered."""
    yield from _cache(tmp_path_factory, upstream, gates)


@pytest.fixture(scope="module")
def cramped(tmp_path_factory: pytest.TempPathFactory, upstream: Server, gates: Path) -> Iterator[Server]:
    """A cache with no room for a part: its folder is made, and it waits for room (and gives the
    upload's parts up) after UploadPart was answered."""
    yield from _cache(tmp_path_factory, upstream, gates, "--cache-size", "4")


def _complete(cache: Server, upstream: Server, name: str, upload: str) -> None:
    done = {"Parts": [{"PartNumber": 1, "ETag": f'"{hashlib.md5(BODY).hexdigest()}"'}]}
    s3: Any = cache.client()
    s3.complete_multipart_upload(Bucket=name, Key="m", UploadId=upload, MultipartUpload=done)


def _abort(cache: Server, upstream: Server, name: str, upload: str) -> None:
    s3: Any = cache.client()
    s3.abort_multipart_upload(Bucket=name, Key="m", UploadId=upload)


def _forget(cache: Server, upstream: Server, name: str, upload: str) -> None:
    up: Any = upstream.client()
    up.abort_multipart_upload(Bucket=name, Key="m", UploadId=upload)
    up.delete_bucket(Bucket=name)
    s3: Any = cache.client()
    assert error_code(lambda: s3.get_bucket_cors(Bucket=name)) == "NoSuchBucket"  # learnt, forgotten
    assert cache.root is not None and not (cache.root / name).exists()


ENDS: dict[str, Callable[[Server, Server, str, str], None]] = {
    "completed": _complete,
    "aborted": _abort,
    "bucket forgotten": _forget,
}


def _kept_folders(cache: Server, name: str) -> list[str]:
    """The cache's folders of kept parts of the bucket's uploads (cacheparts.PartStore)."""
    assert cache.root is not None
    parts = cache.root / ".s3serve" / "cache-parts"
    prefix = hashlib.sha256(name.encode()).hexdigest()[:16] + "-"
    return [folder.name for folder in parts.iterdir() if folder.name.startswith(prefix)] if parts.exists() else []


@pytest.mark.parametrize("room", ["roomy", "cramped"])
@pytest.mark.parametrize("end", list(ENDS))
def test_a_part_acknowledged_as_its_upload_ends_is_not_kept_after_the_end(
    request: pytest.FixtureRequest, upstream: Server, gates: Path, room: str, end: str
) -> None:
    # The end removed the upload's folder (none was there yet), then the part made a new one and
    # was kept in it (or left a folder marking the upload's parts given up): no later request
    # names the upload, so it stayed until the multipart expiry, its bytes counted as kept.
    cache: Server = request.getfixturevalue(room)
    s3: Any = cache.client()
    name = f"race-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    upload = s3.create_multipart_upload(Bucket=name, Key="m")["UploadId"]
    answered: list[str] = []

    def send() -> None:
        answered.append(error_code(lambda: s3.upload_part(
            Bucket=name, Key="m", UploadId=upload, PartNumber=1, Body=BODY
        )))  # fmt: skip

    sending = threading.Thread(target=send)
    sending.start()
    until(lambda: (gates / f"{name}.held").exists())
    ENDS[end](cache, upstream, name, upload)
    (gates / name).touch()
    sending.join(GATE_WAIT * 2)
    assert answered == ["OK"]  # the upstream has the part: it was acknowledged before the end
    assert _kept_folders(cache, name) == []
