"""The <Error> body of NoSuchKey: S3's names the key in <Key> and has no <Resource> (Code,
Message, Key, RequestId, HostId: the answer localstack's test_s3_api snapshots recorded from
AWS for GetObject on a deleted key). The same from a server on its folder and from a cache in
front of an upstream, which once named the key and the request path there respectively."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.conftest import Server, signed


def _fields(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    assert root.tag == "Error", body
    return {child.tag: child.text or "" for child in root}


def test_no_such_key_names_the_key_and_no_resource(server: Server, bucket: str) -> None:
    r = signed(server, "GET", f"/{bucket}/no/such%20key")
    assert r.status == 404, r.data
    fields = _fields(r.data)
    assert sorted(fields) == ["Code", "HostId", "Key", "Message", "RequestId"], r.data
    assert (fields["Code"], fields["Key"]) == ("NoSuchKey", "no/such key")


def test_copy_from_missing_source_names_no_resource(server: Server, s3, bucket: str) -> None:
    r = signed(server, "PUT", f"/{bucket}/dst", headers={"x-amz-copy-source": f"/{bucket}/gone"})
    assert r.status == 404, r.data
    fields = _fields(r.data)
    assert fields["Code"] == "NoSuchKey" and "Resource" not in fields, r.data
