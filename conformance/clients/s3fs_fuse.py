"""s3fs-fuse: a bucket mounted as a folder, used with ordinary shell tools.

What the mount writes is checked through boto3 too, so a file that only lives in s3fs's cache
does not pass for an object on the server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import boto3
from botocore.config import Config

from conformance.clients.common import (
    Endpoint,
    MiB,
    Recorder,
    StepFailed,
    expect,
    expect_equal,
    make_file,
    run,
    trim,
)

ep = Endpoint.from_env()
rec = Recorder("s3fs-fuse")
W = ep.workdir
B = ep.bucket("s3fs-fuse")
MNT = W / "mnt"
MNT.mkdir()
v = run(["s3fs", "--version"], check=False)
# "Amazon Simple Storage Service File System V1.90 (commit:...) with GnuTLS" -> "s3fs V1.90"
rec.version("s3fs " + next((w for w in (v.stdout or v.stderr).split() if w.startswith("V")), "?"))
s3 = boto3.client(
    "s3", endpoint_url=ep.url, region_name=ep.region, aws_access_key_id=ep.access_key,
    aws_secret_access_key=ep.secret_key, config=Config(s3={"addressing_style": "path"}),
)
passwd = W / "passwd-s3fs"
passwd.write_text(f"{ep.access_key}:{ep.secret_key}\n")
passwd.chmod(0o600)  # s3fs refuses a passwd file that others can read
log = W / "s3fs.log"
proc: subprocess.Popen[bytes] | None = None


def sh(*args: str | Path, timeout: float = 120):  # noqa: ANN201
    # Every command on the mount gets a timeout: a stuck FUSE request would otherwise hang us.
    return run(list(args), timeout=timeout)


def mounted() -> bool:
    return run(["mountpoint", "-q", MNT], check=False, timeout=10).returncode == 0


@rec.step("mount (bucket made by boto3)")
def _() -> None:
    global proc
    s3.create_bucket(Bucket=B)
    s3.put_object(Bucket=B, Key="foreign.txt", Body=b"put by boto3\n")
    opts = f"url={ep.url},use_path_request_style,passwd_file={passwd},endpoint={ep.region},dbglevel=warn"
    with log.open("wb") as f:
        proc = subprocess.Popen(["s3fs", B, str(MNT), "-f", "-o", opts], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StepFailed(f"s3fs exited with {proc.returncode}:\n{trim(log.read_text(errors='replace'))}")
        if mounted():
            return
        time.sleep(0.2)
    raise StepFailed(f"not mounted after 20 s:\n{trim(log.read_text(errors='replace'))}")


M = ["mount (bucket made by boto3)"]
src = W / "src.txt"
src.write_bytes(b"copied into the mount\n" * 300)


def obj(key: str) -> bytes:
    return s3.get_object(Bucket=B, Key=key)["Body"].read()


@rec.step("cat a file put by boto3", needs=M)
def _() -> None:
    expect_equal(sh("cat", MNT / "foreign.txt").stdout, "put by boto3\n", "cat")


@rec.step("cp into the mount", needs=M)
def _() -> None:
    sh("cp", src, MNT / "copied.txt")
    expect_equal(obj("copied.txt"), src.read_bytes(), "object bytes written through the mount")


@rec.step("chmod + touch -d kept (x-amz-meta-mode/mtime, copy onto itself)", needs=["cp into the mount"])
def _() -> None:
    # s3fs stores POSIX attributes as user metadata and changes them with a CopyObject of the
    # object onto itself with MetadataDirective REPLACE.
    sh("chmod", "640", MNT / "copied.txt")
    # Both times: s3fs 1.90 ignores `touch -m` (atime UTIME_OMIT) whatever the server does.
    sh("touch", "-d", "2001-02-03 04:05:06 UTC", MNT / "copied.txt")
    meta = s3.head_object(Bucket=B, Key="copied.txt")["Metadata"]
    expect_equal(int(meta.get("mode", "0")) & 0o7777, 0o640, f"mode in {meta}")
    expect_equal(meta.get("mtime"), "981173106", f"mtime in {meta}")
    expect_equal(obj("copied.txt"), src.read_bytes(), "bytes after the metadata copies")
    st = os.stat(MNT / "copied.txt")
    expect_equal((st.st_mode & 0o7777, int(st.st_mtime)), (0o640, 981173106), "stat through the mount")


@rec.step("echo > file, cat", needs=M)
def _() -> None:
    sh("sh", "-c", f"echo 'hello fuse' > '{MNT}/echo.txt'")
    expect_equal(sh("cat", MNT / "echo.txt").stdout, "hello fuse\n", "cat")
    expect_equal(obj("echo.txt"), b"hello fuse\n", "object bytes")


@rec.step("mkdir", needs=M)
def _() -> None:
    sh("mkdir", MNT / "sub")
    sh("cp", src, MNT / "sub" / "inner.txt")
    expect(os.path.isdir(MNT / "sub"), "sub is not a directory")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=B, Prefix="sub/").get("Contents", [])]
    expect("sub/inner.txt" in keys, f"objects under sub/: {keys}")


@rec.step("ls -la", needs=M)
def _() -> None:
    out = sh("ls", "-la", MNT).stdout
    entries = {line.split()[-1]: line for line in out.splitlines()[1:] if line.split()}
    for name in ("foreign.txt", "copied.txt", "echo.txt", "sub"):
        expect(name in entries, f"{name} missing from ls -la:\n{out}")
    expect(entries["sub"].startswith("d"), f"sub is not shown as a directory: {entries['sub']}")
    size = int(entries["copied.txt"].split()[4])
    expect_equal(size, src.stat().st_size, "size of copied.txt in ls -la")


@rec.step("mv (rename)", needs=M)
def _() -> None:
    sh("mv", MNT / "copied.txt", MNT / "sub" / "renamed.txt")
    expect_equal(sh("cat", MNT / "sub" / "renamed.txt").stdout.encode(), src.read_bytes(), "renamed bytes")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=B).get("Contents", [])}
    expect("copied.txt" not in keys and "sub/renamed.txt" in keys, f"objects after mv: {sorted(keys)}")


@rec.step("append >>, truncate, empty file", needs=M)
def _() -> None:
    sh("sh", "-c", f"printf 'one\\n' > '{MNT}/log.txt' && printf 'two\\n' >> '{MNT}/log.txt'")
    expect_equal(obj("log.txt"), b"one\ntwo\n", "object after append")
    sh("truncate", "-s", "2", MNT / "log.txt")
    expect_equal(obj("log.txt"), b"on", "object after truncate")
    sh("touch", MNT / "empty")
    expect_equal(s3.head_object(Bucket=B, Key="empty")["ContentLength"], 0, "size of a touched file")


@rec.step("mv directory, rmdir", needs=["mkdir"])
def _() -> None:
    sh("mv", MNT / "sub", MNT / "sub2")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=B).get("Contents", []))
    expect(not any(k.startswith("sub/") for k in keys), f"objects left under sub/: {keys}")
    expect(any(k.startswith("sub2/") for k in keys), f"nothing under sub2/: {keys}")
    sh("mkdir", MNT / "gone")
    sh("rmdir", MNT / "gone")
    expect(not (MNT / "gone").exists(), "rmdir: still there")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=B, Prefix="gone").get("Contents", [])]
    expect_equal(keys, [], "objects left by rmdir")


@rec.step("rm", needs=M)
def _() -> None:
    sh("rm", MNT / "echo.txt")
    expect(not (MNT / "echo.txt").exists(), "echo.txt still visible")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=B).get("Contents", [])}
    expect("echo.txt" not in keys, f"object still on the server: {sorted(keys)}")


@rec.step("dd 50 MiB + md5sum round trip", needs=M)
def _() -> None:
    big = W / "big.bin"
    want = make_file(big, 50 * MiB, seed=50)
    sh("dd", f"if={big}", f"of={MNT / 'big.bin'}", "bs=1M", "status=none", timeout=300)
    sh("sync")
    got = sh("md5sum", MNT / "big.bin", timeout=300).stdout.split()[0]
    expect_equal(got, want, "md5sum through the mount")
    h = s3.head_object(Bucket=B, Key="big.bin")
    expect_equal(h["ContentLength"], 50 * MiB, "ContentLength on the server")
    md5 = hashlib.md5()
    for chunk in s3.get_object(Bucket=B, Key="big.bin")["Body"].iter_chunks(MiB):
        md5.update(chunk)
    expect_equal(md5.hexdigest(), want, "md5 of the object on the server")
    big.unlink()


@rec.step("unmount", needs=M)
def _() -> None:
    sh("fusermount", "-u", MNT, timeout=30)
    assert proc is not None
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired as e:
        raise StepFailed("s3fs still running 20 s after fusermount -u") from e
    expect(not mounted(), "still mounted")


# Whatever happened above, never leave a mount behind.
if mounted():
    run(["fusermount", "-u", "-z", MNT], check=False, timeout=30)
if proc is not None and proc.poll() is None:
    proc.terminate()
    proc.wait(10)
errors = [line for line in log.read_text(errors="replace").splitlines() if ("[ERR]" in line or "[CRT]" in line) and "LowSetLogLevel" not in line] \
    if log.exists() else []
if errors:
    print("s3fs logged errors:\n" + "\n".join(errors[:20]), flush=True)
