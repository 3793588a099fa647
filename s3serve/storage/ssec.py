"""SSE-C (customer-provided keys): what checks a key later without keeping it, and the keys of the
request being served, for a cache to send on to its upstream.

s3serve keeps no customer key: an SSE-C object's record holds the key's MD5 (S3 echoes it) and a
salted HMAC-SHA256 of the key, as S3 describes keeping "a randomly salted HMAC value of the
encryption key to validate future requests". The bytes themselves rest in the clear, like every
s3serve object (README): the key is enforced at the API, not on the disk.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace

from .base import Encryption

_SCHEME = "hmac-sha256"

# S3's answers to reads of an object with the wrong SSE-C key, or with none or one it does not need.
WRONG_KEY = "Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key."
KEY_REQUIRED = (
    "The object was stored using a form of Server Side Encryption. "
    "The correct parameters must be provided to retrieve the object."
)
NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
INSECURE = "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
CUSTOMER_PREFIX = "x-amz-server-side-encryption-customer-"
COPY_SOURCE_CUSTOMER_PREFIX = "x-amz-copy-source-server-side-encryption-customer-"


def key_check(key: bytes) -> str:
    """A new salted HMAC of ``key``, as a record keeps it: ``hmac-sha256$<salt>$<mac>`` (base64)."""
    salt = os.urandom(16)
    mac = hmac.new(salt, key, hashlib.sha256).digest()
    return f"{_SCHEME}${base64.b64encode(salt).decode()}${base64.b64encode(mac).decode()}"


def key_matches(check: str, key: bytes) -> bool:
    """Whether ``key`` is the key ``check`` was made of (False for a check of another form)."""
    scheme, _, rest = check.partition("$")
    salt_b64, _, mac_b64 = rest.partition("$")
    if scheme != _SCHEME or not mac_b64:
        return False
    try:
        salt, mac = base64.b64decode(salt_b64, validate=True), base64.b64decode(mac_b64, validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(hmac.new(salt, key, hashlib.sha256).digest(), mac)


def key_md5(key: bytes) -> str:
    """The base64 MD5 of a key, as the x-amz-server-side-encryption-customer-key-MD5 header has it."""
    return base64.b64encode(hashlib.md5(key, usedforsecurity=False).digest()).decode()


@dataclass(frozen=True, slots=True)
class CustomerKey:
    """A request's SSE-C key, validated (handlers/encryption.py); lives only as long as the request."""

    algorithm: str
    key: bytes
    md5: str  # base64, of ``key``

    def headers(self, prefix: str = CUSTOMER_PREFIX) -> dict[str, str]:
        """The three headers that name this key on a request (an upstream's)."""
        return {
            prefix + "algorithm": self.algorithm,
            prefix + "key": base64.b64encode(self.key).decode(),
            prefix + "key-md5": self.md5,
        }


@dataclass(frozen=True, slots=True)
class RequestKeys:
    """The customer keys of the request being served, one per role: ``read`` is the key of the
    object it reads (a GET's or HEAD's; a copy's source), ``write`` that of the object it writes.
    An upstream's GET and HEAD carry ``read``: a read of the object written goes in
    reading_written()."""

    read: CustomerKey | None = None
    write: CustomerKey | None = None


# Set by the handlers for the request's task (and the tasks it starts, which copy it); read only
# where a request to an upstream S3 is built. Nothing else keeps a key.
REQUEST_KEYS: ContextVar[RequestKeys | None] = ContextVar("s3serve_request_keys", default=None)


@contextlib.contextmanager
def reading_written() -> Iterator[None]:
    """Within the block, an upstream's GET and HEAD carry the key of the object the request
    writes (none when it writes a plain one): a write's description of what it made (a HEAD after
    a PutObject, CopyObject or Complete). A copy's source has a key of its own, maybe none, and
    the destination would refuse it."""
    keys = REQUEST_KEYS.get()
    if keys is None:
        yield
        return
    token = REQUEST_KEYS.set(RequestKeys(read=keys.write, write=keys.write))
    try:
        yield
    finally:
        REQUEST_KEYS.reset(token)


# Requests to an upstream that carry the object's SSE-C key: the object operations that read or
# write its bytes or describe it (sub-resources such as ?tagging or ?acl take none).
_READ_QUERIES = frozenset({"", "partNumber", "attributes"})
_WRITE_QUERIES = frozenset({"", "partNumber,uploadId", "uploads", "uploadId"})


def upstream_headers(method: str, key: str, query_names: list[str], headers: Mapping[str, str]) -> dict[str, str]:
    """The SSE-C headers a request to an upstream carries for the request being served."""
    keys = REQUEST_KEYS.get()
    if keys is None or not key:
        return {}
    names = ",".join(sorted(query_names))
    lower = {name.lower() for name in headers}
    if method in ("GET", "HEAD"):
        return keys.read.headers() if keys.read is not None and names in _READ_QUERIES else {}
    if method not in ("PUT", "POST") or names not in _WRITE_QUERIES:
        return {}
    out: dict[str, str] = {}
    if keys.write is not None:
        out.update(keys.write.headers())
    if "x-amz-copy-source" in lower and keys.read is not None:
        out.update(keys.read.headers(COPY_SOURCE_CUSTOMER_PREFIX))
    return out


def described(encryption: Encryption) -> Encryption:
    """An upstream's description of an SSE-C object, with a check of the request's key when the
    upstream took that key (the MD5s agree): a replica made of it then checks later requests'
    keys itself, as the disk does. Anything else as it is."""
    keys = REQUEST_KEYS.get()
    if keys is None or not encryption.is_customer or encryption.customer_key_check is not None:
        return encryption
    for given in (keys.read, keys.write):
        if given is not None and given.md5 == encryption.customer_key_md5:
            return replace(encryption, customer_key_check=key_check(given.key))
    return encryption
