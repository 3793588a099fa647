"""SigV2 verification against the S3 documentation examples and botocore's HmacV1Auth /
HmacV1QueryAuth / boto3 presigned URLs with signature_version="s3"."""

from __future__ import annotations

import calendar
import time
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode

from s3serve import errors, sigv2
from s3serve.config import User
from s3serve.sigv4 import authenticate
from tests.unit.request_views import from_botocore, make_view

DOC_USER = User("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
USER = User("AKIDV2", "v2/secret+key=")
USERS = {u.access_key: u for u in (DOC_USER, USER)}
CREDS = Credentials(USER.access_key, USER.secret_key)
ENDPOINT = "http://127.0.0.1:9000"


def lookup(access_key: str) -> User | None:
    return USERS.get(access_key)




def signed(
    method: str, url: str, headers: dict[str, str] | None = None, auth_path: str | None = None
) -> AWSRequest:
    request = AWSRequest(method, url, headers=dict(headers or {}))
    if auth_path is not None:
        request.auth_path = auth_path
    HmacV1Auth(CREDS).add_auth(request)
    return request


def test_doc_example_get_object_virtual_host() -> None:
    view = make_view(
        "GET",
        "/photos/puppy.jpg",
        [
            ("Host", "awsexamplebucket1.us-west-1.s3.amazonaws.com"),
            ("Date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g="),
        ],
        vhost_bucket="awsexamplebucket1",
    )
    now = float(calendar.timegm((2007, 3, 27, 19, 36, 42)))
    result = authenticate(view, lookup, now=now)
    assert result is not None and (result.user, result.version, result.presigned) == (DOC_USER, 2, False)
    assert result.content_sha256 == "UNSIGNED-PAYLOAD"
    # The same request path-style (bucket in the path) signs the same canonical resource.
    path_style = make_view("GET", "/awsexamplebucket1/photos/puppy.jpg", list(view.headers.items()))
    assert authenticate(path_style, lookup, now=now) is not None


def test_doc_example_put_object() -> None:
    view = make_view(
        "PUT",
        "/photos/puppy.jpg",
        [
            ("Host", "awsexamplebucket1.us-west-1.s3.amazonaws.com"),
            ("Content-Type", "image/jpeg"),
            ("Content-Length", "94328"),
            ("Date", "Tue, 27 Mar 2007 21:15:45 +0000"),
            ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:iqRzw+ileNPu1fhspnRs8nOjjIA="),
        ],
        vhost_bucket="awsexamplebucket1",
    )
    now = float(calendar.timegm((2007, 3, 27, 21, 15, 45)))
    assert authenticate(view, lookup, now=now) is not None
    tampered = [(k, "image/png" if k == "Content-Type" else v) for k, v in view.headers.items()]
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate(make_view("PUT", "/photos/puppy.jpg", tampered, "awsexamplebucket1"), lookup, now=now)


KEYS = ["plain.txt", "with space.txt", "plus+sign", "unicode ✓ 日本.txt", "tilde~", "pct%41", "dir/sub/"]


@pytest.mark.parametrize("key", KEYS)
def test_botocore_hmacv1_header(key: str) -> None:
    url = f"{ENDPOINT}/bucket/{percent_encode(key, safe='/~')}"
    request = signed(
        "PUT",
        url,
        {
            "Content-Type": "text/plain",
            "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "x-amz-meta-Two": " b ",
            "x-amz-acl": "private",
        },
    )
    result = authenticate(from_botocore(request), lookup)
    assert result is not None and result.user == USER and result.version == 2


@pytest.mark.parametrize(
    "query",
    [
        "acl",
        "uploadId=abc%2Bdef&partNumber=3",
        "versionId=v1&response-content-type=text%2Fplain%3B%20charset%3Dutf-8&response-expires=x",
        "list-type=2&prefix=a%20b&delimiter=%2F",
        "tagging&versionId=3",
        "uploads",
    ],
)
def test_botocore_hmacv1_subresources(query: str) -> None:
    request = signed("GET", f"{ENDPOINT}/bucket/key?{query}")
    assert authenticate(from_botocore(request), lookup) is not None
    presigned = AWSRequest("GET", f"{ENDPOINT}/bucket/key?{query}")
    HmacV1QueryAuth(CREDS, expires=300).add_auth(presigned)
    result = authenticate(from_botocore(presigned), lookup)
    assert result is not None and result.presigned


def test_canonical_resource_matches_botocore() -> None:
    request = AWSRequest(
        "GET", f"{ENDPOINT}/bucket/k%20y?versionId=1&acl&prefix=p&response-content-type=a%2Fb"
    )
    expected = HmacV1Auth(CREDS).canonical_resource(urlsplit(request.url))
    assert (
        sigv2.canonical_resource(
            "/bucket/k%20y", "versionId=1&acl&prefix=p&response-content-type=a%2Fb", None
        )
        == expected
    )
    assert expected == "/bucket/k%20y?acl&response-content-type=a/b&versionId=1"


def test_virtual_host_style() -> None:
    request = signed("GET", "http://bucket.localhost:9000/dir/key.txt?acl", auth_path="/bucket/dir/key.txt")
    assert authenticate(from_botocore(request, vhost_bucket="bucket"), lookup) is not None
    root = signed("GET", "http://bucket.localhost:9000/", auth_path="/bucket/")
    assert authenticate(from_botocore(root, vhost_bucket="bucket"), lookup) is not None
    # Without the vhost bucket the resource differs, so the signature cannot match.
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate(from_botocore(request), lookup)


def test_x_amz_date_replaces_date() -> None:
    now = time.time()
    amz_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
    sts = sigv2.string_to_sign(
        "GET", "", "", "", sigv2.canonical_amz_headers([("X-Amz-Date", amz_date)]), "/bucket/key"
    )
    auth = f"AWS {USER.access_key}:{sigv2.sign(USER.secret_key, sts)}"
    view = make_view("GET", "/bucket/key", [("x-amz-date", amz_date), ("Authorization", auth)])
    assert authenticate(view, lookup, now=now) is not None


def test_a_date_before_1970_is_no_valid_date() -> None:
    date = "Tue, 07 Jul 1950 21:53:04 GMT"
    sts = sigv2.string_to_sign("GET", "", "", date, "", "/bucket/key")
    auth = f"AWS {USER.access_key}:{sigv2.sign(USER.secret_key, sts)}"
    view = make_view("GET", "/bucket/key", [("Date", date), ("Authorization", auth)])
    with pytest.raises(errors.AccessDenied) as info:
        authenticate(view, lookup)
    assert info.value.message == "AWS authentication requires a valid Date or x-amz-date header"


def test_boto3_presigned_url_signature_version_s3() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=USER.access_key,
        aws_secret_access_key=USER.secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3", s3={"addressing_style": "path"}),
    )
    url = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": "bucket",
            "Key": "a b/ü+c.txt",
            "ResponseContentDisposition": "attachment; filename=x",
        },
        ExpiresIn=120,
    )
    split = urlsplit(url)
    view = make_view("GET", f"{split.path}?{split.query}", [("Host", split.netloc)])
    result = authenticate(view, lookup)
    assert result is not None and result.presigned and result.version == 2
    with pytest.raises(errors.AccessDenied) as info:
        authenticate(view, lookup, now=time.time() + 121)
    assert info.value.message == "Request has expired"


def test_wrong_secret_reports_string_to_sign() -> None:
    request = AWSRequest("GET", f"{ENDPOINT}/bucket/key?acl", headers={"x-amz-meta-a": "1"})
    signer = HmacV1Auth(Credentials(USER.access_key, "wrong"))
    signer.add_auth(request)
    view = from_botocore(request)
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        authenticate(view, lookup)
    expected = signer.canonical_string("GET", urlsplit(request.url), request.headers)
    # Line 3 is the Date botocore regenerates on every call; everything else must be identical.
    ours = info.value.extra["StringToSign"].split("\n")
    theirs = expected.split("\n")
    assert ours[:3] + ours[4:] == theirs[:3] + theirs[4:]
    assert ours[3] == view.headers["Date"]
    assert info.value.extra["AWSAccessKeyId"] == USER.access_key


def test_failures() -> None:
    ok = from_botocore(signed("GET", f"{ENDPOINT}/bucket"))
    with pytest.raises(errors.RequestTimeTooSkewed):
        authenticate(ok, lookup, now=time.time() + 3600)
    with pytest.raises(errors.InvalidArgument):
        authenticate(make_view("GET", "/", [("Authorization", "AWS no-colon")]), lookup)
    unknown = AWSRequest("GET", f"{ENDPOINT}/bucket")
    HmacV1Auth(Credentials("NOPE", "x")).add_auth(unknown)
    with pytest.raises(errors.InvalidAccessKeyId):
        authenticate(from_botocore(unknown), lookup)
    no_date = [(k, v) for k, v in ok.headers.items() if k != "Date"]
    with pytest.raises(errors.AccessDenied):
        authenticate(make_view("GET", "/bucket", no_date), lookup)
    with pytest.raises(errors.AccessDenied) as info:
        authenticate(make_view("GET", "/b/k?AWSAccessKeyId=AKIDV2&Signature=x", []), lookup)
    assert "requires the Signature, Expires and AWSAccessKeyId" in info.value.message
    with pytest.raises(errors.AccessDenied) as info:
        authenticate(make_view("GET", "/b/k?AWSAccessKeyId=AKIDV2&Signature=x&Expires=soon", []), lookup)
    assert "seconds since epoch" in info.value.message


def test_path_style_bucket_request_signed_with_trailing_slash() -> None:
    """boto3 (signature_version='s3') sends GET /bucket but signs the resource '/bucket/'."""
    for query in ("", "?encoding-type=url", "?acl"):
        request = signed("GET", f"{ENDPOINT}/bucket{query}", auth_path="/bucket/")
        assert authenticate(from_botocore(request), lookup) is not None
    # ...which does not open the door to '/bucket/key' signed as '/bucket/key/'.
    request = signed("GET", f"{ENDPOINT}/bucket/key", auth_path="/bucket/key/")
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate(from_botocore(request), lookup)


@pytest.mark.parametrize("zone", ["-0000", "+0000", "GMT"])
def test_an_http_date_without_a_zone_is_utc_whatever_the_servers_zone(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 2822's "-0000" is UTC with no local zone known: it was read in the server's zone.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        stamp = sigv2.parse_http_date(f"Wed, 25 Nov 2026 07:00:00 {zone}")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert stamp == calendar.timegm((2026, 11, 25, 7, 0, 0, 0, 0, 0))
