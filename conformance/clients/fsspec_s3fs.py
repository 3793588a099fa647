"""fsspec's s3fs (aiobotocore underneath): the file-system API that pandas, dask and friends use."""

from __future__ import annotations

import hashlib
import os
import random

import s3fs

from conformance.clients.common import Endpoint, MiB, Recorder, expect, expect_equal

ep = Endpoint.from_env()
rec = Recorder("fsspec-s3fs")
rec.version(f"s3fs {s3fs.__version__}")
B = ep.bucket("fsspec")
# No region_name in client_kwargs: s3fs would send it as a LocationConstraint on mkdir, and
# us-east-1 is the one region AWS refuses there (InvalidLocationConstraint).
os.environ["AWS_DEFAULT_REGION"] = ep.region
fs = s3fs.S3FileSystem(
    key=ep.access_key,
    secret=ep.secret_key,
    endpoint_url=ep.url,
    config_kwargs={"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}},
    use_listings_cache=False,  # every ls must ask the server, or we would test a cache
)
rng = random.Random(99)


@rec.step("mkdir (bucket)")
def _() -> None:
    fs.mkdir(B)
    expect(B in [p.rstrip("/") for p in fs.ls("")], "bucket not listed")


M = ["mkdir (bucket)"]
FILES = {f"{B}/data/a.csv": b"x,y\n1,2\n", f"{B}/data/b.csv": b"x,y\n3,4\n",
         f"{B}/data/sub/c.json": b'{"k": 1}\n', f"{B}/top.txt": b"top\n"}


@rec.step("open/write + read", needs=M)
def _() -> None:
    for path, data in FILES.items():
        with fs.open(path, "wb") as f:
            f.write(data)
    for path, data in FILES.items():
        with fs.open(path, "rb") as f:
            expect_equal(f.read(), data, f"bytes of {path}")
    expect_equal(fs.cat_file(f"{B}/data/a.csv", start=2, end=6), FILES[f"{B}/data/a.csv"][2:6], "ranged cat_file")
    with fs.open(f"{B}/text.txt", "w", encoding="utf-8") as f:
        f.write("text mode \u00e9\n")
    expect_equal(fs.open(f"{B}/text.txt", "r", encoding="utf-8").read(), "text mode \u00e9\n", "text round trip")


@rec.step("write 12 MiB in blocks (multipart) + seek/read", needs=M)
def _() -> None:
    data = rng.randbytes(12 * MiB)
    with fs.open(f"{B}/big.bin", "wb", block_size=5 * MiB) as f:
        for i in range(0, len(data), MiB):
            f.write(data[i:i + MiB])
    info = fs.info(f"{B}/big.bin")
    expect_equal(info["size"], len(data), "size")
    with fs.open(f"{B}/big.bin", "rb", block_size=2 * MiB) as f:
        f.seek(7 * MiB + 3)
        expect_equal(f.read(100), data[7 * MiB + 3:7 * MiB + 103], "bytes after seek")
    expect_equal(hashlib.md5(fs.cat_file(f"{B}/big.bin")).hexdigest(), hashlib.md5(data).hexdigest(), "md5")


@rec.step("ls", needs=["open/write + read"])
def _() -> None:
    expect_equal(sorted(fs.ls(f"{B}/data", detail=False)), [f"{B}/data/a.csv", f"{B}/data/b.csv", f"{B}/data/sub"], "ls data")
    detail = {d["name"]: d for d in fs.ls(f"{B}/data", detail=True)}
    expect_equal(detail[f"{B}/data/a.csv"]["size"], 8, "size in ls detail")
    expect_equal(detail[f"{B}/data/sub"]["type"], "directory", "type of sub")


@rec.step("find", needs=["open/write + read"])
def _() -> None:
    expect_equal(sorted(fs.find(f"{B}/data")), sorted(k for k in FILES if "/data/" in k), "find")
    expect(fs.exists(f"{B}/data/sub") and fs.isdir(f"{B}/data/sub"), "data/sub not a directory")
    expect(not fs.exists(f"{B}/nothing-here"), "exists() of a missing key")


@rec.step("glob", needs=["open/write + read"])
def _() -> None:
    expect_equal(sorted(fs.glob(f"{B}/data/*.csv")), [f"{B}/data/a.csv", f"{B}/data/b.csv"], "glob *.csv")
    expect_equal(sorted(fs.glob(f"{B}/**/*.json")), [f"{B}/data/sub/c.json"], "glob **/*.json")


@rec.step("copy, mv", needs=["open/write + read"])
def _() -> None:
    fs.copy(f"{B}/top.txt", f"{B}/copy/top.txt")
    fs.mv(f"{B}/copy/top.txt", f"{B}/moved/top.txt")
    expect_equal(fs.cat_file(f"{B}/moved/top.txt"), b"top\n", "moved bytes")
    expect(not fs.exists(f"{B}/copy/top.txt"), "mv left the source behind")


@rec.step("rm (file, recursive, bucket)", needs=M)
def _() -> None:
    fs.rm(f"{B}/top.txt")
    expect(not fs.exists(f"{B}/top.txt"), "top.txt still exists")
    fs.rm(f"{B}/data", recursive=True)
    expect_equal(fs.find(f"{B}/data"), [], "data after rm -r")
    fs.rm(B, recursive=True)
    fs.invalidate_cache()
    expect(B not in [p.rstrip("/") for p in fs.ls("")], "bucket still listed")
