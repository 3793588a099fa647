"""rclone (S3 provider "Other"), configured only through RCLONE_CONFIG_<NAME>_* variables."""

from __future__ import annotations

import shutil
from pathlib import Path

from conformance.clients.common import (
    Endpoint,
    MiB,
    Recorder,
    diff_trees,
    expect,
    expect_equal,
    make_file,
    make_tree,
    md5_file,
    run,
    tree_digest,
)

ep = Endpoint.from_env()
rec = Recorder("rclone")
W = ep.workdir
B = ep.bucket("rclone")
(W / "rclone.conf").write_text("")  # never pick up a user's own config
ENV = {
    "RCLONE_CONFIG": str(W / "rclone.conf"),
    "RCLONE_CONFIG_CONF_TYPE": "s3",
    "RCLONE_CONFIG_CONF_PROVIDER": "Other",
    "RCLONE_CONFIG_CONF_ACCESS_KEY_ID": ep.access_key,
    "RCLONE_CONFIG_CONF_SECRET_ACCESS_KEY": ep.secret_key,
    "RCLONE_CONFIG_CONF_ENDPOINT": ep.url,
    "RCLONE_CONFIG_CONF_REGION": ep.region,
    "RCLONE_CONFIG_CONF_FORCE_PATH_STYLE": "true",
    # One try, so a failing request is reported rather than retried into a pass.
    "RCLONE_RETRIES": "1",
    "RCLONE_LOW_LEVEL_RETRIES": "1",
}
R = f"conf:{B}"


def rclone(*args: str | Path, timeout: float = 300, check: bool = True):  # noqa: ANN201
    return run(["rclone", *args], env=ENV, timeout=timeout, check=check)


def lsf(path: str) -> list[str]:
    return sorted(rclone("lsf", "-R", "--files-only", path).stdout.splitlines())


rec.version(rclone("version", check=False).stdout)
tree = W / "tree"
files = make_tree(tree, 200, seed=11)


@rec.step("mkdir (bucket)")
def _() -> None:
    rclone("mkdir", R)
    expect(B in rclone("lsd", "conf:").stdout, "bucket not listed by lsd")


@rec.step("copy 200-file tree", needs=["mkdir (bucket)"])
def _() -> None:
    rclone("copy", tree, f"{R}/tree", timeout=600)


@rec.step("lsf -R", needs=["copy 200-file tree"])
def _() -> None:
    expect_equal(lsf(f"{R}/tree"), sorted(files), "files listed")


@rec.step("lsl: sizes and modtimes kept", needs=["copy 200-file tree"])
def _() -> None:
    # rclone keeps the modtime in X-Amz-Meta-Mtime; a server that drops metadata shows here.
    local = sorted(rclone("lsl", tree).stdout.splitlines(), key=lambda x: x.split()[-1])
    remote = sorted(rclone("lsl", f"{R}/tree").stdout.splitlines(), key=lambda x: x.split()[-1])
    expect_equal(len(remote), len(local), "number of files")
    diff = [(a, b) for a, b in zip(local, remote, strict=True) if a.split() != b.split()]
    expect(not diff, f"{len(diff)} lines differ, first: {diff[:3]}")


@rec.step("check (hashes)", needs=["copy 200-file tree"])
def _() -> None:
    out = rclone("check", tree, f"{R}/tree", check=False)
    expect(out.returncode == 0, f"rclone check: {out.stderr[-1500:]}")
    expect("0 differences found" in out.stderr, f"rclone check output: {out.stderr[-800:]}")
    expect("hashes could not be checked" not in out.stderr, f"hashes not compared: {out.stderr[-800:]}")


@rec.step("sync after local changes", needs=["copy 200-file tree"])
def _() -> None:
    names = sorted(files)
    (tree / names[0]).unlink()
    (tree / names[1]).write_bytes(b"changed by the sync step\n")
    (tree / "added" / "new.txt").parent.mkdir(exist_ok=True)
    (tree / "added" / "new.txt").write_bytes(b"new file\n")
    rclone("sync", tree, f"{R}/tree", timeout=600)
    expect_equal(lsf(f"{R}/tree"), sorted(tree_digest(tree)), "files after sync")
    down = W / "down"
    rclone("copy", f"{R}/tree", down, timeout=600)
    diff_trees(tree_digest(down), tree_digest(tree), "downloaded tree after sync")
    shutil.rmtree(down)


@rec.step("moveto", needs=["copy 200-file tree"])
def _() -> None:
    rclone("moveto", f"{R}/tree/added/new.txt", f"{R}/moved/new.txt")
    expect_equal(rclone("cat", f"{R}/moved/new.txt").stdout, "new file\n", "moved bytes")
    expect("new.txt" not in rclone("lsf", f"{R}/tree/added", check=False).stdout, "source still there")


@rec.step("delete", needs=["copy 200-file tree"])
def _() -> None:
    rclone("delete", f"{R}/tree")
    expect_equal(lsf(f"{R}/tree"), [], "files left after delete")


@rec.step("200 MiB file up and down (multipart)", needs=["mkdir (bucket)"])
def _() -> None:
    big = W / "big.bin"
    # rclone's default upload_cutoff is 200 MiB and only a larger file goes multipart.
    want = make_file(big, 201 * MiB, seed=200)
    rclone("copyto", big, f"{R}/big.bin", timeout=900)
    out = rclone("md5sum", f"{R}/big.bin").stdout.split()
    expect(bool(out) and out[0] == want, f"rclone md5sum: {out}")
    big.unlink()
    back = W / "big.down"
    rclone("copyto", f"{R}/big.bin", back, timeout=900)
    expect_equal(md5_file(back), want, "md5 after download")
    back.unlink()


@rec.step("purge (bucket)", needs=["mkdir (bucket)"])
def _() -> None:
    rclone("purge", R, timeout=300)
    expect(B not in rclone("lsd", "conf:").stdout, "bucket still listed after purge")
