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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

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


def test_crashes_in_sidecar_mode_lose_no_record(tmp_path: Path) -> None:
    """The same, with every record in a sidecar file (as where the filesystem has no user xattrs):
    a crash at any moment leaves each object with its own record."""
    opts = Options(
        rounds=2, clients=3, buckets=2, max_size=600 * KiB, part_size=256 * KiB, max_parts=3,
        kill_min=0.3, kill_max=1.2, workers=(1, 2), sidecar=True, work=tmp_path / "torture",
    )  # fmt: skip
    lines: list[str] = []
    summary = run(opts, log=lines.append)
    report = "\n".join([*lines, summary.text()])
    assert not summary.violations, report
    assert summary.rounds == opts.rounds and summary.counts.get("put", 0) > 0, report
    assert summary.counts.get("sidecar records seen after a restart", 0) > 0, report


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


# -- sidecar mode ---------------------------------------------------------------------------------
# Where the filesystem has no user xattrs, every record is a sidecar file of its key
# (S3SERVE_TEST_SIDECARS=1 forces that mode on this one). Here a real server is killed at one
# step: a server whose process has a step of the storage layer replaced by a SIGKILL (dying_at),
# asked over HTTP with boto3, then started again (plain) on the same ROOT.


def dying_at(step: str) -> str:
    """start_server's ``patch`` for a server that SIGKILLs itself at ``step`` of its next write."""
    return textwrap.dedent(f'''
        import os, signal
        from s3serve.storage import keys, metadata

        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)

        place = keys.place

        def dying(*args, **kwargs):
            if {step!r} == "after-rename":
                place(*args, **kwargs)
            die()

        if {step!r} in ("before-rename", "after-rename"):  # the rename that puts a file at a key
            keys.place = dying
        elif {step!r} == "forget":  # a DELETE: its file is gone, its sidecar not yet
            metadata.MetaStore.forget = die
        else:
            raise SystemExit("unknown step {step}")
    ''')


def dies_on(server: Server, request: Callable[[Any], Any]) -> None:
    """Send ``request`` once (no retries) to a patched server, which must die of it."""
    s3 = server.client(retries={"total_max_attempts": 1}, read_timeout=30)
    with pytest.raises((BotoCoreError, ClientError)):
        request(s3)
    assert server.process is not None
    assert server.process.wait(timeout=30) == -signal.SIGKILL, server.log_path.read_text() if server.log_path else ""


@dataclass(frozen=True)
class Seen:
    """What a client sees of an object, metadata included."""

    md5: str
    etag: str
    content_type: str
    user_meta: dict[str, str]
    tags: dict[str, str]
    checksummed: bool


def seen(s3: Any, key: str) -> Seen | None:
    try:
        head = s3.head_object(Bucket="bkt", Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "404"
        return None
    body = s3.get_object(Bucket="bkt", Key=key)["Body"].read()
    assert head["ContentLength"] == len(body)
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket="bkt", Key=key)["TagSet"]}
    checksummed = any(k.startswith("Checksum") and k != "ChecksumType" for k in head)
    return Seen(hashlib.md5(body).hexdigest(), head["ETag"].strip('"'), head["ContentType"], head["Metadata"], tags, checksummed)


OLD = b"O" * 2000
NEW_META = ("text/x-new", {"v": "new"}, {"t": "new"}, True)
OLD_META = ("text/x-old", {"v": "old"}, {"t": "old"}, True)


def _setup_and_op(op: str, s3: Any, root: Path) -> tuple[Callable[[Any], Any], bytes, str]:
    """Made with a plain server: the old object at "dst", and what ``op`` needs. Returns the
    request that writes "dst", the bytes it writes and their ETag."""
    s3.put_object(Bucket="bkt", Key="dst", Body=OLD, ContentType="text/x-old", Metadata={"v": "old"}, Tagging="t=old")
    new = {"ContentType": "text/x-new", "Metadata": {"v": "new"}, "Tagging": "t=new"}
    if op in ("put-small", "put-large"):
        data = (b"N" * 1000) if op == "put-small" else (b"N" * 300_000)  # the one-hop and streaming paths
        return (lambda c: c.put_object(Bucket="bkt", Key="dst", Body=data, **new)), data, hashlib.md5(data).hexdigest()
    if op == "complete":
        data = b"P" * 100_000
        upload_id = s3.create_multipart_upload(Bucket="bkt", Key="dst", **new)["UploadId"]
        etag = s3.upload_part(Bucket="bkt", Key="dst", UploadId=upload_id, PartNumber=1, Body=data)["ETag"]
        parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
        md5s = hashlib.md5(bytes.fromhex(etag.strip('"'))).hexdigest() + "-1"
        return (
            lambda c: c.complete_multipart_upload(Bucket="bkt", Key="dst", UploadId=upload_id, MultipartUpload=parts)
        ), data, md5s
    if op in ("copy-bytes", "copy-link"):
        # Under copies.LINK_MIN_SIZE the bytes are copied; over it the copy is a hard link.
        data = (b"S" * 1000) if op == "copy-bytes" else (b"L" * 300_000)
        s3.put_object(Bucket="bkt", Key="src", Body=data, ContentType="text/x-src")
        copy = {**new, "MetadataDirective": "REPLACE", "TaggingDirective": "REPLACE"}
        return (
            lambda c: c.copy_object(Bucket="bkt", Key="dst", CopySource={"Bucket": "bkt", "Key": "src"}, **copy)
        ), data, hashlib.md5(data).hexdigest()
    assert op == "rename"
    data = b"R" * 300_000
    s3.put_object(Bucket="bkt", Key="src", Body=data, **new)
    return (lambda c: c.rename_object(Bucket="bkt", Key="dst", RenameSource="bkt/src")), data, hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("when", ["before-rename", "after-rename"])
@pytest.mark.parametrize("op", ["put-small", "put-large", "complete", "copy-bytes", "copy-link", "rename"])
def test_sidecar_mode_write_killed_at_its_rename_keeps_every_record(
    root: Path, restarted: Callable[[], Any], monkeypatch: pytest.MonkeyPatch, op: str, when: str
) -> None:
    """In sidecar mode PutObject, CompleteMultipartUpload, a byte copy and RenameObject renamed
    the file into place and wrote its sidecar after: killed in between, the new object had no
    record (content type, user metadata, tags and checksum gone, the ETag hashed again). A linked
    copy wrote its record before the rename over the old one: killed before the rename, the
    object still there had lost its own."""
    monkeypatch.setenv("S3SERVE_TEST_SIDECARS", "1")
    s3 = restarted()
    s3.create_bucket(Bucket="bkt")
    request, data, etag = _setup_and_op(op, s3, root)
    source = seen(s3, "src")
    assert "user.s3serve" not in os.listxattr(root / "bkt" / "dst")  # the mode at hand: no xattr record
    dies_on(start_server(root, patch=dying_at(when)), request)
    s3 = restarted()
    got = seen(s3, "dst")
    if when == "before-rename":  # not acknowledged, not renamed into place: the old object, whole
        assert got == Seen(hashlib.md5(OLD).hexdigest(), hashlib.md5(OLD).hexdigest(), *OLD_META)
        assert seen(s3, "src") == source
        return
    assert got == Seen(hashlib.md5(data).hexdigest(), etag, *NEW_META)
    if op == "copy-link":
        assert os.stat(root / "bkt" / "dst").st_ino == os.stat(root / "bkt" / "src").st_ino  # linked
    if op == "rename":
        assert seen(s3, "src") is None
    elif source is not None:
        assert seen(s3, "src") == source  # the source of a copy, untouched


def test_sidecar_mode_delete_killed_before_its_sidecar_goes_leaves_nothing_to_match(
    root: Path, restarted: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DELETE removes the file, then its sidecar: killed in between, the sidecar stays behind.
    Its record names the removed file's inode, size and mtime, so nothing later at the key takes
    it for its own: a file another program puts there (of the same size) is hashed as any foreign
    file, and a new object gets its own record."""
    monkeypatch.setenv("S3SERVE_TEST_SIDECARS", "1")
    s3 = restarted()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=OLD, ContentType="text/x-old", Metadata={"v": "old"}, Tagging="t=old")
    dies_on(start_server(root, patch=dying_at("forget")), lambda c: c.delete_object(Bucket="bkt", Key="k"))
    assert not (root / "bkt" / "k").exists()
    sidecars = [p for p in (root / ".s3serve" / "meta" / "bkt").rglob("*.json")]
    assert len(sidecars) == 1  # the stale one, the case at hand
    s3 = restarted()
    assert seen(s3, "k") is None
    assert s3.list_objects_v2(Bucket="bkt")["KeyCount"] == 0
    foreign = b"F" * len(OLD)
    (root / "bkt" / "k").write_bytes(foreign)
    md5 = hashlib.md5(foreign).hexdigest()
    assert seen(s3, "k") == Seen(md5, md5, "binary/octet-stream", {}, {}, False)
    s3.put_object(Bucket="bkt", Key="k", Body=b"Z" * len(OLD), ContentType="text/x-z")
    md5 = hashlib.md5(b"Z" * len(OLD)).hexdigest()
    assert seen(s3, "k") == Seen(md5, md5, "text/x-z", {}, {}, True)
