"""The Rust ``object_store`` crate (Apache Arrow's; under polars, delta-rs, DataFusion and many Rust
services): its own reqwest/hyper HTTP stack, SigV4 signer, multipart writer and conditional-write
protocol, driven through ``obstore`` (its maintained Python binding) and through polars' s3://
Parquet reads and writes, the way a data pipeline or a table format's commit log uses them.

object_store has no bucket API, so boto3 creates and removes the buckets."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import random
import re
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import boto3
import botocore.config
import obstore as obs
import polars as pl
from obstore.exceptions import AlreadyExistsError, NotModifiedError, PreconditionError
from obstore.store import S3Store

from conformance.clients.common import Endpoint, MiB, Recorder, Skip, StepFailed, expect, expect_equal

ep = Endpoint.from_env()
W = ep.workdir
rec = Recorder("object_store")


def crate_version() -> str:
    """The object_store crate inside obstore's extension (its source paths name the version)."""
    for lib in Path(obs.__file__).parent.glob("_obstore*.so"):
        if m := re.search(rb"object_store-(\d+\.\d+\.\d+)", lib.read_bytes()):
            return f" (object_store {m.group(1).decode()})"
    return ""


rec.version(f"obstore {version('obstore')}{crate_version()} / polars {pl.__version__}")
B = ep.bucket("objstore")
rng = random.Random(2024)

# One try: a failing request is reported rather than retried into a pass.
RETRY = {"max_retries": 0, "retry_timeout": datetime.timedelta(seconds=60)}


def store_for(url: str, bucket: str, vhost: bool = False, **config: object) -> S3Store:
    """Explicit static credentials, region and endpoint: object_store then never looks for
    credentials elsewhere (environment, web identity, ECS, EC2 instance metadata)."""
    client = {"allow_http": url.startswith("http://"), "timeout": "120s", "connect_timeout": "10s"}
    client.update(config.pop("client_options", {}))  # type: ignore[arg-type]
    return S3Store(
        bucket,
        endpoint=url,
        access_key_id=ep.access_key,
        secret_access_key=ep.secret_key,
        region=ep.region,
        virtual_hosted_style_request=vhost,
        skip_signature=False,
        client_options=client,  # type: ignore[arg-type]
        retry_config=RETRY,  # type: ignore[arg-type]
        **config,  # type: ignore[arg-type]
    )


def admin_for(url: str, **extra: object):
    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=ep.access_key, aws_secret_access_key=ep.secret_key,
        region_name=ep.region,
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}), **extra,
    )


store = store_for(ep.url, B)
# The mode object_store documents for native S3: CreateMultipartUpload, UploadPartCopy, then
# CompleteMultipartUpload with If-None-Match: * (S3 answers 412 when the destination exists).
cstore = store_for(ep.url, B, copy_if_not_exists="multipart")
admin = admin_for(ep.url)
# polars hands these to its own object_store client.
POLARS_OPTIONS = {
    "aws_endpoint_url": ep.url, "aws_access_key_id": ep.access_key, "aws_secret_access_key": ep.secret_key,
    "aws_region": ep.region, "aws_allow_http": "true", "aws_virtual_hosted_style_request": "false",
    "max_retries": 0,
}


def get_bytes(path: str, s: S3Store = store) -> bytes:
    return bytes(obs.get(s, path).bytes())


def etag_parts(etag: str | None) -> int:
    e = (etag or "").strip('"')
    return int(e.rpartition("-")[2]) if "-" in e else 1


def no_uploads_left(bucket: str, client=admin) -> None:
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    expect_equal([(u["Key"], u["UploadId"]) for u in left], [], "multipart uploads left behind")


def make_bucket(client, bucket: str) -> None:
    client.create_bucket(Bucket=bucket)
    client.head_bucket(Bucket=bucket)


def drop_bucket(s: S3Store, client, bucket: str) -> None:
    """Empty the bucket through object_store (list + bulk DeleteObjects), then remove it."""
    paths = [m["path"] for chunk in obs.list(s) for m in chunk]
    if paths:
        obs.delete(s, paths)
    expect_equal(obs.list(s).collect(), [], f"{bucket} after deleting everything")
    client.delete_bucket(Bucket=bucket)


@rec.step("create bucket (boto3: object_store has no bucket API)")
def _() -> None:
    make_bucket(admin, B)


MB = ["create bucket (boto3: object_store has no bucket API)"]
SMALL = {
    "data/a.csv": b"x,y\n1,2\n",
    "data/b.csv": b"x,y\n3,4\n",
    "data/sub/c.json": b'{"k": 1}\n',
    "data/sub/deeper/d.bin": bytes(range(256)),
    "data/with space/\u00e9t\u00e9+%.txt": "\u00e9t\u00e9: non-ASCII, space, plus and percent\n".encode(),
    "top.txt": b"top\n",
}


@rec.step("put + get small objects (attributes, tags)", needs=MB)
def _() -> None:
    for path, data in SMALL.items():
        r = obs.put(store, path, data)
        expect_equal(r["e_tag"], f'"{hashlib.md5(data).hexdigest()}"', f"ETag from the PUT of {path}")
    for path, data in SMALL.items():
        expect_equal(get_bytes(path), data, f"bytes of {path}")
    attrs = {"Content-Type": "text/csv", "Cache-Control": "max-age=60", "Content-Disposition": "inline",
             "Content-Language": "en", "owner": "team-a"}
    obs.put(store, "attrs.csv", b"a,b\n", attributes=attrs, tags={"team": "a b", "tier": "x/y"})
    got = obs.get(store, "attrs.csv")
    expect_equal(bytes(got.bytes()), b"a,b\n", "bytes of attrs.csv")
    expect_equal(dict(got.attributes), attrs, "attributes (Content-* headers and x-amz-meta-owner)")
    tags = admin.get_object_tagging(Bucket=B, Key="attrs.csv")["TagSet"]
    expect_equal(sorted((t["Key"], t["Value"]) for t in tags), [("team", "a b"), ("tier", "x/y")],
                 "tags sent as x-amz-tagging")
    expect_equal(admin.head_object(Bucket=B, Key="attrs.csv")["Metadata"], {"owner": "team-a"}, "user metadata")
    # An empty object is a single PUT with no body.
    obs.put(store, "empty", b"")
    expect_equal(get_bytes("empty"), b"", "bytes of an empty object")
    expect_equal(obs.head(store, "empty")["size"], 0, "size of an empty object")


PUT = ["put + get small objects (attributes, tags)"]
BIG_DATA = rng.randbytes(12 * MiB + 4321)
BIG = "big/12MiB.bin"


@rec.step("put 12 MiB from a file (multipart, 5 MiB parts) + streamed get", needs=MB)
def _() -> None:
    src = W / "big.bin"
    src.write_bytes(BIG_DATA)
    r = obs.put(store, BIG, Path(src), chunk_size=5 * MiB, max_concurrency=4)
    expect_equal(etag_parts(r["e_tag"]), 3, f"parts behind the ETag {r['e_tag']}")
    meta = obs.head(store, BIG)
    expect_equal((meta["size"], meta["e_tag"]), (len(BIG_DATA), r["e_tag"]), "size and ETag from HEAD")
    got = obs.get(store, BIG)
    h = hashlib.md5()
    chunks = 0
    for chunk in got.stream(min_chunk_size=MiB):
        h.update(bytes(chunk))
        chunks += 1
    expect_equal(h.hexdigest(), hashlib.md5(BIG_DATA).hexdigest(), "md5 of the streamed GET")
    expect(chunks > 1, "the GET was not streamed in chunks")
    no_uploads_left(B)


@rec.step("open_writer 13 MiB in 1 MiB writes (buffered multipart writer)", needs=MB)
def _() -> None:
    data = rng.randbytes(13 * MiB + 7)
    with obs.open_writer(store, "big/writer.bin", buffer_size=5 * MiB, max_concurrency=3,
                         attributes={"Content-Type": "application/x-test"}) as f:
        for i in range(0, len(data), MiB):
            f.write(data[i:i + MiB])
    meta = obs.head(store, "big/writer.bin")
    expect_equal(meta["size"], len(data), "size")
    expect(etag_parts(meta["e_tag"]) >= 2, f"not a multipart upload: ETag {meta['e_tag']}")
    got = obs.get(store, "big/writer.bin")
    expect_equal(got.attributes.get("Content-Type"), "application/x-test", "Content-Type given to CreateMultipartUpload")
    expect_equal(hashlib.md5(bytes(got.bytes())).hexdigest(), hashlib.md5(data).hexdigest(), "md5")
    # A small write through the same writer is one plain PUT.
    with obs.open_writer(store, "big/small-writer.txt") as f:
        f.write(b"only ")
        f.write(b"a little")
    expect_equal(get_bytes("big/small-writer.txt"), b"only a little", "small writer bytes")
    expect_equal(etag_parts(obs.head(store, "big/small-writer.txt")["e_tag"]), 1, "small writer: one PUT")
    no_uploads_left(B)


BIGS = ["put 12 MiB from a file (multipart, 5 MiB parts) + streamed get"]


@rec.step("ranged gets (get_range, get_ranges, offset, suffix, open_reader seek)", needs=BIGS)
def _() -> None:
    expect_equal(bytes(obs.get_range(store, BIG, start=5 * MiB - 10, end=5 * MiB + 10)),
                 BIG_DATA[5 * MiB - 10:5 * MiB + 10], "get_range across a part boundary")
    expect_equal(bytes(obs.get_range(store, BIG, start=100, length=1)), BIG_DATA[100:101], "one byte")
    spans = [(0, 10), (3 * MiB, 3 * MiB + 4096), (len(BIG_DATA) - 7, len(BIG_DATA))]
    got = obs.get_ranges(store, BIG, starts=[s for s, _ in spans], ends=[e for _, e in spans])
    expect_equal([bytes(g) for g in got], [BIG_DATA[s:e] for s, e in spans], "get_ranges")
    r = obs.get(store, BIG, options={"range": {"offset": len(BIG_DATA) - 100}})
    expect_equal((bytes(r.bytes()), r.range), (BIG_DATA[-100:], (len(BIG_DATA) - 100, len(BIG_DATA))),
                 "range {offset} (bytes=N-)")
    r = obs.get(store, BIG, options={"range": {"suffix": 33}})
    expect_equal((bytes(r.bytes()), r.range), (BIG_DATA[-33:], (len(BIG_DATA) - 33, len(BIG_DATA))),
                 "range {suffix} (bytes=-N)")
    r = obs.get(store, "top.txt", options={"range": (1, 100)})
    expect_equal(bytes(r.bytes()), b"op\n", "a range past the end is cut to the object")
    f = obs.open_reader(store, BIG, buffer_size=MiB)
    try:
        expect_equal(f.size, len(BIG_DATA), "open_reader size")
        f.seek(7 * MiB + 3)
        expect_equal(bytes(f.read(100)), BIG_DATA[7 * MiB + 3:7 * MiB + 103], "read after seek")
        f.seek(-5, 2)
        expect_equal(bytes(f.read()), BIG_DATA[-5:], "read after seek from the end")
    finally:
        f.close()
    try:
        obs.get_range(store, "top.txt", start=10, end=20)
    except Exception as e:  # noqa: BLE001 - object_store's error for 416 is a generic one
        expect("416" in str(e) or "range" in str(e).lower(), f"unexpected error for a range past the end: {e}")
    else:
        raise StepFailed("a range starting past the end of the object was served")


@rec.step("head (size, ETag, last_modified) + missing objects", needs=PUT)
def _() -> None:
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    meta = obs.head(store, "data/a.csv")
    expect_equal(meta["path"], "data/a.csv", "path")
    expect_equal(meta["size"], 8, "size")
    expect_equal(meta["e_tag"], f'"{hashlib.md5(SMALL["data/a.csv"]).hexdigest()}"', "ETag")
    expect(before < meta["last_modified"] < datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1),
           f"last_modified {meta['last_modified']}")
    for fn in (lambda: obs.head(store, "data/missing.csv"), lambda: obs.get(store, "data/missing.csv"),
               lambda: obs.head(store_for(ep.url, ep.bucket("no-such-bucket")), "x")):
        try:
            fn()
        except FileNotFoundError:
            pass
        else:
            raise StepFailed("a missing object or bucket did not raise FileNotFoundError")


@rec.step("conditional get (if_match, if_none_match, if_modified_since)", needs=PUT)
def _() -> None:
    meta = obs.head(store, "data/b.csv")
    etag = meta["e_tag"]
    assert etag is not None
    expect_equal(bytes(obs.get(store, "data/b.csv", options={"if_match": etag}).bytes()), SMALL["data/b.csv"],
                 "If-Match with the current ETag")
    for opts, exc in (({"if_match": '"0123456789abcdef0123456789abcdef"'}, PreconditionError),
                      ({"if_none_match": etag}, NotModifiedError),
                      # Not modified since its own Last-Modified (a date in the future S3 ignores).
                      ({"if_modified_since": meta["last_modified"]}, NotModifiedError),
                      ({"if_unmodified_since": meta["last_modified"] - datetime.timedelta(seconds=5)},
                       PreconditionError)):
        try:
            obs.get(store, "data/b.csv", options=opts)  # type: ignore[arg-type]
        except exc:
            pass
        else:
            raise StepFailed(f"GET with {opts} did not raise {exc.__name__}")
    expect_equal(bytes(obs.get(store, "data/b.csv", options={"if_none_match": '"other"'}).bytes()),
                 SMALL["data/b.csv"], "If-None-Match with another ETag")
    earlier = {"if_modified_since": meta["last_modified"] - datetime.timedelta(seconds=5)}
    expect_equal(bytes(obs.get(store, "data/b.csv", options=earlier).bytes()),  # type: ignore[arg-type]
                 SMALL["data/b.csv"], "If-Modified-Since before its Last-Modified")
    head = obs.get(store, "data/b.csv", options={"head": True})
    expect_equal(head.meta["size"], len(SMALL["data/b.csv"]), "get(head=True) size")


MANY = [f"many/k{i:04d}" for i in range(1010)]


@rec.step("list (recursive, prefix by segment, offset; 1010 keys = 2 pages)", needs=PUT)
def _() -> None:
    async def put_many() -> None:
        sem = asyncio.Semaphore(16)

        async def one(k: str) -> None:
            async with sem:
                await obs.put_async(store, k, k.encode())

        await asyncio.gather(*(one(k) for k in MANY))

    asyncio.run(put_many())
    listed = [m["path"] for m in obs.list(store, "many", chunk_size=100).collect()]
    expect_equal(listed, MANY, "list of many/ (continuation tokens past 1000 keys)")
    data = {m["path"]: m for m in obs.list(store, "data").collect()}
    expect_equal(sorted(data), sorted(k for k in SMALL if k.startswith("data/")), "list of data/ (recursive)")
    for k, m in data.items():
        expect_equal((m["size"], m["e_tag"]), (len(SMALL[k]), f'"{hashlib.md5(SMALL[k]).hexdigest()}"'),
                     f"size and ETag of {k} in the listing")
    # Prefixes are whole path segments: "data/sub" lists data/sub/..., never a data/sub-other.
    obs.put(store, "data/sub-other.txt", b"!")
    expect_equal(sorted(m["path"] for m in obs.list(store, "data/sub").collect()),
                 ["data/sub/c.json", "data/sub/deeper/d.bin"], "list of data/sub (segment prefix)")
    obs.delete(store, "data/sub-other.txt")
    # offset is StartAfter: strictly after the given key.
    after = [m["path"] for m in obs.list(store, "many", offset="many/k1000").collect()]
    expect_equal(after, MANY[1001:], "list with offset (start-after)")
    everything = [m["path"] for m in obs.list(store).collect()]
    expect_equal(everything, sorted(everything), "the whole bucket's listing is in key order")
    expect(set(SMALL) | set(MANY) <= set(everything), "the whole bucket's listing misses keys")


LIST = ["list (recursive, prefix by segment, offset; 1010 keys = 2 pages)"]


@rec.step("list_with_delimiter (objects + common prefixes)", needs=PUT)
def _() -> None:
    r = obs.list_with_delimiter(store, "data")
    expect_equal(sorted(r["common_prefixes"]), ["data/sub", "data/with space"], "common prefixes of data/")
    expect_equal(sorted(m["path"] for m in r["objects"]), ["data/a.csv", "data/b.csv"], "objects of data/")
    r = obs.list_with_delimiter(store, "data/with space")
    expect_equal([m["path"] for m in r["objects"]], ["data/with space/\u00e9t\u00e9+%.txt"], "non-ASCII key listed")
    top = obs.list_with_delimiter(store)
    expect({"data", "big"} <= set(top["common_prefixes"]), f"top-level prefixes {top['common_prefixes']}")
    expect("top.txt" in [m["path"] for m in top["objects"]], "top.txt not among the top-level objects")
    expect_equal(obs.list_with_delimiter(store, "nothing-here"), {"common_prefixes": [], "objects": []},
                 "an empty prefix")


@rec.step("copy (CopyObject, overwrite)", needs=PUT)
def _() -> None:
    obs.copy(store, "data/a.csv", "copies/a.csv")
    expect_equal(get_bytes("copies/a.csv"), SMALL["data/a.csv"], "copied bytes")
    obs.copy(store, "data/b.csv", "copies/a.csv")
    expect_equal(get_bytes("copies/a.csv"), SMALL["data/b.csv"], "bytes after a copy over it")
    expect_equal(get_bytes("data/a.csv"), SMALL["data/a.csv"], "the source is left as it was")
    try:
        obs.copy(store, "data/missing.csv", "copies/missing.csv")
    except FileNotFoundError:
        pass
    else:
        raise StepFailed("copying a missing object did not raise FileNotFoundError")


@rec.step("copy_if_not_exists (multipart: UploadPartCopy + Complete with If-None-Match: *)", needs=BIGS)
def _() -> None:
    obs.copy(cstore, "top.txt", "cine/top.txt", overwrite=False)
    expect_equal(get_bytes("cine/top.txt"), SMALL["top.txt"], "bytes copied to a new key")
    obs.copy(cstore, BIG, "cine/big.bin", overwrite=False)
    expect_equal(hashlib.md5(get_bytes("cine/big.bin")).digest(), hashlib.md5(BIG_DATA).digest(),
                 "12 MiB copied as one UploadPartCopy part")
    try:
        obs.copy(cstore, "data/a.csv", "cine/top.txt", overwrite=False)
    except AlreadyExistsError:
        pass
    else:
        raise StepFailed("copy_if_not_exists over an existing key did not raise AlreadyExistsError")
    expect_equal(get_bytes("cine/top.txt"), SMALL["top.txt"], "the existing destination is untouched")
    # object_store aborts the upload whose completion was refused.
    no_uploads_left(B)


@rec.step("put mode=create (If-None-Match: *)", needs=PUT)
def _() -> None:
    r = obs.put(store, "cond/create.txt", b"first", mode="create")
    expect_equal(r["e_tag"], f'"{hashlib.md5(b"first").hexdigest()}"', "ETag of the created object")
    try:
        obs.put(store, "cond/create.txt", b"second", mode="create")
    except AlreadyExistsError:
        pass
    else:
        raise StepFailed("put(mode='create') over an existing object did not raise AlreadyExistsError")
    expect_equal(get_bytes("cond/create.txt"), b"first", "bytes after the refused create")


@rec.step("put mode=update (If-Match: ETag)", needs=PUT)
def _() -> None:
    v1 = obs.put(store, "cond/update.txt", b"v1")
    v2 = obs.put(store, "cond/update.txt", b"v2", mode={"e_tag": v1["e_tag"]})
    expect_equal(get_bytes("cond/update.txt"), b"v2", "bytes after the update")
    try:
        obs.put(store, "cond/update.txt", b"stale", mode={"e_tag": v1["e_tag"]})
    except PreconditionError:
        pass
    else:
        raise StepFailed("put(mode=update) with a stale ETag did not raise PreconditionError")
    expect_equal(get_bytes("cond/update.txt"), b"v2", "bytes after the refused update")
    # S3 answers 404 for If-Match on a missing key; object_store turns it into a precondition error.
    try:
        obs.put(store, "cond/never-written.txt", b"x", mode={"e_tag": v2["e_tag"]})
    except PreconditionError:
        pass
    else:
        raise StepFailed("put(mode=update) of a missing object did not raise PreconditionError")
    try:
        obs.head(store, "cond/never-written.txt")
    except FileNotFoundError:
        pass
    else:
        raise StepFailed("the refused update created the object")


@rec.step("racing writers: 8 creates and 8 updates, exactly one of each wins", needs=PUT)
def _() -> None:
    """What a table format's commit does (delta-rs writes _delta_log/N.json with PutMode::Create;
    others swap a pointer object with PutMode::Update): of concurrent writers, one wins."""
    base = obs.put(store, "cond/pointer", b"base")

    async def race() -> tuple[list[object], list[object]]:
        creates = await asyncio.gather(*(obs.put_async(store, "cond/_log/00000000000000000001.json",
                                                       f"writer {i}".encode(), mode="create") for i in range(8)),
                                       return_exceptions=True)
        updates = await asyncio.gather(*(obs.put_async(store, "cond/pointer", f"update {i}".encode(),
                                                       mode={"e_tag": base["e_tag"]}) for i in range(8)),
                                       return_exceptions=True)
        return creates, updates

    creates, updates = asyncio.run(race())
    for what, results, loser, path, prefix in (
        ("create", creates, AlreadyExistsError, "cond/_log/00000000000000000001.json", "writer"),
        ("update", updates, PreconditionError, "cond/pointer", "update"),
    ):
        won = [i for i, r in enumerate(results) if isinstance(r, dict)]
        other = [r for r in results if not isinstance(r, (dict, loser))]
        expect_equal(other, [], f"racing {what}s: errors other than {loser.__name__}")
        expect_equal(len(won), 1, f"racing {what}s that succeeded")
        expect_equal(get_bytes(path), f"{prefix} {won[0]}".encode(), f"bytes of {path}: the winner's")


@rec.step("rename (copy + delete; overwrite=False through copy_if_not_exists)", needs=PUT)
def _() -> None:
    obs.put(store, "mv/src.txt", b"moving")
    obs.rename(store, "mv/src.txt", "mv/dst.txt")
    expect_equal(get_bytes("mv/dst.txt"), b"moving", "bytes at the destination")
    try:
        obs.head(store, "mv/src.txt")
    except FileNotFoundError:
        pass
    else:
        raise StepFailed("rename left the source behind")
    obs.put(store, "mv/src2.txt", b"second")
    try:
        obs.rename(cstore, "mv/src2.txt", "mv/dst.txt", overwrite=False)
    except AlreadyExistsError:
        pass
    else:
        raise StepFailed("rename(overwrite=False) over an existing key did not raise AlreadyExistsError")
    expect_equal((get_bytes("mv/src2.txt"), get_bytes("mv/dst.txt")), (b"second", b"moving"),
                 "source and destination after the refused rename")
    obs.rename(cstore, "mv/src2.txt", "mv/dst2.txt", overwrite=False)
    expect_equal(sorted(m["path"] for m in obs.list(store, "mv").collect()), ["mv/dst.txt", "mv/dst2.txt"],
                 "mv/ after the renames")


@rec.step("delete (single, missing, bulk DeleteObjects of 1010 keys)", needs=LIST)
def _() -> None:
    obs.delete(store, "top.txt")
    try:
        obs.head(store, "top.txt")
    except FileNotFoundError:
        pass
    else:
        raise StepFailed("top.txt still there after delete")
    obs.delete(store, "top.txt")  # S3 answers 204 for a missing key, and so no error
    obs.delete(store, MANY)  # POST ?delete in chunks of 1000
    expect_equal(obs.list(store, "many").collect(), [], "many/ after the bulk delete")


@rec.step("presigned URLs (sign GET/PUT) used with urllib", needs=PUT)
def _() -> None:
    put_url = obs.sign(store, "PUT", "signed/up.txt", datetime.timedelta(minutes=5))
    req = urllib.request.Request(put_url, data=b"through a presigned PUT", method="PUT")
    with urllib.request.urlopen(req, timeout=30) as resp:
        expect_equal(resp.status, 200, "presigned PUT status")
    expect_equal(get_bytes("signed/up.txt"), b"through a presigned PUT", "bytes of the presigned PUT")
    get_url = obs.sign(store, "GET", "data/with space/\u00e9t\u00e9+%.txt", datetime.timedelta(minutes=5))
    with urllib.request.urlopen(get_url, timeout=30) as resp:
        expect_equal(resp.read(), SMALL["data/with space/\u00e9t\u00e9+%.txt"], "bytes of the presigned GET")
    tampered = get_url.replace("X-Amz-Expires=300", "X-Amz-Expires=301")
    try:
        urllib.request.urlopen(tampered, timeout=30)
    except urllib.error.HTTPError as e:
        expect_equal(e.code, 403, "status of a tampered presigned URL")
    else:
        raise StepFailed("a tampered presigned URL was accepted")


# -- polars ----------------------------------------------------------------------------------------
N = 20000
DF = pl.DataFrame({
    "id": pl.Series(range(N), dtype=pl.Int64),
    "year": [2021 + i % 3 for i in range(N)],
    "region": [("eu", "us")[(i // 3) % 2] for i in range(N)],
    "value": [rng.random() for _ in range(N)],
    "note": [f"row {i} " + "x" * rng.randint(0, 40) for i in range(N)],
})
PQ = f"s3://{B}/polars/events.parquet"


def pl_kwargs() -> dict[str, object]:
    # credential_provider=None: no Python-side credential chain (boto3 is installed); the keys
    # in storage_options go straight to object_store.
    return {"storage_options": POLARS_OPTIONS, "credential_provider": None}


@rec.step("polars write_parquet to s3 + read back (frame equal)", needs=MB)
def _() -> None:
    DF.write_parquet(PQ, row_group_size=2000, **pl_kwargs())  # type: ignore[arg-type]
    meta = obs.head(store, "polars/events.parquet")
    expect(meta["size"] > 100_000, f"Parquet object of {meta['size']} bytes")
    expect_equal(get_bytes("polars/events.parquet")[:4], b"PAR1", "Parquet magic")
    back = pl.read_parquet(PQ, **pl_kwargs())  # type: ignore[arg-type]
    expect(back.equals(DF), f"frame read back differs: {back.shape} vs {DF.shape}")


PL = ["polars write_parquet to s3 + read back (frame equal)"]


@rec.step("polars scan_parquet + filter + projection (ranged GETs)", needs=PL)
def _() -> None:
    lf = pl.scan_parquet(PQ, **pl_kwargs())  # type: ignore[arg-type]
    got = lf.filter((pl.col("year") == 2022) & (pl.col("value") > 0.5)).select("id", "value").collect()
    want = DF.filter((pl.col("year") == 2022) & (pl.col("value") > 0.5)).select("id", "value")
    expect(got.equals(want), f"filtered frame differs: {got.shape} vs {want.shape}")
    agg = lf.group_by("region").agg(pl.len().alias("n")).sort("region").collect()
    expect_equal(agg.rows(), DF.group_by("region").agg(pl.len().alias("n")).sort("region").rows(), "group_by counts")
    expect_equal(lf.select(pl.len()).collect().item(), N, "row count from the footer")
    expect_equal(lf.collect_schema().names(), DF.columns, "schema")


@rec.step("polars hive-partitioned write (partition_by) + glob scan of one partition", needs=MB)
def _() -> None:
    root = f"s3://{B}/polars/hive/"
    DF.write_parquet(root, partition_by=["year", "region"], **pl_kwargs())  # type: ignore[arg-type]
    keys = sorted(m["path"] for m in obs.list(store, "polars/hive").collect())
    leaves = sorted({k.rsplit("/", 1)[0] for k in keys})
    expect_equal(leaves, [f"polars/hive/year={y}/region={r}" for y in (2021, 2022, 2023) for r in ("eu", "us")],
                 "partition directories")
    whole = pl.read_parquet(root, hive_partitioning=True, **pl_kwargs())  # type: ignore[arg-type]
    expect(whole.select(DF.columns).sort("id").equals(DF), "whole partitioned data set differs")
    part = (pl.scan_parquet(f"s3://{B}/polars/hive/**/*.parquet", hive_partitioning=True,
                            **pl_kwargs())  # type: ignore[arg-type]
            .filter((pl.col("year") == 2023) & (pl.col("region") == "eu")).select("id", "note").collect())
    want = DF.filter((pl.col("year") == 2023) & (pl.col("region") == "eu")).select("id", "note")
    expect(part.sort("id").equals(want), f"one partition differs: {part.shape} vs {want.shape}")


# -- other endpoints ---------------------------------------------------------------------------------


def round_trip(s: S3Store, client, bucket: str) -> None:
    """Bucket, small put, 11 MiB multipart through the writer, list, ranged get, conditional
    create, copy, delete and bucket removal against one endpoint."""
    make_bucket(client, bucket)
    data = rng.randbytes(11 * MiB + 99)
    obs.put(s, "small.txt", b"small")
    with obs.open_writer(s, "dir/big.bin", buffer_size=5 * MiB, max_concurrency=3) as f:
        for i in range(0, len(data), MiB):
            f.write(data[i:i + MiB])
    expect_equal(etag_parts(obs.head(s, "dir/big.bin")["e_tag"]), 3, "parts of the 11 MiB upload")
    expect_equal(sorted((m["path"], m["size"]) for m in obs.list(s).collect()),
                 [("dir/big.bin", len(data)), ("small.txt", 5)], "listing")
    expect_equal(bytes(obs.get_range(s, "dir/big.bin", start=6 * MiB, end=6 * MiB + 999)),
                 data[6 * MiB:6 * MiB + 999], "ranged get")
    expect_equal(hashlib.md5(bytes(obs.get(s, "dir/big.bin").bytes())).digest(), hashlib.md5(data).digest(), "md5")
    try:
        obs.put(s, "small.txt", b"again", mode="create")
    except AlreadyExistsError:
        pass
    else:
        raise StepFailed("put(mode='create') over an existing object did not raise AlreadyExistsError")
    obs.copy(s, "small.txt", "dir/copy.txt")
    expect_equal(bytes(obs.get(s, "dir/copy.txt").bytes()), b"small", "copied bytes")
    drop_bucket(s, client, bucket)


@rec.step("--workers 2 server: multipart parts across workers + list + get")
def _() -> None:
    url = os.environ.get("CONF_WORKERS_ENDPOINT", "")
    if not url:
        raise Skip("no --workers endpoint")
    wb = ep.bucket("objstore-workers")
    round_trip(store_for(url, wb), admin_for(url), wb)


@rec.step("virtual-host style (virtual_hosted_style_request, through the loopback proxy)")
def _() -> None:
    if not (ep.vhost_url and ep.vhost_proxy):
        raise Skip("no virtual-host endpoint")
    vb = ep.bucket("objstore-vhost")
    scheme, _, hostport = ep.vhost_url.partition("://")
    # With virtual-host style the endpoint names the bucket's host itself.
    vs = store_for(f"{scheme}://{vb}.{hostport}", vb, vhost=True, client_options={"proxy_url": ep.vhost_proxy})
    round_trip(vs, admin_for(ep.vhost_url), vb)
    log = os.environ.get("CONF_VHOST_PROXY_LOG")
    if log and Path(log).exists():
        hosts = {line.split()[0].split(":")[0] for line in Path(log).read_text(encoding="utf-8").splitlines() if line}
        expect(f"{vb}.{ep.vhost_domain}" in hosts, f"no request with Host {vb}.{ep.vhost_domain}: saw {sorted(hosts)[:10]}")


@rec.step("https without verification (allow_invalid_certificates)")
def _() -> None:
    if not ep.https_url:
        raise Skip("no https endpoint")
    tb = ep.bucket("objstore-tls-noverify")
    ts = store_for(ep.https_url, tb, client_options={"allow_invalid_certificates": True})
    round_trip(ts, admin_for(ep.https_url, verify=ep.ca_bundle or False), tb)


@rec.step("https (root_certificate); refused without it")
def _() -> None:
    if not ep.https_url:
        raise Skip("no https endpoint")
    if not ep.ca_bundle:
        raise Skip("no CA bundle for the https endpoint")
    # rustls checks what OpenSSL lets pass: a server certificate made as a CA is refused
    # (CaUsedAsEndEntity) whatever the roots.
    pem = Path(ep.ca_bundle).read_bytes()
    tb = ep.bucket("objstore-tls")
    ts = store_for(ep.https_url, tb, client_options={"root_certificate": pem.decode()})
    round_trip(ts, admin_for(ep.https_url, verify=ep.ca_bundle), tb)
    try:
        obs.head(store_for(ep.https_url, tb), "x")
    except FileNotFoundError:
        raise StepFailed("the self-signed certificate was accepted without root_certificate") from None
    except Exception as e:  # noqa: BLE001 - a connection error, whatever its class
        expect("certificate" in str(e).lower(), f"unexpected error without the CA: {e}")
    else:
        raise StepFailed("the self-signed certificate was accepted without root_certificate")


@rec.step("empty and delete the bucket", needs=MB)
def _() -> None:
    drop_bucket(store, admin, B)
    expect(B not in [b["Name"] for b in admin.list_buckets()["Buckets"]], f"{B} still listed")
