"""DeleteObjects echoes the VersionId each Object gave: an <Error> has Key, VersionId, Code and
Message (localstack's test_s3_api snapshot delete-object-wrong-version-id, recorded from AWS:
NoSuchVersion for an unknown version of an object in a bucket without versioning), a <Deleted>
has Key and VersionId ("null", the one version such a bucket has). Entries of Objects without
one have no VersionId."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from typing import Any

from tests.conftest import Server, signed

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
WRONG = "HPniJFCxqTsMuIH9KX8K8wEjNUgmABCD"


def test_entries_echo_the_version_id_given(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="test-delete", Body=b"test-delete")
    s3.put_object(Bucket=bucket, Key="null-version", Body=b"x")
    answer = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [
            {"Key": "test-delete", "VersionId": WRONG}, {"Key": "null-version", "VersionId": "null"}, {"Key": "plain"},
        ]},
    )  # fmt: skip
    assert answer["Errors"] == [
        {"Key": "test-delete", "VersionId": WRONG, "Code": "NoSuchVersion",
         "Message": "The specified version does not exist."},
    ]  # fmt: skip
    assert sorted(answer["Deleted"], key=lambda d: d["Key"]) == [
        {"Key": "null-version", "VersionId": "null"}, {"Key": "plain"},
    ]  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="test-delete")["Body"].read() == b"test-delete"


def test_error_elements_in_s3s_order(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    body = (
        f"<Delete><Object><Key>k</Key><VersionId>{WRONG}</VersionId></Object>"
        "<Object><Key>gone</Key><VersionId>null</VersionId></Object></Delete>"
    ).encode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    r = signed(server, "POST", f"/{bucket}?delete", body, {"Content-MD5": md5})
    assert r.status == 200, r.data
    root = ET.fromstring(r.data)
    entries = [(child.tag[len(NS):], [(e.tag[len(NS):], e.text) for e in child]) for child in root]
    assert entries == [
        ("Deleted", [("Key", "gone"), ("VersionId", "null")]),
        ("Error", [("Key", "k"), ("VersionId", WRONG), ("Code", "NoSuchVersion"),
                   ("Message", "The specified version does not exist.")]),
    ]  # fmt: skip
