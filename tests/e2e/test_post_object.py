"""PostObject against a live server: browser-style form uploads signed by boto3's
generate_presigned_post (SigV4 and SigV2) or by hand, posted by aiohttp and by curl."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import io
import json
import os
import re
import subprocess
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
import boto3
import pytest
from botocore.config import Config
from multidict import CIMultiDict

from tests.conftest import REGION, Server, object_absent

Pairs = list[tuple[str, str]]


@dataclass
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    @property
    def code(self) -> str | None:
        m = re.search(rb"<Code>(.*?)</Code>", self.body)
        return m.group(1).decode() if m else None

    @property
    def message(self) -> str:
        m = re.search(rb"<Message>(.*?)</Message>", self.body, re.S)
        return m.group(1).decode() if m else ""


async def _post(
    url: str,
    fields: Pairs,
    data: bytes | None,
    filename: str,
    content_type: str,
    after: Pairs,
    multipart: bool,
) -> Answer:
    # Names as they are, like a browser (aiohttp percent-encodes a filename by default).
    form = aiohttp.FormData(quote_fields=False, default_to_multipart=multipart)
    for name, value in fields:
        form.add_field(name, value)
    if data is not None:
        # A file object, as aiohttp wants for large bodies (it warns about raw bytes).
        form.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
    for name, value in after:
        form.add_field(name, value)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=form, allow_redirects=False) as resp:
            return Answer(resp.status, CIMultiDict(resp.headers), await resp.read())


def post(
    url: str,
    fields: dict[str, str] | Pairs,
    data: bytes | None = b"hello form",
    *,
    filename: str = "upload.bin",
    content_type: str = "application/octet-stream",
    after: Pairs = (),  # type: ignore[assignment]
    multipart: bool = True,
) -> Answer:
    """POST a form with aiohttp: the fields in order, then the file (unless data is None)."""
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    return asyncio.run(_post(url, pairs, data, filename, content_type, list(after), multipart))


def curl_post(url: str, fields: dict[str, str], upload: Path, out: Path, file_type: str = "") -> int:
    """POST the form with curl -F, the way a browser sends a file input (the file's own name,
    and its Content-Type when given); the answer's body goes to ``out``."""
    cmd = ["curl", "-sS", "-o", str(out), "-w", "%{http_code}"]
    for name, value in fields.items():
        cmd += ["--form-string", f"{name}={value}"]
    cmd += ["-F", f"file=@{upload}" + (f";type={file_type}" if file_type else ""), url]
    return int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def v4(server: Server):  # type: ignore[no-untyped-def]
    return server.client(signature_version="s3v4")


def presigned(server: Server, bucket: str, key: str, **kwargs: object) -> tuple[str, dict[str, str]]:
    form = v4(server).generate_presigned_post(bucket, key, **kwargs)
    assert "x-amz-signature" in form["fields"]
    return form["url"], dict(form["fields"])


def read(s3, bucket: str, key: str) -> bytes:  # type: ignore[no-untyped-def]
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


# -- answers -------------------------------------------------------------------------------------


def test_default_answer_is_204_with_etag_and_location(server: Server, s3, bucket: str) -> None:
    url, fields = presigned(server, bucket, "dir/plain.txt")
    data = os.urandom(70_000)
    r = post(url, fields, data)
    assert r.status == 204, r.body
    assert r.body == b""
    assert r.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert r.headers["Location"] == f"{server.endpoint}/{bucket}/dir%2Fplain.txt"
    assert "x-amz-checksum-crc64nvme" in r.headers
    assert read(s3, bucket, "dir/plain.txt") == data
    # No Content-Type was given: S3 serves the object as binary/octet-stream, whatever the file
    # part said.
    assert s3.head_object(Bucket=bucket, Key="dir/plain.txt")["ContentType"] == "binary/octet-stream"


def test_201_answers_with_post_response(server: Server, s3, bucket: str) -> None:
    url, fields = presigned(
        server, bucket, "r201 ü.txt", Fields={"success_action_status": "201"}, Conditions=[{"success_action_status": "201"}]
    )
    r = post(url, fields, b"created")
    assert r.status == 201, r.body
    doc = ET.fromstring(r.body)
    assert doc.tag == "PostResponse"  # no namespace, as S3 sends it
    etag = f'"{hashlib.md5(b"created").hexdigest()}"'
    assert doc.findtext("Bucket") == bucket
    assert doc.findtext("Key") == "r201 ü.txt"
    assert doc.findtext("ETag") == etag == r.headers["ETag"]
    assert doc.findtext("Location") == r.headers["Location"] == f"{server.endpoint}/{bucket}/{quote('r201 ü.txt', safe='')}"
    assert read(s3, bucket, "r201 ü.txt") == b"created"


def test_200_and_unknown_status(server: Server, s3, bucket: str) -> None:
    for status, expected in (("200", 200), ("204", 204), ("404", 204)):
        url, fields = presigned(
            server, bucket, f"s{status}", Fields={"success_action_status": status}, Conditions=[{"success_action_status": status}]
        )
        r = post(url, fields, status.encode())
        assert (r.status, r.body) == (expected, b""), r.body
        assert read(s3, bucket, f"s{status}") == status.encode()


def test_redirect_303(server: Server, s3, bucket: str) -> None:
    target = "https://app.example.test/done?step=2"
    url, fields = presigned(
        server,
        bucket,
        "up/${filename}",
        Fields={"success_action_redirect": target},
        Conditions=[["starts-with", "$success_action_redirect", "https://app.example.test/"]],
    )
    r = post(url, fields, b"redirected", filename="C:\\Users\\me\\my photo.jpg")
    assert r.status == 303, r.body
    location = r.headers["Location"]
    assert location.startswith(target + "&")
    query = dict(parse_qsl(urlsplit(location).query))
    assert query == {
        "step": "2",
        "bucket": bucket,
        "key": "up/my photo.jpg",
        "etag": f'"{hashlib.md5(b"redirected").hexdigest()}"',
    }
    assert read(s3, bucket, "up/my photo.jpg") == b"redirected"


def test_relative_redirect_is_ignored(server: Server, bucket: str) -> None:
    url, fields = presigned(
        server, bucket, "rel", Fields={"redirect": "/done"}, Conditions=[["starts-with", "$redirect", ""]]
    )
    assert post(url, fields).status == 204


# -- fields --------------------------------------------------------------------------------------


def test_curl_form_with_filename_variable(server: Server, s3, bucket: str, tmp_path: Path) -> None:
    url, fields = presigned(server, bucket, "uploads/${filename}")
    upload = tmp_path / "photo.png"
    upload.write_bytes(os.urandom(300_000))
    status = curl_post(url, fields, upload, tmp_path / "out", "image/png")
    assert status == 204, (tmp_path / "out").read_text()
    assert read(s3, bucket, "uploads/photo.png") == upload.read_bytes()
    # S3 takes the object's type from the form's Content-Type field, not from the file part.
    assert s3.head_object(Bucket=bucket, Key="uploads/photo.png")["ContentType"] == "binary/octet-stream"


def test_metadata_and_content_type_round_trip(server: Server, s3, bucket: str) -> None:
    given = {
        "Content-Type": "image/png",
        "Cache-Control": "max-age=60",
        "Content-Disposition": 'attachment; filename="a.png"',
        "x-amz-meta-Color": "blue",
        "x-amz-meta-note": "héllo wörld",
        "x-amz-storage-class": "STANDARD_IA",
    }
    url, fields = presigned(
        server, bucket, "meta.png", Fields=given, Conditions=[{name: value} for name, value in given.items()]
    )
    assert post(url, fields, b"png bytes").status == 204
    head = s3.head_object(Bucket=bucket, Key="meta.png")
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="a.png"'
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["Metadata"]["color"] == "blue"
    assert "note" in head["Metadata"]


def test_tagging_field(server: Server, s3, bucket: str) -> None:
    tagging = "<Tagging><TagSet><Tag><Key>team</Key><Value>blue</Value></Tag><Tag><Key>n</Key><Value>1</Value></Tag></TagSet></Tagging>"
    url, fields = presigned(server, bucket, "tagged", Fields={"tagging": tagging}, Conditions=[{"tagging": tagging}])
    assert post(url, fields).status == 204
    tags = s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "blue", "n": "1"}
    bad = "<Tagging><TagSet><Tag><Key>k</Key>"
    url, fields = presigned(server, bucket, "badtags", Fields={"tagging": bad}, Conditions=[{"tagging": bad}])
    r = post(url, fields)
    assert (r.status, r.code) == (400, "MalformedXML")
    assert object_absent(s3, bucket, "badtags")


def test_checksum_field(server: Server, s3, bucket: str) -> None:
    data = b"checked content"
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    url, fields = presigned(
        server, bucket, "sum", Fields={"x-amz-checksum-sha256": good}, Conditions=[{"x-amz-checksum-sha256": good}]
    )
    r = post(url, fields, data)
    assert r.status == 204, r.body
    assert r.headers["x-amz-checksum-sha256"] == good
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    url, fields = presigned(
        server, bucket, "sum2", Fields={"x-amz-checksum-sha256": wrong}, Conditions=[{"x-amz-checksum-sha256": wrong}]
    )
    r = post(url, fields, data)
    assert (r.status, r.code) == (400, "BadDigest")
    assert object_absent(s3, bucket, "sum2")


def test_fields_after_the_file_are_ignored(server: Server, s3, bucket: str) -> None:
    url, fields = presigned(server, bucket, "late")
    r = post(url, fields, after=[("x-amz-meta-late", "x"), ("submit", "Upload")])
    assert r.status == 204, r.body
    assert s3.head_object(Bucket=bucket, Key="late")["Metadata"] == {}
    # A key after the file is a key S3 never saw.
    key = fields.pop("key")
    r = post(url, fields, after=[("key", key)])
    assert (r.status, r.code) == (400, "InvalidArgument")
    assert "Bucket POST must contain a field named 'key'" in r.message


def test_field_names_are_case_insensitive(server: Server, s3, bucket: str) -> None:
    url, fields = presigned(server, bucket, "cased", Fields={"acl": "private"}, Conditions=[{"ACL": "private"}])
    renamed = {name.upper() if name != "key" else "Key": value for name, value in fields.items()}
    r = post(url, renamed)
    assert r.status == 204, r.body
    assert object_absent(s3, bucket, "cased") is False


# -- the policy ----------------------------------------------------------------------------------


def test_starts_with(server: Server, s3, bucket: str) -> None:
    url, fields = presigned(
        server,
        bucket,
        "user/${filename}",
        Fields={"Content-Type": "image/png,image/gif"},
        Conditions=[["starts-with", "$Content-Type", "image/"]],
    )
    assert post(url, fields, filename="ok.png").status == 204
    assert not object_absent(s3, bucket, "user/ok.png")
    r = post(url, {**fields, "key": "other/x.png"})
    assert (r.status, r.code) == (403, "AccessDenied")
    assert r.message == 'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "user/"]'
    # Every item of a comma-separated Content-Type must match.
    r = post(url, {**fields, "Content-Type": "image/png,text/plain"}, filename="no.png")
    assert (r.status, r.code) == (403, "AccessDenied")
    assert "$Content-Type" in r.message
    assert object_absent(s3, bucket, "other/x.png") and object_absent(s3, bucket, "user/no.png")


def test_eq_condition_failure(server: Server, s3, bucket: str) -> None:
    url, fields = presigned(server, bucket, "eq")
    r = post(url, {**fields, "key": "eq2"})
    assert (r.status, r.code) == (403, "AccessDenied")
    assert r.message == 'Invalid according to Policy: Policy Condition failed: ["eq", "$key", "eq"]'
    assert object_absent(s3, bucket, "eq2")


def test_extra_field_is_refused(server: Server, s3, bucket: str) -> None:
    url, fields = presigned(server, bucket, "extra")
    r = post(url, {**fields, "x-amz-meta-sneaky": "1"})
    assert (r.status, r.code) == (403, "AccessDenied")
    assert r.message == "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky"
    assert object_absent(s3, bucket, "extra")
    # Fields a page marks as ignorable need no condition.
    assert post(url, {**fields, "x-ignore-tracking": "1"}).status == 204


def test_expired_policy(server: Server, s3, bucket: str) -> None:
    url, fields = presigned(server, bucket, "late-policy", ExpiresIn=-60)
    r = post(url, fields)
    assert (r.status, r.code) == (403, "AccessDenied")
    assert r.message == "Invalid according to Policy: Policy expired."
    assert object_absent(s3, bucket, "late-policy")


def test_wrong_signature(server: Server, s3, bucket: str) -> None:
    url, fields = presigned(server, bucket, "forged")
    signature = fields["x-amz-signature"]
    r = post(url, {**fields, "x-amz-signature": signature[::-1]})
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch")
    assert f"<StringToSign>{fields['policy']}</StringToSign>".encode() in r.body
    # A policy changed after signing.
    policy = json.loads(base64.b64decode(fields["policy"]))
    policy["conditions"] = [c for c in policy["conditions"] if "key" not in c] + [["starts-with", "$key", ""]]
    forged = base64.b64encode(json.dumps(policy).encode()).decode()
    r = post(url, {**fields, "policy": forged, "key": "anything"})
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch")
    # No signature at all, with the other SigV4 fields there.
    del fields["x-amz-signature"]
    r = post(url, fields)
    assert (r.status, r.code) == (400, "InvalidArgument")
    assert "'X-Amz-Signature'" in r.message
    assert object_absent(s3, bucket, "forged") and object_absent(s3, bucket, "anything")


def test_unknown_access_key(server: Server, s3, bucket: str) -> None:
    stranger = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id="nobody-knows-me",
        aws_secret_access_key="whatever",
        region_name=REGION,
        config=Config(signature_version="s3v4"),
    )
    form = stranger.generate_presigned_post(bucket, "stranger")
    r = post(form["url"], form["fields"])
    assert (r.status, r.code) == (403, "InvalidAccessKeyId")
    assert object_absent(s3, bucket, "stranger")


def test_anonymous_form_is_refused(server: Server, s3, bucket: str) -> None:
    r = post(f"{server.endpoint}/{bucket}", {"key": "anon"})
    assert (r.status, r.code) == (403, "AccessDenied")
    url, fields = presigned(server, bucket, "unsigned")
    r = post(url, {"key": "unsigned", "policy": fields["policy"]})
    assert (r.status, r.code) == (403, "AccessDenied")
    assert object_absent(s3, bucket, "anon") and object_absent(s3, bucket, "unsigned")


def test_malformed_requests(server: Server, bucket: str) -> None:
    url, fields = presigned(server, bucket, "shape")
    # Not multipart/form-data.
    r = post(url, fields, None, multipart=False)
    assert (r.status, r.code) == (412, "PreconditionFailed")
    assert b"<Condition>Bucket POST must be of the enclosure-type multipart/form-data</Condition>" in r.body
    # No file.
    r = post(url, fields, None)
    assert (r.status, r.code) == (400, "InvalidArgument")
    assert r.message == "POST requires exactly one file upload per request."
    # No key.
    r = post(url, {k: v for k, v in fields.items() if k != "key"})
    assert (r.status, r.code) == (400, "InvalidArgument")
    # Fields over S3's 20 KB limit.
    r = post(url, {**fields, "x-ignore-padding": "x" * 21_000})
    assert (r.status, r.code) == (400, "MaxPostPreDataLengthExceeded")


def test_content_length_range(server: Server, s3, bucket: str, tmp_path: Path) -> None:
    def form(key: str) -> tuple[str, dict[str, str]]:
        return presigned(server, bucket, key, Conditions=[["content-length-range", 10, 100]])

    for size in (10, 100):
        url, fields = form(f"fits-{size}")
        assert post(url, fields, b"x" * size).status == 204
    url, fields = form("too-large")
    r = post(url, fields, b"x" * 101)
    assert (r.status, r.code) == (400, "EntityTooLarge")
    assert b"<MaxSizeAllowed>100</MaxSizeAllowed>" in r.body
    assert object_absent(s3, bucket, "too-large")
    # Far over the limit: refused while it streams (curl, as aiohttp's client leaves a socket
    # behind when the answer comes before it has sent its body), nothing left behind.
    upload = tmp_path / "big.bin"
    upload.write_bytes(os.urandom(8 * 1024 * 1024))
    assert curl_post(url, fields, upload, tmp_path / "out") == 400
    assert b"<Code>EntityTooLarge</Code>" in (tmp_path / "out").read_bytes()
    assert object_absent(s3, bucket, "too-large")
    url, fields = form("too-small")
    r = post(url, fields, b"x" * 9)
    assert (r.status, r.code) == (400, "EntityTooSmall")
    assert b"<ProposedSize>9</ProposedSize>" in r.body and b"<MinSizeAllowed>10</MinSizeAllowed>" in r.body
    assert object_absent(s3, bucket, "too-small")
    if server.root is not None:
        # Nothing left in the staging area either.
        assert not [p for p in (server.root / ".s3serve").rglob("put-*")]


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_large_file_streams(server: Server, s3, bucket: str) -> None:
    data = os.urandom(20 * 1024 * 1024 + 123)
    url, fields = presigned(server, bucket, "big.bin", Conditions=[["content-length-range", 0, 64 * 1024 * 1024]])
    before = _peak_rss(server.process.pid) if server.process is not None else 0
    r = post(url, fields, data)
    assert r.status == 204, r.body
    assert r.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = read(s3, bucket, "big.bin")
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    if server.process is not None:
        # The file went to disk as it came: the server's peak memory did not grow by its size.
        # (A one-sided check: an earlier, larger peak would hide a regression, never fake one.)
        assert _peak_rss(server.process.pid) - before < len(data) // 2


# -- SigV2 ---------------------------------------------------------------------------------------


def _v2_form(server: Server, bucket: str, key: str, conditions: list[object]) -> dict[str, str]:
    expiration = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    policy = base64.b64encode(json.dumps({"expiration": expiration, "conditions": conditions}).encode()).decode()
    signature = base64.b64encode(hmac.new(server.secret_key.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    return {"key": key, "AWSAccessKeyId": server.access_key, "policy": policy, "signature": signature}


def test_sigv2_form_by_hand(server: Server, s3, bucket: str) -> None:
    conditions: list[object] = [{"bucket": bucket}, ["starts-with", "$key", "v2/"], ["content-length-range", 1, 1000]]
    fields = _v2_form(server, bucket, "v2/hand.txt", conditions)
    r = post(f"{server.endpoint}/{bucket}", fields, b"signed the old way")
    assert r.status == 204, r.body
    assert read(s3, bucket, "v2/hand.txt") == b"signed the old way"
    r = post(f"{server.endpoint}/{bucket}", {**fields, "signature": base64.b64encode(b"x" * 20).decode()})
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch")
    del fields["signature"]
    r = post(f"{server.endpoint}/{bucket}", fields)
    assert (r.status, r.code) == (400, "InvalidArgument")
    assert "'Signature'" in r.message


def test_boto3_default_presigned_post(server: Server, s3, bucket: str) -> None:
    # For a custom endpoint in us-east-1, boto3's default presigned POST is SigV2.
    form = s3.generate_presigned_post(bucket, "default-signer")
    assert post(form["url"], form["fields"], b"either way").status == 204
    assert read(s3, bucket, "default-signer") == b"either way"


def test_policy_for_another_bucket(server: Server, s3, bucket: str) -> None:
    other = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=other)
    try:
        _, fields = presigned(server, other, "moved")
        r = post(f"{server.endpoint}/{bucket}", fields)
        assert (r.status, r.code) == (403, "AccessDenied")
        assert '["eq", "$bucket", ' in r.message
        assert object_absent(s3, bucket, "moved")
    finally:
        s3.delete_bucket(Bucket=other)


def test_missing_bucket(server: Server) -> None:
    url, fields = presigned(server, "no-such-bucket-here", "k")
    r = post(url, fields)
    assert (r.status, r.code) == (404, "NoSuchBucket")


@pytest.mark.parametrize("name", ["a/../b", "x" * 1100])
def test_bad_keys_are_refused(server: Server, bucket: str, name: str) -> None:
    url, fields = presigned(server, bucket, name)
    r = post(url, fields)
    assert 400 <= r.status < 500 and r.code is not None, r.body
