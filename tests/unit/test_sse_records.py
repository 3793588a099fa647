"""Server-side encryption in metadata records: records written before it existed still load (as
SSE-S3, S3's default), the default costs no bytes, and anything else survives a round trip."""

from __future__ import annotations

import dataclasses
import json

from s3serve.handlers.encryption import bucket_default
from s3serve.storage import packed, staging
from s3serve.storage.base import SSE_S3, Encryption, WriteMeta
from s3serve.storage.metadata import DEFAULT_CONTENT_TYPE, MetaStore, Record

# Written by the code before encryption was recorded (git HEAD at the time, through its
# packed.pack and Record.to_json): a packed PUT record (content type text/plain, a CRC32) and a
# JSON record (user metadata, tags, a storage class, a multipart ETag).
OLD_PACKED = bytes.fromhex(
    "01060123456789abcdef0123456789abcdef05d20915cd853dfe9c971701000000000a746578742f706c61696e"
)
OLD_JSON = (
    b'{"etag":"0123456789abcdef0123456789abcdef-2","size":7,"mtime_ns":5,"inode":99,'
    b'"headers":{"content-type":"binary/octet-stream"},"user_meta":{"a":"b"},"tags":{"t":"v"},'
    b'"storage_class":"STANDARD_IA"}'
)
# A multipart upload's upload.json "meta" from that code.
OLD_UPLOAD = {
    "headers": {}, "user_meta": {}, "tags": None, "storage_class": "STANDARD", "checksum_algorithm": "CRC32", "checksum_type": None
}  # fmt: skip
KMS = Encryption.of("aws:kms", "arn:aws:kms:us-east-1:111122223333:key/k", True)


def _store() -> MetaStore:
    return MetaStore("/nonexistent", use_xattrs=False)


def test_old_packed_record_loads_as_sse_s3_and_packs_to_the_same_bytes() -> None:
    record = _store().parse(OLD_PACKED)
    assert record is not None
    assert (record.etag, record.size, record.inode, record.headers) == (
        "0123456789abcdef0123456789abcdef", 5, 1234, {"content-type": "text/plain"}
    )
    assert record.encryption is SSE_S3
    assert record.to_info("k").encryption is SSE_S3
    # The default costs nothing: the record packs exactly as it did.
    assert packed.pack(record, DEFAULT_CONTENT_TYPE) == OLD_PACKED


def test_old_json_record_loads_as_sse_s3_and_writes_the_same_bytes() -> None:
    record = _store().parse(OLD_JSON)
    assert record is not None
    assert (record.user_meta, record.tags, record.storage_class) == ({"a": "b"}, {"t": "v"}, "STANDARD_IA")
    assert record.encryption is SSE_S3
    assert record.to_json() == OLD_JSON


def test_kms_record_round_trips_in_json() -> None:
    meta = WriteMeta(headers={"content-type": "text/plain"}, encryption=KMS)
    record = Record.for_write(meta, "0123456789abcdef0123456789abcdef", 5, {})
    assert packed.pack(record, DEFAULT_CONTENT_TYPE) is None  # rare: not in the packed form
    data = record.to_json()
    assert json.loads(data)["sse"] == ["aws:kms", "arn:aws:kms:us-east-1:111122223333:key/k", True]
    loaded = _store().parse(data)
    assert loaded is not None and loaded.encryption == KMS
    assert loaded.to_info("k").encryption == KMS
    # Older code ignores the field it does not know (Record.from_doc reads named fields only).
    assert Record.from_doc({k: v for k, v in json.loads(data).items() if k != "sse"}) is not None


def test_explicit_aes256_is_the_shared_default() -> None:
    meta = WriteMeta(encryption=Encryption.of("AES256"))
    record = Record.for_write(meta, "0123456789abcdef0123456789abcdef", 5, {})
    assert record.encryption is SSE_S3
    assert packed.pack(record, DEFAULT_CONTENT_TYPE) is not None


def test_copy_takes_its_own_encryption_never_the_source() -> None:
    source = Record.for_write(WriteMeta(encryption=KMS), "0123456789abcdef0123456789abcdef", 5, {})
    assert source.copied(None).encryption is SSE_S3
    assert source.copied(WriteMeta()).encryption is SSE_S3
    dsse = Encryption.of("aws:kms:dsse")
    assert source.copied(WriteMeta(encryption=dsse)).encryption == dsse


def test_upload_meta_old_and_new() -> None:
    assert staging._upload_meta({"meta": OLD_UPLOAD}).encryption is None
    doc = {"meta": json.loads(json.dumps(dataclasses.asdict(WriteMeta(encryption=KMS))))}
    assert staging._upload_meta(doc).encryption == KMS


def test_headers_both_ways() -> None:
    assert SSE_S3.headers() == {"x-amz-server-side-encryption": "AES256"}
    headers = KMS.headers()
    assert headers == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:111122223333:key/k",
        "x-amz-server-side-encryption-bucket-key-enabled": "true",
    }
    assert Encryption.from_headers(headers) == KMS
    assert Encryption.from_headers({}) is SSE_S3  # an upstream that says nothing: S3's default


def test_bucket_default_of_a_stored_configuration() -> None:
    kms = {
        "Rule": {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k"},
            "BucketKeyEnabled": "true",
        }
    }
    assert bucket_default(kms) == Encryption.of("aws:kms", "k", True)
    aes = {"Rule": {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": "false"}}
    assert bucket_default(aes) is SSE_S3
