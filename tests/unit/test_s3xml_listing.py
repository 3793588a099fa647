"""The listing renderer (one f-string per entry) still escapes what XML needs and nothing else."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from s3serve import s3xml
from s3serve.storage.base import ObjectInfo

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _obj(key: str, **kw: object) -> ObjectInfo:
    base: dict[str, object] = dict(key=key, size=5, etag="abc", last_modified=1_700_000_000.25, headers={}, user_meta={})
    base.update(kw)
    return ObjectInfo(**base)  # type: ignore[arg-type]


def test_entry_is_exact() -> None:
    body = s3xml.list_objects(
        v2=True, bucket="b", prefix="", delimiter="", max_keys=1000, url=False,
        objects=[_obj("a/b.txt", checksums={"CRC64NVME": "AAAAAAAAAAA="}, checksum_type="FULL_OBJECT")],
        common_prefixes=[], is_truncated=False, owner=None,
    )
    assert (
        b"<Contents><Key>a/b.txt</Key><LastModified>2023-11-14T22:13:20.000Z</LastModified>"
        b'<ETag>"abc"</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass>'
        b"<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType></Contents>"
    ) in body


def test_special_characters_round_trip_through_a_parser() -> None:
    keys = ["a&b", "<tag>", "x>y", "quote\"s", "it's", "é/ü", "plain"]
    body = s3xml.list_objects(
        v2=True, bucket="b", prefix="", delimiter="", max_keys=1000, url=False,
        objects=[_obj(k, etag="e<&>") for k in keys], common_prefixes=["p&/"], is_truncated=False,
        owner=("id&", "name<>"),
    )
    root = ET.fromstring(body)
    assert [c.findtext(f"{NS}Key") for c in root.iter(f"{NS}Contents")] == keys
    assert {c.findtext(f"{NS}ETag") for c in root.iter(f"{NS}Contents")} == {'"e<&>"'}
    assert root.findtext(f"{NS}CommonPrefixes/{NS}Prefix") == "p&/"
    assert root.findtext(f"{NS}Contents/{NS}Owner/{NS}DisplayName") == "name<>"


def test_url_encoding_type_encodes_keys() -> None:
    body = s3xml.list_objects(
        v2=True, bucket="b", prefix="", delimiter="", max_keys=1000, url=True,
        objects=[_obj("a b&c/d")], common_prefixes=[], is_truncated=False, owner=None,
    )
    assert b"<Key>a%20b%26c/d</Key>" in body


def test_iso8601_whole_seconds_as_s3() -> None:
    assert s3xml.iso8601(0.0) == "1970-01-01T00:00:00.000Z"
    # Truncated as the Last-Modified header is, never rounded up into the next second.
    assert s3xml.iso8601(1_700_000_000.5) == "2023-11-14T22:13:20.000Z"
    assert s3xml.iso8601(1_700_000_000.9996) == "2023-11-14T22:13:20.000Z"
    assert s3xml.iso8601(5.9999) == "1970-01-01T00:00:05.000Z"
