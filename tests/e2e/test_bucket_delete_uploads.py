"""DeleteBucket of a bucket whose only content is multipart uploads in progress.

On S3 (general purpose buckets) the uploads do not keep the bucket: DeleteBucket answers 204 and
they go with it (only objects count: BucketNotEmpty). Cleanup tools rely on it (ceph s3-tests'
teardown, `terraform destroy` after an abandoned upload). Here too, durably and safely: requests
racing the deletion get an S3 error (never a 500 nor an object in a deleted bucket), a crash in
the middle leaves nothing that comes back, and a bucket made again with the name has no uploads.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tests.conftest import Server, start_server, stop_server
from tests.e2e.conftest import cache_pair

EXTERNAL = bool(os.environ.get("S3SERVE_TEST_ENDPOINT"))
own_servers = pytest.mark.skipif(EXTERNAL, reason="starts servers of its own")


def _code(exc: pytest.ExceptionInfo[ClientError] | ClientError) -> str:
    error = exc.value if isinstance(exc, pytest.ExceptionInfo) else exc
    return str(error.response["Error"]["Code"])


def _uploads(s3, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def _staged(root: Path | None, bucket: str) -> list[str]:
    """What the server's multipart staging still holds of ``bucket``."""
    if root is None:
        return []
    folder = root / ".s3serve" / "multipart" / bucket
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def name(s3) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A bucket name; the test creates (and deletes) the bucket itself. Whatever is left goes."""
    bucket = f"bdel-{uuid.uuid4().hex[:16]}"
    yield bucket
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        assert _code(exc) == "NoSuchBucket"


def test_delete_bucket_discards_its_uploads(server: Server, s3, name: str) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=name)
    first = s3.create_multipart_upload(Bucket=name, Key="a/big")["UploadId"]
    second = s3.create_multipart_upload(Bucket=name, Key="other")["UploadId"]
    s3.upload_part(Bucket=name, Key="a/big", UploadId=first, PartNumber=1, Body=b"p" * 100_000)
    assert sorted(_uploads(s3, name)) == sorted([first, second])

    answer = s3.delete_bucket(Bucket=name)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as exc:
        s3.list_multipart_uploads(Bucket=name)
    assert _code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=name, Key="a/big", UploadId=first, PartNumber=2, Body=b"x")
    assert _code(exc) == "NoSuchBucket"
    assert _staged(server.root, name) == []

    # A bucket made again with the name starts without them.
    s3.create_bucket(Bucket=name)
    assert _uploads(s3, name) == []
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=name, Key="a/big", UploadId=first, PartNumber=2, Body=b"x")
    assert _code(exc) == "NoSuchUpload"
    parts = {"Parts": [{"PartNumber": 1, "ETag": '"0"'}]}
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=name, Key="a/big", UploadId=first, MultipartUpload=parts)
    assert _code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=name, Key="other", UploadId=second)
    assert _code(exc) == "NoSuchUpload"


def test_objects_still_keep_the_bucket_and_its_uploads(s3, name: str) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=name)
    upload_id = s3.create_multipart_upload(Bucket=name, Key="pending")["UploadId"]
    s3.put_object(Bucket=name, Key="dir/obj", Body=b"data")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=name)
    assert (_code(exc), exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("BucketNotEmpty", 409)
    # A refused DeleteBucket touched nothing: the upload goes on and completes.
    assert _uploads(s3, name) == [upload_id]
    etag = s3.upload_part(Bucket=name, Key="pending", UploadId=upload_id, PartNumber=1, Body=b"part")["ETag"]
    s3.complete_multipart_upload(
        Bucket=name, Key="pending", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    assert s3.get_object(Bucket=name, Key="pending")["Body"].read() == b"part"
    s3.delete_object(Bucket=name, Key="dir/obj")
    s3.delete_object(Bucket=name, Key="pending")
    s3.create_multipart_upload(Bucket=name, Key="again")
    s3.delete_bucket(Bucket=name)


def _race(s3, name: str, delay: float, complete: str) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    """One round: parts uploaded by three threads while the bucket is deleted, and a Complete of
    part 1 sent ``complete`` ("early": before the delay, "late": with the DeleteBucket, or "").
    The upload's id and what each request was answered."""
    s3.create_bucket(Bucket=name)
    upload_id = s3.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
    first = s3.upload_part(Bucket=name, Key="k", UploadId=upload_id, PartNumber=1, Body=b"1" * 300_000)
    outcomes: dict[str, str] = {}
    stop = threading.Event()

    def parts(worker: int) -> None:
        n = 2 + worker
        while not stop.is_set():
            try:
                s3.upload_part(Bucket=name, Key="k", UploadId=upload_id, PartNumber=n, Body=os.urandom(200_000))
            except ClientError as exc:
                outcomes[f"part{worker}"] = _code(exc)
                return
            n += 3

    def completion() -> None:
        try:
            s3.complete_multipart_upload(
                Bucket=name, Key="k", UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first["ETag"]}]},
            )  # fmt: skip
            outcomes["complete"] = "ok"
        except ClientError as exc:
            outcomes["complete"] = _code(exc)

    threads = [threading.Thread(target=parts, args=(w,)) for w in range(3)]
    completer = threading.Thread(target=completion)
    for t in threads + ([completer] if complete == "early" else []):
        t.start()
    time.sleep(delay)
    if complete == "late":
        completer.start()
    try:
        s3.delete_bucket(Bucket=name)
        outcomes["delete"] = "ok"
    except ClientError as exc:
        outcomes["delete"] = _code(exc)
    stop.set()
    for t in threads + ([completer] if complete else []):
        t.join(30)
    return upload_id, outcomes


def test_uploads_racing_the_deletion_get_s3_errors_and_leave_nothing(server: Server, s3, name: str) -> None:  # type: ignore[no-untyped-def]
    """UploadPart and CompleteMultipartUpload sent while the bucket is deleted: each one either
    comes before the deletion (a Complete's object then keeps the bucket: BucketNotEmpty) or
    after it (NoSuchUpload, NoSuchBucket); never a 500, never an object in a deleted bucket."""
    statuses: list[int] = []

    def record(response: Any = None, **_: Any) -> None:
        if response is not None:  # every attempt, retried ones too
            statuses.append(response[0].status_code)

    s3.meta.events.register("needs-retry.s3", record)
    log_start = server.log_path.stat().st_size if server.log_path else 0
    try:
        for round_ in range(8):
            upload_id, outcomes = _race(s3, name, 0.01 * round_, ("", "late", "", "early")[round_ % 4])
            for worker in range(3):
                assert outcomes.get(f"part{worker}", "NoSuchUpload") in ("NoSuchUpload", "NoSuchBucket"), outcomes
            if outcomes["delete"] == "ok":
                assert outcomes.get("complete") in (None, "NoSuchUpload", "NoSuchBucket"), outcomes
                with pytest.raises(ClientError):
                    s3.head_bucket(Bucket=name)
            else:
                # The Complete came first: its object keeps the bucket.
                assert (outcomes["delete"], outcomes.get("complete")) == ("BucketNotEmpty", "ok"), outcomes
                assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"1" * 300_000
                s3.delete_object(Bucket=name, Key="k")
                s3.delete_bucket(Bucket=name)
            # A Complete that failed for the deletion gave its upload back: CreateBucket of the
            # name (the next round) or the GC drops it.
            assert set(_staged(server.root, name)) <= {upload_id}, outcomes
    finally:
        s3.meta.events.unregister("needs-retry.s3", record)
    assert statuses and not [s for s in statuses if s >= 500], statuses
    s3.create_bucket(Bucket=name)
    assert _uploads(s3, name) == [] and _staged(server.root, name) == []
    if server.root is not None:
        # No temp file of an assembly is left behind.
        tmp = server.root / ".s3serve" / "tmp"
        assert not [p.name for p in tmp.iterdir() if p.name.startswith("mpu-")]
    if server.log_path is not None:
        with open(server.log_path, "rb") as f:
            f.seek(log_start)
            logged = f.read().decode(errors="replace")
        assert "Traceback" not in logged and " ERROR " not in logged, logged


# -- crashes and late Completes, on servers of their own -----------------------------------------


def _die_at(target: str) -> str:
    """Server patch: SIGKILL the process when DeleteBucket reaches ``target``."""
    return f'''
import os, signal
from s3serve.storage import gc, staging

def _die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if {target!r} == "drop_bucket":
    _real = staging.Staging.drop_bucket
    async def _drop(self, bucket, held):
        if os.path.isdir(self.bucket_dir(bucket)) and os.listdir(self.bucket_dir(bucket)):
            _die()  # DeleteBucket, its folder gone, its uploads not yet
        return await _real(self, bucket, held)
    staging.Staging.drop_bucket = _drop
else:
    _real_remove = gc.remove_trees
    def _remove(paths):
        if paths and "doomed" in paths[0]:
            _die()
        return _real_remove(paths)
    gc.remove_trees = _remove
'''


@own_servers
@pytest.mark.parametrize("target", ["drop_bucket", "remove_trees"])
def test_deletion_killed_midway_is_finished_at_restart(root: Path, target: str) -> None:
    """Killed after the bucket's folder went but before its uploads did ("drop_bucket"), or while
    they were being removed ("remove_trees"): the next server's start-up GC removes them, and a
    bucket made again with the name has none."""
    srv = start_server(root, "--no-fsync", patch=_die_at(target))
    try:
        s3: Any = srv.client(retries={"total_max_attempts": 1})  # not again, at a dead server
        s3.create_bucket(Bucket="doomed")
        upload_id = s3.create_multipart_upload(Bucket="doomed", Key="k")["UploadId"]
        s3.upload_part(Bucket="doomed", Key="k", UploadId=upload_id, PartNumber=1, Body=b"x" * 100_000)
        s3.create_multipart_upload(Bucket="doomed", Key="k2")
        with pytest.raises((ConnectionClosedError, EndpointConnectionError, ClientError)):
            s3.delete_bucket(Bucket="doomed")
        assert srv.process is not None and srv.process.wait(10) == -9
    finally:
        stop_server(srv)
    assert not (root / "doomed").exists()
    assert _staged(root, "doomed")  # what the crash left
    srv = start_server(root, "--no-fsync")
    try:
        assert _staged(root, "doomed") == []  # the start-up GC, before serving
        s3 = srv.client()
        with pytest.raises(ClientError) as exc:
            s3.list_multipart_uploads(Bucket="doomed")
        assert _code(exc) == "NoSuchBucket"
        s3.create_bucket(Bucket="doomed")
        assert _uploads(s3, "doomed") == []
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket="doomed", Key="k", UploadId=upload_id, PartNumber=2, Body=b"y")
        assert _code(exc) == "NoSuchUpload"
        s3.delete_bucket(Bucket="doomed")
    finally:
        stop_server(srv)
    assert "Traceback" not in (srv.log_path.read_text() if srv.log_path else "")


SLOW_PUBLISH = '''
import asyncio
from s3serve.storage import disk

_real = disk.DiskBackend._publish

async def _slow(self, *args, **kwargs):
    await asyncio.sleep(2.0)  # a Complete copying a big object
    return await _real(self, *args, **kwargs)

disk.DiskBackend._publish = _slow
'''


@own_servers
def test_a_complete_under_way_cannot_publish_into_the_deleted_bucket_nor_its_successor(root: Path) -> None:
    """A Complete that claimed its upload before the DeleteBucket is still assembling: the
    deletion goes ahead (no object yet), the Complete then fails (no bucket), and a CreateBucket
    of the name meanwhile is told to try again (OperationAborted, as S3 answers a name being
    deleted) rather than letting that Complete publish into the new bucket."""
    srv = start_server(root, "--no-fsync", "--min-part-size", "1KiB", patch=SLOW_PUBLISH)
    try:
        s3: Any = srv.client()
        s3.create_bucket(Bucket="racing")
        upload_id = s3.create_multipart_upload(Bucket="racing", Key="obj")["UploadId"]
        etags = [
            s3.upload_part(Bucket="racing", Key="obj", UploadId=upload_id, PartNumber=n, Body=os.urandom(2000))["ETag"]
            for n in (1, 2)
        ]
        outcome: dict[str, object] = {}

        def completion() -> None:
            try:
                outcome["ok"] = s3.complete_multipart_upload(
                    Bucket="racing", Key="obj", UploadId=upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]},
                )  # fmt: skip
            except ClientError as exc:
                outcome["error"] = _code(exc)

        completer = threading.Thread(target=completion)
        completer.start()
        assert _wait(lambda: any(".complete-" in n for n in _staged(root, "racing")))
        assert s3.delete_bucket(Bucket="racing")["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ClientError) as exc:
            s3.create_bucket(Bucket="racing")
        assert (_code(exc), exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("OperationAborted", 409)
        completer.join(30)
        assert outcome == {"error": "NoSuchBucket"}
        s3.create_bucket(Bucket="racing")
        assert _uploads(s3, "racing") == []
        assert s3.list_objects_v2(Bucket="racing")["KeyCount"] == 0
        assert _staged(root, "racing") == []
        s3.delete_bucket(Bucket="racing")
    finally:
        stop_server(srv)
    assert "Traceback" not in (srv.log_path.read_text() if srv.log_path else "")


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@own_servers
def test_through_the_cache_the_parts_kept_there_go_with_the_bucket(tmp_path: Path) -> None:
    """DeleteBucket through the upstream cache goes to the upstream, which discards the uploads;
    the parts the cache kept of them (to make the completed object a replica) go too."""
    with cache_pair(tmp_path) as (upstream, cache):
        up_root = upstream.root
        assert up_root is not None and cache.root is not None
        cache_root = cache.root
        s3: Any = cache.client()
        s3.create_bucket(Bucket="cached")
        s3.create_bucket(Bucket="neighbour")
        kept = cache_root / ".s3serve" / "cache-parts"
        upload_id = s3.create_multipart_upload(Bucket="cached", Key="k")["UploadId"]
        s3.upload_part(Bucket="cached", Key="k", UploadId=upload_id, PartNumber=1, Body=b"c" * 50_000)
        other = s3.create_multipart_upload(Bucket="neighbour", Key="k")["UploadId"]
        s3.upload_part(Bucket="neighbour", Key="k", UploadId=other, PartNumber=1, Body=b"n" * 50_000)
        assert len(list(kept.iterdir())) == 2
        assert s3.delete_bucket(Bucket="cached")["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert len(list(kept.iterdir())) == 1  # the other bucket's upload keeps its parts
        assert _staged(up_root, "cached") == []
        s3.create_bucket(Bucket="cached")
        assert _uploads(s3, "cached") == []
        assert _uploads(s3, "neighbour") == [other]
        s3.abort_multipart_upload(Bucket="neighbour", Key="k", UploadId=other)
        assert not list(kept.iterdir())
        s3.delete_bucket(Bucket="cached")
        s3.delete_bucket(Bucket="neighbour")
    for srv in (upstream, cache):
        assert "Traceback" not in (srv.log_path.read_text() if srv.log_path else "")
