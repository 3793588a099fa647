"""A small, fast SigV4 signer for the load generator (header auth and presigned URLs).

botocore's signer builds an AWSRequest, copies headers and re-derives the signing key for every
request; at tens of thousands of requests per second on one core that overhead would make the
client the bottleneck. This one caches the signing key per day and signs only the headers that it
sets itself. Correctness is checked against botocore in bench/tests/test_signer.py.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"


def uri_encode(value: str, *, keep_slash: bool) -> str:
    # SigV4 encodes everything but unreserved characters; '/' stays only in the path.
    return quote(value, safe="/-_.~" if keep_slash else "-_.~")


def canonical_query(params: dict[str, str]) -> str:
    pairs = sorted((uri_encode(k, keep_slash=False), uri_encode(v, keep_slash=False)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def amz_now(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


class Signer:
    def __init__(self, access_key: str, secret_key: str, region: str = "us-east-1", service: str = "s3") -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.service = service
        self._key_day = ""
        self._key = b""

    def _signing_key(self, day: str) -> bytes:
        if day != self._key_day:
            k = hmac.new(("AWS4" + self.secret_key).encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._key, self._key_day = k, day
        return self._key

    def _signature(self, amz_date: str, canonical_request: str) -> tuple[str, str]:
        day = amz_date[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        return scope, hmac.new(self._signing_key(day), string_to_sign.encode(), hashlib.sha256).hexdigest()

    def sign_headers(
        self,
        method: str,
        host: str,
        path: str,
        query: dict[str, str] | None = None,
        payload_sha256: str = EMPTY_SHA256,
        headers: dict[str, str] | None = None,
        now: float | None = None,
    ) -> dict[str, str]:
        """Headers to send (the given ones plus x-amz-date, x-amz-content-sha256, Authorization).

        ``path`` is the raw (unencoded) path such as ``/bucket/key``; send it encoded with
        ``uri_encode(path, keep_slash=True)`` so that client and signer agree on the bytes.
        """
        amz_date = amz_now(now)
        out = dict(headers or {})
        out["x-amz-date"] = amz_date
        out["x-amz-content-sha256"] = payload_sha256
        signed = {"host": host}
        for name, value in out.items():
            signed[name.lower()] = " ".join(str(value).strip().split())
        names = sorted(signed)
        canonical_headers = "".join(f"{n}:{signed[n]}\n" for n in names)
        signed_names = ";".join(names)
        canonical_request = "\n".join(
            (
                method,
                uri_encode(path, keep_slash=True),
                canonical_query(query or {}),
                canonical_headers,
                signed_names,
                payload_sha256,
            )
        )
        scope, signature = self._signature(amz_date, canonical_request)
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return out

    def presign(
        self, method: str, host: str, path: str, expires: int = 3600, now: float | None = None, scheme: str = "http"
    ) -> str:
        """A presigned URL (query auth, unsigned payload, only ``host`` signed)."""
        amz_date = amz_now(now)
        day = amz_date[:8]
        params = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{self.access_key}/{day}/{self.region}/{self.service}/aws4_request",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(expires),
            "X-Amz-SignedHeaders": "host",
        }
        query = canonical_query(params)
        encoded_path = uri_encode(path, keep_slash=True)
        canonical_request = "\n".join((method, encoded_path, query, f"host:{host}\n", "host", UNSIGNED))
        _, signature = self._signature(amz_date, canonical_request)
        return f"{scheme}://{host}{encoded_path}?{query}&X-Amz-Signature={signature}"
