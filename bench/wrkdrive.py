"""Small-object GET/PUT driven by wrk (C, one thread per client core) with presigned URLs.

A Python client saturates its core long before a fast server does; wrk shows what the server
does when the client is not the limit. Presigned URLs (query auth, UNSIGNED-PAYLOAD) let wrk send
valid S3 requests without signing anything itself. wrk cycles through a list of paths so GETs
spread over many objects and PUTs write many keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.client import S3Client
from bench.scenarios import BUCKET, Collector, Meter, Params
from bench.servers import Running
from bench.signer import uri_encode

WRK_KEYS = 1000

LUA = r"""
local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
local i = 0
wrk.method = os.getenv("WRK_METHOD")
if wrk.method == "PUT" then wrk.body = string.rep("x", tonumber(os.getenv("WRK_SIZE"))) end
request = function()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _paths(client: S3Client, method: str, keys: list[str]) -> list[str]:
    ep = client.endpoint
    out = []
    for key in keys:
        path = f"/{BUCKET}/{key}"
        if ep.s3:
            url = client.signer.presign(method, ep.host, path)
            out.append(url[len(ep.url):])
        else:
            out.append(uri_encode(path, keep_slash=True))
    return out


async def run_wrk(client: S3Client, server: Running, p: Params, threads: int) -> dict[str, list[dict[str, Any]]]:
    body = os.urandom(p.small_size)
    setup = await put_get_keys(client, body)
    out: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        for rep in range(p.repeats):
            for conc in p.concurrencies:
                for method in ("GET", "PUT"):
                    run = await wrk_once(client, server, p, Path(tmp), method, conc, min(threads, conc), f"r{rep}c{conc}")
                    if setup.count:
                        run["setup_errors"] = setup.samples
                    out.setdefault(f"wrk.{method.lower()}.c{conc}", []).append(run)
    return out


GET_KEYS = [f"wrk/g{i}" for i in range(WRK_KEYS)]


async def put_get_keys(client: S3Client, body: bytes) -> Collector:
    """The objects GET runs cycle over."""
    setup = Collector()
    for key in GET_KEYS:
        try:
            await client.put(BUCKET, key, body)
        except Exception as exc:  # noqa: BLE001 - recorded, and GETs of a missing key show as errors
            setup.add(exc)
    return setup


async def wrk_once(
    client: S3Client, server: Running, p: Params, tmp: Path, method: str, conc: int, threads: int, put_prefix: str,
    cores: set[int] | None = None,
) -> dict[str, Any]:
    """One wrk run of ``method`` at ``conc`` connections; ``cores``: where wrk may run (default: ours)."""
    script = tmp / "s3.lua"
    if not script.exists():
        script.write_text(LUA)
    keys = GET_KEYS if method == "GET" else [f"wrk/{put_prefix}p{i}" for i in range(WRK_KEYS)]
    paths = tmp / "paths.txt"
    paths.write_text("\n".join(_paths(client, method, keys)) + "\n")
    env = dict(os.environ, WRK_PATHS=str(paths), WRK_METHOD=method, WRK_SIZE=str(p.small_size))
    argv = ["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{max(1, round(p.wrk_duration))}s",
            "--timeout", "10s", "-s", str(script), server.endpoint.url + "/"]
    with Meter(server) as m:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        if cores is not None:
            os.sched_setaffinity(proc.pid, cores)
        raw, _ = await proc.communicate()
    text = raw.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        return {"errors": 1, "error_samples": [{"request": " ".join(argv), "status": 0, "response": text[-600:]}]}
    d = json.loads(line[len("WRKJSON "):])
    ok = d["requests"] - d["status"]
    errs = d["status"] + d["connect"] + d["read"] + d["write"] + d["timeout"]
    run = m.metrics(d["requests"])
    # wrk's own process is not ours, so its CPU does not show in client_cpu_util.
    run.pop("client_cpu_util", None)
    run.update(ops=d["requests"], ops_per_s=ok / (d["duration_us"] / 1e6), p50_ms=d["p50_us"] / 1000,
               p99_ms=d["p99_us"] / 1000, errors=errs,
               error_samples=[{"request": f"{method} (wrk, presigned)", "status": 0, "response": json.dumps(d)}] if errs else [])
    return run
