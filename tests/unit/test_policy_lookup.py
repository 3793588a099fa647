"""The signed GET/HEAD path's lookup of a bucket's owner and policy (DiskBackend.owner_and_config):
a bucket without a policy costs a stat of the owner's record and one of the policy's path, and a
policy put by another process (another DiskBackend on the same ROOT, or a program writing the
file itself) is seen at once."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import pytest

from s3serve.storage.disk import DiskBackend

OWNER = "owner-1"


def _parse(document: bytes) -> bytes:
    return document


@pytest.fixture
async def pair(root: Path) -> AsyncIterator[tuple[DiskBackend, DiskBackend]]:
    one, other = DiskBackend(root, OWNER, fsync=False, gc_interval=3600), DiskBackend(root, OWNER, fsync=False, gc_interval=3600)
    await one.start()
    await other.start()
    await one.create_bucket("photos", OWNER, "us-east-1")
    await asyncio.sleep(0.06)  # the record's stamp settles (metadata.CACHE_MIN_AGE_NS)
    yield one, other
    await one.stop()
    await other.stop()


async def test_a_missing_policy_costs_two_stats(pair: tuple[DiskBackend, DiskBackend]) -> None:
    one, _ = pair
    assert await one.owner_and_config("photos", "policy", _parse) == (OWNER, None)
    real_stat = os.stat
    with mock.patch("os.stat", side_effect=real_stat) as stat:
        for _ in range(5):
            assert await one.owner_and_config("photos", "policy", _parse) == (OWNER, None)
    assert stat.call_count == 10  # the owner's record's and the policy's, no open or read


async def test_a_policy_written_by_another_program_is_seen_at_once(root: Path, pair: tuple[DiskBackend, DiskBackend]) -> None:
    # Knowing the policy missing by the owner's record alone missed one that no s3serve wrote.
    one, _ = pair
    for _ in range(3):
        assert await one.owner_and_config("photos", "policy", _parse) == (OWNER, None)
    folder = root / ".s3serve" / "bucket-config" / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.json").write_bytes(b"{}")
    assert await one.owner_and_config("photos", "policy", _parse) == (OWNER, b"{}")
    (folder / "policy.json").unlink()
    assert await one.owner_and_config("photos", "policy", _parse) == (OWNER, None)


async def test_a_policy_put_by_another_process_is_seen_at_once(pair: tuple[DiskBackend, DiskBackend]) -> None:
    one, other = pair
    assert await one.owner_and_config("photos", "policy", _parse) == (OWNER, None)
    await other.put_bucket_config("photos", "policy", b"{}")
    assert await one.owner_and_config("photos", "policy", _parse) == (OWNER, b"{}")
    await asyncio.sleep(0.06)
    await other.delete_bucket_config("photos", "policy")
    assert await one.owner_and_config("photos", "policy", _parse) == (OWNER, None)
    time.sleep(0.06)
    await other.put_bucket_config("photos", "policy", b"{}")
    assert await one.owner_and_config("photos", "policy", _parse) == (OWNER, b"{}")
