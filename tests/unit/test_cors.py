"""cors.py: S3's CORS rule matching, response headers, and PutBucketCors validation."""

from __future__ import annotations

import pytest

from s3serve import cors, errors, s3xml
from s3serve.cors import Rule

NS = "http://s3.amazonaws.com/doc/2006-03-01/"

APP = Rule(
    allowed_methods=("GET", "PUT"),
    allowed_origins=("https://app.example.com", "http://*.example.org", "http://localhost:*"),
    allowed_headers=("x-amz-*", "Content-Type", "*-trace"),
    expose_headers=("ETag",),
    max_age=3000,
)
ANY = Rule(allowed_methods=("GET",), allowed_origins=("*",))


@pytest.mark.parametrize(
    "origin,expected",
    [
        ("https://app.example.com", True),
        ("https://app.example.com.evil.test", False),
        ("http://app.example.com", False),  # another scheme is another origin
        ("HTTPS://APP.EXAMPLE.COM", False),  # origins compare exactly
        ("http://shop.example.org", True),
        ("http://a.b.example.org", True),  # '*' spans dots
        ("http://example.org", False),  # '*.' needs something before the dot
        ("http://localhost:3000", True),
        ("http://localhost", False),
        ("", False),
    ],
)
def test_origin_patterns(origin: str, expected: bool) -> None:
    assert APP.allows(origin, "GET") is expected


def test_methods_must_be_listed() -> None:
    assert APP.allows("https://app.example.com", "PUT")
    assert not APP.allows("https://app.example.com", "DELETE")
    assert not APP.allows("https://app.example.com", "get")  # methods are case-sensitive, as in HTTP


@pytest.mark.parametrize(
    "headers,expected",
    [
        ([], True),
        (["x-amz-date"], True),
        (["x-amz-meta-colour", "content-type"], True),  # requested names arrive lower-cased
        (["x-amz-"], True),  # '*' matches nothing as well
        (["x-request-trace"], True),  # a wildcard in front
        (["content-type", "authorization"], False),  # every header must be allowed
        (["content-length"], False),
    ],
)
def test_request_headers(headers: list[str], expected: bool) -> None:
    assert APP.allows("https://app.example.com", "GET", headers) is expected


def test_header_patterns_ignore_case() -> None:
    rule = Rule(("GET",), ("*",), allowed_headers=("X-AMZ-Server-Side-Encryption", "AUTHORIZATION"))
    assert rule.allows("https://x.test", "GET", cors.requested_headers("x-amz-server-side-encryption, Authorization"))
    assert not ANY.allows("https://x.test", "GET", ["x-amz-date"])  # no AllowedHeader: no headers
    star = Rule(("GET",), ("*",), allowed_headers=("*",))
    assert star.allows("https://x.test", "GET", ["anything", "x-amz-date"])


def test_requested_headers_parsing() -> None:
    assert cors.requested_headers(None) == []
    assert cors.requested_headers("") == []
    assert cors.requested_headers(" Content-Type ,X-Amz-Date,, x-amz-meta-a") == ["content-type", "x-amz-date", "x-amz-meta-a"]


def test_first_matching_rule_wins() -> None:
    rules = (APP, ANY)
    assert cors.find_rule(rules, "https://app.example.com", "GET") is APP
    assert cors.find_rule(rules, "https://other.test", "GET") is ANY
    assert cors.find_rule(rules, "https://other.test", "PUT") is None
    # A rule that does not allow a requested header is skipped for the next one.
    assert cors.find_rule(rules, "https://app.example.com", "GET", ["authorization"]) is None
    assert cors.find_rule((ANY, APP), "https://app.example.com", "GET") is ANY


def test_response_headers() -> None:
    assert cors.response_headers(APP, "http://localhost:5173", ["content-type", "x-amz-date"]) == {
        "Access-Control-Allow-Origin": "http://localhost:5173",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "GET, PUT",
        "Access-Control-Allow-Headers": "content-type, x-amz-date",
        "Access-Control-Expose-Headers": "ETag",
        "Access-Control-Max-Age": "3000",
        "Vary": cors.VARY,
    }
    # A '*' origin answers '*' and no credentials; nothing requested, no Allow-Headers.
    assert cors.response_headers(ANY, "https://x.test") == {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET",
        "Vary": cors.VARY,
    }
    assert cors.response_headers(Rule(("GET",), ("*",), max_age=0), "o")["Access-Control-Max-Age"] == "0"


def _config(rules: str) -> bytes:
    return f'<CORSConfiguration xmlns="{NS}">{rules}</CORSConfiguration>'.encode()


def test_document_round_trip() -> None:
    body = _config(
        "<CORSRule><ID>a</ID><AllowedOrigin>https://app.example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
        "<AllowedMethod>PUT</AllowedMethod><AllowedHeader>x-amz-*</AllowedHeader><ExposeHeader>ETag</ExposeHeader>"
        "<MaxAgeSeconds> 60 </MaxAgeSeconds></CORSRule>"
        "<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin></AllowedOrigin></CORSRule>"
    )
    rules = cors.load(body)
    assert rules == (
        Rule(("GET", "PUT"), ("https://app.example.com",), ("x-amz-*",), ("ETag",), 60, "a"),
        Rule(("GET",), ("",)),
    )
    rendered = s3xml.render_document("CORSConfiguration", cors.to_document(rules))
    # S3's element order: ID, AllowedHeader, AllowedMethod, AllowedOrigin, ExposeHeader, MaxAgeSeconds.
    assert b"<CORSRule><ID>a</ID><AllowedHeader>x-amz-*</AllowedHeader><AllowedMethod>GET</AllowedMethod>" in rendered
    assert cors.load(rendered) == rules


@pytest.mark.parametrize(
    "rules,error,message",
    [
        ("", errors.MalformedXML, None),
        ("<CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule>", errors.MalformedXML, None),
        ("<CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>", errors.MalformedXML, None),
        ("<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin><MaxAgeSeconds>-1</MaxAgeSeconds></CORSRule>", errors.MalformedXML, None),
        ("<Other/>", errors.MalformedXML, None),
        (
            "<CORSRule><AllowedMethod>OPTIONS</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule>",
            errors.InvalidRequest,
            "Found unsupported HTTP method in CORS config. Unsupported method is OPTIONS",
        ),
        (
            "<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>**</AllowedOrigin></CORSRule>",
            errors.InvalidRequest,
            'AllowedOrigin "**" can not have more than one wildcard.',
        ),
        (
            "<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin><AllowedHeader>*a*</AllowedHeader></CORSRule>",
            errors.InvalidRequest,
            'AllowedHeader "*a*" can not have more than one wildcard.',
        ),
    ],
)
def test_validation(rules: str, error: type[errors.S3Error], message: str | None) -> None:
    with pytest.raises(error) as info:
        cors.load(_config(rules))
    if message:
        assert info.value.message == message


def test_rule_count_limits() -> None:
    rule = "<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule>"
    assert len(cors.load(_config(rule * 100))) == 100
    with pytest.raises(errors.MalformedXML):
        cors.load(_config(rule * 101))
