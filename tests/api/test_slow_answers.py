"""CompleteMultipartUpload, CopyObject and UploadPartCopy that take long answer as S3 does: 200
at once, spaces to keep the connection alive, then the result or an <Error> in the body; boto3
reads both.

Copying a huge object (a filesystem without reflinks or FALLOC_FL_COLLAPSE_RANGE, re-uploaded
parts) takes minutes; here the real DiskBackend is slowed by a fixed pause instead, and the server
starts its keep-alive after 50 ms rather than 1 s."""

from __future__ import annotations

import asyncio
import hashlib
import os
from base64 import b64encode
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp.test_utils import TestClient
from awscrt import checksums as crt
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from s3serve.app import BACKEND, create_app
from s3serve.config import Config
from s3serve.storage.base import ObjectInfo, PartInfo
from s3serve.storage.disk import DiskBackend
from tests.api.conftest import ACCESS, SECRET, USER, signed_sender

PAUSE = 0.35  # the Complete's work; keep-alive spaces go out every 0.1 s meanwhile


class SlowDisk(DiskBackend):
    # Set by a test that decides itself when the Complete's work ends (after it saw what the
    # server sends meanwhile), rather than after PAUSE.
    gate: asyncio.Event | None = None

    async def complete_multipart_upload(self, *args: Any, **kwargs: Any) -> ObjectInfo:
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), 30)
        else:
            await asyncio.sleep(PAUSE)
        return await super().complete_multipart_upload(*args, **kwargs)

    async def copy_object(self, *args: Any, **kwargs: Any) -> ObjectInfo:
        await asyncio.sleep(PAUSE)
        return await super().copy_object(*args, **kwargs)

    async def upload_part_copy(self, *args: Any, **kwargs: Any) -> PartInfo:
        await asyncio.sleep(PAUSE)
        return await super().upload_part_copy(*args, **kwargs)


@pytest.fixture
async def server(aiohttp_client, tmp_path: Path) -> TestClient:  # type: ignore[no-untyped-def]
    config = Config(
        root=tmp_path, users=[USER], fsync=False, keepalive_after=0.05, keepalive_every=0.1
    )
    return await aiohttp_client(create_app(config, SlowDisk(tmp_path, USER.user_id, fsync=False)))


def boto3_client(server: TestClient) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://{server.host}:{server.port}",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"}),
    )


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # boto3 blocks, its response bodies too; the server runs on this event loop.
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_boto3_completes_through_the_keepalive(server: TestClient) -> None:
    s3 = boto3_client(server)
    await in_thread(s3.create_bucket, Bucket="bkt")
    data = os.urandom(300_000)
    upload = await in_thread(s3.create_multipart_upload, Bucket="bkt", Key="big")
    part = await in_thread(s3.upload_part, Bucket="bkt", Key="big", UploadId=upload["UploadId"], PartNumber=1, Body=data)
    parts = [{"PartNumber": 1, "ETag": part["ETag"]}]
    done = await in_thread(
        s3.complete_multipart_upload, Bucket="bkt", Key="big", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    assert done["ETag"] == '"' + hashlib.md5(hashlib.md5(data).digest()).hexdigest() + '-1"'
    # The object's whole CRC64NVME, S3's default, combined from the part's.
    assert done["ChecksumCRC64NVME"] == b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()
    assert done["ChecksumType"] == "FULL_OBJECT"
    assert (done["Bucket"], done["Key"]) == ("bkt", "big")
    got = await in_thread(s3.get_object, Bucket="bkt", Key="big")
    assert await in_thread(got["Body"].read) == data


async def test_the_wire_holds_200_then_spaces_then_the_result(server: TestClient) -> None:
    request = signed_sender(server)
    assert (await request("PUT", "/bkt")).status == 200
    created = await (await request("POST", "/bkt/k?uploads")).text()
    upload_id = created.split("<UploadId>")[1].split("</UploadId>")[0]
    part = await request("PUT", f"/bkt/k?partNumber=1&uploadId={upload_id}", b"body")
    etag = part.headers["ETag"]
    xml = f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    disk = server.server.app[BACKEND]
    assert isinstance(disk, SlowDisk)
    disk.gate = asyncio.Event()
    response = await request("POST", f"/bkt/k?uploadId={upload_id}", xml.encode())
    assert response.status == 200
    assert response.headers["Transfer-Encoding"] == "chunked" and "x-amz-request-id" in response.headers
    declaration = b'<?xml version="1.0" encoding="UTF-8"?>\n'
    # The work goes on until two keep-alive spaces have come (one every 0.1 s), however slow the
    # machine: the result cannot have been sent before them.
    body = b""
    while not body.startswith(declaration + b"  "):
        piece = await response.content.readany()
        assert piece, body
        body += piece
    disk.gate.set()
    body += await response.read()
    rest = body[len(declaration) :]
    document = rest.lstrip(b" ")
    assert len(rest) - len(document) >= 2
    assert document.startswith(b"<CompleteMultipartUploadResult") and document.endswith(b"</CompleteMultipartUploadResult>")
    assert hashlib.md5(hashlib.md5(b"body").digest()).hexdigest().encode() + b"-1" in document
    assert (await (await request("GET", "/bkt/k")).read()) == b"body"


async def test_a_client_that_leaves_mid_answer_finds_the_work_done_on_retry(server: TestClient) -> None:
    request = signed_sender(server)
    assert (await request("PUT", "/bkt")).status == 200
    created = await (await request("POST", "/bkt/k?uploads")).text()
    upload_id = created.split("<UploadId>")[1].split("</UploadId>")[0]
    etag = (await request("PUT", f"/bkt/k?partNumber=1&uploadId={upload_id}", b"kept")).headers["ETag"]
    xml = f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    first = await request("POST", f"/bkt/k?uploadId={upload_id}", xml.encode())
    assert first.status == 200
    first.close()  # gone after the headers, as a client whose read timeout fired
    retry = await request("POST", f"/bkt/k?uploadId={upload_id}", xml.encode())
    expected = hashlib.md5(hashlib.md5(b"kept").digest()).hexdigest().encode() + b"-1"
    assert retry.status == 200 and expected in await retry.read()
    assert (await (await request("GET", "/bkt/k")).read()) == b"kept"


async def test_an_error_after_the_200_is_in_the_body_and_boto3_raises_it(server: TestClient) -> None:
    s3 = boto3_client(server)
    await in_thread(s3.create_bucket, Bucket="bkt")
    upload = await in_thread(s3.create_multipart_upload, Bucket="bkt", Key="k")
    part = await in_thread(s3.upload_part, Bucket="bkt", Key="k", UploadId=upload["UploadId"], PartNumber=1, Body=b"x")
    wrong = {"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]}
    with pytest.raises(ClientError) as exc:
        await in_thread(s3.complete_multipart_upload, Bucket="bkt", Key="k", UploadId=upload["UploadId"], MultipartUpload=wrong)
    assert exc.value.response["Error"]["Code"] == "InvalidPart"
    # On the wire: a 200 whose body, after the spaces, is S3's <Error> document.
    request = signed_sender(server)
    xml = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>" + b"0" * 32 + b"</ETag></Part></CompleteMultipartUpload>"
    response = await request("POST", f"/bkt/k?uploadId={upload['UploadId']}", xml)
    body = await response.read()
    assert response.status == 200
    document = body.split(b"?>\n", 1)[1].lstrip(b" ")
    assert document.startswith(b"<Error><Code>InvalidPart</Code>") and document.endswith(b"</Error>")
    assert f"<RequestId>{response.headers['x-amz-request-id']}</RequestId>".encode() in document
    # The failed Complete gave the upload back: the right part list still completes it.
    right = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    await in_thread(s3.complete_multipart_upload, Bucket="bkt", Key="k", UploadId=upload["UploadId"], MultipartUpload=right)
    assert await in_thread(lambda: s3.get_object(Bucket="bkt", Key="k")["Body"].read()) == b"x"


async def test_copies_answer_through_the_keepalive(server: TestClient) -> None:
    s3 = boto3_client(server)
    await in_thread(s3.create_bucket, Bucket="bkt")
    data = os.urandom(200_000)
    await in_thread(s3.put_object, Bucket="bkt", Key="src", Body=data, ContentType="text/x-src")
    copied = await in_thread(s3.copy_object, Bucket="bkt", Key="dst", CopySource={"Bucket": "bkt", "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = await in_thread(s3.get_object, Bucket="bkt", Key="dst")
    assert await in_thread(got["Body"].read) == data and got["ContentType"] == "text/x-src"
    upload = await in_thread(s3.create_multipart_upload, Bucket="bkt", Key="joined")
    part = await in_thread(
        s3.upload_part_copy, Bucket="bkt", Key="joined", UploadId=upload["UploadId"], PartNumber=1,
        CopySource={"Bucket": "bkt", "Key": "src"}, CopySourceRange="bytes=1000-99999",
    )
    assert part["CopyPartResult"]["ETag"] == f'"{hashlib.md5(data[1000:100000]).hexdigest()}"'
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]}
    await in_thread(s3.complete_multipart_upload, Bucket="bkt", Key="joined", UploadId=upload["UploadId"], MultipartUpload=parts)
    assert await in_thread(lambda: s3.get_object(Bucket="bkt", Key="joined")["Body"].read()) == data[1000:100000]
    # A failed condition found by the copy itself, after the 200 began: boto3 raises S3's code.
    with pytest.raises(ClientError) as exc:
        await in_thread(
            s3.copy_object, Bucket="bkt", Key="dst2", CopySource={"Bucket": "bkt", "Key": "src"}, CopySourceIfMatch='"0123"'
        )
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        await in_thread(s3.head_object, Bucket="bkt", Key="dst2")
    assert exc.value.response["Error"]["Code"] == "404"
