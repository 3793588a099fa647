"""What the upstream cache keeps of objects beyond their bytes: empty objects and folder markers
known from a HEAD, and the tag count its copies answer with. Live processes on loopback (an
s3serve cache with --upstream in front of a second s3serve), driven with boto3."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import stop_server
from tests.e2e.conftest import cache_pair, until

# Servers of its own on loopback, whatever S3SERVE_TEST_ENDPOINT names (make test-cache runs the
# rest of the suite through a cache).
pytestmark = pytest.mark.skipif(bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts its own servers")


def test_empty_objects_and_folder_markers_seen_by_head_are_kept(tmp_path: Path) -> None:
    # Clients that walk "folders" (s3fs-fuse, rclone, mountpoint) HEAD "dir/" and empty objects
    # again and again and never GET them. With no bytes to fetch, a HEAD is enough to keep them;
    # they were never kept, so every such HEAD went upstream, even within --cache-revalidate,
    # and none could be answered while the upstream was away.
    with cache_pair(tmp_path, "--cache-revalidate", "1h") as (up, srv):
        here = tmp_path / "cache" / "root" / "empties"
        s3, direct = srv.client(retries={"max_attempts": 1}), up.client()
        s3.create_bucket(Bucket="empties")  # type: ignore[attr-defined]
        direct.put_object(Bucket="empties", Key="empty", Body=b"", ContentType="text/plain", Metadata={"a": "1"})  # type: ignore[attr-defined]
        direct.put_object(Bucket="empties", Key="dir/", Body=b"", Metadata={"b": "2"})  # type: ignore[attr-defined]
        direct.put_object(Bucket="empties", Key="dir/child", Body=b"child")  # type: ignore[attr-defined]
        heads = {key: s3.head_object(Bucket="empties", Key=key) for key in ("empty", "dir/", "dir/child")}  # type: ignore[attr-defined]
        until(lambda: (here / "empty").is_file() and (here / "dir").is_dir(), timeout=5)
        assert not (here / "dir" / "child").exists()  # bytes are fetched by a GET, not a HEAD
        stop_server(up)  # from now on only the copies can answer
        for key in ("empty", "dir/"):
            again = s3.head_object(Bucket="empties", Key=key)  # type: ignore[attr-defined]
            for field in ("ETag", "ContentLength", "ContentType", "Metadata", "LastModified"):
                assert again[field] == heads[key][field], (key, field)
            got = s3.get_object(Bucket="empties", Key=key)  # type: ignore[attr-defined]
            assert got["Body"].read() == b"" and got["ETag"] == heads[key]["ETag"]
        with pytest.raises(ClientError):
            s3.head_object(Bucket="empties", Key="dir/child")  # type: ignore[attr-defined]
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


def test_the_tag_count_follows_tags_changed_on_the_upstream(tmp_path: Path) -> None:
    # A copy answers GET's and HEAD's x-amz-tagging-count from the tags it was kept with; tags
    # changed directly on the upstream left it answering the old count. The upstream's HEAD,
    # which confirms the copy on each read, tells the count (S3's HeadObject has TagCount).
    with cache_pair(tmp_path) as (up, srv):
        s3, direct = srv.client(), up.client()
        s3.create_bucket(Bucket="tagged")  # type: ignore[attr-defined]
        s3.put_object(Bucket="tagged", Key="k", Body=b"bytes", Tagging="a=1")  # type: ignore[attr-defined]
        assert s3.get_object(Bucket="tagged", Key="k")["TagCount"] == 1  # type: ignore[attr-defined]
        three = {"TagSet": [{"Key": k, "Value": "v"} for k in ("a", "b", "c")]}
        direct.put_object_tagging(Bucket="tagged", Key="k", Tagging=three)  # type: ignore[attr-defined]
        got = s3.get_object(Bucket="tagged", Key="k")  # type: ignore[attr-defined]
        assert got["Body"].read() == b"bytes" and got["TagCount"] == 3
        assert s3.head_object(Bucket="tagged", Key="k")["TagCount"] == 3  # type: ignore[attr-defined]
        direct.delete_object_tagging(Bucket="tagged", Key="k")  # type: ignore[attr-defined]
        assert "TagCount" not in s3.head_object(Bucket="tagged", Key="k")  # type: ignore[attr-defined]
        assert "TagCount" not in s3.get_object(Bucket="tagged", Key="k")  # type: ignore[attr-defined]
        assert (tmp_path / "cache" / "root" / "tagged" / "k").read_bytes() == b"bytes"  # the copy stayed
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


def test_a_copy_through_the_cache_gets_the_checksum_algorithm_it_names(tmp_path: Path) -> None:
    # The cache forwards a copy as REPLACE with the metadata to keep; it left the requested
    # x-amz-checksum-algorithm out, and the upstream copied the source's checksum instead.
    with cache_pair(tmp_path) as (up, srv):
        s3, direct = srv.client(), up.client()
        s3.create_bucket(Bucket="sums")  # type: ignore[attr-defined]
        body = b"bytes to sum"
        s3.put_object(  # type: ignore[attr-defined]
            Bucket="sums", Key="src", Body=body, ContentType="text/x", ChecksumAlgorithm="CRC32C"
        )
        sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
        for key, directive in (("copy", "COPY"), ("replaced", "REPLACE")):
            result = s3.copy_object(  # type: ignore[attr-defined]
                Bucket="sums", Key=key, CopySource={"Bucket": "sums", "Key": "src"},
                MetadataDirective=directive, ChecksumAlgorithm="SHA256",
            )  # fmt: skip
            assert result["CopyObjectResult"].get("ChecksumSHA256") == sha, directive
            for client in (s3, direct):
                head = client.head_object(  # type: ignore[attr-defined]
                    Bucket="sums", Key=key, ChecksumMode="ENABLED"
                )
                assert head.get("ChecksumSHA256") == sha and "ChecksumCRC32C" not in head, directive
        kept = direct.head_object(Bucket="sums", Key="copy")  # type: ignore[attr-defined]
        assert kept["ContentType"] == "text/x"
        assert s3.get_object(Bucket="sums", Key="copy")["Body"].read() == body  # type: ignore[attr-defined]
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()
