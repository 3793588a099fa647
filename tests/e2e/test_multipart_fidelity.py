"""Multipart uploads held against what S3 itself answers (observed answers of AWS recorded by
OpenStack Swift's s3api tests, LocalStack's and floci's snapshot runs): part checksums of composite
uploads, malformed checksums in CompleteMultipartUpload, and the 5 GiB ceiling of UploadPartCopy."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, signed

MIB = 1024 * 1024
PART = 5 * MIB  # the session server's --min-part-size
GIB5 = 5 * 1024**3


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def error(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, str]:
    return dict(exc.value.response["Error"])


def non_canonical(value: str) -> str:
    """The same digest with a padding bit set: base64 decoders that do not check those bits
    accept it, S3 does not."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = value.rstrip("=")
    bumped = alphabet[alphabet.index(last[-1]) + 1]
    return last[:-1] + bumped + value[len(last) :]


def _start(s3, bucket: str, key: str, parts: list[bytes], algorithm: str, kind: str | None = None):  # type: ignore[no-untyped-def]
    """Create an upload with ``algorithm`` and upload ``parts`` with their checksums; returns the
    upload id and the parts as Complete lists them (ETag and the part's checksum)."""
    create = {"ChecksumAlgorithm": algorithm, **({"ChecksumType": kind} if kind else {})}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    listed = []
    for number, data in enumerate(parts, 1):
        answer = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, ChecksumAlgorithm=algorithm
        )
        listed.append({"PartNumber": number, "ETag": answer["ETag"], f"Checksum{algorithm}": answer[f"Checksum{algorithm}"]})
    return upload_id, listed


def test_composite_upload_parts_must_carry_their_checksum(s3, s3_when_required, bucket: str) -> None:  # type: ignore[no-untyped-def]
    for algorithm in ("SHA256", "CRC32"):
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="c", ChecksumAlgorithm=algorithm)["UploadId"]
        with pytest.raises(ClientError) as exc:
            s3_when_required.upload_part(Bucket=bucket, Key="c", UploadId=upload_id, PartNumber=1, Body=b"no checksum")
        assert error(exc)["Code"] == "InvalidRequest"
        assert error(exc)["Message"] == (
            f"Checksum Type mismatch occurred, expected checksum Type: {algorithm.lower()}, actual checksum Type: null"
        )
        assert s3.list_parts(Bucket=bucket, Key="c", UploadId=upload_id).get("Parts", []) == []
        s3.abort_multipart_upload(Bucket=bucket, Key="c", UploadId=upload_id)

    # A full-object upload's parts need none: the object's CRC is the parts' combined.
    parts = [os.urandom(PART), b"last part"]
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key="f", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    listed = [
        {"PartNumber": n, "ETag": s3_when_required.upload_part(Bucket=bucket, Key="f", UploadId=upload_id, PartNumber=n, Body=data)["ETag"]}
        for n, data in enumerate(parts, 1)
    ]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="f", UploadId=upload_id, MultipartUpload={"Parts": listed})
    assert done["ChecksumCRC32"] == b64(crc32(b"".join(parts))) and done["ChecksumType"] == "FULL_OBJECT"
    assert s3.get_object(Bucket=bucket, Key="f")["Body"].read() == b"".join(parts)


def test_composite_complete_must_name_every_part_checksum(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(PART), os.urandom(PART), b"tail"]
    upload_id, listed = _start(s3, bucket, "k", parts, "SHA256")
    bare = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed]
    for without in ([bare[0], *listed[1:]], [*listed[:2], bare[2]]):
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": without})
        missing = next(p["PartNumber"] for p in without if "ChecksumSHA256" not in p)
        assert error(exc)["Code"] == "InvalidRequest"
        assert error(exc)["Message"] == (
            "The upload was created using a sha256 checksum. The complete request must include the checksum "
            f"for each part. It was missing for part {missing} in the request."
        )
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    done = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": listed})
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    assert done["ChecksumSHA256"] == b64(composite) + "-3" and done["ChecksumType"] == "COMPOSITE"
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts) and got["ChecksumSHA256"] == done["ChecksumSHA256"]


def test_complete_refuses_malformed_part_checksums(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(PART), b"tail"]
    upload_id, listed = _start(s3, bucket, "k", parts, "CRC32")
    good = listed[0]["ChecksumCRC32"]

    def complete(first: dict[str, object]) -> dict[str, str]:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": [first, listed[1]]}
            )
        return error(exc)

    invalid = non_canonical(good)
    assert base64.b64decode(invalid) == base64.b64decode(good)  # lenient decoders see the same digest
    answer = complete({**listed[0], "ChecksumCRC32": invalid})
    assert answer["Code"] == "InvalidArgument"
    assert answer["Message"] == "Invalid Base64 or multiple checksums present in request"
    assert (answer["ArgumentName"], answer["ArgumentValue"]) == ("Checksum", f"CRC32:{invalid};")
    answer = complete({**listed[0], "ChecksumSHA256": b64(hashlib.sha256(parts[0]).digest())})
    assert answer["Code"] == "InvalidArgument"
    # A well-formed checksum of other bytes: S3's plain InvalidPart, as for a wrong ETag.
    answer = complete({**listed[0], "ChecksumCRC32": b64(crc32(b"other bytes"))})
    assert answer["Code"] == "InvalidPart"
    assert answer["Message"].startswith("One or more of the specified parts could not be found.")
    assert (answer["PartNumber"], answer["UploadId"]) == ("1", upload_id)
    # Nothing was published and the upload still completes.
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": listed})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"".join(parts)


def test_complete_checks_the_object_checksum_value(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(PART), b"tail"]
    upload_id, listed = _start(s3, bucket, "k", parts, "SHA256")
    composite = b64(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest())

    def refused(value: str) -> dict[str, str]:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": listed}, ChecksumSHA256=value
            )
        return error(exc)

    for value in ("not base64!", composite[:-4], f"{composite}-a", f"{composite}-", non_canonical(composite)):
        answer = refused(value)
        assert (answer["Code"], answer["Message"]) == ("InvalidRequest", "Value for x-amz-checksum-sha256 header is invalid."), value
    # Well-formed but not this object's: the part count is part of the value.
    for value in (f"{composite}-3", b64(hashlib.sha256(b"".join(parts)).digest())):
        answer = refused(value)
        assert (answer["Code"], answer["Message"]) == ("BadDigest", "The sha256 you specified did not match the calculated checksum."), value
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": listed}, ChecksumSHA256=f"{composite}-2"
    )
    assert done["ChecksumSHA256"] == f"{composite}-2"
    # Without the part count a composite value is accepted too.
    upload_id, listed = _start(s3, bucket, "k2", parts, "SHA256")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k2", UploadId=upload_id, MultipartUpload={"Parts": listed}, ChecksumSHA256=composite
    )
    assert done["ChecksumSHA256"] == f"{composite}-2"

    # A full-object CRC has no part count.
    upload_id, listed = _start(s3, bucket, "f", parts, "CRC32", "FULL_OBJECT")
    whole = b64(crc32(b"".join(parts)))
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="f", UploadId=upload_id, MultipartUpload={"Parts": listed}, ChecksumCRC32=f"{whole}-2"
        )
    assert error(exc)["Code"] == "BadDigest"
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="f", UploadId=upload_id, MultipartUpload={"Parts": listed}, ChecksumCRC32=whole
    )
    assert done["ChecksumCRC32"] == whole


def test_upload_part_copy_refuses_more_than_5_gib(s3, server: Server, bucket: str) -> None:  # type: ignore[no-untyped-def]
    if server.root is None:
        pytest.skip("needs a 5 GiB source object: made here as a sparse file in the served folder")
    # A file another program put there: sparse, so it costs no disk space.
    with open(server.root / bucket / "huge", "wb") as f:
        f.truncate(GIB5 + 1)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copy")["UploadId"]
    message = "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"
    for copy_range in (None, f"bytes=0-{GIB5}"):
        with pytest.raises(ClientError) as exc:
            s3.upload_part_copy(
                Bucket=bucket, Key="copy", UploadId=upload_id, PartNumber=1,
                CopySource={"Bucket": bucket, "Key": "huge"}, **({"CopySourceRange": copy_range} if copy_range else {}),
            )  # fmt: skip
        assert (error(exc)["Code"], error(exc)["Message"]) == ("InvalidRequest", message), copy_range
    assert s3.list_parts(Bucket=bucket, Key="copy", UploadId=upload_id).get("Parts", []) == []
    # A range within the limit is copied: the bytes of the sparse file are zeros.
    part = s3.upload_part_copy(
        Bucket=bucket, Key="copy", UploadId=upload_id, PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "huge"}, CopySourceRange=f"bytes={GIB5 - MIB}-{GIB5}",
    )  # fmt: skip
    assert part["CopyPartResult"]["ETag"] == f'"{hashlib.md5(bytes(MIB + 1)).hexdigest()}"'
    s3.abort_multipart_upload(Bucket=bucket, Key="copy", UploadId=upload_id)
    os.unlink(server.root / bucket / "huge")


def test_checksums_of_parts_and_ranges_as_s3_answers_them(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    first, second = os.urandom(PART), os.urandom(1000)
    upload_id, listed = _start(s3, bucket, "comp", [first, second], "CRC32")
    s3.complete_multipart_upload(Bucket=bucket, Key="comp", UploadId=upload_id, MultipartUpload={"Parts": listed})
    # A part of a composite object has a checksum of its own.
    for number, data in ((1, first), (2, second)):
        for read in (s3.get_object, s3.head_object):
            got = read(Bucket=bucket, Key="comp", PartNumber=number, ChecksumMode="ENABLED")
            assert got["ChecksumCRC32"] == b64(crc32(data)) and got["ChecksumType"] == "COMPOSITE"
    # A range of the whole object is described by the object's checksum; a part of it by none.
    whole = s3.head_object(Bucket=bucket, Key="comp", ChecksumMode="ENABLED")["ChecksumCRC32"]
    assert whole.endswith("-2")
    size = len(first) + len(second)
    assert s3.get_object(Bucket=bucket, Key="comp", Range=f"bytes=0-{size - 1}", ChecksumMode="ENABLED")["ChecksumCRC32"] == whole
    assert "ChecksumCRC32" not in s3.get_object(Bucket=bucket, Key="comp", Range="bytes=0-9", ChecksumMode="ENABLED")
    # A FULL_OBJECT checksum says nothing of one part of several.
    upload_id, listed = _start(s3, bucket, "full", [first, second], "CRC32", "FULL_OBJECT")
    s3.complete_multipart_upload(Bucket=bucket, Key="full", UploadId=upload_id, MultipartUpload={"Parts": listed})
    part = s3.get_object(Bucket=bucket, Key="full", PartNumber=1, ChecksumMode="ENABLED")
    assert "ChecksumCRC32" not in part and part["Body"].read() == first
    assert s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")["ChecksumCRC32"] == b64(crc32(first + second))
    # A single PUT read as part 1 is the whole object, checksum and all.
    s3.put_object(Bucket=bucket, Key="single", Body=b"one part", ChecksumAlgorithm="CRC32")
    one = s3.get_object(Bucket=bucket, Key="single", PartNumber=1, ChecksumMode="ENABLED")
    assert one["ChecksumCRC32"] == b64(crc32(b"one part"))


def test_a_non_canonical_checksum_header_is_invalid_not_a_mismatch(server: Server, bucket: str) -> None:
    value = non_canonical(b64(crc32(b"data")))
    answer = signed(server, "PUT", f"/{bucket}/nc", body=b"data", headers={"x-amz-checksum-crc32": value})
    assert answer.status == 400 and b"<Code>InvalidRequest</Code>" in answer.data, answer.data
    assert b"Value for x-amz-checksum-crc32 header is invalid." in answer.data


def test_complete_checks_the_checksum_type_of_the_upload(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(PART), b"tail"]
    upload_id, listed = _start(s3, bucket, "t", parts, "CRC32", "FULL_OBJECT")

    def refused(key: str = "t", **extra: str) -> dict[str, str]:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}, **extra)
        return error(exc)

    assert refused(ChecksumType="COMPOSITE")["Code"] == "BadDigest"
    assert refused(ChecksumType="WHOLE")["Code"] == "InvalidRequest"
    # The refusals left the upload completable, and the matching type completes it.
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="t", UploadId=upload_id, MultipartUpload={"Parts": listed}, ChecksumType="FULL_OBJECT"
    )
    assert done["ChecksumCRC32"] == b64(crc32(b"".join(parts)))
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == b"".join(parts)

    # A composite upload refuses FULL_OBJECT; an upload created without an algorithm is FULL_OBJECT.
    upload_id, listed = _start(s3, bucket, "c", parts, "SHA256")
    assert refused("c", ChecksumType="FULL_OBJECT")["Code"] == "BadDigest"
    plain = s3.create_multipart_upload(Bucket=bucket, Key="d")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="d", UploadId=plain, PartNumber=n, Body=p)["ETag"] for n, p in enumerate(parts, 1)]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="d", UploadId=plain, ChecksumType="COMPOSITE",
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
        )  # fmt: skip
    assert error(exc)["Code"] == "BadDigest"


def test_complete_checks_the_object_size_the_client_names(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """x-amz-mp-object-size (boto3's MpuObjectSize): S3 refuses a Complete whose size is not the
    parts' sum with 400 InvalidRequest. It was ignored, and the object published."""
    parts = [os.urandom(PART), b"tail"]
    upload_id, listed = _start(s3, bucket, "sized", parts, "CRC32", "FULL_OBJECT")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="sized", UploadId=upload_id, MultipartUpload={"Parts": listed}, MpuObjectSize=PART + 999
        )
    assert (error(exc)["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="sized")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404  # nothing published
    # Not a number, or one too long for int() (over 4,300 digits): refused, never a 500.
    for value, code in (("12ab", "InvalidArgument"), ("9" * 5000, "InvalidRequest")):

        def sized(request, value: str = value, **_: object) -> None:  # type: ignore[no-untyped-def]
            request.headers["x-amz-mp-object-size"] = value

        s3.meta.events.register("before-sign.s3.CompleteMultipartUpload", sized)
        try:
            with pytest.raises(ClientError) as exc:
                s3.complete_multipart_upload(Bucket=bucket, Key="sized", UploadId=upload_id, MultipartUpload={"Parts": listed})
        finally:
            s3.meta.events.unregister("before-sign.s3.CompleteMultipartUpload", sized)
        assert (error(exc)["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (code, 400)
    s3.complete_multipart_upload(
        Bucket=bucket, Key="sized", UploadId=upload_id, MultipartUpload={"Parts": listed}, MpuObjectSize=PART + 4
    )
    assert s3.get_object(Bucket=bucket, Key="sized")["Body"].read() == b"".join(parts)


def test_parts_with_checksums_must_be_numbered_from_one_without_gaps(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """With a checksum per part (an algorithm named at creation), S3 wants parts 1..N listed,
    else 400 InvalidPartOrder; without one, any ascending numbers (which s3serve took for both)."""
    parts = [os.urandom(PART), os.urandom(PART), b"tail"]
    upload_id, listed = _start(s3, bucket, "gaps", parts, "SHA256")
    for chosen in ([listed[0], listed[2]], [listed[1], listed[2]]):
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(Bucket=bucket, Key="gaps", UploadId=upload_id, MultipartUpload={"Parts": chosen})
        assert (error(exc)["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("InvalidPartOrder", 400)
    s3.complete_multipart_upload(Bucket=bucket, Key="gaps", UploadId=upload_id, MultipartUpload={"Parts": listed})
    assert s3.get_object(Bucket=bucket, Key="gaps")["Body"].read() == b"".join(parts)
    # Without an algorithm named at creation: parts 1 and 3 make an object, as on S3.
    plain = s3.create_multipart_upload(Bucket=bucket, Key="plain")["UploadId"]
    etags = {n: s3.upload_part(Bucket=bucket, Key="plain", UploadId=plain, PartNumber=n, Body=p)["ETag"]
             for n, p in enumerate(parts, 1)}  # fmt: skip
    s3.complete_multipart_upload(
        Bucket=bucket, Key="plain", UploadId=plain,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 3)]},
    )  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == parts[0] + parts[2]


def test_a_copy_of_a_multipart_object_is_a_single_part_object(  # type: ignore[no-untyped-def]
    s3, bucket: str
) -> None:
    # S3 copies an object in one action however it was uploaded: the copy's ETag is the MD5 of
    # its bytes, it has no parts, and a composite checksum becomes a direct one of the whole
    # (User Guide, checking object integrity). The copy kept the source's "-2" ETag, its parts
    # and a composite checksum that no longer described the object.
    data = [os.urandom(PART), os.urandom(1000)]
    whole = b"".join(data)
    for algorithm, kind in (("SHA256", None), ("CRC32", "FULL_OBJECT")):
        upload_id, listed = _start(s3, bucket, "mp", data, algorithm, kind)
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": listed}
        )
        assert s3.head_object(Bucket=bucket, Key="mp")["ETag"].endswith('-2"')
        digest = hashlib.sha256(whole).digest() if algorithm == "SHA256" else crc32(whole)
        source = {"Bucket": bucket, "Key": "mp"}
        result = s3.copy_object(Bucket=bucket, Key="copy", CopySource=source)["CopyObjectResult"]
        assert result["ETag"] == f'"{hashlib.md5(whole).hexdigest()}"', algorithm
        assert result[f"Checksum{algorithm}"] == b64(digest) and result["ChecksumType"] == "FULL_OBJECT"
        head = s3.head_object(Bucket=bucket, Key="copy", ChecksumMode="ENABLED", PartNumber=1)
        assert head["ETag"] == result["ETag"] and head["ContentLength"] == len(whole)
        assert "PartsCount" not in head
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=bucket, Key="copy", PartNumber=2)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
        got = s3.get_object(Bucket=bucket, Key="copy", ChecksumMode="ENABLED")
        assert got["Body"].read() == whole and got[f"Checksum{algorithm}"] == b64(digest)
        # The source is left as it was.
        assert s3.head_object(Bucket=bucket, Key="mp", PartNumber=2)["PartsCount"] == 2
