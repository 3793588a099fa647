"""ListBuckets' continuation token is opaque, as S3's: not a bucket name a client could make up,
and a token s3serve did not issue is refused with 400 InvalidArgument instead of being read as a
name to resume after (which answered a silently shortened or empty page)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.conftest import Server, signed

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
TOKEN_MESSAGE = "The continuation token provided is incorrect"


@pytest.fixture
def buckets(s3) -> Iterator[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    prefix = f"tok-{uuid.uuid4().hex[:10]}-"
    names = [f"{prefix}{n}" for n in ("a", "b", "c")]
    for name in names:
        s3.create_bucket(Bucket=name)
    yield prefix, names
    for name in names:
        s3.delete_bucket(Bucket=name)


def test_pages_resume_with_an_opaque_token(s3, buckets: tuple[str, list[str]]) -> None:
    prefix, names = buckets
    seen: list[str] = []
    tokens: list[str] = []
    kwargs: dict[str, object] = {"MaxBuckets": 1, "Prefix": prefix}
    while True:
        page = s3.list_buckets(**kwargs)
        seen += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
        if token is None:
            break
        tokens.append(token)
        kwargs["ContinuationToken"] = token
    assert seen == names
    assert len(tokens) == 2
    # Opaque: no token is, or shows, the bucket name it resumes after.
    for token, name in zip(tokens, names, strict=False):
        assert name not in token
    # The paginator (which passes the token on as boto3 users do) sees the same.
    paged = [b["Name"] for p in s3.get_paginator("list_buckets").paginate(Prefix=prefix, PaginationConfig={"PageSize": 2}) for b in p["Buckets"]]
    assert paged == names


@pytest.mark.parametrize("kind", ["garbage", "bucket-name", "listing-token", "not-base64", "short", "non-ascii"])
def test_token_not_issued_by_list_buckets_is_refused(server: Server, s3, buckets: tuple[str, list[str]], kind: str) -> None:  # type: ignore[no-untyped-def]
    prefix, names = buckets
    if kind == "listing-token":
        # A ListObjectsV2 token of a real listing is no ListBuckets token.
        s3.put_object(Bucket=names[0], Key="k1", Body=b"")
        s3.put_object(Bucket=names[0], Key="k2", Body=b"")
        token = s3.list_objects_v2(Bucket=names[0], MaxKeys=1)["NextContinuationToken"]
        s3.delete_objects(Bucket=names[0], Delete={"Objects": [{"Key": "k1"}, {"Key": "k2"}]})
    else:
        token = {
            "garbage": "garbage",
            # What s3serve used to issue: the last name of the previous page.
            "bucket-name": names[0],
            "not-base64": "!!!!",
            "short": "AAA=",
            "non-ascii": "é",
        }[kind]
    r = signed(server, "GET", f"/?max-buckets=1&prefix={prefix}&continuation-token={quote(token, safe='')}")
    assert r.status == 400, r.data
    root = ET.fromstring(r.data)
    assert root.tag == "Error"
    assert (root.findtext("Code"), root.findtext("Message"), root.findtext("ArgumentName")) == (
        "InvalidArgument", TOKEN_MESSAGE, "continuation-token",
    )  # fmt: skip


def test_token_still_resumes_after_its_bucket_is_deleted(s3, buckets: tuple[str, list[str]]) -> None:
    prefix, names = buckets
    first = s3.list_buckets(MaxBuckets=1, Prefix=prefix)
    assert [b["Name"] for b in first["Buckets"]] == names[:1]
    s3.delete_bucket(Bucket=names[0])
    try:
        rest = s3.list_buckets(MaxBuckets=5, Prefix=prefix, ContinuationToken=first["ContinuationToken"])
        assert [b["Name"] for b in rest["Buckets"]] == names[1:]
        assert "ContinuationToken" not in rest
    finally:
        s3.create_bucket(Bucket=names[0])


def test_raw_answer_carries_the_token(server: Server, buckets: tuple[str, list[str]]) -> None:
    prefix, names = buckets
    r = signed(server, "GET", f"/?max-buckets=2&prefix={prefix}")
    assert r.status == 200, r.data
    root = ET.fromstring(r.data)
    assert [e.text for e in root.iter(f"{NS}Name")] == names[:2]
    token = root.findtext(f"{NS}ContinuationToken")
    assert token and token != names[1]
    r = signed(server, "GET", f"/?max-buckets=2&prefix={prefix}&continuation-token={quote(token, safe='')}")
    root = ET.fromstring(r.data)
    assert [e.text for e in root.iter(f"{NS}Name")] == names[2:]
    assert root.find(f"{NS}ContinuationToken") is None
