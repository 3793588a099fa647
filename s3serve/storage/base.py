"""The storage Backend interface: async, named after the AWS operations it serves.

Handlers talk only to this interface. Implementations: ``disk.DiskBackend`` (a local directory)
and, later, ``cache.CacheBackend`` (a local Backend in front of an upstream one). Nothing here
knows about HTTP; nothing here exposes a filesystem path to the caller.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..errors import S3Error
from .keys import check_key_size

T = TypeVar("T")

# Names of digests as used throughout s3serve (see checksums.py).
CHECKSUM_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
# Every additional-checksum algorithm S3's API names (botocore's ChecksumAlgorithm). An upstream's
# checksums of those s3serve does not compute are still the object's: the cache passes them on.
S3_CHECKSUM_ALGORITHMS = (*CHECKSUM_ALGORITHMS, "SHA512", "MD5", "XXHASH64", "XXHASH3", "XXHASH128")

# The standard headers S3 stores with an object and returns on GET/HEAD.
STORED_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    # Where S3's website endpoint redirects a GET of the object; stored and answered as given.
    "x-amz-website-redirect-location",
)
WEBSITE_REDIRECT = "x-amz-website-redirect-location"


SSE_HEADER = "x-amz-server-side-encryption"
SSE_KMS_KEY_HEADER = "x-amz-server-side-encryption-aws-kms-key-id"
SSE_BUCKET_KEY_HEADER = "x-amz-server-side-encryption-bucket-key-enabled"
SSE_CUSTOMER_ALGORITHM_HEADER = "x-amz-server-side-encryption-customer-algorithm"
SSE_CUSTOMER_KEY_MD5_HEADER = "x-amz-server-side-encryption-customer-key-md5"


@dataclass(frozen=True, slots=True)
class Encryption:
    """The server-side encryption an object (or upload) was written with, as S3 reports it.

    s3serve encrypts nothing itself: this is what the client (or the bucket's default) asked
    for, kept and answered so that clients checking it see S3's answers."""

    algorithm: str = "AES256"  # AES256, aws:kms or aws:kms:dsse; SSE-C's customer algorithm
    kms_key_id: str | None = None
    bucket_key: bool = False
    # SSE-C (customer-provided key): the key's MD5 as S3 echoes it (base64), and a salted HMAC of
    # the key that a later request's key is checked against (ssec.py); never the key itself. The
    # check is no part of equality: the same object described by an upstream has none.
    customer_key_md5: str | None = None
    customer_key_check: str | None = field(default=None, compare=False)

    @property
    def is_customer(self) -> bool:
        return self.customer_key_md5 is not None

    def headers(self) -> dict[str, str]:
        """The x-amz-server-side-encryption* headers of an answer, or of a request upstream."""
        if self is SSE_S3:
            return dict(_SSE_S3_HEADERS)
        if self.customer_key_md5 is not None:
            return {SSE_CUSTOMER_ALGORITHM_HEADER: self.algorithm, SSE_CUSTOMER_KEY_MD5_HEADER: self.customer_key_md5}
        headers = {SSE_HEADER: self.algorithm}
        if self.kms_key_id is not None:
            headers[SSE_KMS_KEY_HEADER] = self.kms_key_id
        if self.bucket_key:
            headers[SSE_BUCKET_KEY_HEADER] = "true"
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Encryption:
        """What an S3 answer (an upstream's) says; S3's default when it says nothing."""
        algorithm = headers.get(SSE_HEADER)
        customer = headers.get(SSE_CUSTOMER_ALGORITHM_HEADER)
        if customer and not algorithm:
            return cls(customer, customer_key_md5=headers.get(SSE_CUSTOMER_KEY_MD5_HEADER) or "")
        if not algorithm:
            return SSE_S3
        return cls.of(algorithm, headers.get(SSE_KMS_KEY_HEADER), (headers.get(SSE_BUCKET_KEY_HEADER) or "").lower() == "true")

    def to_doc(self) -> list[Any]:
        """Its form in a JSON metadata record (written only when it is not SSE_S3)."""
        if self.customer_key_md5 is not None:
            return [self.algorithm, None, False, self.customer_key_md5, self.customer_key_check]
        return [self.algorithm, self.kms_key_id, self.bucket_key]

    @classmethod
    def from_doc(cls, doc: Any) -> Encryption:
        """``to_doc``'s inverse; SSE_S3 for a record without one (older records, foreign files)."""
        if doc is None:
            return SSE_S3
        algorithm, kms_key_id, bucket_key, *customer = doc
        if customer:  # SSE-C: [algorithm, None, False, key MD5, key check]
            md5, check = customer
            return cls(str(algorithm), None, False, str(md5), str(check) if check is not None else None)
        return cls.of(str(algorithm), str(kms_key_id) if kms_key_id is not None else None, bool(bucket_key))

    @classmethod
    def of(
        cls,
        algorithm: str,
        kms_key_id: str | None = None,
        bucket_key: bool = False,
        customer_key_md5: str | None = None,
        customer_key_check: str | None = None,
    ) -> Encryption:
        """One shared value for the common case, so that ``is SSE_S3`` tells it apart cheaply."""
        if algorithm == "AES256" and kms_key_id is None and not bucket_key and customer_key_md5 is None:
            return SSE_S3
        return cls(algorithm, kms_key_id, bucket_key, customer_key_md5, customer_key_check)


# Every object's encryption unless it was written with another (S3's default since January 2023).
SSE_S3 = Encryption()
# An SSE-C object described without its key (an upstream's, which asks for the key on a read):
# the key's MD5 is not known here.
SSE_C_KEY_UNKNOWN = Encryption("AES256", customer_key_md5="")
_SSE_S3_HEADERS = {SSE_HEADER: "AES256"}


@dataclass
class BucketInfo:
    name: str
    created: float  # epoch seconds
    owner: str  # user_id of the owner
    region: str = "us-east-1"


@dataclass
class PartInfo:
    number: int
    size: int
    etag: str  # hex MD5, unquoted
    last_modified: float = 0.0
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64
    # The upload's, for the UploadPart / UploadPartCopy answers; not stored with the part.
    encryption: Encryption = SSE_S3


@dataclass
class ObjectInfo:
    key: str
    size: int
    etag: str  # unquoted: hex MD5, or "<hex>-<N>" for multipart objects
    last_modified: float  # epoch seconds
    # Standard headers in STORED_HEADERS (lower-case names) that were given at write time.
    headers: dict[str, str] = field(default_factory=dict)
    # x-amz-meta-* without the prefix, names lower-case.
    user_meta: dict[str, str] = field(default_factory=dict)
    # e.g. {"CRC32": "base64"}; from an upstream's listing {"CRC32": ""}, which names no value.
    checksums: dict[str, str] = field(default_factory=dict)
    checksum_type: str | None = None  # "FULL_OBJECT" or "COMPOSITE"
    storage_class: str = "STANDARD"
    parts: list[PartInfo] | None = None  # for objects made by CompleteMultipartUpload
    tag_count: int = 0
    is_folder: bool = False  # a "key/" folder marker
    encryption: Encryption = SSE_S3

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


@dataclass
class WriteMeta:
    """What a write stores beside the bytes."""

    headers: dict[str, str] = field(default_factory=dict)  # subset of STORED_HEADERS
    user_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] | None = None
    storage_class: str = "STANDARD"
    checksum_algorithm: str | None = None  # requested additional checksum, e.g. "CRC32"
    checksum_type: str | None = None  # multipart only: FULL_OBJECT / COMPOSITE
    # What the request named, or the bucket's stored default; None: neither, which is S3's
    # default (SSE-S3), and which a cache leaves to its upstream's bucket default.
    encryption: Encryption | None = None


# Called with the destination's current ObjectInfo (or None when absent) while the backend holds
# the key's write lock, so a conditional write is atomic against a concurrent writer. Raises
# PreconditionFailed (or any S3Error) to abort the write.
Precondition = Callable[[ObjectInfo | None], None]


class HeaderPrecondition:
    """A Precondition that S3 also expresses as request headers (If-Match, If-None-Match,
    x-amz-copy-source-if-*), so that an upstream S3 can check it itself, atomically, instead of
    being asked first and written after."""

    __slots__ = ("check", "headers")

    def __init__(self, check: Precondition, headers: dict[str, str]) -> None:
        self.check = check
        self.headers = headers

    def __call__(self, current: ObjectInfo | None) -> None:
        self.check(current)


class Body(Protocol):
    """A request body on its way to storage (built by payload.py).

    The backend iterates it, writing and hashing every chunk (it always computes MD5 for the ETag,
    plus the digests in ``digests_wanted``). When the iteration ended cleanly it calls
    ``finish(digests)``, which verifies Content-MD5, x-amz-content-sha256 and checksums and raises
    an S3Error on mismatch; only then is the object committed. ``finish`` returns the checksums to
    store (algorithm -> base64).
    """

    digests_wanted: frozenset[str]  # names from checksums.DIGESTS, e.g. {"sha256", "crc32"}
    # The algorithm of the checksum the client sent (header or trailer), if it sent one.
    declared_checksum: str | None
    # The length of the bytes the iteration yields, when the request declared it (None: unknown).
    decoded_length: int | None

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def finish(self, digests: dict[str, bytes]) -> dict[str, str]: ...


@dataclass
class ListPage:
    objects: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    # The last key or common prefix of this page when truncated: where the next page resumes
    # (strictly after it).
    next_marker: str | None = None


@dataclass
class UploadInfo:
    upload_id: str
    key: str
    initiated: float
    owner: str
    meta: WriteMeta = field(default_factory=WriteMeta)


@dataclass
class UploadListPage:
    uploads: list[UploadInfo]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str | None = None
    next_upload_id_marker: str | None = None


@dataclass
class PartsPage:
    upload: UploadInfo
    parts: list[PartInfo]
    is_truncated: bool
    next_part_number_marker: int | None = None


class ObjectReader(abc.ABC):
    """An open object: its metadata and a way to send its bytes.

    ``fileno()`` returns an OS file descriptor usable with sendfile, or None when the bytes only
    come as a stream (an upstream object); ``iter_range`` works in both cases.
    """

    info: ObjectInfo

    @abc.abstractmethod
    def fileno(self) -> int | None: ...

    @abc.abstractmethod
    def iter_range(self, offset: int, length: int) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(abc.ABC):
    """Raises S3Error subclasses (NoSuchBucket, NoSuchKey, ...) for every failure a client can cause."""

    # Whether a bucket's default encryption, its SSE-C block and the SSE-C keys of multipart
    # parts are another S3's to apply (a cache's upstream, which is sent the keys): the handlers
    # then apply none of them themselves.
    upstream_encryption: bool = False

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Called on app start-up (after the event loop runs)."""
        return None

    async def stop(self) -> None:
        """Called on app shutdown."""
        return None

    # -- buckets ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def list_buckets(self) -> list[BucketInfo]: ...

    @abc.abstractmethod
    async def create_bucket(self, name: str, owner: str, region: str) -> BucketInfo:
        """Raises BucketAlreadyOwnedByYou / BucketAlreadyExists when the name is taken."""

    @abc.abstractmethod
    async def head_bucket(self, name: str) -> BucketInfo: ...

    async def bucket_owner(self, name: str) -> str:
        """The bucket's owner, for the ownership check of an operation whose storage call tells
        a missing bucket (NoSuchBucket) itself: a backend may answer it without confirming that
        the bucket is still there."""
        return (await self.head_bucket(name)).owner

    async def owner_and_config(self, bucket: str, name: str, parse: Callable[[bytes], T]) -> tuple[str, T | None]:
        """bucket_owner and cached_bucket_config at once, for the small GET and HEAD of a signed
        request, which must learn that the bucket has no policy: a backend may answer both
        from the one lookup of the owner."""
        return await self.bucket_owner(bucket), await self.cached_bucket_config(bucket, name, parse)

    async def check_bucket(self, name: str) -> None:
        """NoSuchBucket unless the bucket is there: head_bucket without its answer, which a
        backend may give from less (the owner's PutObject asks it on every write)."""
        await self.head_bucket(name)

    async def confirm_bucket(self, name: str) -> BucketInfo:
        """head_bucket for a client asking whether the bucket exists (HeadBucket,
        GetBucketLocation), where a backend with a truth elsewhere asks it."""
        return await self.head_bucket(name)

    @abc.abstractmethod
    async def delete_bucket(self, name: str) -> None:
        """Raises BucketNotEmpty when objects remain; uploads in progress go with the bucket, as on S3."""

    # -- objects ------------------------------------------------------------------------------
    def check_key(self, key: str, size: int | None = None) -> None:
        """Refuse a key this backend cannot store, from its name (and ``size``, the length a
        write declares, where known) alone: what a write's header phase asks before the 100
        Continue, so a body bound for such a key is never sent. S3's own limit here; a backend
        with rules of its own (a filesystem's) adds them."""
        check_key_size(key)

    @abc.abstractmethod
    async def put_object(
        self, bucket: str, key: str, body: Body, meta: WriteMeta, precondition: Precondition | None = None
    ) -> ObjectInfo: ...

    @abc.abstractmethod
    async def head_object(self, bucket: str, key: str) -> ObjectInfo: ...

    @abc.abstractmethod
    async def open_object(self, bucket: str, key: str) -> ObjectReader: ...

    @abc.abstractmethod
    async def delete_object(self, bucket: str, key: str, precondition: Precondition | None = None) -> None:
        """No error when the key does not exist (S3 answers 204 either way), unless a
        ``precondition`` (If-Match) is given: it is checked against the object under the key's
        lock, as S3's conditional deletes are, and an absent object is then NoSuchKey."""

    @abc.abstractmethod
    async def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        meta: WriteMeta | None,
        src_precondition: Precondition | None = None,
        precondition: Precondition | None = None,
    ) -> ObjectInfo:
        """``meta`` None copies the source's metadata (directive COPY); tags follow ``meta.tags``
        when given, else the source's."""

    @abc.abstractmethod
    async def rename_object(
        self,
        bucket: str,
        src_key: str,
        dst_key: str,
        src_precondition: Precondition | None = None,
        precondition: Precondition | None = None,
        client_token: str | None = None,
    ) -> ObjectInfo:
        """With ``client_token``, a retry of a rename that already happened (the source is gone,
        the destination stands) succeeds again, for every process serving the same store."""

    @abc.abstractmethod
    async def list_objects(
        self, bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int
    ) -> ListPage:
        """Keys > start_after that start with prefix, in UTF-8 byte order, grouped by delimiter."""

    # -- tagging ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def get_object_tagging(self, bucket: str, key: str) -> dict[str, str]: ...

    @abc.abstractmethod
    async def put_object_tagging(self, bucket: str, key: str, tags: dict[str, str]) -> None: ...

    @abc.abstractmethod
    async def delete_object_tagging(self, bucket: str, key: str) -> None: ...

    # -- bucket configuration -----------------------------------------------------------------
    # Documents named by their sub-resource ("cors", "tagging", "policy", ...), kept as the bytes
    # handlers give; storage neither validates nor interprets them.
    @abc.abstractmethod
    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        """The stored document, or None. Raises NoSuchBucket."""

    @abc.abstractmethod
    async def put_bucket_config(self, bucket: str, name: str, document: bytes) -> None:
        """Replace the document atomically. Raises NoSuchBucket."""

    @abc.abstractmethod
    async def delete_bucket_config(self, bucket: str, name: str) -> None:
        """No error when there is none. Raises NoSuchBucket."""

    async def cached_bucket_config(self, bucket: str, name: str, parse: Callable[[bytes], T]) -> T | None:
        """``parse`` of the stored document, or None when there is none (or no such bucket), for
        the hot path: implementations cache the parsed value while the document is unchanged."""
        try:
            document = await self.get_bucket_config(bucket, name)
        except S3Error:
            return None
        return parse(document) if document is not None else None

    # -- multipart ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_multipart_upload(self, bucket: str, key: str, meta: WriteMeta, owner: str) -> UploadInfo: ...

    @abc.abstractmethod
    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: Body) -> PartInfo: ...

    @abc.abstractmethod
    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        src_bucket: str,
        src_key: str,
        src_range: tuple[int, int] | None,
        src_precondition: Precondition | None = None,
    ) -> PartInfo:
        """``src_range`` is (first, last) inclusive byte positions."""

    @abc.abstractmethod
    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[PartInfo],
        precondition: Precondition | None = None,
        checksums: dict[str, str] | None = None,
        checksum_type: str | None = None,
        object_size: int | None = None,
    ) -> ObjectInfo:
        """``parts`` as the client listed them (number, etag, checksums to check); ``checksums``
        the whole object's checksum the client sent (x-amz-checksum-*), ``checksum_type`` the
        x-amz-checksum-type it named and ``object_size`` the x-amz-mp-object-size, all checked
        against the upload before publishing."""

    @abc.abstractmethod
    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None: ...

    @abc.abstractmethod
    async def list_multipart_uploads(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> UploadListPage: ...

    @abc.abstractmethod
    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int, max_parts: int
    ) -> PartsPage: ...

    async def upload_info(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        """What an upload was created with (NoSuchUpload when there is none). A part checks its
        upload's SSE-C key against it: backends with a cheaper lookup than ListParts override it."""
        return (await self.list_parts(bucket, key, upload_id, 0, 0)).upload
