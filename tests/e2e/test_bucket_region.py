"""The region of a bucket created without a LocationConstraint, plainly and through a cache: what
restic (minio-go) and pyarrow's S3FileSystem of conformance/ showed, pinned down with plain
requests so that the tests need neither client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Server, signed, start_server, stop_server
from tests.e2e.conftest import cache_pair


def _client(server: Server, region: str) -> object:
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        region_name=region, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )  # fmt: skip


def _regions(server: Server, bucket: str) -> tuple[str | None, str | None]:
    """(HeadBucket's x-amz-bucket-region, GetBucketLocation's LocationConstraint)."""
    s3 = _client(server, "us-east-1")
    head = s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"].get("x-amz-bucket-region")  # type: ignore[attr-defined]
    return head, s3.get_bucket_location(Bucket=bucket)["LocationConstraint"]  # type: ignore[attr-defined]


@pytest.fixture
def eu_server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--no-fsync", "--region", "eu-west-1")
    yield srv
    stop_server(srv)


def test_bucket_created_without_constraint_is_in_the_servers_region(eu_server: Server) -> None:
    """restic (minio-go) not told the region creates its bucket as PUT /bucket with no body,
    signed for us-east-1. s3serve --region eu-west-1 recorded such a bucket in us-east-1, a region
    it does not answer for: HeadBucket said x-amz-bucket-region: us-east-1 and GetBucketLocation
    an empty (us-east-1) constraint, against the README's "--region is what GetBucketLocation and
    HeadBucket report", and a client that follows x-amz-bucket-region (pyarrow's from_uri) then
    signed for us-east-1."""
    r = signed(eu_server, "PUT", "/restic-bucket")
    assert r.status == 200, r.data
    assert _regions(eu_server, "restic-bucket") == ("eu-west-1", "eu-west-1")
    # With an explicit constraint, that constraint, as before.
    _client(eu_server, "eu-west-1").create_bucket(  # type: ignore[attr-defined]
        Bucket="explicit-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    assert _regions(eu_server, "explicit-bucket") == ("eu-west-1", "eu-west-1")


def test_cache_in_another_region_creates_the_bucket_upstream_in_its_region(tmp_path: Path) -> None:
    """A cache with --region eu-west-1 passed an unconstrained CreateBucket on as one without a
    LocationConstraint: the upstream put the bucket in us-east-1, and the cache (which asks the
    upstream) reported that region for a bucket made through it."""
    with cache_pair(tmp_path, "--region", "eu-west-1") as (upstream, cache):
        r = signed(cache, "PUT", "/cached-bucket")
        assert r.status == 200, r.data
        assert _regions(upstream, "cached-bucket") == ("eu-west-1", "eu-west-1")
        assert _regions(cache, "cached-bucket") == ("eu-west-1", "eu-west-1")


def test_head_bucket_tells_its_region_to_those_it_refuses(tmp_path: Path) -> None:
    """S3 answers a HeadBucket it refuses (anonymous, another account, a wrong signature) with the
    bucket's region still in x-amz-bucket-region: tools find a bucket's region that way (pyarrow,
    botocore's region redirects). s3serve sent it only with a 200. A missing bucket has none.
    S3 sends it with listings too."""
    credentials = tmp_path / "users.json"
    credentials.write_text(json.dumps({"users": [
        {"access_key": "alice", "secret_key": "alice-secret"}, {"access_key": "bob", "secret_key": "bob-secret"},
    ]}))  # fmt: skip
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--no-fsync", "--region", "eu-west-1", "--credentials", str(credentials),
                       access_key="", secret_key="")  # fmt: skip
    try:
        def head(key: str, secret: str, bucket: str) -> tuple[int, dict[str, str]]:
            s3 = boto3.client(
                "s3", endpoint_url=srv.endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                region_name="eu-west-1", config=Config(retries={"max_attempts": 1}),
            )  # fmt: skip
            try:
                meta = s3.head_bucket(Bucket=bucket)["ResponseMetadata"]  # type: ignore[attr-defined]
            except ClientError as exc:
                meta = exc.response["ResponseMetadata"]
            return meta["HTTPStatusCode"], meta["HTTPHeaders"]

        r = signed(Server(srv.endpoint, "alice", "alice-secret", root), "PUT", "/alice-bucket")
        assert r.status == 200, r.data
        status, headers = head("alice", "alice-secret", "alice-bucket")
        # As S3's 200: the region, and the Content-Type of the bucket's GET (a listing).
        assert (status, headers.get("x-amz-bucket-region"), headers.get("content-type")) == (200, "eu-west-1", "application/xml")
        listing = signed(Server(srv.endpoint, "alice", "alice-secret", root), "GET", "/alice-bucket?list-type=2")
        assert (listing.status, listing.headers.get("x-amz-bucket-region")) == (200, "eu-west-1")
        for key, secret in (("bob", "bob-secret"), ("alice", "not-alice-secret")):
            status, headers = head(key, secret, "alice-bucket")
            assert (status, headers.get("x-amz-bucket-region")) == (403, "eu-west-1"), (key, headers)
        anonymous = urllib3.PoolManager().request("HEAD", f"{srv.endpoint}/alice-bucket", retries=False)
        assert (anonymous.status, anonymous.headers.get("x-amz-bucket-region")) == (403, "eu-west-1")
        status, headers = head("alice", "alice-secret", "no-such-bucket")
        assert status == 404 and "x-amz-bucket-region" not in headers, headers
        assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()
    finally:
        stop_server(srv)
