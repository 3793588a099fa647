"""s3cmd, once with SigV4 and once with SigV2 (``signature_v2 = True``)."""

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
rec = Recorder("s3cmd")
W = ep.workdir
rec.version(run(["s3cmd", "--version"], check=False).stdout)
tree = W / "tree"
files = make_tree(tree, 60, seed=13)
big = W / "big.bin"
# s3cmd's default chunk is 15 MiB: 20 MiB goes up in two parts.
big_md5 = make_file(big, 20 * MiB, seed=20)


def workflow(sig: str) -> None:
    cfg = W / f"s3cfg-{sig}"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ep.access_key}\n"
        f"secret_key = {ep.secret_key}\n"
        f"host_base = {ep.hostport}\n"
        f"host_bucket = {ep.hostport}\n"  # no %(bucket)s: path style
        f"use_https = {ep.url.startswith('https')}\n"
        f"signature_v2 = {sig == 'v2'}\n"
        f"bucket_location = {ep.region}\n"
        "check_ssl_certificate = False\n"
        "guess_mime_type = True\n"
        # s3cmd retries 5 times with growing pauses; one retry keeps a failing step quick.
        "max_retries = 1\n"
    )
    B = ep.bucket(f"s3cmd-{sig}")
    S = f"s3://{B}"
    label = f"sig{sig}"

    def s3cmd(*args: str | Path, timeout: float = 300, check: bool = True):  # noqa: ANN202
        return run(["s3cmd", "-c", cfg, "--no-progress", *args], timeout=timeout, check=check)

    def step(name: str, needs: tuple[str, ...] = ()):  # noqa: ANN202
        return rec.step(f"{label}: {name}", needs=[f"{label}: {n}" for n in needs])

    @step("mb")
    def _() -> None:
        s3cmd("mb", S)
        expect(S in s3cmd("ls").stdout, "bucket not in `s3cmd ls`")

    @step("put (small, 20 MiB multipart)", ("mb",))
    def _() -> None:
        s3cmd("put", W / "tree" / sorted(files)[5], f"{S}/small.bin")
        s3cmd("put", big, f"{S}/big.bin", timeout=600)

    def info() -> None:
        # info also asks for the object's ACL and the bucket's policy/CORS, as users see.
        out = s3cmd("info", f"{S}/big.bin").stdout
        expect(f"File size: {20 * MiB}" in out, f"size not in s3cmd info: {out}")
        expect(f"MD5 sum:   {big_md5}" in out, f"MD5 sum not in s3cmd info: {out}")

    # s3cmd retries any 5xx five times over 45 s, so a failing info costs much: once is enough.
    if sig == "v4":
        step("info", ("put (small, 20 MiB multipart)",))(info)

    @step("ls", ("put (small, 20 MiB multipart)",))
    def _() -> None:
        out = s3cmd("ls", f"{S}/").stdout
        sizes = {line.split()[-1]: line.split()[2] for line in out.splitlines() if line.split()[-1].startswith("s3://")}
        expect_equal(sizes.get(f"{S}/big.bin"), str(20 * MiB), f"big.bin size in ls:\n{out}")
        expect(f"{S}/small.bin" in sizes, f"small.bin not in ls:\n{out}")

    @step("get", ("put (small, 20 MiB multipart)",))
    def _() -> None:
        out = W / f"big-{sig}.down"
        s3cmd("get", f"{S}/big.bin", out, timeout=600)
        expect_equal(md5_file(out), big_md5, "md5 of downloaded file")
        out.unlink()
        small = W / f"small-{sig}.down"
        s3cmd("get", f"{S}/small.bin", small)
        expect_equal(small.read_bytes(), (W / "tree" / sorted(files)[5]).read_bytes(), "small bytes")

    @step("sync up + down", ("mb",))
    def _() -> None:
        s3cmd("sync", f"{tree}/", f"{S}/tree/", timeout=600)
        again = s3cmd("sync", "--dry-run", f"{tree}/", f"{S}/tree/").stdout
        expect("upload:" not in again, f"second sync would upload again:\n{again[:800]}")
        down = W / f"tree-{sig}"
        s3cmd("sync", f"{S}/tree/", f"{down}/", timeout=600)
        diff_trees(tree_digest(down), files, "tree after sync down")
        shutil.rmtree(down)

    @step("del", ("put (small, 20 MiB multipart)",))
    def _() -> None:
        s3cmd("del", f"{S}/small.bin")
        out = s3cmd("ls", f"{S}/").stdout
        expect("small.bin" not in out, f"small.bin still listed:\n{out}")
        s3cmd("del", "--recursive", "--force", f"{S}/")
        expect_equal(s3cmd("ls", "--recursive", f"{S}/").stdout.strip(), "", "objects left after del --recursive")

    @step("rb", ("mb",))
    def _() -> None:
        s3cmd("rb", S)
        expect(S not in s3cmd("ls").stdout, "bucket still listed")


workflow("v4")
workflow("v2")
