"""Small request details answered as AWS S3 answers them: listing parameters (max-keys, list-type,
continuation tokens) and the dates of conditional reads."""

from __future__ import annotations

import base64
import datetime
import email.utils
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
import urllib3
from botocore.exceptions import ClientError

from tests.conftest import Server, signed

INT_MESSAGE = "Provided max-keys not an integer or within integer range"
RANGE_MESSAGE = "Argument maxKeys must be an integer between 0 and 2147483647"
TOKEN_MESSAGE = "The continuation token provided is incorrect"

# The three listings, by the query that selects each.
LISTINGS = {"v1": "", "v2": "list-type=2&", "versions": "versions&"}


def _error(r: urllib3.BaseHTTPResponse) -> dict[str, str]:
    """The elements of an <Error> document, by name."""
    assert r.status == 400, (r.status, r.data)
    return {child.tag: child.text or "" for child in ET.fromstring(r.data)}


def _root(r: urllib3.BaseHTTPResponse) -> ET.Element:
    assert r.status == 200, (r.status, r.data)
    return ET.fromstring(r.data)


def _children(root: ET.Element) -> set[str]:
    return {child.tag.rsplit("}", 1)[-1] for child in root}


def _find(root: ET.Element, name: str) -> str | None:
    for child in root:
        if child.tag.rsplit("}", 1)[-1] == name:
            return child.text or ""
    return None


def _list(server: Server, bucket: str, query: str) -> urllib3.BaseHTTPResponse:
    return signed(server, "GET", f"/{bucket}?{query}")


def _fill(s3, bucket: str, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")


# -- max-keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("listing", LISTINGS)
@pytest.mark.parametrize("value", ["abc", "2147483648", "-2147483649", "99999999999", " 5", "5.0", "1e3", "0x10", "1_000"])
def test_max_keys_that_is_not_an_int32_is_refused(server, s3, bucket: str, listing: str, value: str) -> None:
    error = _error(_list(server, bucket, f"{LISTINGS[listing]}max-keys={quote(value)}"))
    assert (error["Code"], error["Message"]) == ("InvalidArgument", INT_MESSAGE)
    assert (error["ArgumentName"], error["ArgumentValue"]) == ("max-keys", value)


@pytest.mark.parametrize("listing", ["v1", "v2"])
@pytest.mark.parametrize(("value", "named"), [("-1", "-1"), ("-01", "-1"), ("-2147483648", "-2147483648")])
def test_negative_max_keys_is_refused_naming_max_keys(server, bucket: str, listing: str, value: str, named: str) -> None:
    error = _error(_list(server, bucket, f"{LISTINGS[listing]}max-keys={value}"))
    assert (error["Code"], error["Message"]) == ("InvalidArgument", RANGE_MESSAGE)
    # S3 spells the argument in camel case here, and names the value as it read it.
    assert (error["ArgumentName"], error["ArgumentValue"]) == ("maxKeys", named)


def test_negative_max_keys_of_list_object_versions_has_its_own_words(server, bucket: str) -> None:
    error = _error(_list(server, bucket, "versions&max-keys=-1"))
    assert (error["Code"], error["Message"], error["ArgumentName"]) == (
        "InvalidArgument", "max-keys cannot be negative", "max-keys",
    )  # fmt: skip
    assert "ArgumentValue" not in error


@pytest.mark.parametrize("listing", LISTINGS)
def test_max_keys_values_s3_takes(server, s3, bucket: str, listing: str) -> None:
    _fill(s3, bucket, [f"k{i}" for i in range(7)])
    tag = "Version" if listing == "versions" else "Contents"

    def count(value: str) -> int:
        root = _root(_list(server, bucket, f"{LISTINGS[listing]}max-keys={value}"))
        return sum(1 for child in root if child.tag.endswith("}" + tag))

    # Leading zeros, an explicit sign, a negative zero and an empty value are all numbers to S3.
    assert count("0005") == 5
    assert count("%2B3") == 3
    assert count("-0") == 0
    assert count("") == 7
    assert count("0" * 5000 + "2") == 2  # no digit limit: zeros are not digits of the value
    assert count("2147483647") == 7  # the largest int32 is a page size like any other


def test_a_max_keys_that_is_not_a_number_is_judged_before_encoding_type(server, bucket: str) -> None:
    # S3's order: an unreadable max-keys first, then encoding-type, then a negative max-keys.
    assert _error(_list(server, bucket, "max-keys=abc&encoding-type=bogus"))["ArgumentName"] == "max-keys"
    assert _error(_list(server, bucket, "max-keys=-1&encoding-type=bogus"))["ArgumentName"] == "encoding-type"
    assert _error(_list(server, bucket, "list-type=2&max-keys=-1&continuation-token=zz"))["ArgumentName"] == (
        "continuation-token"
    )


def test_boto3_sees_the_refusal(s3, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=-5)
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"
    assert exc.value.response["Error"]["ArgumentValue"] == "-5"


# -- list-type -------------------------------------------------------------------------------------


@pytest.mark.parametrize("list_type", ["1", "3", "0", "abc", "", "2.0"])
def test_any_list_type_but_2_is_a_v1_listing(server, s3, bucket: str, list_type: str) -> None:
    _fill(s3, bucket, ["a", "b"])
    root = _root(_list(server, bucket, f"list-type={list_type}&max-keys=1"))
    # V1's shape: a Marker (empty when none was sent), no KeyCount, no continuation token.
    assert "Marker" in _children(root) and "KeyCount" not in _children(root)
    assert "NextContinuationToken" not in _children(root)
    assert _find(root, "IsTruncated") == "true"


def test_first_list_type_decides(server, bucket: str) -> None:
    assert "KeyCount" not in _children(_root(_list(server, bucket, "list-type=1&list-type=2")))
    assert "KeyCount" in _children(_root(_list(server, bucket, "list-type=2&list-type=1")))


@pytest.mark.parametrize("list_type", ["", "list-type=1&", "list-type=3&", "list-type=abc&"])
@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        ("start-after=a", "startAfter only supported in REST.GET.BUCKET with list-type=2"),
        ("start-after=", "startAfter only supported in REST.GET.BUCKET with list-type=2"),
        ("continuation-token=x", "continuation-token only supported in REST.GET.BUCKET with list-type=2"),
        # Both: the token is the one named.
        ("start-after=a&continuation-token=x", "continuation-token only supported in REST.GET.BUCKET with list-type=2"),
    ],
)
def test_v2_parameters_on_a_v1_listing_are_refused(server, bucket: str, list_type: str, parameter: str, message: str) -> None:
    # A client asking list-type=3 for a V2 page is told, rather than paged from the first key forever.
    error = _error(_list(server, bucket, f"{list_type}{parameter}"))
    assert (error["Code"], error["Message"]) == ("InvalidArgument", message)
    assert error["ArgumentName"] == message.split(" ", 1)[0].replace("startAfter", "start-after")
    assert "ArgumentValue" not in error


def test_marker_on_a_v2_listing_is_refused(server, bucket: str) -> None:
    error = _error(_list(server, bucket, "list-type=2&marker=a"))
    assert (error["Message"], error["ArgumentName"]) == ("Marker unsupported with REST.GET.BUCKET in list-type=2", "marker")
    assert "ArgumentValue" not in error


# -- continuation tokens ---------------------------------------------------------------------------


def _b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


@pytest.mark.parametrize(
    "token",
    [
        "not a token!",
        "AAAA",
        "AAAAAA==",
        "=",
        "ü",
        "%FF%FE",
        _b64(b"k1"),  # base64 of a key: what a token looked like, but not one this server issued
        _b64(b"\xff\xfe\x00"),
        _b64(b"\x00" * 4 + b"k1"),
        "A" * 5000,
        "a/b+c",
    ],
)
def test_a_token_not_issued_by_the_server_is_refused(server, s3, bucket: str, token: str) -> None:
    _fill(s3, bucket, ["k0", "k1", "k2"])
    error = _error(_list(server, bucket, f"list-type=2&continuation-token={quote(token, safe='%')}"))
    assert (error["Code"], error["Message"], error["ArgumentName"]) == ("InvalidArgument", TOKEN_MESSAGE, "continuation-token")
    assert "ArgumentValue" not in error  # S3 does not echo the token


def test_an_empty_token_is_no_token(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """ceph s3-tests' test_bucket_listv2_continuationtoken_empty (not marked as failing on AWS): the first
    page, with the empty token echoed."""
    keys = ["bar", "baz", "foo", "quxx"]
    _fill(s3, bucket, keys)
    page = s3.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert (page["ContinuationToken"], page["IsTruncated"]) == ("", False)
    assert [o["Key"] for o in page["Contents"]] == keys
    # StartAfter is then what the page starts after.
    page = s3.list_objects_v2(Bucket=bucket, ContinuationToken="", StartAfter="baz", MaxKeys=1)
    assert [o["Key"] for o in page["Contents"]] == ["foo"] and page["IsTruncated"]


def test_a_tampered_token_is_refused_and_a_real_one_pages_on(server, s3, bucket: str) -> None:
    keys = ["a", "b/c", "z", "ü-key"]  # UTF-8 byte order
    _fill(s3, bucket, keys)
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=2)
    token = first["NextContinuationToken"]
    rest = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, ContinuationToken=token)
    assert [o["Key"] for o in first["Contents"] + rest["Contents"]] == keys
    assert rest["ContinuationToken"] == token
    for i in range(len(token)):
        if token[i] == "=":
            continue
        changed = token[:i] + ("B" if token[i] != "B" else "C") + token[i + 1 :]
        if base64.urlsafe_b64decode(changed) == base64.urlsafe_b64decode(token):
            continue  # only the unused bits of the last character changed: the same token
        r = _list(server, bucket, f"list-type=2&continuation-token={quote(changed)}")
        assert _error(r)["Message"] == TOKEN_MESSAGE, changed


def test_boto3_paginates_with_the_tokens(s3, bucket: str) -> None:
    keys = sorted(f"p/{i:03d}" for i in range(25))
    _fill(s3, bucket, keys)
    seen = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}):
        seen += [o["Key"] for o in page.get("Contents", [])]
    assert seen == keys


# -- conditional reads -----------------------------------------------------------------------------


def _http_date(when: datetime.datetime) -> str:
    return email.utils.format_datetime(when.astimezone(datetime.UTC), usegmt=True)


@pytest.fixture
def obj(s3, bucket: str) -> tuple[str, datetime.datetime]:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="o", Body=b"data")
    return f"/{bucket}/o", s3.head_object(Bucket=bucket, Key="o")["LastModified"]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_modified_since_in_the_future_is_ignored(server, obj: tuple[str, datetime.datetime], method: str) -> None:
    # RFC 9110 §13.1.3: a date later than the server's clock is invalid and the header ignored;
    # S3 answers 200 there, not 304.
    path, modified = obj
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    r = signed(server, method, path, headers={"If-Modified-Since": _http_date(future)})
    assert r.status == 200, r.data
    # Not modified since a past date at or after Last-Modified: 304 as ever.
    assert signed(server, method, path, headers={"If-Modified-Since": _http_date(modified)}).status == 304
    assert signed(server, method, path, headers={"If-Modified-Since": _http_date(modified - datetime.timedelta(seconds=1))}).status == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_unmodified_since_in_the_future_passes(server, obj: tuple[str, datetime.datetime], method: str) -> None:
    path, modified = obj
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)
    assert signed(server, method, path, headers={"If-Unmodified-Since": _http_date(future)}).status == 200
    assert signed(server, method, path, headers={"If-Unmodified-Since": _http_date(modified)}).status == 200
    earlier = _http_date(modified - datetime.timedelta(seconds=1))
    assert signed(server, method, path, headers={"If-Unmodified-Since": earlier}).status == 412


UNPARSABLE = ["yesterday", "2024-01-01T00:00:00Z", "Sun, 31 Feb 1994 08:49:37 GMT", "0", "Sun, 06 Nov 99999999999 08:49:37 GMT", ""]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("name", ["If-Modified-Since", "If-Unmodified-Since"])
@pytest.mark.parametrize("value", UNPARSABLE)
def test_an_unparsable_date_is_ignored(server, obj: tuple[str, datetime.datetime], method: str, name: str, value: str) -> None:
    r = signed(server, method, obj[0], headers={name: value})
    assert r.status == 200, r.data


def test_dates_in_the_other_http_forms_are_read_as_gmt(server, obj: tuple[str, datetime.datetime]) -> None:
    # RFC 850 and asctime dates (the latter has no zone: GMT, whatever the server's own zone).
    path, modified = obj
    before = modified - datetime.timedelta(seconds=1)
    for form in ("%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"):
        assert signed(server, "GET", path, headers={"If-Unmodified-Since": modified.strftime(form)}).status == 200
        assert signed(server, "GET", path, headers={"If-Unmodified-Since": before.strftime(form)}).status == 412


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-amz-copy-source-if-modified-since", "future"),
        ("x-amz-copy-source-if-unmodified-since", "future"),
        ("x-amz-copy-source-if-modified-since", "not a date"),
        ("x-amz-copy-source-if-unmodified-since", "not a date"),
    ],
)
def test_copy_source_dates_s3_cannot_use_are_ignored(s3, bucket: str, header: str, value: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"copy me")
    if value == "future":
        value = _http_date(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))

    def add_header(request, **_: object) -> None:  # type: ignore[no-untyped-def]
        request.headers[header] = value

    s3.meta.events.register("before-sign.s3.CopyObject", add_header)
    try:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    finally:
        s3.meta.events.unregister("before-sign.s3.CopyObject", add_header)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"copy me"
