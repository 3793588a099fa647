"""CopyObject's x-amz-metadata-directive is COPY or REPLACE exactly as written: S3 answers a
lower-case one with 400 InvalidArgument "Unknown metadata directive." (observed against
s3.amazonaws.com with `aws s3api copy-object --metadata-directive copy`, Seagate/cortx-s3server
pull request 587), and copies nothing."""

from __future__ import annotations

import pytest

from tests.conftest import Server, object_absent, signed


@pytest.mark.parametrize("directive", ["copy", "replace", "Copy"])
def test_metadata_directive_not_upper_case_is_refused(server: Server, s3, bucket: str, directive: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source bytes")
    headers = {"x-amz-copy-source": f"/{bucket}/src", "x-amz-metadata-directive": directive}
    r = signed(server, "PUT", f"/{bucket}/dst", headers=headers)
    assert r.status == 400, r.data
    assert b"<Code>InvalidArgument</Code>" in r.data
    assert b"<Message>Unknown metadata directive.</Message>" in r.data
    assert object_absent(s3, bucket, "dst")


@pytest.mark.parametrize("directive", ["COPY", "REPLACE"])
def test_metadata_directive_upper_case_copies(server: Server, s3, bucket: str, directive: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source bytes")
    headers = {"x-amz-copy-source": f"/{bucket}/src", "x-amz-metadata-directive": directive}
    r = signed(server, "PUT", f"/{bucket}/dst", headers=headers)
    assert r.status == 200, r.data
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"source bytes"
