"""Request bodies through a real asyncio.StreamReader: plain, sha256-checked, aws-chunked signed
(the AWS documentation examples and hand-built ones) and unsigned with trailers (botocore's own
AwsChunkedWrapper), with every failure the server must report."""

from __future__ import annotations

import asyncio
import base64
import calendar
import hashlib
import hmac
import io
import os

import pytest
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    CrtCrc32cChecksum,
    CrtCrc32Checksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from multidict import CIMultiDict, CIMultiDictProxy

from s3serve import errors
from s3serve.checksums import MultiHasher
from s3serve.config import User
from s3serve.payload import COALESCE_BYTES, PASS_BYTES, RequestBody, make_body
from s3serve.sigv4 import EMPTY_SHA256, AuthResult, RequestView, authenticate, signing_key

DOC_USER = User("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
DOC_NOW = float(calendar.timegm((2013, 5, 24, 0, 0, 0)))
DOC_DATE = "20130524T000000Z"
DOC_SCOPE = "20130524/us-east-1/s3/aws4_request"
ORACLES = {
    "CRC32": CrtCrc32Checksum,
    "CRC32C": CrtCrc32cChecksum,
    "CRC64NVME": CrtCrc64NvmeChecksum,
    "SHA1": Sha1Checksum,
    "SHA256": Sha256Checksum,
}


class Stream(asyncio.StreamReader):
    """asyncio's StreamReader plus aiohttp's readany, fed up front (or in small pieces)."""

    async def readany(self) -> bytes:
        return await self.read(65536)


class PlainSource:
    """What plain (not aws-chunked) bodies never call of a source, plus aiohttp's readany."""

    async def read(self, n: int = -1) -> bytes:
        raise NotImplementedError

    async def readexactly(self, n: int) -> bytes:
        raise AssertionError("not used for plain bodies")

    async def readline(self) -> bytes:
        raise AssertionError("not used for plain bodies")

    async def readany(self) -> bytes:
        return await self.read()


class SmallReads(PlainSource):
    """A source that only ever returns `step` bytes per read, like a slow network."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    async def read(self, n: int = -1) -> bytes:
        take = self._step if n < 0 else min(n, self._step)
        piece = self._data[self._pos : self._pos + take]
        self._pos += len(piece)
        return piece


class Pieces(PlainSource):
    """A source that returns the given pieces one per read, as they are (no copies)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    async def read(self, n: int = -1) -> bytes:
        if not self._pieces:
            return b""
        piece = self._pieces[0]
        if 0 <= n < len(piece):
            self._pieces[0] = piece[n:]
            return piece[:n]
        return self._pieces.pop(0)


def stream_of(data: bytes) -> Stream:
    stream = Stream(limit=2**16)
    stream.feed_data(data)
    stream.feed_eof()
    return stream


def hdrs(**headers: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}))


def oracle(algorithm: str, data: bytes) -> str:
    checksum = ORACLES[algorithm]()
    checksum.update(data)
    return str(checksum.b64digest())


async def consume(body: RequestBody) -> tuple[bytes, list[int], dict[str, str]]:
    """What storage does: iterate, hash MD5 + digests_wanted, then finish."""
    hasher = MultiHasher(["md5", *body.digests_wanted])
    pieces: list[bytes] = []
    async for piece in body:
        hasher.update(piece)
        pieces.append(piece)
    stored = body.finish(hasher.digests())
    return b"".join(pieces), [len(p) for p in pieces], stored


# -- plain bodies -----------------------------------------------------------------------------


async def test_plain_body_stores_crc64nvme_by_default() -> None:
    data = os.urandom(300_000)
    body = make_body(stream_of(data), hdrs(Content_Length=str(len(data))), None)
    assert body.decoded_length == len(data) and body.digests_wanted == frozenset({"crc64nvme"})
    assert body.declared_checksum is None  # the default is S3's, not the client's
    got, _, stored = await consume(body)
    assert got == data
    assert stored == {"CRC64NVME": oracle("CRC64NVME", data)}


async def test_small_reads_are_coalesced() -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    body = make_body(SmallReads(data, 1000), hdrs(Content_Length=str(len(data))), None)
    got, sizes, _ = await consume(body)
    assert got == data
    # 1000-byte reads joined into pieces of just over COALESCE_BYTES: 12 pieces, not 3146 reads.
    assert len(sizes) == -(-len(data) // 263_000)
    assert all(COALESCE_BYTES <= s < COALESCE_BYTES + 1000 for s in sizes[:-1])


async def test_network_sized_reads_pass_through_uncopied() -> None:
    """Pieces of PASS_BYTES or more reach storage as the stream returned them (the same objects,
    not copies); smaller ones between them are joined, in order."""
    big = [os.urandom(PASS_BYTES), os.urandom(200_000)]
    small = [os.urandom(100), os.urandom(5000)]
    source = [big[0], small[0], small[1], big[1]]
    body = make_body(Pieces(source), hdrs(Content_Length=str(sum(map(len, source)))), None)
    seen = [piece async for piece in body]
    assert seen[0] is big[0] and seen[2] is big[1]
    assert seen[1] == small[0] + small[1]


async def test_empty_body() -> None:
    got, sizes, stored = await consume(make_body(stream_of(b""), hdrs(Content_Length="0"), None))
    assert (got, sizes) == (b"", [])
    assert stored == {"CRC64NVME": oracle("CRC64NVME", b"")}


async def test_content_sha256_verified() -> None:
    data = b"Welcome to Amazon S3."
    good = hashlib.sha256(data).hexdigest()
    body = make_body(stream_of(data), hdrs(Content_Length="21", x_amz_content_sha256=good), None)
    assert "sha256" in body.digests_wanted
    assert (await consume(body))[0] == data
    bad = hashlib.sha256(b"other").hexdigest()
    body = make_body(stream_of(data), hdrs(Content_Length="21", x_amz_content_sha256=bad), None)
    with pytest.raises(errors.XAmzContentSHA256Mismatch) as info:
        await consume(body)
    assert info.value.extra == {"ClientComputedContentSHA256": bad, "S3ComputedContentSHA256": good}


async def test_content_md5() -> None:
    data = b"hello md5"
    good = base64.b64encode(hashlib.md5(data).digest()).decode()
    assert (await consume(make_body(stream_of(data), hdrs(Content_Length="9", Content_MD5=good), None)))[
        0
    ] == data
    wrong = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    with pytest.raises(errors.BadDigest) as info:
        await consume(make_body(stream_of(data), hdrs(Content_Length="9", Content_MD5=wrong), None))
    assert info.value.message == "The Content-MD5 you specified did not match what we received."
    for malformed in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(errors.InvalidDigest):
            make_body(stream_of(data), hdrs(Content_Length="9", Content_MD5=malformed), None)


async def test_truncated_plain_body() -> None:
    body = make_body(stream_of(b"only ten b"), hdrs(Content_Length="100"), None)
    with pytest.raises(errors.IncompleteBody):
        await consume(body)


async def test_header_validation_before_reading() -> None:
    # No length at all: S3's 411, and the connection closes (the body's end cannot be found).
    with pytest.raises(errors.MissingContentLength) as missing:
        make_body(stream_of(b"x"), hdrs(), None)
    assert missing.value.headers == {"Connection": "close"}
    # aws-chunked needs HTTP framing too (the AWS documentation: Content-Length or
    # Transfer-Encoding), or its body would be read as the next request.
    with pytest.raises(errors.MissingContentLength) as missing:
        make_body(stream_of(b"x"), hdrs(Content_Encoding="aws-chunked", x_amz_decoded_content_length="1"), None)
    assert missing.value.headers == {"Connection": "close"}
    # A plain body sent with Transfer-Encoding: S3 answers 501 naming the header, with or
    # without x-amz-decoded-content-length (which only an aws-chunked body's framing uses).
    for extra in ({}, {"x_amz_decoded_content_length": "1"}):
        with pytest.raises(errors.NotImplementedOp) as refused:
            make_body(stream_of(b"x"), hdrs(Transfer_Encoding="chunked", **extra), None)
        assert refused.value.code == "NotImplemented" and refused.value.status == 501
        assert refused.value.extra == {"Header": "Transfer-Encoding"}
        assert refused.value.headers == {"Connection": "close"}
    with pytest.raises(errors.InvalidArgument) as info:
        make_body(stream_of(b""), hdrs(Content_Length="0", x_amz_content_sha256="SOMETHING-ELSE"), None)
    assert info.value.message.startswith("x-amz-content-sha256 must be UNSIGNED-PAYLOAD")
    with pytest.raises(errors.MissingContentLength):
        make_body(
            stream_of(b""),
            hdrs(x_amz_content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER", Content_Encoding="aws-chunked"),
            None,
        )
    with pytest.raises(errors.InvalidRequest):
        # Signed chunks without a SigV4 signing key cannot be checked.
        make_body(
            stream_of(b""),
            hdrs(x_amz_content_sha256="STREAMING-AWS4-HMAC-SHA256-PAYLOAD", x_amz_decoded_content_length="0"),
            None,
        )


# -- additional checksums in headers ----------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(ORACLES))
async def test_checksum_header_verified_and_stored(algorithm: str) -> None:
    data = os.urandom(70_000)
    value = oracle(algorithm, data)
    header = {f"x-amz-checksum-{algorithm.lower()}": value, "Content-Length": str(len(data))}
    body = make_body(stream_of(data), CIMultiDictProxy(CIMultiDict(header)), None)
    assert (await consume(body))[2] == {algorithm: value}
    wrong = oracle(algorithm, b"something else")
    header[f"x-amz-checksum-{algorithm.lower()}"] = wrong
    body = make_body(stream_of(data), CIMultiDictProxy(CIMultiDict(header)), None)
    with pytest.raises(errors.BadDigest) as info:
        await consume(body)
    assert info.value.message == f"The {algorithm} you specified did not match the calculated checksum."


async def test_sdk_checksum_algorithm_without_value_is_computed() -> None:
    data = b"compute me"
    body = make_body(stream_of(data), hdrs(Content_Length="10", x_amz_sdk_checksum_algorithm="crc32c"), None)
    assert (await consume(body))[2] == {"CRC32C": oracle("CRC32C", data)}


@pytest.mark.parametrize(
    "headers",
    [
        {"x-amz-checksum-crc32": "not-base64"},
        {"x-amz-checksum-crc32": base64.b64encode(b"12345678").decode()},  # 8 bytes: a CRC64's length
        {"x-amz-checksum-md5": "AAAAAA=="},
        {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": base64.b64encode(b"\0" * 20).decode()},
        {"x-amz-sdk-checksum-algorithm": "MD5"},
        {"x-amz-sdk-checksum-algorithm": "SHA1", "x-amz-checksum-crc32": "AAAAAA=="},
    ],
    ids=["malformed", "wrong-length", "unknown-algorithm", "two-checksums", "unknown-sdk", "sdk-mismatch"],
)
async def test_bad_checksum_headers(headers: dict[str, str]) -> None:
    with pytest.raises(errors.InvalidRequest):
        make_body(stream_of(b""), CIMultiDictProxy(CIMultiDict({"Content-Length": "0", **headers})), None)


# -- aws-chunked, signed: the AWS documentation examples --------------------------------------

DOC_CHUNK_SIGS = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
DOC_TRAILER_CHUNK_SIGS = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
]
DOC_TRAILER = b"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n"


def doc_body(signatures: list[str], trailer: bytes = b"") -> bytes:
    out = b""
    for size, sig in zip((65536, 1024, 0), signatures, strict=True):
        out += f"{size:x};chunk-signature={sig}\r\n".encode() + b"a" * size + (b"\r\n" if size else b"")
    return out + trailer + b"\r\n"


def doc_request(trailer: bool) -> tuple[CIMultiDictProxy[str], AuthResult]:
    headers = CIMultiDict(
        [
            ("Host", "s3.amazonaws.com"),
            ("x-amz-date", DOC_DATE),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
        ]
    )
    if trailer:
        # The documentation's example leaves out how the body is framed; unsigned, this is how.
        headers["Transfer-Encoding"] = "chunked"
        headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
        headers["x-amz-trailer"] = "x-amz-checksum-crc32c"
        signed = "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer"
        seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    else:
        headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        headers["Content-Length"] = "66824"
        signed = "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class"
        seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={DOC_USER.access_key}/{DOC_SCOPE},SignedHeaders={signed},Signature={seed}"
    )
    view = RequestView("PUT", "/examplebucket/chunkObject.txt", [], "", CIMultiDictProxy(headers))
    auth = authenticate(view, {DOC_USER.access_key: DOC_USER}.get, now=DOC_NOW)
    assert auth is not None
    return CIMultiDictProxy(headers), auth


async def test_doc_signed_chunked_upload() -> None:
    headers, auth = doc_request(trailer=False)
    raw = doc_body(DOC_CHUNK_SIGS)
    assert len(raw) == 66824  # the documented Content-Length
    body = make_body(stream_of(raw), headers, auth)
    assert body.decoded_length == 66560
    got, _, stored = await consume(body)
    assert got == b"a" * 66560
    assert stored == {"CRC64NVME": oracle("CRC64NVME", got)}


async def test_doc_signed_chunked_upload_with_trailer() -> None:
    headers, auth = doc_request(trailer=True)
    body = make_body(stream_of(doc_body(DOC_TRAILER_CHUNK_SIGS, DOC_TRAILER)), headers, auth)
    got, _, stored = await consume(body)
    assert got == b"a" * 66560
    assert stored == {"CRC32C": "sOO8/Q=="} == {"CRC32C": oracle("CRC32C", got)}


async def test_doc_bad_chunk_signature() -> None:
    headers, auth = doc_request(trailer=False)
    sigs = [DOC_CHUNK_SIGS[0], "0" * 64, DOC_CHUNK_SIGS[2]]
    with pytest.raises(errors.SignatureDoesNotMatch):
        await consume(make_body(stream_of(doc_body(sigs)), headers, auth))
    flipped = bytearray(doc_body(DOC_CHUNK_SIGS))
    flipped[5000] = ord("b")  # inside the first chunk's data
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        await consume(make_body(stream_of(bytes(flipped)), headers, auth))
    assert info.value.extra["StringToSign"].startswith("AWS4-HMAC-SHA256-PAYLOAD\n")


async def test_doc_bad_trailer_signature_and_checksum() -> None:
    headers, auth = doc_request(trailer=True)
    bad_sig = DOC_TRAILER.replace(b"d81f82fc", b"d81f82fd")
    with pytest.raises(errors.SignatureDoesNotMatch):
        await consume(make_body(stream_of(doc_body(DOC_TRAILER_CHUNK_SIGS, bad_sig)), headers, auth))
    # A different checksum value breaks the trailer signature that covers it.
    bad_value = DOC_TRAILER.replace(b"sOO8/Q==", b"AAAAAA==")
    with pytest.raises(errors.SignatureDoesNotMatch):
        await consume(make_body(stream_of(doc_body(DOC_TRAILER_CHUNK_SIGS, bad_value)), headers, auth))
    no_sig = DOC_TRAILER.split(b"x-amz-trailer-signature")[0]
    with pytest.raises(errors.SignatureDoesNotMatch):
        await consume(make_body(stream_of(doc_body(DOC_TRAILER_CHUNK_SIGS, no_sig)), headers, auth))


# -- aws-chunked, signed: hand-built with arbitrary data ---------------------------------------


def sign_chunks(
    key: bytes, seed: str, chunks: list[bytes], trailer: list[tuple[str, str]] | None = None
) -> bytes:
    """An independent encoder for STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) bodies."""
    previous, out = seed, b""
    for chunk in [*chunks, b""]:
        sts = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                DOC_DATE,
                DOC_SCOPE,
                previous,
                EMPTY_SHA256,
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        previous = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + (b"\r\n" if chunk else b"")
    if trailer is not None:
        text = "".join(f"{k}:{v}\n" for k, v in trailer)
        sts = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                DOC_DATE,
                DOC_SCOPE,
                previous,
                hashlib.sha256(text.encode()).hexdigest(),
            ]
        )
        out += "".join(f"{k}:{v}\r\n" for k, v in trailer).encode()
        out += (
            f"x-amz-trailer-signature:{hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()}\r\n".encode()
        )
    return out + b"\r\n"


SEED = "f" * 64


def signed_auth(content_sha256: str) -> AuthResult:
    return AuthResult(
        user=DOC_USER,
        version=4,
        presigned=False,
        content_sha256=content_sha256,
        signing_key=signing_key(DOC_USER.secret_key, "20130524", "us-east-1"),
        scope=DOC_SCOPE,
        amz_date=DOC_DATE,
        seed_signature=SEED,
    )


async def test_hand_signed_chunks_with_trailer() -> None:
    data = os.urandom(200_000)
    chunks = [data[:100_000], data[100_000:190_000], data[190_000:]]
    auth = signed_auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
    crc = oracle("CRC32", data)
    raw = sign_chunks(auth.signing_key or b"", SEED, chunks, [("x-amz-checksum-crc32", crc)])
    headers = hdrs(Transfer_Encoding="chunked", x_amz_decoded_content_length=str(len(data)), x_amz_trailer="x-amz-checksum-crc32")
    body = make_body(stream_of(raw), headers, auth)
    assert body.declared_checksum == "CRC32"
    got, _, stored = await consume(body)
    assert got == data and stored == {"CRC32": crc}
    # A correctly signed trailer whose checksum is wrong is a BadDigest, found in finish.
    wrong = oracle("CRC32", b"nope")
    raw = sign_chunks(auth.signing_key or b"", SEED, chunks, [("x-amz-checksum-crc32", wrong)])
    with pytest.raises(errors.BadDigest) as info:
        await consume(make_body(stream_of(raw), headers, auth))
    assert info.value.message == "The CRC32 you specified did not match the calculated checksum."


async def test_signed_chunks_length_and_framing_errors() -> None:
    data = os.urandom(30_000)
    auth = signed_auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    key = auth.signing_key or b""
    raw = sign_chunks(key, SEED, [data[:20_000], data[20_000:]])
    for declared in ("29999", "30001"):
        with pytest.raises(errors.IncompleteBody):
            await consume(make_body(stream_of(raw), hdrs(Transfer_Encoding="chunked", x_amz_decoded_content_length=declared), auth))
    for cut in (100, 20_050, len(raw) - 90):
        with pytest.raises(errors.IncompleteBody):
            await consume(make_body(stream_of(raw[:cut]), hdrs(Transfer_Encoding="chunked", x_amz_decoded_content_length="30000"), auth))
    small_first = sign_chunks(key, SEED, [data[:100], data[100:]])
    with pytest.raises(errors.InvalidChunkSizeError):
        await consume(make_body(stream_of(small_first), hdrs(Transfer_Encoding="chunked", x_amz_decoded_content_length="30000"), auth))
    garbage = b"zz;chunk-signature=" + b"0" * 64 + b"\r\n"
    with pytest.raises(errors.IncompleteBody):
        await consume(make_body(stream_of(garbage), hdrs(Transfer_Encoding="chunked", x_amz_decoded_content_length="1"), auth))
    unsigned_header = raw.replace(raw[: raw.index(b"\r\n")], b"4e20", 1)
    with pytest.raises(errors.SignatureDoesNotMatch):
        await consume(make_body(stream_of(unsigned_header), hdrs(Transfer_Encoding="chunked", x_amz_decoded_content_length="30000"), auth))


# -- aws-chunked, unsigned with trailer: botocore's encoder ------------------------------------


def botocore_chunked(data: bytes, algorithm: str = "CRC32", chunk_size: int = 65536) -> bytes:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data),
        checksum_cls=ORACLES[algorithm],
        checksum_name=f"x-amz-checksum-{algorithm.lower()}",
        chunk_size=chunk_size,
    )
    return bytes(wrapper.read())


def trailer_headers(
    length: int, algorithm: str = "CRC32", content_sha256: str | None = None
) -> CIMultiDictProxy[str]:
    headers = CIMultiDict(
        {
            "Content-Encoding": "aws-chunked",
            "Transfer-Encoding": "chunked",
            "x-amz-decoded-content-length": str(length),
            "x-amz-trailer": f"x-amz-checksum-{algorithm.lower()}",
        }
    )
    if content_sha256:
        headers["x-amz-content-sha256"] = content_sha256
    return CIMultiDictProxy(headers)


@pytest.mark.parametrize("algorithm", sorted(ORACLES))
async def test_botocore_unsigned_trailer(algorithm: str) -> None:
    data = os.urandom(250_000)
    raw = botocore_chunked(data, algorithm)
    body = make_body(
        stream_of(raw), trailer_headers(len(data), algorithm, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), None
    )
    got, _, stored = await consume(body)
    assert got == data
    assert stored == {algorithm: oracle(algorithm, data)}
    assert body.trailers == {f"x-amz-checksum-{algorithm.lower()}": oracle(algorithm, data)}


async def test_sigv2_client_sends_aws_chunked_without_content_sha256() -> None:
    """botocore with signature_version='s3' over https: aws-chunked + trailer, no x-amz-content-sha256."""
    data = os.urandom(1000)
    auth = AuthResult(user=DOC_USER, version=2, presigned=False, content_sha256="UNSIGNED-PAYLOAD")
    got, _, stored = await consume(
        make_body(stream_of(botocore_chunked(data)), trailer_headers(len(data)), auth)
    )
    assert got == data and stored == {"CRC32": oracle("CRC32", data)}


async def test_unsigned_trailer_failures() -> None:
    data = os.urandom(100_000)
    raw = botocore_chunked(data)
    headers = trailer_headers(len(data), content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    good = oracle("CRC32", data).encode()
    bad = raw.replace(good, oracle("CRC32", b"x").encode())
    with pytest.raises(errors.BadDigest):
        await consume(make_body(stream_of(bad), headers, None))
    without_trailer = raw[: raw.rindex(b"0\r\n")] + b"0\r\n\r\n"
    with pytest.raises(errors.MalformedTrailerError):
        await consume(make_body(stream_of(without_trailer), headers, None))
    malformed_value = raw.replace(good, b"!!!")
    with pytest.raises(errors.InvalidRequest):
        await consume(make_body(stream_of(malformed_value), headers, None))
    with pytest.raises(errors.IncompleteBody):
        await consume(make_body(stream_of(raw[:50_000]), headers, None))
    with pytest.raises(errors.IncompleteBody):
        await consume(
            make_body(
                stream_of(raw),
                trailer_headers(len(data) + 1, content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
                None,
            )
        )
    missing_crlf = raw.replace(b"\r\n", b"\r\nX", 2)
    with pytest.raises(errors.IncompleteBody):
        await consume(make_body(stream_of(missing_crlf), headers, None))


async def test_content_md5_checked_on_chunked_bodies() -> None:
    data = os.urandom(5000)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    headers = CIMultiDict(trailer_headers(len(data), content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER"))
    headers["Content-MD5"] = md5
    assert (await consume(make_body(stream_of(botocore_chunked(data)), CIMultiDictProxy(headers), None)))[
        0
    ] == data
    headers["Content-MD5"] = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    with pytest.raises(errors.BadDigest):
        await consume(make_body(stream_of(botocore_chunked(data)), CIMultiDictProxy(headers), None))


# -- the end of an aws-chunked body ------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [b"0\r\n\r\n", b"\r\n", b"x", b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"],
    ids=["second-final-chunk", "blank-line", "one-byte", "second-trailer"],
)
async def test_bytes_after_the_final_chunk_and_trailer_are_refused(tail: bytes) -> None:
    """S3's MalformedTrailerError ("trailing data"): what follows the empty line that ends the
    body is neither dropped nor stored (aws-sdk-net#4012: a second final chunk)."""
    data = os.urandom(1000)
    headers = trailer_headers(len(data), content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    with pytest.raises(errors.MalformedTrailerError):
        await consume(make_body(stream_of(botocore_chunked(data) + tail), headers, None))
    # Without a trailer, and with signed chunks: the same.
    plain = CIMultiDictProxy(
        CIMultiDict(
            {
                "Content-Encoding": "aws-chunked",
                "Transfer-Encoding": "chunked",
                "x-amz-decoded-content-length": str(len(data)),
            }
        )
    )
    unsigned = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    with pytest.raises(errors.MalformedTrailerError):
        await consume(make_body(stream_of(unsigned + tail), plain, None))
    assert (await consume(make_body(stream_of(unsigned), plain, None)))[0] == data
    auth = signed_auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    signed = sign_chunks(auth.signing_key or b"", SEED, [data])
    with pytest.raises(errors.MalformedTrailerError):
        await consume(make_body(stream_of(signed + tail), hdrs(Transfer_Encoding="chunked", x_amz_decoded_content_length="1000"), auth))
    assert (await consume(make_body(stream_of(signed), hdrs(Transfer_Encoding="chunked", x_amz_decoded_content_length="1000"), auth)))[0] == data


async def test_trailers_that_do_not_match_x_amz_trailer_are_malformed() -> None:
    """S3 answers MalformedTrailerError for a trailer line it cannot read, a checksum trailer
    x-amz-trailer did not name, and a named one that never came."""
    data = b"abc"
    crc = oracle("CRC32", data)
    body = b"3\r\nabc\r\n0\r\n"
    headers = trailer_headers(len(data), content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    for trailer in (b"x-amz-checksum-crc32 " + crc.encode() + b"\r\n\r\n", b"x-amz-checksum-sha1:" + crc.encode() + b"\r\n\r\n", b"\r\n"):
        with pytest.raises(errors.MalformedTrailerError):
            await consume(make_body(stream_of(body + trailer), headers, None))
    whole = body + b"x-amz-checksum-crc32:" + crc.encode() + b"\r\n\r\n"
    undeclared = CIMultiDictProxy(
        CIMultiDict(
            {"Content-Encoding": "aws-chunked", "Content-Length": str(len(whole)), "x-amz-decoded-content-length": "3"}
        )
    )
    with pytest.raises(errors.MalformedTrailerError):
        await consume(make_body(stream_of(whole), undeclared, None))
    got = await consume(make_body(stream_of(whole), headers, None))
    assert got[0] == data and got[2] == {"CRC32": crc}


# -- the grammar of aws-chunked lines ----------------------------------------------------------


def _signed_variants(raw: bytes) -> dict[str, bytes]:
    """A signed body with its first size line written otherwise."""
    line = raw[: raw.index(b"\r\n")]
    size, _, signature = line.partition(b";chunk-signature=")
    return {
        "stray-cr-after-signature": raw.replace(line + b"\r\n", line + b"\r\r\n", 1),
        "stray-cr-after-size": raw.replace(line, size + b"\r;chunk-signature=" + signature, 1),
        "extension-before-signature": raw.replace(line, size + b";x=1;chunk-signature=" + signature, 1),
        "extension-after-signature": raw.replace(line, line + b";x=1", 1),
        "blank-before-size": raw.replace(line, b" " + line, 1),
        "blank-around-semicolon": raw.replace(line, size + b" ; chunk-signature=" + signature, 1),
        "short-signature": raw.replace(line, line[:-1], 1),
        "other-name": raw.replace(line, size + b";chunk-signatures=" + signature, 1),
    }


@pytest.mark.parametrize("variant", list(_signed_variants(b"1;chunk-signature=" + b"0" * 64 + b"\r\n")))
async def test_a_signed_size_line_is_size_and_signature_alone(variant: str) -> None:
    """sigv4-streaming.html: hex(size) ";chunk-signature=" signature CRLF, nothing more. S3
    answers any other framing IncompleteBody; a stray CR or an extension was read past."""
    data = os.urandom(20_000)
    auth = signed_auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    raw = sign_chunks(auth.signing_key or b"", SEED, [data[:10_000], data[10_000:]])
    headers = hdrs(Transfer_Encoding="chunked", x_amz_decoded_content_length=str(len(data)))
    assert (await consume(make_body(stream_of(raw), headers, auth)))[0] == data
    with pytest.raises(errors.IncompleteBody):
        await consume(make_body(stream_of(_signed_variants(raw)[variant]), headers, auth))


# What goes before and after the size on an unsigned chunk's line.
UNSIGNED_VARIANTS = {
    "stray-cr": (b"", b"\r"),
    "extension": (b"", b";x=1"),
    "chunk-signature": (b"", b";chunk-signature=" + b"0" * 64),
    "trailing-blank": (b"", b" "),
    "leading-blank": (b" ", b""),
}


@pytest.mark.parametrize("variant", list(UNSIGNED_VARIANTS))
async def test_an_unsigned_size_line_is_the_size_alone(variant: str) -> None:
    """sigv4-streaming-trailers.html: an unsigned chunk's line is hex(size) CRLF (versitygw reads
    the size up to the CR and answers anything that is not hex IncompleteBody, as S3 does)."""
    data = os.urandom(100_000)
    raw = botocore_chunked(data)
    line = raw[: raw.index(b"\r\n")]
    before, after = UNSIGNED_VARIANTS[variant]
    changed = before + line + after
    headers = trailer_headers(len(data), content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    with pytest.raises(errors.IncompleteBody):
        await consume(make_body(stream_of(raw.replace(line + b"\r\n", changed + b"\r\n", 1)), headers, None))


@pytest.mark.parametrize(
    "trailer",
    [
        b"x-amz-checksum-crc32:{crc}\r\r\n",  # a stray CR
        b"x-amz-checksum-crc32:{crc}\r\nx-amz-meta-a:b\r\n",  # a trailer S3 does not define
        b"x-amz-checksum-crc32:{crc}\r\nx-amz-checksum-crc32:{crc}\r\n",  # given twice
        b"x-amz-checksum-crc32 :{crc}\r\n",  # a blank in the name
        b"x-amz-checksum-crc32:{crc}\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n",  # unsigned body
        b"x-amz-checksum-crc32:\x01{crc}\r\n",  # a control character
    ],
    ids=["stray-cr", "undefined-trailer", "twice", "blank-in-name", "signature-of-unsigned", "control-character"],
)
async def test_trailer_lines_that_are_not_the_announced_checksum_are_malformed(trailer: bytes) -> None:
    data = b"abc"
    crc = oracle("CRC32", data).encode()
    headers = trailer_headers(len(data), content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    body = b"3\r\nabc\r\n0\r\n" + trailer.replace(b"{crc}", crc) + b"\r\n"
    with pytest.raises(errors.MalformedTrailerError):
        await consume(make_body(stream_of(body), headers, None))
    # Blanks around the value, as an HTTP field allows them, are read past.
    spaced = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32: " + crc + b" \r\n\r\n"
    assert (await consume(make_body(stream_of(spaced), headers, None)))[2] == {"CRC32": crc.decode()}
