"""The aws cli v2 (Debian's /usr/bin/aws, installed by tools/ensure-awscli.sh) against a live server
(the ``aws`` fixture is in tests/e2e/conftest.py)."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import time
from pathlib import Path

from tests.conftest import http
from tests.e2e.conftest import until


def _tree(root: Path, count: int) -> dict[str, bytes]:
    files = {}
    for i in range(count):
        rel = f"d{i % 4}/sub{i % 3}/file {i}.txt" if i % 5 else f"top-{i}.bin"
        data = hashlib.sha256(str(i).encode()).digest() * (i + 1)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        # Older than its upload, as files synced usually are: S3's LastModified is kept to the
        # second, so a file written in its upload's second looks newer than its object, and
        # `aws s3 sync` rightly uploads it again (on S3 as here).
        os.utime(path, (time.time() - 3600, time.time() - 3600))
        files[rel] = data
    return files


def _same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, (cmp.left_only, cmp.right_only, cmp.diff_files)
    for sub in cmp.common_dirs:
        _same_tree(a / sub, b / sub)


def test_cp_ls_mv_rm(aws, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "hello world.txt"
    src.write_bytes(b"hello from the aws cli\n" * 100)
    aws("s3", "cp", str(src), f"s3://{bucket}/dir/hello world.txt")
    listing = aws("s3", "ls", f"s3://{bucket}/").stdout
    assert "PRE dir/" in listing
    recursive = aws("s3", "ls", "--recursive", f"s3://{bucket}").stdout
    assert "dir/hello world.txt" in recursive and str(src.stat().st_size) in recursive
    down = tmp_path / "down.txt"
    aws("s3", "cp", f"s3://{bucket}/dir/hello world.txt", str(down))
    assert down.read_bytes() == src.read_bytes()
    aws("s3", "mv", f"s3://{bucket}/dir/hello world.txt", f"s3://{bucket}/moved/h.txt")
    recursive = aws("s3", "ls", "--recursive", f"s3://{bucket}").stdout
    assert "moved/h.txt" in recursive and "dir/hello world.txt" not in recursive
    aws("s3", "rm", "--recursive", f"s3://{bucket}/moved/")
    assert aws("s3", "ls", "--recursive", f"s3://{bucket}", check=False).stdout.strip() == ""


def test_sync_both_ways(aws, bucket: str, tmp_path: Path) -> None:
    up = tmp_path / "up"
    _tree(up, 60)
    aws("s3", "sync", str(up), f"s3://{bucket}/tree")
    down = tmp_path / "down"
    aws("s3", "sync", f"s3://{bucket}/tree", str(down))
    _same_tree(up, down)
    # A second sync has nothing to do.
    again = aws("s3", "sync", str(up), f"s3://{bucket}/tree").stdout
    assert "upload:" not in again
    # Changes and deletions propagate.
    (up / "top-0.bin").write_bytes(b"changed and longer than before")
    (up / "d1" / "sub1" / "file 1.txt").unlink()
    aws("s3", "sync", "--delete", str(up), f"s3://{bucket}/tree")
    aws("s3", "sync", "--delete", f"s3://{bucket}/tree", str(down))
    _same_tree(up, down)


def test_sync_down_with_exact_timestamps_downloads_only_changes(aws, bucket: str, tmp_path: Path) -> None:
    # `aws s3 sync --exact-timestamps` (how a mirror catches same-size changes) sets each file's
    # mtime to its object's LastModified in whole seconds, then wants the listing to say exactly
    # that: S3 lists times to the second. Listed milliseconds made every sync download it all again.
    src = tmp_path / "src"
    _tree(src, 6)
    aws("s3", "sync", str(src), f"s3://{bucket}/mirror")
    down = tmp_path / "down"
    aws("s3", "sync", f"s3://{bucket}/mirror", str(down))
    again = aws("s3", "sync", "--exact-timestamps", f"s3://{bucket}/mirror", str(down)).stdout
    assert "download:" not in again
    # A change in a later second (S3's granularity), of the same size: only the time tells it.
    listed_second = (down / "top-0.bin").stat().st_mtime
    until(lambda: time.time() >= listed_second + 1)
    (src / "top-0.bin").write_bytes(bytes(len((src / "top-0.bin").read_bytes())))
    aws("s3", "cp", str(src / "top-0.bin"), f"s3://{bucket}/mirror/top-0.bin")
    changed = aws("s3", "sync", "--no-progress", "--exact-timestamps", f"s3://{bucket}/mirror", str(down)).stdout
    assert [line.split()[1] for line in changed.splitlines() if line.startswith("download:")] == [
        f"s3://{bucket}/mirror/top-0.bin"
    ]
    _same_tree(src, down)


def test_s3api_metadata_and_listing(aws, bucket: str, tmp_path: Path) -> None:
    body = tmp_path / "b"
    body.write_bytes(b"0123456789")
    put = json.loads(
        aws(
            "s3api", "put-object", "--bucket", bucket, "--key", "meta/obj", "--body", str(body),
            "--content-type", "text/x-test", "--metadata", "owner=ci,purpose=e2e",
        ).stdout
    )
    assert put["ETag"] == f'"{hashlib.md5(b"0123456789").hexdigest()}"'
    head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "meta/obj").stdout)
    assert head["ContentType"] == "text/x-test"
    assert head["Metadata"] == {"owner": "ci", "purpose": "e2e"}
    assert head["ContentLength"] == 10
    ranged = tmp_path / "r"
    aws("s3api", "get-object", "--bucket", bucket, "--key", "meta/obj", "--range", "bytes=2-5", str(ranged))
    assert ranged.read_bytes() == b"2345"
    for i in range(7):
        aws("s3api", "put-object", "--bucket", bucket, "--key", f"meta/p/{i}", "--body", str(body))
    listed = json.loads(
        aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "meta/", "--delimiter", "/").stdout
    )
    assert [o["Key"] for o in listed["Contents"]] == ["meta/obj"]
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["meta/p/"]
    paged = json.loads(
        aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "meta/p/", "--max-items", "3").stdout
    )
    assert [o["Key"] for o in paged["Contents"]] == ["meta/p/0", "meta/p/1", "meta/p/2"]
    token = paged["NextToken"]
    rest = json.loads(
        aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "meta/p/", "--starting-token", token).stdout
    )
    assert [o["Key"] for o in rest["Contents"]] == [f"meta/p/{i}" for i in range(3, 7)]


def test_presign_and_errors(aws, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "p"
    src.write_bytes(b"presigned via aws cli")
    aws("s3", "cp", str(src), f"s3://{bucket}/p")
    url = aws("s3", "presign", f"s3://{bucket}/p", "--expires-in", "120").stdout.strip()
    r = http("GET", url)
    assert r.status == 200 and r.data == src.read_bytes()
    missing = aws("s3api", "head-object", "--bucket", bucket, "--key", "absent", check=False)
    assert missing.returncode != 0 and "404" in missing.stderr
    missing = aws("s3", "cp", f"s3://{bucket}/absent", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0


def test_mb_rb(aws, tmp_path: Path) -> None:
    name = "cli-" + hashlib.md5(str(tmp_path).encode()).hexdigest()[:12]
    aws("s3", "mb", f"s3://{name}")
    assert name in aws("s3", "ls").stdout
    dup = aws("s3", "mb", f"s3://{name}", check=False)
    assert dup.returncode == 0 or "BucketAlreadyOwnedByYou" in dup.stderr
    src = tmp_path / "f"
    src.write_bytes(b"x")
    aws("s3", "cp", str(src), f"s3://{name}/f")
    refused = aws("s3", "rb", f"s3://{name}", check=False)
    assert refused.returncode != 0 and "BucketNotEmpty" in refused.stderr
    aws("s3", "rb", "--force", f"s3://{name}")
    assert name not in aws("s3", "ls").stdout
