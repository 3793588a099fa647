"""Buckets and listings end to end."""

from __future__ import annotations

import os
import uuid

import pytest
from botocore.exceptions import ClientError


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_bucket_lifecycle(s3) -> None:
    name = f"life-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    try:
        s3.head_bucket(Bucket=name)
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert name in names
        created = next(b for b in s3.list_buckets()["Buckets"] if b["Name"] == name)["CreationDate"]
        assert created.year >= 2024
        assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
        # us-east-1 answers 200 when the owner creates it again.
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="x", Body=b"x")
        with pytest.raises(ClientError) as exc:
            s3.delete_bucket(Bucket=name)
        assert _error(exc) == ("BucketNotEmpty", 409)
        s3.delete_object(Bucket=name, Key="x")
    finally:
        s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert _error(exc)[1] == 404
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=name)
    assert _error(exc) == ("NoSuchBucket", 404)


def test_location_constraint(s3) -> None:
    name = f"loc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    try:
        assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
    finally:
        s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Upper", "under_score", "-dash", "dash-", "two..dots", "192.168.1.1", "xn--punycode", "name-s3alias", "a b"],
)
def test_invalid_bucket_names(server, name: str) -> None:
    from tests.conftest import signed

    # Signed by hand: botocore validates some names itself before sending.
    r = signed(server, "PUT", f"/{name.replace(' ', '%20')}")
    assert r.status == 400, r.data
    assert b"<Code>InvalidBucketName</Code>" in r.data


def test_list_buckets_pagination(s3) -> None:
    prefix = f"pg-{uuid.uuid4().hex[:8]}-"
    names = [f"{prefix}{i}" for i in range(5)]
    for name in names:
        s3.create_bucket(Bucket=name)
    try:
        seen: list[str] = []
        token = None
        while True:
            kwargs = {"MaxBuckets": 2, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = s3.list_buckets(**kwargs)
            seen += [b["Name"] for b in page["Buckets"]]
            token = page.get("ContinuationToken")
            if not token:
                break
        assert seen == names
    finally:
        for name in names:
            s3.delete_bucket(Bucket=name)


def _fill(s3, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


TREE = ["a.c", "a/b", "a/c/d", "a-b", "a0", "b", "é", "z/y/x", "z/y/z", "zz"]


def test_listing_is_in_utf8_byte_order(s3, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == sorted(TREE, key=lambda k: k.encode())
    assert keys.index("a.c") < keys.index("a/b")


def test_listing_pagination_v2(s3, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    expected = sorted(TREE, key=lambda k: k.encode())
    for page_size in (1, 2, 3, 7):
        seen = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": page_size}):
            seen += [o["Key"] for o in page.get("Contents", [])]
            assert page["KeyCount"] <= page_size
        assert seen == expected
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="a0")
    assert [o["Key"] for o in after["Contents"]] == expected[expected.index("a0") + 1 :]


def test_listing_pagination_v1(s3, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    expected = sorted(TREE, key=lambda k: k.encode())
    seen = []
    for page in s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3}):
        seen += [o["Key"] for o in page.get("Contents", [])]
    assert seen == expected
    page = s3.list_objects(Bucket=bucket, Marker="a/c/d", MaxKeys=2)
    assert [o["Key"] for o in page["Contents"]] == expected[expected.index("a/c/d") + 1 :][:2]
    assert page["IsTruncated"] is True
    assert page["Contents"][0]["Owner"]["ID"]


def test_delimiter_listing(s3, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a-b", "a.c", "a0", "b", "zz", "é"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "z/"]
    assert top["KeyCount"] == 8
    inner = s3.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="a/")
    assert [o["Key"] for o in inner["Contents"]] == ["a/b"]
    assert [p["Prefix"] for p in inner["CommonPrefixes"]] == ["a/c/"]
    dash = s3.list_objects_v2(Bucket=bucket, Delimiter="-")
    assert [p["Prefix"] for p in dash["CommonPrefixes"]] == ["a-"]
    paged = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 1}):
        paged += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert paged == ["a-b", "a.c", "a/", "a0", "b", "z/", "zz", "é"]


def test_listing_url_encoding_and_owner(s3, bucket: str) -> None:
    _fill(s3, bucket, ["sp ace/x", "plus+", "ü"])
    raw = s3.list_objects_v2(Bucket=bucket, EncodingType="url", FetchOwner=True)
    # Asked for explicitly, boto3 hands back the encoded keys as the server sent them.
    assert [o["Key"] for o in raw["Contents"]] == ["plus%2B", "sp%20ace/x", "%C3%BC"]
    # By default boto3 asks for url encoding itself and decodes: the real keys.
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == ["plus+", "sp ace/x", "ü"]
    assert raw["Contents"][0]["Owner"]["ID"]
    assert "Owner" not in s3.list_objects_v2(Bucket=bucket)["Contents"][0]


def test_listing_limits_and_errors(s3, bucket: str) -> None:
    _fill(s3, bucket, ["a", "b"])
    zero = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert zero["KeyCount"] == 0 and "Contents" not in zero
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="not a token!")
    assert _error(exc) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=-1)
    assert _error(exc) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="no-such-bucket-zz")
    assert _error(exc) == ("NoSuchBucket", 404)


def test_foreign_files_are_objects(server, s3, bucket: str) -> None:
    if server.root is None:
        pytest.skip("needs the server's root directory")
    import hashlib

    folder = server.root / bucket / "dropped"
    folder.mkdir(parents=True)
    first, second = b"a,b\n1,2\n", b"changed, and longer\n"
    (folder / "report.csv").write_bytes(first)
    head = s3.head_object(Bucket=bucket, Key="dropped/report.csv")
    first_md5 = hashlib.md5(first).hexdigest()
    assert head["ETag"] == f'"{first_md5}"'
    assert head["ContentType"] == "text/csv"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dropped/")["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("dropped/report.csv", 8)]
    # Changed by the other program: a new ETag.
    (folder / "report.csv").write_bytes(second)
    second_md5 = hashlib.md5(second).hexdigest()
    assert s3.get_object(Bucket=bucket, Key="dropped/report.csv")["ETag"] == f'"{second_md5}"'
    # A big one is listed without being read: a multipart-shaped ETag, the same on HEAD and GET.
    big = os.urandom(9 * 1024 * 1024)
    (folder / "video.mp4").write_bytes(big)
    (entry,) = [o for o in s3.list_objects_v2(Bucket=bucket, Prefix="dropped/v")["Contents"]]
    assert entry["ETag"].endswith('-1"') and entry["Size"] == len(big)
    got = s3.get_object(Bucket=bucket, Key="dropped/video.mp4")
    assert got["ETag"] == entry["ETag"] == s3.head_object(Bucket=bucket, Key="dropped/video.mp4")["ETag"]
    assert got["ContentType"] == "video/mp4" and got["Body"].read() == big


def test_symlink_outside_root_is_invisible(server, s3, bucket: str, tmp_path) -> None:
    if server.root is None:
        pytest.skip("needs the server's root directory")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (server.root / bucket / "leak").symlink_to(secret)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="leak")
    assert _error(exc)[1] == 404
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    (server.root / bucket / "leak").unlink()


def test_hidden_state_never_listed(server, s3, bucket: str) -> None:
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not any(n.startswith(".") for n in names)
    if server.root is not None:
        assert (server.root / ".s3serve").is_dir()


def test_list_object_versions_of_an_unversioned_bucket(s3, bucket: str) -> None:
    _fill(s3, bucket, ["v1", "v2", "w/x"])
    assert s3.get_bucket_versioning(Bucket=bucket).get("Status") is None
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [
        ("v1", "null", True),
        ("v2", "null", True),
        ("w/x", "null", True),
    ]
    paged = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, PaginationConfig={"PageSize": 1}):
        paged += [v["Key"] for v in page.get("Versions", [])]
    assert paged == ["v1", "v2", "w/x"]
    assert s3.get_object(Bucket=bucket, Key="v1", VersionId="null")["Body"].read() == b"v1"
