"""`workers` scenario: the same server with 1 and with 2 worker processes, 4 KiB GET/PUT from wrk.

The other scenarios pin the server to one core and the client to the other, so a second worker
has no core of its own there. Here the server (all its workers) and wrk may use every core, and
wrk (C, ~10-20 µs of CPU per request against ~400 µs for an s3serve GET) takes little of them.
Each count gets a fresh server. Besides ops/s, a run records how the server's CPU time spread
over its processes (``busiest_share``: 1/N is an even spread, 1.0 means one process did
everything), because keep-alive connections stay with the worker that accepted them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import wrkdrive
from bench.client import S3Client
from bench.scenarios import BUCKET, Params
from bench.servers import Running, ServerSpec, cpu_by_process

COUNTS = (1, 2)


def spread(before: dict[int, float], after: dict[int, float]) -> dict[str, Any]:
    """How the CPU time between two snapshots of a process tree divides over its processes."""
    used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    total = sum(used.values())
    busy = sorted((u for u in used.values() if u > 0), reverse=True)
    return {
        "busiest_share": busy[0] / total if total else None,
        "busy_processes": sum(1 for u in busy if total and u >= 0.05 * total),
    }


async def run_workers(spec: ServerSpec, p: Params, data_dir: Path, cores: set[int]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    threads = len(cores)
    for n in COUNTS:
        running = spec.start(data_dir, cores, workers=n)
        try:
            async with S3Client(running.endpoint, pool=16) as client:
                await _prepare(client, running, p)
                with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
                    for rep in range(p.repeats):
                        for conc in p.concurrencies:
                            for method in ("GET", "PUT"):
                                run = await _measured(client, running, p, Path(tmp), method, conc, threads, f"w{n}r{rep}c{conc}", cores)
                                run["workers"] = n
                                out.setdefault(f"workers.{method.lower()}.c{conc}.w{n}", []).append(run)
        finally:
            running.stop()
            shutil.rmtree(data_dir / spec.name, ignore_errors=True)
            shutil.rmtree(running.workdir, ignore_errors=True)
    return out


async def _prepare(client: S3Client, running: Running, p: Params) -> None:
    if running.endpoint.s3:
        await client.create_bucket(BUCKET)
    elif running.root is not None:
        (running.root / BUCKET).mkdir(exist_ok=True)
    await wrkdrive.put_get_keys(client, os.urandom(p.small_size))


async def _measured(
    client: S3Client, running: Running, p: Params, tmp: Path, method: str, conc: int, threads: int, prefix: str, cores: set[int]
) -> dict[str, Any]:
    pid = running.pid
    before = cpu_by_process(pid) if pid else {}
    run = await wrkdrive.wrk_once(client, running, p, tmp, method, conc, min(threads, conc), prefix, cores)
    if pid:
        run.update(spread(before, cpu_by_process(pid)))
    return run

