"""S3 XML rendering and request-body parsing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from s3serve import errors, s3xml
from s3serve.storage.base import BucketInfo, ObjectInfo

NS = {"s3": s3xml.NS}


def test_error_document() -> None:
    body = s3xml.error("NoSuchKey", "The specified key does not exist.", "/b/a&b", "RID", {"Key": "a&b<"})
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert root.findtext("Code") == "NoSuchKey"
    assert root.findtext("Key") == "a&b<"
    assert root.findtext("Resource") == "/b/a&b"
    assert root.findtext("RequestId") == "RID"


def test_list_objects_escapes_and_encodes() -> None:
    objects = [ObjectInfo(key="a<&>\"'b c+é", size=3, etag="abc", last_modified=0.0, checksums={"CRC32": "x"}, checksum_type="FULL_OBJECT")]
    plain = ET.fromstring(
        s3xml.list_objects(
            v2=True, bucket="bkt", prefix="", delimiter="/", max_keys=1000, url=False, objects=objects,
            common_prefixes=["p/"], is_truncated=False, owner=None, continuation_token=None,
        )
    )
    assert plain.findtext("s3:Contents/s3:Key", namespaces=NS) == "a<&>\"'b c+é"
    assert plain.findtext("s3:Contents/s3:ETag", namespaces=NS) == '"abc"'
    assert plain.findtext("s3:Contents/s3:ChecksumAlgorithm", namespaces=NS) == "CRC32"
    assert plain.findtext("s3:KeyCount", namespaces=NS) == "2"
    assert plain.findtext("s3:CommonPrefixes/s3:Prefix", namespaces=NS) == "p/"
    encoded = ET.fromstring(
        s3xml.list_objects(
            v2=False, bucket="bkt", prefix="a b", delimiter="/", max_keys=10, url=True, objects=objects,
            common_prefixes=[], is_truncated=True, owner=("id", "name"), next_marker="a b",
        )
    )
    assert encoded.findtext("s3:Contents/s3:Key", namespaces=NS) == "a%3C%26%3E%22%27b%20c%2B%C3%A9"
    assert encoded.findtext("s3:Prefix", namespaces=NS) == "a%20b"
    assert encoded.findtext("s3:NextMarker", namespaces=NS) == "a%20b"
    assert encoded.findtext("s3:EncodingType", namespaces=NS) == "url"
    assert encoded.findtext("s3:Contents/s3:Owner/s3:ID", namespaces=NS) == "id"


def test_list_buckets_and_location() -> None:
    root = ET.fromstring(s3xml.list_buckets([BucketInfo("b1", 0.0, "o")], "o", "Owner", "b1", "b"))
    assert root.findtext("s3:Buckets/s3:Bucket/s3:Name", namespaces=NS) == "b1"
    assert root.findtext("s3:ContinuationToken", namespaces=NS) == "b1"
    assert ET.fromstring(s3xml.location("us-east-1")).text is None
    assert ET.fromstring(s3xml.location("eu-west-1")).text == "eu-west-1"


def test_parse_delete() -> None:
    keys, quiet = s3xml.parse_delete(
        b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>'
        b"<Object><Key>a</Key></Object><Object><Key>b &amp; c</Key><VersionId>null</VersionId></Object></Delete>"
    )
    assert keys == [("a", None, None), ("b & c", "null", None)] and quiet is True
    single, quiet = s3xml.parse_delete(b"<Delete><Object><Key>only</Key></Object></Delete>")
    assert single == [("only", None, None)] and quiet is False


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<Delete/>",
        b"<Delete><Object/></Delete>",
        b"<Delete><Object><Key>a</Key></Object>",
        b"<NotDelete><Object><Key>a</Key></Object></NotDelete>",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]><Delete><Object><Key>&e;</Key></Object></Delete>',
        b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>",
    ],
)
def test_parse_delete_refuses_malformed(body: bytes) -> None:
    with pytest.raises(errors.S3Error) as info:
        s3xml.parse_delete(body)
    assert info.value.code == "MalformedXML"


def test_parse_tagging() -> None:
    tags = s3xml.parse_tagging(
        b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>b</Key><Value></Value></Tag></TagSet></Tagging>"
    )
    assert tags == {"a": "1", "b": ""}
    assert s3xml.parse_tagging(b"<Tagging><TagSet/></Tagging>") == {}
    # Text is kept as sent: " a" is another tag than "a"; indentation between elements is no text.
    indented = b"<Tagging>\n <TagSet>\n  <Tag>\n   <Key> a </Key>\n   <Value>x </Value>\n  </Tag>\n </TagSet>\n</Tagging>"
    assert s3xml.parse_tagging(indented) == {" a ": "x "}
    assert s3xml.parse_tagging(b"<Tagging>\n</Tagging>") == {}
    with pytest.raises(errors.S3Error) as info:
        s3xml.parse_tagging(b"<Tagging><TagSet><Tag><Key>a</Key></Tag><Tag><Key>a</Key></Tag></TagSet></Tagging>")
    assert info.value.code == "InvalidTag"


def test_parse_complete_and_create_bucket() -> None:
    parts = s3xml.parse_complete(
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"e1\"</ETag></Part>"
        b"<Part><PartNumber>2</PartNumber><ETag>e2</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part></CompleteMultipartUpload>"
    )
    assert parts == [{"PartNumber": "1", "ETag": '"e1"'}, {"PartNumber": "2", "ETag": "e2", "ChecksumCRC32": "AAAAAA=="}]
    assert s3xml.parse_create_bucket(b"") is None
    assert (
        s3xml.parse_create_bucket(
            b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"
        )
        == "eu-west-1"
    )
