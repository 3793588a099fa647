"""Multipart uploads against the live server: boto3's transfer manager, the aws cli, the raw API,
every error S3 answers, checksums checked against independently computed values."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.conftest import Server, signed

MIB = 1024 * 1024
PART = 5 * MIB  # the session server's --min-part-size


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def multipart_etag(parts: list[bytes]) -> str:
    return hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A 64 MiB and a 100 MiB file of random bytes, made once for the module."""
    folder = tmp_path_factory.mktemp("big")
    files = {}
    for name, size in (("64", 64 * MIB), ("100", 100 * MIB)):
        path = folder / f"random-{name}"
        with open(path, "wb") as f:
            for _ in range(size // MIB):
                f.write(os.urandom(MIB))
        files[name] = path
    yield files
    shutil.rmtree(folder, ignore_errors=True)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while piece := f.read(MIB):
            h.update(piece)
    return h.hexdigest()


def upload(s3, bucket: str, key: str, parts: list[bytes], **create: object) -> str:  # type: ignore[no-untyped-def]
    """Create, upload ``parts`` (1..N), complete; returns the upload id."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    listed = []
    for number, data in enumerate(parts, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
        listed.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed})
    return upload_id


# -- big transfers ----------------------------------------------------------------------------------


def test_boto3_transfer_64mib_round_trip(s3, bucket: str, big_files: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4)
    source = big_files["64"]
    s3.upload_file(str(source), bucket, "big/64", Config=config)
    head = s3.head_object(Bucket=bucket, Key="big/64")
    data = source.read_bytes()
    chunks = [data[i : i + PART] for i in range(0, len(data), PART)]
    assert head["ContentLength"] == 64 * MIB
    assert head["ETag"].strip('"') == multipart_etag(chunks)
    target = tmp_path / "down"
    s3.download_file(bucket, "big/64", str(target), Config=config)
    assert file_md5(target) == file_md5(source)
    # A part of the finished object, as S3 serves it.
    part = s3.get_object(Bucket=bucket, Key="big/64", PartNumber=7)
    assert part["PartsCount"] == len(chunks)
    assert part["ContentRange"] == f"bytes {6 * PART}-{7 * PART - 1}/{64 * MIB}"
    assert part["Body"].read() == chunks[6]


@pytest.mark.awscli
def test_aws_cli_cp_100mib_round_trip(server: Server, bucket: str, big_files: dict[str, Path], tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    aws = ["/usr/bin/aws", "--endpoint-url", server.endpoint, "s3"]
    source = big_files["100"]
    subprocess.run([*aws, "cp", str(source), f"s3://{bucket}/cli/100"], check=True, env=env, capture_output=True)
    target = tmp_path / "down"
    subprocess.run([*aws, "cp", f"s3://{bucket}/cli/100", str(target)], check=True, env=env, capture_output=True)
    assert file_md5(target) == file_md5(source)
    listing = subprocess.run(
        ["/usr/bin/aws", "--endpoint-url", server.endpoint, "s3api", "head-object", "--bucket", bucket, "--key", "cli/100"],
        check=True, env=env, capture_output=True, text=True,
    ).stdout
    assert '"ContentLength": 104857600' in listing
    assert "-" in listing.split('"ETag"')[1].split(",")[0]  # a multipart ETag: <md5>-<parts>


# -- reading parts and ranges --------------------------------------------------------------------


def test_part_number_and_range_reads(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(PART), os.urandom(PART), b"tail" * 300]
    upload(s3, bucket, "parts", parts)
    whole = b"".join(parts)
    for number, data in enumerate(parts, 1):
        got = s3.get_object(Bucket=bucket, Key="parts", PartNumber=number)
        assert got["Body"].read() == data
        assert got["PartsCount"] == 3
        head = s3.head_object(Bucket=bucket, Key="parts", PartNumber=number)
        assert head["ContentLength"] == len(data) and head["PartsCount"] == 3
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="parts", PartNumber=4)
    assert error_code(exc) == "InvalidPartNumber"
    # A range across the boundary of parts 1 and 2.
    got = s3.get_object(Bucket=bucket, Key="parts", Range=f"bytes={PART - 10}-{PART + 9}")
    assert got["Body"].read() == whole[PART - 10 : PART + 10]
    assert s3.get_object(Bucket=bucket, Key="parts")["Body"].read() == whole


def test_part_numbers_with_gaps_keep_their_numbers(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    first, third = os.urandom(PART), b"the part numbered three"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="gaps")["UploadId"]
    etags = {
        n: s3.upload_part(Bucket=bucket, Key="gaps", UploadId=upload_id, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, first), (3, third))
    }
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="gaps",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())]},
    )
    got = s3.get_object(Bucket=bucket, Key="gaps", PartNumber=3)
    assert got["Body"].read() == third
    assert got["PartsCount"] == 2
    assert got["ContentRange"] == f"bytes {PART}-{PART + len(third) - 1}/{PART + len(third)}"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="gaps", PartNumber=2)
    assert error_code(exc) == "InvalidPartNumber"


def test_reupload_replaces_part_and_invisible_until_complete(s3, server: Server, bucket: str) -> None:  # type: ignore[no-untyped-def]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="obj")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=1, Body=b"first version")
    etag = s3.upload_part(Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=1, Body=b"second")["ETag"]
    assert etag.strip('"') == hashlib.md5(b"second").hexdigest()
    parts = s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [(1, 6, etag)]
    # Nothing about the upload shows before Complete: no object, no listing entry, no file.
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="obj")
    assert exc.value.response["Error"]["Code"] == "404"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    if server.root is not None:
        assert list((server.root / bucket).iterdir()) == []
        staged = list((server.root / ".s3serve" / "multipart" / bucket / upload_id).iterdir())
        assert len([p for p in staged if p.suffix == ".part"]) == 1  # the replaced data file is gone
    s3.complete_multipart_upload(
        Bucket=bucket, Key="obj", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"second"
    if server.root is not None:
        assert not (server.root / ".s3serve" / "multipart" / bucket / upload_id).exists()


def test_metadata_and_headers_recorded_at_create(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    upload(
        s3, bucket, "meta", [b"x" * 10],
        ContentType="text/plain", CacheControl="max-age=60", Metadata={"colour": "blue"}, Tagging="a=1&b=2",
    )
    head = s3.head_object(Bucket=bucket, Key="meta")
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"colour": "blue"}
    tags = s3.get_object_tagging(Bucket=bucket, Key="meta")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "1"), ("b", "2")]


# -- errors ----------------------------------------------------------------------------------------


def test_complete_errors(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="e")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="e", UploadId=upload_id, PartNumber=1, Body=b"small")["ETag"]
    last = s3.upload_part(Bucket=bucket, Key="e", UploadId=upload_id, PartNumber=2, Body=b"last")["ETag"]

    def complete(parts: list[dict[str, object]]) -> str:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(Bucket=bucket, Key="e", UploadId=upload_id, MultipartUpload={"Parts": parts})
        return error_code(exc)

    assert complete([{"PartNumber": 2, "ETag": last}, {"PartNumber": 1, "ETag": small}]) == "InvalidPartOrder"
    assert complete([{"PartNumber": 1, "ETag": small}, {"PartNumber": 3, "ETag": last}]) == "InvalidPart"
    assert complete([{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]) == "InvalidPart"
    assert complete([{"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": last}]) == "EntityTooSmall"
    # Every failure left the upload as it was: a valid list still completes.
    s3.complete_multipart_upload(
        Bucket=bucket, Key="e", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": last}]}
    )
    assert s3.get_object(Bucket=bucket, Key="e")["Body"].read() == b"last"


def test_unknown_and_malformed_upload_ids(s3, server: Server, bucket: str) -> None:  # type: ignore[no-untyped-def]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for bad in ("../../etc", "0" * 48, upload_id + "x", "../" + upload_id, upload_id.upper()):
        response = signed(server, "PUT", f"/{bucket}/k?partNumber=1&uploadId={quote(bad, safe='')}", b"data")
        assert response.status == 404 and b"<Code>NoSuchUpload</Code>" in response.data, bad
    # The right id under another key is not this upload.
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="other", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert error_code(exc) == "NoSuchUpload"
    for number in ("0", "10001", "x"):
        response = signed(server, "PUT", f"/{bucket}/k?partNumber={number}&uploadId={upload_id}", b"data")
        assert response.status == 400 and b"<Code>InvalidArgument</Code>" in response.data
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    for call in (
        lambda: s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x"),
        lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id),
        lambda: s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": "x"}]}
        ),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_code(exc) == "NoSuchUpload"


def test_conditional_complete(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="c", Body=b"old")
    old_etag = s3.head_object(Bucket=bucket, Key="c")["ETag"]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="c")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="c", UploadId=upload_id, PartNumber=1, Body=b"new")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=upload_id, MultipartUpload=parts, IfNoneMatch="*")
    assert error_code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=upload_id, MultipartUpload=parts, IfMatch='"0123"')
    assert error_code(exc) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"old"
    s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=upload_id, MultipartUpload=parts, IfMatch=old_etag)
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"new"


def test_delete_bucket_discards_uploads_in_progress(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    # S3 (general purpose buckets): uploads do not keep a bucket; they go with it
    # (test_bucket_delete_uploads.py has the races and crashes).
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="pending")["UploadId"]
    s3.delete_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=bucket)  # for the fixture's cleanup
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=bucket, Key="pending", UploadId=upload_id)
    assert error_code(exc) == "NoSuchUpload"


def test_retried_complete_gets_the_same_answer(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """A client whose Complete timed out after the server finished retries it; S3 answers the
    retry with the same success while the object is still the one that upload made."""
    data = [os.urandom(PART), b"tail"]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="again", ChecksumAlgorithm="SHA256")["UploadId"]
    # A composite upload's Complete names every part's checksum, as S3 requires.
    answers = [
        s3.upload_part(Bucket=bucket, Key="again", UploadId=upload_id, PartNumber=n, Body=body, ChecksumAlgorithm="SHA256")
        for n, body in enumerate(data, 1)
    ]
    parts = [
        {"PartNumber": n, "ETag": answer["ETag"], "ChecksumSHA256": answer["ChecksumSHA256"]}
        for n, answer in enumerate(answers, 1)
    ]
    first = s3.complete_multipart_upload(Bucket=bucket, Key="again", UploadId=upload_id, MultipartUpload={"Parts": parts})
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="again", UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
    )
    assert again["ETag"] == first["ETag"] == f'"{multipart_etag(data)}"'
    assert again["ChecksumSHA256"] == first["ChecksumSHA256"]
    assert (again["Bucket"], again["Key"]) == (bucket, "again")
    assert s3.get_object(Bucket=bucket, Key="again")["Body"].read() == b"".join(data)
    # Not the upload's parts, another key, or the object replaced since: the upload is gone.
    tries = [
        ("again", {"Parts": parts[:1]}),
        ("again", {"Parts": [parts[0], {"PartNumber": 2, "ETag": parts[0]["ETag"]}]}),
        ("elsewhere", {"Parts": parts}),
    ]
    for key, listed in tries:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload=listed)
        assert error_code(exc) == "NoSuchUpload", key
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=bucket, Key="again", UploadId=upload_id)
    assert error_code(exc) == "NoSuchUpload"
    # A copy of the object onto itself (new metadata) keeps the bytes but is no longer the upload's.
    s3.copy_object(
        Bucket=bucket, Key="again", CopySource={"Bucket": bucket, "Key": "again"}, Metadata={"m": "1"}, MetadataDirective="REPLACE"
    )
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="again", UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert error_code(exc) == "NoSuchUpload"
    assert s3.get_object(Bucket=bucket, Key="again")["Metadata"] == {"m": "1"}


# -- concurrency -----------------------------------------------------------------------------------


def test_several_uploads_of_one_key_last_complete_wins(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    ids = [s3.create_multipart_upload(Bucket=bucket, Key="same")["UploadId"] for _ in range(3)]
    etags = [
        s3.upload_part(Bucket=bucket, Key="same", UploadId=u, PartNumber=1, Body=f"body {i}".encode())["ETag"]
        for i, u in enumerate(ids)
    ]
    for i in (2, 0):
        s3.complete_multipart_upload(
            Bucket=bucket, Key="same", UploadId=ids[i], MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[i]}]}
        )
        assert s3.get_object(Bucket=bucket, Key="same")["Body"].read() == f"body {i}".encode()
    left = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["UploadId"] for u in left] == [ids[1]]
    s3.abort_multipart_upload(Bucket=bucket, Key="same", UploadId=ids[1])


def _complete_or_abort(s3, bucket: str, upload_id: str, parts: dict, kind: str) -> str:  # type: ignore[no-untyped-def]
    try:
        if kind == "complete":
            s3.complete_multipart_upload(Bucket=bucket, Key="race", UploadId=upload_id, MultipartUpload=parts)
        else:
            s3.abort_multipart_upload(Bucket=bucket, Key="race", UploadId=upload_id)
        return "ok"
    except ClientError as e:
        return str(e.response["Error"]["Code"])


def test_concurrent_complete_and_abort_consume_once(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(PART)
    kinds = ["complete", "abort", "complete", "abort"]
    for _ in range(3):
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="race")["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key="race", UploadId=upload_id, PartNumber=1, Body=data)["ETag"]
        parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda kind, u=upload_id, p=parts: _complete_or_abort(s3, bucket, u, p, kind), kinds))
        # One of them consumes the upload. When a Complete does, the other Complete is answered
        # as its retry would be (the same success); when an Abort does, both Completes fail.
        completes, aborts = results[0::2], results[1::2]
        assert sorted(aborts) in (["NoSuchUpload", "NoSuchUpload"], ["NoSuchUpload", "ok"]), results
        if "ok" in aborts:
            assert completes == ["NoSuchUpload", "NoSuchUpload"], results
        else:
            assert completes == ["ok", "ok"], results
            assert s3.get_object(Bucket=bucket, Key="race")["Body"].read() == data
        s3.delete_object(Bucket=bucket, Key="race")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- UploadPartCopy --------------------------------------------------------------------------------


def test_upload_part_copy_with_ranges(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    source = os.urandom(2 * PART + 1000)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    src_etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    # Parts 1, 2 and 4 are ranges (the small one last), part 3 is the whole source.
    ranges = {1: (PART + 1000, 2 * PART + 999), 2: (0, PART - 1), 4: (2 * PART + 990, 2 * PART + 999)}
    listed = []
    for number, (first, last) in ranges.items():
        result = s3.upload_part_copy(
            Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=number,
            CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes={first}-{last}",
            CopySourceIfMatch=src_etag,
        )["CopyPartResult"]
        assert result["ETag"].strip('"') == hashlib.md5(source[first : last + 1]).hexdigest()
        listed.append({"PartNumber": number, "ETag": result["ETag"]})
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=9,
            CopySource={"Bucket": bucket, "Key": "src"}, CopySourceIfMatch='"not-the-etag"',
        )
    assert error_code(exc) == "PreconditionFailed"
    for bad_range, code in ((f"bytes=0-{len(source)}", "InvalidArgument"), ("bytes=5-", "InvalidArgument")):
        with pytest.raises(ClientError) as exc:
            s3.upload_part_copy(
                Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=9,
                CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=bad_range,
            )
        assert error_code(exc) == code
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=9, CopySource={"Bucket": bucket, "Key": "absent"}
        )
    assert error_code(exc) == "NoSuchKey"
    whole = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=3, CopySource={"Bucket": bucket, "Key": "src"}
    )["CopyPartResult"]
    assert whole["ETag"] == src_etag
    listed.insert(2, {"PartNumber": 3, "ETag": whole["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload_id, MultipartUpload={"Parts": listed})
    spans = [source[a : b + 1] for a, b in ranges.values()]
    expected = spans[0] + spans[1] + source + spans[2]
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == expected


# -- listings --------------------------------------------------------------------------------------


def test_list_multipart_uploads_pagination(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    made: list[tuple[str, str]] = []
    for key in ("b", "a/1", "a/2", "c", "b"):
        made.append((key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]))
    expected = sorted(made)
    # Page through two at a time with key and upload-id markers.
    seen: list[tuple[str, str]] = []
    kwargs: dict[str, object] = {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2, **kwargs)
        seen.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
        if not page["IsTruncated"]:
            break
        kwargs = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert seen == expected
    # The two uploads of "b" are listed in the order they were started.
    assert [u for k, u in seen if k == "b"] == [made[0][1], made[4][1]]
    grouped = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/"]
    assert [u["Key"] for u in grouped["Uploads"]] == ["b", "b", "c"]
    first = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", MaxUploads=1)
    assert first["IsTruncated"] and first["NextKeyMarker"] == "a/" and first["CommonPrefixes"][0]["Prefix"] == "a/"
    rest = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", KeyMarker="a/")
    assert [u["Key"] for u in rest["Uploads"]] == ["b", "b", "c"] and "CommonPrefixes" not in rest
    prefixed = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in prefixed["Uploads"]] == ["a/1", "a/2"]
    after_b = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="b")
    assert [u["Key"] for u in after_b["Uploads"]] == ["c"]
    for key, upload_id in made:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_list_parts_pagination(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="p")["UploadId"]
    etags = {}
    for number in (1, 2, 3, 5, 8):
        etags[number] = s3.upload_part(Bucket=bucket, Key="p", UploadId=upload_id, PartNumber=number, Body=b"x" * number)["ETag"]
    seen = []
    marker = 0
    while True:
        page = s3.list_parts(Bucket=bucket, Key="p", UploadId=upload_id, MaxParts=2, PartNumberMarker=marker)
        seen.extend((p["PartNumber"], p["Size"], p["ETag"]) for p in page["Parts"])
        if not page["IsTruncated"]:
            break
        assert page["NextPartNumberMarker"] == page["Parts"][-1]["PartNumber"]
        marker = page["NextPartNumberMarker"]
    assert seen == [(n, n, etags[n]) for n in (1, 2, 3, 5, 8)]
    s3.abort_multipart_upload(Bucket=bucket, Key="p", UploadId=upload_id)


# -- checksums -------------------------------------------------------------------------------------


def _checksum_upload(s3, bucket: str, key: str, parts: list[bytes], algorithm: str, kind: str | None) -> dict:  # type: ignore[no-untyped-def]
    create: dict[str, object] = {"ChecksumAlgorithm": algorithm}
    if kind:
        create["ChecksumType"] = kind
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    listed = []
    for number, data in enumerate(parts, 1):
        result = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, ChecksumAlgorithm=algorithm
        )
        listed.append({"PartNumber": number, "ETag": result["ETag"], f"Checksum{algorithm}": result[f"Checksum{algorithm}"]})
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed})


def test_composite_and_full_object_checksums(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(PART), os.urandom(4321)]
    whole = b"".join(parts)

    crc32 = [zlib.crc32(p).to_bytes(4, "big") for p in parts]
    done = _checksum_upload(s3, bucket, "composite", parts, "CRC32", "COMPOSITE")
    assert done["ChecksumCRC32"] == b64(zlib.crc32(b"".join(crc32)).to_bytes(4, "big")) + "-2"
    assert done["ChecksumType"] == "COMPOSITE"

    done = _checksum_upload(s3, bucket, "sha256", parts, "SHA256", None)
    sha = [hashlib.sha256(p).digest() for p in parts]
    assert done["ChecksumSHA256"] == b64(hashlib.sha256(b"".join(sha)).digest()) + "-2"

    done = _checksum_upload(s3, bucket, "full", parts, "CRC32", "FULL_OBJECT")
    assert done["ChecksumCRC32"] == b64(zlib.crc32(whole).to_bytes(4, "big"))
    assert done["ChecksumType"] == "FULL_OBJECT"
    # botocore validates a full-object checksum against the body it receives.
    got = s3.get_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert got["Body"].read() == whole and got["ChecksumCRC32"] == done["ChecksumCRC32"]

    done = _checksum_upload(s3, bucket, "crc32c", parts, "CRC32C", "FULL_OBJECT")
    assert done["ChecksumCRC32C"] == b64(crt.crc32c(whole).to_bytes(4, "big"))

    # No algorithm named: S3 gives the object a full-object CRC64NVME.
    upload(s3, bucket, "default", parts)
    head = s3.head_object(Bucket=bucket, Key="default", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == b64(crt.crc64nvme(whole).to_bytes(8, "big"))
    assert head["ChecksumType"] == "FULL_OBJECT"


def test_checksum_errors(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    for algorithm, kind in (("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE")):
        with pytest.raises(ClientError) as exc:
            s3.create_multipart_upload(Bucket=bucket, Key="bad", ChecksumAlgorithm=algorithm, ChecksumType=kind)
        assert error_code(exc) == "InvalidRequest"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="bad", ChecksumAlgorithm="CRC32")["UploadId"]
    etag = s3.upload_part(
        Bucket=bucket, Key="bad", UploadId=upload_id, PartNumber=1, Body=b"abc", ChecksumAlgorithm="CRC32"
    )["ETag"]
    wrong = b64(zlib.crc32(b"abd").to_bytes(4, "big"))
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="bad", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag, "ChecksumCRC32": wrong}]},
        )
    assert error_code(exc) == "InvalidPart"
    # A part whose body does not match its declared checksum is refused and not stored.
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="bad", UploadId=upload_id, PartNumber=2, Body=b"abc", ChecksumCRC32=wrong)
    assert error_code(exc) == "BadDigest"
    # A part checksummed with another algorithm than the upload's, as S3 refuses it.
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="bad", UploadId=upload_id, PartNumber=3, Body=b"abc", ChecksumAlgorithm="SHA256")
    assert error_code(exc) == "InvalidRequest"
    assert "expected checksum Type: crc32, actual checksum Type: sha256" in str(exc.value)
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="bad", UploadId=upload_id)["Parts"]] == [1]
    s3.abort_multipart_upload(Bucket=bucket, Key="bad", UploadId=upload_id)


def test_complete_checks_the_whole_object_checksum_sent(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(PART), b"tail bytes"]
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key="full", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    listed = []
    for number, data in enumerate(parts, 1):
        part = s3.upload_part(
            Bucket=bucket, Key="full", UploadId=upload_id, PartNumber=number, Body=data, ChecksumAlgorithm="CRC32"
        )
        listed.append({"PartNumber": number, "ETag": part["ETag"], "ChecksumCRC32": part["ChecksumCRC32"]})
    whole = b64(zlib.crc32(b"".join(parts)).to_bytes(4, "big"))
    wrong = b64(zlib.crc32(b"something else").to_bytes(4, "big"))
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="full", UploadId=upload_id, MultipartUpload={"Parts": listed},
            ChecksumCRC32=wrong, ChecksumType="FULL_OBJECT",
        )
    assert error_code(exc) == "BadDigest"
    # Nothing was published and the upload is still there to complete.
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="full")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="full", UploadId=upload_id, MultipartUpload={"Parts": listed},
        ChecksumCRC32=whole, ChecksumType="FULL_OBJECT",
    )
    assert done["ChecksumCRC32"] == whole
    assert s3.get_object(Bucket=bucket, Key="full")["Body"].read() == b"".join(parts)
