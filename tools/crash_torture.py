"""Crash-consistency torture: SIGKILL a real s3serve in the middle of a random write load, restart
it on the same ROOT and check that nothing acknowledged was lost and nothing torn became visible.

    python tools/crash_torture.py [--rounds 50] [--clients 4] [--workers-mix 0.3] [--seed N] ...
    make crash-torture                      # many rounds, fsync on, --workers 2 in some rounds
    python tools/crash_torture.py --sidecar # records in sidecar files (no user xattrs) instead

Each round starts several boto3 clients (default settings: CRC32 checksums on uploads; retries
off, so a request is sent once) against a few buckets, doing a random mix of PutObject (0 B up to
--max-size, across the 256 KiB small-write threshold), overwrites, DeleteObject, CopyObject (also
onto existing keys and onto earlier copies, which are hard links), multipart uploads (Create,
UploadPart with re-uploads of parts, Complete, Abort; uploads live on across crashes and are
continued in later rounds), PutObjectTagging, RenameObject, folder markers ("a/b/") and deep
keys. Every request is recorded with its start time and, when it returned success, its
acknowledgement time and the state it gave the key (sha256 of the bytes, ETag, size, tags,
content type).

At a random moment (--kill-min .. --kill-max seconds) the whole server process group is killed
with SIGKILL (with --workers 2 in a share of the rounds), the server is started again on the same
ROOT and every key is checked. The state of a key may be that of any request on it that was
acknowledged, or in flight at the crash, unless an acknowledged request on it began after that one
ended; the state the round began with only when no request on the key was acknowledged. So:

- a key whose last acknowledged write was a PUT/Copy/Complete (nothing in flight) GETs back
  exactly those bytes, with the MD5 (or the multipart "md5-of-md5s-N") ETag, and HEAD agrees;
- a key whose last acknowledged request was a delete is absent;
- a key with a request in flight holds the old or the new state, whole (bytes and ETag together);
- ListObjectsV2 lists exactly the keys GET finds, with the same sizes and ETags, and nothing else
  (no part or temp file ever becomes an object);
- an acknowledged upload is still listed with its acknowledged parts, and completes to the right
  bytes later; completed or aborted uploads are gone; one whose Complete was in flight may be
  either (counted: assembly.py discards an upload whose Complete died while collapsing its parts);
- the temp files and claims the killed process left are gone once the restarted server's GC has
  had its documented chance (start-up for those older than gc.TEMP_GRACE, then the next round of
  --gc-interval, 1 s here; unlocked metadata temp files are documented to wait for an hour);
- nothing is written outside ROOT (the server runs in an empty working folder with an empty
  TMPDIR, which must stay empty), and the restarted server logs no error;
- after the last round every upload is completed or aborted, every bucket emptied and deleted
  (a leftover of a crash would make DeleteBucket refuse), and the server stops cleanly.

SIGKILL ends the processes but not the kernel: what they wrote stays in the page cache and reaches
the disk anyway. This tests process crashes, not power loss; the order of fsyncs (what a power cut
could expose) is not exercised.

Exits non-zero on any violation, describing it (bucket/key, what was expected, what was found, and
the requests on that key in the round); the work folder is kept for a look.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

REPO = Path(__file__).resolve().parent.parent

ACCESS_KEY = "torture-access"
SECRET_KEY = "torture-secret"
REGION = "us-east-1"
DEFAULT_CT = "binary/octet-stream"
EMPTY_MD5 = hashlib.md5(b"").hexdigest()
KiB, MiB = 1024, 1024 * 1024
SMALL_PUT = 256 * KiB  # smallwrites.SMALL_PUT: bodies up to this take the write pool's path
LINK_MIN = 64 * KiB  # copies.LINK_MIN_SIZE: copies of objects this big are hard links
TEMP_GRACE = 1.0  # gc.TEMP_GRACE
# Temp files the GC leaves for an hour by design (gc.UNLOCKED_TEMP_AGE): unlocked and tiny.
UNLOCKED_TEMP_PREFIXES = ("meta-", "probe-")
CONTENT_TYPES = (None, "text/plain", "application/x-torture")

_POOL_SIZE = 40 * MiB


@functools.cache
def _pool() -> bytes:
    """Random bytes that blobs are cut from (made on first use, not on import)."""
    return random.Random(20240917).randbytes(_POOL_SIZE)


# -- data -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Blob:
    """Bytes made from a seed: regenerated on demand, so parts need not be kept in memory."""

    seed: int
    size: int

    def data(self) -> bytes:
        if self.size == 0:
            return b""
        head = hashlib.sha256(self.seed.to_bytes(16, "big")).digest()
        if self.size <= len(head):
            return head[: self.size]
        start = (self.seed * 7919) % (_POOL_SIZE - self.size + 1)
        return head + _pool()[start : start + self.size - len(head)]


@dataclasses.dataclass(frozen=True)
class State:
    """What a client can check of an object."""

    sha256: str
    etag: str
    size: int
    content_type: str = DEFAULT_CT
    tags: tuple[tuple[str, str], ...] = ()
    # The MD5 of the bytes, where the ETag is not it (a multipart object's): a copy's ETag.
    md5: str = dataclasses.field(default="", compare=False)

    def short(self) -> str:
        tags = f" tags={dict(self.tags)}" if self.tags else ""
        return f"<{self.size} B sha256={self.sha256[:12]} etag={self.etag} type={self.content_type}{tags}>"


def show(state: State | None) -> str:
    return "absent" if state is None else state.short()


def state_of(data: bytes, content_type: str | None = None, etag: str | None = None) -> State:
    return State(hashlib.sha256(data).hexdigest(), etag or hashlib.md5(data).hexdigest(), len(data), content_type or DEFAULT_CT)


def multipart_etag(md5s: list[str]) -> str:
    return f"{hashlib.md5(b''.join(bytes.fromhex(m) for m in md5s)).hexdigest()}-{len(md5s)}"


# -- the model: what each request may have done -----------------------------------------------
PENDING, ACKED, FAILED, AMBIGUOUS = "pending", "acked", "failed", "in flight at the crash"


@dataclasses.dataclass
class Op:
    kind: str
    client: int
    result: Any  # the state it gives (State | None for keys; PartState for parts)
    start: float
    end: float | None = None
    status: str = PENDING

    def describe(self, kill: float | None) -> str:
        def at(t: float | None) -> str:
            return "?" if t is None or kill is None else f"{t - kill:+.3f}s"

        shown = self.result.short() if hasattr(self.result, "short") else show(self.result)
        return f"{self.kind} by client {self.client} [{at(self.start)} .. {at(self.end)}] {self.status} -> {shown}"


class History:
    """One key's (or part's) state at the start of the round and the requests on it since."""

    def __init__(self, base: Any = None) -> None:
        self.base = base
        self.ops: list[Op] = []

    def candidates(self) -> list[Any]:
        """Every state the key may now be in: that of each acknowledged or in-flight request that
        no acknowledged request began after (in-flight ones never ended), and the round's
        starting state when nothing was acknowledged."""
        acked = [op for op in self.ops if op.status == ACKED]
        latest_start = max((op.start for op in acked), default=None)
        found: list[Any] = [] if acked else [self.base]
        for op in self.ops:
            if op.status == ACKED:
                assert op.end is not None and latest_start is not None
                if op.end >= latest_start:
                    found.append(op.result)
            elif op.status in (AMBIGUOUS, PENDING):
                found.append(op.result)
        return found

    def settle(self, state: Any) -> None:
        self.base = state
        self.ops = []


@dataclasses.dataclass(frozen=True)
class PartState:
    blob: Blob
    etag: str

    def short(self) -> str:
        return f"<part {self.blob.size} B etag={self.etag}>"


@dataclasses.dataclass
class Upload:
    bucket: str
    key: str
    content_type: str | None
    upload_id: str | None = None  # None while its Create is in flight
    status: str = "open"  # creating, open, completing, aborting, completed, aborted
    parts: dict[int, History] = dataclasses.field(default_factory=dict)
    sealed: bool = False  # a short part was uploaded as the last one: no more new parts
    result: State | None = None  # what its (last) Complete would make of the key

    def known_parts(self) -> dict[int, PartState]:
        """The acknowledged state of each part (within a round a client's requests are in order)."""
        out = {}
        for number, hist in sorted(self.parts.items()):
            cands = hist.candidates()
            if len(cands) == 1 and cands[0] is not None:
                out[number] = cands[0]
        return out


@dataclasses.dataclass
class ClientState:
    ident: int
    keys: list[tuple[str, str]]  # (bucket, key) of files this client alone writes
    markers: list[tuple[str, str]]
    known: dict[tuple[str, str], State | None] = dataclasses.field(default_factory=dict)
    uploads: list[Upload] = dataclasses.field(default_factory=list)
    seq: int = 0


class World:
    def __init__(self, buckets: list[str], clients: int, seed: int) -> None:
        self.buckets = buckets
        self.lock = threading.Lock()
        self.histories: dict[tuple[str, str], History] = {}
        self.shared = [(b, f"shared/s{n}") for b in buckets for n in range(3)]
        self.clients = []
        for c in range(clients):
            files = [(b, f"c{c}/k{n}") for b in buckets for n in range(5)]
            files += [(b, f"c{c}/deep/x/y/z{n % 2}/d{n}") for b in buckets for n in range(3)]
            markers = [(b, f"c{c}/dir{n}/") for b in buckets for n in range(2)]
            markers += [(b, f"c{c}/deep/x/") for b in buckets] + [(b, f"c{c}/deep/x/y/") for b in buckets]
            self.clients.append(ClientState(c, files, markers))
        self.seed = seed
        self.part_size = 5 * MiB
        self.kill_time: float | None = None
        self.killed = threading.Event()
        self.violations: list[str] = []
        self.unlocked_seen: set[Path] = set()
        self.counts: dict[str, int] = {}

    def history(self, bucket: str, key: str) -> History:
        with self.lock:
            return self.histories.setdefault((bucket, key), History())

    def begin(self, hist: History, kind: str, client: int, result: Any) -> Op:
        op = Op(kind, client, result, time.monotonic())
        with self.lock:
            hist.ops.append(op)
        return op

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def violate(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)


# -- the server -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """s3serve in a process group of its own, so SIGKILL reaches every worker at once."""

    def __init__(self, work: Path, root: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.work = work
        self.root = root
        self.args = args
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.log: Path | None = None
        self.starts = 0

    def start(self, workers: int) -> None:
        port = free_port()
        self.starts += 1
        self.log = self.work / "logs" / f"server-{self.starts:04d}.log"
        self.log.parent.mkdir(exist_ok=True)
        cmd = [
            sys.executable, "-m", "s3serve", "serve", str(self.root),
            "--address", f"127.0.0.1:{port}", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
            "--workers", str(workers), *self.args,
        ]
        env = dict(os.environ)
        # The s3serve next to this tool, and nothing of it written outside ROOT.
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        env["TMPDIR"] = str(self.work / "tmpdir")
        env.update(self.env)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.work / "cwd", env=env, start_new_session=True
            )
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"s3serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # any HTTP answer: serving (another worker may still be starting)
            except OSError:
                pass
            time.sleep(0.03)
        raise RuntimeError(f"s3serve did not answer on {self.endpoint}:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        # Workers of the group die with it; wait until none is left holding a lock.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)

    def stop(self) -> int:
        """A graceful stop (SIGTERM to the group's leader); its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def log_errors(log: Path | None) -> list[str]:
    if log is None or not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    return [line for line in lines if "Traceback" in line or " ERROR " in line or "CRITICAL" in line]


def make_client(endpoint: str) -> Any:
    # Default settings (CRC32 checksums on uploads), but every request sent once: a retry after
    # the restart would make "in flight at the crash" mean nothing.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=120, max_pool_connections=16),
    )


# -- the clients ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Options:
    rounds: int = 50
    clients: int = 4
    buckets: int = 3
    max_size: int = 20 * MiB
    part_size: int = 5 * MiB
    max_parts: int = 4
    kill_min: float = 0.2
    kill_max: float = 3.0
    workers_mix: float = 0.3
    workers: tuple[int, ...] | None = None  # --workers of round n is workers[n % len], instead of the mix
    fsync: bool = True
    sidecar: bool = False  # records in sidecar files, as where the filesystem has no user xattrs
    seed: int | None = None
    work: Path | None = None
    keep: bool = False
    keep_going: bool = False


class _Stop(Exception):
    """The server is gone: this client's round is over."""


class Client(threading.Thread):
    def __init__(self, world: World, state: ClientState, endpoint: str, opts: Options, rng: random.Random) -> None:
        super().__init__(name=f"torture-client-{state.ident}", daemon=True)
        self.world = world
        self.state = state
        self.s3 = make_client(endpoint)
        self.opts = opts
        self.rng = rng

    # .. plumbing
    def run(self) -> None:
        try:
            while not self.world.killed.is_set():
                self.step()
        except _Stop:
            pass
        except Exception as e:  # a bug of the tool: say so loudly
            self.world.violate(f"client {self.state.ident}: tool error {type(e).__name__}: {e}")

    def _call(self, op: Op | list[Op], what: str, call: Callable[[], Any]) -> Any:
        ops = op if isinstance(op, list) else [op]
        try:
            answer = call()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if self.world.killed.is_set():
                # An answer cut short by the kill (a 200 whose XML never came) reads as an error.
                for o in ops:
                    o.status = AMBIGUOUS
                raise _Stop() from None
            for o in ops:
                o.status = FAILED
            self.world.violate(f"client {self.state.ident}: {what} failed before any crash: {code}: {e}")
            raise _Stop() from None
        except (BotoCoreError, OSError) as e:
            for o in ops:
                o.status = AMBIGUOUS
            if not self.world.killed.is_set():
                self.world.violate(f"client {self.state.ident}: {what} failed before any crash: {type(e).__name__}: {e}")
            raise _Stop() from None
        now = time.monotonic()
        for o in ops:
            o.end, o.status = now, ACKED
        return answer

    def blob(self, size: int) -> Blob:
        self.state.seq += 1
        return Blob((self.world.seed * 1_000_003 + self.state.ident) * 10_000_000 + self.state.seq, size)

    def size(self) -> int:
        r = self.rng.random()
        if r < 0.15:
            return self.rng.choice([0, 1, SMALL_PUT - 1, SMALL_PUT, SMALL_PUT + 1, LINK_MIN])
        if r < 0.75:
            return self.rng.randint(0, SMALL_PUT)
        if r < 0.95:
            return self.rng.randint(SMALL_PUT, max(SMALL_PUT, min(self.opts.max_size, 2 * MiB)))
        return self.rng.randint(SMALL_PUT, self.opts.max_size)

    # .. the mix
    def step(self) -> None:
        r = self.rng.random()
        if r < 0.30:
            self.put(*self.rng.choice(self.state.keys))
        elif r < 0.38:
            self.delete(*self.rng.choice(self.state.keys))
        elif r < 0.52:
            self.copy()
        elif r < 0.72:
            self.multipart()
        elif r < 0.79:
            self.tag()
        elif r < 0.86:
            self.marker()
        elif r < 0.92:
            self.shared()
        elif r < 0.96:
            self.rename()
        else:
            self.read()

    def put(self, bucket: str, key: str, shared: bool = False) -> None:
        blob = self.blob(self.size())
        data = blob.data()
        ctype = self.rng.choice(CONTENT_TYPES)
        state = state_of(data, ctype)
        hist = self.world.history(bucket, key)
        op = self.world.begin(hist, f"PutObject({blob.size} B)", self.state.ident, state)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": data}
        if ctype:
            kwargs["ContentType"] = ctype
        answer = self._call(op, f"PutObject {bucket}/{key}", lambda: self.s3.put_object(**kwargs))
        if answer["ETag"].strip('"') != state.etag:
            self.world.violate(f"PutObject {bucket}/{key} answered ETag {answer['ETag']}, the MD5 of the bytes is {state.etag}")
        if not shared:
            self.state.known[(bucket, key)] = state
        self.world.count("put")

    def delete(self, bucket: str, key: str, shared: bool = False) -> None:
        hist = self.world.history(bucket, key)
        op = self.world.begin(hist, "DeleteObject", self.state.ident, None)
        self._call(op, f"DeleteObject {bucket}/{key}", lambda: self.s3.delete_object(Bucket=bucket, Key=key))
        if not shared:
            self.state.known[(bucket, key)] = None
        self.world.count("delete")

    def current(self, bucket: str, key: str) -> State | None:
        """This client's own key's state: known exactly (its requests on it are in order)."""
        if (bucket, key) not in self.state.known:
            cands = self.world.history(bucket, key).candidates()
            assert len(cands) == 1, (bucket, key, cands)
            self.state.known[(bucket, key)] = cands[0]
        return self.state.known[(bucket, key)]

    def copy(self) -> None:
        present = self.present()
        if not present:
            return self.put(*self.rng.choice(self.state.keys))
        # Large sources first: those are linked, and a copy onto an earlier copy is the hard case.
        large = [bk for bk in present if (s := self.current(*bk)) is not None and s.size >= LINK_MIN]
        sb, sk = self.rng.choice(large if large and self.rng.random() < 0.7 else present)
        shared = self.rng.random() < 0.15
        db, dk = self.rng.choice(self.world.shared if shared else self.state.keys)
        if (db, dk) == (sb, sk):
            return None
        src = self.current(sb, sk)
        assert src is not None
        kwargs: dict[str, Any] = {"Bucket": db, "Key": dk, "CopySource": {"Bucket": sb, "Key": sk}}
        # S3 copies in one action: a multipart object's copy is a single-part one, ETag its MD5.
        result = dataclasses.replace(src, etag=src.md5) if "-" in src.etag else src
        how = self.rng.random()
        if how < 0.2:
            ctype = self.rng.choice(CONTENT_TYPES[1:])
            kwargs.update(MetadataDirective="REPLACE", ContentType=ctype)
            result = dataclasses.replace(result, content_type=ctype)
        elif how < 0.35:
            tag = str(self.rng.randint(0, 999))
            kwargs.update(TaggingDirective="REPLACE", Tagging=f"copy={tag}")
            result = dataclasses.replace(result, tags=(("copy", tag),))
        hist = self.world.history(db, dk)
        op = self.world.begin(hist, f"CopyObject(from {sb}/{sk})", self.state.ident, result)
        answer = self._call(op, f"CopyObject {sb}/{sk} -> {db}/{dk}", lambda: self.s3.copy_object(**kwargs))
        etag = answer.get("CopyObjectResult", {}).get("ETag", "").strip('"')
        if etag != result.etag:
            self.world.violate(f"CopyObject {sb}/{sk} -> {db}/{dk} answered ETag {etag}, not {result.etag}")
        if not shared:
            self.state.known[(db, dk)] = result
        self.world.count("copy")
        return None

    def present(self) -> list[tuple[str, str]]:
        """The keys this client knows to hold an object now."""
        return [bk for bk in self.state.keys if self.current(*bk) is not None]

    def rename(self) -> None:
        """RenameObject within a bucket: the source's state moves to the destination."""
        present = self.present()
        if not present:
            return None
        # Linked copies first (large objects): their records are per-key sidecars.
        large = [bk for bk in present if (s := self.current(*bk)) is not None and s.size >= LINK_MIN]
        bucket, src_key = self.rng.choice(large if large and self.rng.random() < 0.7 else present)
        dst_key = self.rng.choice([k for b, k in self.state.keys if b == bucket and k != src_key])
        src = self.current(bucket, src_key)
        ops = [
            self.world.begin(self.world.history(bucket, dst_key), f"RenameObject(from {src_key})", self.state.ident, src),
            self.world.begin(self.world.history(bucket, src_key), f"RenameObject(to {dst_key})", self.state.ident, None),
        ]
        self._call(
            ops,
            f"RenameObject {bucket}/{src_key} -> {dst_key}",
            lambda: self.s3.rename_object(Bucket=bucket, Key=dst_key, RenameSource=f"{bucket}/{src_key}"),
        )
        self.state.known[(bucket, dst_key)] = src
        self.state.known[(bucket, src_key)] = None
        self.world.count("rename")
        return None

    def tag(self) -> None:
        present = self.present()
        if not present:
            return None
        bucket, key = self.rng.choice(present)
        src = self.current(bucket, key)
        assert src is not None
        tags = (("t", str(self.rng.randint(0, 9999))), ("client", str(self.state.ident)))[: self.rng.randint(0, 2)]
        result = dataclasses.replace(src, tags=tuple(sorted(tags)))
        hist = self.world.history(bucket, key)
        op = self.world.begin(hist, "PutObjectTagging", self.state.ident, result)
        tagging = {"TagSet": [{"Key": k, "Value": v} for k, v in tags]}
        self._call(op, f"PutObjectTagging {bucket}/{key}", lambda: self.s3.put_object_tagging(Bucket=bucket, Key=key, Tagging=tagging))
        self.state.known[(bucket, key)] = result
        self.world.count("tagging")
        return None

    def marker(self) -> None:
        bucket, key = self.rng.choice(self.state.markers)
        if self.rng.random() < 0.6:
            state = State(hashlib.sha256(b"").hexdigest(), EMPTY_MD5, 0)
            hist = self.world.history(bucket, key)
            op = self.world.begin(hist, "PutObject(folder marker)", self.state.ident, state)
            self._call(op, f"PutObject {bucket}/{key}", lambda: self.s3.put_object(Bucket=bucket, Key=key, Body=b""))
            self.world.count("marker")
        else:
            self.delete(bucket, key)

    def shared(self) -> None:
        bucket, key = self.rng.choice(self.world.shared)
        if self.rng.random() < 0.75:
            self.put(bucket, key, shared=True)
        else:
            self.delete(bucket, key, shared=True)

    def read(self) -> None:
        bucket, key = self.rng.choice(self.state.keys)
        expected = self.current(bucket, key)
        try:
            got = observe(self.s3, bucket, key, tags=False)
        except Inconsistent as e:
            self.world.violate(f"while serving: {e}")
            raise _Stop() from None
        except (BotoCoreError, OSError, ClientError) as e:
            if not self.world.killed.is_set():
                self.world.violate(f"client {self.state.ident}: GET {bucket}/{key} failed before any crash: {e}")
            raise _Stop() from None
        if not matches(expected, got, tags=False):
            self.world.violate(f"GET {bucket}/{key} while serving: expected {show(expected)}, got {show(got)}")
        self.world.count("read")

    # .. multipart
    def multipart(self) -> None:
        live = [u for u in self.state.uploads if u.status == "open"]
        if not live or (len(live) < 2 and self.rng.random() < 0.25):
            return self.create_upload()
        upload = self.rng.choice(live)
        parts = upload.known_parts()
        r = self.rng.random()
        if r < 0.08:
            return self.abort(upload)
        if parts and r < 0.22:
            return self.upload_part(upload, self.rng.choice(list(parts)))
        if parts and (upload.sealed or len(parts) >= self.opts.max_parts or r < 0.45):
            return self.complete(upload)
        return self.upload_part(upload, max(parts, default=0) + 1)

    def create_upload(self) -> None:
        bucket, key = self.rng.choice(self.state.keys)
        ctype = self.rng.choice(CONTENT_TYPES)
        upload = Upload(bucket, key, ctype, status="creating")
        self.state.uploads.append(upload)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if ctype:
            kwargs["ContentType"] = ctype
        # No key state changes: an Op of its own kind, kept on the upload.
        op = Op("CreateMultipartUpload", self.state.ident, None, time.monotonic())
        answer = self._call(op, f"CreateMultipartUpload {bucket}/{key}", lambda: self.s3.create_multipart_upload(**kwargs))
        upload.upload_id, upload.status = answer["UploadId"], "open"
        self.world.count("create")

    def upload_part(self, upload: Upload, number: int) -> None:
        parts = upload.known_parts()
        last = number >= max(parts, default=0)
        size = self.opts.part_size
        if last and number > 1 and self.rng.random() < 0.4:
            size = self.rng.randint(1, self.opts.part_size)  # a short last part
        elif last and number == 1 and self.rng.random() < 0.3:
            size = self.rng.randint(0, self.opts.part_size)
        blob = self.blob(size)
        data = blob.data()
        part = PartState(blob, hashlib.md5(data).hexdigest())
        hist = upload.parts.setdefault(number, History())
        op = self.world.begin(hist, f"UploadPart({number}, {size} B)", self.state.ident, part)
        assert upload.upload_id is not None
        uid = upload.upload_id
        answer = self._call(
            op,
            f"UploadPart {upload.bucket}/{upload.key} {uid} #{number}",
            lambda: self.s3.upload_part(Bucket=upload.bucket, Key=upload.key, UploadId=uid, PartNumber=number, Body=data),
        )
        if answer["ETag"].strip('"') != part.etag:
            self.world.violate(f"UploadPart #{number} of {upload.bucket}/{upload.key} answered ETag {answer['ETag']}, expected {part.etag}")
        if last and size < self.opts.part_size:
            upload.sealed = True
        self.world.count("reupload" if number in parts else "part")

    def complete(self, upload: Upload) -> None:
        parts = upload.known_parts()
        numbers = sorted(parts)
        if any(parts[n].blob.size < self.opts.part_size for n in numbers[:-1]):
            return self.abort(upload)  # cannot happen by construction; never send a doomed Complete
        h, md5 = hashlib.sha256(), hashlib.md5()
        for n in numbers:
            h.update(parts[n].blob.data())
            md5.update(parts[n].blob.data())
        size = sum(parts[n].blob.size for n in numbers)
        etag = multipart_etag([parts[n].etag for n in numbers])
        state = State(h.hexdigest(), etag, size, upload.content_type or DEFAULT_CT, md5=md5.hexdigest())
        hist = self.world.history(upload.bucket, upload.key)
        op = self.world.begin(hist, f"CompleteMultipartUpload({len(numbers)} parts)", self.state.ident, state)
        upload.status, upload.result = "completing", state
        assert upload.upload_id is not None
        uid = upload.upload_id
        listed = {"Parts": [{"PartNumber": n, "ETag": f'"{parts[n].etag}"'} for n in numbers]}
        answer = self._call(
            op,
            f"CompleteMultipartUpload {upload.bucket}/{upload.key} {uid}",
            lambda: self.s3.complete_multipart_upload(Bucket=upload.bucket, Key=upload.key, UploadId=uid, MultipartUpload=listed),
        )
        upload.status = "completed"
        if answer["ETag"].strip('"') != state.etag:
            self.world.violate(f"Complete of {upload.bucket}/{upload.key} answered ETag {answer['ETag']}, expected {state.etag}")
        self.state.known[(upload.bucket, upload.key)] = state
        self.world.count("complete")
        return None

    def abort(self, upload: Upload) -> None:
        upload.status = "aborting"
        op = Op("AbortMultipartUpload", self.state.ident, None, time.monotonic())
        assert upload.upload_id is not None
        uid = upload.upload_id
        self._call(op, f"AbortMultipartUpload {uid}", lambda: self.s3.abort_multipart_upload(Bucket=upload.bucket, Key=upload.key, UploadId=uid))
        upload.status = "aborted"
        self.world.count("abort")


# -- checking -------------------------------------------------------------------------------------
def observe(s3: Any, bucket: str, key: str, tags: bool = True) -> State | None:
    """HEAD, GET (checksum validation on) and GetObjectTagging of a key, which must agree."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] != 404:
            raise
        head = None
    try:
        got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        body = got["Body"].read()
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] != 404:
            raise
        if head is not None:
            raise Inconsistent(f"HEAD {bucket}/{key} found it, GET answered 404") from None
        return None
    if head is None:
        raise Inconsistent(f"HEAD {bucket}/{key} answered 404, GET found {len(body)} B")
    etag = got["ETag"].strip('"')
    if got["ContentLength"] != len(body):
        raise Inconsistent(f"GET {bucket}/{key}: Content-Length {got['ContentLength']}, body {len(body)} B")
    if (head["ContentLength"], head["ETag"].strip('"'), head.get("ContentType")) != (len(body), etag, got.get("ContentType")):
        raise Inconsistent(
            f"HEAD {bucket}/{key} says {head['ContentLength']} B etag {head['ETag']} type {head.get('ContentType')}, "
            f"GET gave {len(body)} B etag {got['ETag']} type {got.get('ContentType')}"
        )
    tagset: tuple[tuple[str, str], ...] = ()
    if tags:
        tagset = tuple(sorted((t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]))
    md5 = hashlib.md5(body).hexdigest()
    ctype = got.get("ContentType") or DEFAULT_CT
    return State(hashlib.sha256(body).hexdigest(), etag, len(body), ctype, tagset, md5)


class Inconsistent(Exception):
    """Two answers about one key contradict each other."""


def matches(expected: State | None, got: State | None, tags: bool = True) -> bool:
    if expected is None or got is None:
        return expected is got
    if not tags:
        return dataclasses.replace(expected, tags=()) == dataclasses.replace(got, tags=())
    return expected == got


def list_objects(s3: Any, bucket: str) -> dict[str, tuple[int, str]]:
    listed: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            listed[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    return listed


def list_uploads(s3: Any, bucket: str) -> list[tuple[str, str]]:
    found = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
    return found


def list_parts(s3: Any, bucket: str, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
    parts: dict[int, tuple[int, str]] = {}
    for page in s3.get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id):
        for p in page.get("Parts", []):
            parts[p["PartNumber"]] = (p["Size"], p["ETag"].strip('"'))
    return parts


def _history_text(hist: History | None, kill: float | None) -> str:
    if hist is None or not hist.ops:
        return f"\n      round began with {show(hist.base if hist else None)}; no requests on it this round"
    lines = [f"round began with {show(hist.base)}", *(op.describe(kill) for op in hist.ops)]
    return "".join(f"\n      {line}" for line in lines)


def verify(world: World, endpoint: str, threads: int = 4) -> None:
    """Check every key and upload against the model; settle the model on what was found."""
    s3 = make_client(endpoint)
    kill = world.kill_time
    for bucket in world.buckets:
        listed = list_objects(s3, bucket)
        with world.lock:
            modelled = {k for (b, k) in world.histories if b == bucket}
        keys = sorted(modelled | set(listed))

        def look(key: str, bucket: str = bucket) -> tuple[str, State | None | Inconsistent]:
            try:
                return key, observe(s3, bucket, key)
            except Inconsistent as e:
                return key, e

        with ThreadPoolExecutor(threads) as pool:
            seen = list(pool.map(look, keys))
        for key, got in seen:
            hist = world.histories.get((bucket, key))
            where = f"{bucket}/{key}"
            if isinstance(got, Inconsistent):
                world.violate(f"{where}: {got}{_history_text(hist, kill)}")
                continue
            if hist is None:
                world.violate(f"{where}: an object nobody wrote: {show(got)}")
                continue
            cands = hist.candidates()
            if not any(matches(c, got) for c in cands):
                want = " or ".join(dict.fromkeys(show(c) for c in cands))
                world.violate(f"{where}: expected {want}; got {show(got)}{_history_text(hist, kill)}")
            if len(dict.fromkeys(map(show, cands))) > 1:
                world.count("keys with a request in flight")
            in_listing = listed.get(key)
            if got is None and in_listing is not None:
                world.violate(f"{where}: listed ({in_listing[0]} B, etag {in_listing[1]}) but GET answers 404")
            elif got is not None and in_listing != (got.size, got.etag):
                world.violate(f"{where}: GET finds {show(got)}, the listing says {in_listing}")
            hist.settle(got)
        verify_uploads(world, s3, bucket)
    for client in world.clients:
        client.known.clear()


def verify_uploads(world: World, s3: Any, bucket: str) -> None:
    listed = list_uploads(s3, bucket)
    listed_ids = {uid: key for key, uid in listed}
    mine: set[str] = set()
    creating: list[Upload] = []
    for client in world.clients:
        for upload in list(client.uploads):
            if upload.bucket != bucket:
                continue
            if upload.upload_id is None:
                creating.append(upload)
                client.uploads.remove(upload)
                continue
            mine.add(upload.upload_id)
            where = f"upload {upload.upload_id[-8:]} of {bucket}/{upload.key}"
            present = upload.upload_id in listed_ids
            if upload.status in ("completed", "aborted"):
                if present:
                    world.violate(f"{where}: {upload.status} (acknowledged) but still listed")
                client.uploads.remove(upload)
                continue
            if not present:
                if upload.status == "open":
                    world.violate(f"{where}: acknowledged, never completed or aborted, but gone after the crash")
                elif upload.status == "completing":
                    hist = world.histories.get((bucket, upload.key))
                    if hist is not None and hist.base == upload.result:
                        world.count("uploads gone after an interrupted Complete that published")
                    else:  # by design (assembly.py): killed while collapsing its parts
                        world.count("uploads discarded after a Complete killed before publishing")
                client.uploads.remove(upload)
                continue
            if upload.status == "completing":
                world.count("uploads given back after an interrupted Complete")
            upload.status = "open"
            verify_parts(world, s3, upload)
    # Uploads whose Create was in flight: the only ones the clients do not know.
    for uid, key in listed_ids.items():
        if uid in mine:
            continue
        match = next((u for u in creating if u.key == key), None)
        if match is None:
            world.violate(f"{bucket}/{key}: upload {uid} listed that no client created")
            continue
        creating.remove(match)
        world.count("uploads whose Create was in flight, aborted")
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def verify_parts(world: World, s3: Any, upload: Upload) -> None:
    assert upload.upload_id is not None
    where = f"upload {upload.upload_id[-8:]} of {upload.bucket}/{upload.key}"
    try:
        found = list_parts(s3, upload.bucket, upload.key, upload.upload_id)
    except ClientError as e:
        world.violate(f"{where}: listed, but ListParts answers {e}")
        return
    for number in sorted(set(found) | set(upload.parts)):
        hist = upload.parts.get(number)
        if hist is None:
            world.violate(f"{where}: part {number} listed ({found[number]}) that was never uploaded")
            continue
        cands = hist.candidates()
        got = found.get(number)
        match = next((c for c in cands if (c is None and got is None) or (c is not None and got == (c.blob.size, c.etag))), "none")
        if match == "none":
            want = " or ".join(show(c) if c is None else c.short() for c in cands)
            world.violate(f"{where}: part {number}: expected {want}; got {got}{_history_text(hist, world.kill_time)}")
            hist.settle(None)
            continue
        hist.settle(match)
        if match is None:
            del upload.parts[number]
    parts = upload.known_parts()
    upload.sealed = bool(parts) and parts[max(parts)].blob.size < world.part_size


# -- leftovers ------------------------------------------------------------------------------------
def temp_files(root: Path) -> set[Path]:
    """Temp files and claims of the hidden folder (what the GC is to clean after a crash)."""
    hidden = root / ".s3serve"
    found: set[Path] = set()
    with contextlib.suppress(FileNotFoundError):
        found |= set((hidden / "tmp").iterdir())
    staging = hidden / "multipart"
    for bucket in staging.iterdir() if staging.is_dir() else []:
        for entry in bucket.iterdir() if bucket.is_dir() else []:
            if "." in entry.name:  # <upload id>.<how>-<rand>: a claim
                found.add(entry)
            elif entry.is_dir():
                with contextlib.suppress(FileNotFoundError):
                    found |= {p for p in entry.iterdir() if p.name.startswith("tmp-")}
    return found


def check_leftovers(world: World, root: Path, left: set[Path], wait: float) -> None:
    """The crashed process's temp files must go once the GC had its chance: at start-up for those
    older than TEMP_GRACE, else at its next round (--gc-interval)."""
    deadline = time.monotonic() + wait
    while True:
        still = {p for p in left if os.path.lexists(p) and not p.name.startswith(UNLOCKED_TEMP_PREFIXES)}
        if not still or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for path in sorted(still):
        world.violate(f"left behind by the crashed server and not cleaned by the GC: {path.relative_to(root)}")
    unlocked = {p for p in left if os.path.lexists(p) and p.name.startswith(UNLOCKED_TEMP_PREFIXES)}
    if unlocked - world.unlocked_seen:
        world.count("unlocked metadata temp files left (GC waits an hour, by design)", len(unlocked - world.unlocked_seen))
        world.unlocked_seen |= unlocked


def check_sidecar_mode(world: World, root: Path) -> None:
    """In --sidecar runs, records are sidecar files and never an object's xattr."""
    sidecars = sum(1 for _ in (root / ".s3serve" / "meta").rglob("*.json"))
    world.count("sidecar records seen after a restart", sidecars)
    for bucket in world.buckets:
        for path in (root / bucket).rglob("*"):
            with contextlib.suppress(OSError):
                if "user.s3serve" in os.listxattr(path, follow_symlinks=False):
                    world.violate(f"an xattr record in sidecar mode: {path.relative_to(root)}")


def check_outside(world: World, work: Path) -> None:
    for name in ("cwd", "tmpdir"):
        extra = list((work / name).iterdir())
        if extra:
            world.violate(f"written outside ROOT: {[str(p) for p in extra]}")
    unexpected = {p.name for p in work.iterdir()} - {"root", "cwd", "tmpdir", "logs"}
    if unexpected:
        world.violate(f"written outside ROOT, beside it: {sorted(unexpected)}")


def staged_uploads(root: Path) -> list[str]:
    staging = root / ".s3serve" / "multipart"
    return [f"{b.name}/{e.name}" for b in (staging.iterdir() if staging.is_dir() else []) for e in b.iterdir()]


# -- rounds ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Summary:
    rounds: int
    violations: list[str]
    counts: dict[str, int]
    work: Path
    seconds: float

    def text(self) -> str:
        lines = [f"{self.rounds} rounds in {self.seconds:.0f}s; {len(self.violations)} violations"]
        lines += [f"  {name}: {n}" for name, n in sorted(self.counts.items())]
        lines += [f"VIOLATION {v}" for v in self.violations]
        return "\n".join(lines)


def run(opts: Options, log: Callable[[str], None] = print) -> Summary:
    seed = opts.seed if opts.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = opts.work or Path(tempfile.mkdtemp(prefix="s3serve-crash-torture-"))
    for name in ("root", "cwd", "tmpdir", "logs"):
        (work / name).mkdir(parents=True, exist_ok=True)
    root = work / "root"
    log(f"crash torture: seed {seed}, work folder {work}" + (", records in sidecar files" if opts.sidecar else ""))
    extra = ["--min-part-size", str(opts.part_size), "--gc-interval", "1s"]
    if not opts.fsync:
        extra.append("--no-fsync")
    # A testing aid of the server's (app.default_backend): sidecar mode on a filesystem with xattrs.
    server = Server(work, root, extra, {"S3SERVE_TEST_SIDECARS": "1"} if opts.sidecar else None)
    world = World([f"torture-{c}" for c in "abcdefgh"[: opts.buckets]], opts.clients, seed)
    world.part_size = opts.part_size
    started = time.monotonic()
    rounds = 0

    def pick_workers(n: int) -> int:
        if opts.workers:
            return opts.workers[n % len(opts.workers)]
        return 2 if rng.random() < opts.workers_mix else 1

    workers = pick_workers(0)
    server.start(workers)
    try:
        s3 = make_client(server.endpoint)
        for bucket in world.buckets:
            s3.create_bucket(Bucket=bucket)
        for rounds in range(1, opts.rounds + 1):
            before = len(world.violations)
            world.killed.clear()
            clients = [Client(world, c, server.endpoint, opts, random.Random(rng.random())) for c in world.clients]
            for client in clients:
                client.start()
            delay = rng.uniform(opts.kill_min, opts.kill_max)
            time.sleep(delay)
            world.killed.set()
            world.kill_time = time.monotonic()
            server.kill()
            killed_log, killed_workers = server.log, workers
            for client in clients:
                client.join(60)
                if client.is_alive():
                    world.violate(f"{client.name} still waiting a minute after the kill")
            mark_cut_off(world)
            left = temp_files(root)
            world.count("temp files and claims found after a kill", len(left))
            workers = pick_workers(rounds)
            t0 = time.monotonic()
            server.start(workers)
            t1 = time.monotonic()
            verify(world, server.endpoint)
            t2 = time.monotonic()
            check_leftovers(world, root, left, wait=TEMP_GRACE + 1.0 + 2.0)
            t3 = time.monotonic()
            check_outside(world, work)
            if opts.sidecar:
                check_sidecar_mode(world, root)
            for path in (killed_log, server.log):
                for line in log_errors(path):
                    world.violate(f"server log {path.name if path else '?'}: {line}")
            new = world.violations[before:]
            objects = sum(1 for h in world.histories.values() if h.base is not None)
            uploads = sum(len(c.uploads) for c in world.clients)
            log(
                f"round {rounds}: workers={killed_workers} killed after {delay:.2f}s; now {objects} objects, "
                f"{uploads} uploads open; restart {t1 - t0:.1f}s, check {t2 - t1:.1f}s, GC {t3 - t2:.1f}s"
                + (f"; {len(new)} VIOLATIONS" if new else "; ok")
            )
            for v in new:
                log(f"  VIOLATION {v}")
            if new and not opts.keep_going:
                break
        else:
            finish(world, server, root)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()
    summary = Summary(rounds, list(world.violations), dict(world.counts), work, time.monotonic() - started)
    if not summary.violations and not opts.keep and opts.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def mark_cut_off(world: World) -> None:
    """Requests the kill left without an answer (a client still stuck, say) are in flight too."""
    hists = list(world.histories.values())
    hists += [h for c in world.clients for u in c.uploads for h in u.parts.values()]
    for hist in hists:
        for op in hist.ops:
            if op.status == PENDING:
                op.status = AMBIGUOUS


def finish(world: World, server: Server, root: Path) -> None:
    """After the last round: complete or abort every upload, empty and delete every bucket (an
    upload or file a crash left would make DeleteBucket refuse), then stop gracefully."""
    s3 = make_client(server.endpoint)
    for index, upload in enumerate(u for c in world.clients for u in c.uploads):
        assert upload.upload_id is not None
        parts = upload.known_parts()
        numbers = sorted(parts)
        if numbers and index % 2 == 0 and all(parts[n].blob.size >= world.part_size for n in numbers[:-1]):
            listed = {"Parts": [{"PartNumber": n, "ETag": f'"{parts[n].etag}"'} for n in numbers]}
            try:
                s3.complete_multipart_upload(Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id, MultipartUpload=listed)
            except ClientError as e:
                world.violate(f"final Complete of {upload.bucket}/{upload.key} {upload.upload_id}: {e}")
                continue
            h = hashlib.sha256()
            for n in numbers:
                h.update(parts[n].blob.data())
            got = observe(s3, upload.bucket, upload.key, tags=False)
            if got is None or got.sha256 != h.hexdigest() or got.etag != multipart_etag([parts[n].etag for n in numbers]):
                world.violate(f"final Complete of {upload.bucket}/{upload.key}: got {show(got)}")
            world.count("uploads completed after the last round")
        else:
            s3.abort_multipart_upload(Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id)
            world.count("uploads aborted after the last round")
    for client in world.clients:
        client.uploads.clear()
    for bucket in world.buckets:
        keys = list(list_objects(s3, bucket))
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        for key, uid in list_uploads(s3, bucket):
            world.violate(f"after aborting every known upload, {bucket}/{key} {uid} is still listed")
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
        try:
            s3.delete_bucket(Bucket=bucket)
        except ClientError as e:
            world.violate(f"DeleteBucket {bucket} after emptying it: {e}; staged: {staged_uploads(root)}")
    left = [p for p in temp_files(root) if not p.name.startswith(UNLOCKED_TEMP_PREFIXES)]
    if left:
        world.violate(f"temp files left after the last round: {sorted(str(p.relative_to(root)) for p in left)}")
    if staged_uploads(root):
        world.violate(f"staging left after every upload was finished: {staged_uploads(root)}")
    code = server.stop()
    for line in log_errors(server.log):
        world.violate(f"server logged: {line}")
    if code != 0:
        world.violate(f"graceful stop exited with {code}")


def parse_args(argv: Iterable[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--buckets", type=int, default=3)
    p.add_argument("--max-size", type=int, default=20 * MiB, help="largest PutObject body in bytes (default 20 MiB)")
    p.add_argument("--part-size", type=int, default=5 * MiB, help="multipart part size; also the server's --min-part-size")
    p.add_argument("--max-parts", type=int, default=4)
    p.add_argument("--kill-min", type=float, default=0.2)
    p.add_argument("--kill-max", type=float, default=3.0)
    p.add_argument("--workers-mix", type=float, default=0.3, help="share of rounds run with --workers 2")
    p.add_argument("--no-fsync", action="store_true", help="run the server with --no-fsync")
    p.add_argument("--sidecar", action="store_true", help="records in sidecar files, as on a filesystem without user xattrs")
    p.add_argument("--seed", type=int)
    p.add_argument("--work", type=Path, help="work folder (default: a new temp folder, removed when all went well)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--keep-going", action="store_true", help="go on after a round with violations")
    a = p.parse_args(list(argv) if argv is not None else None)
    return Options(
        rounds=a.rounds, clients=a.clients, buckets=a.buckets, max_size=a.max_size, part_size=a.part_size,
        max_parts=a.max_parts, kill_min=a.kill_min, kill_max=a.kill_max, workers_mix=a.workers_mix,
        fsync=not a.no_fsync, sidecar=a.sidecar, seed=a.seed, work=a.work, keep=a.keep, keep_going=a.keep_going,
    )


def main(argv: Iterable[str] | None = None) -> int:
    opts = parse_args(argv)
    # Stopped from outside (kill, make interrupted): unwind, so the server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    summary = run(opts, log=lambda line: print(line, flush=True))
    print(summary.text())
    if summary.violations:
        print(f"work folder kept for a look: {summary.work}")
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
