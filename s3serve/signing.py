"""SigV4's HMAC-SHA256 primitives: the derived signing key and signatures made with it.

Apart from sigv4.py (which re-exports both) only to keep that module within its size; the
request's canonical form and its checks stay there."""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Protocol

SERVICE = "s3"
TERMINATOR = "aws4_request"


@functools.lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """Derived once per (secret, date, region, service): four HMACs saved on every request."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode("utf-8"), "sha256")


def sign(key: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text`` under a derived signing key, in hex. Every request signs with one
    of a few keys (one per user, day and region), so the key's HMAC state is set up once and
    copied: 2.9 us per signature here against 4.3 for a one-shot ``hmac.digest``, which sets up
    OpenSSL's HMAC (and fetches its digest) anew every time. It also keeps the GIL for a short
    text, where the one-shot call gives it up and the event loop then waits to get it back."""
    mac = _keyed(key).copy()
    mac.update(text.encode("utf-8"))
    return mac.hexdigest()


class _Mac(Protocol):
    def copy(self) -> _Mac: ...
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


@functools.lru_cache(maxsize=256)
def _keyed(key: bytes) -> _Mac:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    # CPython's HMAC keeps OpenSSL's state in ``_hmac`` and forwards copy, update and hexdigest
    # to it through a Python method each: using that state itself saves those frames on every
    # request. Where it is missing (another Python, no OpenSSL), the wrapper does the same.
    state: _Mac | None = getattr(mac, "_hmac", None)
    return state if state is not None else mac
