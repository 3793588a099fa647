"""x-amz-client-token of recent RenameObject calls, on disk so every worker process sharing ROOT
knows them: a retry whose first response was lost succeeds again although the source is gone."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time

TTL = 600.0


class RenameTokens:
    def __init__(self, hidden: str) -> None:
        self.dir = os.path.join(hidden, "tokens")

    def _path(self, token: str) -> str:
        return os.path.join(self.dir, hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest())

    def remember(self, token: str, bucket: str, src_key: str, dst_key: str) -> None:
        os.makedirs(self.dir, exist_ok=True)
        tmp = os.path.join(self.dir, f".tmp-{secrets.token_hex(8)}")
        with open(tmp, "w") as f:
            json.dump({"b": bucket, "s": src_key, "d": dst_key}, f)
        os.replace(tmp, self._path(token))

    def recalls(self, token: str, bucket: str, src_key: str, dst_key: str) -> bool:
        """True when this token renamed src_key to dst_key in bucket less than TTL ago."""
        path = self._path(token)
        try:
            if time.time() - os.stat(path).st_mtime > TTL:
                return False
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return False
        return isinstance(doc, dict) and (doc.get("b"), doc.get("s"), doc.get("d")) == (bucket, src_key, dst_key)

    def prune(self, now: float) -> None:
        """Forget tokens older than TTL (and temp files a crash left); run by the GC."""
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return
        for entry in entries:
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > TTL:
                    os.unlink(entry.path)
