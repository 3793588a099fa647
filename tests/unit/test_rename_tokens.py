"""RenameObject's x-amz-client-token lives on disk: a retry reaching another process that serves
the same ROOT (--workers) succeeds too; tokens expire and the GC forgets them."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from s3serve import errors
from s3serve.storage import tokens
from s3serve.storage.base import WriteMeta
from s3serve.storage.disk import DiskBackend

OWNER = "owner"


class Body:
    digests_wanted: frozenset[str] = frozenset()
    declared_checksum: str | None = None
    decoded_length: int | None = None

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        return {}


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[DiskBackend, DiskBackend]]:
    first = DiskBackend(tmp_path / "root", OWNER, fsync=False)
    second = DiskBackend(tmp_path / "root", OWNER, fsync=False)
    await first.start()
    await second.start()
    await first.create_bucket("bkt", OWNER, "us-east-1")
    yield first, second
    await first.stop()
    await second.stop()


async def test_a_retry_on_another_process_succeeds(two: tuple[DiskBackend, DiskBackend]) -> None:
    first, second = two
    await first.put_object("bkt", "a", Body(b"payload"), WriteMeta())
    done = await first.rename_object("bkt", "a", "b", client_token="tok")
    again = await second.rename_object("bkt", "a", "b", client_token="tok")
    assert again.etag == done.etag and again.key == "b"
    # The token covers that rename only, and no token means no excuse.
    with pytest.raises(errors.S3Error) as info:
        await second.rename_object("bkt", "a", "c", client_token="tok")
    assert info.value.code == "NoSuchKey"
    with pytest.raises(errors.S3Error):
        await second.rename_object("bkt", "a", "b")


async def test_tokens_expire_and_are_pruned(two: tuple[DiskBackend, DiskBackend]) -> None:
    first, second = two
    await first.put_object("bkt", "a", Body(b"payload"), WriteMeta())
    await first.rename_object("bkt", "a", "b", client_token="old")
    [path] = list(Path(first.rename_tokens.dir).iterdir())
    past = time.time() - tokens.TTL - 5
    os.utime(path, (past, past))
    with pytest.raises(errors.S3Error):
        await second.rename_object("bkt", "a", "b", client_token="old")
    second.staging.collector.collect(False)
    assert not path.exists()
