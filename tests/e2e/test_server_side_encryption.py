"""Server-side encryption headers, as S3 answers them: every object reports the encryption it was
written with (SSE-S3, AES256, by default since January 2023; SSE-KMS / DSSE-KMS when asked for,
by the request or by the bucket's default encryption), and values S3 refuses are refused alike.
Customer-provided keys (SSE-C): refused over http as S3 refuses them, and over https on a bucket
that blocks them, as every new bucket does (test_sse_customer_keys.py has the rest)."""

from __future__ import annotations

import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, https_server, object_absent
from tests.e2e.test_post_object import post, presigned

SSE = "x-amz-server-side-encryption"
KMS_KEY = "x-amz-server-side-encryption-aws-kms-key-id"
BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
NOT_SUPPORTED = "The encryption method specified is not supported"
KMS_REQUIRED = "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
INSECURE_SSE_C = "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."


def _sse(answer: dict) -> dict[str, str]:  # type: ignore[type-arg]
    """The x-amz-server-side-encryption* headers of an answer, by name."""
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    return {name: value for name, value in headers.items() if name.startswith(SSE)}


def _refused(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    error = exc.value.response["Error"]
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error["Message"]


def _argument(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str | None, str | None]:
    error = exc.value.response["Error"]
    return error.get("ArgumentName"), error.get("ArgumentValue")


AES = {SSE: "AES256"}
KMS = {SSE: "aws:kms", KMS_KEY: KEY_ARN, BUCKET_KEY: "true"}


def test_default_is_sse_s3_on_put_get_head(s3, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="plain", Body=b"data")
    assert put["ServerSideEncryption"] == "AES256"
    assert _sse(put) == AES
    assert _sse(s3.head_object(Bucket=bucket, Key="plain")) == AES
    got = s3.get_object(Bucket=bucket, Key="plain")
    assert got["Body"].read() == b"data"
    assert _sse(got) == AES
    # A range answers it too.
    assert _sse(s3.get_object(Bucket=bucket, Key="plain", Range="bytes=1-2")) == AES


def test_explicit_aes256(s3, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256")
    assert _sse(put) == AES
    assert s3.head_object(Bucket=bucket, Key="k")["ServerSideEncryption"] == "AES256"


def test_kms_with_key_and_bucket_key(s3, bucket: str) -> None:
    put = s3.put_object(
        Bucket=bucket, Key="kms", Body=b"secret", ServerSideEncryption="aws:kms", SSEKMSKeyId=KEY_ARN, BucketKeyEnabled=True
    )
    assert _sse(put) == KMS
    head = s3.head_object(Bucket=bucket, Key="kms")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["BucketKeyEnabled"]) == ("aws:kms", KEY_ARN, True)
    assert _sse(head) == KMS
    got = s3.get_object(Bucket=bucket, Key="kms")
    assert got["Body"].read() == b"secret"
    assert _sse(got) == KMS


def test_kms_without_key_and_dsse(s3, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="kms", Body=b"x", ServerSideEncryption="aws:kms")
    assert _sse(put) == {SSE: "aws:kms"}
    assert _sse(s3.head_object(Bucket=bucket, Key="kms")) == {SSE: "aws:kms"}
    put = s3.put_object(Bucket=bucket, Key="dsse", Body=b"x", ServerSideEncryption="aws:kms:dsse", SSEKMSKeyId=KEY_ARN)
    assert _sse(put) == {SSE: "aws:kms:dsse", KMS_KEY: KEY_ARN}
    assert _sse(s3.head_object(Bucket=bucket, Key="dsse")) == {SSE: "aws:kms:dsse", KMS_KEY: KEY_ARN}


@pytest.mark.parametrize("value", ["aes256", "AES512", "aws:fsx", ""])
def test_unsupported_algorithm_is_refused(s3, bucket: str, value: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", ServerSideEncryption=value)
    assert _refused(exc) == (400, "InvalidArgument", NOT_SUPPORTED)
    assert _argument(exc) == (SSE, value or None)
    assert object_absent(s3, bucket, "bad")


def test_kms_key_or_bucket_key_without_kms_is_refused(s3, bucket: str) -> None:
    for extra in ({"SSEKMSKeyId": KEY_ARN}, {"BucketKeyEnabled": True}, {"ServerSideEncryption": "AES256", "SSEKMSKeyId": KEY_ARN}):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="bad", Body=b"x", **extra)
        assert _refused(exc) == (400, "InvalidArgument", KMS_REQUIRED), extra
    assert object_absent(s3, bucket, "bad")


def test_refused_on_create_multipart_upload_and_copy(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="aws:kms:nope")
    assert _refused(exc) == (400, "InvalidArgument", NOT_SUPPORTED)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, ServerSideEncryption="AES-256")
    assert _refused(exc) == (400, "InvalidArgument", NOT_SUPPORTED)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, SSEKMSKeyId=KEY_ARN)
    assert _refused(exc) == (400, "InvalidArgument", KMS_REQUIRED)
    assert object_absent(s3, bucket, "dst")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_customer_keys_over_http_are_refused(server: Server, s3, bucket: str) -> None:
    if not server.endpoint.startswith("http://"):
        pytest.skip("the endpoint is https")
    key = os.urandom(32)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="ssec", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert _refused(exc) == (400, "InvalidRequest", INSECURE_SSE_C)
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="ssec", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert _refused(exc) == (400, "InvalidRequest", INSECURE_SSE_C)
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="ssec", CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key,
        )  # fmt: skip
    assert _refused(exc) == (400, "InvalidRequest", INSECURE_SSE_C)
    assert object_absent(s3, bucket, "ssec")


def test_customer_keys_over_https_are_blocked_on_a_new_bucket(server: Server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if server.root is None:
        pytest.skip("starts a server of its own")
    with https_server(tmp_path / "root") as (_, s3):
        s3.create_bucket(Bucket="sse-c")
        key = os.urandom(32)
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket="sse-c", Key="ssec", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
        status, code, _ = _refused(exc)
        assert (status, code) == (403, "AccessDenied")
        assert object_absent(s3, "sse-c", "ssec")
        assert _sse(s3.put_object(Bucket="sse-c", Key="plain", Body=b"x")) == AES


def test_bucket_default_encryption_applies_to_writes(s3, bucket: str) -> None:
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}, "BucketKeyEnabled": True}
            ]
        },
    )
    assert _sse(s3.put_object(Bucket=bucket, Key="default", Body=b"x")) == KMS
    assert _sse(s3.head_object(Bucket=bucket, Key="default")) == KMS
    # aws:kms named without the bucket-key header takes the bucket's S3 Bucket Key setting.
    assert _sse(s3.put_object(Bucket=bucket, Key="kms", Body=b"x", ServerSideEncryption="aws:kms")) == {
        SSE: "aws:kms", BUCKET_KEY: "true"
    }
    # The request's encryption wins over the bucket's.
    assert _sse(s3.put_object(Bucket=bucket, Key="aes", Body=b"x", ServerSideEncryption="AES256")) == AES
    assert _sse(s3.head_object(Bucket=bucket, Key="aes")) == AES
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    assert _sse(upload) == KMS
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])
    # Objects keep what they were written with; new writes get S3's default again.
    s3.delete_bucket_encryption(Bucket=bucket)
    assert _sse(s3.head_object(Bucket=bucket, Key="default")) == KMS
    assert _sse(s3.put_object(Bucket=bucket, Key="after", Body=b"x")) == AES


def test_copy_takes_the_request_or_destination_default_never_the_source(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied", ServerSideEncryption="aws:kms", SSEKMSKeyId=KEY_ARN)
    source = {"Bucket": bucket, "Key": "src"}
    copy = s3.copy_object(Bucket=bucket, Key="plain-copy", CopySource=source)
    assert _sse(copy) == AES
    assert copy["ServerSideEncryption"] == "AES256"
    assert _sse(s3.head_object(Bucket=bucket, Key="plain-copy")) == AES
    copy = s3.copy_object(Bucket=bucket, Key="kms-copy", CopySource=source, ServerSideEncryption="aws:kms:dsse", SSEKMSKeyId=KEY_ARN)
    assert _sse(copy) == {SSE: "aws:kms:dsse", KMS_KEY: KEY_ARN}
    assert _sse(s3.get_object(Bucket=bucket, Key="kms-copy")) == {SSE: "aws:kms:dsse", KMS_KEY: KEY_ARN}
    # Onto itself: a change of encryption is a change that makes the copy legal.
    copy = s3.copy_object(Bucket=bucket, Key="src", CopySource=source, ServerSideEncryption="AES256")
    assert _sse(copy) == AES
    got = s3.get_object(Bucket=bucket, Key="src")
    assert (got["Body"].read(), _sse(got)) == (b"copied", AES)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="src", CopySource=source)
    assert _refused(exc)[:2] == (400, "InvalidRequest")


def test_multipart_answers_the_upload_encryption(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"s" * 1024)
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key="mp", ServerSideEncryption="aws:kms", SSEKMSKeyId=KEY_ARN, BucketKeyEnabled=True
    )
    assert _sse(upload) == KMS
    upload_id = upload["UploadId"]
    first = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"p" * (5 * 1024 * 1024))
    assert _sse(first) == KMS
    second = s3.upload_part_copy(
        Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=2, CopySource={"Bucket": bucket, "Key": "src"}
    )
    assert _sse(second) == KMS
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]
        },
    )
    assert _sse(done) == KMS
    assert (done["ServerSideEncryption"], done["SSEKMSKeyId"], done["BucketKeyEnabled"]) == ("aws:kms", KEY_ARN, True)
    assert _sse(s3.head_object(Bucket=bucket, Key="mp")) == KMS
    assert _sse(s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)) == KMS


def test_multipart_default_is_sse_s3(s3, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    assert _sse(upload) == AES
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"tail")
    assert _sse(part) == AES
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    assert _sse(done) == AES
    assert _sse(s3.head_object(Bucket=bucket, Key="mp")) == AES


def test_post_object_field(server: Server, s3, bucket: str) -> None:
    fields = {SSE: "aws:kms", KMS_KEY: KEY_ARN}
    url, form = presigned(server, bucket, "posted", Fields=fields, Conditions=[{k: v} for k, v in fields.items()])
    answer = post(url, form, b"posted")
    assert answer.status == 204, answer.body
    assert {k.lower(): v for k, v in answer.headers.items() if k.lower().startswith(SSE)} == fields
    assert _sse(s3.head_object(Bucket=bucket, Key="posted")) == fields
    url, form = presigned(server, bucket, "bad", Fields={SSE: "rot13"}, Conditions=[{SSE: "rot13"}])
    answer = post(url, form, b"bad")
    assert (answer.status, answer.code, answer.message) == (400, "InvalidArgument", NOT_SUPPORTED)
    assert object_absent(s3, bucket, "bad")


def test_foreign_file_answers_sse_s3(server: Server, s3, bucket: str) -> None:
    if server.root is None:
        pytest.skip("writes into the server's folder")
    (server.root / bucket / "dropped.txt").write_bytes(b"from another program")
    head = s3.head_object(Bucket=bucket, Key="dropped.txt")
    assert head["ETag"] == f'"{hashlib.md5(b"from another program").hexdigest()}"'
    assert _sse(head) == AES

