"""The multipart garbage collector and crash recovery, on servers of their own with a fast GC.

Crashes are real: the server process is killed with SIGKILL while a request body is still
arriving through a raw socket, and the next server started on the same ROOT must clean up.
"""

from __future__ import annotations

import os
import re
import socket
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import REGION, FixedPayloadAuth, Server, start_server, stop_server

FAST_GC = ("--gc-interval", "0.2s", "--multipart-expiry", "1s", "--min-part-size", "1KiB", "--no-fsync")


def wait_for(condition: Callable[[], bool], timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def open_request(server: Server, method: str, path: str, length: int, first: bytes) -> socket.socket:
    """Start a signed request whose body (``length`` bytes, UNSIGNED-PAYLOAD) is only partly sent."""
    headers = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(length)}
    request = AWSRequest(method=method, url=server.endpoint + path, data=b"", headers=headers)
    FixedPayloadAuth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    host, port = server.endpoint.rsplit("/", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)))
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    sock.sendall(head.encode() + b"\r\n" + first)
    return sock


def read_status(sock: socket.socket) -> int:
    sock.settimeout(10)
    data = b""
    while b"\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return int(data.split(b" ", 2)[1])


@pytest.fixture
def fast_server(root: Path) -> Iterator[Server]:
    server = start_server(root, *FAST_GC)
    yield server
    stop_server(server)


def staged(root: Path, bucket: str) -> list[str]:
    folder = root / ".s3serve" / "multipart" / bucket
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_abandoned_upload_removed_active_one_kept(fast_server: Server, root: Path) -> None:
    s3 = fast_server.client()
    s3.create_bucket(Bucket="gcb")
    abandoned = s3.create_multipart_upload(Bucket="gcb", Key="abandoned")["UploadId"]
    s3.upload_part(Bucket="gcb", Key="abandoned", UploadId=abandoned, PartNumber=1, Body=b"a" * 5000)
    active = s3.create_multipart_upload(Bucket="gcb", Key="active")["UploadId"]
    parts = []
    # Parts keep arriving for well over the expiry time: the clock is the last part activity.
    for number in range(1, 9):
        etag = s3.upload_part(Bucket="gcb", Key="active", UploadId=active, PartNumber=number, Body=b"p" * 2000)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        time.sleep(0.4)
    ids = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="gcb").get("Uploads", [])]
    assert ids == [active]
    assert staged(root, "gcb") == [active]
    s3.complete_multipart_upload(Bucket="gcb", Key="active", UploadId=active, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket="gcb", Key="active")["Body"].read() == b"p" * 16000
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket="gcb", Key="abandoned", UploadId=abandoned)
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    assert fast_server.log_path is not None
    log = fast_server.log_path.read_text()
    found = re.search(rf"removed upload {abandoned} of gcb/abandoned idle \d+s, (\d+) bytes freed", log)
    assert found is not None and int(found.group(1)) >= 5000  # the part and the upload's records
    s3.delete_object(Bucket="gcb", Key="active")
    s3.delete_bucket(Bucket="gcb")  # nothing left in progress


def test_part_still_streaming_is_not_collected(fast_server: Server, root: Path) -> None:
    s3 = fast_server.client()
    s3.create_bucket(Bucket="slow")
    upload_id = s3.create_multipart_upload(Bucket="slow", Key="k")["UploadId"]
    body = os.urandom(3 * 1024 * 1024)
    sock = open_request(fast_server, "PUT", f"/slow/k?partNumber=1&uploadId={upload_id}", len(body), body[:1000])
    try:
        folder = root / ".s3serve" / "multipart" / "slow" / upload_id
        assert wait_for(lambda: any(p.name.startswith(("tmp-", "slot-")) for p in folder.iterdir()))
        time.sleep(2.5)  # idle for longer than the expiry, but the part's writer holds its file
        assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="slow")["Uploads"]] == [upload_id]
        sock.sendall(body[1000:])
        assert read_status(sock) == 200
    finally:
        sock.close()
    parts = s3.list_parts(Bucket="slow", Key="k", UploadId=upload_id)["Parts"]
    s3.complete_multipart_upload(
        Bucket="slow", Key="k", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": parts[0]["ETag"]}]},
    )
    assert s3.get_object(Bucket="slow", Key="k")["Body"].read() == body


def test_killed_server_leaves_nothing_visible_and_next_start_cleans(root: Path) -> None:
    first = start_server(root, "--no-fsync", "--min-part-size", "1KiB")
    s3 = first.client()
    s3.create_bucket(Bucket="crash")
    upload_id = s3.create_multipart_upload(Bucket="crash", Key="mp")["UploadId"]
    part1 = s3.upload_part(Bucket="crash", Key="mp", UploadId=upload_id, PartNumber=1, Body=b"1" * 4096)["ETag"]
    size = 4 * 1024 * 1024
    put = open_request(first, "PUT", "/crash/half-put", size, os.urandom(1500 * 1024))
    part = open_request(first, "PUT", f"/crash/mp?partNumber=2&uploadId={upload_id}", size, os.urandom(1500 * 1024))
    tmp = root / ".s3serve" / "tmp"
    folder = root / ".s3serve" / "multipart" / "crash" / upload_id
    try:
        assert wait_for(lambda: any(p.name.startswith("put-") for p in tmp.iterdir()))
        assert wait_for(lambda: any(p.name.startswith(("tmp-", "slot-")) for p in folder.iterdir()))
        # While the body is arriving, the object does not exist for anyone.
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket="crash", Key="half-put")
        assert exc.value.response["Error"]["Code"] == "404"
        assert first.process is not None
        first.process.kill()
        first.process.wait()
    finally:
        put.close()
        part.close()
    assert any(p.name.startswith("put-") for p in tmp.iterdir())  # the crash really left them
    assert any(p.name.startswith(("tmp-", "slot-")) for p in folder.iterdir())
    assert list((root / "crash").iterdir()) == []
    time.sleep(1.1)  # older than the grace the GC gives a just-created temp file

    second = start_server(root, "--no-fsync", "--min-part-size", "1KiB")
    try:
        assert not [p.name for p in tmp.iterdir() if p.name.startswith(("put-", "mpu-", "copy-"))]
        assert not [p.name for p in folder.iterdir() if p.name.startswith("tmp-")]
        s3 = second.client()
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket="crash", Key="half-put")
        assert exc.value.response["Error"]["Code"] == "404"
        assert s3.list_objects_v2(Bucket="crash").get("KeyCount") == 0
        # The upload itself survived with its finished part and can go on.
        listed = s3.list_parts(Bucket="crash", Key="mp", UploadId=upload_id)["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(1, part1)]
        part2 = s3.upload_part(Bucket="crash", Key="mp", UploadId=upload_id, PartNumber=2, Body=b"2" * 100)["ETag"]
        s3.complete_multipart_upload(
            Bucket="crash", Key="mp", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part1}, {"PartNumber": 2, "ETag": part2}]},
        )
        assert second.log_path is not None and "removed orphaned temp file" in second.log_path.read_text()
    finally:
        stop_server(second)

    # The part layout is stored with the object: partNumber reads survive a restart.
    third = start_server(root, "--no-fsync")
    try:
        got = third.client().get_object(Bucket="crash", Key="mp", PartNumber=2)
        assert got["PartsCount"] == 2 and got["Body"].read() == b"2" * 100
    finally:
        stop_server(third)


# A hard-link copy held up between its link and its rename (a slow fsync of its records, say) for
# longer than the grace the GC gives a fresh temp file.
SLOW_LINK = textwrap.dedent('''
    import os, time
    from s3serve.storage import gc, keys

    place = keys.place

    def slow(real_root, bdir, kp, path, src, src_dir_fd=None):
        if os.path.basename(src).startswith("link-"):
            time.sleep(gc.TEMP_GRACE + 1.0)
        return place(real_root, bdir, kp, path, src, src_dir_fd)

    keys.place = slow
''')


@pytest.mark.parametrize("mode", ["xattr", "sidecar"])
def test_slow_linked_copy_survives_the_gc_of_another_process(root: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """CopyObject of a large object is a hard link: a temp name of the source's inode in the temp
    folder, renamed to the destination. Unlike other temp files it was not flocked (that would
    lock the source object's inode), so the GC of another process sharing ROOT (--workers N)
    removed it once it was older than a second, and the slow copy answered 500."""
    if mode == "sidecar":
        monkeypatch.setenv("S3SERVE_TEST_SIDECARS", "1")
    other = start_server(root, *FAST_GC)  # the other worker: a GC round every 0.2 s
    slow = start_server(root, "--no-fsync", patch=SLOW_LINK)
    try:
        s3 = slow.client(retries={"total_max_attempts": 1})
        s3.create_bucket(Bucket="links")
        data = os.urandom(300_000)
        s3.put_object(Bucket="links", Key="src", Body=data, ContentType="text/x-src", Tagging="t=src")
        s3.copy_object(Bucket="links", Key="dst", CopySource={"Bucket": "links", "Key": "src"})
        assert os.stat(root / "links" / "dst").st_ino == os.stat(root / "links" / "src").st_ino  # linked
        got = other.client().get_object(Bucket="links", Key="dst")
        assert got["Body"].read() == data and got["ContentType"] == "text/x-src"
        # The link and its guard went with the copy; nothing of it was the GC's to remove.
        assert not [p.name for p in (root / ".s3serve" / "tmp").iterdir() if p.name.startswith("link-")]
        assert other.log_path is not None and "link-" not in other.log_path.read_text()
    finally:
        stop_server(slow)
        stop_server(other)


def test_temp_files_of_a_crash_just_before_a_quick_restart_go_within_seconds(root: Path) -> None:
    """The start-up GC leaves temp files younger than a second alone (their writer may not have
    taken its flock yet). What a server killed in the middle of a write left was that young when
    it was started again at once, and waited for the next round: an hour later by default."""
    first = start_server(root, "--no-fsync")
    first.client().create_bucket(Bucket="quick")
    sock = open_request(first, "PUT", "/quick/obj", 4 * 1024 * 1024, os.urandom(1500 * 1024))
    tmp = root / ".s3serve" / "tmp"
    try:
        assert wait_for(lambda: any(p.name.startswith("put-") for p in tmp.iterdir()))
        assert first.process is not None
        first.process.kill()
        first.process.wait()
    finally:
        sock.close()
    left = [p for p in tmp.iterdir() if p.name.startswith("put-")]
    assert left
    second = start_server(root, "--no-fsync")  # at once, and with the default --gc-interval (1h)
    try:
        assert wait_for(lambda: not any(p.exists() for p in left), timeout=5.0), second.log_path
        assert second.log_path is not None and "removed orphaned temp file" in second.log_path.read_text()
        s3 = second.client()
        assert s3.list_objects_v2(Bucket="quick")["KeyCount"] == 0
    finally:
        stop_server(second)


def test_a_temp_symlink_of_a_crashed_rename_is_collected(fast_server: Server, root: Path) -> None:
    """RenameObject of a relative symlink places a new link made in the temp folder
    (copies._relinked); a crash between its making and its rename leaves that link there."""
    tmp = root / ".s3serve" / "tmp"
    left = tmp / f"link-{os.urandom(16).hex()}"
    os.symlink("../../bucket/dir/target", left)
    log = fast_server.log_path
    assert log is not None
    # The link goes first, then the line that says so is written.
    assert wait_for(lambda: not os.path.lexists(left) and left.name in log.read_text(), timeout=5.0)
