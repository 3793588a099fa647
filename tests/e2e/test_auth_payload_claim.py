"""x-amz-content-sha256 on SigV4 requests without a body: S3 reads it there too. A value it does
not know is InvalidArgument, and the hash of a body the request does not have is
XAmzContentSHA256Mismatch; neither request runs (a DELETE deletes nothing)."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import Server, signed

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_unknown_payload_claim_is_invalid_argument(  # type: ignore[no-untyped-def]
    server: Server, s3, bucket: str, method: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    r = signed(server, method, f"/{bucket}/k", payload_hash="GIBBERISH")
    assert r.status == 400
    if method != "HEAD":
        assert b"<Code>InvalidArgument</Code>" in r.data, r.data
        assert b"<ArgumentName>x-amz-content-sha256</ArgumentName>" in r.data
        assert b"<ArgumentValue>GIBBERISH</ArgumentValue>" in r.data
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_hash_of_a_missing_body_is_a_mismatch(  # type: ignore[no-untyped-def]
    server: Server, s3, bucket: str, method: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    claimed = hashlib.sha256(b"a body never sent").hexdigest()
    r = signed(server, method, f"/{bucket}/k", payload_hash=claimed)
    assert r.status == 400
    if method != "HEAD":
        assert b"<Code>XAmzContentSHA256Mismatch</Code>" in r.data, r.data
        assert f"<ClientComputedContentSHA256>{claimed}</ClientComputedContentSHA256>".encode() in r.data
        assert f"<S3ComputedContentSHA256>{EMPTY_SHA256}</S3ComputedContentSHA256>".encode() in r.data
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"


@pytest.mark.parametrize(
    "claim", [EMPTY_SHA256, EMPTY_SHA256.upper(), "UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"]
)
def test_claims_s3_takes_on_a_get(  # type: ignore[no-untyped-def]
    server: Server, s3, bucket: str, claim: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    r = signed(server, "GET", f"/{bucket}/k", payload_hash=claim)
    assert (r.status, r.data) == (200, b"kept")
