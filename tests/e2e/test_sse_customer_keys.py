"""SSE-C (customer-provided keys) as S3 has it since April 2026: blocked on new buckets until
PutBucketEncryption names BlockedEncryptionTypes NONE; then enforced at the API, over https only:
an SSE-C object is read, described and copied only with its key, its parts only with the
upload's key, and the key itself is never kept. The bytes rest in the clear on disk, as every
s3serve object does. Servers of their own, over https (--tls-self-signed)."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from botocore.exceptions import ClientError

from tests.conftest import (
    Server,
    http,
    https_server,
    object_absent,
    signed,
    start_server,
    stop_server,
)
from tests.e2e.test_post_object import presigned

# The raw requests (signed, http) go to the self-signed server unverified.
UNVERIFIED = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

SSE = "x-amz-server-side-encryption"
C_ALG = "x-amz-server-side-encryption-customer-algorithm"
C_KEY = "x-amz-server-side-encryption-customer-key"
C_MD5 = "x-amz-server-side-encryption-customer-key-md5"
KEY_REQUIRED = (
    "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
)
NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
WRONG_KEY = "Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key."
UPLOAD_MISMATCH = (
    "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters."
)
UPLOAD_OTHER_KEY = "The provided encryption parameters did not match the ones used originally."
UNBLOCK = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BlockedEncryptionTypes": {"EncryptionType": ["NONE"]}}]}
MiB = 1024 * 1024


def _md5(key: bytes) -> str:
    return base64.b64encode(hashlib.md5(key).digest()).decode()


def _ssec(key: bytes) -> dict[str, Any]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def _src(key: bytes) -> dict[str, Any]:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def _sse(answer: dict[str, Any]) -> dict[str, str]:
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    return {name: value for name, value in headers.items() if name.startswith(SSE)}


def _echo(key: bytes) -> dict[str, str]:
    return {C_ALG: "AES256", C_MD5: _md5(key)}


def _refused(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    error = exc.value.response["Error"]
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error.get("Message", "")


@pytest.fixture(scope="module")
def tls(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any]]:
    if server.root is None:
        pytest.skip("starts a server of its own")
    with https_server(tmp_path_factory.mktemp("ssec") / "root", "--min-part-size", "5MiB") as started:
        yield started


@pytest.fixture
def s3c(tls: tuple[Server, Any]) -> Any:
    return tls[1]


def new_open_bucket(s3: Any) -> str:
    """A new bucket that allows SSE-C (PutBucketEncryption with BlockedEncryptionTypes NONE)."""
    name = f"ssec-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=UNBLOCK)
    return name


@pytest.fixture
def open_bucket(s3c: Any) -> str:
    return new_open_bucket(s3c)


# -- blocked by default ------------------------------------------------------------------------


def test_new_bucket_blocks_sse_c_and_says_so(s3c: Any) -> None:
    name = f"ssec-{uuid.uuid4().hex[:12]}"
    s3c.create_bucket(Bucket=name)
    assert s3c.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"] == {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                "BucketKeyEnabled": False,
                "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]},
            }
        ]
    }
    key = os.urandom(32)
    s3c.put_object(Bucket=name, Key="src", Body=b"plain")
    for call in (
        lambda: s3c.put_object(Bucket=name, Key="k", Body=b"x", **_ssec(key)),
        lambda: s3c.create_multipart_upload(Bucket=name, Key="k", **_ssec(key)),
        lambda: s3c.copy_object(Bucket=name, Key="k", CopySource={"Bucket": name, "Key": "src"}, **_ssec(key)),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        status, code, message = _refused(exc)
        assert (status, code) == (403, "AccessDenied")
        assert "blocked upload requests that specify Server Side Encryption with Customer provided keys (SSE-C)" in message
    assert object_absent(s3c, name, "k")
    # Plain writes are not affected.
    assert _sse(s3c.put_object(Bucket=name, Key="plain", Body=b"x")) == {SSE: "AES256"}


def test_unblock_block_again_and_delete_returns_to_the_default(s3c: Any) -> None:
    name = f"ssec-{uuid.uuid4().hex[:12]}"
    s3c.create_bucket(Bucket=name)
    key = os.urandom(32)
    s3c.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=UNBLOCK)
    rule = s3c.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["NONE"]}
    s3c.put_object(Bucket=name, Key="k", Body=b"secret", **_ssec(key))
    # A configuration that leaves the element out keeps the bucket's block as it is.
    s3c.put_bucket_encryption(
        Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    )
    rule = s3c.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["NONE"]}
    s3c.put_object(Bucket=name, Key="k2", Body=b"x", **_ssec(key))
    # Blocked again: writes refused, the existing SSE-C object still read with its key.
    s3c.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}]},
    )
    with pytest.raises(ClientError) as exc:
        s3c.put_object(Bucket=name, Key="k3", Body=b"x", **_ssec(key))
    assert _refused(exc)[:2] == (403, "AccessDenied")
    assert s3c.get_object(Bucket=name, Key="k", **_ssec(key))["Body"].read() == b"secret"
    assert s3c.head_object(Bucket=name, Key="k", **_ssec(key))["ContentLength"] == 6
    # Delete: back to the new bucket's default, which blocks.
    s3c.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=UNBLOCK)
    s3c.delete_bucket_encryption(Bucket=name)
    rule = s3c.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}
    with pytest.raises(ClientError) as exc:
        s3c.put_object(Bucket=name, Key="k3", Body=b"x", **_ssec(key))
    assert _refused(exc)[:2] == (403, "AccessDenied")


@UNVERIFIED
def test_bad_blocked_encryption_type_is_malformed(tls: tuple[Server, Any], open_bucket: str) -> None:
    srv, _ = tls
    body = (
        b'<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule>'
        b"<BlockedEncryptionTypes><EncryptionType>SSE-KMS</EncryptionType></BlockedEncryptionTypes>"
        b"</Rule></ServerSideEncryptionConfiguration>"
    )
    answer = signed(srv, "PUT", f"/{open_bucket}?encryption", body, {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()})
    assert answer.status == 400 and b"<Code>MalformedXML</Code>" in answer.data


def test_over_http_the_secure_connection_error_comes_first(tmp_path: Path, server: Server) -> None:
    if server.root is None:
        pytest.skip("starts a server of its own")
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root, "--no-fsync")
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="blocked")  # blocked, and yet the http refusal is what S3 answers
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket="blocked", Key="k", Body=b"x", **_ssec(os.urandom(32)))
        assert _refused(exc) == (
            400, "InvalidRequest", "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
        )  # fmt: skip
    finally:
        stop_server(srv)


# -- objects -----------------------------------------------------------------------------------


def test_put_get_head_with_the_key(tls: tuple[Server, Any], s3c: Any, open_bucket: str) -> None:
    key, data = os.urandom(32), os.urandom(100_000)
    put = s3c.put_object(Bucket=open_bucket, Key="obj", Body=data, **_ssec(key))
    assert _sse(put) == _echo(key)  # no x-amz-server-side-encryption: AES256 on SSE-C objects
    assert (put["SSECustomerAlgorithm"], put["SSECustomerKeyMD5"]) == ("AES256", _md5(key))
    got = s3c.get_object(Bucket=open_bucket, Key="obj", **_ssec(key))
    assert got["Body"].read() == data
    assert _sse(got) == _echo(key)
    assert got["ETag"] == put["ETag"]
    head = s3c.head_object(Bucket=open_bucket, Key="obj", **_ssec(key))
    assert (_sse(head), head["ETag"], head["ContentLength"]) == (_echo(key), put["ETag"], len(data))
    ranged = s3c.get_object(Bucket=open_bucket, Key="obj", Range="bytes=10-19", **_ssec(key))
    assert (ranged["Body"].read(), _sse(ranged)) == (data[10:20], _echo(key))
    part = s3c.get_object(Bucket=open_bucket, Key="obj", PartNumber=1, **_ssec(key))
    assert part["Body"].read() == data
    # The listing shows it (with the ETag the object answers) without the key.
    listed = s3c.list_objects_v2(Bucket=open_bucket)["Contents"]
    assert [(o["Key"], o["ETag"], o["Size"]) for o in listed] == [("obj", put["ETag"], len(data))]
    # Conditional requests see the same ETag.
    assert s3c.get_object(Bucket=open_bucket, Key="obj", IfMatch=put["ETag"], **_ssec(key))["Body"].read() == data
    # The disk holds the bytes as they are, and nothing of the key but its MD5 and a salted check.
    srv, _ = tls
    assert srv.root is not None
    assert (srv.root / open_bucket / "obj").read_bytes() == data
    record = os.getxattr(srv.root / open_bucket / "obj", "user.s3serve") if hasattr(os, "getxattr") else b""
    for form in (key, base64.b64encode(key), key.hex().encode()):
        assert form not in record


def test_reads_without_or_with_a_wrong_key(s3c: Any, open_bucket: str) -> None:
    key = os.urandom(32)
    s3c.put_object(Bucket=open_bucket, Key="obj", Body=b"secret", **_ssec(key))
    with pytest.raises(ClientError) as exc:
        s3c.get_object(Bucket=open_bucket, Key="obj")
    assert _refused(exc) == (400, "InvalidRequest", KEY_REQUIRED)
    with pytest.raises(ClientError) as exc:
        s3c.get_object(Bucket=open_bucket, Key="obj", **_ssec(os.urandom(32)))
    assert _refused(exc) == (403, "AccessDenied", WRONG_KEY)
    with pytest.raises(ClientError) as exc:
        s3c.get_object(Bucket=open_bucket, Key="obj", Range="bytes=0-1", **_ssec(os.urandom(32)))
    assert _refused(exc)[:2] == (403, "AccessDenied")
    # HEAD: the same statuses, without a body.
    with pytest.raises(ClientError) as exc:
        s3c.head_object(Bucket=open_bucket, Key="obj")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as exc:
        s3c.head_object(Bucket=open_bucket, Key="obj", **_ssec(os.urandom(32)))
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # A key of the wrong length on a read is just not the object's key.
    with pytest.raises(ClientError) as exc:
        s3c.get_object(Bucket=open_bucket, Key="obj", **_ssec(os.urandom(16)))
    assert _refused(exc) == (403, "AccessDenied", WRONG_KEY)
    # A plain object asked with a key.
    s3c.put_object(Bucket=open_bucket, Key="plain", Body=b"p")
    with pytest.raises(ClientError) as exc:
        s3c.get_object(Bucket=open_bucket, Key="plain", **_ssec(key))
    assert _refused(exc) == (400, "InvalidRequest", NOT_APPLICABLE)


def _raw_put(srv: Server, bucket: str, key: str, headers: dict[str, str]) -> tuple[int, str, str, str]:
    answer = signed(srv, "PUT", f"/{bucket}/{key}", b"data", headers)
    body = answer.data.decode()

    def element(name: str) -> str:
        return body.split(f"<{name}>", 1)[1].split(f"</{name}>", 1)[0] if f"<{name}>" in body else ""

    return answer.status, element("Code"), element("Message"), element("ArgumentName")


@UNVERIFIED
def test_malformed_customer_headers(tls: tuple[Server, Any], s3c: Any, open_bucket: str) -> None:
    srv, _ = tls
    key = os.urandom(32)
    b64, md5 = base64.b64encode(key).decode(), _md5(key)
    short = os.urandom(16)
    cases = [
        ({C_KEY: b64, C_MD5: md5}, (400, "InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.")),
        ({C_ALG: "AES256", C_MD5: md5}, (400, "InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.")),
        ({C_ALG: "AES128", C_KEY: b64, C_MD5: md5}, (400, "InvalidEncryptionAlgorithmError", "The Encryption request you specified is not valid. Supported value: AES256.")),
        ({C_ALG: "AES256", C_KEY: b64, C_MD5: _md5(b"other")}, (400, "InvalidArgument", "The calculated MD5 hash of the key did not match the hash that was provided.")),
        ({C_ALG: "AES256", C_KEY: base64.b64encode(short).decode(), C_MD5: _md5(short)}, (400, "InvalidArgument", "The secret key was invalid for the specified algorithm.")),
        ({C_ALG: "AES256", C_KEY: b64}, (400, "InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.")),
        ({C_ALG: "AES256", C_KEY: b64, C_MD5: md5, SSE: "AES256"}, (400, "InvalidArgument", "Server Side Encryption with Customer provided key is incompatible with the encryption method specified")),
    ]
    for headers, expected in cases:
        status, code, message, argument = _raw_put(srv, open_bucket, "bad", headers)
        assert (status, code, message) == expected, headers
        assert argument == SSE, headers
    assert object_absent(s3c, open_bucket, "bad")


def test_overwrites_between_sse_c_and_plain(s3c: Any, open_bucket: str) -> None:
    key = os.urandom(32)
    s3c.put_object(Bucket=open_bucket, Key="obj", Body=b"one", **_ssec(key))
    s3c.put_object(Bucket=open_bucket, Key="obj", Body=b"two")
    got = s3c.get_object(Bucket=open_bucket, Key="obj")
    assert (got["Body"].read(), _sse(got)) == (b"two", {SSE: "AES256"})
    s3c.put_object(Bucket=open_bucket, Key="obj", Body=b"three", **_ssec(key))
    with pytest.raises(ClientError) as exc:
        s3c.get_object(Bucket=open_bucket, Key="obj")
    assert _refused(exc)[:2] == (400, "InvalidRequest")
    other = os.urandom(32)
    s3c.put_object(Bucket=open_bucket, Key="obj", Body=b"four", **_ssec(other))
    with pytest.raises(ClientError):
        s3c.get_object(Bucket=open_bucket, Key="obj", **_ssec(key))
    assert s3c.get_object(Bucket=open_bucket, Key="obj", **_ssec(other))["Body"].read() == b"four"


def test_tagging_attributes_and_delete(s3c: Any, open_bucket: str) -> None:
    key = os.urandom(32)
    s3c.put_object(Bucket=open_bucket, Key="obj", Body=b"secret", Tagging="a=b", **_ssec(key))
    # Tagging takes no key (S3 keeps tags in the clear, like all metadata).
    assert s3c.get_object_tagging(Bucket=open_bucket, Key="obj")["TagSet"] == [{"Key": "a", "Value": "b"}]
    s3c.put_object_tagging(Bucket=open_bucket, Key="obj", Tagging={"TagSet": [{"Key": "c", "Value": "d"}]})
    # GetObjectAttributes does (botocore does not encode the key for it: sent as S3 takes it).
    encoded = base64.b64encode(key).decode()
    with_key = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": encoded, "SSECustomerKeyMD5": _md5(key)}
    attrs = s3c.get_object_attributes(Bucket=open_bucket, Key="obj", ObjectAttributes=["ObjectSize", "ETag"], **with_key)
    assert attrs["ObjectSize"] == 6
    with pytest.raises(ClientError) as exc:
        s3c.get_object_attributes(Bucket=open_bucket, Key="obj", ObjectAttributes=["ObjectSize"])
    assert _refused(exc) == (400, "InvalidRequest", KEY_REQUIRED)
    other = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(ClientError) as exc:
        s3c.get_object_attributes(Bucket=open_bucket, Key="obj", ObjectAttributes=["ObjectSize"], SSECustomerAlgorithm="AES256", SSECustomerKey=other)
    assert _refused(exc)[:2] == (403, "AccessDenied")
    # Delete takes no key.
    s3c.delete_object(Bucket=open_bucket, Key="obj")
    assert object_absent(s3c, open_bucket, "obj")


def test_copy(s3c: Any, open_bucket: str) -> None:
    key, other = os.urandom(32), os.urandom(32)
    s3c.put_object(Bucket=open_bucket, Key="src", Body=b"copied", **_ssec(key))
    source = {"Bucket": open_bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        s3c.copy_object(Bucket=open_bucket, Key="dst", CopySource=source)
    assert _refused(exc) == (400, "InvalidRequest", KEY_REQUIRED)
    with pytest.raises(ClientError) as exc:
        s3c.copy_object(Bucket=open_bucket, Key="dst", CopySource=source, **_src(other))
    assert _refused(exc)[:2] == (403, "AccessDenied")
    assert object_absent(s3c, open_bucket, "dst")
    # To a plain object: SSE-S3 (S3's default), read without a key.
    plain = s3c.copy_object(Bucket=open_bucket, Key="plain", CopySource=source, **_src(key))
    assert _sse(plain) == {SSE: "AES256"}
    assert s3c.get_object(Bucket=open_bucket, Key="plain")["Body"].read() == b"copied"
    # To SSE-C under another key.
    rekeyed = s3c.copy_object(Bucket=open_bucket, Key="rekeyed", CopySource=source, **_src(key), **_ssec(other))
    assert _sse(rekeyed) == _echo(other)
    assert s3c.get_object(Bucket=open_bucket, Key="rekeyed", **_ssec(other))["Body"].read() == b"copied"
    with pytest.raises(ClientError):
        s3c.get_object(Bucket=open_bucket, Key="rekeyed", **_ssec(key))
    # Onto itself with a new key: a change of encryption, allowed.
    s3c.copy_object(Bucket=open_bucket, Key="src", CopySource=source, **_src(key), **_ssec(other))
    assert s3c.get_object(Bucket=open_bucket, Key="src", **_ssec(other))["Body"].read() == b"copied"
    # Onto itself with no key for the copy: SSE-C no more.
    s3c.copy_object(Bucket=open_bucket, Key="src", CopySource=source, **_src(other))
    assert s3c.get_object(Bucket=open_bucket, Key="src")["Body"].read() == b"copied"
    # A plain source with a copy-source key.
    with pytest.raises(ClientError) as exc:
        s3c.copy_object(Bucket=open_bucket, Key="x", CopySource={"Bucket": open_bucket, "Key": "plain"}, **_src(key))
    assert _refused(exc) == (400, "InvalidRequest", NOT_APPLICABLE)
    # A plain source to an SSE-C copy.
    made = s3c.copy_object(Bucket=open_bucket, Key="x", CopySource={"Bucket": open_bucket, "Key": "plain"}, **_ssec(key))
    assert _sse(made) == _echo(key)
    assert s3c.get_object(Bucket=open_bucket, Key="x", **_ssec(key))["Body"].read() == b"copied"


def test_multipart(s3c: Any, open_bucket: str) -> None:
    key, other = os.urandom(32), os.urandom(32)
    first_data, second_data = os.urandom(5 * MiB), os.urandom(1000)
    upload = s3c.create_multipart_upload(Bucket=open_bucket, Key="mp", **_ssec(key))
    assert _sse(upload) == _echo(key)
    upload_id = upload["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3c.upload_part(Bucket=open_bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert _refused(exc) == (400, "InvalidRequest", UPLOAD_MISMATCH)
    with pytest.raises(ClientError) as exc:
        s3c.upload_part(Bucket=open_bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"x", **_ssec(other))
    assert _refused(exc) == (400, "InvalidRequest", UPLOAD_OTHER_KEY)
    first = s3c.upload_part(Bucket=open_bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=first_data, **_ssec(key))
    assert _sse(first) == _echo(key)
    s3c.put_object(Bucket=open_bucket, Key="part-src", Body=second_data, **_ssec(other))
    with pytest.raises(ClientError) as exc:
        s3c.upload_part_copy(
            Bucket=open_bucket, Key="mp", UploadId=upload_id, PartNumber=2, CopySource={"Bucket": open_bucket, "Key": "part-src"}, **_ssec(key)
        )
    assert _refused(exc) == (400, "InvalidRequest", KEY_REQUIRED)
    second = s3c.upload_part_copy(
        Bucket=open_bucket, Key="mp", UploadId=upload_id, PartNumber=2,
        CopySource={"Bucket": open_bucket, "Key": "part-src"}, **_ssec(key), **_src(other),
    )  # fmt: skip
    assert _sse(second) == _echo(key)
    parts = [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]
    done = s3c.complete_multipart_upload(Bucket=open_bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": parts}, **_ssec(key))
    assert _sse(done) == {}  # S3 echoes no encryption on Complete of an SSE-C upload
    got = s3c.get_object(Bucket=open_bucket, Key="mp", **_ssec(key))
    assert got["Body"].read() == first_data + second_data
    assert got["ETag"] == done["ETag"]
    part = s3c.get_object(Bucket=open_bucket, Key="mp", PartNumber=2, **_ssec(key))
    assert (part["Body"].read(), _sse(part)) == (second_data, _echo(key))
    with pytest.raises(ClientError) as exc:
        s3c.get_object(Bucket=open_bucket, Key="mp", PartNumber=2)
    assert _refused(exc)[:2] == (400, "InvalidRequest")
    # A plain upload refuses a part with a key.
    plain = s3c.create_multipart_upload(Bucket=open_bucket, Key="plain-mp")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3c.upload_part(Bucket=open_bucket, Key="plain-mp", UploadId=plain, PartNumber=1, Body=b"x", **_ssec(key))
    assert _refused(exc) == (400, "InvalidRequest", UPLOAD_MISMATCH)


def test_multipart_complete_without_key_unless_checksummed(s3c: Any, open_bucket: str) -> None:
    key = os.urandom(32)
    upload_id = s3c.create_multipart_upload(Bucket=open_bucket, Key="mp", **_ssec(key))["UploadId"]
    part = s3c.upload_part(Bucket=open_bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"tail", **_ssec(key))
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    s3c.complete_multipart_upload(Bucket=open_bucket, Key="mp", UploadId=upload_id, MultipartUpload=parts)
    assert s3c.get_object(Bucket=open_bucket, Key="mp", **_ssec(key))["Body"].read() == b"tail"
    # An upload with a checksum algorithm: Complete needs the key, and the right one.
    upload_id = s3c.create_multipart_upload(Bucket=open_bucket, Key="ck", ChecksumAlgorithm="SHA256", **_ssec(key))["UploadId"]
    part = s3c.upload_part(Bucket=open_bucket, Key="ck", UploadId=upload_id, PartNumber=1, Body=b"tail", ChecksumAlgorithm="SHA256", **_ssec(key))
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]}]}
    with pytest.raises(ClientError) as exc:
        s3c.complete_multipart_upload(Bucket=open_bucket, Key="ck", UploadId=upload_id, MultipartUpload=parts)
    assert _refused(exc)[:2] == (400, "InvalidArgument")
    with pytest.raises(ClientError) as exc:
        s3c.complete_multipart_upload(Bucket=open_bucket, Key="ck", UploadId=upload_id, MultipartUpload=parts, **_ssec(os.urandom(32)))
    assert _refused(exc) == (400, "InvalidRequest", UPLOAD_OTHER_KEY)
    s3c.complete_multipart_upload(Bucket=open_bucket, Key="ck", UploadId=upload_id, MultipartUpload=parts, **_ssec(key))
    assert s3c.get_object(Bucket=open_bucket, Key="ck", **_ssec(key))["Body"].read() == b"tail"


def _post_posted(srv: Server, bucket: str, key: bytes) -> Any:
    """A browser-style PostObject of "posted" whose form names the SSE-C ``key``."""
    fields = {C_ALG: "AES256", C_KEY: base64.b64encode(key).decode(), "x-amz-server-side-encryption-customer-key-MD5": _md5(key)}
    url, form = presigned(srv, bucket, "posted", Fields=fields, Conditions=[{k: v} for k, v in fields.items()])
    body, content_type = urllib3.encode_multipart_formdata([*form.items(), ("file", ("upload.bin", b"posted"))])
    return http("POST", url, body, {"Content-Type": content_type})


@UNVERIFIED
def test_post_object_fields(tls: tuple[Server, Any], s3c: Any, open_bucket: str) -> None:
    srv, _ = tls
    key = os.urandom(32)
    answer = _post_posted(srv, open_bucket, key)
    assert answer.status == 204, answer.data
    assert {k.lower(): v for k, v in answer.headers.items() if k.lower().startswith(SSE)} == _echo(key)
    assert s3c.get_object(Bucket=open_bucket, Key="posted", **_ssec(key))["Body"].read() == b"posted"
    with pytest.raises(ClientError):
        s3c.get_object(Bucket=open_bucket, Key="posted")


@UNVERIFIED
def test_post_object_fields_on_a_blocked_bucket(tls: tuple[Server, Any], s3c: Any) -> None:
    """A new bucket blocks SSE-C for PostObject too: S3's 403 (it was a 500: a form's route
    names no key, the form does)."""
    srv, _ = tls
    bucket = f"ssec-{uuid.uuid4().hex[:12]}"
    s3c.create_bucket(Bucket=bucket)
    key = os.urandom(32)
    answer = _post_posted(srv, bucket, key)
    assert answer.status == 403, answer.data
    assert b"<Code>AccessDenied</Code>" in answer.data
    assert f'"arn:aws:s3:::{bucket}/posted"'.encode() in answer.data
    assert object_absent(s3c, bucket, "posted")
