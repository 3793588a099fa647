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
from tests.e2e.conftest import cache_pair, fills_done, running_cache, start_cache, until

# Servers of its own on loopback, whatever S3SERVE_TEST_ENDPOINT names (make test-cache runs the
# rest of the suite through a cache).
pytestmark = pytest.mark.skipif(bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts its own servers")

MiB = 1024 * 1024


def _snapshot(root: Path) -> tuple[frozenset[tuple[str, int, int]], int]:
    """The files --cache-size covers (path, inode, size): the object files in ROOT's buckets and
    the parts kept of multipart uploads in progress; and the bytes of the temp files (fills and
    uploads on their way)."""
    files, spooled = set(), 0
    for dirpath, _dirnames, filenames in os.walk(root):
        where = Path(dirpath).relative_to(root).parts
        hidden = where[:1] == (".s3serve",)
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if not hidden or where[1:2] == ("cache-parts",):
                files.add((path, st.st_ino, st.st_size))
            elif os.path.basename(dirpath) == "tmp":
                spooled += st.st_size
    return frozenset(files), spooled


class DiskSampler(threading.Thread):
    """Peak bytes of replicas (and kept parts) on the cache's disk while a load runs. A walk of the
    folders is not atomic: one that saw a replica just before it was evicted and another just after
    it was published would add up bytes that never were there together. So a sample counts only
    when the next walk found the very same files."""

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
        until(lambda: fills_done(root), timeout=30)  # the last ones end after their readers were served
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


def _rounds(srv: Server) -> int:
    assert srv.log_path is not None
    return srv.log_path.read_text().count("cache: eviction round ")


def _after_rounds(srv: Server, n: int) -> None:
    """Return once ``n`` more eviction rounds have run (``--log-level debug`` logs each): what a
    round would have evicted by then is gone."""
    start = _rounds(srv)
    until(lambda: _rounds(srv) >= start + n, timeout=30)


def test_files_the_cache_did_not_make_neither_count_nor_are_evicted(tmp_path: Path, upstream: Server) -> None:
    # --cache-size is about the copies the cache keeps. Files another program put into ROOT
    # counted against it: 2 MiB of them in a 1 MiB cache had every replica evicted on every
    # round; and one holding the same bytes as the upstream's object of its key was deleted.
    root = tmp_path / "cache"
    evicting = ("--cache-size", "1MiB", "--cache-evict-interval", "0.1", "--log-level", "debug")
    with running_cache(root, upstream, *evicting) as srv:
        s3, direct = srv.client(), upstream.client()
        s3.create_bucket(Bucket="foreign")  # type: ignore[attr-defined]
        same = os.urandom(300_000)
        direct.put_object(Bucket="foreign", Key="same", Body=same)  # type: ignore[attr-defined]
        blobs = {f"k{i}": os.urandom(250_000) for i in range(6)}
        for key, data in blobs.items():
            direct.put_object(Bucket="foreign", Key=key, Body=data)  # type: ignore[attr-defined]
        here = root / "foreign"
        mine = os.urandom(2 * MiB)
        # Written beside ROOT and renamed in: a round (every 0.1 s) that saw a file half written
        # and then whole would see two versions of it, and say twice that it keeps it.
        for name, data in (("mine", mine), ("same", same)):
            (tmp_path / name).write_bytes(data)
            (tmp_path / name).rename(here / name)
        # "mine": nowhere else, the only copy; "same": the upstream's bytes, but a file its user put here.

        first = ["k0", "k1", "k2"]
        for key in first:
            assert s3.get_object(Bucket="foreign", Key=key)["Body"].read() == blobs[key]  # type: ignore[attr-defined]
        until(lambda: _replica_bytes(here, first) == 750_000, timeout=5)
        _after_rounds(srv, 3)
        assert _replica_bytes(here, first) == 750_000, "copies under the limit were evicted"
        assert (here / "mine").read_bytes() == mine
        assert (here / "same").read_bytes() == same

        # The limit still holds for the copies themselves.
        for key in ["k3", "k4", "k5"]:
            assert s3.get_object(Bucket="foreign", Key=key)["Body"].read() == blobs[key]  # type: ignore[attr-defined]
        until(lambda: _replica_bytes(here, list(blobs)) <= MiB, timeout=5)
        _after_rounds(srv, 2)
        assert _replica_bytes(here, list(blobs)) <= MiB
        assert (here / "mine").read_bytes() == mine
        assert (here / "same").read_bytes() == same
        for key, data in blobs.items():
            assert s3.get_object(Bucket="foreign", Key=key)["Body"].read() == data  # type: ignore[attr-defined]
    assert srv.log_path is not None
    log = srv.log_path.read_text()
    assert "Traceback" not in log
    assert log.count("keeping foreign/mine") == 1, log


def _processes(srv: Server) -> list[int]:
    """The server's process and the worker processes it forked (--workers)."""
    assert srv.process is not None
    pid = srv.process.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [pid, *map(int, f.read().split())]


def _written(pid: int) -> int:
    """Bytes the process wrote so far (files and sockets alike)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="tells the workers apart by /proc")
def test_worker_processes_hold_the_cache_size_together(tmp_path: Path, upstream: Server) -> None:
    # --workers 2 on one ROOT: each process counted only the copies it had published itself
    # since the last scan, so between rounds the replicas of both reached twice --cache-size.
    limit = 8 * MiB
    root = tmp_path / "cache"
    root.mkdir()
    srv = start_cache(root, upstream, "--workers", "2", "--cache-size", str(limit), "--cache-evict-interval", "1m")
    rnd = random.Random(11)
    direct = upstream.client(max_pool_connections=16)
    direct.create_bucket(Bucket="workers")  # type: ignore[attr-defined]
    objects = {f"w{i:02d}": rnd.randbytes(rnd.randint(MiB // 2, 3 * MiB // 2)) for i in range(48)}
    digests = {key: hashlib.md5(data).hexdigest() for key, data in objects.items()}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: direct.put_object(Bucket="workers", Key=key, Body=objects[key]), objects))  # type: ignore[attr-defined]
    objects.clear()
    keys = sorted(digests)
    workers = _processes(srv)
    assert len(workers) == 2, workers
    written = [_written(pid) for pid in workers]
    # A client (so a connection) per reader: the kernel puts each on either worker (SO_REUSEPORT).
    clients = [srv.client() for _ in range(16)]
    sampler = DiskSampler(root)
    wrong: list[str] = []

    def reader(n: int) -> None:
        for j in range(3):  # every object read once, all of them cold
            key = keys[n + 16 * j]
            body = clients[n].get_object(Bucket="workers", Key=key)["Body"].read()  # type: ignore[attr-defined]
            if hashlib.md5(body).hexdigest() != digests[key]:
                wrong.append(key)

    sampler.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(reader, range(16)))
        until(lambda: fills_done(root), timeout=30)  # the last ones end after their readers were served
    finally:
        sampler.stop()
        served = [_written(pid) - before for pid, before in zip(workers, written, strict=True)]
        stop_server(srv)
    print(f"peak replicas {sampler.peak / MiB:.1f} MiB, limit {limit / MiB:.0f} MiB ({sampler.samples} samples), "
          f"written by the workers {[round(n / MiB) for n in served]} MiB")  # fmt: skip
    assert not wrong
    assert all(n > 4 * MiB for n in served), "both workers served cold reads (and filled copies)"
    assert sampler.samples > 20
    assert sampler.peak <= limit, f"replicas of both workers peaked at {sampler.peak / MiB:.1f} MiB"
    assert sampler.peak > limit // 2, "the cache kept copies at all"
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def test_copies_written_over_or_deleted_give_back_their_bytes(tmp_path: Path, upstream: Server) -> None:
    # A PUT through the cache, or a fill after a change on the upstream, over a kept copy
    # counted the new copy without taking off the old one (a DELETE through the cache too took
    # nothing off): after a few of them a 1 MiB cache holding one 300 kB copy counted itself
    # full, and the next PUT's copy was not kept, nor the version it replaced.
    root = tmp_path / "cache"
    with running_cache(root, upstream, "--cache-size", "1MiB", "--cache-evict-interval", "1h") as srv:
        s3, direct = srv.client(), upstream.client()
        s3.create_bucket(Bucket="overwrite")  # type: ignore[attr-defined]
        here = root / "overwrite"

        def put(key: str, why: str) -> bytes:
            data = os.urandom(300_000)
            s3.put_object(Bucket="overwrite", Key=key, Body=data)  # type: ignore[attr-defined]
            assert _read(here / key) == data, f"{why}: the PUT's copy was not kept"
            return data

        put("k", "the first PUT")
        for _ in range(2):  # changed on the upstream, read through the cache: a fill over the copy
            data = os.urandom(300_000)
            direct.put_object(Bucket="overwrite", Key="k", Body=data)  # type: ignore[attr-defined]
            assert s3.get_object(Bucket="overwrite", Key="k")["Body"].read() == data  # type: ignore[attr-defined]
            until(lambda: _read(here / "k") == data, timeout=5)  # noqa: B023 - called at once
        put("k", "a PUT after two fills over the copy")
        for n in range(3):
            put("k", f"PUT {n + 1} over the copy")
        for n in range(4):
            put("gone", f"PUT {n + 1} after as many DELETEs")
            s3.delete_object(Bucket="overwrite", Key="gone")  # type: ignore[attr-defined]
            assert not (here / "gone").exists()
        kept = {key: put(key, "a PUT with room for it") for key in ("a", "b")}
        assert _replica_bytes(here, ["k", "a", "b"]) == 900_000
        time.sleep(0.3)
        for key, data in kept.items():
            assert _read(here / key) == data, f"{key}: evicted with the cache under its size"
    assert srv.log_path is not None
    log = srv.log_path.read_text()
    assert "Traceback" not in log
    assert _rounds(srv) == 0, "rounds are logged at debug only"


def _kept_parts(root: Path) -> dict[str, list[str]]:
    """The parts the cache keeps, by upload folder."""
    kept = root / ".s3serve" / "cache-parts"
    return {d.name: sorted(p.name for p in d.iterdir()) for d in kept.iterdir()} if kept.exists() else {}


@pytest.mark.parametrize("workers", [1, 2])
def test_parts_of_uploads_in_progress_count_against_the_cache_size(tmp_path: Path, workers: int) -> None:
    # The parts the cache keeps of multipart uploads in progress (to make the copy at Complete
    # without reading it back) did not count against --cache-size: uploads not yet completed
    # filled the disk far beyond it. They count now; room for them is made from the copies
    # first, least recently used first, then from the parts of other uploads (the upstream has
    # them all, and its Complete does not need them here: such an object is copied when read).
    # Parts of 640 KiB: beside 2 MiB of copies, an upload's fourth part is the first to find no
    # room, and one round (evicting one copy) makes room for it.
    limit, part = 4 * MiB, 640 * 1024
    root = tmp_path / "cache" / "root"
    with cache_pair(
        tmp_path, "--workers", str(workers), "--cache-size", str(limit), "--cache-evict-interval", "1m",
        "--log-level", "debug", upstream_args=["--min-part-size", "256KiB"],
    ) as (upstream, srv):  # fmt: skip
        # Nothing is kept before a round of each worker counted the disk (a PUT waits 2 s for it
        # at most: not always enough on a loaded machine).
        until(lambda: _rounds(srv) >= workers, timeout=30)
        # A client (so a connection) per thread: the kernel puts each on either worker.
        clients = [srv.client() for _ in range(16)]
        s3 = clients[0]
        s3.create_bucket(Bucket="parts")  # type: ignore[attr-defined]
        here = root / "parts"
        rnd = random.Random(5)
        data = {key: rnd.randbytes(MiB) for key in ("a-old", "b-new")}
        for key in ("a-old", "b-new"):  # older first: the least recently used, in every worker
            s3.put_object(Bucket="parts", Key=key, Body=data[key])  # type: ignore[attr-defined]
        assert _replica_bytes(here, ["a-old", "b-new"]) == 2 * MiB

        for n in range(9):
            data[f"up-{n}"] = rnd.randbytes(4 * part)

        def upload(n: int) -> tuple[str, list[dict[str, object]]]:
            """Upload the 4 parts of up-<n> (not completed), each through another client."""
            key = f"up-{n}"
            upload_id = clients[n].create_multipart_upload(Bucket="parts", Key=key)["UploadId"]  # type: ignore[attr-defined]
            parts = []
            for number in range(1, 5):
                body = data[key][(number - 1) * part : number * part]
                c = clients[(n + number) % len(clients)]
                etag = c.upload_part(Bucket="parts", Key=key, UploadId=upload_id, PartNumber=number, Body=body)["ETag"]  # type: ignore[attr-defined]
                parts.append({"PartNumber": number, "ETag": etag})
            return upload_id, parts

        def complete(n: int, started: tuple[str, list[dict[str, object]]]) -> None:
            upload_id, parts = started
            clients[n].complete_multipart_upload(  # type: ignore[attr-defined]
                Bucket="parts", Key=f"up-{n}", UploadId=upload_id, MultipartUpload={"Parts": parts}
            )

        # One upload of 2.5 MiB beside 2 MiB of copies: its parts are all kept, in room made from
        # the least recently used copy; completed, they become its copy.
        first = upload(0)
        until(lambda: sum(len(p) for p in _kept_parts(root).values()) == 4, timeout=10)
        assert not (here / "a-old").exists(), "a copy went for the parts"
        assert (here / "b-new").read_bytes() == data["b-new"]
        complete(0, first)
        until(lambda: _read(here / "up-0") == data["up-0"] and not _kept_parts(root), timeout=10)

        # Eight uploads of 2.5 MiB at once: 20 MiB of parts for a cache of 4 MiB.
        workers_pids = _processes(srv)
        assert len(workers_pids) == workers, workers_pids
        written = [_written(pid) for pid in workers_pids]
        sampler = DiskSampler(root)
        sampler.start()
        try:
            with ThreadPoolExecutor(8) as pool:
                started = list(pool.map(upload, range(1, 9)))
                list(pool.map(complete, range(1, 9), started))
            until(lambda: fills_done(root) and not _kept_parts(root), timeout=30)
        finally:
            sampler.stop()
        served = [_written(pid) - before for pid, before in zip(workers_pids, written, strict=True)]
        print(f"peak replicas and parts {sampler.peak / MiB:.2f} MiB, peak temp files {sampler.peak_spooled / MiB:.1f} MiB, "
              f"limit {limit / MiB:.0f} MiB ({sampler.samples} samples), written by the workers {[n // MiB for n in served]} MiB")  # fmt: skip
        assert sampler.samples > 20
        assert sampler.peak <= limit, f"replicas and kept parts peaked at {sampler.peak / MiB:.2f} MiB"
        # Beyond them, as the README says: the parts on their way (8 at once), those waiting
        # for room (the limit at most), and the joined parts of the completed uploads.
        assert sampler.peak_spooled <= 8 * part + limit + 8 * 4 * part
        assert all(n > 2 * MiB for n in served), "every worker received parts"
        # Every object, byte for byte, through the cache (kept or read through) and on the upstream.
        direct = upstream.client()
        for key, body in data.items():
            assert s3.get_object(Bucket="parts", Key=key)["Body"].read() == body, key  # type: ignore[attr-defined]
            assert direct.get_object(Bucket="parts", Key=key)["Body"].read() == body, key  # type: ignore[attr-defined]
        until(lambda: fills_done(root), timeout=30)
        held, _ = _snapshot(root)
        assert sum(size for _, _, size in held) <= limit
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()
