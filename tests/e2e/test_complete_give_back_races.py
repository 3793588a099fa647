"""An upload given back (by the GC, a retry or a failed Complete) meets the requests racing it.

A claimed upload is given back by renaming its folder back to its name; the one that gives it
back still holds the flock on its ``upload.json`` for a moment after that rename. A Complete or
an Abort arriving then, or a Complete that was waiting for another one and looks again just
after it failed, must find the upload (it is there, intact), never answer NoSuchUpload. And a
collapse's plan that the disk had no room for never becomes the marker a crash leaves.

Real servers on one ROOT (as --workers share it), some slowed at one point (the GC's thread
after its rename, a Complete's publish, a lookup) to hold the race open, or killed mid-Complete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.conftest import Server, start_server
from tests.e2e.test_complete_crash_recovery import (
    ARGS,
    dead_claim_beside_live,
    dying,
    staging,
    upload,
)
from tests.e2e.test_disk_faithfulness import _tmpfs

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts and kills servers of its own"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")


def _wait(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


# The GC's thread sleeps between its rename of the claim back to the upload's name and closing
# the claim's upload.json (its flock): the log line it writes in between, made slow.
SLOW_GIVE_BACK = """
import time
from s3serve.storage import gc

_info = gc.log.info

def _slow(msg, *args, **kwargs):
    _info(msg, *args, **kwargs)
    if msg.startswith("multipart GC: gave back upload"):
        time.sleep(3.0)

gc.log.info = _slow
"""


@pytest.mark.parametrize("request_kind", ["complete", "abort"])
def test_a_request_meeting_the_gc_giving_the_upload_back_finds_it(
    root: Path, servers: list[Server], request_kind: str
) -> None:
    s3, up, _, _ = dead_claim_beside_live(root, servers, "after-collapse-2", "--gc-interval", "0.5s", patch=SLOW_GIVE_BACK)
    # The live server's GC undoes the collapse and renames the upload back; it still holds the flock.
    _wait(lambda: (staging(root) / up.upload_id).is_dir())
    if request_kind == "complete":
        done = s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
        assert done["ETag"] == up.etag()
        got = s3.get_object(Bucket=up.bucket, Key=up.key)
        assert got["ETag"] == up.etag() and got["Body"].read() == up.body()
    else:
        s3.abort_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id)
        with pytest.raises(ClientError) as exc:
            s3.list_parts(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id)
        assert _code(exc.value) == "NoSuchUpload"
    assert list(staging(root).iterdir()) == []


# A Complete whose publish fails after the collapse (as a precondition lost under the key lock),
# slowly: it gives the upload back a second after claiming it.
FAILING_PUBLISH = """
import asyncio, os
from s3serve import errors
from s3serve.storage import assembly, disk

_publish = disk.DiskBackend._publish

async def _failing(self, bucket, kp, tmp, record, precondition):
    if tmp is not None and os.path.basename(tmp) == assembly.OBJECT:
        await asyncio.sleep(1.0)
        os.unlink(tmp)  # _publish consumes its temp file when it fails
        raise errors.PreconditionFailed()
    return await _publish(self, bucket, kp, tmp, record, precondition)

disk.DiskBackend._publish = _failing
"""

# A Complete that found the upload claimed looks at the key (did that claim publish it?) slowly,
# the first time: the claim is given back meanwhile.
SLOW_LOOKUP = """
import sys, time
from s3serve.storage import keys

_open_file = keys.open_file
_slowed = []

def _slow(real_root, path):
    if sys._getframe(1).f_code.co_name == "_completed" and not _slowed:
        _slowed.append(path)
        time.sleep(2.0)
    return _open_file(real_root, path)

keys.open_file = _slow
"""


def test_a_complete_waiting_for_another_one_completes_when_that_one_gives_the_upload_back(
    root: Path, servers: list[Server]
) -> None:
    first = start_server(root, *ARGS, patch=FAILING_PUBLISH)
    servers.append(first)
    second = start_server(root, *ARGS, patch=SLOW_LOOKUP)
    servers.append(second)
    s3: Any = first.client()
    s3.create_bucket(Bucket="bkt")
    up = upload(s3, "obj")
    once: Any = first.client(retries={"total_max_attempts": 1})  # a failed Complete is not sent again
    # Once: a NoSuchUpload that a slow Complete answers in the body of its 200 is an error botocore
    # would send the request again for, and the second try would hide the first answer.
    other: Any = second.client(retries={"total_max_attempts": 1})
    outcome: dict[str, str] = {}

    def complete_on_first() -> None:
        try:
            once.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
            outcome["first"] = "ok"
        except ClientError as exc:
            outcome["first"] = _code(exc)

    thread = threading.Thread(target=complete_on_first)
    thread.start()
    try:
        _wait(lambda: any(p.name.startswith(f"{up.upload_id}.complete-") for p in staging(root).iterdir()))
        done = other.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    finally:
        thread.join(30)
    assert outcome == {"first": "PreconditionFailed"}
    assert done["ETag"] == up.etag()
    got = other.get_object(Bucket=up.bucket, Key=up.key)
    assert got["ETag"] == up.etag() and got["Body"].read() == up.body()
    assert list(staging(root).iterdir()) == []


def _fill(root: Path) -> None:
    """Take every page of the tmpfs but one, as another program filling the disk would."""
    (root / "filler-spare").write_bytes(b"s" * 4096)
    with contextlib.suppress(OSError), open(root / "filler", "wb") as f:
        for size in (1 << 20, 4096):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
                    f.flush()
    (root / "filler-spare").unlink()


@needs_root
def test_a_plan_the_full_disk_had_no_room_for_is_never_left_as_the_marker(tmp_path: Path, servers: list[Server]) -> None:
    """The plan of a collapse of 200 parts takes more than a page: with one page left, writing it
    is cut short. A marker holding part of the plan cannot be undone after a crash, and the upload
    would be discarded: the Complete must fail instead (507), the upload intact."""
    with _tmpfs(tmp_path / "fs", "size=64m") as root:
        server = start_server(root, *ARGS, patch=dying("truncate"))  # dies once the marker is written
        servers.append(server)
        s3: Any = server.client(retries={"total_max_attempts": 1})
        s3.create_bucket(Bucket="bkt")
        upload_id = s3.create_multipart_upload(Bucket="bkt", Key="obj")["UploadId"]
        parts = {n: os.urandom(4096) for n in range(1, 200)}
        parts[200] = os.urandom(1000)
        listed = {"Parts": [
            {"PartNumber": n, "ETag": s3.upload_part(Bucket="bkt", Key="obj", UploadId=upload_id, PartNumber=n, Body=data)["ETag"]}
            for n, data in parts.items()
        ]}  # fmt: skip
        _fill(root)
        with pytest.raises((BotoCoreError, ClientError)):
            s3.complete_multipart_upload(Bucket="bkt", Key="obj", UploadId=upload_id, MultipartUpload=listed)
        for filler in root.glob("filler*"):
            filler.unlink()
        assert server.process is not None
        if server.process.poll() is None:  # it refused (507): now it has room, and dies collapsing
            with pytest.raises((BotoCoreError, ClientError)):
                s3.complete_multipart_upload(Bucket="bkt", Key="obj", UploadId=upload_id, MultipartUpload=listed)
        assert server.process.wait(timeout=30) == -signal.SIGKILL
        again = start_server(root, *ARGS)
        servers.append(again)
        s3 = again.client()
        done = s3.complete_multipart_upload(Bucket="bkt", Key="obj", UploadId=upload_id, MultipartUpload=listed)
        got = s3.get_object(Bucket="bkt", Key="obj")
        assert got["ETag"] == done["ETag"] and got["Body"].read() == b"".join(parts.values())
        assert list((root / ".s3serve" / "multipart" / "bkt").iterdir()) == []
