"""Encryption headers where S3 does not take them: an object's encryption is chosen when it is
created (PutObject, CopyObject, CreateMultipartUpload), so S3 refuses x-amz-server-side-encryption
(and the other headers only a creation takes) on a read, on UploadPart, UploadPartCopy and
CompleteMultipartUpload with 400 InvalidArgument; SSE-C keys on a read get S3's SSE-C answers
(400 over http; over https, 400 for an object not written with a key)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, https_server, signed

SSE = "x-amz-server-side-encryption"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
INSECURE_SSE_C = "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."


def _error(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    assert root.tag == "Error", body
    return {child.tag: child.text or "" for child in root}


def _refused(error: dict[str, str]) -> tuple[str, str, str, str]:
    return error["Code"], error["Message"], error.get("ArgumentName", ""), error.get("ArgumentValue", "")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (SSE, "AES256"),
        (SSE, "aws:kms"),
        (SSE, ""),
        (f"{SSE}-aws-kms-key-id", KEY_ARN),
        (f"{SSE}-context", "eyJhIjoiYiJ9"),
        (f"{SSE}-bucket-key-enabled", "true"),
    ],
)
def test_write_only_encryption_header_on_get_and_head_is_refused(server: Server, s3, bucket: str, header: str, value: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    got = signed(server, "GET", f"/{bucket}/k", headers={header: value})
    assert got.status == 400, got.data
    assert _refused(_error(got.data)) == ("InvalidArgument", f"{header} header is not supported for this operation.", header, value)
    head = signed(server, "HEAD", f"/{bucket}/k", headers={header: value})
    assert (head.status, head.data) == (400, b"")
    # Without it, the same reads answer the object.
    assert signed(server, "GET", f"/{bucket}/k").data == b"data"
    assert signed(server, "HEAD", f"/{bucket}/k").status == 200


def test_sse_header_on_read_of_a_kms_object_is_refused(server: Server, s3, bucket: str) -> None:
    # S3's documented case: the object is SSE-KMS, and the read names its very encryption.
    s3.put_object(Bucket=bucket, Key="kms", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=KEY_ARN)
    got = signed(server, "GET", f"/{bucket}/kms", headers={SSE: "aws:kms", f"{SSE}-aws-kms-key-id": KEY_ARN})
    assert got.status == 400, got.data
    assert _refused(_error(got.data)) == ("InvalidArgument", f"{SSE} header is not supported for this operation.", SSE, "aws:kms")
    # Ranges and parts take the same refusal.
    got = signed(server, "GET", f"/{bucket}/kms?partNumber=1", headers={SSE: "AES256"})
    assert (got.status, _error(got.data)["Code"]) == (400, "InvalidArgument")
    got = signed(server, "GET", f"/{bucket}/kms", headers={SSE: "AES256", "Range": "bytes=0-0"})
    assert (got.status, _error(got.data)["Code"]) == (400, "InvalidArgument")


def test_customer_keys_on_get_and_head_over_http_are_refused(server: Server, s3, bucket: str) -> None:
    if not server.endpoint.startswith("http://"):
        pytest.skip("the endpoint is https")
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    key = os.urandom(32)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    error = exc.value.response["Error"]
    assert (exc.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error["Message"]) == (
        400, "InvalidRequest", INSECURE_SSE_C,
    )  # fmt: skip
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Any one of the three headers is enough, raw.
    got = signed(server, "GET", f"/{bucket}/k", headers={f"{SSE}-customer-algorithm": "AES256"})
    assert got.status == 400, got.data
    assert (_error(got.data)["Code"], _error(got.data)["Message"]) == ("InvalidRequest", INSECURE_SSE_C)
    head = signed(server, "HEAD", f"/{bucket}/k", headers={f"{SSE}-customer-key-md5": "AAAA"})
    assert (head.status, head.data) == (400, b"")


def test_customer_keys_on_get_and_head_of_a_plain_object_over_https(server: Server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if server.root is None:
        pytest.skip("starts a server of its own")
    with https_server(tmp_path / "root") as (_, s3):
        s3.create_bucket(Bucket="sse-c-reads")
        s3.put_object(Bucket="sse-c-reads", Key="k", Body=b"data")
        key = os.urandom(32)
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket="sse-c-reads", Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
        # S3's answer for a key given for an object that was not written with one.
        assert (exc.value.response["ResponseMetadata"]["HTTPStatusCode"], exc.value.response["Error"]["Code"]) == (
            400, "InvalidRequest",
        )  # fmt: skip
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket="sse-c-reads", Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert s3.get_object(Bucket="sse-c-reads", Key="k")["Body"].read() == b"data"
        # x-amz-server-side-encryption is refused over https too (added to a boto3 request, which
        # has no parameter for it on GetObject).
        s3.meta.events.register("before-sign.s3.GetObject", lambda request, **_: request.headers.__setitem__(SSE, "AES256"))
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket="sse-c-reads", Key="k")
        error = exc.value.response["Error"]
        assert (exc.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error["ArgumentName"]) == (
            400, "InvalidArgument", SSE,
        )  # fmt: skip


def test_encryption_headers_on_parts_and_complete_are_refused(server: Server, s3, bucket: str) -> None:
    # As S3 answers SDKs that sent them there (aws-sdk-java#1876, fog-aws#589): the upload's
    # encryption is the one CreateMultipartUpload named.
    s3.put_object(Bucket=bucket, Key="src", Body=b"s" * 10)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="aws:kms", SSEKMSKeyId=KEY_ARN)
    uid = upload["UploadId"]
    refused = {SSE: "aws:kms", f"{SSE}-aws-kms-key-id": KEY_ARN, f"{SSE}-bucket-key-enabled": "true"}
    for header, value in refused.items():
        got = signed(server, "PUT", f"/{bucket}/mp?partNumber=1&uploadId={uid}", body=b"p" * 10, headers={header: value})
        assert got.status == 400, got.data
        assert _refused(_error(got.data)) == ("InvalidArgument", f"{header} header is not supported for this operation.", header, value)
        got = signed(server, "PUT", f"/{bucket}/mp?partNumber=1&uploadId={uid}",
                     headers={header: value, "x-amz-copy-source": f"/{bucket}/src"})  # fmt: skip
        assert (got.status, _error(got.data)["Code"], _error(got.data)["ArgumentName"]) == (400, "InvalidArgument", header)
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid).get("Parts", []) == []
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"p" * 10)
    done = f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{part['ETag']}</ETag></Part></CompleteMultipartUpload>"
    got = signed(server, "POST", f"/{bucket}/mp?uploadId={uid}", body=done.encode(), headers={SSE: "aws:kms"})
    assert got.status == 400, got.data
    assert _refused(_error(got.data)) == ("InvalidArgument", f"{SSE} header is not supported for this operation.", SSE, "aws:kms")
    # The upload is still there and completes without the header, with its own encryption.
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    )
    head = s3.head_object(Bucket=bucket, Key="mp")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["ContentLength"]) == ("aws:kms", KEY_ARN, 10)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"p" * 10
