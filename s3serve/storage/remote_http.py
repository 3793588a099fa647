"""The HTTP side of RemoteBackend: one aiohttp session to an upstream S3, SigV4 header signing,
retries, the upstream's errors mapped onto s3serve's, and a streaming ObjectReader.

With remote.py, the only part of storage/ that imports aiohttp: it is the upstream's HTTP client
(the HTTP of s3serve's own clients still never reaches storage).

Errors: the upstream's <Code> becomes s3serve's error of that code, never with its extra elements
(a SignatureDoesNotMatch carries signature material of s3serve's own credentials). A refusal of
those credentials is the server's misconfiguration, not the client's fault: AccessDenied saying so,
and a warning in the log. Unreachable, timed out, a redirect or a 5xx: ServiceUnavailable, after a
retry or two where repeating the request is harmless.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from .. import errors, sigv4
from . import remote_xml as rx
from . import ssec
from .base import Body, ObjectInfo, ObjectReader
from .credentials import FixedKeys, Keys, Source
from .remote_wait import Attempt, Budget, chunks, tracing
from .spool import FileBody

log = logging.getLogger("s3serve")

READ_CHUNK = 512 * 1024
RETRY_DELAYS = (0.1, 0.4)
# How long the upstream may take to begin its answer (status line and headers), over all the
# attempts of a request: connecting and waiting count, sending the request's body does not (a big
# upload takes as long as it takes), nor does a wait for a free connection of the pool. Well
# inside a client's own read timeout (boto3's is 60 s), so a client of a hung upstream gets
# ServiceUnavailable, which SDKs retry, where the transfer timeout (a stall between two reads of a
# body), three times over, kept it waiting three minutes and timing out first. Module attributes,
# read at each request: tests shrink them.
ANSWER_TIMEOUT = 20.0
# The same for a small answer (HEAD): a copy is then served stale well before that.
QUICK_TIMEOUT = 10.0
# A body, an answer's or a request's on its way, that has not moved for this long has stalled.
TRANSFER_TIMEOUT = 60.0
MAX_ERROR_BODY = 64 * 1024
# The largest document (a listing, a configuration, a CopyObjectResult) read whole from the
# upstream: several times S3's largest (a page of 1000 versions or uploads with keys of 1024 bytes
# all escaped, under 20 MiB). A longer answer is not S3's, and buffering it all would take the
# server's memory with it (a proxy's endless download, a misrouted object).
MAX_DOCUMENT = 64 * 1024 * 1024
# An upstream's refusal of s3serve's credentials, signature or clock, rather than of the request.
AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "RequestTimeTooSkewed",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
    }
)
# aiohttp would add Content-Type: application/octet-stream to every body, which an upstream stores
# as the object's type; and Accept-Encoding, though answers are never decompressed here.
SKIP_HEADERS = ("Content-Type", "Accept-Encoding")

Query = Sequence[tuple[str, str | None]]  # None: a bare sub-resource name (?uploads)
Headers = CIMultiDictProxy[str]


@dataclass
class Stream:
    """An object or part body on its way upstream."""

    body: Body
    size: int
    content_md5: str | None
    checksums: dict[str, str]
    reusable: bool  # can be iterated again from the start, for a retry


def stream_of(body: Body) -> Stream:
    size = getattr(body, "size", None)
    if not isinstance(size, int):
        raise errors.InternalError("An upload to the upstream S3 needs a body of known size (a spooled FileBody).")
    return Stream(
        body, size, getattr(body, "content_md5", None), dict(getattr(body, "checksums", {})), isinstance(body, FileBody)
    )


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    # No total: a large GET streams for as long as it takes; a stalled one does not.
    return aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)


class _WebPage(Exception):
    """A failed answer that is a web page: a proxy's or a captive portal's, not S3's."""


async def _error_of(response: aiohttp.ClientResponse, method: str) -> tuple[str, str, dict[str, str]] | None:
    """The <Error> of a failed answer (a HEAD's has no body), and the response released;
    _WebPage for a page, whose status says nothing of S3 (a 404 is not a missing key)."""
    body = b""
    try:
        if method != "HEAD":
            body = await response.content.read(MAX_ERROR_BODY)
    except (TimeoutError, aiohttp.ClientError):
        pass
    finally:
        response.release()
    if rx.is_web_page(body):
        raise _WebPage(f"answered {response.status} with a web page")
    return rx.error_of(body)


class _TooLong(Exception):
    """An answer read whole that is longer than MAX_DOCUMENT."""


async def _document(response: aiohttp.ClientResponse) -> bytes:
    """The whole body of a small answer; _TooLong past MAX_DOCUMENT, found before reading it
    when its Content-Length says so, else once that much has come. (A HEAD's Content-Length is
    its object's: no body follows.)"""
    if response.method != "HEAD" and (response.content_length or 0) > MAX_DOCUMENT:
        raise _TooLong
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_DOCUMENT:
            raise _TooLong
        chunks.append(chunk)
    return b"".join(chunks)


class Upstream:
    """One upstream S3 endpoint: signs, sends, retries, and maps its errors."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        *,
        ssl_context: ssl.SSLContext | None = None,
        verify: bool = True,
        max_connections: int = 64,
        timeout: float | None = None,
        session_token: str | None = None,
        credentials: Source | None = None,
    ) -> None:
        """``credentials``: where the keys come from (an AWS profile, renewed); without it the
        fixed ``access_key``, ``secret_key`` and ``session_token``. ``timeout``: the transfer
        timeout (TRANSFER_TIMEOUT)."""
        url = URL(endpoint)
        if (
            url.scheme not in ("http", "https")
            or not url.host
            or url.path not in ("", "/")
            or url.query_string
            or url.fragment
            or url.user is not None
        ):
            raise ValueError(f"upstream endpoint must be scheme://host[:port], not {endpoint!r}")
        self.endpoint = f"{url.scheme}://{url.host_port_subcomponent}"
        self._host = url.host_port_subcomponent or ""
        self._credentials = credentials or FixedKeys(Keys(access_key, secret_key, session_token))
        self.region = region
        self._ssl_context = ssl_context
        self._verify = verify
        self._max_connections = max_connections
        self._timeout = TRANSFER_TIMEOUT if timeout is None else timeout
        self._session: aiohttp.ClientSession | None = None
        self._key: tuple[str, str, bytes] | None = None  # (secret, date, signing key) for self.region
        self._warned_auth = False
        self._warned_tls = False

    def __repr__(self) -> str:  # never the secret
        return f"Upstream({self.endpoint!r}, region={self.region!r})"

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._session is not None:
            return
        tls: ssl.SSLContext | bool = False
        if self.endpoint.startswith("https:"):
            # Never aiohttp's own default context: lean_import builds it without the CA bundle.
            tls = self._ssl_context or (ssl.create_default_context() if self._verify else False)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=tls),
            auto_decompress=False,
            timeout=_timeout(self._timeout),
            skip_auto_headers=SKIP_HEADERS,
            trace_configs=[tracing()],
        )

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- transport ----------------------------------------------------------------------------
    def _signing_key(self, secret: str, date: str) -> bytes:
        if self._key is None or self._key[:2] != (secret, date):
            self._key = (secret, date, sigv4.signing_key(secret, date, self.region))
        return self._key[2]

    @staticmethod
    def path(bucket: str, key: str = "") -> str:
        # Encoded once, per SigV4, and sent exactly so: the canonical URI is this very string.
        if not bucket:
            return "/"
        return "/" + quote(bucket, safe="") + ("/" + sigv4.uri_encode_path(key) if key else "")

    def _sign(
        self,
        keys: Keys,
        method: str,
        path: str,
        query: Query,
        headers: Mapping[str, str] | None,
        body: bytes | Stream | None,
    ) -> dict[str, str]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        signed = {name.lower(): value for name, value in (headers or {}).items()}
        signed["host"] = self._host
        signed["x-amz-date"] = amz_date
        if keys.token:
            signed["x-amz-security-token"] = keys.token  # signed, as AWS requires
        if body is None:
            payload_hash = sigv4.EMPTY_SHA256
        elif isinstance(body, bytes):
            payload_hash = hashlib.sha256(body).hexdigest()
            signed.setdefault("content-md5", base64.b64encode(hashlib.md5(body).digest()).decode())
        else:
            payload_hash = sigv4.UNSIGNED_PAYLOAD
            if body.content_md5:
                signed["content-md5"] = body.content_md5
        signed["x-amz-content-sha256"] = payload_hash
        pairs = [(name, value or "") for name, value in query]
        key = self._signing_key(keys.secret_key, amz_date[:8])
        auth = sigv4.authorization(keys.access_key, key, amz_date, self.region, (method, path, pairs), signed, payload_hash)
        sent = dict(signed, authorization=auth)
        if isinstance(body, Stream):
            # Declared, so aiohttp sends the stream with a length instead of chunked.
            sent["content-length"] = str(body.size)
        return sent

    async def send(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: Query = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | Stream | None = None,
        *,
        missing: type[errors.S3Error] = errors.NoSuchKey,
        idempotent: bool | None = None,
        quick: bool = False,
        long_work: bool = False,
    ) -> aiohttp.ClientResponse:
        """The upstream's 2xx response, which the caller reads and releases; the S3Error of any
        other answer. ``missing`` is the error of a 404 without a body (HEAD). The upstream has
        ANSWER_TIMEOUT to begin its answer, over all attempts; ``quick``: a small answer, which
        has QUICK_TIMEOUT. ``long_work``: CompleteMultipartUpload, CopyObject, UploadPartCopy,
        whose answer may come after minutes of work (S3 sends its 200 early, but not every S3
        does), while s3serve keeps its own client waiting with its own early 200
        (handlers.common.answer_in_time): the transfer timeout, for each attempt."""
        session = self._session
        if session is None:
            raise errors.InternalError("The upstream S3 client was used before start().")
        path = self.path(bucket, key)
        # The SSE-C keys of the request being served, for the operations that take them.
        customer = ssec.upstream_headers(method, key, [name for name, _ in query], headers or {})
        if customer:
            if not self.endpoint.startswith("https:"):
                # A customer's key never crosses the network in the clear: S3 itself refuses
                # SSE-C over http, but only after the key has been sent.
                raise errors.InvalidRequest(ssec.INSECURE)
            headers = {**(headers or {}), **customer}
        raw_query = "&".join(
            quote(name, safe="") if value is None else f"{quote(name, safe='')}={quote(value, safe='')}"
            for name, value in query
        )
        url = URL(self.endpoint + path + ("?" + raw_query if raw_query else ""), encoded=True)
        if idempotent is None:
            conditional = any(name.lower() in ("if-match", "if-none-match") for name in headers or {})
            resendable = not isinstance(body, Stream) or body.reusable
            # A conditional write repeated after a lost answer would fail its own condition.
            idempotent = method in ("GET", "HEAD", "DELETE") or (method == "PUT" and resendable and not conditional)
        timeout = _timeout(QUICK_TIMEOUT if quick else self._timeout)
        budget = Budget(QUICK_TIMEOUT if quick else None if long_work else ANSWER_TIMEOUT)
        for attempt in range(len(RETRY_DELAYS) + 1):
            last = attempt == len(RETRY_DELAYS)
            # Asked each time: temporary keys are renewed before they expire.
            sent = self._sign(await self._credentials.keys(), method, path, query, headers, body)
            try:
                async with Attempt(budget) as waiting:
                    data = chunks(body.body, waiting, self._timeout) if isinstance(body, Stream) else body
                    response = await session.request(
                        method, url, headers=sent, data=data, allow_redirects=False, timeout=timeout,
                        trace_request_ctx=waiting,
                    )  # fmt: skip
            except aiohttp.ClientConnectorCertificateError as exc:
                # Trying again cannot help, and "could not be reached" would send the operator
                # looking at the network instead of at --upstream-ca.
                raise self._untrusted(exc) from None
            except aiohttp.ClientConnectorError as exc:  # nothing was sent: always safe to retry
                if last or budget.spent:
                    raise self.unavailable(f"{method} {path}: {exc}") from None
            except (TimeoutError, aiohttp.ClientError) as exc:
                # A body the upstream stopped taking is not sent again: s3serve's client, waiting
                # all that time for its answer, has given up by now.
                stalled = waiting.on_body and isinstance(exc, TimeoutError)
                if last or not idempotent or budget.spent or stalled:
                    raise self.unavailable(f"{method} {path}: {type(exc).__name__} {exc}") from None
            else:
                if response.status < 300:
                    return response
                if response.status in (400, 403) and key and (customer or method == "HEAD"):
                    raise await self._key_failure(response, method, bool(customer), bucket, key)
                if response.status in (500, 503) and idempotent and not last and not budget.spent:
                    response.release()
                else:
                    raise await self._failure(response, method, missing)
            await asyncio.sleep(RETRY_DELAYS[attempt])
        raise AssertionError("unreachable")

    async def read(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: Query = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | Stream | None = None,
        *,
        missing: type[errors.S3Error] = errors.NoSuchKey,
        idempotent: bool | None = None,
        error_in_body: bool = False,
        quick: bool = False,
    ) -> tuple[Headers, bytes]:
        """``send`` and the whole (small) answer: an S3 document or nothing, never a web page,
        which is a captive portal's or a proxy's answer, whatever its status: a write so answered
        (DELETE's 2xx says nothing else) is not known to have happened. ``error_in_body``:
        CopyObject, UploadPartCopy and CompleteMultipartUpload may answer 200 and an <Error>
        later in the body."""
        response = await self.send(
            method, bucket, key, query, headers, body,
            missing=missing, idempotent=idempotent, quick=quick, long_work=error_in_body,
        )  # fmt: skip
        try:
            data = await _document(response)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.unavailable(f"{method} {bucket}/{key}: {type(exc).__name__} {exc}") from None
        except _TooLong:
            raise self.unavailable(f"{method} {bucket}/{key}: an answer over {MAX_DOCUMENT} bytes") from None
        finally:
            response.release()
        if rx.is_web_page(data):
            raise self.unavailable(f"{method} {bucket}/{key}: answered {response.status} with a web page")
        if error_in_body:
            found = rx.error_of(data)
            if found is not None:
                raise self._error(errors.from_code(found[0], 500).status, found, missing)
        return response.headers, data

    async def _failure(
        self, response: aiohttp.ClientResponse, method: str, missing: type[errors.S3Error]
    ) -> errors.S3Error:
        try:
            return self._error(response.status, await _error_of(response, method), missing)
        except _WebPage as page:
            return self.unavailable(f"{method} {response.url.path}: {page}")

    async def _key_failure(
        self, response: aiohttp.ClientResponse, method: str, sent_key: bool, bucket: str, key: str
    ) -> errors.S3Error:
        """An object request's 400 or 403 that S3's SSE-C checks may explain, said as S3 says it.
        Of the refusals that name s3serve's credentials (AUTH_CODES), only an AccessDenied with
        S3's wrong-key message is the key's fault: any other stays a refusal of the credentials
        (_error), key or no key, as when temporary upstream keys expire. A HEAD's answer has no
        body: a 400 to a HEAD sent without a key is S3's answer for an SSE-C object, a 400 to one
        sent with a key its answer for a plain object, and a 403 to one sent with a key is the
        wrong key or refused credentials, which a GET with that key tells apart (_probe_key)."""
        try:
            found = await _error_of(response, method)
        except _WebPage as page:
            return self.unavailable(f"{method} {bucket}/{key}: {page}")
        if found is not None:
            code, message, extra = found
            if code == "AccessDenied" and message == ssec.WRONG_KEY:
                return errors.AccessDenied(ssec.WRONG_KEY)
            return self._error(response.status, found, errors.NoSuchKey)
        if response.status == 403:
            return await self._probe_key(bucket, key) if sent_key else self._error(403, None, errors.NoSuchKey)
        return errors.InvalidRequest(ssec.NOT_APPLICABLE if sent_key else ssec.KEY_REQUIRED)

    async def _probe_key(self, bucket: str, key: str) -> errors.S3Error:
        """Why a HEAD sent with a key was refused (403, no body): a GET of the object's first byte
        with the same key has a body that says whether it is the key (or the credentials)."""
        try:
            response = await self.send("GET", bucket, key, headers={"range": "bytes=0-0"}, quick=True)
        except errors.InvalidRange:
            pass  # an empty object, which the key opens
        except errors.S3Error as exc:
            return exc
        else:
            response.release()
        # The key opens the object: the HEAD was refused for something else.
        return self._error(403, None, errors.NoSuchKey)

    def _error(
        self, status: int, found: tuple[str, str, dict[str, str]] | None, missing: type[errors.S3Error]
    ) -> errors.S3Error:
        code, message, extra = found if found is not None else ("", "", {})
        # A 403 whose code names a fault of the request itself (InvalidObjectState) is the client's.
        if code in AUTH_CODES or (status == 403 and not (code and hasattr(errors, code))):
            return self._refused(code or str(status), message)
        if (300 <= status < 400 and status != 304) or (status >= 500 and status != 501):
            return self.unavailable(f"answered {status} {code}: {message}".rstrip(": "))
        if code:
            return errors.from_code(code, status, message or None, extra)
        by_status: dict[int, type[errors.S3Error]] = {
            404: missing,
            412: errors.PreconditionFailed,
            304: errors.NotModified,
            400: errors.BadRequest,
            405: errors.MethodNotAllowed,
            416: errors.InvalidRange,
        }
        cls = by_status.get(status)
        return cls() if cls is not None else errors.InternalError(f"The upstream S3 answered HTTP {status}.")

    def _refused(self, code: str, message: str) -> errors.S3Error:
        if not self._warned_auth:
            self._warned_auth = True
            log.warning(
                "upstream S3 %s refused s3serve's credentials (%s: %s): check the upstream access key, "
                "secret key, region and this machine's clock",
                self.endpoint,
                code,
                message,
            )
        return errors.AccessDenied(f"The upstream S3 refused s3serve's credentials ({code}).")

    def _untrusted(self, exc: aiohttp.ClientConnectorCertificateError) -> errors.S3Error:
        if not self._warned_tls:
            self._warned_tls = True
            cause = exc.certificate_error
            log.warning(
                "upstream S3 %s: its TLS certificate is not trusted (%s): give its CA bundle with "
                "--upstream-ca, or --upstream-no-verify",
                self.endpoint,
                getattr(cause, "verify_message", None) or cause,
            )
        return errors.ServiceUnavailable(
            "s3serve does not trust the TLS certificate of its upstream S3 (see the server's log)."
        )

    def unavailable(self, cause: str) -> errors.S3Error:
        log.warning("upstream S3 %s: %s", self.endpoint, cause)
        return errors.ServiceUnavailable()

    async def ranged(self, bucket: str, key: str, offset: int, length: int, etag: str) -> aiohttp.ClientResponse:
        headers = {"range": f"bytes={offset}-{offset + length - 1}", "if-match": f'"{etag}"'}
        changed = errors.PreconditionFailed("The object changed upstream while it was being read.")
        try:
            response = await self.send("GET", bucket, key, headers=headers)
        except errors.PreconditionFailed:
            raise changed from None
        if rx.unquote_etag(response.headers.get("ETag", f'"{etag}"')) != etag:  # If-Match ignored
            response.release()
            raise changed
        return response


class RemoteReader(ObjectReader):
    """An upstream object, its GET already answered: streams that answer when the whole object is
    wanted, and a ranged GET pinned to the same ETag for any other range, so that an object
    replaced in between fails instead of being stitched from two versions."""

    def __init__(
        self, upstream: Upstream, bucket: str, key: str, info: ObjectInfo, response: aiohttp.ClientResponse | None
    ) -> None:
        self.info = info
        self._upstream = upstream
        self._bucket = bucket
        self._key = key
        self._first = response  # None: every range is a GET of its own
        self._open: set[aiohttp.ClientResponse] = {response} if response is not None else set()

    def fileno(self) -> int | None:
        return None

    async def iter_range(self, offset: int, length: int) -> AsyncIterator[bytes]:
        first, self._first = self._first, None
        skip = 0
        if first is not None and offset == 0 and length == self.info.size:
            response = first
        else:
            if first is not None:
                self._release(first)  # unread: its connection is closed rather than reused
            if length <= 0:
                return
            response = await self._upstream.ranged(self._bucket, self._key, offset, length, self.info.etag)
            self._open.add(response)
            if response.status == 200:
                skip = offset  # an upstream that ignored Range sends the whole object
            elif response.status != 206:
                self._release(response)
                raise errors.InternalError(f"The upstream S3 answered a ranged GET with HTTP {response.status}.")
        remaining = length
        try:
            async for chunk in response.content.iter_chunked(READ_CHUNK):
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if len(chunk) > remaining:
                    chunk = chunk[:remaining]
                if chunk:
                    remaining -= len(chunk)
                    yield chunk
                if not remaining:
                    break
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._upstream.unavailable(f"GET {self._bucket}/{self._key}: {type(exc).__name__} {exc}") from None
        finally:
            self._release(response)
        if remaining:
            raise self._upstream.unavailable(f"GET {self._bucket}/{self._key}: the body ended {remaining} bytes early")

    def _release(self, response: aiohttp.ClientResponse) -> None:
        self._open.discard(response)
        response.release()

    def close(self) -> None:
        self._first = None
        for response in list(self._open):
            self._release(response)
