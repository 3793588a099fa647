"""Objects end to end: boto3 (default settings and when_required) against a live s3serve."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import socket
import struct
import time
import zlib
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import REGION, http, signed

KEYS = [
    "plain.txt",
    "with space.txt",
    "plus+sign",
    "percent%20literal",
    "question?mark",
    "hash#tag",
    "unicode/日本語/ファイル.txt",
    "emoji-😀",
    "tilde~and!bang'quote(paren)*star",
    "deep/a/b/c/d/e.bin",
    "trailing-dot.",
    "a=b&c=d",
    "new\nline",
]


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("key", KEYS)
def test_put_get_round_trip_keys(s3, bucket: str, key: str) -> None:
    body = os.urandom(1000) + key.encode()
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == [key]


def test_metadata_and_headers_round_trip(s3, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="doc.html",
        Body=b"<h1>hi</h1>",
        ContentType="text/html; charset=utf-8",
        ContentEncoding="identity",
        ContentDisposition='attachment; filename="doc.html"',
        ContentLanguage="en-GB",
        CacheControl="max-age=60",
        Expires=datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        Metadata={"color": "blue", "Mixed-Case": "Value With Spaces"},
        StorageClass="STANDARD_IA",
    )
    head = s3.head_object(Bucket=bucket, Key="doc.html")
    assert head["ContentType"] == "text/html; charset=utf-8"
    assert head["ContentEncoding"] == "identity"
    assert head["ContentDisposition"] == 'attachment; filename="doc.html"'
    assert head["ContentLanguage"] == "en-GB"
    assert head["CacheControl"] == "max-age=60"
    assert head["Expires"] == datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert head["Metadata"] == {"color": "blue", "mixed-case": "Value With Spaces"}
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["AcceptRanges"] == "bytes"
    assert "VersionId" not in head
    assert "x-amz-version-id" not in head["ResponseMetadata"]["HTTPHeaders"]


def test_default_content_type(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="noext", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="noext")["ContentType"] == "binary/octet-stream"


def test_unicode_metadata_is_rfc2047_encoded_as_s3_does(server, s3, bucket: str) -> None:
    # botocore refuses non-ASCII header values, so send the raw UTF-8 header signed by hand.
    r = signed(server, "PUT", f"/{bucket}/u", body=b"x", headers={"x-amz-meta-name": "Zoë"})
    assert r.status == 200, r.data
    head = s3.head_object(Bucket=bucket, Key="u")
    value = head["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-name"]
    assert value == "=?UTF-8?B?" + base64.b64encode("Zoë".encode()).decode() + "?="


def test_checksums_default_crc32(s3, bucket: str) -> None:
    body = b"hello checksum" * 1000
    put = s3.put_object(Bucket=bucket, Key="c", Body=body)
    expected = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert put["ChecksumCRC32"] == expected
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == expected
    got = s3.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == expected
    assert got["Body"].read() == body
    # Without checksum mode, no checksum headers.
    assert "ChecksumCRC32" not in s3.head_object(Bucket=bucket, Key="c")


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_checksum_algorithms(s3, bucket: str, algorithm: str) -> None:
    body = os.urandom(5000)
    put = s3.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm=algorithm)
    value = put[f"Checksum{algorithm}"]
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == value
    if algorithm == "SHA256":
        assert value == base64.b64encode(hashlib.sha256(body).digest()).decode()
    if algorithm == "SHA1":
        assert value == base64.b64encode(hashlib.sha1(body).digest()).decode()


def test_no_checksum_gets_crc64nvme(s3_when_required, bucket: str) -> None:
    s3_when_required.put_object(Bucket=bucket, Key="k", Body=b"data")
    head = s3_when_required.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert "ChecksumCRC64NVME" in head


def test_wrong_checksum_is_refused(s3, bucket: str) -> None:
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data", ChecksumCRC32=wrong)
    assert _error(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert _error(exc)[1] == 404


def test_content_md5(s3_when_required, bucket: str) -> None:
    body = b"md5 me"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3_when_required.put_object(Bucket=bucket, Key="k", Body=body, ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"nope").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3_when_required.put_object(Bucket=bucket, Key="k2", Body=body, ContentMD5=bad)
    assert _error(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        s3_when_required.put_object(Bucket=bucket, Key="k2", Body=body, ContentMD5="not-base64!")
    assert _error(exc) == ("InvalidDigest", 400)


def test_listed_last_modified_is_head_last_modified(s3, bucket: str) -> None:
    # S3 keeps LastModified to the second: a listing says what HEAD and GET say, so sync tools
    # comparing a listed time with a file's mtime (set from either) see the same instant.
    s3.put_object(Bucket=bucket, Key="when", Body=b"x")
    copied = s3.copy_object(Bucket=bucket, Key="when-copy", CopySource={"Bucket": bucket, "Key": "when"})
    listed = {c["Key"]: c["LastModified"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed["when"] == s3.head_object(Bucket=bucket, Key="when")["LastModified"]
    assert listed["when-copy"] == s3.head_object(Bucket=bucket, Key="when-copy")["LastModified"]
    assert copied["CopyObjectResult"]["LastModified"] == listed["when-copy"]
    assert s3.list_objects(Bucket=bucket)["Contents"][0]["LastModified"].microsecond == 0


def test_ranges(s3, bucket: str) -> None:
    body = bytes(range(256)) * 40
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    for header, expected, content_range in [
        ("bytes=0-9", body[:10], f"bytes 0-9/{len(body)}"),
        ("bytes=100-", body[100:], f"bytes 100-{len(body) - 1}/{len(body)}"),
        ("bytes=-7", body[-7:], f"bytes {len(body) - 7}-{len(body) - 1}/{len(body)}"),
        ("bytes=10000-20000", body[10000:], f"bytes 10000-{len(body) - 1}/{len(body)}"),
    ]:
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == content_range
        assert got["Body"].read() == expected
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={len(body)}-")
    assert _error(exc) == ("InvalidRange", 416)
    # A range S3 cannot parse is ignored: the whole object.
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=9-3")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == body


def test_part_number_on_plain_object(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="p", PartNumber=1)
    assert got["Body"].read() == b"0123456789"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="p", PartNumber=2)
    assert _error(exc) == ("InvalidPartNumber", 416)


def test_ranges_and_part_number_on_an_empty_object(s3, bucket: str) -> None:
    """An empty object has no byte to name. As S3 answers: a suffix range or partNumber=1 gets
    the (empty) object with 200 and no Content-Range; a range from byte 0 is unsatisfiable."""
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    for kwargs in ({"Range": "bytes=-5"}, {"PartNumber": 1}):
        got = s3.get_object(Bucket=bucket, Key="empty", **kwargs)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 200, kwargs
        assert "ContentRange" not in got and got["ContentLength"] == 0 and got["Body"].read() == b""
        head = s3.head_object(Bucket=bucket, Key="empty", **kwargs)
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 200 and "ContentRange" not in head
    for header in ("bytes=0-0", "bytes=-0"):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key="empty", Range=header)
        assert _error(exc) == ("InvalidRange", 416)


def test_conditional_get(s3, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"v1")
    etag = put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="c")
    modified = head["LastModified"]
    later = modified + datetime.timedelta(hours=1)
    earlier = modified - datetime.timedelta(hours=1)
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert _error(exc) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert _error(exc)[1] == 304
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=modified)
    assert _error(exc)[1] == 304
    # A date in the future is invalid (RFC 9110 §13.1.3): ignored, as S3 ignores it.
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=later)["Body"].read() == b"v1"
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=earlier)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=earlier)
    assert _error(exc) == ("PreconditionFailed", 412)
    # S3's precedence: If-Match true wins over If-Unmodified-Since false.
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag, IfUnmodifiedSince=earlier)["Body"].read() == b"v1"
    # If-None-Match false (etag differs) wins over If-Modified-Since.
    assert s3.get_object(Bucket=bucket, Key="c", IfNoneMatch='"x"', IfModifiedSince=modified)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert _error(exc)[1] == 412


def test_conditional_put(s3, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"v1", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfNoneMatch="*")
    assert _error(exc) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfMatch='"ffff"')
    assert _error(exc) == ("PreconditionFailed", 412)
    s3.put_object(Bucket=bucket, Key="c", Body=b"v3", IfMatch=put["ETag"])
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"v3"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"v", IfMatch=put["ETag"])
    assert _error(exc) == ("NoSuchKey", 404)


def test_response_overrides(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition="attachment; filename=x.json",
        ResponseCacheControl="no-cache",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "attachment; filename=x.json"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentEncoding"] == "identity"


def test_missing_key_and_bucket(s3, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="absent")
    assert _error(exc) == ("NoSuchKey", 404)
    assert exc.value.response["Error"]["Key"] == "absent"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="absent")
    assert _error(exc)[1] == 404
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="no-such-bucket-here", Key="x")
    assert _error(exc) == ("NoSuchBucket", 404)


def test_delete_object(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="d/x", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="d/x")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="d/x")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="never", VersionId="null")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_delete_objects(s3, bucket: str) -> None:
    keys = [f"k{i:03d}" for i in range(50)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[:30]] + [{"Key": "absent"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == sorted(keys[:30] + ["absent"])
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[30:]], "Quiet": True})
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    bad = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k" * 1025}, {"Key": "a/../b"}]})
    assert [(e["Key"], e["Code"]) for e in bad["Errors"]] == [("k" * 1025, "KeyTooLongError")]
    assert [d["Key"] for d in bad["Deleted"]] == ["a/../b"]  # a key S3 takes, never held here


def test_conditional_deletes(s3, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="cd", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="cd", IfMatch='"00000000000000000000000000000000"')
    assert _error(exc) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="cd")["Body"].read() == b"v1"  # still there
    assert s3.delete_object(Bucket=bucket, Key="cd", IfMatch=etag)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="cd")
    # If-Match on an absent object: NoSuchKey, where an unconditional delete answers 204.
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="cd", IfMatch=etag)
    assert _error(exc) == ("NoSuchKey", 404)
    s3.put_object(Bucket=bucket, Key="cd", Body=b"v2")
    s3.delete_object(Bucket=bucket, Key="cd", IfMatch="*")  # "if it exists"
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="cd", IfMatch="*")
    assert _error(exc) == ("NoSuchKey", 404)
    # DeleteObjects: an Object's ETag makes its delete conditional.
    kept = s3.put_object(Bucket=bucket, Key="keep", Body=b"k")["ETag"]
    gone = s3.put_object(Bucket=bucket, Key="gone", Body=b"g")["ETag"]
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "keep", "ETag": '"00000000000000000000000000000000"'},
        {"Key": "gone", "ETag": gone},
        {"Key": "absent", "ETag": kept},
    ]})  # fmt: skip
    assert [d["Key"] for d in answer["Deleted"]] == ["gone"]
    assert sorted((e["Key"], e["Code"]) for e in answer["Errors"]) == [("absent", "NoSuchKey"), ("keep", "PreconditionFailed")]
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"k"


def test_delete_objects_malformed(server, bucket: str) -> None:
    s3 = server.client()
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": []})
    assert _error(exc) == ("MalformedXML", 400)
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": str(i)} for i in range(1001)]})
    assert _error(exc) == ("MalformedXML", 400)


def test_copy_object(s3, bucket: str) -> None:
    body = os.urandom(300_000)
    s3.put_object(Bucket=bucket, Key="src key+1", Body=body, ContentType="image/png", Metadata={"a": "1"}, Tagging="t=1")
    result = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src key+1"})
    assert result["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ContentType"] == "image/png" and head["Metadata"] == {"a": "1"}
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == body
    assert s3.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"] == [{"Key": "t", "Value": "1"}]
    # REPLACE
    s3.copy_object(
        Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src key+1", MetadataDirective="REPLACE",
        ContentType="text/plain", Metadata={"b": "2"},
    )
    head = s3.head_object(Bucket=bucket, Key="dst2")
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"b": "2"}
    # Onto itself: only with REPLACE.
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "dst"})
    assert _error(exc) == ("InvalidRequest", 400)
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "dst"}, MetadataDirective="REPLACE", Metadata={"c": "3"})
    assert s3.head_object(Bucket=bucket, Key="dst")["Metadata"] == {"c": "3"}
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == body


def test_copy_with_a_checksum_algorithm_gets_that_checksum(s3, bucket: str) -> None:
    # x-amz-checksum-algorithm on CopyObject gives the copy that checksum, computed over its bytes,
    # whatever the metadata directive; with COPY it was ignored and the source's was kept. S3
    # copies the source's only when the request names none, and lets a copy onto itself add one.
    body = b"checksummed bytes"
    meta = {"ContentType": "text/x", "Metadata": {"m": "1"}}
    s3.put_object(Bucket=bucket, Key="ck", Body=body, ChecksumAlgorithm="CRC32C", **meta)
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    src = {"Bucket": bucket, "Key": "ck"}
    result = s3.copy_object(Bucket=bucket, Key="ck2", CopySource=src, ChecksumAlgorithm="SHA256")
    assert result["CopyObjectResult"].get("ChecksumSHA256") == sha
    head = s3.head_object(Bucket=bucket, Key="ck2", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256") == sha and "ChecksumCRC32C" not in head
    assert head["ContentType"] == "text/x" and head["Metadata"] == {"m": "1"}  # still the source's
    s3.copy_object(Bucket=bucket, Key="ck", CopySource=src, ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256") == sha and head["Metadata"] == {"m": "1"}
    assert s3.get_object(Bucket=bucket, Key="ck")["Body"].read() == body


def test_copy_replacing_tags_without_a_tagging_header_has_none(s3, bucket: str) -> None:
    # x-amz-tagging's default is the empty tag-set: REPLACE without it leaves the copy untagged,
    # where the source's tags were kept.
    s3.put_object(Bucket=bucket, Key="tagged", Body=b"x", Tagging="t=1")
    src = {"Bucket": bucket, "Key": "tagged"}
    s3.copy_object(Bucket=bucket, Key="untagged", CopySource=src, TaggingDirective="REPLACE")
    assert s3.get_object_tagging(Bucket=bucket, Key="untagged")["TagSet"] == []
    assert "TagCount" not in s3.head_object(Bucket=bucket, Key="untagged")
    s3.copy_object(
        Bucket=bucket, Key="replaced", CopySource=src, MetadataDirective="REPLACE", TaggingDirective="REPLACE"
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="replaced")["TagSet"] == []
    s3.copy_object(Bucket=bucket, Key="tagged", CopySource=src, TaggingDirective="REPLACE")  # onto itself
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == []
    assert s3.get_object(Bucket=bucket, Key="tagged")["Body"].read() == b"x"


def test_website_redirect_location(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="page.html", Body=b"old page", WebsiteRedirectLocation="/new.html")
    assert s3.head_object(Bucket=bucket, Key="page.html")["WebsiteRedirectLocation"] == "/new.html"
    got = s3.get_object(Bucket=bucket, Key="page.html")
    assert got["WebsiteRedirectLocation"] == "/new.html" and got["Body"].read() == b"old page"
    for bad in ("new.html", "ftp://example.test/", "/" + "x" * 2048):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="bad", Body=b"x", WebsiteRedirectLocation=bad)
        assert _error(exc) == ("InvalidRedirectLocation", 400)
    # S3 never copies it, whatever the metadata directive; a copy has the one its request gives.
    src = {"Bucket": bucket, "Key": "page.html"}
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=src)
    assert "WebsiteRedirectLocation" not in s3.head_object(Bucket=bucket, Key="copy")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=src, MetadataDirective="REPLACE", ContentType="text/html")
    assert "WebsiteRedirectLocation" not in s3.head_object(Bucket=bucket, Key="copy")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=src, WebsiteRedirectLocation="https://example.test/")
    head = s3.head_object(Bucket=bucket, Key="copy")
    assert head["WebsiteRedirectLocation"] == "https://example.test/" and head["ContentType"] == "binary/octet-stream"
    # A new redirect location is a change: a copy onto itself with it is allowed.
    s3.copy_object(Bucket=bucket, Key="page.html", CopySource=src, WebsiteRedirectLocation="/newer.html")
    assert s3.head_object(Bucket=bucket, Key="page.html")["WebsiteRedirectLocation"] == "/newer.html"
    # Multipart uploads keep it for the object they make.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", WebsiteRedirectLocation="/elsewhere")
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"part")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    assert s3.head_object(Bucket=bucket, Key="mp")["WebsiteRedirectLocation"] == "/elsewhere"


def test_copy_conditions_and_errors(s3, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="s", Body=b"x")
    src = {"Bucket": bucket, "Key": "s"}
    s3.copy_object(Bucket=bucket, Key="d1", CopySource=src, CopySourceIfMatch=put["ETag"])
    # Not modified since its own Last-Modified (a date in the future would be ignored).
    modified = s3.head_object(Bucket=bucket, Key="s")["LastModified"]
    for kwargs in (
        {"CopySourceIfMatch": '"nope"'},
        {"CopySourceIfNoneMatch": put["ETag"]},
        {"CopySourceIfModifiedSince": modified},
        {"CopySourceIfUnmodifiedSince": datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)},
    ):
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="d2", CopySource=src, **kwargs)
        assert _error(exc) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d2", CopySource={"Bucket": bucket, "Key": "missing"})
    assert _error(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d2", CopySource={"Bucket": "no-such-bucket-x", "Key": "s"})
    assert _error(exc) == ("NoSuchBucket", 404)


def test_copy_across_buckets(s3, bucket: str) -> None:
    other = bucket + "-b"
    s3.create_bucket(Bucket=other)
    try:
        s3.put_object(Bucket=bucket, Key="x", Body=b"across")
        s3.copy_object(Bucket=other, Key="y", CopySource={"Bucket": bucket, "Key": "x"})
        assert s3.get_object(Bucket=other, Key="y")["Body"].read() == b"across"
    finally:
        s3.delete_object(Bucket=other, Key="y")
        s3.delete_bucket(Bucket=other)


def test_tagging(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two%20words")
    tags = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "1"), ("b", "two words")]
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "z", "Value": "9"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "z", "Value": "9"}]
    # Spaces around a tag's key and value are part of them, through the XML as through the header.
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": " k ", "Value": " v"}, {"Key": "k", "Value": "v"}]})
    tags = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [(" k ", " v"), ("k", "v")]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]})
    assert _error(exc)[1] == 400
    with pytest.raises(ClientError) as exc:
        s3.get_object_tagging(Bucket=bucket, Key="absent")
    assert _error(exc) == ("NoSuchKey", 404)


def test_head_answers_the_tag_count_as_get_does(s3, bucket: str) -> None:
    # S3's HeadObject answers x-amz-tagging-count like GetObject (HeadObjectOutput.TagCount).
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=2")
    s3.put_object(Bucket=bucket, Key="u", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="t")["TagCount"] == 2
    assert s3.head_object(Bucket=bucket, Key="t", Range="bytes=0-0")["TagCount"] == 2
    assert "TagCount" not in s3.head_object(Bucket=bucket, Key="u")


def test_folder_marker(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="folder/", Body=b"")
    s3.put_object(Bucket=bucket, Key="folder/file", Body=b"f")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["folder/", "folder/file"]
    head = s3.head_object(Bucket=bucket, Key="folder/")
    assert head["ContentLength"] == 0
    s3.delete_object(Bucket=bucket, Key="folder/file")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["folder/"]


@pytest.mark.parametrize(
    "key,code",
    [
        ("a/../b", "InvalidArgument"),
        ("a/./b", "InvalidArgument"),
        ("a//b", "InvalidArgument"),
        ("..", "InvalidArgument"),
        ("x" * 256, "KeyTooLongError"),
        ("/".join(["y" * 200] * 6), "KeyTooLongError"),
    ],
)
def test_unmappable_keys_are_refused(s3, bucket: str, key: str, code: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert _error(exc)[0] == code
    assert _error(exc)[1] == 400


def test_file_folder_conflicts(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"file")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="a/b", Body=b"x")
    assert _error(exc) == ("ObjectParentIsFile", 409)
    s3.put_object(Bucket=bucket, Key="d/e", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    assert _error(exc) == ("ExistingObjectIsDirectory", 409)
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"file"


def test_traversal_never_leaves_root(server, bucket: str) -> None:
    # Percent-encoded traversal reaches the server as a key with '..' segments: refused.
    # (upper-case escapes: urllib3 upper-cases them on the wire, and the signature must cover what is sent)
    for path in ("%2E%2E%2F%2E%2E%2Fescaped", "..%2Fescaped", "a/%2E%2E/%2E%2E/escaped", "../../escaped"):
        r = signed(server, "PUT", f"/{bucket}/{path}", body=b"x")
        assert r.status == 400, r.data
        assert b"<Code>InvalidArgument</Code>" in r.data
    if server.root is not None:
        assert not (server.root.parent / "escaped").exists()
        assert not (server.root / "escaped").exists()


def test_empty_object(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b"" and got["ContentLength"] == 0
    assert got["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'


def test_large_object_streams(s3, bucket: str, tmp_path) -> None:
    path = tmp_path / "big"
    with open(path, "wb") as f:
        for _ in range(24):
            f.write(os.urandom(1024 * 1024))
    # A single PUT (no multipart) of 24 MiB, then a download compared byte for byte.
    with open(path, "rb") as f:
        s3.put_object(Bucket=bucket, Key="big", Body=f)
    got = s3.get_object(Bucket=bucket, Key="big")
    digest = hashlib.md5()
    for chunk in got["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.md5(path.read_bytes()).hexdigest()
    assert got["ETag"] == f'"{digest.hexdigest()}"'


def test_out_of_range_condition_date_is_ignored(server, s3, bucket: str) -> None:
    # A date S3 cannot use is ignored like any other unparsable date, not a 500.
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    for name in ("If-Modified-Since", "If-Unmodified-Since"):
        for method in ("GET", "HEAD"):
            r = signed(server, method, f"/{bucket}/d", headers={name: "Sun, 06 Nov 99999999999 08:49:37 GMT"})
            assert r.status == 200, r.data


def test_response_override_with_control_character_is_refused(server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "o", "ResponseContentType": "text/plain\r\nX-Injected: 1"}
    )
    r = http("GET", url)
    assert r.status == 400, r.data
    assert b"<Code>InvalidArgument</Code>" in r.data
    assert "X-Injected" not in r.headers


def test_client_leaving_mid_download_logs_no_traceback(server, s3, bucket: str) -> None:
    if server.log_path is None:
        pytest.skip("needs the local server's log")
    s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(8 * 1024 * 1024))
    request = AWSRequest(method="GET", url=f"{server.endpoint}/{bucket}/big", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    host = urlsplit(server.endpoint)
    before = len(server.log_path.read_bytes())
    with socket.create_connection((host.hostname, host.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        sock.sendall(f"GET /{bucket}/big HTTP/1.1\r\nHost: {host.netloc}\r\n{head}\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        time.sleep(0.3)
        # Reset, not a clean close: the server is still sending the body.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.5)
    assert s3.get_object(Bucket=bucket, Key="big", Range="bytes=0-0")["Body"].read()
    logged = server.log_path.read_bytes()[before:]
    assert b"Traceback" not in logged and b"ERROR" not in logged, logged.decode(errors="replace")


def test_a_file_cut_short_mid_download_ends_the_connection(server, s3, bucket: str) -> None:
    # Another program truncates a file while it is being sent: the answer cannot reach its
    # Content-Length, and a connection left open would hold the client until its read timeout.
    if server.root is None:
        pytest.skip("needs the local server's folder")
    path = server.root / bucket / "cut"
    path.write_bytes(os.urandom(32 * 1024 * 1024))
    request = AWSRequest(method="GET", url=f"{server.endpoint}/{bucket}/cut", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    host = urlsplit(server.endpoint)
    with socket.create_connection((host.hostname, host.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        sock.sendall(f"GET /{bucket}/cut HTTP/1.1\r\nHost: {host.netloc}\r\n{head}\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        time.sleep(0.3)
        os.truncate(path, 1024 * 1024)
        sock.settimeout(5)
        received = 0
        while chunk := sock.recv(1 << 20):  # socket.timeout here: the connection was left open
            received += len(chunk)
    assert received < 32 * 1024 * 1024
