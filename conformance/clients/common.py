"""Shared plumbing for the client workflows: where the endpoint is, how a step is recorded,
how a command is run, and how test data is made and compared.

Every client module runs as its own process (``python -m conformance.clients.<name>``) so that a
client that hangs or crashes costs only its own steps. The orchestrator passes the endpoint in
``CONF_*`` environment variables and reads the JSON lines that ``Recorder`` appends to
``CONF_RESULTS``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

MiB = 1024 * 1024
DETAIL_LIMIT = 2000


@dataclass(frozen=True)
class Endpoint:
    """What a client needs to reach the server under test."""

    url: str  # http://127.0.0.1:PORT, path style
    access_key: str
    secret_key: str
    region: str
    https_url: str  # "" when there is no TLS endpoint to test
    vhost_url: str  # e.g. http://localhost:PORT, "" when virtual-host style is not available
    vhost_domain: str
    vhost_proxy: str  # http://127.0.0.1:PORT of the loopback proxy that resolves *.<domain>
    ca_bundle: str  # certificate of the https endpoint, "" to skip verification
    workdir: Path  # scratch space for this client, removed by the orchestrator
    bucket_prefix: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def hostport(self) -> str:
        return urlsplit(self.url).netloc

    def bucket(self, name: str) -> str:
        return f"{self.bucket_prefix}{name}"

    @classmethod
    def from_env(cls) -> Endpoint:
        env = os.environ
        workdir = Path(env["CONF_WORKDIR"])
        workdir.mkdir(parents=True, exist_ok=True)
        return cls(
            url=env["CONF_ENDPOINT"].rstrip("/"),
            access_key=env["CONF_ACCESS_KEY"],
            secret_key=env["CONF_SECRET_KEY"],
            region=env.get("CONF_REGION", "us-east-1"),
            https_url=env.get("CONF_HTTPS_ENDPOINT", "").rstrip("/"),
            vhost_url=env.get("CONF_VHOST_ENDPOINT", "").rstrip("/"),
            vhost_domain=env.get("CONF_VHOST_DOMAIN", ""),
            vhost_proxy=env.get("CONF_VHOST_PROXY", ""),
            ca_bundle=env.get("CONF_CA_BUNDLE", ""),
            workdir=workdir,
            bucket_prefix=env.get("CONF_BUCKET_PREFIX", "conf-"),
        )


class StepFailed(Exception):
    """A step's check did not hold; the message is what a developer needs to see."""


class Skip(Exception):
    """The step cannot run in this setup (e.g. no TLS endpoint); counted apart from failures."""


def trim(text: str, limit: int = DETAIL_LIMIT) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    # The end of an error output usually says the most (the final exception, the server's reply).
    half = limit // 2
    return text[:half] + "\n[...]\n" + text[-half:]


class Recorder:
    """Appends one JSON line per step; ``step`` turns any exception into a recorded failure."""

    def __init__(self, client: str, path: str | None = None) -> None:
        self.client = client
        self.path = Path(path or os.environ["CONF_RESULTS"])
        self.failed: set[str] = set()

    def _write(self, record: dict[str, object]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def version(self, text: str) -> None:
        self._write({"client": self.client, "version": text.strip().splitlines()[0] if text else "?"})

    def record(self, step: str, result: str, detail: str = "", seconds: float = 0.0) -> None:
        if result == "fail":
            self.failed.add(step)
        self._write(
            {
                "client": self.client,
                "step": step,
                "result": result,
                "detail": trim(detail),
                "seconds": round(seconds, 2),
            }
        )
        mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}[result]
        print(f"[{self.client}] {mark} {step}" + (f": {detail.splitlines()[0][:200]}" if detail else ""),
              file=sys.stderr, flush=True)

    def step(self, name: str, needs: Sequence[str] = ()) -> Callable[[Callable[[], object]], None]:
        """Decorator that runs the function at once as one step and records the outcome:

            @rec.step("cp up", needs=["mb"])
            def _() -> None: ...

        ``needs`` names earlier steps whose failure makes this one meaningless; it is then
        recorded as failed with that reason instead of a confusing secondary error."""

        def run_now(fn: Callable[[], object]) -> None:
            broken = [n for n in needs if n in self.failed]
            if broken:
                self.record(name, "fail", f"not run: depends on failed step(s) {', '.join(broken)}")
                return
            start = time.monotonic()
            try:
                fn()
            except Skip as e:
                self.record(name, "skip", str(e), time.monotonic() - start)
            except StepFailed as e:
                self.record(name, "fail", str(e), time.monotonic() - start)
            except Exception as e:  # noqa: BLE001 - a client library may raise anything; record it
                tb = traceback.format_exc(limit=-3)
                self.record(name, "fail", f"{type(e).__name__}: {e}\n{tb}", time.monotonic() - start)
            else:
                self.record(name, "pass", "", time.monotonic() - start)

        return run_now


@dataclass
class Completed:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
    input: str | None = None,
    stdin: IO[bytes] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Completed:
    """Run a command; on non-zero exit (when ``check``) fail the step with its output."""
    argv = [os.fspath(a) for a in args]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        p = subprocess.run(
            argv,
            env=full_env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            input=input,
            cwd=cwd,
            stdin=stdin if stdin is not None else (None if input is not None else subprocess.DEVNULL),
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise StepFailed(f"timed out after {timeout}s: {shlex.join(argv)}\n{out}\n{err}") from None
    c = Completed(argv, p.returncode, p.stdout, p.stderr)
    if check and p.returncode != 0:
        raise StepFailed(f"exit {p.returncode}: {shlex.join(argv)}\n{trim(p.stderr)}\n{trim(p.stdout, 600)}")
    return c


def make_file(path: Path, size: int, seed: int | None = None) -> str:
    """Write ``size`` pseudo-random bytes (incompressible, so no transport shortcut hides a bug);
    return the MD5 hex digest."""
    rng = random.Random(seed if seed is not None else size)
    md5 = hashlib.md5()
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 1 * MiB
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(block, left)
            data = rng.randbytes(n)
            md5.update(data)
            f.write(data)
            left -= n
    return md5.hexdigest()


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """The hex digest of a file's bytes (``algorithm``: a hashlib name)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def md5_file(path: Path) -> str:
    return file_digest(path, "md5")


def make_tree(root: Path, count: int, seed: int = 7) -> dict[str, str]:
    """A tree of ``count`` small files in nested folders (with a space and a non-ASCII name, as
    users have); returns relative path -> md5."""
    rng = random.Random(seed)
    files: dict[str, str] = {}
    for i in range(count):
        depth = i % 4
        parts = [f"d{(i * 7 + j) % 5}" for j in range(depth)]
        if i % 50 == 3:
            name = f"with space {i}.txt"
        elif i % 50 == 4:
            name = f"n\u00e4me-{i}.dat"
        else:
            name = f"f{i:03d}.bin"
        rel = "/".join([*parts, name])
        data = rng.randbytes(rng.randint(0, 4096))
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        files[rel] = hashlib.md5(data).hexdigest()
        # Users sync files that are older than the upload. A file written in the same second as
        # its upload looks newer than the object's second-granular LastModified, and every sync
        # tool would then rightly upload it again.
        old = time.time() - 3600
        os.utime(p, (old, old))
    return files


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): md5_file(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise StepFailed(message)


def expect_equal(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise StepFailed(f"{what}: expected {expected!r}, got {actual!r}")


def diff_trees(a: dict[str, str], b: dict[str, str], what: str) -> None:
    if a == b:
        return
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    raise StepFailed(
        f"{what}: {len(only_a)} missing, {len(only_b)} extra, {len(changed)} differ; "
        f"missing {only_a[:5]}, extra {only_b[:5]}, differ {changed[:5]}"
    )
