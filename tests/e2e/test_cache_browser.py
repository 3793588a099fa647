"""What browsers send through the upstream cache: presigned URLs and form uploads reach the
upstream with what they carry. Live processes on loopback (an s3serve cache with --upstream in
front of a second s3serve), driven with boto3 and plain HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import http
from tests.e2e.conftest import cache_pair
from tests.e2e.test_protocol_edges import (
    sigv4_presigned_with_query_headers,
    sigv4_presigned_with_query_metadata,
)

# Servers of its own on loopback, whatever S3SERVE_TEST_ENDPOINT names.
pytestmark = pytest.mark.skipif(bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts its own servers")


def test_sigv4_presigned_put_keeps_the_metadata_of_its_query(tmp_path: Path) -> None:
    with cache_pair(tmp_path) as (upstream, cache):
        s3, direct = cache.client(), upstream.client()
        s3.create_bucket(Bucket="browser")  # type: ignore[attr-defined]
        url = sigv4_presigned_with_query_metadata(cache, "browser", "k", {"owner": "ann"})
        r = http("PUT", url, body=b"from a browser")
        assert r.status == 200, r.data
        for client in (s3, direct):
            got = client.get_object(Bucket="browser", Key="k")  # type: ignore[attr-defined]
            assert got["Body"].read() == b"from a browser" and got["Metadata"] == {"owner": "ann"}
    assert cache.log_path is not None and "Traceback" not in cache.log_path.read_text()


def test_sigv4_presigned_put_takes_the_headers_of_its_query_upstream(tmp_path: Path) -> None:
    """Tags, storage class and redirect a presigned URL carries in its query reach the upstream
    as headers (the cache signs its own request to it, with no such query)."""
    with cache_pair(tmp_path) as (upstream, cache):
        s3, direct = cache.client(), upstream.client()
        s3.create_bucket(Bucket="browser")  # type: ignore[attr-defined]
        headers = {
            "x-amz-tagging": "project=blue",
            "x-amz-storage-class": "STANDARD_IA",
            "x-amz-website-redirect-location": "/new.html",
            "x-amz-meta-owner": "ann",
        }
        url = sigv4_presigned_with_query_headers(cache, "PUT", "browser", "k", headers)
        r = http("PUT", url, body=b"from a browser")
        assert r.status == 200, r.data
        for client in (s3, direct):
            got = client.get_object(Bucket="browser", Key="k")  # type: ignore[attr-defined]
            assert got["Body"].read() == b"from a browser" and got["Metadata"] == {"owner": "ann"}
            assert (got["StorageClass"], got["WebsiteRedirectLocation"]) == ("STANDARD_IA", "/new.html")
            tagging = client.get_object_tagging(Bucket="browser", Key="k")  # type: ignore[attr-defined]
            assert tagging["TagSet"] == [{"Key": "project", "Value": "blue"}]
    assert cache.log_path is not None and "Traceback" not in cache.log_path.read_text()
