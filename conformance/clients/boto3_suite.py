"""boto3: the same workflow over http and https, with botocore's default checksum behaviour and
with ``request_checksum_calculation="when_required"``.

Over https with default settings botocore streams PutObject/UploadPart bodies as aws-chunked with
a CRC32 trailer (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``); over http it signs the payload and sends
the checksum as a header. Error codes are checked once, on plain http.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import os
import ssl
import urllib.parse
import warnings
import zlib
from pathlib import Path
from typing import Any

import boto3
import botocore
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from conformance.clients.common import (
    Endpoint,
    MiB,
    Recorder,
    Skip,
    StepFailed,
    expect,
    expect_equal,
    make_file,
    md5_file,
    run,
)

warnings.filterwarnings("ignore")  # urllib3's InsecureRequestWarning for the self-signed https run

ep = Endpoint.from_env()
rec = Recorder("boto3")
rec.version(f"boto3 {boto3.__version__} / botocore {botocore.__version__}")
W = ep.workdir
# 5 MiB parts (the S3 minimum) keep the multipart runs quick yet real: 17 MiB -> 4 parts.
TRANSFER = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
BIG = W / "big.bin"
BIG_MD5 = make_file(BIG, 17 * MiB, seed=3)
# Verify the server's certificate when we know it (s3serve's --tls-self-signed), as a careful user
# would with --ca-bundle; an external https endpoint without a known certificate is not verified.
if ep.ca_bundle:
    TLS = ssl.create_default_context(cafile=ep.ca_bundle)
else:
    TLS = ssl.create_default_context()
    TLS.check_hostname = False
    TLS.verify_mode = ssl.CERT_NONE
VERIFY: str | bool = ep.ca_bundle or False


def client(url: str, checksums: str = "when_supported", signature: str | None = None,
           secret: str | None = None, access: str | None = None) -> Any:
    cfg = Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
        # One attempt: a retry would hide a server error from the table.
        retries={"max_attempts": 1, "mode": "standard"},
        signature_version=signature,
        connect_timeout=10,
        read_timeout=120,
    )
    return boto3.client(
        "s3", endpoint_url=url, region_name=ep.region, config=cfg,
        aws_access_key_id=access or ep.access_key, aws_secret_access_key=secret or ep.secret_key,
        verify=VERIFY if url.startswith("https") else None,
    )


def error_of(fn: Any, **kw: Any) -> tuple[str, int]:
    """Call expecting a ClientError; return (code, HTTP status)."""
    try:
        fn(**kw)
    except ClientError as e:
        return str(e.response.get("Error", {}).get("Code")), int(e.response["ResponseMetadata"]["HTTPStatusCode"])
    raise StepFailed(f"{fn.__name__}({kw}) succeeded but should have failed")


def http_request(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    """A bare request, as curl or ``requests`` make it: no Content-Type that the presigned URL did
    not sign (SigV2 signs Content-Type, and urllib would add a form type)."""
    parts = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.netloc, timeout=60, context=TLS)
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=60)
    try:
        conn.request(method, parts.path + ("?" + parts.query if parts.query else ""), body=data)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


# Keys that need escaping in a URL, in SigV4's canonical URI, in SigV2's resource and in XML.
WEIRD_KEYS = [
    "sp ace", "plus+sign", "100%", "pct%20not-a-space", "a=b&c=d", "tilde~star*", "quote'paren()",
    "semi;colon:comma,", "dollar$at@", "brackets[]{}", "hash#question?", "caret^pipe|back`tick",
    "less<greater>", "\u00fcml\u00e4ut", "\u65e5\u672c\u8a9e", "emoji-\U0001f600", "tab\there", "trailing-dot.", "dir/sub/deeper",
]


def record_put_headers(s3: Any) -> list[dict[str, str]]:
    """Keep the headers of every PutObject this client sends, to prove which body encoding and
    checksum transport a step exercised."""
    sent: list[dict[str, str]] = []

    def before_send(request: Any, **_: Any) -> None:
        sent.append({k.lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()})

    s3.meta.events.register("before-send.s3.PutObject", before_send)
    return sent


def workflow(label: str, url: str, checksums: str) -> None:
    s3 = client(url, checksums)
    sent = record_put_headers(s3)
    bucket = ep.bucket(f"boto3-{label.replace('+', '-').replace('_', '')}")

    def step(name: str, needs: tuple[str, ...] = ()) -> Any:
        return rec.step(f"{label}: {name}", needs=[f"{label}: {n}" for n in needs])

    @step("create_bucket")
    def _() -> None:
        s3.create_bucket(Bucket=bucket)
        expect(bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]], "bucket not listed")

    body = b"boto3 conformance\n" * 1000

    @step("put_object/get_object with metadata", ("create_bucket",))
    def _() -> None:
        sent.clear()
        put = s3.put_object(Bucket=bucket, Key="dir/small.txt", Body=body, ContentType="text/plain",
                            Metadata={"purpose": "conformance", "Mixed-Case": "Yes"})
        if checksums == "when_required":
            extra = sorted(k for k in sent[-1] if k.startswith("x-amz-checksum") or k == "x-amz-trailer")
            expect_equal(extra, [], "checksum headers sent with when_required")
        expect_equal(put["ETag"].strip('"'), hashlib.md5(body).hexdigest(), "PutObject ETag")
        got = s3.get_object(Bucket=bucket, Key="dir/small.txt")
        expect_equal(got["Body"].read(), body, "GetObject bytes")
        expect_equal(got["Metadata"], {"purpose": "conformance", "mixed-case": "Yes"}, "Metadata")
        expect_equal(got["ContentType"], "text/plain", "ContentType")

    @step("checksum stored and returned (CRC32 / SHA256)", ("create_bucket",))
    def _() -> None:
        data = b"checksummed " * 5000
        # when_required sends no checksum by itself, so ask for one explicitly there.
        algo = "CRC32" if checksums == "when_supported" else "SHA256"
        kw = {} if checksums == "when_supported" else {"ChecksumAlgorithm": algo}
        sent.clear()
        s3.put_object(Bucket=bucket, Key="dir/checksummed", Body=data, **kw)
        hdr = sent[-1]
        if url.startswith("https") and checksums == "when_supported":
            # The case this run exists for: an unsigned aws-chunked body with a CRC32 trailer.
            expect_equal((hdr.get("x-amz-content-sha256"), hdr.get("x-amz-trailer")),
                         ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-checksum-crc32"), "what botocore sent")
        else:
            expect(f"x-amz-checksum-{algo.lower()}" in hdr or hdr.get("x-amz-trailer") == f"x-amz-checksum-{algo.lower()}",
                   f"botocore sent no {algo} checksum: {hdr}")
        h = s3.head_object(Bucket=bucket, Key="dir/checksummed", ChecksumMode="ENABLED")
        want = crc32_b64(data) if algo == "CRC32" else base64.b64encode(hashlib.sha256(data).digest()).decode()
        expect_equal(h.get(f"Checksum{algo}"), want, f"HeadObject Checksum{algo}")
        got = s3.get_object(Bucket=bucket, Key="dir/checksummed", ChecksumMode="ENABLED")
        expect_equal(got["Body"].read(), data, "GetObject bytes (response checksum validated by botocore)")

    @step("a wrong checksum is refused (BadDigest)", ("create_bucket",))
    def _() -> None:
        code, status = error_of(s3.put_object, Bucket=bucket, Key="dir/bad", Body=b"abc",
                                ChecksumCRC32=crc32_b64(b"abd"))
        expect(code in ("BadDigest", "InvalidRequest", "XAmzContentChecksumMismatch") and status == 400,
               f"got {code} {status}")
        missing = error_of(s3.head_object, Bucket=bucket, Key="dir/bad")
        expect_equal(missing[1], 404, "object stored despite a wrong checksum")

    @step("upload_file/download_file multipart", ("create_bucket",))
    def _() -> None:
        s3.upload_file(str(BIG), bucket, "big.bin", Config=TRANSFER)
        h = s3.head_object(Bucket=bucket, Key="big.bin")
        expect_equal(h["ContentLength"], BIG.stat().st_size, "ContentLength")
        expect(h["ETag"].strip('"').endswith("-4"), f"expected a 4-part ETag, got {h['ETag']}")
        h = s3.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
        crc = h.get("ChecksumCRC32")
        if checksums == "when_supported" or crc:
            # botocore sends a CRC32 per part; S3 then reports either the full-object CRC32 or a
            # composite "<crc of part crcs>-4". Either way it must agree with the data.
            expect(crc is not None, f"no ChecksumCRC32 for a multipart upload with CRC32 parts: {h}")
            if h.get("ChecksumType") == "FULL_OBJECT" or not str(crc).endswith("-4"):
                expect_equal(crc, crc32_b64(BIG.read_bytes()), f"full-object CRC32 ({h.get('ChecksumType')})")
            else:
                parts = [BIG.read_bytes()[i:i + 5 * MiB] for i in range(0, BIG.stat().st_size, 5 * MiB)]
                composite = crc32_b64(b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts))
                expect_equal(crc, f"{composite}-4", "composite CRC32")
        out = W / f"{label}.down"
        s3.download_file(bucket, "big.bin", str(out), Config=TRANSFER)  # ranged GETs in parallel
        expect_equal(md5_file(out), BIG_MD5, "md5 after round trip")
        out.unlink()

    @step("copy_object + managed copy (UploadPartCopy)", ("upload_file/download_file multipart",))
    def _() -> None:
        r = s3.copy_object(Bucket=bucket, Key="copy/small.txt", CopySource={"Bucket": bucket, "Key": "dir/small.txt"},
                           MetadataDirective="REPLACE", Metadata={"copied": "1"}, ContentType="text/x-copied")
        expect_equal(r["CopyObjectResult"]["ETag"].strip('"'), hashlib.md5(body).hexdigest(), "CopyObject ETag")
        h = s3.head_object(Bucket=bucket, Key="copy/small.txt")
        expect_equal((h["Metadata"], h["ContentType"]), ({"copied": "1"}, "text/x-copied"), "replaced metadata")
        s3.copy({"Bucket": bucket, "Key": "big.bin"}, bucket, "copy/big.bin", Config=TRANSFER)
        got = s3.get_object(Bucket=bucket, Key="copy/big.bin")["Body"].read()
        expect_equal(hashlib.md5(got).hexdigest(), BIG_MD5, "md5 of the multipart copy")

    if url.startswith("https"):

        @step("SSE-C: blocked on a new bucket, then upload_file/download_file/copy with customer keys", ("create_bucket",))
        def _() -> None:
            # As on S3 since April 2026: a new bucket refuses customer keys until its encryption
            # configuration names BlockedEncryptionTypes NONE.
            key, other = os.urandom(32), os.urandom(32)
            ssec = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
            blocked = error_of(s3.put_object, Bucket=bucket, Key="ssec/small", Body=b"x", **ssec)
            expect_equal(blocked, ("AccessDenied", 403), "SSE-C on a new bucket")
            rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
            expect_equal(rule.get("BlockedEncryptionTypes"), {"EncryptionType": ["SSE-C"]}, "BlockedEncryptionTypes")
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                "BlockedEncryptionTypes": {"EncryptionType": ["NONE"]}}]})  # fmt: skip
            # s3transfer: multipart with the key on every part, ranged GETs with it.
            s3.upload_file(str(BIG), bucket, "ssec/big.bin", ExtraArgs=ssec, Config=TRANSFER)
            h = s3.head_object(Bucket=bucket, Key="ssec/big.bin", **ssec)
            expect_equal((h["ContentLength"], h.get("SSECustomerAlgorithm")), (BIG.stat().st_size, "AES256"), "HeadObject")
            expect_equal(error_of(s3.head_object, Bucket=bucket, Key="ssec/big.bin")[1], 400, "HeadObject without the key")
            wrong = error_of(s3.get_object, Bucket=bucket, Key="ssec/big.bin", SSECustomerAlgorithm="AES256", SSECustomerKey=other)
            expect_equal(wrong, ("AccessDenied", 403), "GetObject with another key")
            out = W / f"{label}.ssec"
            s3.download_file(bucket, "ssec/big.bin", str(out), ExtraArgs=ssec, Config=TRANSFER)
            expect_equal(md5_file(out), BIG_MD5, "md5 after an SSE-C round trip")
            out.unlink()
            # A managed copy (UploadPartCopy) to another key: the source's key and the copy's.
            s3.copy({"Bucket": bucket, "Key": "ssec/big.bin"}, bucket, "ssec/big-copy.bin", Config=TRANSFER, ExtraArgs={
                "CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key,
                "SSECustomerAlgorithm": "AES256", "SSECustomerKey": other})  # fmt: skip
            got = s3.get_object(Bucket=bucket, Key="ssec/big-copy.bin", SSECustomerAlgorithm="AES256", SSECustomerKey=other)
            expect_equal(hashlib.md5(got["Body"].read()).hexdigest(), BIG_MD5, "md5 of the SSE-C copy")
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "ssec/big.bin"}, {"Key": "ssec/big-copy.bin"}]})

    @step("delete_objects", ("create_bucket",))
    def _() -> None:
        keys = [f"del/{i}" for i in range(5)]
        for k in keys:
            s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
        r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in [*keys, "del/missing"]]})
        expect_equal(sorted(d["Key"] for d in r.get("Deleted", [])), sorted([*keys, "del/missing"]), "Deleted")
        expect_equal(r.get("Errors", []), [], "Errors")
        expect_equal(s3.list_objects_v2(Bucket=bucket, Prefix="del/").get("KeyCount"), 0, "KeyCount after delete")

    @step("paginators (v2, v1, delimiter)", ("create_bucket",))
    def _() -> None:
        keys = sorted([f"page/{c}/{i}" for c in "ab" for i in range(4)] + [f"page/k{i}" for i in range(3)])
        for k in keys:
            s3.put_object(Bucket=bucket, Key=k, Body=b"")
        pages = list(s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="page/", PaginationConfig={"PageSize": 3}))
        expect_equal([o["Key"] for p in pages for o in p.get("Contents", [])], keys, "v2 keys")
        expect_equal(len(pages), 4, "v2 pages of 3 for 11 keys")
        pages = list(s3.get_paginator("list_objects").paginate(
            Bucket=bucket, Prefix="page/", PaginationConfig={"PageSize": 4}))
        expect_equal([o["Key"] for p in pages for o in p.get("Contents", [])], keys, "v1 keys")
        pages = list(s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="page/", Delimiter="/", PaginationConfig={"PageSize": 2}))
        expect_equal([c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])], ["page/a/", "page/b/"],
                     "CommonPrefixes")
        expect_equal([o["Key"] for p in pages for o in p.get("Contents", [])], ["page/k0", "page/k1", "page/k2"],
                     "Contents with delimiter")

    for sig in ("s3v4", "s3", None):
        signame = {"s3v4": "SigV4", "s3": "SigV2"}.get(sig or "", "default signer")

        @step(f"presigned GET/PUT ({signame})", ("put_object/get_object with metadata",))
        def _(sig: str | None = sig) -> None:
            pc = client(url, checksums, signature=sig)
            key = f"presigned/{sig or 'default'}.bin"
            data = b"presigned upload " + (sig or "default").encode()
            put_url = pc.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
            status, resp = http_request("PUT", put_url, data)
            expect(status == 200, f"presigned PUT: HTTP {status} {resp[:500]!r}\nURL {put_url}")
            get_url = pc.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
            status, resp = http_request("GET", get_url)
            if sig is None:
                # The default for a custom us-east-1 endpoint has long been SigV2 query auth; say
                # which one this botocore picked, so the table shows what was covered.
                kind = "SigV4" if "X-Amz-Signature=" in get_url else "SigV2"
                print(f"[boto3] default presigner of botocore {botocore.__version__}: {kind}", flush=True)
            expect(status == 200 and resp == data, f"presigned GET: HTTP {status} {resp[:500]!r}\nURL {get_url}")
            status, resp = http_request("GET", get_url.replace("Expires=", "Expires=1") if "X-Amz" not in get_url
                                else get_url.replace("X-Amz-Expires=300", "X-Amz-Expires=301"))
            expect_equal(status, 403, "HTTP status of a presigned URL whose signed query was altered")

    @step("conditional GET (If-Match/None-Match/Modified-Since)", ("put_object/get_object with metadata",))
    def _() -> None:
        etag = s3.head_object(Bucket=bucket, Key="dir/small.txt")["ETag"]
        expect_equal(s3.get_object(Bucket=bucket, Key="dir/small.txt", IfMatch=etag)["Body"].read(), body, "If-Match")
        expect_equal(error_of(s3.get_object, Bucket=bucket, Key="dir/small.txt", IfNoneMatch=etag)[1], 304, "If-None-Match")
        expect_equal(error_of(s3.get_object, Bucket=bucket, Key="dir/small.txt", IfMatch='"0000"'),
                     ("PreconditionFailed", 412), "wrong If-Match")
        modified = s3.head_object(Bucket=bucket, Key="dir/small.txt")["LastModified"]
        future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        expect_equal(error_of(s3.get_object, Bucket=bucket, Key="dir/small.txt", IfModifiedSince=modified)[1], 304,
                     "If-Modified-Since its own Last-Modified")
        # A date in the future is invalid (RFC 9110 13.1.3): S3 ignores it and answers 200.
        expect_equal(s3.get_object(Bucket=bucket, Key="dir/small.txt", IfModifiedSince=future)["Body"].read(), body,
                     "If-Modified-Since in the future (ignored)")
        expect_equal(error_of(s3.get_object, Bucket=bucket, Key="dir/small.txt", IfUnmodifiedSince=past),
                     ("PreconditionFailed", 412), "If-Unmodified-Since in the past")

    @step("conditional PUT (If-None-Match: *, If-Match)", ("create_bucket",))
    def _() -> None:
        first = s3.put_object(Bucket=bucket, Key="cond/obj", Body=b"one", IfNoneMatch="*")
        expect_equal(error_of(s3.put_object, Bucket=bucket, Key="cond/obj", Body=b"two", IfNoneMatch="*"),
                     ("PreconditionFailed", 412), "second create with If-None-Match: *")
        s3.put_object(Bucket=bucket, Key="cond/obj", Body=b"three", IfMatch=first["ETag"])
        expect_equal(error_of(s3.put_object, Bucket=bucket, Key="cond/obj", Body=b"four", IfMatch=first["ETag"]),
                     ("PreconditionFailed", 412), "overwrite with a stale If-Match")
        expect_equal(s3.get_object(Bucket=bucket, Key="cond/obj")["Body"].read(), b"three", "final bytes")

    @step("rename_object", ("put_object/get_object with metadata",))
    def _() -> None:
        if not hasattr(s3, "rename_object"):
            raise Skip(f"botocore {botocore.__version__} has no RenameObject")
        s3.put_object(Bucket=bucket, Key="ren/src", Body=b"rename me")
        s3.rename_object(Bucket=bucket, Key="ren/dst", RenameSource=f"{bucket}/ren/src")
        expect_equal(s3.get_object(Bucket=bucket, Key="ren/dst")["Body"].read(), b"rename me", "renamed bytes")
        expect_equal(error_of(s3.head_object, Bucket=bucket, Key="ren/src")[1], 404, "source after rename")

    @step("keys with special characters (put/list/get/copy/presign/delete)", ("create_bucket",))
    def _() -> None:
        keys = sorted(f"weird/{k}" for k in WEIRD_KEYS)
        for k in keys:
            s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
        listed = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="weird/")
                  for o in p.get("Contents", [])]
        # S3 lists in UTF-8 byte order, which is not Python's str order for non-ASCII keys.
        expect_equal(listed, sorted(keys, key=lambda k: k.encode()), "listing")
        for k in keys:
            expect_equal(s3.get_object(Bucket=bucket, Key=k)["Body"].read(), k.encode(), f"bytes of {k!r}")
        src = "weird/" + WEIRD_KEYS[-1]
        s3.copy_object(Bucket=bucket, Key=src + " copy", CopySource={"Bucket": bucket, "Key": src})
        expect_equal(s3.get_object(Bucket=bucket, Key=src + " copy")["Body"].read(), src.encode(), "copied bytes")
        for sig in ("s3v4", "s3"):
            get_url = client(url, checksums, signature=sig).generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": src}, ExpiresIn=300)
            status, resp = http_request("GET", get_url)
            expect_equal((status, resp), (200, src.encode()), f"presigned GET ({sig}) of {src!r}")
        r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in [*keys, src + " copy"]]})
        expect_equal(r.get("Errors", []), [], "DeleteObjects errors")
        expect_equal(s3.list_objects_v2(Bucket=bucket, Prefix="weird/").get("KeyCount"), 0, "keys left")

    @step("empty and delete bucket", ("create_bucket",))
    def _() -> None:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
        expect(bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]], "bucket still listed")


def error_codes(url: str) -> None:
    s3 = client(url)
    bucket = ep.bucket("boto3-errors")
    try:
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="x", Body=b"0123456789")
    except ClientError as e:
        rec.record("errors: setup", "fail", str(e))
        return
    cases: list[tuple[str, Any, dict[str, Any], tuple[str, int]]] = [
        ("NoSuchKey", s3.get_object, {"Bucket": bucket, "Key": "missing"}, ("NoSuchKey", 404)),
        ("HEAD missing key -> 404", s3.head_object, {"Bucket": bucket, "Key": "missing"}, ("404", 404)),
        ("NoSuchBucket", s3.list_objects_v2, {"Bucket": bucket + "-missing"}, ("NoSuchBucket", 404)),
        ("BucketNotEmpty", s3.delete_bucket, {"Bucket": bucket}, ("BucketNotEmpty", 409)),
        ("InvalidBucketName", s3.create_bucket, {"Bucket": "Bad_Bucket"}, ("InvalidBucketName", 400)),
        ("InvalidRange", s3.get_object, {"Bucket": bucket, "Key": "x", "Range": "bytes=100-200"}, ("InvalidRange", 416)),
        ("NoSuchUpload", s3.upload_part, {"Bucket": bucket, "Key": "x", "UploadId": "nope", "PartNumber": 1, "Body": b"a"},
         ("NoSuchUpload", 404)),
        ("BadDigest (Content-MD5)", s3.put_object,
         {"Bucket": bucket, "Key": "y", "Body": b"abc", "ContentMD5": base64.b64encode(hashlib.md5(b"abd").digest()).decode()},
         ("BadDigest", 400)),
        ("SignatureDoesNotMatch", client(url, secret="wrong-secret").list_objects_v2, {"Bucket": bucket},
         ("SignatureDoesNotMatch", 403)),
        ("InvalidAccessKeyId", client(url, access="AKIDUNKNOWN").list_objects_v2, {"Bucket": bucket},
         ("InvalidAccessKeyId", 403)),
    ]
    if ep.region != "us-east-1":
        cases.append(("BucketAlreadyOwnedByYou", s3.create_bucket,
                      {"Bucket": bucket, "CreateBucketConfiguration": {"LocationConstraint": ep.region}},
                      ("BucketAlreadyOwnedByYou", 409)))
    else:
        @rec.step("errors: CreateBucket again by its owner (us-east-1: 200, legacy)")
        def _() -> None:
            s3.create_bucket(Bucket=bucket)
            expect_equal(s3.get_object(Bucket=bucket, Key="x")["Body"].read(), b"0123456789", "object kept")

    for name, fn, kw, want in cases:
        @rec.step(f"errors: {name}")
        def _(fn: Any = fn, kw: dict[str, Any] = kw, want: tuple[str, int] = want) -> None:
            expect_equal(error_of(fn, **kw), want, "(Code, HTTP status)")

    @rec.step("errors: EntityTooSmall on CompleteMultipartUpload")
    def _() -> None:
        up = s3.create_multipart_upload(Bucket=bucket, Key="small-parts")
        parts = []
        for n in (1, 2):
            r = s3.upload_part(Bucket=bucket, Key="small-parts", UploadId=up["UploadId"], PartNumber=n, Body=b"tiny")
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        got = error_of(s3.complete_multipart_upload, Bucket=bucket, Key="small-parts", UploadId=up["UploadId"],
                       MultipartUpload={"Parts": parts})
        s3.abort_multipart_upload(Bucket=bucket, Key="small-parts", UploadId=up["UploadId"])
        expect_equal(got, ("EntityTooSmall", 400), "(Code, HTTP status)")

    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=o["Key"])
        s3.delete_bucket(Bucket=bucket)
    except ClientError:
        pass  # leftovers only matter on an external endpoint; the steps above said what failed


def vhost_workflow() -> None:
    """Virtual-host style (bucket.localhost:PORT) through the loopback proxy; presigned URLs via
    curl, which resolves *.localhost by itself."""
    if not (ep.vhost_url and ep.vhost_proxy):
        rec.record("vhost: workflow", "skip", "no virtual-host endpoint configured")
        return
    cfg = Config(s3={"addressing_style": "virtual"}, proxies={"http": ep.vhost_proxy},
                 retries={"max_attempts": 1, "mode": "standard"})
    s3 = boto3.client("s3", endpoint_url=ep.vhost_url, region_name=ep.region, config=cfg,
                      aws_access_key_id=ep.access_key, aws_secret_access_key=ep.secret_key)
    bucket = ep.bucket("boto3-vhost")

    @rec.step("vhost: create_bucket, put/get, list, presigned GET, delete")
    def _() -> None:
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a/b c.txt", Body=b"virtual host")
        expect_equal(s3.get_object(Bucket=bucket, Key="a/b c.txt")["Body"].read(), b"virtual host", "bytes")
        expect_equal([o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])], ["a/b c.txt"], "keys")
        for sig in ("s3v4", "s3"):
            pc = boto3.client("s3", endpoint_url=ep.vhost_url, region_name=ep.region,
                              config=cfg.merge(Config(signature_version=sig)),
                              aws_access_key_id=ep.access_key, aws_secret_access_key=ep.secret_key)
            u = pc.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a/b c.txt"}, ExpiresIn=300)
            expect(f"//{bucket}.{ep.vhost_domain}" in u, f"not a virtual-host URL: {u}")
            c = run(["curl", "-sS", "--noproxy", "*", "-w", "\n%{http_code}", u], check=False)
            expect_equal(c.stdout.rsplit("\n", 1), ["virtual host", "200"], f"curl {u} ({sig})")
        s3.delete_object(Bucket=bucket, Key="a/b c.txt")
        s3.delete_bucket(Bucket=bucket)


def main() -> None:
    for checksums in ("when_supported", "when_required"):
        label = f"http+{'default' if checksums == 'when_supported' else 'when_required'}"
        workflow(label, ep.url, checksums)
    error_codes(ep.url)
    vhost_workflow()
    for checksums in ("when_supported", "when_required"):
        label = f"https+{'default' if checksums == 'when_supported' else 'when_required'}"
        if not ep.https_url:
            rec.record(f"{label}: workflow", "skip", "no https endpoint configured")
            continue
        workflow(label, ep.https_url, checksums)
    Path(BIG).unlink(missing_ok=True)


main()
