"""The on-disk part layout of multipart uploads, against real servers (fsync on, 1 and 2 workers).

Parts are written in place into one sparse file per upload; Complete makes that file the object
when every part but the last fills whole blocks, and copies otherwise. Either way the object,
its ETag and its checksums must be exact.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from awscrt import checksums as crt

from tests.conftest import Server, start_server, stop_server

KIB = 1024
BLOCK = 64 * KIB  # a multiple of the block size of any filesystem these tests run on


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("layout") / "root"
    running = start_server(root, "--min-part-size", "1KiB", "--workers", str(request.param))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def s3(server: Server):  # type: ignore[no-untyped-def]
    client = server.client()
    name = f"layout-{os.urandom(4).hex()}"
    client.create_bucket(Bucket=name)
    client.bucket = name
    return client


def multipart_etag(parts: list[bytes]) -> str:
    return '"' + hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f'-{len(parts)}"'


def crc64(data: bytes) -> str:
    return base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()


def assembly_inode(server: Server, bucket: str, upload_id: str) -> int:
    assert server.root is not None
    return os.stat(server.root / ".s3serve" / "multipart" / bucket / upload_id / "assembly").st_ino


def object_inode(server: Server, bucket: str, key: str) -> int:
    assert server.root is not None
    return os.stat(server.root / bucket / key).st_ino


def check_object(s3, key: str, parts: list[bytes], done: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    whole = b"".join(parts)
    got = s3.get_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == whole
    assert got["ETag"] == done["ETag"] == multipart_etag(parts)
    assert got["ChecksumCRC64NVME"] == done["ChecksumCRC64NVME"] == crc64(whole)


def complete(s3, key: str, upload_id: str, etags: dict[int, str]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    listed = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(etags.items())]
    return s3.complete_multipart_upload(  # type: ignore[no-any-return]
        Bucket=s3.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
    )


def test_aligned_parts_are_published_in_place(s3, server: Server) -> None:  # type: ignore[no-untyped-def]
    parts = {1: os.urandom(2 * BLOCK), 2: os.urandom(BLOCK), 4: os.urandom(3 * BLOCK), 5: b"unaligned tail"}
    upload_id = s3.create_multipart_upload(Bucket=s3.bucket, Key="aligned")["UploadId"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = {
            n: pool.submit(s3.upload_part, Bucket=s3.bucket, Key="aligned", UploadId=upload_id, PartNumber=n, Body=data)
            for n, data in parts.items()
        }
        etags = {n: f.result()["ETag"] for n, f in futures.items()}
    inode = assembly_inode(server, s3.bucket, upload_id)
    done = complete(s3, "aligned", upload_id, etags)
    assert object_inode(server, s3.bucket, "aligned") == inode  # no copy was made
    check_object(s3, "aligned", list(parts.values()), done)
    got = s3.get_object(Bucket=s3.bucket, Key="aligned", PartNumber=4)
    assert got["Body"].read() == parts[4] and got["PartsCount"] == 4


def test_unaligned_and_reuploaded_parts_are_copied_exactly(s3, server: Server) -> None:  # type: ignore[no-untyped-def]
    parts = {1: os.urandom(BLOCK + 1), 2: os.urandom(BLOCK), 3: b"end"}
    upload_id = s3.create_multipart_upload(Bucket=s3.bucket, Key="copied")["UploadId"]
    etags = {}
    for n, data in parts.items():
        etags[n] = s3.upload_part(Bucket=s3.bucket, Key="copied", UploadId=upload_id, PartNumber=n, Body=data)["ETag"]
    parts[2] = os.urandom(BLOCK)
    etags[2] = s3.upload_part(Bucket=s3.bucket, Key="copied", UploadId=upload_id, PartNumber=2, Body=parts[2])["ETag"]
    s3.upload_part(Bucket=s3.bucket, Key="copied", UploadId=upload_id, PartNumber=7, Body=b"not listed")
    inode = assembly_inode(server, s3.bucket, upload_id)
    done = complete(s3, "copied", upload_id, etags)
    assert object_inode(server, s3.bucket, "copied") != inode
    check_object(s3, "copied", list(parts.values()), done)


def test_concurrent_uploads_of_one_part_number(s3, server: Server) -> None:  # type: ignore[no-untyped-def]
    upload_id = s3.create_multipart_upload(Bucket=s3.bucket, Key="race")["UploadId"]
    bodies = [os.urandom(4 * BLOCK) for _ in range(8)]
    by_etag = {f'"{hashlib.md5(b).hexdigest()}"': b for b in bodies}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(
            lambda body: s3.upload_part(Bucket=s3.bucket, Key="race", UploadId=upload_id, PartNumber=1, Body=body),
            bodies,
        ))
    tail = s3.upload_part(Bucket=s3.bucket, Key="race", UploadId=upload_id, PartNumber=2, Body=b"tail")["ETag"]
    listed = s3.list_parts(Bucket=s3.bucket, Key="race", UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2]
    winner = listed[0]["ETag"]
    assert winner in by_etag
    done = complete(s3, "race", upload_id, {1: winner, 2: tail})
    check_object(s3, "race", [by_etag[winner], b"tail"], done)


def test_upload_part_copy_in_place(s3, server: Server) -> None:  # type: ignore[no-untyped-def]
    source = os.urandom(4 * BLOCK)
    s3.put_object(Bucket=s3.bucket, Key="src", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=s3.bucket, Key="copy")["UploadId"]
    first = s3.upload_part_copy(
        Bucket=s3.bucket, Key="copy", UploadId=upload_id, PartNumber=1,
        CopySource={"Bucket": s3.bucket, "Key": "src"}, CopySourceRange=f"bytes={BLOCK}-{3 * BLOCK - 1}",
    )["CopyPartResult"]["ETag"]
    second = s3.upload_part_copy(
        Bucket=s3.bucket, Key="copy", UploadId=upload_id, PartNumber=2, CopySource={"Bucket": s3.bucket, "Key": "src"},
    )["CopyPartResult"]["ETag"]
    inode = assembly_inode(server, s3.bucket, upload_id)
    done = complete(s3, "copy", upload_id, {1: first, 2: second})
    assert object_inode(server, s3.bucket, "copy") == inode
    check_object(s3, "copy", [source[BLOCK : 3 * BLOCK], source], done)


def test_abort_removes_the_assembly_file(s3, server: Server) -> None:  # type: ignore[no-untyped-def]
    upload_id = s3.create_multipart_upload(Bucket=s3.bucket, Key="gone")["UploadId"]
    s3.upload_part(Bucket=s3.bucket, Key="gone", UploadId=upload_id, PartNumber=3, Body=os.urandom(BLOCK))
    assert server.root is not None
    folder: Path = server.root / ".s3serve" / "multipart" / s3.bucket / upload_id
    assert (folder / "assembly").stat().st_size == 2 * 5 * 1024**3 + BLOCK  # sparse: part 3 at 10 GiB
    s3.abort_multipart_upload(Bucket=s3.bucket, Key="gone", UploadId=upload_id)
    assert not folder.exists()
