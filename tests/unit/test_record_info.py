"""Record.to_info builds its ObjectInfo positionally (a listing page makes a thousand): every
field of the record must land in the ObjectInfo field of its own name, as copies."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from s3serve.storage.base import Encryption, ObjectInfo, PartInfo
from s3serve.storage.metadata import Record

# The fields Record and ObjectInfo share by name; every one away from its default, and no two
# alike, so a swapped pair cannot pass.
SHARED: dict[str, Any] = {
    "size": 7,
    "etag": "0123456789abcdef0123456789abcdef-2",
    "headers": {"content-type": "text/plain"},
    "user_meta": {"a": "b"},
    "checksums": {"CRC32": "AAAAAA=="},
    "checksum_type": "COMPOSITE",
    "storage_class": "STANDARD_IA",
    "parts": [PartInfo(1, 3, "e1", 1.5, {"CRC32": "AQIDBA=="}), PartInfo(2, 4, "e2", 2.5)],
    "encryption": Encryption.of("aws:kms", "arn:aws:kms:us-east-1:111122223333:key/k", True),
}


def _record() -> Record:
    extra = {"mtime_ns": 5_000_000_000, "inode": 99, "tags": {"t": "v", "u": "w"}, "modified_ns": 6_000_000_000}
    return Record(**extra, **copy.deepcopy(SHARED))


def test_every_field_reaches_the_info_under_its_own_name() -> None:
    info = _record().to_info("some/key")
    assert info == ObjectInfo(key="some/key", last_modified=6.0, tag_count=2, is_folder=False, **SHARED)
    # ObjectInfo's fields, in its own order, all set by to_info: a new field needs it there too.
    assert [f.name for f in dataclasses.fields(ObjectInfo)] == [
        "key", "size", "etag", "last_modified", "headers", "user_meta", "checksums", "checksum_type",
        "storage_class", "parts", "tag_count", "is_folder", "encryption",
    ]  # fmt: skip


def test_the_info_holds_copies_of_the_records_collections() -> None:
    record = _record()
    info = record.to_info("k")
    info.headers["x"] = "y"
    info.user_meta["x"] = "y"
    info.checksums["SHA1"] = "x"
    assert info.parts is not None and record.parts is not None
    info.parts[0].checksums["SHA1"] = "x"
    assert record.headers == {"content-type": "text/plain"} and record.user_meta == {"a": "b"}
    assert record.checksums == {"CRC32": "AAAAAA=="} and record.parts[0].checksums == {"CRC32": "AQIDBA=="}


def test_a_folder_marker_and_a_plain_record() -> None:
    marker = Record(etag="d41d8cd98f00b204e9800998ecf8427e", size=0, mtime_ns=3_000_000_000, folder=True)
    info = marker.to_info("dir/")
    assert (info.is_folder, info.last_modified, info.parts, info.tag_count) == (True, 3.0, None, 0)
    plain = Record(etag="e", size=1, mtime_ns=4_000_000_000)
    assert plain.to_info("k").last_modified == 4.0
