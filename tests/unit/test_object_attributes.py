"""GetObjectAttributes' pure pieces: the x-amz-object-attributes header, the page of parts, the XML."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from s3serve import errors, s3xml
from s3serve.handlers.attributes import parts_page, requested_attributes
from s3serve.storage.base import ObjectInfo, PartInfo

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _multipart(checksums: dict[str, str]) -> ObjectInfo:
    # Part numbers keep the gaps they were uploaded with.
    parts = [PartInfo(n, 10 * n, "e", 0.0, {"CRC32": f"c{n}=="} if checksums else {}) for n in (1, 3, 4)]
    return ObjectInfo("k", 80, "abc-3", 0.0, checksums=checksums, checksum_type="COMPOSITE", parts=parts)


def test_requested_attributes() -> None:
    assert requested_attributes(["ETag, ObjectSize"]) == {"ETag", "ObjectSize"}
    # Several headers of the name count together.
    assert requested_attributes(["ETag", "Checksum,StorageClass"]) == {"ETag", "Checksum", "StorageClass"}
    for values in ([], [""], [" , "], ["ETag,etag"], ["Owner"]):
        with pytest.raises(errors.InvalidArgument) as exc:
            requested_attributes(values)
        assert exc.value.message == "Invalid attribute name specified."


def test_parts_page() -> None:
    info = _multipart({"CRC32": "x==-3"})
    page = parts_page(info, 0, 2)
    assert page is not None and [p.number for p in page[0]] == [1, 3] and page[1] is True
    page = parts_page(info, 3, 2)
    assert page is not None and [p.number for p in page[0]] == [4] and page[1] is False
    # Without an object checksum S3 lists no parts; a single-part object has none.
    assert parts_page(_multipart({}), 0, 1000) is None
    assert parts_page(ObjectInfo("k", 1, "e", 0.0, checksums={"CRC32": "x=="}), 0, 1000) is None


def test_xml_of_a_composite_object() -> None:
    info = _multipart({"CRC32": "AAAAAA==-3"})
    page = parts_page(info, 1, 1)
    assert page is not None
    body = s3xml.object_attributes(
        info, {"Checksum", "ObjectParts"}, parts=page[0], part_number_marker=1, max_parts=1, is_truncated=page[1]
    )
    doc = ElementTree.fromstring(body)
    assert doc.tag == f"{NS}GetObjectAttributesResponse"
    assert [c.tag.removeprefix(NS) for c in doc] == ["Checksum", "ObjectParts"]
    assert doc.findtext(f"{NS}Checksum/{NS}ChecksumCRC32") == "AAAAAA=="  # no "-3" here
    assert doc.findtext(f"{NS}Checksum/{NS}ChecksumType") == "COMPOSITE"
    parts = doc.find(f"{NS}ObjectParts")
    assert parts is not None
    assert {c.tag.removeprefix(NS): c.text for c in parts if c.tag != f"{NS}Part"} == {
        "PartsCount": "3",
        "PartNumberMarker": "1",
        "NextPartNumberMarker": "3",
        "MaxParts": "1",
        "IsTruncated": "true",
    }
    (part,) = parts.findall(f"{NS}Part")
    assert [(c.tag.removeprefix(NS), c.text) for c in part] == [("PartNumber", "3"), ("Size", "30"), ("ChecksumCRC32", "c3==")]


def test_xml_without_parts_or_checksum() -> None:
    info = _multipart({})
    doc = ElementTree.fromstring(s3xml.object_attributes(info, {"ETag", "Checksum", "ObjectParts"}))
    assert doc.findtext(f"{NS}ETag") == "abc-3"
    assert doc.find(f"{NS}Checksum") is None
    parts = doc.find(f"{NS}ObjectParts")
    assert parts is not None and [c.tag.removeprefix(NS) for c in parts] == ["PartsCount"]
    whole = ObjectInfo("k", 5, "e", 0.0, storage_class="GLACIER")
    doc = ElementTree.fromstring(s3xml.object_attributes(whole, {"ObjectParts", "StorageClass", "ObjectSize"}))
    assert [(c.tag.removeprefix(NS), c.text) for c in doc] == [("StorageClass", "GLACIER"), ("ObjectSize", "5")]
