"""The load generator's S3 client: aiohttp with a connection pool, SigV4 by bench.signer, path-style.

Bodies of large objects stream from a generator over one reusable buffer, and large responses are
read in chunks and dropped, so the client's memory stays flat whatever the object size.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html import unescape

import aiohttp
from yarl import URL

from bench.signer import EMPTY_SHA256, UNSIGNED, Signer, canonical_query, uri_encode

CHUNK = 1024 * 1024


class S3RequestError(Exception):
    """A non-2xx answer (or a broken connection), kept with what was asked and what came back."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> {status}: {body[:300]}")
        self.method = method
        self.url = url
        self.status = status
        self.body = body


@dataclass
class Endpoint:
    name: str
    url: str  # http://127.0.0.1:PORT
    access_key: str = "bench"
    secret_key: str = "bench-secret"
    region: str = "us-east-1"
    # Ceilings (nginx, bare aiohttp) speak plain HTTP only: no buckets, no listing, no multipart.
    s3: bool = True

    @property
    def host(self) -> str:
        return URL(self.url).raw_authority


@dataclass
class ListPage:
    keys: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_token: str | None = None


_KEY_RE = re.compile(r"<Key>(.*?)</Key>", re.S)
_PREFIX_RE = re.compile(r"<CommonPrefixes>\s*<Prefix>(.*?)</Prefix>", re.S)
_TRUNC_RE = re.compile(r"<IsTruncated>\s*true\s*</IsTruncated>")
_TOKEN_RE = re.compile(r"<NextContinuationToken>(.*?)</NextContinuationToken>", re.S)
_UPLOAD_RE = re.compile(r"<UploadId>(.*?)</UploadId>", re.S)


async def repeat_buffer(buffer: bytes, size: int) -> AsyncIterator[bytes | memoryview]:
    view = memoryview(buffer)
    left = size
    while left > 0:
        n = min(left, len(view))
        yield view[:n]
        left -= n


class S3Client:
    def __init__(self, endpoint: Endpoint, pool: int = 64, timeout: float = 600.0) -> None:
        self.endpoint = endpoint
        self.signer = Signer(endpoint.access_key, endpoint.secret_key, endpoint.region)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=pool, limit_per_host=pool, force_close=False),
            timeout=aiohttp.ClientTimeout(total=timeout),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
        )

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> S3Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _url(self, path: str, query: dict[str, str] | None) -> tuple[URL, str]:
        text = self.endpoint.url + uri_encode(path, keep_slash=True)
        if query:
            text += "?" + canonical_query(query)
        return URL(text, encoded=True), text

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes | AsyncIterator[bytes | memoryview] | None = None,
        size: int | None = None,
        headers: dict[str, str] | None = None,
        sink: bool = False,
    ) -> tuple[int, dict[str, str], bytes, int]:
        """One signed request. Returns (status, headers, body, bytes read); ``sink`` drops the body."""
        hdrs = dict(headers or {})
        if isinstance(body, bytes):
            sha = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
            hdrs["Content-Length"] = str(len(body))
        elif body is not None:
            # A streamed body cannot be hashed up front without reading it twice.
            sha = UNSIGNED
            hdrs["Content-Length"] = str(size)
        else:
            sha = EMPTY_SHA256
        if self.endpoint.s3:
            hdrs = self.signer.sign_headers(method, self.endpoint.host, path, query, sha, hdrs)
        url, text = self._url(path, query)
        try:
            async with self._session.request(method, url, data=body, headers=hdrs) as resp:
                if sink:
                    n = 0
                    # iter_any hands over what arrived without re-buffering it to a fixed size.
                    async for chunk in resp.content.iter_any():
                        n += len(chunk)
                    data = b""
                else:
                    data = await resp.read()
                    n = len(data)
                if resp.status >= 300:
                    raise S3RequestError(method, text, resp.status, data.decode("utf-8", "replace"))
                return resp.status, dict(resp.headers), data, n
        except aiohttp.ClientError as exc:
            raise S3RequestError(method, text, 0, f"{type(exc).__name__}: {exc}") from exc

    # -- the operations the scenarios use ------------------------------------------------------

    async def create_bucket(self, bucket: str) -> None:
        try:
            await self.request("PUT", f"/{bucket}")
        except S3RequestError as exc:
            if "BucketAlreadyOwnedByYou" not in exc.body and "BucketAlreadyExists" not in exc.body:
                raise

    async def put(self, bucket: str, key: str, data: bytes) -> None:
        await self.request("PUT", f"/{bucket}/{key}", body=data)

    async def put_stream(self, bucket: str, key: str, size: int, buffer: bytes) -> None:
        await self.request("PUT", f"/{bucket}/{key}", body=repeat_buffer(buffer, size), size=size)

    async def get(self, bucket: str, key: str) -> bytes:
        return (await self.request("GET", f"/{bucket}/{key}"))[2]

    async def get_sink(self, bucket: str, key: str) -> int:
        return (await self.request("GET", f"/{bucket}/{key}", sink=True))[3]

    async def head(self, bucket: str, key: str) -> dict[str, str]:
        return (await self.request("HEAD", f"/{bucket}/{key}"))[1]

    async def delete(self, bucket: str, key: str) -> None:
        await self.request("DELETE", f"/{bucket}/{key}")

    async def list_v2(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        token: str | None = None,
        start_after: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        query = {"list-type": "2", "max-keys": str(max_keys)}
        if prefix:
            query["prefix"] = prefix
        if delimiter:
            query["delimiter"] = delimiter
        if token:
            query["continuation-token"] = token
        if start_after:
            query["start-after"] = start_after
        text = (await self.request("GET", f"/{bucket}", query=query))[2].decode()
        # Regexes, not an XML parser: parsing 1000-key pages must not cost the client more than
        # the server spends producing them.
        token_m = _TOKEN_RE.search(text)
        return ListPage(
            keys=[unescape(k) for k in _KEY_RE.findall(text)],
            prefixes=[unescape(p) for p in _PREFIX_RE.findall(text)],
            truncated=bool(_TRUNC_RE.search(text)),
            next_token=unescape(token_m.group(1)) if token_m else None,
        )

    async def create_multipart(self, bucket: str, key: str) -> str:
        text = (await self.request("POST", f"/{bucket}/{key}", query={"uploads": ""}))[2].decode()
        m = _UPLOAD_RE.search(text)
        if not m:
            raise S3RequestError("POST", f"/{bucket}/{key}?uploads", 200, text)
        return unescape(m.group(1))

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, size: int, buffer: bytes) -> str:
        _, headers, _, _ = await self.request(
            "PUT",
            f"/{bucket}/{key}",
            query={"partNumber": str(number), "uploadId": upload_id},
            body=repeat_buffer(buffer, size),
            size=size,
        )
        etag = headers.get("ETag") or headers.get("Etag") or ""
        return etag

    async def complete_multipart(self, bucket: str, key: str, upload_id: str, etags: list[str]) -> float:
        """Returns the seconds CompleteMultipartUpload took, response body included."""
        parts = "".join(f"<Part><PartNumber>{i}</PartNumber><ETag>{e}</ETag></Part>" for i, e in enumerate(etags, 1))
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        t0 = time.perf_counter()
        _, _, data, _ = await self.request("POST", f"/{bucket}/{key}", query={"uploadId": upload_id}, body=body)
        elapsed = time.perf_counter() - t0
        # S3 may answer 200 with an <Error> body when completion fails late.
        if b"<Error>" in data:
            raise S3RequestError("POST", f"/{bucket}/{key}?uploadId={upload_id}", 200, data.decode())
        return elapsed

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        await self.request("DELETE", f"/{bucket}/{key}", query={"uploadId": upload_id})
