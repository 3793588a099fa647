"""A bucket deleted directly on the upstream and created again through the cache while the cache
is still forgetting it: the folder the cache forgets is of the old bucket, never of the new one
(its configuration, which only the cache keeps, and its copies). Live processes on loopback: an
s3serve cache in front of a second s3serve, via boto3; the cache's forgetting is held at a gate
(a file) of the test's own, for the new bucket to be made meanwhile."""

from __future__ import annotations

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

CORS = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
GATE_WAIT = 1.0  # the longest the held forgetting waits for its gate to open


def _gated(gate: Path) -> str:
    # Once the upstream has said NoSuchBucket, the forgetting of a bucket named race-* waits for
    # the gate (at most GATE_WAIT: a cache that makes the CreateBucket wait for it opens it).
    return f"""
import asyncio, os, time
from s3serve.storage import cache as c
_forget = c.CacheBackend._forget_bucket
async def _held(self, name):
    if name.startswith("race-"):
        open({str(gate)!r} + ".held", "w").close()
        until = time.monotonic() + {GATE_WAIT}
        while not os.path.exists({str(gate)!r}) and time.monotonic() < until:
            await asyncio.sleep(0.01)
    await _forget(self, name)
c.CacheBackend._forget_bucket = _held
"""


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return tmp_path / "gate"


@pytest.fixture
def cache(tmp_path: Path, upstream: Server, gate: Path) -> Iterator[Server]:
    with running_cache(tmp_path / "root", upstream, patch=_gated(gate)) as srv:
        yield srv
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


LEARNERS: dict[str, Callable[[Any, str], object]] = {
    "GetObject": lambda s3, name: s3.get_object(Bucket=name, Key="k"),
    "GetBucketCors": lambda s3, name: s3.get_bucket_cors(Bucket=name),
}


@pytest.mark.parametrize("learner", list(LEARNERS))
def test_a_bucket_created_again_while_its_old_folder_is_forgotten_keeps_what_it_was_given(
    cache: Server, upstream: Server, gate: Path, learner: str
) -> None:
    # The request that learnt the old bucket was gone removed the folder after the new bucket of
    # that name had been created and given CORS rules through the cache: the rules, kept here
    # alone, were lost, though S3 has the bucket and the client was told they were stored.
    s3: Any = cache.client()
    up: Any = upstream.client()
    name = f"race-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_cors(Bucket=name, CORSConfiguration=CORS)
    up.delete_bucket(Bucket=name)
    learnt: list[str] = []
    learning = threading.Thread(target=lambda: learnt.append(error_code(lambda: LEARNERS[learner](s3, name))))
    learning.start()
    until(lambda: Path(f"{gate}.held").exists())
    made: list[str] = []

    def make_again() -> None:
        s3.create_bucket(Bucket=name)
        s3.put_bucket_cors(Bucket=name, CORSConfiguration=CORS)
        s3.put_object(Bucket=name, Key="new", Body=b"new object")
        made.append("made")

    making = threading.Thread(target=make_again)
    making.start()
    making.join(GATE_WAIT * 4)
    gate.touch()
    learning.join(GATE_WAIT * 4)
    assert made == ["made"] and learnt == ["NoSuchBucket"]
    assert s3.get_bucket_cors(Bucket=name)["CORSRules"]
    assert s3.get_object(Bucket=name, Key="new")["Body"].read() == b"new object"
    assert cache.root is not None and (cache.root / name).is_dir()
