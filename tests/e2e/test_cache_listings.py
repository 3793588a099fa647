"""Listings through the upstream cache, field by field against the upstream's own: the same
objects, uploads and parts, with the checksums S3 names in each. Live processes on loopback (an
s3serve cache with --upstream in front of a second s3serve, the disk backend), driven with boto3."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from s3serve.s3xml import NS
from tests.conftest import Server, signed
from tests.e2e.conftest import cache_pair, running_cache
from tests.e2e.fake_upstream import LoopbackApp

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts its own servers"
)

BUCKET = "listed"
# key -> (ChecksumAlgorithm, ChecksumType) as the upstream lists each object written below.
EXPECTED = {
    "single/crc32": (["CRC32"], "FULL_OBJECT"),
    "single/crc32c": (["CRC32C"], "FULL_OBJECT"),
    "single/crc64nvme": (["CRC64NVME"], "FULL_OBJECT"),
    "single/sha1": (["SHA1"], "FULL_OBJECT"),
    "single/sha256": (["SHA256"], "FULL_OBJECT"),
    # Sent without a checksum: S3 (and s3serve) keeps a CRC64NVME of every new object.
    "single/none": (["CRC64NVME"], "FULL_OBJECT"),
    "single/ia": (["CRC32"], "FULL_OBJECT"),
    "folder/": (["CRC64NVME"], "FULL_OBJECT"),
    "multi/crc32-composite": (["CRC32"], "COMPOSITE"),
    "multi/crc32-full": (["CRC32"], "FULL_OBJECT"),
    "multi/sha256-composite": (["SHA256"], "COMPOSITE"),
    "multi/none": (["CRC64NVME"], "FULL_OBJECT"),
}


@dataclass
class Pair:
    upstream: Server
    cache: Server
    direct: Any  # boto3 clients of each
    through: Any
    uploads: dict[str, str]  # key -> upload id of the uploads left open


def _multipart(s3: Any, key: str, algorithm: str | None, kind: str | None) -> None:
    create = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    upload = s3.create_multipart_upload(
        Bucket=BUCKET, Key=key, **create, **({"ChecksumType": kind} if kind else {})
    )
    part = s3.upload_part(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"part", **create
    )
    done = {"PartNumber": 1, "ETag": part["ETag"]}
    if algorithm:
        done[f"Checksum{algorithm}"] = part[f"Checksum{algorithm}"]
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": [done]},
        **({"ChecksumType": kind} if kind == "FULL_OBJECT" else {}),
    )  # fmt: skip


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with cache_pair(tmp_path_factory.mktemp("listings")) as (upstream, cache):
        s3: Any = cache.client()
        # A client that sends no checksum of its own (boto3 sends a CRC32 unless told not to).
        plain: Any = cache.client(request_checksum_calculation="when_required")
        s3.create_bucket(Bucket=BUCKET)
        for algorithm in ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"):
            key = f"single/{algorithm.lower()}"
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"bytes", ChecksumAlgorithm=algorithm)
        plain.put_object(Bucket=BUCKET, Key="single/none", Body=b"bytes")
        s3.put_object(Bucket=BUCKET, Key="single/ia", Body=b"x", StorageClass="STANDARD_IA")
        plain.put_object(Bucket=BUCKET, Key="folder/", Body=b"")
        _multipart(s3, "multi/crc32-composite", "CRC32", "COMPOSITE")
        _multipart(s3, "multi/crc32-full", "CRC32", "FULL_OBJECT")
        _multipart(s3, "multi/sha256-composite", "SHA256", None)
        _multipart(plain, "multi/none", None, None)
        uploads = {}
        for key, client, create in (
            ("open/crc32-full", s3, {"ChecksumAlgorithm": "CRC32", "ChecksumType": "FULL_OBJECT"}),
            ("open/sha1", s3, {"ChecksumAlgorithm": "SHA1"}),
            ("open/none", plain, {"StorageClass": "STANDARD_IA"}),
        ):
            upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key, **create)["UploadId"]
            sent = {"ChecksumAlgorithm": create["ChecksumAlgorithm"]} if "ChecksumAlgorithm" in create else {}
            client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1, Body=b"part", **sent)
            uploads[key] = upload_id
        yield Pair(upstream, cache, upstream.client(), s3, uploads)
    assert cache.log_path is not None and "Traceback" not in cache.log_path.read_text()


def _entries(listed: dict[str, Any], name: str) -> list[dict[str, Any]]:
    # The Owner is each server's own: the cache names its bucket's owner among its own users.
    return [{k: v for k, v in entry.items() if k != "Owner"} for entry in listed.get(name, [])]


@pytest.mark.parametrize("v2", [True, False], ids=["v2", "v1"])
def test_listed_objects_name_the_checksums_the_upstream_lists(pair: Pair, v2: bool) -> None:
    # The cache read Key, Size, ETag, LastModified and StorageClass of the upstream's <Contents>,
    # and dropped its ChecksumAlgorithm and ChecksumType: a client choosing how to verify a
    # download (or an `aws s3 sync` comparing checksums) saw none through the cache.
    def listed(s3: Any) -> dict[str, Any]:
        if v2:
            return s3.list_objects_v2(Bucket=BUCKET, FetchOwner=True)  # type: ignore[no-any-return]
        return s3.list_objects(Bucket=BUCKET)  # type: ignore[no-any-return]

    direct, through = listed(pair.direct), listed(pair.through)
    assert {c["Key"]: (c["ChecksumAlgorithm"], c["ChecksumType"]) for c in direct["Contents"]} == EXPECTED
    assert _entries(through, "Contents") == _entries(direct, "Contents")
    assert all("Owner" in c for c in through["Contents"])
    assert through["Contents"][0]["LastModified"].microsecond % 1000 == 0  # S3's milliseconds
    assert {c["Key"]: c["StorageClass"] for c in through["Contents"]}["single/ia"] == "STANDARD_IA"


def test_a_delimited_page_of_objects_names_their_checksums(pair: Pair) -> None:
    def page(s3: Any) -> dict[str, Any]:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="multi/", Delimiter="/", MaxKeys=2)
        return listed  # type: ignore[no-any-return]

    direct, through = page(pair.direct), page(pair.through)
    assert [c["ChecksumType"] for c in direct["Contents"]] == ["COMPOSITE", "FULL_OBJECT"]
    assert _entries(through, "Contents") == _entries(direct, "Contents")
    assert through["IsTruncated"] and direct["IsTruncated"]


def test_an_object_listed_with_two_checksum_algorithms_keeps_both(tmp_path: Path) -> None:
    # S3's schema lets <ChecksumAlgorithm> come more than once in a <Contents>; an upstream that
    # lists two has each reach the client. A loopback endpoint plays that upstream.
    listing = (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{NS}"><Name>{BUCKET}</Name>'
        "<Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType>"
        "<IsTruncated>false</IsTruncated><Contents><Key>k</Key><LastModified>2025-01-02T03:04:05.678Z"
        "</LastModified><ETag>&quot;5d41402abc4b2a76b9719d911017c592&quot;</ETag>"
        "<ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumAlgorithm>CRC32</ChecksumAlgorithm>"
        "<ChecksumType>FULL_OBJECT</ChecksumType><Size>5</Size><StorageClass>STANDARD</StorageClass>"
        "</Contents></ListBucketResult>"
    )

    async def answer(request: web.Request) -> web.Response:
        headers = {"x-amz-bucket-region": "us-east-1"}
        if request.method == "GET" and request.query.get("list-type") == "2":
            return web.Response(body=listing.encode(), content_type="application/xml", headers=headers)
        return web.Response(headers=headers)

    with LoopbackApp(answer) as fake, running_cache(tmp_path / "cache", fake.server) as cache:
        s3: Any = cache.client()
        listed = s3.list_objects_v2(Bucket=BUCKET)
    (entry,) = listed["Contents"]
    assert (entry["Key"], entry["ChecksumType"]) == ("k", "FULL_OBJECT")
    assert sorted(entry["ChecksumAlgorithm"]) == ["CRC32", "SHA256"]


def test_listed_versions_name_their_checksums_as_listed_objects_do(pair: Pair) -> None:
    # S3's ObjectVersion names ChecksumAlgorithm and ChecksumType as ListObjects' Contents do;
    # s3serve listed neither, from its disk or through the cache.
    direct = pair.direct.list_object_versions(Bucket=BUCKET)
    through = pair.through.list_object_versions(Bucket=BUCKET)
    assert {v["Key"]: (v["ChecksumAlgorithm"], v["ChecksumType"]) for v in direct["Versions"]} == EXPECTED
    assert _entries(through, "Versions") == _entries(direct, "Versions")


def _without(listed: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in listed.items() if k not in ("ResponseMetadata", *names)}


def _own(s3: Any) -> dict[str, str]:
    """Who the server names as its client: the owner of the bucket it made."""
    return s3.list_buckets()["Owner"]  # type: ignore[no-any-return]


def test_listed_uploads_are_the_upstreams_initiated_by_the_caches_user(pair: Pair) -> None:
    # Each field of the upstream's <Upload> reaches the client, the checksum's algorithm and
    # type included. Its Owner and Initiator were the upstream's id (the cache's credentials
    # there), which none of the cache's users has, named by that id for want of a name: the
    # cache names its bucket's owner, as its ListObjects and ListBuckets do.
    direct = pair.direct.list_multipart_uploads(Bucket=BUCKET)
    through = pair.through.list_multipart_uploads(Bucket=BUCKET)
    listed = {
        u["Key"]: (u.get("ChecksumAlgorithm"), u.get("ChecksumType"), u["StorageClass"])
        for u in direct["Uploads"]
    }
    assert listed == {
        "open/crc32-full": ("CRC32", "FULL_OBJECT", "STANDARD"),
        "open/sha1": ("SHA1", "COMPOSITE", "STANDARD"),
        "open/none": (None, None, "STANDARD_IA"),
    }
    hidden = ("Owner", "Initiator")
    assert [_without(u, *hidden) for u in through["Uploads"]] == [
        _without(u, *hidden) for u in direct["Uploads"]
    ]
    assert _without(through, "Uploads") == _without(direct, "Uploads")
    me = _own(pair.through)
    assert all(u["Owner"] == me and u["Initiator"] == me for u in through["Uploads"])


@pytest.mark.parametrize("key", ["open/crc32-full", "open/sha1", "open/none"])
def test_listed_parts_are_the_upstreams_initiated_by_the_caches_user(pair: Pair, key: str) -> None:
    def parts(s3: Any) -> dict[str, Any]:
        listed = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=pair.uploads[key])
        return listed  # type: ignore[no-any-return]

    direct, through = parts(pair.direct), parts(pair.through)
    (part,) = direct["Parts"]
    expected = {"open/crc32-full": "CRC32", "open/sha1": "SHA1", "open/none": "CRC64NVME"}[key]
    assert {name for name in part if name.startswith("Checksum")} == {f"Checksum{expected}"}
    assert _without(through, "Owner", "Initiator") == _without(direct, "Owner", "Initiator")
    me = _own(pair.through)
    assert through["Owner"] == me and through["Initiator"] == me


def test_uploads_of_a_key_with_noncharacters_pass_through(pair: Pair) -> None:
    # U+FFFE and U+FFFF are valid in a UTF-8 key but no XML characters: S3 (and s3serve) write
    # them as &#xFFFE; in every answer naming the key, which the cache's parser refused. It
    # answered CreateMultipartUpload 503 (the upload begun upstream all the same), and ListParts
    # and CompleteMultipartUpload of such an upload 503 too. boto3 cannot read these answers
    # either, so the requests are raw.
    key = "nc\ufffex\uffff"
    path = f"/{BUCKET}/{quote(key)}"
    created = signed(pair.cache, "POST", f"{path}?uploads")
    assert created.status == 200, created.data
    assert b"<Key>nc&#xFFFE;x&#xFFFF;</Key>" in created.data
    upload_id = re.search(rb"<UploadId>([^<]+)</UploadId>", created.data)[1].decode()  # type: ignore[index]
    part = signed(pair.cache, "PUT", f"{path}?partNumber=1&uploadId={upload_id}", b"part")
    assert part.status == 200, part.data
    listed = signed(pair.cache, "GET", f"{path}?uploadId={upload_id}")
    assert listed.status == 200, listed.data
    assert b"<Key>nc&#xFFFE;x&#xFFFF;</Key>" in listed.data and b"<PartNumber>1</PartNumber>" in listed.data
    etag = part.headers["ETag"]
    done = f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>"
    done += "</CompleteMultipartUpload>"
    completed = signed(pair.cache, "POST", f"{path}?uploadId={upload_id}", done.encode())
    assert completed.status == 200, completed.data
    assert b"<Key>nc&#xFFFE;x&#xFFFF;</Key>" in completed.data
    assert pair.direct.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"part"
    pair.direct.delete_object(Bucket=BUCKET, Key=key)
