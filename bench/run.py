"""`make bench`: s3serve, its peers and its ceilings side by side in one run, same client, same machine.

    .venv/bin/python -m bench.run [--quick] [--servers s3serve,moto] [--scenarios small,large] [--repeats N]

Results go to bench/out/results.json and a Markdown table of ratios to stdout and bench/out/RESULTS.md.
Set S3_ENDPOINT (plus S3_ACCESS_KEY, S3_SECRET_KEY) to add an already running loopback endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import machine, report, scenarios, workers, wrkdrive
from bench.client import S3Client, S3RequestError
from bench.scenarios import BUCKET, MiB, Params
from bench.servers import BENCH, REPO, Running, ServerSpec, StartError, all_specs, peak_rss_kib, split_cores

SCENARIOS = ("machine", "startup", "small", "wrk", "large", "multipart", "list", "workers")
# Scenarios that start their own server instances (run_server's shared instance is not used).
OWN_INSTANCES = ("machine", "startup", "workers")
# What each kind of server can be asked: ceilings speak plain HTTP, the bare aiohttp app has no storage.
CAPS = {
    "s3": {"small", "wrk", "large_put", "large_get", "multipart", "list"},
    "nginx": {"small", "wrk", "large_put", "large_get"},
    "aiohttp": {"small", "wrk", "large_put"},
    # The durability cost on the scenarios where it shows; the rest would only lengthen the run.
    "s3serve-nofsync": {"small", "wrk"},
    # The upstream cache: write-through and read-through cost on small and large objects.
    "s3serve-cache": {"small", "wrk", "large_put", "large_get"},
    "s3serve-cache-30s": {"small", "wrk"},
}


def caps_of(spec: ServerSpec) -> set[str]:
    if spec.name in CAPS:
        return CAPS[spec.name]
    return CAPS["s3"] if spec.s3 else {"small"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke test of the harness")
    ap.add_argument("--servers", default="", help="comma list (default: all installed): " + ",".join(all_specs()))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of " + ",".join(SCENARIOS))
    ap.add_argument("--repeats", type=int, help="repeats per measurement (default 3, quick 1)")
    ap.add_argument("--concurrency", default="", help="comma list of small-object concurrencies (default 16,64)")
    ap.add_argument("--duration", type=float, help="seconds per small-object measurement")
    ap.add_argument("--large-mib", type=int, help="size of the single large object in MiB")
    ap.add_argument("--list-keys", type=int, help="keys for listing on servers whose files are created on disk")
    ap.add_argument("--list-keys-api", type=int, help="keys for listing on servers filled through the API")
    ap.add_argument("--data-dir", type=Path, default=BENCH / "data", help="where servers keep their data")
    ap.add_argument("--out", type=Path, default=BENCH / "out")
    return ap.parse_args(argv)


def params_from(args: argparse.Namespace) -> Params:
    p = Params.quick() if args.quick else Params()
    if args.repeats:
        p.repeats = args.repeats
    if args.concurrency:
        p.concurrencies = tuple(int(c) for c in args.concurrency.split(","))
    if args.duration:
        p.small_duration = p.wrk_duration = args.duration
    if args.large_mib:
        p.large_size = p.mpu_size = args.large_mib * MiB
        p.parallel_size = max(MiB, p.large_size // p.parallel_count)
    if args.list_keys:
        p.list_keys = args.list_keys
    if args.list_keys_api:
        p.list_keys_api = args.list_keys_api
    return p


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure_machine(p: Params, data_dir: Path, quick: bool, server_cores: set[int]) -> dict[str, Any]:
    disk_size = 64 * MiB if quick else 1024 * MiB
    hash_size = 64 * MiB if quick else 512 * MiB
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(p.repeats):
        for name, value in {**machine.disk_write_read(data_dir / "_machine", disk_size), **machine.hash_rates(hash_size),
                           **machine.put_floor(data_dir / "_machine", disk_size, server_cores),
                           **machine.signer_rate()}.items():
            runs.setdefault(name, []).append({"v": value})
    shutil.rmtree(data_dir / "_machine", ignore_errors=True)
    out = {}
    for name, rs in runs.items():
        s = report.summarize(rs)
        out[name] = {"runs": [r["v"] for r in rs], "median": s["median"]["v"], "spread": s["spread"]["v"]}
    return out


async def run_server(spec: ServerSpec, p: Params, wanted: list[str], data_dir: Path, cores: tuple[set[int], set[int]]) -> dict[str, Any]:
    caps = caps_of(spec)
    result: dict[str, Any] = {"role": spec.role, "describe": spec.describe, "scenarios": {}, "failures": []}
    if "startup" in wanted and not spec.external_url and spec.role != "variant":
        # "startup": on an empty root (a first start, which may set up its state on disk);
        # "startup.restart": again on the root the previous start left (every later start).
        runs: dict[str, list[dict[str, Any]]] = {"startup": [], "startup.restart": []}
        for _ in range(p.repeats):
            for key, fresh in (("startup", True), ("startup.restart", False)):
                running = spec.start(data_dir, cores[1], fresh=fresh)
                runs[key].append({"startup_s": running.startup_s, "startup_cpu_s": running.startup_cpu_s,
                                  "server_peak_rss_MiB": peak_rss_kib(running.pid) / 1024 if running.pid else None})
                running.stop()
                shutil.rmtree(running.workdir, ignore_errors=True)
        for key, startups in runs.items():
            result["scenarios"][key] = report.summarize(startups)
            log(f"{spec.name}: {key} {result['scenarios'][key]['median']['startup_s'] * 1000:.0f} ms")
    if "workers" in wanted and spec.workers and not spec.external_url:
        if not wrkdrive.available():
            result["failures"].append({"scenario": "workers", "error": "wrk not installed (run bench/install.sh)"})
        else:
            log(f"{spec.name}: workers (server and wrk on cores {sorted(cores[0] | cores[1])}) ...")
            for key, worker_runs in (await workers.run_workers(spec, p, data_dir, cores[0] | cores[1])).items():
                result["scenarios"][key] = report.summarize(worker_runs)
    if not [name for name in wanted if name not in OWN_INSTANCES]:
        return result
    running = spec.start(data_dir, cores[1])
    try:
        async with S3Client(running.endpoint, pool=max(p.concurrencies) + 8) as client:
            if spec.s3:
                await client.create_bucket(BUCKET)
            elif running.root is not None:
                (running.root / BUCKET).mkdir(exist_ok=True)
            for name in wanted:
                if name in OWN_INSTANCES:
                    continue
                if not ({name, f"{name}_put", f"{name}_get"} & caps):
                    continue
                if name == "wrk" and not wrkdrive.available():
                    result["failures"].append({"scenario": "wrk", "error": "wrk not installed (run bench/install.sh)"})
                    continue
                log(f"{spec.name}: {name} ...")
                t0 = time.perf_counter()
                try:
                    got = await run_scenario(name, client, running, p, caps, len(cores[0]))
                except (TimeoutError, S3RequestError, OSError) as exc:
                    # Keep going with the next scenario: one broken operation must not hide the rest.
                    result["failures"].append({"scenario": name, "error": f"{type(exc).__name__}: {exc}"[:1000],
                                               "trace": traceback.format_exc()[-2000:], "server_log": running.log_tail()})
                    log(f"{spec.name}: {name} FAILED: {exc}"[:300])
                    got = {}
                for key, scenario_runs in got.items():
                    result["scenarios"][key] = report.summarize(scenario_runs)
                log(f"{spec.name}: {name} done in {time.perf_counter() - t0:.1f}s")
                if not running.alive():
                    result["failures"].append({"scenario": name, "error": "server died", "server_log": running.log_tail(40)})
                    log(f"{spec.name}: server died during {name}")
                    break
    finally:
        running.stop()
        if not spec.external_url:
            shutil.rmtree(data_dir / spec.name, ignore_errors=True)
        shutil.rmtree(running.workdir, ignore_errors=True)
    return result


async def run_scenario(name: str, client: S3Client, running: Running, p: Params, caps: set[str], client_threads: int) -> dict[str, list[dict[str, Any]]]:
    if name == "small":
        return await scenarios.small_ops(client, running, p, verify=running.name != "aiohttp")
    if name == "wrk":
        return await wrkdrive.run_wrk(client, running, p, client_threads)
    if name == "large":
        return await scenarios.large_objects(client, running, p, caps)
    if name == "multipart":
        return await scenarios.multipart(client, running, p)
    if name == "list":
        got, setup = await scenarios.listing(client, running, p)
        got["_setup"] = [setup]  # carried out of here and moved to listing_setup by the caller
        return got
    raise ValueError(name)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    p = params_from(args)
    wanted = [s for s in args.scenarios.split(",") if s]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    specs = all_specs()
    names = [n for n in args.servers.split(",") if n] or list(specs)
    missing_names = [n for n in names if n not in specs]
    if missing_names:
        raise SystemExit(f"unknown servers: {', '.join(missing_names)} (known: {', '.join(specs)})")
    # What pip does for an installed package: without it an editable s3serve (with
    # PYTHONDONTWRITEBYTECODE=1) compiles its modules at every start, ~60 ms of the startup scenario.
    compileall.compile_dir(str(REPO / "s3serve"), quiet=1)
    client_cores, server_cores = split_cores()
    # The load generator (this process, its threads and wrk) stays off the server's cores.
    os.sched_setaffinity(0, client_cores)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": git_commit(), "mode": "quick" if args.quick else "full",
            "machine": machine.describe(), "client_cores": sorted(client_cores), "server_cores": sorted(server_cores),
            "params": {k: v for k, v in vars(p).items()}, "scenarios": wanted, "skipped": {},
        },
        "servers": {},
    }
    if "machine" in wanted:
        log("machine limits ...")
        results["machine_limits"] = measure_machine(p, args.data_dir, args.quick, server_cores)
    for name in names:
        spec = specs[name]
        why = spec.missing()
        if why:
            results["meta"]["skipped"][name] = why
            log(f"{name}: skipped, {why}")
            continue
        try:
            res = await run_server(spec, p, wanted, args.data_dir, (client_cores, server_cores))
        except StartError as exc:
            results["meta"]["skipped"][name] = f"did not start: {exc}"[:500]
            log(f"{name}: did not start: {exc}"[:500])
            continue
        setup = res["scenarios"].pop("_setup", None)
        if setup:
            res["listing_setup"] = setup["runs"][0]
        results["servers"][name] = res
    results["meta"]["client_peak_rss_MiB"] = peak_rss_kib(os.getpid()) / 1024
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    md = report.markdown(results)
    (args.out / "RESULTS.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
