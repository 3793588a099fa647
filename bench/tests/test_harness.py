"""The harness end to end on loopback: real servers, real signed requests, real bytes compared."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import report, scenarios
from bench.client import S3Client
from bench.scenarios import BUCKET, Params
from bench.servers import Running, all_specs, split_cores

TINY = Params(repeats=1, small_duration=0.3, concurrencies=(4,), large_size=3 * 1024 * 1024, parallel_count=2,
              parallel_size=1024 * 1024, mpu_size=11 * 1024 * 1024, part_size=5 * 1024 * 1024, list_keys=300,
              list_keys_api=300, page_samples=1)


def start(name: str, tmp_path: Path) -> Iterator[Running]:
    spec = all_specs()[name]
    why = spec.missing()
    if why:
        pytest.skip(why)
    running = spec.start(tmp_path, split_cores()[1])
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def ceiling(tmp_path: Path) -> Iterator[Running]:
    yield from start("aiohttp", tmp_path)


@pytest.fixture(params=["s3rver", "s3serve"])
def s3server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    yield from start(request.param, tmp_path)


async def test_small_ops_against_the_ceiling_measure_every_operation(ceiling: Running) -> None:
    async with S3Client(ceiling.endpoint, pool=8) as client:
        got = await scenarios.small_ops(client, ceiling, TINY, verify=False)
    assert sorted(got) == ["small.delete.c4", "small.get.c4", "small.head.c4", "small.put.c4"]
    for key, runs in got.items():
        (run,) = runs
        assert run["errors"] == 0, (key, run["error_samples"])
        assert run["ops"] > 0 and run["ops_per_s"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert run["server_cpu_us_per_op"] is not None and run["server_peak_rss_MiB"] > 1
    results = {
        "meta": {"date": "now", "machine": {"cpu": "x", "cores": 2}, "client_cores": [0], "server_cores": [1],
                 "mode": "test", "params": {"repeats": 1}},
        "servers": {"aiohttp": {"role": "ceiling", "describe": "bare", "scenarios": {k: report.summarize(v) for k, v in got.items()}}},
    }
    md = report.markdown(results)
    assert "| small.get.c4 | ops_per_s ↑ |" in md


async def test_signed_requests_round_trip_on_a_verifying_server(s3server: Running) -> None:
    """s3rver and s3serve both check SigV4: any signing slip would be a 403 here."""
    async with S3Client(s3server.endpoint, pool=8) as client:
        await client.create_bucket(BUCKET)
        body = os.urandom(4096)
        await client.put(BUCKET, "dir/a key+odd=chars", body)
        assert await client.get(BUCKET, "dir/a key+odd=chars") == body
        assert int((await client.head(BUCKET, "dir/a key+odd=chars"))["Content-Length"]) == 4096
        await client.put_stream(BUCKET, "streamed", 3 * 1024 * 1024 + 5, body)
        assert await client.get_sink(BUCKET, "streamed") == 3 * 1024 * 1024 + 5
        page = await client.list_v2(BUCKET, prefix="dir/", delimiter="/")
        assert page.keys == ["dir/a key+odd=chars"]


async def test_listing_scenario_walks_every_key_and_flags_wrong_answers(s3server: Running) -> None:
    async with S3Client(s3server.endpoint, pool=64) as client:
        await client.create_bucket(BUCKET)
        got, setup = await scenarios.listing(client, s3server, TINY)
    assert setup["keys"] == 300 and setup["errors"] == 0
    (walk,) = got["list.full_walk"]
    assert walk["keys"] == 300 and walk["errors"] == 0, walk["error_samples"]
    assert got["list.first_page"][0]["entries"] == 300
    depth0 = got["list.delimiter.depth0"][0]
    if s3server.name == "s3rver":
        # s3rver 3.7.1 answers a delimiter listing over nested folders with no entries at all:
        # the harness must report that as an error, not as a fast page.
        assert depth0["entries"] == 0 and depth0["errors"] == 1
        assert "empty listing" in depth0["error_samples"][0]["response"]
    else:
        assert depth0["entries"] == TINY.list_fanout and depth0["errors"] == 0


def test_tree_keys_are_three_levels_in_byte_order() -> None:
    keys = scenarios.tree_keys(2000, 10)
    assert len(keys) == len(set(keys)) == 2000
    assert keys == sorted(keys, key=lambda k: k.encode())
    assert all(k.count("/") == 3 for k in keys)
    assert {k.split("/")[0] for k in keys} == {f"d{i:02d}" for i in range(10)}


def test_summarize_reports_median_and_spread() -> None:
    s = report.summarize([{"ops_per_s": 90.0, "errors": 0}, {"ops_per_s": 100.0, "errors": 1}, {"ops_per_s": 120.0, "errors": 0}])
    assert s["median"]["ops_per_s"] == 100.0
    assert s["min"]["ops_per_s"] == 90.0 and s["max"]["ops_per_s"] == 120.0
    assert s["spread"]["ops_per_s"] == pytest.approx(0.3)
    assert s["errors"] == 1


def test_spread_of_cpu_over_processes() -> None:
    from bench.workers import spread

    assert spread({1: 1.0, 2: 1.0}, {1: 3.0, 2: 3.0}) == {"busiest_share": 0.5, "busy_processes": 2}
    assert spread({1: 0.0}, {1: 2.0, 2: 0.0}) == {"busiest_share": 1.0, "busy_processes": 1}


async def test_workers_scenario_runs_one_and_two_worker_processes(tmp_path: Path) -> None:
    from bench import workers, wrkdrive

    if not wrkdrive.available():
        pytest.skip("wrk not installed")
    spec = all_specs()["aiohttp"]
    # 16 connections: all hashed onto one of two sockets would be a 1 in 2**15 event.
    p = Params(repeats=1, concurrencies=(16,), wrk_duration=1.0)
    got = await workers.run_workers(spec, p, tmp_path, set(os.sched_getaffinity(0)))
    assert sorted(got) == ["workers.get.c16.w1", "workers.get.c16.w2", "workers.put.c16.w1", "workers.put.c16.w2"]
    for key, (run,) in got.items():
        assert run["errors"] == 0, (key, run["error_samples"])
        assert run["ops_per_s"] > 0 and run["workers"] == int(key[-1])
        assert run["busy_processes"] == int(key[-1]), (key, run)
    results = {
        "meta": {"date": "now", "machine": {"cpu": "x", "cores": 2}, "client_cores": [0], "server_cores": [1],
                 "mode": "test", "params": {"repeats": 1}},
        "servers": {"aiohttp": {"role": "ceiling", "describe": "bare", "scenarios": {k: report.summarize(v) for k, v in got.items()}}},
    }
    assert "| aiohttp | get.c16 |" in report.markdown(results)


def test_no_fsync_variant_is_compared_with_the_peers_alone() -> None:
    def server(role: str, ops: float) -> dict[str, object]:
        return {"role": role, "describe": role, "scenarios": {"small.put.c16": report.summarize([{"ops_per_s": ops}])}}

    results = {
        "meta": {"date": "now", "machine": {"cpu": "x", "cores": 2}, "client_cores": [0], "server_cores": [1],
                 "mode": "test", "params": {"repeats": 1}},
        "servers": {"s3serve": server("subject", 1000.0), "s3serve-nofsync": server("variant", 3000.0),
                    "s3rver": server("peer", 1500.0), "aiohttp": server("ceiling", 9000.0)},
    }
    md = report.markdown(results)
    main, variant = md.split("### Without fsync")[:2]
    assert "| small.put.c16 | ops_per_s ↑ | 1,000 | 3,000 | 1,500 | 9,000 | 0.33 | 0.67 | 0.11 |" in main
    # The variant against the peers only: no column for the subject or the ceilings.
    assert "| small.put.c16 | ops_per_s ↑ | 3,000 | 1,500 | 2.00 |" in variant.split("###")[0]


def test_put_floor_moves_every_byte_and_sets_the_large_puts_against_it(tmp_path: Path) -> None:
    from bench import machine

    floor = machine.put_floor(tmp_path, 8 * 1024 * 1024, split_cores()[1])
    assert sorted(floor) == ["recv_md5_MiBps", "recv_md5_write_MiBps"]
    assert all(v > 0 for v in floor.values())
    assert list(tmp_path.iterdir()) == []  # the written copy is gone

    def server(single: float, parallel: float) -> dict[str, object]:
        runs = {"large.put.single": [{"MiB_per_s": single}], "large.put.parallel8": [{"MiB_per_s": parallel}]}
        return {"role": "subject", "describe": "x", "scenarios": {k: report.summarize(v) for k, v in runs.items()}}

    results = {
        "meta": {"date": "now", "machine": {"cpu": "x", "cores": 2}, "client_cores": [0], "server_cores": [1],
                 "mode": "test", "params": {"repeats": 1}},
        "machine_limits": {"recv_md5_write_MiBps": {"runs": [400.0], "median": 400.0, "spread": 0.0}},
        "servers": {"s3serve": server(300.0, 440.0)},
    }
    md = report.markdown(results)
    assert "÷ the bare receive + MD5 + write loop (400 MiB/s)" in md
    assert "- s3serve: 300 / 440 MiB/s = 0.75 / 1.10" in md
