"""Server configuration and the users who may sign requests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ACCESS_KEY = "s3serve"
DEFAULT_SECRET_KEY = "s3serve-secret"


@dataclass(frozen=True)
class User:
    access_key: str
    secret_key: str
    display_name: str = ""
    user_id: str = ""

    def __post_init__(self) -> None:
        if not self.display_name:
            object.__setattr__(self, "display_name", self.access_key)
        if not self.user_id:
            # S3 canonical user ids are 64 hex digits; derive a stable one from the access key.
            object.__setattr__(self, "user_id", hashlib.sha256(self.access_key.encode()).hexdigest())


@dataclass
class Config:
    root: Path
    host: str = "127.0.0.1"
    port: int = 9000
    users: list[User] = field(default_factory=lambda: [User(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)])
    region: str = "us-east-1"
    # Virtual-host style: requests to <bucket>.<domain> address that bucket.
    domain: str | None = None
    # fsync object data before the rename that makes it visible (durability over speed).
    fsync: bool = True
    # Smallest size of every part but the last in CompleteMultipartUpload (S3: 5 MiB).
    min_part_size: int = 5 * 1024 * 1024
    multipart_expiry: float = 24 * 3600.0
    gc_interval: float = 3600.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False
    workers: int = 1
    # A CompleteMultipartUpload, CopyObject or UploadPartCopy still working after this long (a
    # copy of a big object) answers 200 at once and keeps the connection alive with a space this
    # often, as S3 does: clients give up on a silent connection after their read timeout (60 s
    # for boto3 and the aws cli).
    keepalive_after: float = 1.0
    keepalive_every: float = 5.0
    # A request body from which nothing arrives for this long is answered 400 RequestTimeout and
    # its connection closed, as S3 does after about 20 s: a stalled client would otherwise hold
    # its handler, its temp file and its connection for good (framing.py). So is a request whose
    # header section is not whole this long after its first byte (slowloris).
    body_timeout: float = 20.0
    # Upstream cache mode: ROOT keeps copies of the objects of this S3 endpoint, which every write
    # goes through to and every miss is read from (storage/cache.py).
    upstream: str | None = None
    upstream_access_key: str = ""
    upstream_secret_key: str = ""
    upstream_session_token: str | None = None  # with temporary credentials (AWS STS)
    upstream_profile: str | None = None  # an AWS profile's credentials instead of the three above
    upstream_region: str | None = None  # None: ``region``
    upstream_verify: bool = True
    upstream_ca: Path | None = None
    cache_size: int | None = None  # bytes of replicas kept; None: no limit
    # Trust a replica this long after the upstream last confirmed it (0: ask on every read).
    cache_revalidate: float = 0.0
    cache_evict_interval: float = 60.0

    def user_by_access_key(self, access_key: str) -> User | None:
        for user in self.users:
            if user.access_key == access_key:
                return user
        return None

    @property
    def default_owner(self) -> User:
        """Owner of buckets that another program created as plain folders."""
        return self.users[0]


def load_users(path: Path) -> list[User]:
    """Read ``{"users": [{"access_key", "secret_key", "display_name"?, "user_id"?}, ...]}``."""
    data = json.loads(Path(path).read_text())
    entries = data["users"] if isinstance(data, dict) else data
    users = [
        User(
            access_key=str(u["access_key"]),
            secret_key=str(u["secret_key"]),
            display_name=str(u.get("display_name", "")),
            user_id=str(u.get("user_id", "")),
        )
        for u in entries
    ]
    if not users:
        raise ValueError(f"{path}: no users")
    return users
