"""A page size of 0 on the multipart listings and on ListObjects (v1, v2), and page sizes S3
refuses. ListParts (max-parts=0) and ListMultipartUploads (max-uploads=0) answer an empty page
that is truncated when there is something to list; ListObjects with max-keys=0 answers an empty
page that is not truncated (ceph s3-tests' test_bucket_list_maxkeys_zero, which passes on AWS)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.conftest import Server, signed

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _children(body: bytes) -> dict[str, str]:
    return {child.tag.removeprefix(NS): child.text or "" for child in ET.fromstring(body)}


def test_list_parts_max_parts_zero(s3, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    empty = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id, MaxParts=0)
    assert (empty["MaxParts"], empty["IsTruncated"], "Parts" in empty) == (0, False, False)
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"one")
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=2, Body=b"two")
    page = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id, MaxParts=0)
    assert (page["MaxParts"], page["IsTruncated"], "Parts" in page) == (0, True, False)
    assert page["NextPartNumberMarker"] == 0
    # Past the last part there is nothing left to list.
    past = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id, MaxParts=0, PartNumberMarker=2)
    assert (past["IsTruncated"], "Parts" in past) == (False, False)


def test_list_multipart_uploads_max_uploads_zero(s3, bucket: str) -> None:
    empty = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=0)
    assert (empty["MaxUploads"], empty["IsTruncated"], "Uploads" in empty) == (0, False, False)
    s3.create_multipart_upload(Bucket=bucket, Key="a/mp")
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=0)
    assert (page["MaxUploads"], page["IsTruncated"], "Uploads" in page) == (0, True, False)
    rolled = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=0, Delimiter="/")
    assert (rolled["IsTruncated"], "Uploads" in rolled, "CommonPrefixes" in rolled) == (True, False, False)


@pytest.mark.parametrize("list_type", ["", "list-type=2&"])
def test_list_objects_max_keys_zero_is_not_truncated(server: Server, s3, bucket: str, list_type: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = signed(server, "GET", f"/{bucket}?{list_type}max-keys=0")
    assert r.status == 200, r.data
    fields = _children(r.data)
    assert (fields["MaxKeys"], fields["IsTruncated"], "Contents" in fields) == ("0", "false", False)


@pytest.mark.parametrize(
    ("query", "name", "message", "value"),
    [
        ("max-parts=-1", "max-parts", "Argument max-parts must be an integer between 0 and 2147483647", "-1"),
        ("max-parts=abc", "max-parts", "Provided max-parts not an integer or within integer range", "abc"),
        ("max-parts=2147483648", "max-parts", "Provided max-parts not an integer or within integer range", "2147483648"),
    ],
)
def test_list_parts_bad_max_parts(server: Server, s3, bucket: str, query: str, name: str, message: str, value: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    r = signed(server, "GET", f"/{bucket}/mp?uploadId={upload_id}&{query}")
    assert r.status == 400, r.data
    error = _children(r.data)
    assert (error["Code"], error["Message"], error["ArgumentName"], error["ArgumentValue"]) == ("InvalidArgument", message, name, value)


@pytest.mark.parametrize(
    ("query", "message", "value"),
    [
        ("max-uploads=-1", "Argument max-uploads must be an integer between 0 and 2147483647", "-1"),
        ("max-uploads=x", "Provided max-uploads not an integer or within integer range", "x"),
    ],
)
def test_list_multipart_uploads_bad_max_uploads(server: Server, bucket: str, query: str, message: str, value: str) -> None:
    r = signed(server, "GET", f"/{bucket}?uploads&{query}")
    assert r.status == 400, r.data
    error = _children(r.data)
    assert (error["Code"], error["Message"], error["ArgumentName"], error["ArgumentValue"]) == (
        "InvalidArgument", message, "max-uploads", value,
    )  # fmt: skip
