"""restic (Debian's; its S3 backend is minio-go): a backup repository in a bucket, as users keep
one on a local S3 server. What restic says is compared with the files on disk and with the
objects in the bucket (listed through boto3)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import boto3
from botocore.config import Config

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
    run,
    tree_digest,
)

ep = Endpoint.from_env()
rec = Recorder("restic")
W = ep.workdir
B = ep.bucket("restic")
PREFIX = "backups/laptop"
ENV = {
    "AWS_ACCESS_KEY_ID": ep.access_key,
    "AWS_SECRET_ACCESS_KEY": ep.secret_key,
    "RESTIC_REPOSITORY": f"s3:{ep.url}/{B}/{PREFIX}",
    "RESTIC_PASSWORD": "conformance restic password",
    "RESTIC_CACHE_DIR": str(W / "cache"),
    # No ~/.aws or ~/.mc credentials of the developer's, should the variables above not win.
    "HOME": str(W),
}
s3 = boto3.client("s3", endpoint_url=ep.url, aws_access_key_id=ep.access_key, aws_secret_access_key=ep.secret_key,
                  region_name=ep.region, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def restic(*args: str, timeout: float = 300, check: bool = True):  # noqa: ANN201
    return run(["restic", *args], env=ENV, timeout=timeout, check=check)


def restic_json(*args: str) -> object:
    return json.loads(restic(*args, "--json").stdout)


def objects(sub: str) -> dict[str, int]:
    """name -> size of the objects under the repository's ``sub``/ folder, as S3 lists them."""
    out: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B, Prefix=f"{PREFIX}/{sub}/"):
        for o in page.get("Contents", []):
            out[o["Key"].rpartition("/")[2]] = o["Size"]
    return out


def ids(snaps: object) -> list[str]:
    """The snapshot ids of ``restic snapshots --json``, cut to the length of the ids in SNAPS
    (restic 0.14's backup summary gives the short id, later versions the full one)."""
    assert isinstance(snaps, list)
    return [str(s["id"])[:len(SNAPS[0])] for s in snaps]


def summary(out: str) -> dict[str, object]:
    for line in reversed(out.splitlines()):
        if line.startswith("{") and '"summary"' in line:
            return dict(json.loads(line))
    raise StepFailed(f"no summary in restic's --json output:\n{out[-1500:]}")


rec.version(restic("version", check=False).stdout)
SRC = W / "src"
# make_tree gives mtimes an hour back, so the second backup tells changed files by their mtime.
FILES = make_tree(SRC, 300, seed=31)
make_file(SRC / "media" / "video.bin", 21 * MiB + 4321, seed=21)
STATE1 = tree_digest(SRC)
SNAPS: list[str] = []


@rec.step("init (s3:http://.../bucket/prefix)")
def _() -> None:
    out = restic("init").stdout
    expect("created restic repository" in out, f"init output: {out}")
    # restic creates the bucket itself (minio-go MakeBucket) and writes the config and one key.
    expect_equal(len(objects("keys")), 1, "objects under keys/")
    head = s3.head_object(Bucket=B, Key=f"{PREFIX}/config")
    expect(head["ContentLength"] > 0, "empty config object")
    cfg = restic_json("cat", "config")
    expect(isinstance(cfg, dict) and cfg.get("version") in (1, 2), f"restic cat config: {cfg}")


INIT = ["init (s3:http://.../bucket/prefix)"]


@rec.step("backup (301 files incl. a 21 MiB file)", needs=INIT)
def _() -> None:
    s = summary(restic("backup", "--host", "conformance", "--json", str(SRC), timeout=600).stdout)
    expect_equal(s.get("files_new"), len(STATE1), "files_new")
    size = sum(p.stat().st_size for p in SRC.rglob("*") if p.is_file())
    expect_equal(s.get("total_bytes_processed"), size, "total_bytes_processed")
    SNAPS.append(str(s["snapshot_id"]))
    # Every pack restic knows of is in the bucket, with the size S3 lists, and no other.
    packs = sorted(restic("list", "packs").stdout.split())
    expect_equal(sorted(objects("data")), packs, "data/ objects vs restic list packs")
    expect(sum(objects("data").values()) > 21 * MiB, f"packs hold {sum(objects('data').values())} bytes")


BACKUP1 = ["backup (301 files incl. a 21 MiB file)"]


@rec.step("second backup after changes", needs=BACKUP1)
def _() -> None:
    names = sorted(FILES)
    (SRC / names[0]).unlink()
    (SRC / names[1]).write_bytes(b"changed before the second backup\n")
    (SRC / "added").mkdir()
    (SRC / "added" / "new.txt").write_bytes(b"a new file\n")
    s = summary(restic("backup", "--host", "conformance", "--json", str(SRC), timeout=600).stdout)
    expect_equal((s.get("files_new"), s.get("files_changed"), s.get("files_unmodified")),
                 (1, 1, len(STATE1) - 2), "(new, changed, unmodified)")
    SNAPS.append(str(s["snapshot_id"]))


BACKUP2 = ["second backup after changes"]


@rec.step("snapshots", needs=BACKUP2)
def _() -> None:
    snaps = restic_json("snapshots")
    assert isinstance(snaps, list)
    expect_equal(ids(snaps), SNAPS, "snapshot ids")
    expect_equal(str(snaps[1].get("parent")), snaps[0]["id"], "parent of the second snapshot")
    expect_equal([s["paths"] for s in snaps], [[str(SRC)]] * 2, "paths")
    expect_equal(sorted(objects("snapshots")), sorted(s["id"] for s in snaps), "snapshots/ objects")


@rec.step("check --read-data", needs=BACKUP2)
def _() -> None:
    # Reads every pack back and checks each blob's SHA-256: every byte restic stored.
    out = restic("check", "--read-data", timeout=600)
    expect("no errors were found" in out.stdout, f"check output:\n{out.stdout[-1500:]}\n{out.stderr[-800:]}")


@rec.step("restore latest + diff -r with the source; restore the first snapshot", needs=BACKUP2)
def _() -> None:
    target = W / "restore"
    restic("restore", "latest", "--target", str(target), timeout=600)
    got = target / SRC.relative_to(SRC.anchor)
    run(["diff", "-r", str(SRC), str(got)])
    diff_trees(tree_digest(got), tree_digest(SRC), "restored tree (latest)")
    shutil.rmtree(target)
    restic("restore", SNAPS[0], "--target", str(target), timeout=600)
    diff_trees(tree_digest(got), STATE1, "restored tree (first snapshot)")
    shutil.rmtree(target)


@rec.step("restic diff between the snapshots", needs=BACKUP2)
def _() -> None:
    out = restic("diff", SNAPS[0], SNAPS[1]).stdout
    names = sorted(FILES)
    for mark, rel in (("-", names[0]), ("M", names[1]), ("+", "added/new.txt")):
        expect(f"{mark}    {SRC}/{rel}" in out, f"{mark} {rel} not in restic diff:\n{out[-1500:]}")


@rec.step("forget --keep-last 1 --prune", needs=BACKUP2)
def _() -> None:
    before = objects("data")
    restic("forget", "--keep-last", "1", "--prune", timeout=600)
    snaps = restic_json("snapshots")
    expect_equal(ids(snaps), SNAPS[1:], "snapshots left")
    expect_equal([k[:len(SNAPS[0])] for k in objects("snapshots")], SNAPS[1:], "snapshots/ objects left")
    packs = sorted(restic("list", "packs").stdout.split())
    expect_equal(sorted(objects("data")), packs, "data/ objects vs restic list packs after prune")
    expect(set(packs) != set(before), "prune removed no pack (the changed file's old blob was in one)")


@rec.step("check after prune", needs=["forget --keep-last 1 --prune"])
def _() -> None:
    out = restic("check", "--read-data-subset", "1/2", timeout=600)
    expect("no errors were found" in out.stdout, f"check output:\n{out.stdout[-1500:]}")


TB = ep.bucket("restic-tls")


@rec.step("https (--cacert): init --copy-chunker-params, copy, check --read-data, restore", needs=BACKUP2)
def _() -> None:
    if not ep.https_url:
        raise Skip("no https endpoint")
    (W / "from-password").write_text(ENV["RESTIC_PASSWORD"])
    tls = ["-r", f"s3:{ep.https_url}/{TB}/offsite"]
    trust = ["--cacert", ep.ca_bundle] if ep.ca_bundle else ["--insecure-tls"]
    source = ["--from-repo", ENV["RESTIC_REPOSITORY"], "--from-password-file", str(W / "from-password")]
    if ep.ca_bundle:
        # The self-signed certificate is refused without it: the verification is real.
        out = restic(*tls, "snapshots", check=False)
        expect(out.returncode != 0 and "x509" in out.stderr, f"without --cacert: exit {out.returncode}\n{out.stderr[-600:]}")
    restic(*tls, *trust, "init", "--copy-chunker-params", *source)
    # An offsite copy: every snapshot of the first repository, read over http, written over https.
    restic(*tls, *trust, "copy", *source, timeout=600)
    original, copied = restic_json("snapshots"), restic_json(*tls, *trust, "snapshots")
    assert isinstance(original, list) and isinstance(copied, list)
    # A copy is a new snapshot (its own id) of the same tree.
    expect_equal(sorted(str(c["tree"]) for c in copied), sorted(str(c["tree"]) for c in original),
                 "trees of the copied snapshots")
    out = restic(*tls, *trust, "check", "--read-data", timeout=600)
    expect("no errors were found" in out.stdout, f"check output:\n{out.stdout[-1500:]}")
    target = W / "restore-tls"
    restic(*tls, *trust, "restore", "latest", "--target", str(target), timeout=600)
    diff_trees(tree_digest(target / SRC.relative_to(SRC.anchor)), tree_digest(SRC), "restored over https")
    shutil.rmtree(target)


def lock_files() -> list[str]:
    return sorted(restic("list", "locks", "--no-lock").stdout.split())


@rec.step("locks: a live lock blocks prune and survives unlock; a stale one is removed", needs=INIT)
def _() -> None:
    expect_equal(objects("locks"), {}, "locks/ objects before")
    # A backup from stdin holds its (shared) lock while it waits for input.
    holder = subprocess.Popen(["restic", "backup", "--host", "conformance", "--stdin", "--stdin-filename", "held.txt"],
                              env={**os.environ, **ENV}, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not objects("locks") and time.monotonic() < deadline and holder.poll() is None:
            time.sleep(0.1)
        held = objects("locks")
        expect_equal(len(held), 1, "lock objects while a backup runs")
        expect_equal(lock_files(), sorted(held), "restic list locks vs locks/ objects")
        out = restic("prune", check=False)
        expect(out.returncode != 0 and "already locked" in out.stderr,
               f"prune under a live lock: exit {out.returncode}\n{out.stderr[-800:]}")
        restic("unlock")
        expect_equal(sorted(objects("locks")), sorted(held), "a live lock after unlock")
        holder.kill()  # as a crash would: the lock file stays behind
        holder.wait(10)
        expect_equal(sorted(objects("locks")), sorted(held), "the lock after its holder died")
        out = restic("unlock")
        expect("successfully removed" in out.stdout + out.stderr, f"unlock output: {out.stdout} {out.stderr}")
        expect_equal(objects("locks"), {}, "locks/ objects after unlock")
        expect_equal(lock_files(), [], "restic list locks after unlock")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


@rec.step("remove the repository and the bucket (boto3)", needs=INIT)
def _() -> None:
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B)
            for o in page.get("Contents", [])]
    for i in range(0, len(keys), 1000):
        r = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
        expect_equal(r.get("Errors", []), [], "delete_objects errors")
    s3.delete_bucket(Bucket=B)
    out = restic("snapshots", check=False)
    expect(out.returncode != 0, "restic still finds a repository in a deleted bucket")
    if ep.https_url:
        tls3 = boto3.client("s3", endpoint_url=ep.https_url, aws_access_key_id=ep.access_key,
                            aws_secret_access_key=ep.secret_key, region_name=ep.region, verify=ep.ca_bundle or False,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        if TB in [b["Name"] for b in tls3.list_buckets()["Buckets"]]:
            for page in tls3.get_paginator("list_objects_v2").paginate(Bucket=TB):
                objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objs:
                    expect_equal(tls3.delete_objects(Bucket=TB, Delete={"Objects": objs}).get("Errors", []), [],
                                 "delete_objects errors (https bucket)")
            tls3.delete_bucket(Bucket=TB)
