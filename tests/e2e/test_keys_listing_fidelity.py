"""Keys of every shape, and listings compared with the listing S3's rules give for the same keys.

Listings are read raw (signed GETs, parsed here) as well as through boto3, which always asks for
encoding-type=url and so never sees how keys are written into XML text.
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote_plus

import pytest
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.conftest import REGION, Server

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
Item = tuple[str, str]  # ("K", key) or ("P", common prefix)


class RawLister:
    """Signed GETs over one keep-alive connection: many small pages, quickly."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.pool = urllib3.PoolManager(cert_reqs="CERT_NONE").connection_from_url(server.endpoint)
        self.credentials = Credentials(server.access_key, server.secret_key)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items()))
        target = f"{path}?{query}" if query else path
        all_headers = {"x-amz-content-sha256": hashlib.sha256(body).hexdigest(), **(headers or {})}
        request = AWSRequest(method=method, url=self.server.endpoint + target, data=body, headers=all_headers)
        S3SigV4Auth(self.credentials, "s3", REGION).add_auth(request)
        return self.pool.urlopen(method, target, body=body, headers=dict(request.headers), retries=False)

    def get(self, bucket: str, params: dict[str, str]) -> tuple[int, bytes]:
        r = self.request("GET", f"/{bucket}", params)
        return r.status, r.data

    def page(self, bucket: str, params: dict[str, str]) -> dict[str, object]:
        status, data = self.get(bucket, params)
        assert status == 200, data
        root = ET.fromstring(data)
        url = root.find(NS + "EncodingType") is not None

        def text(element: ET.Element | None) -> str | None:
            if element is None:
                return None
            value = element.text or ""
            return unquote_plus(value) if url else value

        entries = root.findall(NS + "Contents") + root.findall(NS + "Version")
        result: dict[str, object] = {
            "keys": [text(e.find(NS + "Key")) for e in entries],
            "prefixes": [text(e.find(NS + "Prefix")) for e in root.findall(NS + "CommonPrefixes")],
            "truncated": root.findtext(NS + "IsTruncated") == "true",
        }
        for name in ("NextContinuationToken", "NextMarker", "NextKeyMarker", "KeyCount", "VersionIdMarker"):
            element = root.find(NS + name)
            if element is not None:
                result[name] = (
                    element.text or "" if name in ("NextContinuationToken", "KeyCount") else text(element)
                )
        return result


@pytest.fixture(scope="module")
def raw(server: Server) -> RawLister:
    return RawLister(server)


def _put_all(s3, bucket: str, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else key.encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))


def _utf8(items: list[str]) -> list[str]:
    return sorted(items, key=lambda k: k.encode())


# -- DeleteObjects ------------------------------------------------------------------------------


def _delete(raw: RawLister, bucket: str, body: bytes) -> tuple[int, bytes]:
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    r = raw.request("POST", f"/{bucket}", {"delete": ""}, body, {"Content-MD5": md5})
    return r.status, r.data


def _listed(s3, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_delete_objects_deletes_the_keys_named_whitespace_and_all(s3, raw: RawLister, bucket: str) -> None:
    # A parser stripping text turned "a " and " a" into "a", and deleted that object instead.
    keys = ["a", " a", "a ", "b", "b\n", "\tc", "c", "  "]
    _put_all(s3, bucket, keys)
    body = (
        b"<Delete>\n  <Object>\n    <Key>a </Key>\n  </Object>\n"
        b"  <Object><Key> a</Key></Object>\n  <Object><Key>b\n</Key></Object>\n"
        b"  <Object><Key>\tc</Key></Object>\n  <Object><Key>  </Key></Object>\n</Delete>\n"
    )
    status, data = _delete(raw, bucket, body)
    assert status == 200, data
    deleted = [e.findtext(NS + "Key") for e in ET.fromstring(data).iter(NS + "Deleted")]
    assert deleted == ["a ", " a", "b\n", "\tc", "  "]
    assert _listed(s3, bucket) == ["a", "b", "c"]
    # boto3 sends the keys as they are too.
    s3.put_object(Bucket=bucket, Key="c ", Body=b"x")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c "}], "Quiet": True})
    assert "Errors" not in result
    assert _listed(s3, bucket) == ["a", "b", "c"]


def test_delete_objects_refuses_a_key_with_markup_inside(s3, raw: RawLister, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    status, data = _delete(raw, bucket, b"<Delete><Object><Key>a<b>c</b></Key></Object></Delete>")
    assert status == 400 and b"<Code>MalformedXML</Code>" in data
    assert _listed(s3, bucket) == ["a"]


def test_delete_objects_quiet_missing_and_a_thousand_keys(s3, raw: RawLister, bucket: str) -> None:
    keys = [f"d{i % 7}/s{i % 13}/k{i}" for i in range(1000)]
    _put_all(s3, bucket, [*keys, "keep/"])
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    assert "Deleted" not in result and "Errors" not in result
    # Folders emptied by the deletes are gone; the folder marker stays.
    listing = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in listing["CommonPrefixes"]] == ["keep/"]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "never"}, {"Key": "keep/"}]})
    assert [d["Key"] for d in result["Deleted"]] == ["never", "keep/"]
    assert _listed(s3, bucket) == []
    many = "".join(f"<Object><Key>k{i}</Key></Object>" for i in range(1001))
    status, data = _delete(raw, bucket, f"<Delete>{many}</Delete>".encode())
    assert status == 400 and b"<Code>MalformedXML</Code>" in data


# -- how keys are written into listings ---------------------------------------------------------

_LISTINGS = [{"list-type": "2"}, {}, {"versions": ""}]


@pytest.mark.parametrize("params", _LISTINGS, ids=["v2", "v1", "versions"])
def test_a_carriage_return_survives_a_listing_without_encoding(
    s3, raw: RawLister, bucket: str, params: dict[str, str]
) -> None:
    # A raw CR in XML text is read back as LF (end-of-line normalisation): another key.
    keys = ["cr\rx", "crlf\r\nx", "lf\nx", "tab\tx", "amp&<>x"]
    _put_all(s3, bucket, keys)
    page = raw.page(bucket, params)
    assert page["keys"] == _utf8(keys)
    page = raw.page(bucket, {**params, "delimiter": "\r"})
    assert page["keys"] == ["amp&<>x", "lf\nx", "tab\tx"] and page["prefixes"] == ["cr\r", "crlf\r"]
    page = raw.page(bucket, {**params, "encoding-type": "url"})
    assert page["keys"] == _utf8(keys)


def test_control_characters_are_written_as_s3_writes_them(s3, raw: RawLister, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="ctl\x01x\x1f", Body=b"x")
    status, data = raw.get(bucket, {"list-type": "2"})
    assert status == 200 and b"<Key>ctl&#x1;x&#x1F;</Key>" in data
    status, data = raw.get(bucket, {"list-type": "2", "encoding-type": "url"})
    assert status == 200 and b"<Key>ctl%01x%1F</Key>" in data
    assert _listed(s3, bucket) == ["ctl\x01x\x1f"]
    # Not through DeleteObjects: its XML body cannot carry the key (S3 refuses it as MalformedXML too).
    s3.delete_object(Bucket=bucket, Key="ctl\x01x\x1f")
    # U+FFFE and U+FFFF are no XML 1.0 characters either.
    s3.put_object(Bucket=bucket, Key="nc\ufffex\uffff", Body=b"x")
    status, data = raw.get(bucket, {"list-type": "2"})
    assert status == 200 and b"<Key>nc&#xFFFE;x&#xFFFF;</Key>" in data
    assert _listed(s3, bucket) == ["nc\ufffex\uffff"]
    s3.delete_object(Bucket=bucket, Key="nc\ufffex\uffff")


def test_key_shapes_round_trip(s3, bucket: str) -> None:
    cafe = "caf\u00e9"
    keys = [
        cafe, unicodedata.normalize("NFD", cafe), "sp ace", "plus+sign", "pct%20x", "pct%", "hash#x", "q?x",
        "back\\slash", "Case", "case", "CASE", "emoji\U0001f600", "\u00a0nbsp", "a.c", "a0", "a!", "...",
        "a\\..\\b", "y" * 255, ("\u00e9" * 127 + "/") * 4, "z/" * 511 + "q", "amp&<>'\"",
    ]  # fmt: skip
    _put_all(s3, bucket, keys)
    paginator = s3.get_paginator("list_objects_v2")
    listed = [
        o["Key"]
        for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 3})
        for o in page["Contents"]
    ]
    assert listed == _utf8(keys)
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == (b"" if key.endswith("/") else key.encode())


# -- page walks against S3's rules ----------------------------------------------------------------


def _tree() -> list[str]:
    keys = {
        "a.c",
        "a!",
        "a0",
        "Z",
        "z",
        "b-0",
        "b-/c",
        "c/",
        "c/d/",
        "c/d/e",
        "c/e",
        "e\u0301",
        "\u00e9e",
        "x+y",
        "a b/c",
    }
    for top in ("a", "a-b", "\u00e9", "q"):
        for mid in ("a", "b", "c.d", "a-b", "\u00e9", "x"):
            keys.add(f"{top}/{mid}")
            for leaf in ("1", "a/b", "x-y"):
                keys.add(f"{top}/{mid}x/{leaf}")
    return _utf8(list(keys))


def _expected(keys: list[str], prefix: str, delimiter: str) -> list[Item]:
    out: list[Item] = []
    for key in keys:
        if not key.startswith(prefix):
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            out.append(("K", key))
        elif not out or out[-1] != ("P", key[: cut + len(delimiter)]):
            out.append(("P", key[: cut + len(delimiter)]))
    return out


def _items(page: dict[str, object]) -> list[Item]:
    items = [("K", k) for k in page["keys"]] + [("P", p) for p in page["prefixes"]]  # type: ignore[attr-defined]
    return sorted(items, key=lambda item: item[1].encode())


Walk = Callable[[RawLister, str, dict[str, str], int], Iterator[list[Item]]]


def _walk_v2(raw: RawLister, bucket: str, base: dict[str, str], size: int) -> Iterator[list[Item]]:
    params = {**base, "list-type": "2", "max-keys": str(size)}
    while True:
        page = raw.page(bucket, params)
        assert int(page["KeyCount"]) == len(_items(page))  # type: ignore[call-overload]
        yield _items(page)
        if not page["truncated"]:
            return
        params["continuation-token"] = page["NextContinuationToken"]  # type: ignore[assignment]


def _walk_start_after(raw: RawLister, bucket: str, base: dict[str, str], size: int) -> Iterator[list[Item]]:
    # Resuming after the last key or common prefix seen, as clients that keep no token do.
    params = {**base, "list-type": "2", "max-keys": str(size)}
    while True:
        page = raw.page(bucket, params)
        items = _items(page)
        yield items
        if not page["truncated"]:
            return
        params["start-after"] = items[-1][1]


def _walk_v1(raw: RawLister, bucket: str, base: dict[str, str], size: int) -> Iterator[list[Item]]:
    params = {**base, "max-keys": str(size)}
    while True:
        page = raw.page(bucket, params)
        yield _items(page)
        if not page["truncated"]:
            return
        # NextMarker comes with a delimiter only; without one the client resumes from its last key.
        params["marker"] = page["NextMarker"] if base.get("delimiter") else page["keys"][-1]  # type: ignore[index]


def _walk_versions(raw: RawLister, bucket: str, base: dict[str, str], size: int) -> Iterator[list[Item]]:
    params = {**base, "versions": "", "max-keys": str(size)}
    while True:
        page = raw.page(bucket, params)
        yield _items(page)
        if not page["truncated"]:
            return
        params["key-marker"] = page["NextKeyMarker"]  # type: ignore[assignment]
        params["version-id-marker"] = "null"


@pytest.fixture(scope="module")
def tree_bucket(server: Server) -> Iterator[tuple[str, list[str]]]:
    s3 = server.client()
    name = "fidelity-tree"
    s3.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    keys = _tree()
    _put_all(s3, name, keys)
    yield name, keys
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": k} for k in keys[start : start + 1000]]
        s3.delete_objects(Bucket=name, Delete={"Objects": chunk, "Quiet": True})  # type: ignore[attr-defined]
    s3.delete_bucket(Bucket=name)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "walk",
    [_walk_v2, _walk_start_after, _walk_v1, _walk_versions],
    ids=["v2", "start-after", "v1", "versions"],
)
@pytest.mark.parametrize(
    ("prefix", "delimiter"),
    [("", "/"), ("", ""), ("a", "/"), ("a/", "x/"), ("", "-"), ("\u00e9", "/"), ("c/", "/"), ("q/b", "a/b")],
)
def test_every_page_walk_is_the_listing(
    raw: RawLister, tree_bucket: tuple[str, list[str]], walk: Walk, prefix: str, delimiter: str
) -> None:
    """Every page size from 1 to 5, raw and url-encoded: the pages joined are exactly the one-page
    listing S3's rules give, no key or common prefix lost or repeated across a page boundary."""
    bucket, keys = tree_bucket
    expected = _expected(keys, prefix, delimiter)
    assert expected, "the case lists nothing"
    for url in (False, True):
        base = {"prefix": prefix, "delimiter": delimiter, **({"encoding-type": "url"} if url else {})}
        whole = list(walk(raw, bucket, base, 1000))
        assert whole == [expected]
        for size in range(1, 6):
            pages = list(walk(raw, bucket, base, size))
            assert all(len(page) <= size for page in pages)
            assert [item for page in pages for item in page] == expected, (size, url)


# -- ListObjectVersions markers -------------------------------------------------------------------


def _error(raw: RawLister, bucket: str, params: dict[str, str]) -> tuple[int, str | None, str | None]:
    status, data = raw.get(bucket, params)
    root = ET.fromstring(data)
    return status, root.findtext("Code"), root.findtext("Message")


def test_version_id_marker_is_checked_and_echoed(raw: RawLister, tree_bucket: tuple[str, list[str]]) -> None:
    bucket, keys = tree_bucket
    without_key = "A version-id marker cannot be specified without a key marker."
    assert _error(raw, bucket, {"versions": "", "version-id-marker": "null"}) == (
        400,
        "InvalidArgument",
        without_key,
    )
    empty = (400, "InvalidArgument", "A version-id marker cannot be empty.")
    assert _error(raw, bucket, {"versions": "", "key-marker": "a", "version-id-marker": ""}) == empty
    bad = (400, "InvalidArgument", "Invalid version id specified")
    assert _error(raw, bucket, {"versions": "", "key-marker": "a", "version-id-marker": "NULL"}) == bad
    page = raw.page(
        bucket, {"versions": "", "key-marker": keys[3], "version-id-marker": "null", "max-keys": "2"}
    )
    assert page["VersionIdMarker"] == "null" and page["keys"] == keys[4:6]
    page = raw.page(bucket, {"versions": "", "key-marker": "", "version-id-marker": "", "max-keys": "1"})
    assert page["keys"] == keys[:1]
