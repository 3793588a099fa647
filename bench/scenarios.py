"""The scenarios: each drives one running server with the same client and returns measured runs.

A "run" is one dict of metrics from one repeat. Every run carries the server's CPU time per
operation (from /proc, children included), its peak RSS during the run (VmHWM, reset before), the
client's CPU utilisation (to tell a client-bound number from a server-bound one) and any errors
with the request and the response that failed. Nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import S3Client, S3RequestError
from bench.servers import Running, cpu_seconds, peak_rss_kib, reset_peak_rss

MiB = 1024 * 1024
BUCKET = "bench"
LIST_BUCKET = "listbench"
MAX_ERROR_SAMPLES = 5


@dataclass
class Params:
    repeats: int = 3
    small_size: int = 4096
    concurrencies: tuple[int, ...] = (16, 64)
    small_duration: float = 5.0
    small_max_ops: int = 200_000
    large_size: int = 1024 * MiB
    parallel_count: int = 8
    parallel_size: int = 128 * MiB
    mpu_size: int = 1024 * MiB
    part_size: int = 16 * MiB
    mpu_concurrency: int = 4
    list_keys: int = 100_000  # created directly on disk where the server allows it
    list_keys_api: int = 10_000  # created through the S3 API otherwise
    list_fanout: int = 10  # folders per level of the 3-level prefix tree
    page_samples: int = 5  # each single-page timing is the median of this many requests
    wrk_duration: float = 5.0

    @classmethod
    def quick(cls) -> Params:
        return cls(
            repeats=1, small_duration=1.0, large_size=64 * MiB, parallel_size=8 * MiB, mpu_size=32 * MiB,
            part_size=8 * MiB, list_keys=3_000, list_keys_api=2_000, page_samples=3, wrk_duration=1.0,
        )


@dataclass
class Collector:
    """Errors seen during one run, with enough of the request and response to reproduce them."""

    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, exc: BaseException) -> None:
        self.count += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            if isinstance(exc, S3RequestError):
                self.samples.append({"request": f"{exc.method} {exc.url}", "status": exc.status, "response": exc.body[:600]})
            else:
                self.samples.append({"request": "?", "status": 0, "response": f"{type(exc).__name__}: {exc}"[:600]})


class Meter:
    """Server CPU seconds, server peak RSS and client CPU over one measured stretch."""

    def __init__(self, server: Running) -> None:
        self.server = server

    def __enter__(self) -> Meter:
        pid = self.server.pid
        if pid:
            reset_peak_rss(pid)
            self.cpu0 = cpu_seconds(pid)
        self.client0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.client_cpu = time.process_time() - self.client0
        pid = self.server.pid
        self.server_cpu = cpu_seconds(pid) - self.cpu0 if pid else None
        self.peak_rss_mib = peak_rss_kib(pid) / 1024 if pid else None

    def metrics(self, ops: int) -> dict[str, Any]:
        return {
            "seconds": self.wall,
            "server_cpu_us_per_op": self.server_cpu / ops * 1e6 if self.server_cpu is not None and ops else None,
            "server_cpu_util": self.server_cpu / self.wall if self.server_cpu is not None else None,
            "server_peak_rss_MiB": self.peak_rss_mib,
            "client_cpu_util": self.client_cpu / self.wall if self.wall else None,
        }


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


async def closed_loop(
    concurrency: int, duration: float, max_ops: int, op: Callable[[int], Awaitable[object]], errors: Collector
) -> tuple[int, list[float]]:
    """``concurrency`` workers issue ``op(i)`` back to back until time or operations run out."""
    latencies: list[float] = []
    next_i = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal next_i
        while next_i < max_ops and time.perf_counter() < deadline:
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            try:
                await op(i)
            except (S3RequestError, TimeoutError) as exc:
                errors.add(exc)
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return next_i, latencies


# -- small objects ---------------------------------------------------------------------------------


def _small_op(client: S3Client, op_name: str, prefix: str, created: int, body: bytes) -> Callable[[int], Awaitable[object]]:
    size = len(body)

    async def put(i: int) -> object:
        await client.put(BUCKET, f"{prefix}/k{i}", body)
        return None

    async def get(i: int) -> object:
        key = f"{prefix}/k{i % created}"
        data = await client.get(BUCKET, key)
        if data != body:
            raise S3RequestError("GET", f"/{BUCKET}/{key}", 200, f"got {len(data)} bytes that differ from the {size} PUT")
        return data

    async def head(i: int) -> object:
        return await client.head(BUCKET, f"{prefix}/k{i % created}")

    async def delete(i: int) -> object:
        await client.delete(BUCKET, f"{prefix}/k{i}")
        return None

    return {"put": put, "get": get, "head": head, "delete": delete}[op_name]


async def small_ops(client: S3Client, server: Running, p: Params, verify: bool = True) -> dict[str, list[dict[str, Any]]]:
    """4 KiB PUT, GET, HEAD, DELETE at each concurrency: ops/s, p50/p99, server cost per op.

    GET compares the bytes with what was PUT; ``verify=False`` is for the fixed-body ceiling.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for rep in range(p.repeats):
        for conc in p.concurrencies:
            prefix = f"small/r{rep}c{conc}"
            # One body per key set, so a GET that returns another key's bytes is caught.
            body = os.urandom(p.small_size)
            created = 0
            for op_name in ("put", "get", "head", "delete"):
                limit = created if op_name == "delete" else p.small_max_ops
                if limit == 0:
                    continue
                if op_name == "get" and not verify:
                    op = _unverified_get(client, prefix, created)
                else:
                    op = _small_op(client, op_name, prefix, created, body)
                errors = Collector()
                with Meter(server) as m:
                    n, lat = await closed_loop(conc, p.small_duration, limit, op, errors)
                if op_name == "put":
                    created = n
                lat.sort()
                run = m.metrics(n)
                run.update(
                    ops=n, ops_per_s=len(lat) / m.wall, p50_ms=_ms(percentile(lat, 50)),
                    p99_ms=_ms(percentile(lat, 99)), errors=errors.count, error_samples=errors.samples,
                )
                out.setdefault(f"small.{op_name}.c{conc}", []).append(run)
    return out


def _unverified_get(client: S3Client, prefix: str, created: int) -> Callable[[int], Awaitable[object]]:
    async def get(i: int) -> object:
        return await client.get(BUCKET, f"{prefix}/k{i % created}")

    return get


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


# -- large objects ---------------------------------------------------------------------------------


async def large_objects(client: S3Client, server: Running, p: Params, caps: set[str]) -> dict[str, list[dict[str, Any]]]:
    """1 GiB single stream and 8 x 128 MiB in parallel, PUT then GET, bytes counted on arrival."""
    buffer = os.urandom(MiB)
    out: dict[str, list[dict[str, Any]]] = {}
    shapes = (("single", 1, p.large_size), (f"parallel{p.parallel_count}", p.parallel_count, p.parallel_size))
    for rep in range(p.repeats):
        for shape, count, size in shapes:
            keys = [f"large/r{rep}/{shape}/o{i}" for i in range(count)]
            for op_name in ("put", "get"):
                if f"large_{op_name}" not in caps:
                    continue
                errors = Collector()
                moved = [0]
                with Meter(server) as m:
                    await asyncio.gather(*(_move_one(client, op_name, k, size, buffer, moved, errors) for k in keys))
                run = m.metrics(count)
                run.update(MiB_per_s=moved[0] / MiB / m.wall, bytes=moved[0], errors=errors.count,
                           error_samples=errors.samples)
                out.setdefault(f"large.{op_name}.{shape}", []).append(run)
                if op_name == "get" and shutil.which("curl"):
                    out.setdefault(f"large.get.{shape}.curl", []).append(await curl_get(client, server, keys, size))
            await _delete_quietly(client, keys)
    return out


async def curl_get(client: S3Client, server: Running, keys: list[str], size: int) -> dict[str, Any]:
    """The same GETs from curl (C, one process per object, presigned URLs, body to /dev/null).

    The Python client spends a whole core on a few GiB/s of loopback reads; curl needs far less
    per byte, so this row shows whether the client or the server set the Python row's number.
    client_cpu_util is the curls' CPU time over the wall time, in cores.
    """
    ep = client.endpoint
    urls = [client.signer.presign("GET", ep.host, f"/{BUCKET}/{k}") if ep.s3 else f"{ep.url}/{BUCKET}/{k}" for k in keys]
    errors = Collector()
    t0 = os.times()
    with Meter(server) as m:
        procs = [
            await asyncio.create_subprocess_exec(
                "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            for url in urls
        ]
        answers = [await proc.communicate() for proc in procs]
    t1 = os.times()
    moved = 0
    for url, (out, err) in zip(urls, answers, strict=True):
        status, _, got = out.decode().partition(" ")
        if status == "200" and got.isdigit() and int(got) == size:
            moved += size
        else:
            errors.add(S3RequestError("GET", url, int(status) if status.isdigit() else 0, f"curl: {out.decode()} {err.decode()}"))
    run = m.metrics(len(keys))
    run.update(MiB_per_s=moved / MiB / m.wall, bytes=moved, errors=errors.count, error_samples=errors.samples,
               client_cpu_util=(t1.children_user + t1.children_system - t0.children_user - t0.children_system) / m.wall)
    return run


async def _move_one(
    client: S3Client, op_name: str, key: str, size: int, buffer: bytes, moved: list[int], errors: Collector
) -> None:
    try:
        if op_name == "put":
            await client.put_stream(BUCKET, key, size, buffer)
            moved[0] += size
        else:
            n = await client.get_sink(BUCKET, key)
            if n != size:
                raise S3RequestError("GET", f"/{BUCKET}/{key}", 200, f"got {n} bytes, expected {size}")
            moved[0] += n
    except (S3RequestError, TimeoutError) as exc:
        errors.add(exc)


async def _delete_quietly(client: S3Client, keys: list[str]) -> None:
    # Frees the disk between repeats; a failure here is not what is being measured.
    for key in keys:
        try:
            await client.delete(BUCKET, key)
        except S3RequestError:
            pass


async def _upload_parts(client: S3Client, key: str, upload_id: str, p: Params, buffer: bytes) -> list[str]:
    nparts = -(-p.mpu_size // p.part_size)
    etags: list[str] = [""] * nparts
    sem = asyncio.Semaphore(p.mpu_concurrency)

    async def part(i: int) -> None:
        size = min(p.part_size, p.mpu_size - i * p.part_size)
        async with sem:
            etags[i] = await client.upload_part(BUCKET, key, upload_id, i + 1, size, buffer)

    await asyncio.gather(*(part(i) for i in range(nparts)))
    return etags


async def multipart(client: S3Client, server: Running, p: Params) -> dict[str, list[dict[str, Any]]]:
    """A multipart upload of mpu_size in part_size parts; CompleteMultipartUpload timed alone."""
    buffer = os.urandom(MiB)
    out: dict[str, list[dict[str, Any]]] = {}
    nparts = -(-p.mpu_size // p.part_size)
    for rep in range(p.repeats):
        key = f"mpu/r{rep}"
        errors = Collector()
        complete_s: float | None = None
        complete_cpu: float | None = None
        with Meter(server) as m:
            try:
                upload_id = await client.create_multipart(BUCKET, key)
                etags = await _upload_parts(client, key, upload_id, p, buffer)
                cpu0 = cpu_seconds(server.pid) if server.pid else None
                complete_s = await client.complete_multipart(BUCKET, key, upload_id, etags)
                if cpu0 is not None and server.pid:
                    complete_cpu = cpu_seconds(server.pid) - cpu0
                head = await client.head(BUCKET, key)
                if int(head.get("Content-Length", -1)) != p.mpu_size:
                    raise S3RequestError("HEAD", f"/{BUCKET}/{key}", 200, f"size {head.get('Content-Length')} != {p.mpu_size}")
            except (S3RequestError, TimeoutError) as exc:
                errors.add(exc)
        run = m.metrics(nparts)
        run.update(MiB_per_s=p.mpu_size / MiB / m.wall if not errors.count else None, parts=nparts,
                   complete_ms=_ms(complete_s), complete_server_cpu_ms=_ms(complete_cpu),
                   errors=errors.count, error_samples=errors.samples)
        out.setdefault("multipart.upload", []).append(run)
        await _delete_quietly(client, [key])
    return out


# -- listing ---------------------------------------------------------------------------------------


def tree_keys(n: int, fanout: int) -> list[str]:
    """n keys in a 3-level prefix tree dAA/dBB/dCC/objNNNNN, in UTF-8 byte order.

    Keys are dealt round-robin over the fanout**3 leaf folders with the first level varying
    fastest, so even a small n fills the upper levels of the tree evenly.
    """
    folders = fanout**3
    keys = []
    for i in range(n):
        idx = i % folders
        a, b, c = idx % fanout, idx // fanout % fanout, idx // fanout**2
        keys.append(f"d{a:02d}/d{b:02d}/d{c:02d}/obj{i // folders:05d}")
    return sorted(keys)


def populate_on_disk(root: Path, keys: list[str]) -> None:
    bucket = root / LIST_BUCKET
    made: set[str] = set()
    for key in keys:
        folder, _, name = key.rpartition("/")
        if folder not in made:
            (bucket / folder).mkdir(parents=True, exist_ok=True)
            made.add(folder)
        (bucket / folder / name).write_bytes(b"x")


async def populate_via_api(client: S3Client, keys: list[str], errors: Collector) -> None:
    async def op(i: int) -> object:
        await client.put(LIST_BUCKET, keys[i], b"x")
        return None

    await closed_loop(64, 3600.0, len(keys), op, errors)


async def listing(client: S3Client, server: Running, p: Params) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """ListObjectsV2 page times: first, middle by token and by start-after, full walk, delimiters."""
    await client.create_bucket(LIST_BUCKET)
    setup_errors = Collector()
    t0 = time.perf_counter()
    if server.root is not None:
        keys = tree_keys(p.list_keys, p.list_fanout)
        await asyncio.to_thread(populate_on_disk, server.root, keys)
        how = "files created directly on disk"
    else:
        keys = tree_keys(p.list_keys_api, p.list_fanout)
        await populate_via_api(client, keys, setup_errors)
        how = "PutObject through the API, concurrency 64"
    setup = {"keys": len(keys), "how": how, "seconds": time.perf_counter() - t0, "errors": setup_errors.count,
             "error_samples": setup_errors.samples}
    out: dict[str, list[dict[str, Any]]] = {}
    mid_key = keys[len(keys) // 2]
    # Delimiter listings at each depth of the tree, down the path of the middle key.
    parts = mid_key.split("/")
    depth_prefixes = ["".join(part + "/" for part in parts[:depth]) for depth in range(4)]

    for _ in range(p.repeats):
        errors = Collector()
        # Find the continuation token of the middle page (not timed).
        middle_token: str | None = None
        try:
            page = await client.list_v2(LIST_BUCKET)
            for _ in range(len(keys) // 1000 // 2):
                if not page.next_token:
                    break
                middle_token = page.next_token
                page = await client.list_v2(LIST_BUCKET, token=middle_token)
        except S3RequestError as exc:
            errors.add(exc)

        single: list[tuple[str, dict[str, Any], int]] = [("list.first_page", {}, 1000)]
        if middle_token:
            single.append(("list.middle_page.token", {"token": middle_token}, 1000))
        single.append(("list.middle_page.start_after", {"start_after": mid_key}, 1000))
        for depth, prefix in enumerate(depth_prefixes):
            single.append((f"list.delimiter.depth{depth}", {"prefix": prefix, "delimiter": "/"}, -1))
        for name, kwargs, expect in single:
            times: list[float] = []
            run_errors = Collector()
            with Meter(server) as m:
                for _ in range(p.page_samples):
                    t = time.perf_counter()
                    try:
                        page = await client.list_v2(LIST_BUCKET, **kwargs)
                    except S3RequestError as exc:
                        run_errors.add(exc)
                        continue
                    times.append(time.perf_counter() - t)
                    got = len(page.keys) + len(page.prefixes)
                    # A fast wrong answer is not a result: flag short pages and empty delimiter listings.
                    if expect > 0 and got != min(expect, len(keys)) and not (name.startswith("list.middle") and got):
                        run_errors.add(S3RequestError("GET", f"/{LIST_BUCKET}?{kwargs}", 200, f"{got} entries, expected {expect}"))
                    elif expect < 0 and got == 0:
                        run_errors.add(S3RequestError("GET", f"/{LIST_BUCKET}?{kwargs}", 200, "empty listing of a non-empty prefix"))
            run = m.metrics(p.page_samples)
            run.update(page_ms=_ms(median(times)) if times else None, entries=got if times else 0,
                       errors=run_errors.count, error_samples=run_errors.samples)
            out.setdefault(name, []).append(run)

        seen = pages = 0
        token = None
        with Meter(server) as m:
            try:
                while True:
                    page = await client.list_v2(LIST_BUCKET, token=token)
                    pages += 1
                    seen += len(page.keys)
                    token = page.next_token
                    if not page.truncated or not token:
                        break
            except S3RequestError as exc:
                errors.add(exc)
        if seen != len(keys):
            errors.add(S3RequestError("GET", f"/{LIST_BUCKET}?list-type=2 (walk)", 200, f"walk saw {seen} keys of {len(keys)}"))
        run = m.metrics(pages)
        run.update(pages=pages, keys=seen, keys_per_s=seen / m.wall if m.wall else None,
                   page_ms=m.wall / pages * 1000 if pages else None, errors=errors.count, error_samples=errors.samples)
        out.setdefault("list.full_walk", []).append(run)
    return out, setup
