"""What the server's authenticate() sees for a request: built by hand, or from a botocore-signed one."""

from __future__ import annotations

from urllib.parse import urlsplit

from botocore.awsrequest import AWSRequest
from multidict import CIMultiDict, CIMultiDictProxy

from s3serve.sigv4 import RequestView, parse_query


def make_view(
    method: str, target: str, headers: list[tuple[str, str]], vhost_bucket: str | None = None
) -> RequestView:
    raw_path, _, raw_query = target.partition("?")
    return RequestView(
        method=method,
        raw_path=raw_path,
        query=parse_query(raw_query),
        raw_query=raw_query,
        headers=CIMultiDictProxy(CIMultiDict(headers)),
        vhost_bucket=vhost_bucket,
    )


def from_botocore(request: AWSRequest, vhost_bucket: str | None = None) -> RequestView:
    """What the server sees for a botocore-signed request (the HTTP client adds Host)."""
    prepared = request.prepare()
    split = urlsplit(prepared.url)
    headers = [("Host", split.netloc)] + [
        (k, v if isinstance(v, str) else v.decode()) for k, v in prepared.headers.items()
    ]
    return make_view(prepared.method, split.path + (f"?{split.query}" if split.query else ""), headers, vhost_bucket)
