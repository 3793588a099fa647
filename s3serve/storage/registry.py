"""The bucket registry: who owns each bucket s3serve created, when, and in which region."""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from .base import BucketInfo
from .metadata import settled, write_atomic

# A file's stamp: any change to it (or a rename over it) gives it another.
Stamp = tuple[int, int, int, int, int]
# The registry's cache: a record per bucket.
_BUCKETS_CACHE_MAX = 4096


class BucketRegistry:
    """``.s3serve/buckets/<name>.json``: owner, creation time and region of buckets we created."""

    def __init__(self, hidden: str, durable: bool = False) -> None:
        self.durable = durable
        self.dir = os.path.join(hidden, "buckets")
        self.tmp_dir = os.path.join(hidden, "tmp")
        self._cache: dict[str, tuple[Stamp, dict[str, Any]]] = {}

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name + ".json")

    def read(self, name: str) -> dict[str, Any] | None:
        # Every request to a bucket asks (ownership check): one stat instead of open+read+parse.
        path = self._path(name)
        try:
            st = os.stat(path)
        except OSError:
            return None
        stamp = (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == stamp:
            return dict(cached[1])  # only settled files are cached
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict):
            return None
        if settled(st):
            if len(self._cache) >= _BUCKETS_CACHE_MAX:
                self._cache.clear()
            self._cache[name] = (stamp, dict(doc))
        return doc

    def info(self, name: str, folder_mtime: float, default_owner: str) -> BucketInfo:
        doc = self.read(name) or {}
        try:
            return BucketInfo(
                name=name,
                created=float(doc.get("created", folder_mtime)),
                owner=str(doc.get("owner", default_owner)),
                region=str(doc.get("region", "us-east-1")),
            )
        except (TypeError, ValueError):
            return BucketInfo(name=name, created=folder_mtime, owner=default_owner)

    def write(self, name: str, owner: str, region: str) -> float:
        created = time.time()
        doc = {"owner": owner, "created": created, "region": region}
        write_atomic(self.tmp_dir, self._path(name), json.dumps(doc).encode(), self.durable)
        return created

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(name))
