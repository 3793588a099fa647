"""pyarrow's S3FileSystem: the AWS SDK for C++ (its own HTTP stack over libcurl, its own SigV4
signer and multipart logic) driven as a data pipeline drives it: Parquet datasets partitioned
over directories, filtered and projected reads, streams and whole-file operations."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import random

from conformance.clients.common import Endpoint, MiB, Recorder, Skip, StepFailed, expect, expect_equal

ep = Endpoint.from_env()
W = ep.workdir
# Nothing but the endpoint under test: no EC2 instance metadata lookups, no user's ~/.aws
# profile (region, endpoint, credentials) steering the SDK elsewhere.
(W / "aws-config").write_text("")
os.environ.update({
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": str(W / "aws-config"),
    "AWS_SHARED_CREDENTIALS_FILE": str(W / "aws-config"),
})

import pyarrow as pa  # noqa: E402 - after the environment above, which the SDK reads at init
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.fs as pafs  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

rec = Recorder("pyarrow")
rec.version(f"pyarrow {pa.__version__}")
B = ep.bucket("pyarrow")


def s3fs_for(url: str, **extra: object) -> pafs.S3FileSystem:
    scheme, _, hostport = url.rstrip("/").partition("://")
    return pafs.S3FileSystem(
        access_key=ep.access_key,
        secret_key=ep.secret_key,
        region=ep.region,
        scheme=scheme,
        endpoint_override=hostport,
        allow_bucket_creation=True,
        allow_bucket_deletion=True,
        connect_timeout=10,
        # One try, so a failing request is reported rather than retried into a pass.
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
        **extra,
    )


fs = s3fs_for(ep.url)

# -- the data set ----------------------------------------------------------------------------------
N = 6000
rng = random.Random(42)
TABLE = pa.table({
    "id": pa.array(range(N), pa.int64()),
    "year": pa.array([2021 + i % 3 for i in range(N)], pa.int64()),
    "region": pa.array([("eu", "us")[(i // 3) % 2] for i in range(N)], pa.string()),
    "value": pa.array([rng.random() for _ in range(N)], pa.float64()),
    "note": pa.array([f"row {i} " + "x" * rng.randint(0, 40) for i in range(N)], pa.string()),
})
PARTITIONING = ds.partitioning(pa.schema([("year", pa.int64()), ("region", pa.string())]), flavor="hive")
DS = f"{B}/warehouse/events"
LEAVES = [f"year={y}/region={r}" for y in (2021, 2022, 2023) for r in ("eu", "us")]
DS_FILES = [f"{DS}/{leaf}/part-0.parquet" for leaf in LEAVES]


def canonical(t: pa.Table) -> pa.Table:
    """The table in TABLE's column order, sorted by id: a dataset comes back in fragment order
    with the partition columns last."""
    return t.select(TABLE.column_names).sort_by("id").combine_chunks()


def tree(path: str) -> dict[str, object]:
    """path -> size for files, "dir" for directories, as FileSelector(recursive) sees them."""
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return {i.path: ("dir" if i.type == pafs.FileType.Directory else i.size) for i in infos}


def multipart_parts(meta: dict[str, str]) -> int:
    """Parts of the upload behind an object, from its ETag (1 for a plain PutObject)."""
    etag = meta.get("ETag", "").strip('"')
    return int(etag.rpartition("-")[2]) if "-" in etag else 1


def read_all(path: str, filesystem: pafs.FileSystem = fs) -> bytes:
    with filesystem.open_input_stream(path) as f:
        return f.read()


@rec.step("create_dir (bucket) + list buckets")
def _() -> None:
    fs.create_dir(B)
    expect_equal(fs.get_file_info(B).type, pafs.FileType.Directory, f"get_file_info({B}).type")
    buckets = [i.path for i in fs.get_file_info(pafs.FileSelector("", recursive=False))]
    expect(B in buckets, f"{B} not among the buckets {buckets}")


MB = ["create_dir (bucket) + list buckets"]


@rec.step("write_to_dataset (Parquet, hive-partitioned year/region)", needs=MB)
def _() -> None:
    written: list[str] = []
    pq.write_to_dataset(TABLE, DS, filesystem=fs, partitioning=PARTITIONING, basename_template="part-{i}.parquet",
                        row_group_size=250, file_visitor=lambda f: written.append(f.path))
    expect_equal(sorted(written), DS_FILES, "files written")


WD = ["write_to_dataset (Parquet, hive-partitioned year/region)"]


@rec.step("FileSelector recursive / non-recursive listing", needs=WD)
def _() -> None:
    got = tree(DS)
    dirs = sorted({f"{DS}/{leaf.split('/')[0]}" for leaf in LEAVES} | {f"{DS}/{leaf}" for leaf in LEAVES})
    expect_equal(sorted(p for p, v in got.items() if v == "dir"), dirs, "directories")
    expect_equal(sorted(p for p, v in got.items() if v != "dir"), DS_FILES, "files")
    for path in DS_FILES:
        # The listed size is the size of what reads back (ListObjectsV2 vs HeadObject vs GET).
        with fs.open_input_file(path) as f:
            expect_equal(got[path], f.size(), f"listed size of {path}")
            expect_equal(len(f.read()), f.size(), f"bytes read from {path}")
    top = fs.get_file_info(pafs.FileSelector(DS, recursive=False))
    expect_equal(sorted((i.path, i.type) for i in top),
                 [(f"{DS}/year={y}", pafs.FileType.Directory) for y in (2021, 2022, 2023)], "top level")
    expect_equal(fs.get_file_info(f"{DS}/year=2022").type, pafs.FileType.Directory, "a partition directory")
    expect_equal(fs.get_file_info(DS_FILES[0]).type, pafs.FileType.File, "a data file")


@rec.step("read the dataset back (whole table equal)", needs=WD)
def _() -> None:
    back = ds.dataset(DS, filesystem=fs, format="parquet", partitioning=PARTITIONING).to_table()
    expect_equal(back.num_rows, N, "rows")
    expect(canonical(back).equals(canonical(TABLE)), "table read back differs from the one written")
    # pq.read_table discovers the hive partitioning itself, as most pipelines call it.
    again = pq.read_table(DS, filesystem=fs)
    expect_equal(sorted(again.column_names), sorted(TABLE.column_names), "columns of pq.read_table")
    expect_equal(sorted(again.column("id").to_pylist()), list(range(N)), "ids of pq.read_table")


@rec.step("filter + column projection (partition pruning, ranged reads)", needs=WD)
def _() -> None:
    dataset = ds.dataset(DS, filesystem=fs, format="parquet", partitioning=PARTITIONING)
    cond = (ds.field("year") == 2022) & (ds.field("value") > 0.75)
    got = dataset.to_table(columns=["id", "value"], filter=cond).sort_by("id")
    mask = pc.and_(pc.equal(TABLE["year"], 2022), pc.greater(TABLE["value"], 0.75))
    want = TABLE.filter(mask).select(["id", "value"]).sort_by("id")
    expect(want.num_rows > 100, f"test data: only {want.num_rows} matching rows")
    expect(got.combine_chunks().equals(want.combine_chunks()),
           f"filtered rows: {got.num_rows} read, {want.num_rows} expected")
    # One row group of one column of one file: ParquetFile reads its footer and then just that
    # column chunk, each a ranged GET.
    path = f"{DS}/year=2023/region=us/part-0.parquet"
    with fs.open_input_file(path) as f:
        pf = pq.ParquetFile(f)
        expect(pf.metadata.num_row_groups >= 3, f"{pf.metadata.num_row_groups} row groups, wanted several")
        rg = pf.read_row_group(2, columns=["note"])
    leaf = TABLE.filter(pc.and_(pc.equal(TABLE["year"], 2023), pc.equal(TABLE["region"], "us")))
    expect_equal(rg.column("note").to_pylist(), leaf.column("note").to_pylist()[500:750], "row group 2, column note")


ODD = ["s\u00e3o paulo", "a/b", "100%", "x+y=z", "tab\there", "\u00fc&?#", "  lead"]


@rec.step("partition values with /, %, +, spaces, non-ASCII (percent-encoded keys)", needs=MB)
def _() -> None:
    # pyarrow percent-encodes hive values into the key: keys hold a literal '%' that must be
    # neither decoded twice nor re-encoded anywhere between the SDK and the disk.
    t = pa.table({"city": ODD * 3, "n": pa.array(range(3 * len(ODD)), pa.int64())})
    root = f"{B}/odd"
    part = ds.partitioning(pa.schema([("city", pa.string())]), flavor="hive")
    pq.write_to_dataset(t, root, filesystem=fs, partitioning=part, basename_template="p-{i}.parquet")
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    files = sorted(i.path for i in infos if i.type == pafs.FileType.File)
    expect_equal(len(files), len(ODD), f"files in {files}")
    for path in files:
        expect_equal(fs.get_file_info(path).type, pafs.FileType.File, f"get_file_info({path!r})")
    back = ds.dataset(root, filesystem=fs, format="parquet", partitioning=part).to_table()
    expect(back.select(["city", "n"]).sort_by("n").equals(t.sort_by("n")), "table with odd partition values differs")
    one = ds.dataset(root, filesystem=fs, format="parquet", partitioning=part).to_table(filter=ds.field("city") == "100%")
    expect_equal(sorted(one.column("n").to_pylist()), [2, 9, 16], "rows of city == '100%'")
    fs.delete_dir(root)
    expect_equal(fs.get_file_info(root).type, pafs.FileType.NotFound, "after delete_dir")


MANY = [f"{B}/many/f{i:04d}.txt" for i in range(1040)] + [f"{B}/many/sub-{j:02d}/x.txt" for j in range(30)] \
    + [f"{B}/many/zz-{i}.txt" for i in range(5)]


@rec.step("1075 small files (single PUTs) + listings across pages", needs=MB)
def _() -> None:
    # allow_delayed_open: a small file is one PutObject rather than a one-part multipart upload.
    small = s3fs_for(ep.url, allow_delayed_open=True)

    def put(path: str) -> None:
        with small.open_output_stream(path) as out:
            out.write(path.encode())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, MANY))
    # More than 1000 keys: the C++ SDK follows the continuation token (with and without '/').
    deep = fs.get_file_info(pafs.FileSelector(f"{B}/many", recursive=True))
    expect_equal(sorted(i.path for i in deep if i.type == pafs.FileType.File), sorted(MANY), "recursive files")
    expect_equal(sorted(i.size for i in deep if i.type == pafs.FileType.File), sorted(len(p) for p in MANY),
                 "recursive sizes")
    top = fs.get_file_info(pafs.FileSelector(f"{B}/many", recursive=False))
    want = sorted([p for p in MANY if "/sub-" not in p] + [f"{B}/many/sub-{j:02d}" for j in range(30)])
    expect_equal(sorted(i.path for i in top), want, "non-recursive listing (files and 30 directories)")
    expect_equal(read_all(MANY[1057]), MANY[1057].encode(), "bytes of one")
    fs.delete_dir(f"{B}/many")
    expect_equal(fs.get_file_info(f"{B}/many").type, pafs.FileType.NotFound, "after delete_dir")


BIG = f"{B}/blobs/big.bin"
BIG_SIZE = 13 * MiB + 12345
BIG_DATA = random.Random(13).randbytes(BIG_SIZE)
BIG_MD5 = hashlib.md5(BIG_DATA).hexdigest()


@rec.step("open_output_stream 13 MiB (multipart) + metadata", needs=MB)
def _() -> None:
    with fs.open_output_stream(BIG, metadata={"Content-Type": "application/x-conformance"}) as out:
        # Uneven writes, as a writer streaming records would make them.
        pos, step = 0, MiB + 7
        while pos < BIG_SIZE:
            out.write(BIG_DATA[pos:pos + step])
            pos += step
    info = fs.get_file_info(BIG)
    expect_equal((info.type, info.size), (pafs.FileType.File, BIG_SIZE), "get_file_info")
    with fs.open_input_stream(BIG) as f:
        meta = {k: v.decode() for k, v in f.metadata().items()}
        data = f.read()
    expect_equal(hashlib.md5(data).hexdigest(), BIG_MD5, "md5 read back")
    expect_equal(meta.get("Content-Type"), "application/x-conformance", f"Content-Type in {meta}")
    expect(multipart_parts(meta) >= 2, f"expected a multipart ETag of 2+ parts, got {meta.get('ETag')!r}")
    expect_equal(int(meta.get("Content-Length", "-1")), BIG_SIZE, "Content-Length")


OUT = ["open_output_stream 13 MiB (multipart) + metadata"]


@rec.step("open_input_file: seek / read_at (ranged GETs)", needs=OUT)
def _() -> None:
    with fs.open_input_file(BIG) as f:
        expect_equal(f.size(), BIG_SIZE, "size")
        for off, n in ((0, 100), (5 * MiB - 3, 4096), (BIG_SIZE - 10, 10), (7 * MiB, 2 * MiB + 1)):
            expect_equal(f.read_at(n, off), BIG_DATA[off:off + n], f"read_at({n}, {off})")
        f.seek(BIG_SIZE - 100)
        expect_equal(f.read(), BIG_DATA[-100:], "seek to the last 100 bytes, read")
        expect_equal(f.read_at(100, BIG_SIZE - 50), BIG_DATA[-50:], "read_at past the end (short read)")


@rec.step("copy_file (13 MiB)", needs=OUT)
def _() -> None:
    fs.copy_file(BIG, f"{B}/copies/big.bin")
    expect_equal(fs.get_file_info(f"{B}/copies/big.bin").size, BIG_SIZE, "size of the copy")
    expect_equal(hashlib.md5(read_all(f"{B}/copies/big.bin")).hexdigest(), BIG_MD5, "md5 of the copy")
    expect_equal(fs.get_file_info(BIG).size, BIG_SIZE, "source still there")


@rec.step("move (file; a directory is refused and left whole)", needs=["copy_file (13 MiB)"])
def _() -> None:
    fs.move(f"{B}/copies/big.bin", f"{B}/moved/big.bin")
    expect_equal(fs.get_file_info(f"{B}/copies/big.bin").type, pafs.FileType.NotFound, "source after move")
    expect_equal(hashlib.md5(read_all(f"{B}/moved/big.bin")).hexdigest(), BIG_MD5, "md5 after move")
    # pyarrow moves single objects only: a directory becomes a CopyObject of the key "moved",
    # which does not exist (NoSuchKey, as S3 answers), and nothing may be half-moved.
    try:
        fs.move(f"{B}/moved", f"{B}/elsewhere")
    except OSError as e:
        expect("NO_SUCH_KEY" in str(e) or "does not exist" in str(e), f"unexpected error: {e}")
    else:
        raise StepFailed("moving a directory succeeded; pyarrow does not implement that")
    expect_equal(fs.get_file_info(f"{B}/moved/big.bin").size, BIG_SIZE, "file after the refused move")
    expect_equal(fs.get_file_info(f"{B}/elsewhere").type, pafs.FileType.NotFound, "target of the refused move")


@rec.step("get_file_info / open on missing paths", needs=MB)
def _() -> None:
    missing = [f"{B}/no/such/key.bin", f"{B}/no-such-dir/", f"{B}/warehouse/events/year=1999",
               ep.bucket("pyarrow-missing"), ep.bucket("pyarrow-missing") + "/key"]
    for path in missing:
        expect_equal(fs.get_file_info(path).type, pafs.FileType.NotFound, f"get_file_info({path!r})")
    for opener in (fs.open_input_stream, fs.open_input_file):
        try:
            opener(f"{B}/no/such/key.bin")
        except FileNotFoundError:
            pass
        else:
            raise StepFailed(f"{opener.__name__} of a missing key did not raise FileNotFoundError")
    try:
        fs.get_file_info(pafs.FileSelector(f"{B}/no-such-dir", recursive=True))
    except FileNotFoundError:
        pass
    else:
        raise StepFailed("FileSelector of a missing directory did not raise FileNotFoundError")
    expect_equal(fs.get_file_info(pafs.FileSelector(f"{B}/no-such-dir", recursive=True, allow_not_found=True)),
                 [], "FileSelector(allow_not_found=True) of a missing directory")


@rec.step("delete_dir_contents (dataset) keeps the directory", needs=WD)
def _() -> None:
    fs.delete_dir_contents(DS)
    expect_equal(tree(DS), {}, "left under the dataset")
    expect_equal(fs.get_file_info(DS).type, pafs.FileType.Directory, "the dataset directory")
    expect_equal(fs.get_file_info(DS_FILES[0]).type, pafs.FileType.NotFound, "a deleted file")
    expect_equal(fs.get_file_info(f"{B}/blobs/big.bin").size, BIG_SIZE, "a file outside the dataset")


@rec.step("delete_dir", needs=WD)
def _() -> None:
    fs.delete_dir(f"{B}/warehouse")
    for path in (DS, f"{B}/warehouse"):
        expect_equal(fs.get_file_info(path).type, pafs.FileType.NotFound, f"get_file_info({path!r})")
    # "copies" stays: pyarrow keeps the parent of the last file it moves away as a marker object.
    expect_equal(sorted(tree(B)), sorted([f"{B}/blobs", BIG, f"{B}/copies", f"{B}/moved", f"{B}/moved/big.bin"]),
                 "left in the bucket")


def round_trip(other: pafs.S3FileSystem, bucket: str, size: int) -> None:
    """create the bucket, stream ``size`` bytes out (background part uploads), list, read back,
    remove the bucket."""
    other.create_dir(bucket)
    with other.open_output_stream(f"{bucket}/data.bin") as out:
        for pos in range(0, size, 3 * MiB):
            out.write(BIG_DATA[pos:min(pos + 3 * MiB, size)])
    with other.open_input_stream(f"{bucket}/data.bin") as f:
        meta = {k: v.decode() for k, v in f.metadata().items()}
        data = f.read()
    expect(data == BIG_DATA[:size], f"bytes read back differ ({len(data)} of {size})")
    infos = other.get_file_info(pafs.FileSelector(bucket, recursive=True))
    expect_equal([(i.path, i.size) for i in infos], [(f"{bucket}/data.bin", size)], "listing")
    with other.open_input_file(f"{bucket}/data.bin") as f:
        expect_equal(f.read_at(1000, size - 1000), BIG_DATA[size - 1000:size], "read_at of the tail")
    other.delete_dir(bucket)
    expect_equal(other.get_file_info(bucket).type, pafs.FileType.NotFound, "bucket after delete_dir")
    expect(multipart_parts(meta) >= 2, f"ETag {meta.get('ETag')!r}: not a multipart upload of 2+ parts")


@rec.step("workers=2: parallel multipart parts across processes")
def _() -> None:
    url = os.environ.get("CONF_WORKERS_ENDPOINT", "")
    if not url:
        raise Skip("no --workers endpoint")
    # Background writes upload the 10 MiB parts concurrently: on SO_REUSEPORT they land on
    # either worker, and the completion sees them all.
    round_trip(s3fs_for(url), ep.bucket("pyarrow-workers"), 13 * MiB + 12345)


@rec.step("virtual-host style (force_virtual_addressing)")
def _() -> None:
    if not (ep.vhost_url and ep.vhost_proxy):
        raise Skip("no virtual-host endpoint")
    vb = ep.bucket("pyarrow-vhost")
    vfs = s3fs_for(ep.vhost_url, force_virtual_addressing=True, proxy_options=ep.vhost_proxy)
    round_trip(vfs, vb, 11 * MiB)
    log = os.environ.get("CONF_VHOST_PROXY_LOG")
    if log and os.path.exists(log):
        hosts = {line.split()[0].split(":")[0] for line in open(log, encoding="utf-8") if line.strip()}
        expect(f"{vb}.{ep.vhost_domain}" in hosts, f"no request with Host {vb}.{ep.vhost_domain}: saw {sorted(hosts)[:10]}")


@rec.step("FileSystem.from_uri without a region (the bucket's region from HeadBucket)", needs=OUT)
def _() -> None:
    scheme, _, hostport = ep.url.partition("://")
    uri = f"s3://{ep.access_key}:{ep.secret_key}@{BIG}?scheme={scheme}&endpoint_override={hostport}"
    ufs, path = pafs.FileSystem.from_uri(uri)
    expect_equal(path, BIG, "path from the URI")
    expect_equal(ufs.region, ep.region, "region resolved from x-amz-bucket-region")
    with ufs.open_input_file(path) as f:
        expect_equal(f.read_at(4096, MiB), BIG_DATA[MiB:MiB + 4096], "bytes through the URI's filesystem")


@rec.step("https (tls_ca_file_path): write, list, read; unverified refused")
def _() -> None:
    if not ep.https_url:
        raise Skip("no https endpoint")
    if not ep.ca_bundle:
        # The C++ SDK can be given a CA file but not told to skip verification through pyarrow.
        raise Skip("no CA bundle for the https endpoint; pyarrow cannot skip verification")
    tls = s3fs_for(ep.https_url, tls_ca_file_path=ep.ca_bundle)
    tb = ep.bucket("pyarrow-tls")
    tls.create_dir(tb)
    t = TABLE.slice(0, 1000)
    pq.write_table(t, f"{tb}/t.parquet", filesystem=tls)
    with tls.open_output_stream(f"{tb}/blob.bin") as out:
        out.write(BIG_DATA[:6 * MiB])
    infos = tls.get_file_info(pafs.FileSelector(tb, recursive=True))
    expect_equal(sorted((i.path, i.size) for i in infos),
                 sorted([(f"{tb}/t.parquet", tls.get_file_info(f"{tb}/t.parquet").size), (f"{tb}/blob.bin", 6 * MiB)]),
                 "listing over https")
    expect(pq.read_table(f"{tb}/t.parquet", filesystem=tls).equals(t), "Parquet table over https differs")
    expect_equal(read_all(f"{tb}/blob.bin", tls), BIG_DATA[:6 * MiB], "bytes over https")
    # Without the CA the self-signed certificate must be refused: the verification is real.
    try:
        s3fs_for(ep.https_url).get_file_info(f"{tb}/blob.bin")
    except OSError as e:
        expect("certificate" in str(e).lower() or "SSL" in str(e), f"unexpected error without the CA: {e}")
    else:
        raise StepFailed("the self-signed certificate was accepted without tls_ca_file_path")
    tls.delete_dir(tb)
    expect_equal(tls.get_file_info(tb).type, pafs.FileType.NotFound, "https bucket after delete_dir")


@rec.step("delete_dir (bucket with contents)", needs=MB)
def _() -> None:
    fs.delete_dir(B)
    expect_equal(fs.get_file_info(B).type, pafs.FileType.NotFound, "bucket after delete_dir")
    buckets = [i.path for i in fs.get_file_info(pafs.FileSelector("", recursive=False))]
    expect(B not in buckets, f"{B} still among the buckets")
