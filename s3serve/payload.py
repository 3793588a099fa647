"""Request bodies on their way to storage: plain, SHA-256-checked, and aws-chunked.

``make_body`` checks every body-related header before a byte is read and returns a ``RequestBody``
(the ``storage.base.Body`` protocol). Iterating it yields the decoded payload; aws-chunked framing
is removed and chunk/trailer signatures are verified as the bytes stream. Storage hashes what it
gets (MD5 always, plus ``digests_wanted``) and calls ``finish(digests)``, which compares the
client's Content-MD5, x-amz-content-sha256 and x-amz-checksum-* against those digests; the object
is committed only when that returns. Nothing here imports aiohttp: any object with StreamReader's
``read``/``readexactly``/``readline``/``readany`` works, which is what the unit tests feed it; an
aiohttp StreamReader's ``readchunk`` is used when the stream has one (see ``_piece_reader``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Protocol

from s3serve import errors
from s3serve.checksums import ALGORITHM_DIGEST, DEFAULT_CHECKSUM, b64, valid_checksum
from s3serve.sigv4 import EMPTY_SHA256, AuthResult, joined_header, sign

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_ECDSA = ("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER")
_CONTENT_SHA256_HELP = (
    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER "
    "or a valid sha256 value."
)
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
# A chunk's size line, the whole of it (sigv4-streaming.html, sigv4-streaming-trailers.html): its
# size in hex, then for a signed chunk ";chunk-signature=" and 64 hex digits. Nothing else: no
# other extension, no blank, no stray CR (S3 answers IncompleteBody; versitygw#1666). Every
# client (botocore, the CRT, the Go and JS SDKs, minio's) writes exactly this.
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNED_CHUNK = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=([0-9a-fA-F]{64})")
_TRAILER_SIGNATURE = "x-amz-trailer-signature"

# Pieces of at least PASS_BYTES go to storage as the network delivered them (asyncio reads up to
# 256 KiB per wakeup): joining them would copy every byte once more. Smaller ones (a slow sender,
# small aws-chunked chunks) are joined up to COALESCE_BYTES, so storage makes one hash call per
# quarter MiB instead of one per few KiB.
PASS_BYTES = 64 * 1024
COALESCE_BYTES = 256 * 1024
# The most asked of one read, and how far the transport may read ahead of us (aiohttp buffers up to
# twice this before it stops reading the socket), per connection.
_READ_BYTES = 1 << 20
# S3: every signed chunk but the last carries at least 8 KiB.
MIN_SIGNED_CHUNK = 8192
_MAX_LINE = 4096
_CHECKSUM_PREFIX = "x-amz-checksum-"
_ENDED_EARLY = "The request body ended before the aws-chunked framing said it would."
# S3 answers any broken aws-chunked framing with IncompleteBody and these words; ours add which rule
# the body broke.
_TERMINATED = "The request body terminated unexpectedly"


class ByteStream(Protocol):
    """What the body is read from; aiohttp's StreamReader satisfies it."""

    async def read(self, n: int = -1) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    async def readline(self) -> bytes: ...

    async def readany(self) -> bytes: ...


# aiohttp's StreamReader.readchunk: the next buffered piece as received, not copied, and whether it
# ends an HTTP chunk; (b"", False) at EOF.
ReadChunk = Callable[[], Awaitable[tuple[bytes, bool]]]


def _incomplete(message: str | None = None) -> errors.S3Error:
    return errors.IncompleteBody(message)


def _malformed(rule: str) -> errors.S3Error:
    return errors.IncompleteBody(f"{_TERMINATED}: {rule}")


def closing(error: errors.S3Error) -> errors.S3Error:
    """``error``, answered with the connection closed after it (app.error_response): for a body
    whose end the server cannot find (no length given, a Transfer-Encoding S3 does not take, a
    framing the parser gave up on), after which no byte can be read as the next request."""
    error.headers["Connection"] = "close"
    return error


# A longer run of digits is only ever over a limit; int() refuses more than 4300 of them.
_MAX_DIGITS = 30


def ascii_int(text: str) -> int | None:
    """A non-negative decimal integer written in ASCII digits (surrounding blanks allowed), else None.

    Request text must not reach int() unchecked: str.isdigit takes '²', which int() then refuses
    (a 500), int() takes other scripts' digits ('٣' is 3) and '1_0', which S3 does not read as
    numbers, and it refuses over 4300 digits. A number too long for int() reads as 10**30, above
    every limit it is compared with."""
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def int_header(name: str, value: str) -> int:
    """The header ``name``'s value as ``ascii_int`` reads it; InvalidArgument naming it otherwise."""
    number = ascii_int(value)
    if number is None:
        raise errors.InvalidArgument(f"Invalid {name} header value", ArgumentName=name, ArgumentValue=value)
    return number


def decode_content_md5(value: str) -> bytes:
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidDigest(**{"Content-MD5": value}) from None
    if len(digest) != 16:
        raise errors.InvalidDigest(**{"Content-MD5": value})
    return digest


def _check_checksum_value(algorithm: str, value: str, where: str) -> str:
    """The canonical base64 of a digest of the algorithm's length, else S3's InvalidRequest (a
    value that decodes only leniently, with non-zero padding bits, is invalid, not a mismatch)."""
    if not valid_checksum(algorithm, value.strip()):
        raise errors.InvalidRequest(f"Value for {where} is invalid.")
    return value.strip()


def algorithm_from_name(name: str) -> str | None:
    """'x-amz-checksum-crc32' -> 'CRC32'; None for an unknown algorithm."""
    algorithm = name[len(_CHECKSUM_PREFIX) :].upper()
    return algorithm if algorithm in ALGORITHM_DIGEST else None


def declared_checksums(items: Iterable[tuple[str, str]], kind: str) -> list[tuple[str, str]]:
    """(algorithm, base64 value) of every x-amz-checksum-<algorithm> among request headers or
    form fields (``kind`` names them in errors); InvalidRequest for an unknown algorithm or a
    malformed value. x-amz-checksum-type and -algorithm say how, not what, and are skipped."""
    found: list[tuple[str, str]] = []
    for name, value in items:
        lower = name.lower()
        if not lower.startswith(_CHECKSUM_PREFIX) or lower in ("x-amz-checksum-type", "x-amz-checksum-algorithm"):
            continue
        algorithm = algorithm_from_name(lower)
        if algorithm is None:
            raise errors.InvalidRequest(
                "Checksum algorithm provided is unsupported. Please try again with any of the valid types: "
                "[CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
            )
        found.append((algorithm, _check_checksum_value(algorithm, value, f"{lower} {kind}")))
    return found


_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE"})


def check_payload_claim(method: str, headers: Mapping[str, str], claim: str) -> None:
    """S3 reads a SigV4 request's x-amz-content-sha256 whether or not it has a body: a value it
    does not know is InvalidArgument, and the hash of a body that a GET, HEAD or DELETE without
    one does not have is XAmzContentSHA256Mismatch (make_body checks the requests with a body)."""
    if claim in (UNSIGNED_PAYLOAD, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER):
        return
    if claim.upper() in _ECDSA:
        return  # make_body's NotImplemented, for the requests that have a body
    if not _HEX64.match(claim):
        raise errors.InvalidArgument(
            _CONTENT_SHA256_HELP, ArgumentName="x-amz-content-sha256", ArgumentValue=claim
        )
    bodyless = headers.get("Content-Length", "0").strip() == "0" and "Transfer-Encoding" not in headers
    if bodyless and method.upper() in _BODYLESS_METHODS and claim.lower() != EMPTY_SHA256:
        raise errors.XAmzContentSHA256Mismatch(
            ClientComputedContentSHA256=claim, S3ComputedContentSHA256=EMPTY_SHA256
        )


def stored_content_encoding(value: str | None) -> str | None:
    """Content-Encoding to store with the object: 'aws-chunked' describes the transfer, not the
    object, so S3 drops it (and the header entirely when nothing else is left)."""
    if value is None:
        return None
    kept = [v.strip() for v in value.split(",") if v.strip() and v.strip().lower() != "aws-chunked"]
    return ",".join(kept) or None


def make_body(stream: ByteStream, headers: Mapping[str, str], auth: AuthResult | None) -> RequestBody:
    """Validate the body-related headers up front (before any byte is read) and wrap the stream.

    Raises InvalidDigest (malformed Content-MD5), MissingContentLength, InvalidArgument (unknown
    x-amz-content-sha256), InvalidRequest (checksum header problems), NotImplemented (SigV4a, or
    a Transfer-Encoding body that is not aws-chunked)."""
    content_sha256 = auth.content_sha256 if auth is not None else joined_header(headers, "x-amz-content-sha256")
    if content_sha256 is not None and content_sha256.upper() in _ECDSA:
        raise errors.NotImplementedOp("SigV4a (ECDSA) signed payloads are not implemented by s3serve.")
    encodings = [v.strip().lower() for v in (joined_header(headers, "Content-Encoding") or "").split(",")]
    streaming = content_sha256 in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
    sha256_hex: str | None = None
    if content_sha256 is not None and not streaming and content_sha256 != UNSIGNED_PAYLOAD:
        if not _HEX64.match(content_sha256):
            raise errors.InvalidArgument(
                _CONTENT_SHA256_HELP, ArgumentName="x-amz-content-sha256", ArgumentValue=content_sha256
            )
        sha256_hex = content_sha256.lower()
    # A client that signs with SigV2 (or not at all) can still send an aws-chunked body with an
    # unsigned checksum trailer (botocore does over https): decode it as unsigned chunks.
    chunked = streaming or ("aws-chunked" in encodings and sha256_hex is None)
    signed_chunks = content_sha256 in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
    if signed_chunks and (auth is None or auth.signing_key is None or auth.seed_signature is None):
        raise errors.InvalidRequest(f"x-amz-content-sha256 {content_sha256} requires a SigV4-signed request.")

    content_md5_header = joined_header(headers, "Content-MD5")
    content_md5 = decode_content_md5(content_md5_header) if content_md5_header is not None else None

    content_length_header = headers.get("Content-Length")
    content_length = (
        int_header("Content-Length", content_length_header) if content_length_header is not None else None
    )
    if content_length is None and "Transfer-Encoding" not in headers:
        # Without either, HTTP ends the request with its headers: a body sent anyway would be read
        # as the next request.
        raise closing(errors.MissingContentLength())
    if chunked:
        decoded_header = joined_header(headers, "x-amz-decoded-content-length")
        if decoded_header is None:
            raise errors.MissingContentLength()
        decoded_length = int_header("x-amz-decoded-content-length", decoded_header)
    elif content_length is None:
        # S3 takes Transfer-Encoding only around an aws-chunked body, whose
        # x-amz-decoded-content-length gives the size up front; a plain body sent chunked gets
        # this 501 naming the header (aws-sdk-js-v3#4979, knox#43).
        raise closing(
            errors.NotImplementedOp(
                "A header you provided implies functionality that is not implemented", Header="Transfer-Encoding"
            )
        )
    else:
        decoded_length = content_length

    # Additional checksums: at most one x-amz-checksum-<alg> header, or one named trailer.
    header_checksums = declared_checksums(headers.items(), "header")
    trailer_algorithm: str | None = None
    trailer_header = joined_header(headers, "x-amz-trailer")
    if trailer_header is not None and trailer_header.strip():
        names = [n.strip().lower() for n in trailer_header.split(",") if n.strip()]
        algorithms = [algorithm_from_name(n) if n.startswith(_CHECKSUM_PREFIX) else None for n in names]
        if len(names) != 1 or algorithms[0] is None:
            raise errors.InvalidRequest("The value specified in the x-amz-trailer header is not supported")
        if not chunked:
            raise errors.InvalidRequest("x-amz-trailer requires an aws-chunked request body.")
        trailer_algorithm = algorithms[0]
    if len(header_checksums) + (trailer_algorithm is not None) > 1:
        raise errors.InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    sdk_algorithm_header = joined_header(headers, "x-amz-sdk-checksum-algorithm")
    sdk_algorithm: str | None = None
    if sdk_algorithm_header is not None:
        sdk_algorithm = sdk_algorithm_header.strip().upper()
        if sdk_algorithm not in ALGORITHM_DIGEST:
            raise errors.InvalidRequest(
                "Checksum algorithm provided is unsupported. Please try again with any of the valid types: "
                "[CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
            )
    given = header_checksums[0][0] if header_checksums else trailer_algorithm
    if sdk_algorithm is not None and given is not None and given != sdk_algorithm:
        raise errors.InvalidRequest("Value for x-amz-sdk-checksum-algorithm header is invalid.")

    checksum_algorithm = given or sdk_algorithm or DEFAULT_CHECKSUM
    return RequestBody(
        stream,
        decoded_length=decoded_length,
        chunked=chunked,
        signed_chunks=signed_chunks,
        signed_trailer=content_sha256 == STREAMING_SIGNED_TRAILER,
        auth=auth,
        content_md5=content_md5,
        sha256_hex=sha256_hex,
        checksum_algorithm=checksum_algorithm,
        checksum_value=header_checksums[0][1] if header_checksums else None,
        trailer_algorithm=trailer_algorithm,
    )


class RequestBody:
    """The decoded body. Iterate once; then ``finish(digests)`` (see storage.base.Body)."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        decoded_length: int,
        chunked: bool,
        signed_chunks: bool,
        signed_trailer: bool,
        auth: AuthResult | None,
        content_md5: bytes | None,
        sha256_hex: str | None,
        checksum_algorithm: str,
        checksum_value: str | None,
        trailer_algorithm: str | None,
    ) -> None:
        self._stream = stream
        self.decoded_length: int | None = decoded_length
        self.chunked = chunked
        self._signed_chunks = signed_chunks
        self._signed_trailer = signed_trailer
        self._auth = auth
        self._content_md5 = content_md5
        self._sha256_hex = sha256_hex
        self.checksum_algorithm = checksum_algorithm
        self.declared_checksum = checksum_algorithm if checksum_value is not None or trailer_algorithm else None
        self._checksum_value = checksum_value
        self._trailer_algorithm = trailer_algorithm
        wanted = {ALGORITHM_DIGEST[checksum_algorithm]}
        if sha256_hex is not None:
            wanted.add("sha256")
        self.digests_wanted: frozenset[str] = frozenset(wanted)
        self.trailers: dict[str, str] = {}
        self._iterated = False
        self._completed = False

    @property
    def has_digest(self) -> bool:
        """Whether the request gives a digest its body is checked against: a Content-MD5, or an
        x-amz-checksum-<algorithm> value in a header or a trailer (an algorithm or a type named
        alone gives none)."""
        return self._content_md5 is not None or self.declared_checksum is not None

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterated:
            raise RuntimeError("a request body can be iterated only once")
        self._iterated = True
        return self._coalesce(self._chunks() if self.chunked else self._plain())

    # -- reading ------------------------------------------------------------------------------

    async def _read(self, n: int) -> bytes:
        try:
            return await self._stream.read(n)
        except errors.S3Error:
            raise
        except Exception as exc:
            # A truncated upload, reported by the transport with its own exception types (aiohttp's
            # PayloadError family), which this module cannot name without importing aiohttp.
            raise _incomplete() from exc

    def _piece_reader(self) -> Callable[[int], Awaitable[bytes]]:
        """``read(n)``-like: the next piece of at most n bytes (b"" at EOF), without copying it
        where the stream allows.

        aiohttp's ``read(n)`` joins the buffered pieces into one new bytes object (a copy of every
        byte); ``readchunk`` hands over each piece as it was received. Streams without it (asyncio's
        StreamReader, the unit tests' sources) are read with ``read(n)``."""
        readchunk: ReadChunk | None = getattr(self._stream, "readchunk", None)
        if readchunk is None:
            return lambda n: self._read(min(n, _READ_BYTES))
        widen = getattr(self._stream, "set_read_chunk_size", None)
        if widen is not None:
            # readchunk, unlike read(n), leaves aiohttp's read-ahead at 64 KiB, which pauses and
            # resumes the socket (two epoll_ctl calls) for every 128 KiB.
            widen(_READ_BYTES)

        async def piece(n: int) -> bytes:
            while True:
                try:
                    data, end_of_http_chunk = await readchunk()
                except errors.S3Error:
                    raise
                except Exception as exc:
                    raise _incomplete() from exc
                if data or not end_of_http_chunk:  # (b"", True) only marks an HTTP chunk's end
                    # A piece never runs past the declared length (aiohttp stops the body there);
                    # the slice keeps that true for any stream.
                    return data if len(data) <= n else data[:n]

        return piece

    async def _readline(self) -> bytes | None:
        """One CRLF-terminated framing line without its CRLF; None at EOF."""
        try:
            line = await self._stream.readline()
        except ValueError as exc:  # StreamReader: "Line is too long"
            raise _malformed("an aws-chunked line is too long.") from exc
        except Exception as exc:
            if isinstance(exc, errors.S3Error):
                raise
            raise _incomplete() from exc
        if not line:
            return None
        if len(line) > _MAX_LINE:
            raise _malformed("an aws-chunked line is too long.")
        if not line.endswith(b"\r\n"):
            if line.endswith(b"\n"):
                raise _malformed("aws-chunked lines must end with CRLF.")
            raise _incomplete(_ENDED_EARLY)
        return line[:-2]

    async def _plain(self) -> AsyncIterator[bytes]:
        assert self.decoded_length is not None
        remaining = self.decoded_length
        read = self._piece_reader()
        while remaining > 0:
            data = await read(remaining)
            if not data:
                raise _incomplete()
            remaining -= len(data)
            yield data
        self._completed = True

    async def _chunks(self) -> AsyncIterator[bytes]:
        auth = self._auth
        previous = auth.seed_signature if auth is not None and self._signed_chunks else None
        expected = self.decoded_length
        assert expected is not None
        decoded = 0
        last_size: int | None = None
        while True:
            line = await self._readline()
            if line is None:
                raise _incomplete(_ENDED_EARLY)
            size, signature = self._parse_chunk_header(line)
            if self._signed_chunks and last_size is not None and last_size < MIN_SIGNED_CHUNK and size > 0:
                raise errors.InvalidChunkSizeError(Chunk=str(last_size))
            if decoded + size > expected:
                raise _incomplete("The aws-chunked body holds more than x-amz-decoded-content-length bytes.")
            hasher = hashlib.sha256() if self._signed_chunks else None
            remaining = size
            while remaining > 0:
                data = await self._read(min(remaining, _READ_BYTES))
                if not data:
                    raise _incomplete(_ENDED_EARLY)
                remaining -= len(data)
                if hasher is not None:
                    hasher.update(data)
                yield data
            decoded += size
            if hasher is not None:
                assert previous is not None and signature is not None
                previous = self._verify_chunk(previous, signature, hasher.hexdigest())
            if size == 0:
                break
            after = await self._readline()
            if after is None:
                raise _incomplete(_ENDED_EARLY)
            if after != b"":
                raise _malformed("aws-chunked chunk data must be followed by CRLF.")
            last_size = size
        await self._read_trailer(previous)
        if decoded != expected:
            raise _incomplete(
                f"x-amz-decoded-content-length is {expected} but the aws-chunked body held {decoded} bytes."
            )
        # The empty line after the trailer ends the body; whatever follows it within the request's
        # length (a second final chunk, a stray line) is data S3 refuses rather than drops.
        if await self._read(1):
            raise errors.MalformedTrailerError()
        self._completed = True

    def _parse_chunk_header(self, line: bytes) -> tuple[int, str | None]:
        if self._signed_chunks:
            signed = _SIGNED_CHUNK.fullmatch(line)
            if signed is not None:
                return int(signed.group(1), 16), signed.group(2).decode("ascii")
            if _CHUNK_SIZE.fullmatch(line):
                raise errors.SignatureDoesNotMatch("The aws-chunked body is missing a chunk-signature.")
            raise _malformed("a signed chunk's size line must be its size in hex and ;chunk-signature=<64 hex digits>.")
        if not _CHUNK_SIZE.fullmatch(line):
            raise _malformed("an unsigned chunk's size line must be its size in hex, and nothing else.")
        return int(line, 16), None

    def _verify_chunk(self, previous: str, provided: str, data_sha256: str) -> str:
        auth = self._auth
        assert auth is not None and auth.signing_key is not None
        sts = f"AWS4-HMAC-SHA256-PAYLOAD\n{auth.amz_date}\n{auth.scope}\n{previous}\n{EMPTY_SHA256}\n{data_sha256}"
        return self._check_signature(auth.signing_key, sts, provided)

    @staticmethod
    def _check_signature(key: bytes, sts: str, provided: str) -> str:
        expected = sign(key, sts)
        if not hmac.compare_digest(expected.encode(), provided.lower().encode("ascii", "replace")):
            raise errors.SignatureDoesNotMatch(StringToSign=sts, SignatureProvided=provided)
        return expected

    async def _read_trailer(self, previous: str | None) -> None:
        """Trailer lines after the zero-size chunk, up to the empty line that ends the body."""
        lines: list[tuple[str, str]] = []
        trailer_signature: str | None = None
        while True:
            line = await self._readline()
            if not line:
                # An empty line ends the body. EOF right after the zero-size chunk is tolerated:
                # the payload is complete and verified by then, and a due trailer is checked below.
                break
            name, value = self._trailer_line(line)
            if name == _TRAILER_SIGNATURE:
                if not self._signed_trailer or trailer_signature is not None:
                    raise errors.MalformedTrailerError()
                trailer_signature = value
            elif any(name == seen for seen, _ in lines):
                raise errors.MalformedTrailerError()  # one checksum, given twice
            else:
                lines.append((name, value))
        for name, value in lines:
            algorithm = algorithm_from_name(name) if name.startswith(_CHECKSUM_PREFIX) else None
            if algorithm is None or algorithm != self._trailer_algorithm:
                # A trailer S3 does not define, or a checksum x-amz-trailer did not name.
                raise errors.MalformedTrailerError()
            self._checksum_value = _check_checksum_value(algorithm, value, f"{name} trailer")
            self.trailers[name] = value
        if self._trailer_algorithm is not None and self._checksum_value is None:
            raise errors.MalformedTrailerError()  # x-amz-trailer named one; the body ended without it
        if self._signed_trailer:
            auth = self._auth
            assert auth is not None and auth.signing_key is not None and previous is not None
            if trailer_signature is None:
                raise errors.SignatureDoesNotMatch("The aws-chunked body is missing x-amz-trailer-signature.")
            canonical = "".join(f"{name}:{value}\n" for name, value in lines)
            digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
            sts = f"AWS4-HMAC-SHA256-TRAILER\n{auth.amz_date}\n{auth.scope}\n{previous}\n{digest}"
            self._check_signature(auth.signing_key, sts, trailer_signature)

    @staticmethod
    def _trailer_line(line: bytes) -> tuple[str, str]:
        """A trailer line's lower-cased name and its value: "name:value", blanks allowed around
        the value as in an HTTP field; MalformedTrailerError for anything else (no colon, a blank
        in the name, a CR or other control character)."""
        name, sep, value = line.partition(b":")
        value = value.strip(b" \t")
        if not sep or not name or not name.isascii() or any(c <= 0x20 or c == 0x7F for c in name + value):
            raise errors.MalformedTrailerError()
        return name.decode("ascii").lower(), value.decode("utf-8", "replace")

    @staticmethod
    async def _coalesce(source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Join small reads into pieces of about COALESCE_BYTES; pass large reads through uncopied."""
        pieces: list[bytes] = []
        size = 0
        async for data in source:
            if not data:
                continue
            if len(data) >= PASS_BYTES:
                if pieces:
                    yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                    pieces, size = [], 0
                yield data
                continue
            pieces.append(data)
            size += len(data)
            if size >= COALESCE_BYTES:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces, size = [], 0
        if pieces:
            yield pieces[0] if len(pieces) == 1 else b"".join(pieces)

    # -- verification -------------------------------------------------------------------------

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]:
        """Verify what the client claimed against what storage computed; return the checksum to
        store ({"CRC32": "<base64>"}). Raises XAmzContentSHA256Mismatch / BadDigest."""
        if not self._completed:
            raise errors.IncompleteBody()
        if self._sha256_hex is not None:
            computed_sha = digests["sha256"].hex()
            if computed_sha != self._sha256_hex:
                raise errors.XAmzContentSHA256Mismatch(
                    ClientComputedContentSHA256=self._sha256_hex, S3ComputedContentSHA256=computed_sha
                )
        if self._content_md5 is not None and digests["md5"] != self._content_md5:
            raise errors.BadDigest(
                ExpectedDigest=b64(self._content_md5), CalculatedDigest=b64(digests["md5"])
            )
        algorithm = self.checksum_algorithm
        computed = b64(digests[ALGORITHM_DIGEST[algorithm]])
        if self._checksum_value is not None and computed != self._checksum_value:
            raise errors.BadDigest(f"The {algorithm} you specified did not match the calculated checksum.")
        return {algorithm: computed}
