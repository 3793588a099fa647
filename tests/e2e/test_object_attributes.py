"""GetObjectAttributes against the live server: boto3 and the aws cli, on objects put whole, made
by multipart uploads and dropped into the bucket folder by another program; checksums checked
against independently computed values."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from typing import Any
from xml.etree import ElementTree

import pytest
from awscrt import checksums as crt
from botocore.exceptions import ClientError

from tests.conftest import Server, signed

MIB = 1024 * 1024
PART = 5 * MIB  # the session server's --min-part-size
ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


def _multipart(s3: Any, bucket: str, key: str, parts: list[bytes], **create: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Create, upload ``parts`` (1..N) as boto3 sends them, complete: what UploadPart and
    CompleteMultipartUpload answered."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    algorithm = create.get("ChecksumAlgorithm")
    answers = []
    for number, data in enumerate(parts, 1):
        extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
        answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, **extra)
        listed = {"PartNumber": number, "ETag": answer["ETag"]}
        if algorithm:
            listed[f"Checksum{algorithm}"] = answer[f"Checksum{algorithm}"]
        answers.append(listed)
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": answers})
    return answers, done


# -- objects put whole -----------------------------------------------------------------------------


def test_simple_object(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    body = b"attributes of a small object\n" * 100
    put = s3.put_object(Bucket=bucket, Key="dir/simple.txt", Body=body)
    got = s3.get_object_attributes(Bucket=bucket, Key="dir/simple.txt", ObjectAttributes=ALL)
    # Unquoted here, unlike PutObject's ETag header.
    assert got["ETag"] == put["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    assert got["ObjectSize"] == len(body)
    assert got["StorageClass"] == "STANDARD"
    # boto3 sends a CRC32 with every upload by default.
    crc32 = b64(zlib.crc32(body).to_bytes(4, "big"))
    assert got["Checksum"] == {"ChecksumCRC32": crc32, "ChecksumType": "FULL_OBJECT"}
    assert put["ChecksumCRC32"] == crc32
    # Not a multipart object: no ObjectParts at all.
    assert "ObjectParts" not in got
    assert got["LastModified"] == s3.head_object(Bucket=bucket, Key="dir/simple.txt")["LastModified"]
    # An unversioned bucket: no version id, no delete marker.
    headers = got["ResponseMetadata"]["HTTPHeaders"]
    assert "x-amz-version-id" not in headers and "x-amz-delete-marker" not in headers
    assert headers["content-type"] == "application/xml"


def test_only_the_requested_attributes(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="k", Body=b"12345", StorageClass="STANDARD_IA", ChecksumAlgorithm="SHA256")
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize", "StorageClass"])
    assert {k for k in got if k != "ResponseMetadata"} == {"LastModified", "ObjectSize", "StorageClass"}
    assert got["ObjectSize"] == 5 and got["StorageClass"] == "STANDARD_IA"
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Checksum"])
    assert got["Checksum"] == {"ChecksumSHA256": b64(hashlib.sha256(b"12345").digest()), "ChecksumType": "FULL_OBJECT"}
    assert "ETag" not in got and "ObjectSize" not in got


def test_empty_object_and_version_null(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object_attributes(Bucket=bucket, Key="empty", ObjectAttributes=["ETag", "ObjectSize"], VersionId="null")
    assert got["ETag"] == "d41d8cd98f00b204e9800998ecf8427e" and got["ObjectSize"] == 0
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="empty", ObjectAttributes=["ETag"], VersionId="3HL4kqtJlcpXroDTDmJ")
    assert _error(exc) == ("InvalidArgument", 400)


def test_foreign_file(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    if server.root is None:
        pytest.skip("needs the server's root directory")
    data = os.urandom(3000)
    (server.root / bucket / "dropped").mkdir()
    (server.root / bucket / "dropped" / "by-hand.bin").write_bytes(data)
    got = s3.get_object_attributes(Bucket=bucket, Key="dropped/by-hand.bin", ObjectAttributes=ALL)
    assert got["ETag"] == hashlib.md5(data).hexdigest()
    assert got["ObjectSize"] == len(data) and got["StorageClass"] == "STANDARD"
    # Nobody told s3serve a checksum of it, and it was never a multipart upload.
    assert "Checksum" not in got and "ObjectParts" not in got


# -- multipart objects -----------------------------------------------------------------------------


def test_multipart_composite_parts_and_pages(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(PART), os.urandom(PART), b"tail" * 300]
    answers, done = _multipart(s3, bucket, "mpu", parts, ChecksumAlgorithm="SHA256")
    got = s3.get_object_attributes(Bucket=bucket, Key="mpu", ObjectAttributes=ALL)
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert got["ETag"] == done["ETag"].strip('"') == f"{hashlib.md5(md5s).hexdigest()}-3"
    assert got["ObjectSize"] == sum(map(len, parts))
    # The checksum of the parts' checksums: S3 gives it here without HeadObject's "-3".
    composite = b64(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest())
    assert done["ChecksumSHA256"] == f"{composite}-3"
    assert got["Checksum"] == {"ChecksumSHA256": composite, "ChecksumType": "COMPOSITE"}
    expected = [
        {"PartNumber": n, "Size": len(p), "ChecksumSHA256": b64(hashlib.sha256(p).digest())} for n, p in enumerate(parts, 1)
    ]
    assert [a["ChecksumSHA256"] for a in answers] == [e["ChecksumSHA256"] for e in expected]
    assert got["ObjectParts"] == {
        "TotalPartsCount": 3,
        "PartNumberMarker": 0,
        "NextPartNumberMarker": 3,
        "MaxParts": 1000,
        "IsTruncated": False,
        "Parts": expected,
    }
    # Pages of parts, as ListParts pages them.
    first = s3.get_object_attributes(Bucket=bucket, Key="mpu", ObjectAttributes=["ObjectParts"], MaxParts=2)
    assert first["ObjectParts"] == {
        "TotalPartsCount": 3,
        "PartNumberMarker": 0,
        "NextPartNumberMarker": 2,
        "MaxParts": 2,
        "IsTruncated": True,
        "Parts": expected[:2],
    }
    second = s3.get_object_attributes(
        Bucket=bucket, Key="mpu", ObjectAttributes=["ObjectParts"], MaxParts=2, PartNumberMarker=2
    )
    assert second["ObjectParts"] == {
        "TotalPartsCount": 3,
        "PartNumberMarker": 2,
        "NextPartNumberMarker": 3,
        "MaxParts": 2,
        "IsTruncated": False,
        "Parts": expected[2:],
    }
    past = s3.get_object_attributes(Bucket=bucket, Key="mpu", ObjectAttributes=["ObjectParts"], PartNumberMarker=3)
    assert past["ObjectParts"]["IsTruncated"] is False and "Parts" not in past["ObjectParts"]
    assert past["ObjectParts"]["TotalPartsCount"] == 3


def test_multipart_full_object_checksum(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """No algorithm asked for: the default CRC64NVME of the whole object, and parts without
    checksums of their own."""
    parts = [os.urandom(PART), b"end" * 100]
    _multipart(s3, bucket, "full", parts)
    got = s3.get_object_attributes(Bucket=bucket, Key="full", ObjectAttributes=["Checksum", "ObjectParts"])
    crc64 = b64(crt.crc64nvme(b"".join(parts)).to_bytes(8, "big"))
    assert got["Checksum"] == {"ChecksumCRC64NVME": crc64, "ChecksumType": "FULL_OBJECT"}
    assert got["ObjectParts"]["TotalPartsCount"] == 2
    assert got["ObjectParts"]["Parts"] == [{"PartNumber": 1, "Size": PART}, {"PartNumber": 2, "Size": 300}]


# -- errors ----------------------------------------------------------------------------------------


def test_errors(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert _error(exc) == ("NoSuchKey", 404)
    assert exc.value.response["Error"]["Key"] == "missing"
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket="no-such-bucket-zz", Key="k", ObjectAttributes=["ETag"])
    assert _error(exc) == ("NoSuchBucket", 404)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag", "Owner"])
    assert _error(exc) == ("InvalidArgument", 400)
    assert exc.value.response["Error"]["Message"] == "Invalid attribute name specified."
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectParts"], MaxParts=-1)
    assert _error(exc) == ("InvalidArgument", 400)
    # A missing or empty x-amz-object-attributes header, which boto3 will not send.
    for headers in ({}, {"x-amz-object-attributes": ""}):
        answer = signed(server, "GET", f"/{bucket}/k?attributes", headers=headers)
        assert answer.status == 400
        error = ElementTree.fromstring(answer.data)
        assert error.findtext("Code") == "InvalidArgument"
        assert error.findtext("Message") == "Invalid attribute name specified."


def test_raw_answer_and_conditions(server: Server, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"conditions")["ETag"]
    answer = signed(server, "GET", f"/{bucket}/k?attributes", headers={"x-amz-object-attributes": "ObjectSize,ETag"})
    assert answer.status == 200
    doc = ElementTree.fromstring(answer.data)
    assert doc.tag == f"{NS}GetObjectAttributesResponse"
    assert [child.tag for child in doc] == [f"{NS}ETag", f"{NS}ObjectSize"]
    assert doc.findtext(f"{NS}ETag") == etag.strip('"')
    # As the operation's reference describes: HeadObject's conditions.
    wanted = {"x-amz-object-attributes": "ETag"}
    answer = signed(server, "GET", f"/{bucket}/k?attributes", headers={**wanted, "If-None-Match": etag})
    assert answer.status == 304 and answer.headers["ETag"] == etag
    answer = signed(server, "GET", f"/{bucket}/k?attributes", headers={**wanted, "If-Match": '"0000"'})
    assert answer.status == 412
    answer = signed(server, "GET", f"/{bucket}/k?attributes", headers={**wanted, "If-Match": etag})
    assert answer.status == 200


# -- the aws cli -----------------------------------------------------------------------------------


@pytest.mark.awscli
def test_aws_cli(aws, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    body = b"from the aws cli\n" * 10
    put = s3.put_object(Bucket=bucket, Key="cli key.txt", Body=body)
    out = json.loads(
        aws(
            "s3api", "get-object-attributes", "--bucket", bucket, "--key", "cli key.txt",
            "--object-attributes", "ETag", "ObjectSize", "StorageClass", "Checksum",
        ).stdout
    )
    assert out["ETag"] == put["ETag"].strip('"')
    assert out["ObjectSize"] == len(body) and out["StorageClass"] == "STANDARD"
    # Debian's aws cli has a service model older than ChecksumType.
    assert out["Checksum"]["ChecksumCRC32"] == put["ChecksumCRC32"]
    assert out["Checksum"].get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
    assert "LastModified" in out and "ObjectParts" not in out
    parts = [os.urandom(PART), b"cli" * 10]
    _multipart(s3, bucket, "cli-mpu", parts, ChecksumAlgorithm="CRC32")
    out = json.loads(
        aws(
            "s3api", "get-object-attributes", "--bucket", bucket, "--key", "cli-mpu",
            "--object-attributes", "ObjectParts", "--max-parts", "1",
        ).stdout
    )
    crc = b64(zlib.crc32(parts[0]).to_bytes(4, "big"))
    assert out["ObjectParts"] == {
        "TotalPartsCount": 2,
        "PartNumberMarker": 0,
        "NextPartNumberMarker": 1,
        "MaxParts": 1,
        "IsTruncated": True,
        "Parts": [{"PartNumber": 1, "Size": PART, "ChecksumCRC32": crc}],
    }
    missing = aws("s3api", "get-object-attributes", "--bucket", bucket, "--key", "nope", "--object-attributes", "ETag", check=False)
    assert missing.returncode != 0 and "NoSuchKey" in missing.stderr
