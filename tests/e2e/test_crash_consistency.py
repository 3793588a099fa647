"""Crash consistency, for real: a few rounds of tools/crash_torture.py (make crash-torture runs
hundreds). A real s3serve under a random write load from boto3 clients is killed with SIGKILL
(with --workers 2 in every other round), started again on the same ROOT, and every key and
upload is checked against what the clients were answered: acknowledged writes are there, deletes
are gone, a request in flight at the crash left the old or the new state whole, listings agree,
the dead process's temp files are collected, nothing lands outside ROOT.
Small sizes (parts of 256 KiB) keep it to a few seconds a round.

Below it, each bug the torture (or its review) found, reproduced deterministically: killed with
SIGKILL at the exact step of a write, then asked through a real server.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import s3serve
from tests.conftest import Server, start_server, stop_server
from tools.crash_torture import KiB, Options, run

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts and kills servers of its own"
)


def test_crashes_lose_nothing_acknowledged_and_show_nothing_torn(tmp_path: Path) -> None:
    opts = Options(
        rounds=4,
        clients=3,
        buckets=2,
        max_size=600 * KiB,  # across the 256 KiB small-write threshold
        part_size=256 * KiB,
        max_parts=3,
        kill_min=0.3,
        kill_max=1.2,
        workers=(1, 2),
        work=tmp_path / "torture",
    )
    lines: list[str] = []
    summary = run(opts, log=lines.append)
    report = "\n".join([*lines, summary.text()])
    assert not summary.violations, report
    assert summary.rounds == opts.rounds, report
    # The load really ran, and the last round's clean-up (every upload finished, every bucket
    # emptied and deleted, a graceful stop) went through.
    assert summary.counts.get("put", 0) > 0, report
    assert summary.counts.get("uploads completed after the last round", 0) + summary.counts.get(
        "uploads aborted after the last round", 0
    ) + summary.counts.get("complete", 0) > 0, report


# -- deterministic crashes ------------------------------------------------------------------------
# What the torture found, each reproduced at its exact moment: the server's storage runs in a
# process of its own, which SIGKILLs itself at one step of a write; a real server is then started
# on the same ROOT (its start-up GC runs first) and asked what a client would ask.

PRELUDE = '''
import asyncio, base64, os, shutil, signal, sys, zlib
from pathlib import Path
from s3serve.storage import keys, staging
from s3serve.storage.base import PartInfo, WriteMeta
from s3serve.storage.disk import DiskBackend

ROOT = Path(sys.argv[1])
ARGS = sys.argv[2:]


class Body:
    """A request body as payload.py hands it over, with the CRC32 boto3 sends by default."""

    def __init__(self, data):
        self.data = data
        self.digests_wanted = frozenset()
        self.declared_checksum = None
        self.decoded_length = len(data)

    async def __aiter__(self):
        yield self.data

    def finish(self, digests):
        return {"CRC32": base64.b64encode(zlib.crc32(self.data).to_bytes(4, "big")).decode()}


def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at_rename(when):
    """Die just "before" or just "after" the next rename that puts a file at a key."""
    place = keys.place

    def dying(*args, **kwargs):
        if when == "after":
            place(*args, **kwargs)
        die()

    keys.place = dying


async def main():
    (ROOT / "bkt").mkdir()  # a folder: the bucket of the server's first user
    be = DiskBackend(ROOT, "owner", fsync=True, min_part_size=1)
    await be.start()
'''


def crash_during(root: Path, steps: str, *args: str) -> str:
    """Run ``steps`` (the rest of ``main``, with a DiskBackend ``be`` on ``root``, and ``args`` as
    ARGS) in a process of its own, which must die of its own SIGKILL; what it printed."""
    script = PRELUDE + textwrap.indent(textwrap.dedent(steps), "    ") + "\n\nasyncio.run(main())\n"
    env = {**os.environ, "PYTHONPATH": str(Path(s3serve.__file__).resolve().parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(root), *args], capture_output=True, text=True, timeout=60, env=env, cwd=root.parent
    )
    assert done.returncode == -signal.SIGKILL, f"did not die where it should:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def restarted(root: Path) -> Iterator[Callable[[], Any]]:
    """After the crash: start a real server on the same ROOT, and get a boto3 client of it."""
    servers: list[Server] = []

    def start() -> Any:
        servers.append(start_server(root))
        return servers[-1].client()

    yield start
    for server in servers:
        stop_server(server)


def state(s3: Any, key: str) -> tuple[bytes, str, dict[str, str], bool]:
    """What a client sees of an object: its first byte (each object here is one byte repeated),
    content type, tags, and whether it has its CRC32; ETag and size are checked alongside."""
    head = s3.head_object(Bucket="bkt", Key=key, ChecksumMode="ENABLED")
    body = s3.get_object(Bucket="bkt", Key=key)["Body"].read()
    assert head["ETag"] == f'"{hashlib.md5(body).hexdigest()}"' and head["ContentLength"] == len(body)
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket="bkt", Key=key)["TagSet"]}
    return body[:1], head["ContentType"], tags, bool(head.get("ChecksumCRC32"))


@pytest.mark.parametrize("when", ["before", "after"])
def test_copy_onto_a_linked_copy_killed_at_its_rename_leaves_one_object_whole(root: Path, restarted: Callable[[], Any], when: str) -> None:
    """A large CopyObject is a hard link whose record is a per-key sidecar. Copied again onto such
    a copy, the new record replaced the destination's sidecar before the rename: killed in between,
    the old object lost its record (content type, tags, checksum; the ETag was hashed again)."""
    out = crash_during(root, '''
        await be.put_object("bkt", "src1", Body(b"A" * 300_000), WriteMeta(headers={"content-type": "text/x-old"}))
        await be.copy_object("bkt", "src1", "bkt", "dst", None)
        await be.put_object_tagging("bkt", "dst", {"keep": "old"})
        if os.stat(ROOT / "bkt" / "dst").st_ino == os.stat(ROOT / "bkt" / "src1").st_ino:
            print("linked", flush=True)
        await be.put_object("bkt", "src2", Body(b"B" * 300_000), WriteMeta(headers={"content-type": "text/x-new"}))
        await be.put_object_tagging("bkt", "src2", {"keep": "new"})
        kill_at_rename(ARGS[0])  # the rename that publishes the copy at "dst"
        await be.copy_object("bkt", "src2", "bkt", "dst", None)
    ''', when)
    assert "linked" in out  # the case at hand: "dst" was a linked copy
    s3 = restarted()
    if when == "before":  # not acknowledged, not renamed into place: the old object, whole
        assert state(s3, "dst") == (b"A", "text/x-old", {"keep": "old"}, True)
    else:
        assert state(s3, "dst") == (b"B", "text/x-new", {"keep": "new"}, True)
    assert state(s3, "src2") == (b"B", "text/x-new", {"keep": "new"}, True)


def test_complete_killed_while_removing_its_claim_gives_back_nothing_torn(root: Path, restarted: Callable[[], Any]) -> None:
    """After CompleteMultipartUpload published the object it removed the claimed upload folder; a
    crash in the middle of that removal left a "complete" claim that the GC gave back as an
    interrupted Complete, its part records and data half gone: a retried Complete then failed
    (InvalidPart, or a 500 for a part whose data was gone) instead of answering the same success."""
    out = crash_during(root, '''
        up = await be.create_multipart_upload("bkt", "obj", WriteMeta(), "owner")
        await be.upload_part("bkt", "obj", up.upload_id, 1, Body(b"1" * 100_000))
        # Uploaded again: the part has a file of its own, and Complete copies (no collapse).
        part = await be.upload_part("bkt", "obj", up.upload_id, 1, Body(b"2" * 100_000))
        print(up.upload_id, part.etag, flush=True)

        def partial(path, ignore_errors=False):
            # The removal gets as far as everything but upload.json, and the process dies.
            for name in sorted(os.listdir(path)):
                if name != "upload.json":
                    os.unlink(os.path.join(path, name))
            die()

        shutil.rmtree = partial
        await be.complete_multipart_upload("bkt", "obj", up.upload_id, [PartInfo(1, 0, part.etag, 0.0, {})])
    ''')
    upload_id, etag = out.split()
    s3 = restarted()
    assert s3.get_object(Bucket="bkt", Key="obj")["Body"].read() == b"2" * 100_000  # published
    # The client never got its answer and retries: S3 answers the same success.
    parts = {"Parts": [{"PartNumber": 1, "ETag": f'"{etag}"'}]}
    done = s3.complete_multipart_upload(Bucket="bkt", Key="obj", UploadId=upload_id, MultipartUpload=parts)
    assert done["ETag"] == s3.head_object(Bucket="bkt", Key="obj")["ETag"]
    assert s3.list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []


def test_create_killed_before_its_record_leaves_the_bucket_deletable(root: Path, restarted: Callable[[], Any]) -> None:
    """CreateMultipartUpload makes the upload's folder, then renames upload.json into it. Killed in
    between, it left a folder no listing showed and no GC round removed, and DeleteBucket of the
    emptied bucket answered BucketNotEmpty for ever."""
    crash_during(root, '''
        staging._write_json = die  # upload.json, the upload's record
        await be.create_multipart_upload("bkt", "obj", WriteMeta(), "owner")
    ''')
    s3 = restarted()
    assert s3.list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []
    s3.delete_bucket(Bucket="bkt")
    staged = root / ".s3serve" / "multipart" / "bkt"
    assert not staged.exists() or not list(staged.iterdir())


@pytest.mark.parametrize("onto", ["new", "linked"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_rename_of_a_linked_copy_killed_at_its_rename_keeps_every_record(root: Path, restarted: Callable[[], Any], when: str, onto: str) -> None:
    """RenameObject of a linked copy renamed the file, then moved its sidecar record to the new
    key: killed in between, the renamed object had no record (its content type, tags and
    checksum gone, the ETag hashed again; over 8 MiB not even the MD5). Over another linked copy,
    the record to keep until the rename is that one's."""
    out = crash_during(root, '''
        await be.put_object("bkt", "src", Body(b"A" * 300_000), WriteMeta(headers={"content-type": "text/x-a"}))
        await be.copy_object("bkt", "src", "bkt", "copy", None)
        await be.put_object_tagging("bkt", "copy", {"keep": "copy"})
        if ARGS[1] == "linked":
            await be.put_object("bkt", "other", Body(b"O" * 300_000), WriteMeta(headers={"content-type": "text/x-o"}))
            await be.copy_object("bkt", "other", "bkt", "target", None)
            await be.put_object_tagging("bkt", "target", {"keep": "target"})
        if os.stat(ROOT / "bkt" / "copy").st_ino == os.stat(ROOT / "bkt" / "src").st_ino:
            print("linked", flush=True)
        kill_at_rename(ARGS[0])
        await be.rename_object("bkt", "copy", "target")
    ''', when, onto)
    assert "linked" in out
    s3 = restarted()
    if when == "before":
        assert state(s3, "copy") == (b"A", "text/x-a", {"keep": "copy"}, True)
        if onto == "linked":
            assert state(s3, "target") == (b"O", "text/x-o", {"keep": "target"}, True)
    else:
        assert state(s3, "target") == (b"A", "text/x-a", {"keep": "copy"}, True)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]]
        assert "copy" not in keys
    assert state(s3, "src") == (b"A", "text/x-a", {}, True)  # the source of the copy, untouched


def test_rename_onto_a_linked_copy_of_itself_removes_the_source(root: Path, restarted: Callable[[], Any]) -> None:
    """Found adding RenameObject to the torture, no crash needed: renamed onto a key that is a
    linked copy of it (one inode, two names), rename(2) did nothing, and the 200 left the source
    in place beside the destination."""
    s3 = restarted()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="src", Body=b"A" * 300_000, ContentType="text/x-a")
    s3.copy_object(Bucket="bkt", Key="dst", CopySource={"Bucket": "bkt", "Key": "src"})
    assert os.stat(root / "bkt" / "src").st_ino == os.stat(root / "bkt" / "dst").st_ino  # linked
    s3.rename_object(Bucket="bkt", Key="dst", RenameSource="bkt/src")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]] == ["dst"]
    assert s3.head_object(Bucket="bkt", Key="dst")["ContentType"] == "text/x-a"
    assert s3.get_object(Bucket="bkt", Key="dst")["Body"].read() == b"A" * 300_000
