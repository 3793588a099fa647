"""aws cli v2 (Debian's ``/usr/bin/aws``): what people type at a shell, checked byte for byte."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from conformance.clients.common import (
    Endpoint,
    MiB,
    Recorder,
    Skip,
    StepFailed,
    diff_trees,
    expect,
    expect_equal,
    make_file,
    make_tree,
    md5_file,
    run,
    tree_digest,
)

AWS = "/usr/bin/aws"  # a pip aws cli v1 may come first on PATH (pyenv shims)

ep = Endpoint.from_env()
rec = Recorder("awscli")
W = ep.workdir
B = ep.bucket("awscli")

config = W / "aws-config"
config.write_text(
    f"[default]\nregion = {ep.region}\ns3 =\n    addressing_style = path\n"
    f"[profile vhost]\nregion = {ep.region}\ns3 =\n    addressing_style = virtual\n"
)
ENV = {
    "AWS_CONFIG_FILE": str(config),
    "AWS_SHARED_CREDENTIALS_FILE": str(W / "no-credentials"),
    "AWS_ACCESS_KEY_ID": ep.access_key,
    "AWS_SECRET_ACCESS_KEY": ep.secret_key,
    "AWS_DEFAULT_REGION": ep.region,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_PAGER": "",
    "AWS_PROFILE": "default",
}
for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "AWS_ENDPOINT_URL"):
    os.environ.pop(var, None)


def aws(*args: str | Path, check: bool = True, endpoint: str | None = None,
        env: dict[str, str] | None = None, timeout: float = 300):  # noqa: ANN201
    e = dict(ENV)
    if env:
        e.update(env)
    argv = [AWS, "--endpoint-url", endpoint or ep.url, *args]
    if args and args[0] == "s3" and len(args) > 1 and args[1] in ("cp", "mv", "sync"):
        argv.append("--no-progress")  # progress lines would bury the output a failure records
    return run(argv, env=e, check=check, timeout=timeout)


def api(*args: str | Path, **kw: object) -> dict:
    out = aws("s3api", *args, "--output", "json", **kw).stdout  # type: ignore[arg-type]
    return json.loads(out) if out.strip() else {}


def head(key: str, bucket: str = B) -> dict:
    return api("head-object", "--bucket", bucket, "--key", key)


def keys_recursive(prefix: str) -> dict[str, int]:
    """Parse ``aws s3 ls --recursive``: ``DATE TIME SIZE KEY`` (keys may contain spaces)."""
    r = aws("s3", "ls", "--recursive", f"s3://{B}/{prefix}", check=False)
    # The cli exits 1 when nothing matches; that is an empty listing, not an error.
    if r.returncode not in (0, 1) or (r.returncode == 1 and r.stdout.strip()):
        raise StepFailed(f"aws s3 ls --recursive exit {r.returncode}: {r.stderr}")
    out = r.stdout
    found: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +(\d+) (.*)$", line)
        if not m:
            raise StepFailed(f"unparseable ls line: {line!r}")
        found[m.group(2)] = int(m.group(1))
    return found


v = run([AWS, "--version"], check=False)
rec.version((v.stdout or v.stderr).split(" ")[0])  # "aws-cli/2.9.19"


@rec.step("version is aws-cli/2")
def _() -> None:
    expect((v.stdout + v.stderr).startswith("aws-cli/2"), f"{AWS} --version says {v.stdout}{v.stderr}")


@rec.step("mb")
def _() -> None:
    aws("s3", "mb", f"s3://{B}")
    names = [b["Name"] for b in api("list-buckets")["Buckets"]]
    expect(B in names, f"list-buckets after mb: {names}")


small = W / "small.txt"
small.write_bytes(b"hello from the aws cli\n" * 100 + bytes(range(256)))
big = W / "big.bin"
big_md5 = make_file(big, 100 * MiB, seed=1)


@rec.step("cp up small", needs=["mb"])
def _() -> None:
    aws("s3", "cp", small, f"s3://{B}/small.txt")
    h = head("small.txt")
    expect_equal(h["ContentLength"], small.stat().st_size, "ContentLength")
    expect_equal(h["ETag"].strip('"'), md5_file(small), "ETag")
    # The cli guesses Content-Type from the extension; the server must keep what it was given.
    expect_equal(h.get("ContentType"), "text/plain", "ContentType")


@rec.step("cp down small", needs=["cp up small"])
def _() -> None:
    out = W / "small.down"
    aws("s3", "cp", f"s3://{B}/small.txt", out)
    expect_equal(out.read_bytes(), small.read_bytes(), "downloaded bytes")


@rec.step("cp up 100 MiB (multipart)", needs=["mb"])
def _() -> None:
    aws("s3", "cp", big, f"s3://{B}/big.bin", timeout=600)
    h = head("big.bin")
    expect_equal(h["ContentLength"], 100 * MiB, "ContentLength")
    # 8 MiB default chunks: the ETag of a multipart object is md5-of-md5s "-13".
    expect(h["ETag"].strip('"').endswith("-13"), f"expected a 13-part multipart ETag, got {h['ETag']}")


@rec.step("cp down 100 MiB", needs=["cp up 100 MiB (multipart)"])
def _() -> None:
    out = W / "big.down"
    aws("s3", "cp", f"s3://{B}/big.bin", out, timeout=600)
    expect_equal(md5_file(out), big_md5, "md5 of downloaded 100 MiB")
    out.unlink()


@rec.step("cp s3 -> s3 100 MiB (UploadPartCopy)", needs=["cp up 100 MiB (multipart)"])
def _() -> None:
    aws("s3", "cp", f"s3://{B}/big.bin", f"s3://{B}/big-copy.bin", timeout=600)
    r = api("get-object", "--bucket", B, "--key", "big-copy.bin", "--range", f"bytes={100 * MiB - 64}-", W / "tail")
    expect_equal(r.get("ContentLength"), 64, "ContentLength of the tail range")
    with big.open("rb") as f:
        f.seek(100 * MiB - 64)
        expect_equal((W / "tail").read_bytes(), f.read(), "last 64 bytes of the copy")
    out = W / "copy.down"
    aws("s3", "cp", f"s3://{B}/big-copy.bin", out, timeout=600)
    expect_equal(md5_file(out), big_md5, "md5 of the server-side copy")
    out.unlink()
    aws("s3", "rm", f"s3://{B}/big-copy.bin")


@rec.step("ls", needs=["cp up small"])
def _() -> None:
    out = aws("s3", "ls", f"s3://{B}/").stdout
    sizes = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\S+ \S+ +(\d+) (.*)$", out, re.M)}
    expect_equal(sizes.get("small.txt"), small.stat().st_size, f"small.txt in ls output {out!r}")
    buckets = aws("s3", "ls").stdout
    expect(re.search(rf" {re.escape(B)}$", buckets, re.M) is not None, f"{B} not in `aws s3 ls`: {buckets}")


tree = W / "tree"
tree_files = make_tree(tree, 200)


@rec.step("sync up 200-file tree", needs=["mb"])
def _() -> None:
    aws("s3", "sync", tree, f"s3://{B}/tree/", timeout=600)


@rec.step("ls --recursive", needs=["sync up 200-file tree"])
def _() -> None:
    found = keys_recursive("tree/")
    expected = {f"tree/{k}": (tree / k).stat().st_size for k in tree_files}
    expect_equal(len(found), 200, "number of keys listed")
    expect_equal(found, expected, "keys and sizes")


@rec.step("sync up again uploads nothing", needs=["sync up 200-file tree"])
def _() -> None:
    out = aws("s3", "sync", tree, f"s3://{B}/tree/").stdout
    expect(out.strip() == "", f"second sync transferred files (size/mtime not kept?): {out[:600]}")


@rec.step("sync --delete", needs=["sync up 200-file tree"])
def _() -> None:
    victim = sorted(tree_files)[7]
    (tree / victim).rename(W / "set-aside")
    try:
        out = aws("s3", "sync", "--delete", tree, f"s3://{B}/tree/").stdout
        expect(f"delete: s3://{B}/tree/{victim}" in out, f"sync --delete did not delete {victim}:\n{out[:800]}")
        expect(f"tree/{victim}" not in keys_recursive("tree/"), f"{victim} still listed")
    finally:
        (W / "set-aside").rename(tree / victim)
    aws("s3", "sync", tree, f"s3://{B}/tree/")
    expect_equal(len(keys_recursive("tree/")), 200, "keys after syncing the file back")


@rec.step("sync down + diff -r", needs=["sync up 200-file tree"])
def _() -> None:
    down = W / "tree.down"
    aws("s3", "sync", f"s3://{B}/tree/", down, timeout=600)
    d = run(["diff", "-r", tree, down], check=False)
    expect(d.returncode == 0, f"diff -r: {d.stdout[:1500]}")
    diff_trees(tree_digest(down), tree_files, "downloaded tree")


@rec.step("sync down again --exact-timestamps downloads nothing", needs=["sync down + diff -r"])
def _() -> None:
    # A mirror's way to catch same-size changes: the cli set each file's mtime to its object's
    # LastModified (whole seconds) and now wants the listed time to be exactly that.
    out = aws("s3", "sync", "--exact-timestamps", f"s3://{B}/tree/", W / "tree.down", timeout=600).stdout
    expect("download:" not in out, f"unchanged objects downloaded again: {out[:600]}")


@rec.step("mv", needs=["cp up small"])
def _() -> None:
    aws("s3", "mv", f"s3://{B}/small.txt", f"s3://{B}/moved/small.txt")
    gone = aws("s3api", "head-object", "--bucket", B, "--key", "small.txt", check=False)
    expect(gone.returncode != 0 and "404" in gone.stderr, f"source still there after mv: {gone.stderr}")
    out = W / "moved.down"
    aws("s3", "cp", f"s3://{B}/moved/small.txt", out)
    expect_equal(out.read_bytes(), small.read_bytes(), "moved object bytes")


@rec.step("presign + curl", needs=["mv"])
def _() -> None:
    url = aws("s3", "presign", f"s3://{B}/moved/small.txt", "--expires-in", "300").stdout.strip()
    out = W / "presigned.down"
    c = run(["curl", "-sS", "-o", out, "-w", "%{http_code}", url], check=False)
    expect(c.stdout == "200", f"curl presigned GET: HTTP {c.stdout} {c.stderr} {out.read_text(errors='replace')[:800] if out.exists() else ''}")
    expect_equal(out.read_bytes(), small.read_bytes(), "presigned GET bytes")
    # A tampered signature must be refused: the server really verifies presigned URLs.
    bad = re.sub(r"(X-Amz-Signature=|Signature=)([0-9a-fA-F])", lambda m: m.group(1) + ("0" if m.group(2) != "0" else "1"), url)
    c = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", bad], check=False)
    expect_equal(c.stdout, "403", "HTTP status for a tampered presigned URL")


@rec.step("put-object with metadata + head-object", needs=["mb"])
def _() -> None:
    body = W / "meta.txt"
    body.write_text("metadata test\n")
    put = api("put-object", "--bucket", B, "--key", "meta/obj.txt", "--body", body,
              "--content-type", "text/x-conformance", "--cache-control", "max-age=60",
              "--content-disposition", 'attachment; filename="m.txt"',
              "--metadata", "color=blue,Owner=Someone")
    h = head("meta/obj.txt")
    expect_equal(h.get("Metadata"), {"color": "blue", "owner": "Someone"}, "Metadata")
    expect_equal(h.get("ContentType"), "text/x-conformance", "ContentType")
    expect_equal(h.get("CacheControl"), "max-age=60", "CacheControl")
    expect_equal(h.get("ContentDisposition"), 'attachment; filename="m.txt"', "ContentDisposition")
    expect_equal(h.get("ContentLength"), 14, "ContentLength")
    expect_equal(h.get("ETag"), put.get("ETag"), "ETag of head vs put")


LIST_KEYS = ["list/a/1", "list/a/2", "list/b/1", "list/c", "list/d", "list/e.txt", "list/f"]


@rec.step("list-objects-v2 prefix/delimiter", needs=["mb"])
def _() -> None:
    empty = W / "empty"
    empty.write_bytes(b"")
    for k in LIST_KEYS:
        aws("s3api", "put-object", "--bucket", B, "--key", k, "--body", empty)
    r = api("list-objects-v2", "--bucket", B, "--prefix", "list/", "--delimiter", "/")
    expect_equal([p["Prefix"] for p in r.get("CommonPrefixes", [])], ["list/a/", "list/b/"], "CommonPrefixes")
    expect_equal([c["Key"] for c in r.get("Contents", [])], ["list/c", "list/d", "list/e.txt", "list/f"], "Contents")


@rec.step("list-objects-v2 --max-items pagination", needs=["list-objects-v2 prefix/delimiter"])
def _() -> None:
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        extra = ["--starting-token", token] if token else []
        # --page-size 2 makes the server paginate (max-keys=2, continuation tokens) underneath.
        r = api("list-objects-v2", "--bucket", B, "--prefix", "list/", "--max-items", "3",
                "--page-size", "2", *extra)
        seen += [c["Key"] for c in r.get("Contents", [])]
        pages += 1
        token = r.get("NextToken")
        if not token or pages > 10:
            break
    expect_equal(seen, LIST_KEYS, "keys over all pages")
    expect_equal(pages, 3, "number of --max-items 3 pages for 7 keys")


@rec.step("get-object --range", needs=["cp up 100 MiB (multipart)"])
def _() -> None:
    out = W / "range.out"
    r = api("get-object", "--bucket", B, "--key", "big.bin", "--range", "bytes=1048570-1048679", out)
    with big.open("rb") as f:
        f.seek(1048570)
        want = f.read(110)
    expect_equal(out.read_bytes(), want, "ranged bytes")
    expect_equal(r.get("ContentRange"), f"bytes 1048570-1048679/{100 * MiB}", "ContentRange")
    expect_equal(r.get("ContentLength"), 110, "ContentLength")


@rec.step("cp - (stdin, unknown length)", needs=["mb"])
def _() -> None:
    # `producer | aws s3 cp - s3://...` streams with no length known: multipart of 8 MiB parts.
    data_md5 = md5_file(big)
    with big.open("rb") as f:
        run([AWS, "--endpoint-url", ep.url, "s3", "cp", "-", f"s3://{B}/stdin.bin"], env=ENV, stdin=f, timeout=600)
    h = head("stdin.bin")
    expect_equal(h["ContentLength"], 100 * MiB, "ContentLength")
    out = W / "stdin.down"
    aws("s3", "cp", f"s3://{B}/stdin.bin", out, timeout=600)
    expect_equal(md5_file(out), data_md5, "md5 of the streamed upload")
    out.unlink()
    aws("s3", "rm", f"s3://{B}/stdin.bin")


@rec.step("aborted multipart upload", needs=["mb"])
def _() -> None:
    part = W / "part1"
    part_md5 = make_file(part, 5 * MiB, seed=5)
    up = api("create-multipart-upload", "--bucket", B, "--key", "mpu/aborted.bin")
    uid = up["UploadId"]
    p = api("upload-part", "--bucket", B, "--key", "mpu/aborted.bin", "--part-number", "1",
            "--upload-id", uid, "--body", part)
    expect_equal(p.get("ETag", "").strip('"'), part_md5, "part ETag")
    lu = api("list-multipart-uploads", "--bucket", B)
    expect([u["UploadId"] for u in lu.get("Uploads", [])] == [uid], f"list-multipart-uploads before abort: {lu}")
    lp = api("list-parts", "--bucket", B, "--key", "mpu/aborted.bin", "--upload-id", uid)
    expect_equal([(x["PartNumber"], x["Size"]) for x in lp.get("Parts", [])], [(1, 5 * MiB)], "list-parts")
    aws("s3api", "abort-multipart-upload", "--bucket", B, "--key", "mpu/aborted.bin", "--upload-id", uid)
    lu = api("list-multipart-uploads", "--bucket", B)
    expect(not lu.get("Uploads"), f"uploads left after abort: {lu}")
    gone = aws("s3api", "head-object", "--bucket", B, "--key", "mpu/aborted.bin", check=False)
    expect(gone.returncode != 0, "an aborted upload left an object behind")


@rec.step("errors: NoSuchKey / 404 / NoSuchBucket", needs=["mb"])
def _() -> None:
    r = aws("s3api", "get-object", "--bucket", B, "--key", "does/not/exist", W / "x", check=False)
    expect(r.returncode != 0 and "NoSuchKey" in r.stderr, f"get-object missing key: {r.stderr}")
    r = aws("s3api", "head-object", "--bucket", B, "--key", "does/not/exist", check=False)
    expect(r.returncode != 0 and "404" in r.stderr, f"head-object missing key: {r.stderr}")
    r = aws("s3", "ls", f"s3://{B}-missing/", check=False)
    expect(r.returncode != 0 and "NoSuchBucket" in r.stderr, f"ls missing bucket: {r.stderr}")


@rec.step("rm --recursive", needs=["sync up 200-file tree"])
def _() -> None:
    out = aws("s3", "rm", "--recursive", f"s3://{B}/tree/").stdout
    expect_equal(out.count("delete: "), 200, "number of deletes reported")
    expect_equal(keys_recursive("tree/"), {}, "keys left under tree/")


@rec.step("rb refuses a non-empty bucket", needs=["mb"])
def _() -> None:
    r = aws("s3", "rb", f"s3://{B}", check=False)
    expect(r.returncode != 0 and "BucketNotEmpty" in r.stderr, f"rb non-empty: rc={r.returncode} {r.stderr}")


@rec.step("rb --force", needs=["mb"])
def _() -> None:
    aws("s3", "rb", "--force", f"s3://{B}", timeout=600)
    names = [b["Name"] for b in api("list-buckets").get("Buckets", [])]
    expect(B not in names, f"bucket still listed after rb: {names}")


# Virtual-host style: the bucket goes into the Host name (bucket.localhost:PORT).
VB = ep.bucket("awscli-vhost")


def vaws(*args: str | Path, check: bool = True):  # noqa: ANN201
    if not ep.vhost_url:
        raise Skip("no virtual-host endpoint configured")
    env = {"AWS_PROFILE": "vhost"}
    if ep.vhost_proxy:
        env["HTTP_PROXY"] = env["http_proxy"] = ep.vhost_proxy
        env["NO_PROXY"] = env["no_proxy"] = ""
    return aws(*args, endpoint=ep.vhost_url, env=env, check=check)


@rec.step("vhost: mb, cp, ls, cp down, presign + curl, rb")
def _() -> None:
    vaws("s3", "mb", f"s3://{VB}")
    vaws("s3", "cp", small, f"s3://{VB}/dir/small.txt")
    out = vaws("s3", "ls", "--recursive", f"s3://{VB}/").stdout
    expect("dir/small.txt" in out, f"ls over virtual-host: {out}")
    down = W / "vhost.down"
    vaws("s3", "cp", f"s3://{VB}/dir/small.txt", down)
    expect_equal(down.read_bytes(), small.read_bytes(), "bytes over virtual-host")
    url = vaws("s3", "presign", f"s3://{VB}/dir/small.txt", "--expires-in", "300").stdout.strip()
    expect(f"//{VB}.{ep.vhost_domain}" in url, f"presign did not give a virtual-host URL: {url}")
    # curl resolves *.localhost to loopback by itself, no proxy needed.
    c = run(["curl", "-sS", "--noproxy", "*", "-o", W / "vhost.presigned", "-w", "%{http_code}", url], check=False)
    expect_equal(c.stdout, "200", f"curl of the virtual-host presigned URL {url}")
    expect_equal((W / "vhost.presigned").read_bytes(), small.read_bytes(), "presigned bytes over virtual-host")
    vaws("s3", "rb", "--force", f"s3://{VB}")
    log = os.environ.get("CONF_VHOST_PROXY_LOG")
    if log and Path(log).exists():
        hosts = {line.split(" ", 1)[0] for line in Path(log).read_text().splitlines()}
        vhost = f"{VB}.{ep.vhost_domain}"
        expect(any(h.split(":")[0] == vhost for h in hosts), f"no request with Host {vhost}: saw {hosts}")


# Several worker processes on one root: parts of one upload are served by different processes.
WB = ep.bucket("awscli-workers")
WURL = os.environ.get("CONF_WORKERS_ENDPOINT", "")


@rec.step("workers=2: mb, cp 100 MiB up/down, sync tree, rb")
def _() -> None:
    if not WURL:
        raise Skip("no multi-worker endpoint configured")
    aws("s3", "mb", f"s3://{WB}", endpoint=WURL)
    aws("s3", "cp", big, f"s3://{WB}/big.bin", endpoint=WURL, timeout=600)
    out = W / "workers.down"
    aws("s3", "cp", f"s3://{WB}/big.bin", out, endpoint=WURL, timeout=600)
    expect_equal(md5_file(out), big_md5, "md5 after round trip")
    out.unlink()
    aws("s3", "sync", tree, f"s3://{WB}/tree/", endpoint=WURL, timeout=600)
    down = W / "workers.tree"
    aws("s3", "sync", f"s3://{WB}/tree/", down, endpoint=WURL, timeout=600)
    diff_trees(tree_digest(down), tree_files, "tree through two workers")
    aws("s3", "rb", "--force", f"s3://{WB}", endpoint=WURL, timeout=600)
