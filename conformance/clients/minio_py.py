"""minio-py: MinIO's Python SDK (its own SigV4 signer and multipart logic, not botocore)."""

from __future__ import annotations

import io
from datetime import timedelta

import minio
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject

from conformance.clients.common import (
    Endpoint,
    MiB,
    Recorder,
    expect,
    expect_equal,
    make_file,
    md5_file,
)

ep = Endpoint.from_env()
rec = Recorder("minio-py")
rec.version(f"minio {minio.__version__}")
W = ep.workdir
B = ep.bucket("minio-py")
# No retries: minio's default pool retries 5xx, which would hide a server error.
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=10, read=120))
mc = Minio(ep.hostport, access_key=ep.access_key, secret_key=ep.secret_key, secure=ep.url.startswith("https"),
           region=ep.region, http_client=http)


@rec.step("make_bucket / bucket_exists")
def _() -> None:
    mc.make_bucket(B)
    expect(mc.bucket_exists(B), "bucket_exists is False")
    expect(not mc.bucket_exists(B + "-missing"), "bucket_exists of a missing bucket is True")


M = ["make_bucket / bucket_exists"]
DATA = {f"obj/{i}/item-{i}.txt": f"object {i}\n".encode() * (i + 1) for i in range(6)}


@rec.step("put_object / get_object", needs=M)
def _() -> None:
    for key, data in DATA.items():
        mc.put_object(B, key, io.BytesIO(data), len(data), content_type="text/plain",
                      metadata={"x-amz-meta-origin": "minio-py"})
    r = mc.get_object(B, "obj/3/item-3.txt")
    try:
        expect_equal(r.read(), DATA["obj/3/item-3.txt"], "bytes")
    finally:
        r.close()
        r.release_conn()
    r = mc.get_object(B, "obj/5/item-5.txt", offset=2, length=5)
    try:
        expect_equal(r.read(), DATA["obj/5/item-5.txt"][2:7], "ranged bytes")
    finally:
        r.close()
        r.release_conn()


@rec.step("put_object with unknown length (streamed multipart)", needs=M)
def _() -> None:
    data = bytes(range(256)) * (6 * MiB // 256 + 7)
    mc.put_object(B, "stream.bin", io.BytesIO(data), length=-1, part_size=5 * MiB)
    r = mc.get_object(B, "stream.bin")
    try:
        expect_equal(r.read(), data, "bytes")
    finally:
        r.close()
        r.release_conn()


@rec.step("stat_object", needs=["put_object / get_object"])
def _() -> None:
    st = mc.stat_object(B, "obj/2/item-2.txt")
    expect_equal(st.size, len(DATA["obj/2/item-2.txt"]), "size")
    expect_equal(st.content_type, "text/plain", "content_type")
    meta = {k.lower(): v for k, v in (st.metadata or {}).items()}
    expect_equal(meta.get("x-amz-meta-origin"), "minio-py", f"user metadata in {dict(meta)}")
    expect(st.etag is not None and len(st.etag) == 32, f"etag {st.etag}")


@rec.step("list_objects recursive / non-recursive", needs=["put_object / get_object"])
def _() -> None:
    keys = [o.object_name for o in mc.list_objects(B, prefix="obj/", recursive=True)]
    expect_equal(keys, sorted(DATA), "recursive listing")
    top = [(o.object_name, o.is_dir) for o in mc.list_objects(B, prefix="obj/")]
    expect_equal(top, [(f"obj/{i}/", True) for i in range(6)], "non-recursive listing")
    v1 = [o.object_name for o in mc.list_objects(B, prefix="obj/", recursive=True, use_api_v1=True)]
    expect_equal(v1, sorted(DATA), "ListObjects v1")


@rec.step("presigned_get_object", needs=["put_object / get_object"])
def _() -> None:
    url = mc.presigned_get_object(B, "obj/1/item-1.txt", expires=timedelta(minutes=5))
    r = http.request("GET", url)
    expect_equal((r.status, r.data), (200, DATA["obj/1/item-1.txt"]), "presigned GET")


@rec.step("fput_object / fget_object 70 MiB", needs=M)
def _() -> None:
    src = W / "big.bin"
    want = make_file(src, 70 * MiB, seed=70)
    mc.fput_object(B, "big.bin", str(src))
    st = mc.stat_object(B, "big.bin")
    expect_equal(st.size, 70 * MiB, "size")
    expect(st.etag is not None and "-" in st.etag, f"expected a multipart ETag, got {st.etag}")
    dst = W / "big.down"
    mc.fget_object(B, "big.bin", str(dst))
    expect_equal(md5_file(dst), want, "md5 after round trip")
    src.unlink()
    dst.unlink()


@rec.step("remove_objects / remove_bucket", needs=M)
def _() -> None:
    names = [o.object_name for o in mc.list_objects(B, recursive=True)]
    # remove_objects is lazy: the errors iterator must be consumed for anything to happen.
    errs = list(mc.remove_objects(B, [DeleteObject(n) for n in names]))
    expect_equal(errs, [], "remove_objects errors")
    expect_equal(list(mc.list_objects(B, recursive=True)), [], "objects left")
    mc.remove_bucket(B)
    expect(not mc.bucket_exists(B), "bucket still exists")
