"""Request headers a presigned URL carries in its query string.

A presigner can move the request's x-amz-* headers into the query, so that whoever uses the URL
sends none: botocore's SigV2 HmacV1QueryAuth moves those it signs, the JS SDK v3's getSignedUrl
every x-amz-* header but the SSE ones (smithy's moveHeadersToQuery), the Go and Ruby presigners
x-amz-meta-* and the others they need not sign. Under SigV4 the query is signed, under SigV2
s3serve signs its x-amz-* parameters as headers (sigv2.verify_presigned): either way they are
the signer's, and are read as the headers they stand for (tags, storage class, canned ACL,
website redirect, SSE, metadata), by the bucket policy's checks as much as by the handlers.
"""

from __future__ import annotations

import re

from aiohttp import web
from multidict import CIMultiDict

from . import errors

# The signature's own parameters, which authentication has read. X-Amz-Content-Sha256 is the
# payload's claim, taken there too (sigv4._verify_presigned_v4).
_SIGNATURE = frozenset(
    {
        "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-signedheaders",
        "x-amz-signature", "x-amz-security-token", "x-amz-content-sha256",
    }
)  # fmt: skip
# What frames and checks the body stays the sender's: S3 ignores the checksums presigners put in
# the query (AWS: "presigned URLs don't support ... CRC32, CRC32C, SHA-1, SHA-256"; the JS SDK
# puts an empty body's x-amz-checksum-crc32 in every PutObject URL it presigns since 3.729).
_BODY = frozenset({"x-amz-decoded-content-length", "x-amz-trailer", "x-amz-sdk-checksum-algorithm"})
# The operation is resolved from the headers sent, before authentication: a copy source in the
# query would reach PutObject's handler as a header it does not expect. Whether S3 copies from
# one is not confirmed (aws-sdk-js-v3 issue 3283 reports a presigned CopyObject that did not).
_NOT_HOISTED_PREFIXES = ("x-amz-checksum-", "x-amz-copy-source")
# What HTTP forbids in a header's value (a tab it allows) and what it allows in a name.
_NOT_IN_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _hoisted(lower: str) -> bool:
    return (
        lower.startswith("x-amz-")
        and lower not in _SIGNATURE
        and lower not in _BODY
        and not lower.startswith(_NOT_HOISTED_PREFIXES)
    )


def _check_header(name: str, value: str) -> None:
    """What the query holds could not have come as a header: stored, it would break every answer
    that echoes it (aiohttp refuses to send a CR or LF, and a name that is no header name would
    split into another header). As PostObject's fields are checked (handlers/post.py); S3's own
    answer to such a query parameter is not known."""
    if not _TOKEN.fullmatch(name):
        raise errors.InvalidArgument("Header names must be HTTP tokens.", ArgumentName=name, ArgumentValue="")
    if _NOT_IN_HEADER.search(value):
        raise errors.InvalidArgument(
            "The parameter's value holds characters an HTTP header cannot.", ArgumentName=name
        )


def with_query_headers(request: web.Request, query: list[tuple[str, str]]) -> web.Request:
    """The presigned request with its query's x-amz-* header parameters among its headers; itself
    when it has none. A header sent as well wins: under SigV2 it is the one the signature covered,
    under SigV4 one that is not among X-Amz-SignedHeaders was refused already."""
    sent = request.headers
    hoisted = [(name, value) for name, value in query if _hoisted(name.lower()) and name not in sent]
    if not hoisted:
        return request
    for name, value in hoisted:
        _check_header(name, value)
    headers = CIMultiDict(request.headers)
    headers.extend(hoisted)
    # clone() encodes every header as UTF-8: the sent ones are (app._check_header_encoding), and
    # the query's were decoded with errors replaced (handlers.common.parse_query).
    return request.clone(headers=headers)
