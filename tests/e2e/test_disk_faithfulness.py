"""When the disk does not cooperate: files changed by other programs while they are served, a full
disk, exhausted inodes, permissions the server lacks, paths the filesystem cannot hold, special
files in the served tree. Always a real server on loopback and real bytes compared; whatever
happens, the client gets the object whole, a connection ended short of its Content-Length, or a
clear S3 error (never a 500, a hang, or a body that mixes two versions under one ETag).

Tests that need root (tmpfs mounts, dropping the capability that lets root ignore mode bits) set
up what they need and undo it in a ``finally``; CI runs as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from tests.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    Server,
    free_port,
    signed,
    start_server,
    stop_server,
    wait_ready,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounts a tmpfs / drops capabilities: needs root")
SETPRIV = shutil.which("setpriv")


@pytest.fixture(autouse=True)
def local_only(server: Server) -> None:
    if server.root is None:
        pytest.skip("changes the server's files behind its back")


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _hidden_files(root: Path) -> list[str]:
    """Files the server left in its temp and spread folders (there should be none)."""
    left = []
    for sub in ("tmp", "spread"):
        for dirpath, _, files in os.walk(root / ".s3serve" / sub):
            left += [os.path.join(dirpath, name) for name in files]
    return left


def _assert_no_server_errors(server: Server) -> None:
    assert server.log_path is not None
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


# -- a GET whose file another program changes while it is sent --------------------------------
BIG = 16 * 1024 * 1024  # far more than loopback socket buffers hold, so the server is mid-file


def _slow_get(server: Server, s3, bucket: str, key: str, meanwhile: Callable[[], None]) -> tuple[int, int, bytes]:  # type: ignore[no-untyped-def]
    """GET with a small receive buffer: read the head, run ``meanwhile`` while the server is
    stuck mid-body, then read to the end. (status, Content-Length, body as received)."""
    url = urlsplit(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(10)
    sock.connect((url.hostname, url.port))
    try:
        sock.sendall(f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            assert piece, "no answer"
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
        time.sleep(0.2)  # the server fills the socket buffers and waits
        meanwhile()
        chunks = [body]
        received = len(body)
        while received < length:
            piece = sock.recv(1 << 20)  # a hang would raise socket.timeout: that is a failure too
            if not piece:
                break  # the server ended the connection short
            chunks.append(piece)
            received += len(piece)
        return status, length, b"".join(chunks)
    finally:
        sock.close()


def test_a_file_rewritten_in_place_while_it_is_sent_is_never_answered_whole(server, s3, bucket: str) -> None:
    path = server.root / bucket / "video.bin"
    old = os.urandom(BIG)
    path.write_bytes(old)
    new = bytes(BIG)  # same size, other bytes

    def rewrite() -> None:
        with open(path, "r+b") as f:
            f.write(new)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a distinct mtime even on coarse clocks

    status, length, body = _slow_get(server, s3, bucket, "video.bin", rewrite)
    assert (status, length) == (200, BIG)
    # What arrived is old bytes, new bytes or both, under the old version's ETag: never complete.
    assert len(body) < BIG, "a body mixing two versions was presented as the whole object"
    # Asked again, the object is the new bytes.
    assert s3.get_object(Bucket=bucket, Key="video.bin")["Body"].read() == new


def test_a_file_truncated_while_it_is_sent_ends_the_connection_short(server, s3, bucket: str) -> None:
    path = server.root / bucket / "log.bin"
    old = os.urandom(BIG)
    path.write_bytes(old)
    status, length, body = _slow_get(server, s3, bucket, "log.bin", lambda: os.truncate(path, 1024 * 1024))
    assert (status, length) == (200, BIG)
    assert len(body) < BIG
    assert body[: 1024 * 1024] == old[: len(body[: 1024 * 1024])]
    head = s3.head_object(Bucket=bucket, Key="log.bin")
    assert head["ContentLength"] == 1024 * 1024


def test_a_file_replaced_by_rename_while_it_is_sent_is_sent_whole_as_it_was(server, s3, bucket: str) -> None:
    path = server.root / bucket / "data.bin"
    old = os.urandom(BIG)
    path.write_bytes(old)

    def replace() -> None:
        fresh = server.root / bucket / "data.bin.tmp"
        fresh.write_bytes(b"new version")
        os.rename(fresh, path)

    status, length, body = _slow_get(server, s3, bucket, "data.bin", replace)
    assert (status, length) == (200, BIG)
    assert body == old  # the open file is the old one, whole: nothing to refuse
    assert s3.get_object(Bucket=bucket, Key="data.bin")["Body"].read() == b"new version"


def test_an_in_place_edit_is_described_by_the_new_bytes(server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"a" * 5000, ChecksumAlgorithm="CRC32")
    path = server.root / bucket / "doc.txt"
    new = b"b" * 5000
    with open(path, "r+b") as f:  # same size, same inode, new mtime
        f.write(new)
    head = s3.head_object(Bucket=bucket, Key="doc.txt", ChecksumMode="ENABLED")
    assert head["ETag"] == f'"{hashlib.md5(new).hexdigest()}"'
    assert "ChecksumCRC32" not in head  # the stored checksum described the old bytes
    got = s3.get_object(Bucket=bucket, Key="doc.txt")
    assert got["ETag"] == head["ETag"] and got["Body"].read() == new
    # A ranged GET of a file that shrank since it was last described.
    os.truncate(path, 100)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="doc.txt", Range="bytes=200-300")
    assert _error(exc) == ("InvalidRange", 416)
    assert s3.get_object(Bucket=bucket, Key="doc.txt", Range="bytes=90-300")["Body"].read() == new[90:100]


def test_names_of_one_inode_keep_their_own_metadata(server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """A copy of 64 KiB or more is a hard link, its keys' records in sidecars, the inode's xattr
    only a marker. With that marker removed by another program (setfattr -x), tagging one key
    wrote its record into the inode, and the other key was served with it from then on. Files
    another program hard-linked took the first one read's record (its Content-Type) for all."""
    data = os.urandom(100 * 1024)
    s3.put_object(Bucket=bucket, Key="photo.png", Body=data, ContentType="image/png", Metadata={"who": "photo"})
    s3.copy_object(Bucket=bucket, Key="notes.txt", CopySource={"Bucket": bucket, "Key": "photo.png"},
                   MetadataDirective="REPLACE", ContentType="text/plain", Metadata={"who": "notes"})  # fmt: skip
    src, dst = server.root / bucket / "photo.png", server.root / bucket / "notes.txt"
    assert os.stat(src).st_ino == os.stat(dst).st_ino  # linked
    os.removexattr(src, "user.s3serve")
    s3.put_object_tagging(Bucket=bucket, Key="notes.txt", Tagging={"TagSet": [{"Key": "k", "Value": "notes"}]})

    def described(key: str) -> tuple[str, dict[str, str], list[dict[str, str]]]:
        head = s3.head_object(Bucket=bucket, Key=key)
        return head["ContentType"], head["Metadata"], s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]

    assert described("photo.png") == ("image/png", {"who": "photo"}, [])
    assert described("notes.txt") == ("text/plain", {"who": "notes"}, [{"Key": "k", "Value": "notes"}])
    # Two names another program gave one file, each read as a foreign file of its own.
    (server.root / bucket / "a.png").write_bytes(data)
    os.link(server.root / bucket / "a.png", server.root / bucket / "b.txt")
    assert s3.head_object(Bucket=bucket, Key="a.png")["ContentType"] == "image/png"
    assert s3.head_object(Bucket=bucket, Key="b.txt")["ContentType"] == "text/plain"
    assert s3.get_object(Bucket=bucket, Key="photo.png")["Body"].read() == data
    _assert_no_server_errors(server)


@contextlib.contextmanager
def _in_process_server(root: Path) -> Iterator[Server]:
    """The app in this process (so a test can step in between the server's lookup of a file and
    its read of it), on a loopback port, run by a thread of its own."""
    from s3serve.app import create_app
    from s3serve.config import Config, User

    port = free_port()
    loop = asyncio.new_event_loop()
    runner: web.AppRunner | None = None
    started = threading.Event()

    async def start() -> None:
        nonlocal runner
        app = create_app(Config(root=root, users=[User(ACCESS_KEY, SECRET_KEY)], fsync=False))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=15)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_ready(endpoint, None)
        yield Server(endpoint, ACCESS_KEY, SECRET_KEY, root)
    finally:
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)
        loop.close()


@pytest.mark.parametrize("change", ["truncated", "rewritten"])
def test_a_small_get_racing_another_program_answers_one_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    from s3serve.storage import keys

    root = tmp_path / "root"
    (root / "bkt").mkdir(parents=True)
    path = root / "bkt" / "note.txt"
    old = os.urandom(40_000)
    path.write_bytes(old)
    new = old[:10_000] if change == "truncated" else bytes(40_000)
    real_open = keys.open_file
    pending = [True]

    def open_then_change(real_root: str, target: str):  # type: ignore[no-untyped-def]
        opened = real_open(real_root, target)
        if opened is not None and target == str(path) and pending:
            pending.clear()
            # Another program writes right after the server looked the file up.
            with open(path, "r+b") as f:
                f.write(new)
                f.truncate(len(new))
            os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        return opened

    with _in_process_server(root) as srv:
        s3 = srv.client()
        # Described once (its ETag made and kept), as most files are before they are read.
        assert s3.head_object(Bucket="bkt", Key="note.txt")["ETag"] == f'"{hashlib.md5(old).hexdigest()}"'  # type: ignore[attr-defined]
        monkeypatch.setattr(keys, "open_file", open_then_change)
        got = s3.get_object(Bucket="bkt", Key="note.txt")  # type: ignore[attr-defined]
        body = got["Body"].read()
        # One version, whole, with its own ETag: never the old ETag over a short or new body.
        assert body == new
        assert got["ETag"] == f'"{hashlib.md5(new).hexdigest()}"'
        assert got["ContentLength"] == len(new)


# -- a full disk, exhausted inodes --------------------------------------------------------------
@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)]).returncode != 0:
            subprocess.run(["umount", "-l", str(path)])


def _fill(path: Path) -> None:
    """Take every byte (and inode) left, as another program would."""
    with contextlib.suppress(OSError):
        with open(path / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    for i in range(100_000):
        try:
            (path / f"filler-{i}").touch()
        except OSError:
            break


def _free(path: Path) -> None:
    for entry in path.iterdir():
        if entry.name.startswith("filler"):
            entry.unlink()


@needs_root
def test_a_full_disk_refuses_writes_with_507_and_keeps_what_was_there(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "full", "size=8m,nr_inodes=4096") as root:
        srv = start_server(root, "--no-fsync")
        try:
            s3 = srv.client()
            s3.create_bucket(Bucket="full")  # type: ignore[attr-defined]
            s3.put_object(Bucket="full", Key="small", Body=b"old small")  # type: ignore[attr-defined]
            big_old = os.urandom(300_000)
            s3.put_object(Bucket="full", Key="big", Body=big_old)  # type: ignore[attr-defined]
            _fill(root)
            attempts: dict[str, Callable[[], object]] = {
                "small put": lambda: s3.put_object(Bucket="full", Key="small", Body=b"n" * 50_000),  # type: ignore[attr-defined]
                "large put": lambda: s3.put_object(Bucket="full", Key="big", Body=os.urandom(1 << 20)),  # type: ignore[attr-defined]
                "new key": lambda: s3.put_object(Bucket="full", Key="dir/new", Body=b"x" * 70_000),  # type: ignore[attr-defined]
                "copy": lambda: s3.copy_object(  # type: ignore[attr-defined]
                    Bucket="full", Key="copy", CopySource={"Bucket": "full", "Key": "big"},
                    MetadataDirective="REPLACE", ContentType="text/plain",
                ),
                "create bucket": lambda: s3.create_bucket(Bucket="another"),  # type: ignore[attr-defined]
            }  # fmt: skip
            for name, attempt in attempts.items():
                with pytest.raises(ClientError) as exc:
                    attempt()
                assert _error(exc) == ("XMinioStorageFull", 507), name
            # What was there is intact, and nothing half-written is visible or left behind.
            assert s3.get_object(Bucket="full", Key="small")["Body"].read() == b"old small"  # type: ignore[attr-defined]
            assert s3.get_object(Bucket="full", Key="big")["Body"].read() == big_old  # type: ignore[attr-defined]
            listed = s3.list_objects_v2(Bucket="full").get("Contents", [])  # type: ignore[attr-defined]
            assert sorted(o["Key"] for o in listed) == ["big", "small"]
            assert _hidden_files(root) == []
            # Space again: the server is healthy.
            _free(root)
            s3.put_object(Bucket="full", Key="small", Body=b"new small")  # type: ignore[attr-defined]
            assert s3.get_object(Bucket="full", Key="small")["Body"].read() == b"new small"  # type: ignore[attr-defined]
            s3.create_bucket(Bucket="another")  # type: ignore[attr-defined]
        finally:
            stop_server(srv)
        _assert_no_server_errors(srv)


@needs_root
def test_multipart_uploads_on_a_full_disk_are_refused_with_507_and_stay_usable(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "full", "size=8m,nr_inodes=4096") as root:
        srv = start_server(root, "--no-fsync", "--min-part-size", "64KiB")
        try:
            s3 = srv.client()
            s3.create_bucket(Bucket="full")  # type: ignore[attr-defined]
            upload = s3.create_multipart_upload(Bucket="full", Key="mp")["UploadId"]  # type: ignore[attr-defined]
            first = os.urandom(100_000)
            etag1 = s3.upload_part(Bucket="full", Key="mp", UploadId=upload, PartNumber=1, Body=first)["ETag"]  # type: ignore[attr-defined]
            _fill(root)
            with pytest.raises(ClientError) as exc:
                s3.create_multipart_upload(Bucket="full", Key="other")  # type: ignore[attr-defined]
            assert _error(exc) == ("XMinioStorageFull", 507)
            with pytest.raises(ClientError) as exc:
                s3.upload_part(Bucket="full", Key="mp", UploadId=upload, PartNumber=2, Body=os.urandom(1 << 20))  # type: ignore[attr-defined]
            assert _error(exc) == ("XMinioStorageFull", 507)
            # The refused Create left no upload behind; the other one is as it was, and completes
            # once there is room.
            listed = s3.list_multipart_uploads(Bucket="full").get("Uploads", [])  # type: ignore[attr-defined]
            assert [(u["Key"], u["UploadId"]) for u in listed] == [("mp", upload)]
            _free(root)
            second = os.urandom(50_000)
            etag2 = s3.upload_part(Bucket="full", Key="mp", UploadId=upload, PartNumber=2, Body=second)["ETag"]  # type: ignore[attr-defined]
            parts = [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]
            s3.complete_multipart_upload(Bucket="full", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})  # type: ignore[attr-defined]
            assert s3.get_object(Bucket="full", Key="mp")["Body"].read() == first + second  # type: ignore[attr-defined]
        finally:
            stop_server(srv)
        _assert_no_server_errors(srv)


@needs_root
@pytest.mark.parametrize("operation", ["put_object", "upload_part"])
@pytest.mark.parametrize("fsync", [True, False])
def test_a_body_the_disk_has_no_room_for_is_refused_before_it_is_sent(tmp_path: Path, fsync: bool, operation: str) -> None:
    """The blocks of a large body are reserved before it is read: a disk without room for all of
    it answers 507 while the client has sent only its first bytes, not once all that fit were
    written, and the room taken meanwhile is given back. A part too (the first upload of a part
    number is written in place, in the upload's assembly file)."""
    with _tmpfs(tmp_path / "tight", "size=16m") as root:
        srv = start_server(root, *(() if fsync else ("--no-fsync",)))
        try:
            s3 = srv.client()
            s3.create_bucket(Bucket="tight")  # type: ignore[attr-defined]
            params: dict[str, object] = {"Bucket": "tight", "Key": "big"}
            if operation == "upload_part":
                params |= {"UploadId": s3.create_multipart_upload(**params)["UploadId"], "PartNumber": 1}  # type: ignore[attr-defined]
            free_before = os.statvfs(root).f_bavail
            url = urlsplit(s3.generate_presigned_url(operation, Params=params))  # type: ignore[attr-defined]
            with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
                head = f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: {32 << 20}\r\n\r\n"
                sock.sendall(head.encode() + bytes(64 * 1024))  # 64 KiB of the 32 MiB declared
                answer = b""
                while b"</Error>" not in answer:
                    piece = sock.recv(65536)  # a server waiting for the rest would time out here
                    assert piece, answer
                    answer += piece
            assert answer.startswith(b"HTTP/1.1 507 "), answer
            assert b"<Code>XMinioStorageFull</Code>" in answer
            assert os.statvfs(root).f_bavail == free_before  # given back before the answer
            assert _hidden_files(root) == []
            # What fits is written as before, reserved or not.
            fits = os.urandom(4 << 20)
            if operation == "put_object":
                with pytest.raises(ClientError):
                    s3.head_object(Bucket="tight", Key="big")  # type: ignore[attr-defined]
                s3.put_object(Bucket="tight", Key="big", Body=fits)  # type: ignore[attr-defined]
            else:
                etag = s3.upload_part(**params, Body=fits)["ETag"]  # type: ignore[attr-defined]
                s3.complete_multipart_upload(  # type: ignore[attr-defined]
                    Bucket="tight", Key="big", UploadId=params["UploadId"],
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
                )
            assert s3.get_object(Bucket="tight", Key="big")["Body"].read() == fits  # type: ignore[attr-defined]
        finally:
            stop_server(srv)
        _assert_no_server_errors(srv)


@needs_root
def test_running_out_of_inodes_refuses_writes_with_507(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "inodes", "size=64m,nr_inodes=200") as root:
        srv = start_server(root, "--no-fsync")
        try:
            s3 = srv.client()
            s3.create_bucket(Bucket="few")  # type: ignore[attr-defined]
            s3.put_object(Bucket="few", Key="kept", Body=b"kept")  # type: ignore[attr-defined]
            s3.put_object(Bucket="few", Key="src", Body=bytes(100_000))  # type: ignore[attr-defined]
            # A copy made as a hard link (the object stays when the copy goes).
            s3.copy_object(Bucket="few", Key="deep/old", CopySource={"Bucket": "few", "Key": "src"})  # type: ignore[attr-defined]
            (root / "few" / "foreign").write_bytes(b"put there by another program")
            s3.put_object(Bucket="few", Key="deep/other", Body=b"other")  # type: ignore[attr-defined]
            _fill(root)
            # Reads need no inode, also of a file first seen now (whose ETag cannot be kept yet).
            foreign = s3.get_object(Bucket="few", Key="foreign")  # type: ignore[attr-defined]
            assert foreign["Body"].read() == b"put there by another program"
            assert s3.get_object(Bucket="few", Key="kept")["Body"].read() == b"kept"  # type: ignore[attr-defined]
            listed = s3.list_objects_v2(Bucket="few")["Contents"]  # type: ignore[attr-defined]
            assert [o["Key"] for o in listed] == ["deep/old", "deep/other", "foreign", "kept", "src"]
            for key, body in (("a", b"small"), ("b", os.urandom(1 << 20)), ("c/d", b"deeper")):
                with pytest.raises(ClientError) as exc:
                    s3.put_object(Bucket="few", Key=key, Body=body)  # type: ignore[attr-defined]
                assert _error(exc) == ("XMinioStorageFull", 507), key
            # Deleting is how space comes back: it works, and says so.
            s3.delete_object(Bucket="few", Key="deep/old")  # type: ignore[attr-defined]
            assert sorted(os.listdir(root / "few" / "deep")) == ["other"]
            assert _hidden_files(root) == []
            _free(root)
            s3.put_object(Bucket="few", Key="c/d", Body=b"deeper")  # type: ignore[attr-defined]
            assert (root / "few" / "c" / "d").read_bytes() == b"deeper"
        finally:
            stop_server(srv)
        _assert_no_server_errors(srv)


# -- permissions the server does not have --------------------------------------------------------
def _serve_without_dac_override(root: Path) -> Server:
    """s3serve as root but without the capabilities that let root ignore mode bits, so the mode
    bits of files and folders in ROOT apply to it as to any other user."""
    assert SETPRIV is not None
    port = free_port()
    caps = "-dac_override,-dac_read_search"
    cmd = [
        SETPRIV, f"--bounding-set={caps}", f"--inh-caps={caps}", "--",
        sys.executable, "-m", "s3serve", "serve", str(root), "--address", f"127.0.0.1:{port}",
        "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--no-fsync",
    ]  # fmt: skip
    log_path = root.parent / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}", ACCESS_KEY, SECRET_KEY, root, process, log_path)
    try:
        wait_ready(srv.endpoint, process)
    except RuntimeError:
        stop_server(srv)
        raise
    return srv


needs_setpriv = pytest.mark.skipif(not IS_ROOT or SETPRIV is None, reason="needs root and setpriv (util-linux)")


@pytest.fixture
def unprivileged(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    root = tmp_path / "root"
    root.mkdir()
    srv = _serve_without_dac_override(root)
    try:
        srv.client().create_bucket(Bucket="perm")  # type: ignore[attr-defined]
        yield srv, root / "perm"
    finally:
        stop_server(srv)
        # Mode bits back, so that pytest can remove the tree.
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(dirpath, name), 0o755, follow_symlinks=False)
    _assert_no_server_errors(srv)


@needs_setpriv
def test_what_the_server_may_not_read_answers_403_and_listings_go_on(unprivileged: tuple[Server, Path]) -> None:
    srv, bdir = unprivileged
    s3 = srv.client()
    s3.put_object(Bucket="perm", Key="open", Body=b"readable")  # type: ignore[attr-defined]
    s3.put_object(Bucket="perm", Key="locked", Body=b"secret")  # type: ignore[attr-defined]
    (bdir / "locked").chmod(0)
    (bdir / "foreign-locked").write_bytes(b"12345")
    (bdir / "foreign-locked").chmod(0)
    (bdir / "closed" / "inner").mkdir(parents=True)
    (bdir / "closed" / "inner" / "f").write_bytes(b"hidden")
    (bdir / "closed").chmod(0)
    (bdir / "zz").mkdir()
    (bdir / "zz" / "after").write_bytes(b"after")

    for key in ("locked", "foreign-locked", "closed/inner/f"):
        for attempt in (
            lambda key=key: s3.get_object(Bucket="perm", Key=key),  # type: ignore[attr-defined]
            lambda key=key: s3.copy_object(Bucket="perm", Key="copy", CopySource={"Bucket": "perm", "Key": key}),  # type: ignore[attr-defined]
            lambda key=key: s3.get_object_tagging(Bucket="perm", Key=key),  # type: ignore[attr-defined]
        ):
            with pytest.raises(ClientError) as exc:
                attempt()
            assert _error(exc) == ("AccessDenied", 403), key
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket="perm", Key=key)  # type: ignore[attr-defined]
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # The listing goes past the folder it may not read, and names the files it may not read (a
    # sync tool must not take them for deleted); GET of those answers 403, as above.
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="perm")["Contents"]}  # type: ignore[attr-defined]
    assert listed == {"foreign-locked": 5, "locked": 6, "open": 8, "zz/after": 5}
    # A listing that starts inside the folder it may not read cannot say what is there.
    for prefix in ("closed/", "closed/inner/"):
        with pytest.raises(ClientError) as exc:
            s3.list_objects_v2(Bucket="perm", Prefix=prefix)  # type: ignore[attr-defined]
        assert _error(exc) == ("AccessDenied", 403), prefix
    assert s3.get_object(Bucket="perm", Key="open")["Body"].read() == b"readable"  # type: ignore[attr-defined]


@needs_setpriv
def test_writes_and_deletes_the_filesystem_refuses_answer_403(unprivileged: tuple[Server, Path]) -> None:
    srv, bdir = unprivileged
    s3 = srv.client()
    s3.put_object(Bucket="perm", Key="ro/kept", Body=b"kept")  # type: ignore[attr-defined]
    s3.put_object(Bucket="perm", Key="free", Body=b"free")  # type: ignore[attr-defined]
    (bdir / "ro").chmod(0o555)
    (bdir / "closed").mkdir()
    (bdir / "closed" / "stays").write_bytes(b"stays")
    (bdir / "closed").chmod(0)
    refused: dict[str, Callable[[], object]] = {
        "small put": lambda: s3.put_object(Bucket="perm", Key="ro/new", Body=b"x"),  # type: ignore[attr-defined]
        "large put": lambda: s3.put_object(Bucket="perm", Key="ro/big", Body=os.urandom(1 << 20)),  # type: ignore[attr-defined]
        "overwrite": lambda: s3.put_object(Bucket="perm", Key="ro/kept", Body=b"changed"),  # type: ignore[attr-defined]
        "deeper": lambda: s3.put_object(Bucket="perm", Key="ro/sub/new", Body=b"x"),  # type: ignore[attr-defined]
        "folder": lambda: s3.put_object(Bucket="perm", Key="ro/folder/", Body=b""),  # type: ignore[attr-defined]
        "copy": lambda: s3.copy_object(Bucket="perm", Key="ro/copy", CopySource={"Bucket": "perm", "Key": "free"}),  # type: ignore[attr-defined]
        "delete": lambda: s3.delete_object(Bucket="perm", Key="ro/kept"),  # type: ignore[attr-defined]
        "delete unsearchable": lambda: s3.delete_object(Bucket="perm", Key="closed/stays"),  # type: ignore[attr-defined]
        "put unsearchable": lambda: s3.put_object(Bucket="perm", Key="closed/new", Body=b"x"),  # type: ignore[attr-defined]
    }
    for name, attempt in refused.items():
        with pytest.raises(ClientError) as exc:
            attempt()
        assert _error(exc) == ("AccessDenied", 403), name
    # DeleteObjects answers per key, and deletes what it may.
    result = s3.delete_objects(  # type: ignore[attr-defined]
        Bucket="perm", Delete={"Objects": [{"Key": "ro/kept"}, {"Key": "free"}, {"Key": "closed/stays"}]}
    )
    assert [d["Key"] for d in result.get("Deleted", [])] == ["free"]
    assert sorted((e["Key"], e["Code"]) for e in result["Errors"]) == [
        ("closed/stays", "AccessDenied"), ("ro/kept", "AccessDenied"),
    ]  # fmt: skip
    assert (bdir / "ro" / "kept").read_bytes() == b"kept"
    assert sorted(os.listdir(bdir / "ro")) == ["kept"]
    (bdir / "closed").chmod(0o755)
    assert (bdir / "closed" / "stays").read_bytes() == b"stays"
    assert _hidden_files(bdir.parent) == []


# -- names and special files ----------------------------------------------------------------------
def test_special_files_are_never_opened_and_never_listed(server, s3, bucket: str) -> None:
    bdir = server.root / bucket
    (bdir / "plain").write_bytes(b"plain")
    os.mkfifo(bdir / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(bdir / "sock"))
    try:
        os.symlink("/etc/hostname", bdir / "out")
        os.symlink("/etc", bdir / "outdir")
        os.symlink("loop-a", bdir / "loop-b")
        os.symlink("loop-b", bdir / "loop-a")
        os.symlink(".", bdir / "self")
        os.symlink(server.root / ".s3serve", bdir / "hidden")
        if IS_ROOT:
            os.mknod(bdir / "zero", stat.S_IFCHR | 0o644, os.makedev(1, 5))
        started = time.monotonic()
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert listed == ["plain"]
        for key in ("fifo", "sock", "out", "outdir/hostname", "loop-a", "hidden/buckets", "zero"):
            with pytest.raises(ClientError) as exc:
                s3.get_object(Bucket=bucket, Key=key)
            assert _error(exc) == ("NoSuchKey", 404), key
        assert time.monotonic() - started < 5  # nothing blocked on the FIFO
        # A PUT replaces the special file with an object; the outside is never written.
        s3.put_object(Bucket=bucket, Key="fifo", Body=b"now a file")
        assert (bdir / "fifo").read_bytes() == b"now a file"
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="out", Body=b"x")
        assert _error(exc) == ("AccessDenied", 403)
    finally:
        sock.close()
        for name in ("sock", "out", "outdir", "loop-a", "loop-b", "self", "hidden", "zero"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(bdir / name)


def test_a_symlink_inside_the_root_is_listed_as_it_is_served(server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="dir/target", Body=b"target bytes")
    (server.root / bucket / "foreign-target").write_bytes(b"foreign bytes")
    os.symlink("dir/target", server.root / bucket / "alias")
    os.symlink(server.root / bucket / "foreign-target", server.root / bucket / "foreign-alias")
    try:
        listed = {o["Key"]: (o["Size"], o["ETag"]) for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
        assert sorted(listed) == ["alias", "dir/target", "foreign-alias", "foreign-target"]
        for alias, target in (("alias", "dir/target"), ("foreign-alias", "foreign-target")):
            got = s3.get_object(Bucket=bucket, Key=alias)
            assert got["Body"].read() == s3.get_object(Bucket=bucket, Key=target)["Body"].read()
            assert listed[alias] == listed[target] == (got["ContentLength"], got["ETag"])
    finally:
        os.unlink(server.root / bucket / "alias")
        os.unlink(server.root / bucket / "foreign-alias")


def test_a_bucket_folder_another_program_removed_or_swapped_is_no_such_bucket(server, s3, tmp_path: Path) -> None:
    """GET and HEAD find the key before they stat its bucket's folder, and the bucket's record
    alone answers the ownership check of GET, HEAD, DELETE and PUT: a folder gone, or swapped for
    a symlink that leads out of the root to a folder holding the same key, must still be
    NoSuchBucket, and nothing outside read, removed or written."""
    name = f"gone-{os.urandom(4).hex()}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"inside")
    shutil.rmtree(server.root / name)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "k").write_bytes(b"outside bytes")
    try:
        for state in ("removed", "symlink out", "plain file"):
            if state == "symlink out":
                os.symlink(outside, server.root / name)
            elif state == "plain file":
                os.unlink(server.root / name)
                (server.root / name).write_bytes(b"not a folder")
            with pytest.raises(ClientError) as exc:
                s3.get_object(Bucket=name, Key="k")
            assert _error(exc) == ("NoSuchBucket", 404), state
            with pytest.raises(ClientError) as exc:
                s3.head_object(Bucket=name, Key="k")
            assert _error(exc) == ("404", 404), state  # a HEAD's error has no body to name it
            with pytest.raises(ClientError) as exc:
                s3.get_object(Bucket=name, Key="a//b")  # an invalid key: the bucket still comes first
            assert _error(exc) == ("NoSuchBucket", 404), state
            with pytest.raises(ClientError) as exc:
                s3.delete_object(Bucket=name, Key="k")
            assert _error(exc) == ("NoSuchBucket", 404), state
            for key, body in (("k", b"new"), ("new", b"new"), ("big", os.urandom(3 << 20))):
                with pytest.raises(ClientError) as exc:
                    s3.put_object(Bucket=name, Key=key, Body=body)
                assert _error(exc) == ("NoSuchBucket", 404), (state, key)
            # Without Expect: 100-continue (curl -T), and with what the handler itself refuses.
            for path, headers in ((f"/{name}/a//b", {}), (f"/{name}/k", {"x-amz-storage-class": "NOPE"})):
                r = signed(server, "PUT", path, b"new", headers)
                assert (r.status, b"<Code>NoSuchBucket</Code>" in r.data) == (404, True), (state, path, r.data)
            assert sorted(p.name for p in outside.iterdir()) == ["k"]
            assert (outside / "k").read_bytes() == b"outside bytes"
    finally:
        if os.path.lexists(server.root / name):
            os.unlink(server.root / name)
        (server.root / name).mkdir()
        s3.delete_bucket(Bucket=name)
    _assert_no_server_errors(server)


def test_a_symlink_to_a_linked_copy_takes_no_metadata_away(server, s3, bucket: str) -> None:
    body = os.urandom(100_000)  # big enough for CopyObject to make a hard link
    s3.put_object(Bucket=bucket, Key="src", Body=body, ContentType="text/src", Metadata={"who": "src"})
    s3.copy_object(
        Bucket=bucket, Key="cp", CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE", ContentType="text/cp", Metadata={"who": "cp"},
    )  # fmt: skip
    os.symlink("src", server.root / bucket / "alias")
    try:
        assert s3.get_object(Bucket=bucket, Key="alias")["Body"].read() == body
        for key in ("src", "cp"):
            head = s3.head_object(Bucket=bucket, Key=key)
            assert (head["ContentType"], head["Metadata"]) == (f"text/{key}", {"who": key}), key
        assert "alias" in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    finally:
        os.unlink(server.root / bucket / "alias")


def test_a_key_too_long_for_the_filesystem_path_is_key_too_long(tmp_path: Path) -> None:
    # A ROOT deep enough that ROOT + a 1000-byte key passes PATH_MAX (4096 on Linux).
    root = tmp_path.joinpath(*["d" * 250] * 13) / "root"
    root.mkdir(parents=True)
    srv = start_server(root, "--no-fsync")
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="deep")  # type: ignore[attr-defined]
        key = "/".join(["k" * 200] * 5)
        for body in (b"small", os.urandom(1 << 20)):
            with pytest.raises(ClientError) as exc:
                s3.put_object(Bucket="deep", Key=key, Body=body)  # type: ignore[attr-defined]
            assert _error(exc) == ("KeyTooLongError", 400)
        s3.put_object(Bucket="deep", Key="short", Body=b"fits")  # type: ignore[attr-defined]
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket="deep", Key=key, CopySource={"Bucket": "deep", "Key": "short"})  # type: ignore[attr-defined]
        assert _error(exc) == ("KeyTooLongError", 400)
        assert _hidden_files(root) == []
    finally:
        stop_server(srv)
    _assert_no_server_errors(srv)


def test_names_the_disk_holds_but_keys_cannot(server, s3, bucket: str) -> None:
    bdir = server.root / bucket
    (bdir / "good").write_bytes(b"good")
    with open(os.fsencode(bdir) + b"/bad-\xff\xfe-name", "wb") as f:  # not UTF-8
        f.write(b"bad")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == ["good"]
    os.unlink(os.fsencode(bdir) + b"/bad-\xff\xfe-name")
    for key, code in (
        ("a/../b", "InvalidArgument"), ("a//b", "InvalidArgument"), ("./a", "InvalidArgument"),
        ("x" * 256, "KeyTooLongError"), ("k" * 1025, "KeyTooLongError"), ("nul\x00x", "InvalidArgument"),
    ):  # fmt: skip
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        assert _error(exc)[0] == code, key
    # No XML parser reads a NUL, even as &#x0;: the error must not echo the key that holds one.
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nul\x00x")
    assert _error(exc) == ("InvalidArgument", 400)
    s3.put_object(Bucket=bucket, Key="file", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="file/under", Body=b"x")
    assert _error(exc) == ("ObjectParentIsFile", 409)
    s3.put_object(Bucket=bucket, Key="folder/under", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="folder", Body=b"x" * 300_000)
    assert _error(exc) == ("ExistingObjectIsDirectory", 409)
    # A key named like the server's hidden folder is an ordinary key inside its bucket.
    s3.put_object(Bucket=bucket, Key=".s3serve/tmp/x", Body=b"mine")
    assert (bdir / ".s3serve" / "tmp" / "x").read_bytes() == b"mine"
    assert s3.get_object(Bucket=bucket, Key=".s3serve/tmp/x")["Body"].read() == b"mine"
