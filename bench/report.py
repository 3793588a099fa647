"""Medians and spread of the repeated runs, and the Markdown tables of ratios (s3serve ÷ each other)."""

from __future__ import annotations

from typing import Any

# The metric that stands for each scenario, and whether more is better.
PRIMARY: list[tuple[str, str, bool]] = [
    ("small.", "ops_per_s", True),
    ("wrk.", "ops_per_s", True),
    ("workers.", "ops_per_s", True),
    ("large.", "MiB_per_s", True),
    ("multipart.", "MiB_per_s", True),
    # Keys per second, not seconds: servers whose keys go through the API get a smaller bucket
    # (bench/run.py --list-keys-api), so whole-walk times would compare different sizes.
    ("list.full_walk", "keys_per_s", True),
    ("list.", "page_ms", False),
    ("startup", "startup_s", False),
]
SUBJECT = "s3serve"
NO_FSYNC = "s3serve-nofsync"  # the subject with --no-fsync: a variant, measured on small objects only


def primary(scenario: str) -> tuple[str, bool]:
    for prefix, metric, higher in PRIMARY:
        if scenario.startswith(prefix):
            return metric, higher
    return "seconds", False


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per numeric metric: median, min, max and spread ((max-min)/median) over the repeats."""
    out: dict[str, Any] = {"runs": runs, "median": {}, "min": {}, "max": {}, "spread": {}}
    names = {k for r in runs for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for name in sorted(names):
        values = sorted(float(r[name]) for r in runs if isinstance(r.get(name), int | float))
        if not values:
            continue
        n = len(values)
        med = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
        out["median"][name] = med
        out["min"][name] = values[0]
        out["max"][name] = values[-1]
        out["spread"][name] = (values[-1] - values[0]) / med if med else 0.0
    out["errors"] = sum(int(r.get("errors", 0) or 0) for r in runs)
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "–"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _cell(summary: dict[str, Any] | None, metric: str) -> tuple[float | None, str]:
    if not summary:
        return None, "–"
    med = summary["median"].get(metric)
    if med is None:
        return None, "–" if not summary.get("errors") else "errors"
    text = _fmt(med)
    spread = summary["spread"].get(metric, 0.0)
    if len(summary["runs"]) > 1:
        text += f" ±{spread * 50:.0f}%"
    if summary.get("errors"):
        text += " ⚠"
    return med, text


def ratio_table(
    results: dict[str, Any], metric_for: Any, title: str, note: str, subject: str = SUBJECT, roles: tuple[str, ...] = ()
) -> list[str]:
    """One row per scenario: each server's value, then subject ÷ each other server. ``roles``: a
    table of the subject against servers of these roles only, or none without the subject."""
    servers = {n: s for n, s in results["servers"].items() if n == subject or not roles or s["role"] in roles}
    if roles and subject not in servers:
        return []
    names = [subject] + [n for n in servers if n != subject] if subject in servers else list(servers)
    others = [n for n in names if n != subject]
    scenarios: list[str] = []
    for n in names:
        for s in servers[n]["scenarios"]:
            if s not in scenarios:
                scenarios.append(s)
    head = ["scenario", "metric"] + [f"{n} ({servers[n]['role']})" for n in names] + [f"{subject} ÷ {n}" for n in others]
    lines = [f"### {title}", "", note, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sc in scenarios:
        metric, higher = metric_for(sc)
        if metric is None:
            continue
        values: dict[str, float | None] = {}
        cells = []
        for n in names:
            v, text = _cell(servers[n]["scenarios"].get(sc), metric)
            values[n] = v
            cells.append(text)
        if all(v is None for v in values.values()):
            continue
        ratios = []
        for n in others:
            a, b = values.get(subject), values.get(n)
            ratios.append(f"{a / b:.2f}" if a is not None and b else "–")
        arrow = "↑" if higher else "↓"
        lines.append(f"| {sc} | {metric} {arrow} | " + " | ".join(cells + ratios) + " |")
    if len(lines) == 6:
        return []  # no scenario had this metric
    return lines + [""]


def workers_table(results: dict[str, Any]) -> list[str]:
    """1 vs 2 worker processes per server (the `workers` scenario): ops/s, ratio, how CPU spread."""
    rows = []
    for name, server in results["servers"].items():
        scs = server["scenarios"]
        for sc in scs:
            if not (sc.startswith("workers.") and sc.endswith(".w1")):
                continue
            base = sc[: -len(".w1")]
            one, two = scs[sc], scs.get(base + ".w2")
            a, a_text = _cell(one, "ops_per_s")
            b, b_text = _cell(two, "ops_per_s")
            ratio = f"{b / a:.2f}" if a and b is not None else "–"
            share = _cell(two, "busiest_share")[1]
            util1, util2 = _cell(one, "server_cpu_util")[1], _cell(two, "server_cpu_util")[1]
            cost1, cost2 = _cell(one, "server_cpu_us_per_op")[1], _cell(two, "server_cpu_us_per_op")[1]
            rows.append(f"| {name} | {base[len('workers.'):]} | {a_text} | {b_text} | {ratio} | {util1} / {util2} | {cost1} / {cost2} | {share} |")
    if not rows:
        return []
    return [
        "### Worker processes (server and wrk on all cores)",
        "",
        "ops/s with 1 and 2 worker processes; server CPU in cores used; busiest share = the fraction of "
        "the server's CPU time taken by its busiest process with 2 workers (0.5 = even).",
        "",
        "| server | scenario | 1 worker ops/s | 2 workers ops/s | 2 ÷ 1 | server CPU (cores) 1 / 2 | server CPU µs/op 1 / 2 | busiest share |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _put_floor_ratios(results: dict[str, Any]) -> list[str]:
    """Each server's large PUTs against the bare receive + MD5 + write loop (machine.put_floor)."""
    floor = results["machine_limits"].get("recv_md5_write_MiBps", {}).get("median")
    if not floor:
        return []
    lines = []
    for name, server in results["servers"].items():
        scenarios = server["scenarios"]
        got = [scenarios.get(f"large.put.{shape}", {}).get("median", {}).get("MiB_per_s") for shape in ("single", "parallel8")]
        if all(got):
            lines.append(f"- {name}: {_fmt(got[0])} / {_fmt(got[1])} MiB/s = {got[0] / floor:.2f} / {got[1] / floor:.2f}")
    if not lines:
        return []
    return [f"Large PUT (single / 8 parallel) ÷ the bare receive + MD5 + write loop ({_fmt(floor)} MiB/s):", "", *lines, ""]


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "# s3serve benchmark",
        "",
        f"{meta['date']} · commit {meta.get('commit', '?')} · {meta['machine']['cpu']} · {meta['machine']['cores']} cores · "
        f"client cores {meta['client_cores']} · server cores {meta['server_cores']} · mode {meta['mode']} · "
        f"repeats {meta['params']['repeats']}",
        "",
        "Values are medians over the repeats, ± half the relative spread (max−min)/median; ⚠ = some requests "
        "failed (see results.json). Ratios are s3serve ÷ the other server: for ↑ metrics above 1 means s3serve "
        "is faster, for ↓ metrics (times) below 1 means s3serve is faster.",
        "",
        "Servers: " + "; ".join(f"**{n}** – {s['describe']}" for n, s in results["servers"].items()) + ".",
    ]
    if meta.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{n}: {why}" for n, why in meta["skipped"].items()) + "."]
    lines.append("")
    lines += ratio_table(results, primary, "Throughput and time", "Primary metric of each scenario.")
    lines += workers_table(results)
    lines += ratio_table(
        results,
        lambda sc: primary(sc) if sc.startswith(("small.", "wrk.")) else (None, False),
        f"Without fsync, as the peers run ({NO_FSYNC})",
        "s3serve waits for fsync of the data and of the folder before it answers a PUT or DELETE; moto "
        "and s3rver never fsync. This is s3serve with --no-fsync against them (a test double's usual "
        "setting, where nothing needs to survive a power cut).",
        subject=NO_FSYNC,
        roles=("peer",),
    )
    lines += ratio_table(
        results,
        lambda sc: ("p99_ms", False) if sc.startswith(("small.", "wrk.", "workers.")) else (None, False),
        "Small-object tail latency (p99, ms)",
        "p50 is in results.json.",
    )
    lines += ratio_table(
        results,
        lambda sc: ("startup_cpu_s", False) if sc.startswith("startup") else (None, False),
        "Start-up CPU (s, all threads of the server until its first answer)",
        "Less sensitive than the wall time to other load on the machine.",
    )
    lines += ratio_table(
        results,
        lambda sc: ("server_cpu_us_per_op", False) if not sc.startswith("startup") else (None, False),
        "Server CPU per operation (µs, user+system, children included)",
        "For listings an operation is one page; for large objects one object; for multipart one part.",
    )
    lines += ratio_table(
        results,
        lambda sc: ("server_peak_rss_MiB", False) if not sc.startswith("startup") else (None, False),
        "Server peak RSS during the scenario (MiB, VmHWM summed over the process tree)",
        "",
    )
    lines += ratio_table(
        results,
        lambda sc: ("client_cpu_util", False) if sc.startswith(("small.", "large.")) else (None, False),
        "Load generator CPU utilisation (fraction of one core)",
        "Near 1.0 the Python client, not the server, is the limit: compare with the wrk rows.",
    )
    if results.get("machine_limits"):
        lines += ["### Machine limits (same run)", "", "| measure | median | spread |", "|---|---|---|"]
        for name, s in results["machine_limits"].items():
            lines.append(f"| {name} | {_fmt(s['median'])} | ±{s['spread'] * 50:.0f}% |")
        lines.append("")
        lines += _put_floor_ratios(results)
    setups = {n: s["listing_setup"] for n, s in results["servers"].items() if s.get("listing_setup")}
    if setups:
        lines += ["### Listing fixtures", ""]
        for n, st in setups.items():
            lines.append(f"- {n}: {st['keys']:,} keys, {st['how']}, {st['seconds']:.1f} s" + (f", {st['errors']} errors" if st["errors"] else ""))
        lines.append("")
    lines += [f"Load generator peak RSS: {meta.get('client_peak_rss_MiB', 0):.0f} MiB.", ""]
    failures = [
        (n, sc, sample)
        for n, s in results["servers"].items()
        for sc, summ in s["scenarios"].items()
        for run in summ["runs"]
        for sample in run.get("error_samples", [])[:1]
    ]
    if failures:
        lines += ["### Failed requests (first per run)", ""]
        for n, sc, sample in failures[:40]:
            lines.append(f"- {n} {sc}: `{sample['request'][:160]}` → {sample['status']} `{sample['response'][:200]!r}`")
        lines.append("")
    return "\n".join(lines)
