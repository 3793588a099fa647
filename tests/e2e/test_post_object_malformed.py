"""PostObject with forms no browser sends: written byte by byte on a raw socket (bodies cut short,
clients that go away, bytes that are not UTF-8) or with field values that cannot become the
headers of the object they describe. Each gets a clear S3 error, leaves no object and no temp
file behind, and no traceback in the server's log."""

from __future__ import annotations

import re
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import Server, object_absent

BOUNDARY = b"----s3serveMalformedForm"


def presigned(server: Server, bucket: str, key: str, **kwargs: object) -> list[tuple[bytes, bytes]]:
    client = server.client(signature_version="s3v4")
    form = client.generate_presigned_post(bucket, key, **kwargs)  # type: ignore[attr-defined]
    return [(name.encode(), value.encode()) for name, value in form["fields"].items()]


def field(name: bytes, value: bytes) -> bytes:
    return b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n"


def file_part(data: bytes, filename: bytes = b"f.bin") -> bytes:
    return (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    )


def form_body(fields: list[tuple[bytes, bytes]], data: bytes, filename: bytes = b"f.bin") -> bytes:
    return b"".join(field(n, v) for n, v in fields) + file_part(data, filename) + b"--" + BOUNDARY + b"--\r\n"


def _head(server: Server, bucket: str, length: int) -> bytes:
    host = urlsplit(server.endpoint).netloc
    return (
        f"POST /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n\r\n"
    ).encode()


def send(server: Server, bucket: str, body: bytes, length: int | None = None) -> tuple[int, bytes]:
    """POST the body as it is; (status, the answer's bytes)."""
    address = urlsplit(server.endpoint)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(_head(server, bucket, len(body) if length is None else length) + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def code(answer: bytes) -> str | None:
    m = re.search(rb"<Code>(.*?)</Code>", answer)
    return m.group(1).decode() if m else None


@pytest.fixture
def log_offset(server: Server) -> int:
    if server.log_path is None:
        pytest.skip("needs the server's log")
    return len(server.log_path.read_bytes())


def tracebacks_since(server: Server, offset: int) -> str:
    assert server.log_path is not None
    text = server.log_path.read_bytes()[offset:].decode(errors="replace")
    return text if "Traceback" in text else ""


def temp_files(server: Server) -> set[str]:
    assert server.root is not None
    return {p.name for p in (server.root / ".s3serve" / "tmp").iterdir()}


def test_file_without_closing_boundary_is_not_stored(server: Server, s3, bucket: str, log_offset: int) -> None:
    fields = presigned(server, bucket, "cut")
    data = b"D" * 5000
    whole = form_body(fields, data)
    # The body ends (at its Content-Length) inside the file part: no boundary ever closes it.
    body = whole[: whole.index(data) + 3000]
    status, answer = send(server, bucket, body)
    assert (status, code(answer)) == (400, "MalformedPOSTRequest"), answer
    assert object_absent(s3, bucket, "cut")
    # The file ends where the body does, but the closing boundary is missing.
    status, answer = send(server, bucket, whole[: -len(b"--" + BOUNDARY + b"--\r\n")])
    assert (status, code(answer)) == (400, "MalformedPOSTRequest"), answer
    assert object_absent(s3, bucket, "cut")
    assert not tracebacks_since(server, log_offset)


def test_client_going_away_mid_file_leaves_nothing(server: Server, s3, bucket: str, log_offset: int) -> None:
    fields = presigned(server, bucket, "gone")
    whole = form_body(fields, b"G" * 300_000)
    address = urlsplit(server.endpoint)
    before = temp_files(server)  # what earlier tests may have left on purpose
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(_head(server, bucket, len(whole)) + whole[:150_000])
        time.sleep(0.3)  # the server is streaming the file into a temp file
    deadline = time.monotonic() + 10
    while temp_files(server) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(server) - before == set()
    assert object_absent(s3, bucket, "gone")
    time.sleep(0.2)
    assert not tracebacks_since(server, log_offset)


def test_part_headers_that_are_not_utf8(server: Server, s3, bucket: str, log_offset: int) -> None:
    fields = presigned(server, bucket, "bytes/${filename}")
    status, answer = send(server, bucket, form_body(fields, b"x", filename=b"caf\xe9.txt"))
    assert (status, code(answer)) == (400, "MalformedPOSTRequest"), answer
    status, answer = send(server, bucket, form_body([*fields, (b"x-ignore-\xff", b"v")], b"x"))
    assert (status, code(answer)) == (400, "MalformedPOSTRequest"), answer
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert not tracebacks_since(server, log_offset)


@pytest.mark.parametrize(
    "name,value",
    [
        ("Content-Type", "text/plain\r\nX-Injected: 1"),
        ("Cache-Control", "no-cache\nmore"),
        ("Content-Disposition", "inline\x00"),
        ("x-amz-meta-note", "a\x7fb"),
        ("x-amz-meta-two words", "v"),
        ("x-amz-meta-a:b", "v"),
        ("x-amz-meta-caf\u00e9", "v"),
    ],
)
def test_fields_that_cannot_be_headers_are_refused(
    server: Server, s3, bucket: str, log_offset: int, name: str, value: str
) -> None:
    """Such a field would become a header of every answer about the object, which could then not
    be read at all (or its answers would carry a header the client never sent)."""
    fields = presigned(server, bucket, "hdr", Fields={name: value}, Conditions=[["starts-with", f"${name}", ""]])
    status, answer = send(server, bucket, form_body(fields, b"x"))
    assert (status, code(answer)) == (400, "InvalidArgument"), answer
    assert object_absent(s3, bucket, "hdr")
    assert not tracebacks_since(server, log_offset)


def test_redirect_with_control_characters_is_ignored(server: Server, s3, bucket: str, log_offset: int) -> None:
    fields = presigned(
        server,
        bucket,
        "redir",
        Fields={"success_action_redirect": "https://app.example.test/\x01done"},
        Conditions=[["starts-with", "$success_action_redirect", ""]],
    )
    status, answer = send(server, bucket, form_body(fields, b"kept"))
    # S3 ignores a redirect it cannot use and answers as if there were none.
    assert status == 204, answer
    assert s3.get_object(Bucket=bucket, Key="redir")["Body"].read() == b"kept"
    assert not tracebacks_since(server, log_offset)

