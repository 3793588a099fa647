"""A CompleteMultipartUpload that published its object and died before its claim was gone, then
a newer write of the key: the dead claim must be known for a Complete that happened.

A real server is SIGKILLed just after the publish's rename into place (``dying("after-rename")``),
beside a live one on the same ROOT (as --workers share it), for both ways of publishing: the
parts' own file collapsed in place, and a concatenated copy. The key is then written again (or
deleted) and acknowledged. On S3 a Complete that succeeded is final: the upload no longer
exists (ListParts, Abort: NoSuchUpload), a retried Complete does not touch the key, and the later
write wins. Whatever finds the dead claim (the client's retried Complete, an Abort, the GC, a
restart's GC) must leave the newer write at the key and the upload gone.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, start_server
from tests.e2e.test_complete_crash_recovery import ARGS, Upload, dies_on_complete, dying, staging, upload

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts and kills servers of its own"
)

KIB = 1024


def copied_upload(s3: Any, key: str) -> Upload:
    """An upload Complete must concatenate: part 1 uploaded twice, so its listed data is a part
    file of its own, not its slot in the assembly file."""
    bucket = "bkt"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="text/x-whole")["UploadId"]
    parts = {1: os.urandom(64 * KIB), 2: os.urandom(1000)}
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=os.urandom(64 * KIB))
    etags = {n: s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data)["ETag"] for n, data in parts.items()}
    return Upload(bucket, key, upload_id, parts, etags)


def published_by_a_dead_complete(
    root: Path, servers: list[Server], path: str, *live_args: str
) -> tuple[Any, Upload, Path]:
    """An upload made through a live server, completed through another one that dies just after
    the publish's rename. Returns the live server's client, the upload and the dead claim."""
    live = start_server(root, *ARGS, *live_args)
    servers.append(live)
    s3: Any = live.client()
    s3.create_bucket(Bucket="bkt")
    up = upload(s3, "obj") if path == "in-place" else copied_upload(s3, "obj")
    dying_server = start_server(root, *ARGS, patch=dying("after-rename"))
    servers.append(dying_server)
    dies_on_complete(dying_server, up)
    claims = [p for p in staging(root).iterdir() if p.name.startswith(f"{up.upload_id}.complete-")]
    assert len(claims) == 1, list(staging(root).iterdir())
    # It died where it should: the object published (whole), the claim still there.
    assert (claims[0] / "collapsing").is_file() == (path == "in-place")
    got = s3.get_object(Bucket=up.bucket, Key=up.key)
    assert got["ETag"] == up.etag() and got["Body"].read() == up.body()
    return s3, up, claims[0]


def write_again(s3: Any, up: Upload, how: str) -> bytes | None:
    """The key written (or deleted) after the publish, acknowledged; what the key must hold."""
    if how == "delete":
        s3.delete_object(Bucket=up.bucket, Key=up.key)
        return None
    newer = b"the newer PUT " + os.urandom(100)
    put = s3.put_object(Bucket=up.bucket, Key=up.key, Body=newer)
    assert put["ETag"] == f'"{hashlib.md5(newer).hexdigest()}"'
    return newer


def check_newer_write_stands(s3: Any, up: Upload, newer: bytes | None) -> None:
    if newer is None:
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=up.bucket, Key=up.key)
        assert exc.value.response["Error"]["Code"] in ("404", "NoSuchKey")
        return
    got = s3.get_object(Bucket=up.bucket, Key=up.key)
    assert got["Body"].read() == newer
    assert got["ETag"] == f'"{hashlib.md5(newer).hexdigest()}"'


def check_upload_over(root: Path, s3: Any, up: Upload) -> None:
    """The upload is gone, as after any Complete that succeeded."""
    for call in (
        lambda: s3.list_parts(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id),
        lambda: s3.abort_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    assert s3.list_multipart_uploads(Bucket=up.bucket).get("Uploads", []) == []


def retry_complete(s3: Any, up: Upload) -> None:
    """A retried Complete of an upload that was completed: S3 answers it with the object's ETag
    while it can still tell, NoSuchUpload after; it never publishes the upload again."""
    try:
        done = s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchUpload"
    else:
        assert done["ETag"] == up.etag()


PATHS = ["in-place", "copy"]


@pytest.mark.parametrize("how", ["put", "delete"])
@pytest.mark.parametrize("path", PATHS)
def test_a_retried_complete_leaves_the_newer_write(root: Path, servers: list[Server], path: str, how: str) -> None:
    s3, up, claim = published_by_a_dead_complete(root, servers, path)
    newer = write_again(s3, up, how)
    retry_complete(s3, up)
    check_newer_write_stands(s3, up, newer)
    check_upload_over(root, s3, up)
    check_newer_write_stands(s3, up, newer)
    assert not claim.exists()


@pytest.mark.parametrize("path", PATHS)
def test_an_abort_finds_no_upload_and_leaves_the_newer_write(root: Path, servers: list[Server], path: str) -> None:
    s3, up, claim = published_by_a_dead_complete(root, servers, path)
    newer = write_again(s3, up, "put")
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id)
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    retry_complete(s3, up)
    check_newer_write_stands(s3, up, newer)
    check_upload_over(root, s3, up)
    assert not claim.exists()


@pytest.mark.parametrize("path", PATHS)
def test_the_gc_of_a_live_server_does_not_give_the_upload_back(root: Path, servers: list[Server], path: str) -> None:
    s3, up, claim = published_by_a_dead_complete(root, servers, path, "--gc-interval", "0.5s")
    newer = write_again(s3, up, "put")
    deadline = time.monotonic() + 15
    while claim.exists():
        assert time.monotonic() < deadline, "the dead claim was not collected"
        time.sleep(0.1)
    time.sleep(0.2)
    check_upload_over(root, s3, up)
    retry_complete(s3, up)
    check_newer_write_stands(s3, up, newer)
    assert list(staging(root).iterdir()) == []


@pytest.mark.parametrize("path", PATHS)
def test_a_restart_does_not_give_the_upload_back(root: Path, servers: list[Server], path: str) -> None:
    s3, up, claim = published_by_a_dead_complete(root, servers, path)
    newer = write_again(s3, up, "put")
    for server in servers:
        assert server.process is not None
        server.process.terminate()
        server.process.wait(timeout=15)
    again = start_server(root, *ARGS)  # its start-up GC runs before it serves
    servers.append(again)
    s3 = again.client()
    assert not claim.exists()
    check_upload_over(root, s3, up)
    retry_complete(s3, up)
    check_newer_write_stands(s3, up, newer)


def test_without_a_newer_write_a_copy_is_over_and_untouched(root: Path, servers: list[Server]) -> None:
    """No later write: the retried Complete answers with the object, which it does not publish
    again (the same file, the same modification time), and the upload is over. (Published in
    place, the collapsed file's second name told it already: test_complete_crash_recovery.)"""
    s3, up, claim = published_by_a_dead_complete(root, servers, "copy")
    # A server whose GC finds the dead claim, started once the claim was seen: had the live one
    # run its GC all along, a slow machine could let it collect the claim before it was looked for.
    servers.append(start_server(root, *ARGS, "--gc-interval", "0.5s"))
    before = os.stat(root / up.bucket / up.key)
    deadline = time.monotonic() + 15
    while claim.exists():
        assert time.monotonic() < deadline, "the dead claim was not collected"
        time.sleep(0.1)
    done = s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    assert done["ETag"] == up.etag()
    after = os.stat(root / up.bucket / up.key)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    check_upload_over(root, s3, up)
    got = s3.get_object(Bucket=up.bucket, Key=up.key)
    assert got["ETag"] == up.etag() and got["Body"].read() == up.body()


# A Complete's publish refused (as a precondition lost under the key lock), its file consumed.
REFUSED_PUBLISH = """
import os
from s3serve import errors
from s3serve.storage import assembly, disk

_publish = disk.DiskBackend._publish

async def _refused(self, bucket, kp, tmp, record, precondition):
    if tmp is not None and os.path.basename(tmp) == assembly.OBJECT:
        os.unlink(tmp)  # _publish consumes its temp file when it fails
        raise errors.PreconditionFailed()
    return await _publish(self, bucket, kp, tmp, record, precondition)

disk.DiskBackend._publish = _refused
"""


def check_completable(root: Path, s3: Any, up: Upload) -> None:
    """The upload is back at its name as it was, nothing of the Complete's left in it, and a
    Complete makes the object."""
    folder = staging(root) / up.upload_id
    assert folder.is_dir() and not (folder / "publishing").exists() and not (folder / "object").exists()
    listed = s3.list_parts(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id)["Parts"]
    assert {(p["PartNumber"], p["ETag"]) for p in listed} >= {(n, up.etags[n]) for n in up.parts}
    done = s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    assert done["ETag"] == up.etag()
    got = s3.get_object(Bucket=up.bucket, Key=up.key)
    assert got["ETag"] == up.etag() and got["Body"].read() == up.body()
    assert list(staging(root).iterdir()) == []


def test_a_refused_copy_gives_the_upload_back_completable(root: Path, servers: list[Server]) -> None:
    """The publish's marker goes with a refusal, and the copy's second name: the upload is not
    taken for a published one. (In place: test_complete_give_back_races, FAILING_PUBLISH.)"""
    refusing = start_server(root, *ARGS, patch=REFUSED_PUBLISH)
    servers.append(refusing)
    s3: Any = refusing.client(retries={"total_max_attempts": 1})
    s3.create_bucket(Bucket="bkt")
    up = copied_upload(s3, "obj")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    assert not (root / "bkt" / "obj").exists()
    assert refusing.process is not None
    refusing.process.terminate()
    refusing.process.wait(timeout=15)
    again = start_server(root, *ARGS)  # and its start-up GC finds nothing to give back
    servers.append(again)
    check_completable(root, again.client(), up)


@pytest.mark.parametrize("finder", ["retry", "restart"])
def test_a_copy_killed_before_its_rename_is_given_back(root: Path, servers: list[Server], finder: str) -> None:
    """Killed with the copy handed over (its marker written, its file linked in the claim) but not
    renamed: the upload is given back, without the copy, by the client's retried Complete on a
    live server (which then makes the object) or by a restart's GC."""
    live = start_server(root, *ARGS)
    servers.append(live)
    s3: Any = live.client()
    s3.create_bucket(Bucket="bkt")
    up = copied_upload(s3, "obj")
    dying_server = start_server(root, *ARGS, patch=dying("before-rename"))
    servers.append(dying_server)
    dies_on_complete(dying_server, up)
    claim = next(p for p in staging(root).iterdir() if p.name.startswith(f"{up.upload_id}.complete-"))
    assert (claim / "publishing").is_file() and (claim / "object").is_file()
    assert not (root / "bkt" / "obj").exists()
    if finder == "restart":
        assert live.process is not None
        live.process.terminate()
        live.process.wait(timeout=15)
        again = start_server(root, *ARGS)
        servers.append(again)
        check_completable(root, again.client(), up)
        return
    done = s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    assert done["ETag"] == up.etag()
    got = s3.get_object(Bucket=up.bucket, Key=up.key)
    assert got["ETag"] == up.etag() and got["Body"].read() == up.body()
    assert list(staging(root).iterdir()) == []


def test_an_upload_given_back_by_an_older_version_after_its_publish_is_over(root: Path, servers: list[Server]) -> None:
    """A process of a version before the ``publishing`` marker, sharing ROOT, gave the dead
    claim of a published copy back (its GC renames such a claim back to the upload's name, the
    marker in it): the next Complete finds the marker and ends the upload instead of publishing
    it again over the newer write."""
    s3, up, claim = published_by_a_dead_complete(root, servers, "copy")
    claim.rename(staging(root) / up.upload_id)  # what the older GC does with it
    newer = write_again(s3, up, "put")
    retry_complete(s3, up)
    check_newer_write_stands(s3, up, newer)
    check_upload_over(root, s3, up)
    assert list(staging(root).iterdir()) == []
