"""The upstream cache's size limit (--cache-size) under load and next to files it did not make:
live processes on loopback (an s3serve cache with --upstream in front of a second s3serve),
driven with boto3, every byte read compared, the cache's disk measured while the load runs."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Server, stop_server
from tests.e2e.conftest import start_cache, until

# Servers of its own on loopback, whatever S3SERVE_TEST_ENDPOINT names (make test-cache runs the
# rest of the suite through a cache).
pytestmark = pytest.mark.skipif(bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts its own servers")

MiB = 1024 * 1024


def _snapshot(root: Path) -> tuple[frozenset[tuple[str, int, int]], int]:
    """The object files in ROOT's buckets (path, inode, size), and the bytes of the temp files
    (fills and uploads on their way)."""
    files, spooled = set(), 0
    for dirpath, _dirnames, filenames in os.walk(root):
        hidden = Path(dirpath).relative_to(root).parts[:1] == (".s3serve",)
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if not hidden:
                files.add((path, st.st_ino, st.st_size))
            elif os.path.basename(dirpath) == "tmp":
                spooled += st.st_size
    return frozenset(files), spooled


class DiskSampler(threading.Thread):
    """Peak bytes of replicas on the cache's disk while a load runs. A walk of the folders is not
    atomic: one that saw a replica just before it was evicted and another just after it was
    published would add up bytes that never were there together. So a sample counts only when
    the next walk found the very same files."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak = 0
        self.peak_spooled = 0
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        before, _ = _snapshot(self.root)
        while not self._done.is_set():
            after, spooled = _snapshot(self.root)
            self.peak_spooled = max(self.peak_spooled, spooled)
            if after == before:
                self.samples += 1
                self.peak = max(self.peak, sum(size for _, _, size in after))
            before = after
            time.sleep(0.002)

    def stop(self) -> None:
        self._done.set()
        self.join()


def test_many_readers_of_cold_objects_keep_the_replicas_within_the_cache_size(tmp_path: Path, upstream: Server) -> None:
    # 16 readers, each fetching distinct cold objects of 1-4 MiB, against a 20 MiB cache: fills
    # finish faster than an eviction round can remove copies, and replicas published regardless
    # took the cache's disk to several times its limit. A fill that finds no room is served to
    # its readers but kept only when a round has made room for it.
    limit = 20 * MiB
    root = tmp_path / "cache"
    root.mkdir()
    srv = start_cache(root, upstream, "--cache-size", str(limit), "--cache-evict-interval", "1m")
    rnd = random.Random(7)
    direct = upstream.client(max_pool_connections=16)
    direct.create_bucket(Bucket="load")  # type: ignore[attr-defined]
    objects = {f"o{i:02d}": rnd.randbytes(rnd.randint(MiB, 4 * MiB)) for i in range(32)}
    digests = {key: hashlib.md5(data).hexdigest() for key, data in objects.items()}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: direct.put_object(Bucket="load", Key=key, Body=objects[key]), objects))  # type: ignore[attr-defined]
    objects.clear()  # 80 MB: the readers compare digests
    keys = sorted(digests)
    s3 = srv.client(max_pool_connections=16)
    sampler = DiskSampler(root)
    wrong: list[str] = []

    def reader(n: int) -> None:
        for j in range(4):  # every object read twice, by two readers, at different times
            key = keys[(n + 16 * j) % len(keys)]
            body = s3.get_object(Bucket="load", Key=key)["Body"].read()  # type: ignore[attr-defined]
            if hashlib.md5(body).hexdigest() != digests[key]:
                wrong.append(key)

    sampler.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(reader, range(16)))
        time.sleep(0.5)  # the last fills are published (or not) after their readers were served
    finally:
        sampler.stop()
        stop_server(srv)
    print(f"peak replicas {sampler.peak / MiB:.1f} MiB, peak temp files {sampler.peak_spooled / MiB:.1f} MiB, "
          f"limit {limit / MiB:.0f} MiB ({sampler.samples} samples)")  # fmt: skip
    assert not wrong
    assert sampler.samples > 20
    # The bound: the replicas never exceed the limit (one process: its own count of what it
    # published is exact). Beyond them: temp files of the fills on their way (one per reader,
    # each at most 4 MiB) and of those waiting for room (the limit's size at most).
    assert sampler.peak <= limit, f"replicas peaked at {sampler.peak / MiB:.1f} MiB"
    assert sampler.peak_spooled <= 16 * 4 * MiB + limit, f"temp files peaked at {sampler.peak_spooled / MiB:.1f} MiB"
    assert sampler.peak > limit // 2, "the cache kept copies at all"
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


def _replica_bytes(folder: Path, names: list[str]) -> int:
    return sum((folder / name).stat().st_size for name in names if (folder / name).exists())


def test_files_the_cache_did_not_make_neither_count_nor_are_evicted(tmp_path: Path, upstream: Server) -> None:
    # --cache-size is about the copies the cache keeps. Files another program put into ROOT
    # counted against it: 2 MiB of them in a 1 MiB cache had every replica evicted on every
    # round; and one holding the same bytes as the upstream's object of its key was deleted.
    root = tmp_path / "cache"
    root.mkdir()
    srv = start_cache(root, upstream, "--cache-size", "1MiB", "--cache-evict-interval", "0.1")
    try:
        s3, direct = srv.client(), upstream.client()
        s3.create_bucket(Bucket="foreign")  # type: ignore[attr-defined]
        same = os.urandom(300_000)
        direct.put_object(Bucket="foreign", Key="same", Body=same)  # type: ignore[attr-defined]
        blobs = {f"k{i}": os.urandom(250_000) for i in range(6)}
        for key, data in blobs.items():
            direct.put_object(Bucket="foreign", Key=key, Body=data)  # type: ignore[attr-defined]
        here = root / "foreign"
        mine = os.urandom(2 * MiB)
        (here / "mine").write_bytes(mine)  # nowhere else: the only copy
        (here / "same").write_bytes(same)  # the upstream's bytes, but a file its user put here

        first = ["k0", "k1", "k2"]
        for key in first:
            assert s3.get_object(Bucket="foreign", Key=key)["Body"].read() == blobs[key]  # type: ignore[attr-defined]
        until(lambda: _replica_bytes(here, first) == 750_000, timeout=5)
        time.sleep(0.5)  # several rounds
        assert _replica_bytes(here, first) == 750_000, "copies under the limit were evicted"
        assert (here / "mine").read_bytes() == mine
        assert (here / "same").read_bytes() == same

        # The limit still holds for the copies themselves.
        for key in ["k3", "k4", "k5"]:
            assert s3.get_object(Bucket="foreign", Key=key)["Body"].read() == blobs[key]  # type: ignore[attr-defined]
        until(lambda: _replica_bytes(here, list(blobs)) <= MiB, timeout=5)
        time.sleep(0.3)
        assert _replica_bytes(here, list(blobs)) <= MiB
        assert (here / "mine").read_bytes() == mine
        assert (here / "same").read_bytes() == same
        for key, data in blobs.items():
            assert s3.get_object(Bucket="foreign", Key=key)["Body"].read() == data  # type: ignore[attr-defined]
    finally:
        stop_server(srv)
    assert srv.log_path is not None
    log = srv.log_path.read_text()
    assert "Traceback" not in log
    assert log.count("keeping foreign/mine") == 1, log
