"""Operator benchmarks on the testbed fleet: ceiling, throughput, writes per placement, latency, footprint,
and placement quality against an exact optimum. `make bench` runs it after bench_core.py.

    python bench/bench_operator.py [--phases quality,operator,footprint] [--quick] [--profile FILE]

1. ceiling: the most create + status-patch calls per second a tight async client (aiohttp, 32 in flight)
   achieves against the same hub apiserver, small custom objects (measured before and after the operator
   phase; the mean is used);
2. throughput: 500 AIWorkloads created in a burst over 4 members; placements/s = workloads / (last Job
   seen in a member - first create sent); efficiency = placements/s * 3 / ceiling;
3. writes per placement: mutating requests (apiserver_request_total) on hub and members during the burst
   until every workload is Running, per resource and verb;
4. latency: AIWorkload POST sent -> the Job's ADDED event in the member's watch stream (one client clock),
   at open-loop offered loads (a fraction of the measured throughput) and in the burst;
5. footprint: the operator's RSS and CPU (from /proc) at 1,000 and 5,000 AIWorkloads over 10 members;
6. quality: bench/quality.py (online placement vs MILP optimum; batch window mode);
7. the "core" section written by bench_core.py is kept and summarised.

Results merge into bench/results.json; bench/summary.md and docs/benchmark-operator.png are rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleetbench import (
    GROUP_PATH,
    Tracker,
    Watchers,
    api_for,
    create_namespaces,
    create_workloads,
    gather_counts,
    members,
    prepare_hub,
    until,
    workload,
)
from kubeapi import Api, ApiError, delta
from opproc import Operator, fleet_cpu, loadavg, machine_cpu, sample

from tenbin.testbed.fleet import HUB, Fleet

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
SUMMARY = HERE / "summary.md"
PLOT = HERE.parent / "docs" / "benchmark-operator.png"  # committed: docs/benchmarks.md shows it
HUB_OPERATOR = {"aiworkloads", "aiworkloads/status", "events", "gpuclusters", "gpuclusters/status"}
MEMBER_OPERATOR = {"jobs", "namespaces", "deployments", "statefulsets"}
GOALS = {"efficiency": 0.5, "writes_per_placement": 3.0, "latency_p99_s": 1.0, "quality_gap_pct": 5.0}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def all_in(seen: dict[str, float], keys: list[str]) -> Callable[[], bool]:
    return lambda: all(k in seen for k in keys)


def all_running(tr: Tracker, keys: list[str]) -> Callable[[], bool]:
    return lambda: all(tr.phase.get(k) == "Running" for k in keys)


class CpuWindow:
    """Machine-wide CPU busy fraction and load average over a stretch of the run."""

    def __init__(self) -> None:
        self.busy0, self.total0 = machine_cpu()
        self.self0 = sample(os.getpid()).cpu_s
        self.t0 = time.monotonic()

    def done(self) -> dict[str, Any]:
        busy, total = machine_cpu()
        secs = time.monotonic() - self.t0
        client = sample(os.getpid()).cpu_s - self.self0
        return {"machine_busy_pct": round(100 * (busy - self.busy0) / max(1.0, total - self.total0), 1),
                "bench_client_cpu_pct": round(100 * client / max(secs, 1e-9), 1), "_client_cpu_s": client,
                "loadavg_1m": loadavg()[0], "cores": os.cpu_count()}


# ------------------------------------------------------------------------------------------ the ceiling


async def ceiling(hub: Api, ns: str, n: int, concurrency: int = 32, tag: str = "p",
                  aiworkloads: bool = False) -> dict[str, Any]:
    """Create + status patch of n small custom objects with `concurrency` requests in flight.

    aiworkloads: the same with real AIWorkload objects (the hub's CRD with its schema and CEL rules).
    """
    path = f"{GROUP_PATH}/namespaces/{ns}/aiworkloads" if aiworkloads else \
        f"/apis/bench.tenbin.io/v1/namespaces/{ns}/probes"
    todo = iter(range(n))
    window = CpuWindow()

    async def worker() -> None:
        for i in todo:
            name = f"{tag}-{i:05d}"
            body = workload(name) if aiworkloads else {"apiVersion": "bench.tenbin.io/v1", "kind": "Probe",
                                                         "metadata": {"name": name}, "spec": {"i": i}}
            await hub.create(path, body)
            status = {"message": f"probe {i}"} if aiworkloads else {"phase": "Done", "i": i}
            await hub.merge_patch(f"{path}/{name}/status", {"status": status})

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    secs = time.perf_counter() - t0
    load = window.done()
    load.pop("_client_cpu_s")
    with contextlib.suppress(ApiError):
        await hub.call("DELETE", path, ok=(200, 202))
    return {"objects": n, "writes": 2 * n, "seconds": round(secs, 2), "writes_per_s": round(2 * n / secs, 1),
            "concurrency": concurrency, **load}


# ------------------------------------------------------------------------------------------ writes


def classify(counts: dict[str, dict[tuple[str, str], int]], created: int, members_: list[str]) -> dict[str, Any]:
    """Mutating requests by (cluster role, resource, verb); the benchmark's own AIWorkload POSTs removed."""
    hub_op: dict[str, int] = {}
    hub_other: dict[str, int] = {}
    for (verb, res), n in counts.get(HUB, {}).items():
        if res == "aiworkloads" and verb == "POST":
            n -= created  # the benchmark created these
            if n <= 0:
                continue
        (hub_op if res in HUB_OPERATOR else hub_other)[f"{res} {verb}"] = \
            (hub_op if res in HUB_OPERATOR else hub_other).get(f"{res} {verb}", 0) + n
    mem_op: dict[str, int] = {}
    mem_other: dict[str, int] = {}
    for m in members_:
        for (verb, res), n in counts.get(m, {}).items():
            tenbin_write = (res in MEMBER_OPERATOR and verb in ("APPLY", "PATCH", "DELETE")) or \
                (res == "namespaces" and verb == "POST")
            target = mem_op if tenbin_write else mem_other
            target[f"{res} {verb}"] = target.get(f"{res} {verb}", 0) + n
    return {"hub_operator": hub_op, "hub_other": hub_other, "member_operator": mem_op,
            "member_control_plane": mem_other}


def per_placement(writes: dict[str, Any], placed: int) -> dict[str, Any]:
    def per(d: dict[str, int]) -> dict[str, float]:
        return {k: round(v / placed, 3) for k, v in sorted(d.items())}

    hub_op = sum(writes["hub_operator"].values())
    mem_op = sum(writes["member_operator"].values())
    events = sum(v for k, v in writes["hub_operator"].items() if k.startswith("events "))
    status = sum(v for k, v in writes["hub_operator"].items() if k.startswith("aiworkloads/status "))
    total = (hub_op + mem_op) / placed
    # the follow-up status patch (phase Running) and its Event are not part of placing
    running_followups = max(0, status - placed) / placed
    return {
        "placed": placed,
        "hub_operator": per(writes["hub_operator"]),
        "member_operator": per(writes["member_operator"]),
        "total": round(total, 3),
        "total_without_events": round(total - events / placed, 3),
        "placement_path": round(total - 2 * running_followups, 3),
        "placement_path_without_events": round(total - events / placed - running_followups, 3),
        "member_control_plane_total": round(sum(writes["member_control_plane"].values()) / placed, 2),
        "hub_other_total": round(sum(writes["hub_other"].values()) / placed, 3),
        "raw_counts": writes,
    }


# ------------------------------------------------------------------------------------------ phase: operator


async def wait_clusters_ready(hub: Api, n: int, timeout: float = 120) -> None:
    async def ready() -> bool:
        items = (await hub.get(f"{GROUP_PATH}/gpuclusters")).get("items") or []
        return len(items) == n and all((i.get("status") or {}).get("phase") == "Ready" for i in items)

    t0 = time.monotonic()
    while not await ready():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("GPUClusters not Ready")
        await asyncio.sleep(0.25)


def latency_stats(tr: Tracker, keys: list[str]) -> dict[str, Any]:
    lat = [tr.in_member[k] - tr.sent[k] for k in keys if k in tr.in_member]
    hub_lat = [tr.placed[k] - tr.sent[k] for k in keys if k in tr.placed]
    return {"n": len(keys), "in_member": len(lat),
            "p50_s": round(pct(lat, 50), 4), "p90_s": round(pct(lat, 90), 4), "p99_s": round(pct(lat, 99), 4),
            "max_s": round(max(lat), 4) if lat else None,
            "hub_status_p50_s": round(pct(hub_lat, 50), 4), "hub_status_p99_s": round(pct(hub_lat, 99), 4)}


async def run_burst(fleet: Fleet, hub: Api, op: Operator, tr: Tracker, ns: str, n: int,
                    suspend: bool) -> dict[str, Any]:
    """n AIWorkloads created as fast as 16 in flight allow; timed until every Job is in a member."""
    names = [f"w-{i:04d}" for i in range(n)]
    keys = [f"{ns}/{x}" for x in names]
    before = await gather_counts(fleet)
    cpu0, f0, m0 = op.sample(), fleet_cpu(fleet), machine_cpu()
    window = CpuWindow()
    await create_workloads(hub, ns, names, tr, concurrency=16, suspend=suspend)
    await until(f"{ns} in members", lambda: all(k in tr.in_member for k in keys), 600)
    busy = window.done()
    cpu1, f1, m1 = op.sample(), fleet_cpu(fleet), machine_cpu()
    # where the machine's CPU went while placing, in ms per placement
    per = {k: round(1000 * (f1[k] - f0.get(k, 0.0)) / n, 1) for k in sorted(f1)}
    per["operator"] = round(1000 * (cpu1.cpu_s - cpu0.cpu_s) / n, 1)
    per["benchmark client"] = busy.pop("_client_cpu_s") * 1000 / n
    per["benchmark client"] = round(per["benchmark client"], 1)
    machine_ms = 1000 * (m1[0] - m0[0]) / os.sysconf("SC_CLK_TCK") / n
    per["everything else on the machine (other work)"] = round(machine_ms - sum(per.values()), 1)
    if not suspend:  # the phase-following update (Running) belongs to the writes of a placed Job
        await until(f"{ns} Running", lambda: all(tr.phase.get(k) == "Running" for k in keys), 300)
    await asyncio.sleep(2 * op.resync + 0.5)
    after = await gather_counts(fleet)
    first = min(tr.sent[k] for k in keys)
    done = sorted(tr.in_member[k] for k in keys)
    span = done[-1] - first
    lo, hi = done[len(done) // 10], done[(len(done) * 9) // 10]
    created_span = max(tr.created[k] for k in keys) - first
    counts = {c: delta(after[c], before[c]) for c in after}
    return {
        "workloads": n,
        "member_jobs": "suspended (no pods)" if suspend else "running pods (KWOK)",
        "create_seconds": round(created_span, 2),
        "offered_per_s": round(n / created_span, 1),
        "seconds": round(span, 2),
        "placements_per_s": round(n / span, 1),
        "sustained_placements_per_s": round((0.8 * n) / max(hi - lo, 1e-9), 1),
        "operator_cpu_pct": round(100 * (cpu1.cpu_s - cpu0.cpu_s) / max(cpu1.t - cpu0.t, 1e-9), 1),
        "operator_cpu_ms_per_placement": round(1000 * (cpu1.cpu_s - cpu0.cpu_s) / n, 2),
        "latency": latency_stats(tr, keys),
        "writes_per_placement": per_placement(classify(counts, n, fleet.members), n),
        "cpu_ms_per_placement": per,
        "machine_cpu_ms_per_placement": round(machine_ms, 1),
        **busy,
    }


async def phase_operator(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    n_members, burst = 4, args.burst
    # GPUs for both bursts (suspended Jobs keep their reservation: no pod ever binds) and the load levels
    gpus = -(-int((2 * burst + 300) / n_members) // 8) * 8
    specs = members(n_members, gpus)
    log(f"operator phase: hub + {n_members} members x {gpus} fake GPUs")
    t_up = time.monotonic()
    fleet = Fleet.up(specs, root / "fleet-a", log=lambda m: None)
    out: dict[str, Any] = {"members": n_members, "gpus_per_member": gpus,
                           "fleet_up_s": round(time.monotonic() - t_up, 1)}
    op: Operator | None = None
    watchers: Watchers | None = None
    hub = api_for(fleet, HUB, limit=64)
    ceilings: list[dict[str, Any]] = []

    async def measure_ceiling(when: str) -> None:
        c = await ceiling(hub, "bench-probe", args.ceiling_objects, tag=f"c{len(ceilings)}")
        c["when"] = when
        ceilings.append(c)
        log(f"  ceiling ({when}): {c['writes_per_s']} writes/s (machine busy {c['machine_busy_pct']}%)")

    try:
        prepare_hub(fleet, specs)
        levels_ns = [f"bench-l{i}" for i in range(4)]
        await create_namespaces(hub, ["bench-probe", "bench-aiw-probe", "bench-warm", "bench-burst", "bench-suspended",
                                      *levels_ns])
        await ceiling(hub, "bench-probe", 200, tag="warm")  # warm the apiserver's caches and connections
        await measure_ceiling("before the operator starts")
        aiw = await ceiling(hub, "bench-aiw-probe", args.ceiling_objects // 2, tag="a", aiworkloads=True)
        log(f"  same client with AIWorkload objects: {aiw['writes_per_s']} writes/s")

        op = Operator(fleet, root / "operator-a.log", profile=args.profile)
        op.start()
        await wait_clusters_ready(hub, n_members)
        tr = Tracker()
        watchers = Watchers(fleet, tr)
        await watchers.start()
        warm = [f"warm-{i}" for i in range(8)]
        await create_workloads(hub, "bench-warm", warm, tr)
        await until("warm-up Running", lambda: all(tr.phase.get(f"bench-warm/{n}") == "Running" for n in warm), 120)
        await asyncio.sleep(2.5)

        log(f"burst of {burst} (member Jobs run pods)")
        b = await run_burst(fleet, hub, op, tr, "bench-burst", burst, suspend=False)
        log(f"  {b['placements_per_s']} placements/s; writes/placement {b['writes_per_placement']['total']} "
            f"(machine busy {b['machine_busy_pct']}%, operator {b['operator_cpu_pct']}%)")
        await measure_ceiling("after the burst, operator idle")
        out["burst"] = b

        # ---- latency at open-loop offered loads below the measured throughput
        thr = b["placements_per_s"]
        plan = [(levels_ns[0], 2.0, 20)] + [
            (levels_ns[i + 1], round(thr * f, 1), int(min(80, max(30, thr * f * 6))))
            for i, f in enumerate((0.25, 0.5, 0.75))]
        levels = []
        for ns, rate, n in plan:
            lnames = [f"l-{i:03d}" for i in range(n)]
            lkeys = [f"{ns}/{x}" for x in lnames]
            window = CpuWindow()
            await create_workloads(hub, ns, lnames, tr, rate=rate)
            await until(f"{ns} in members", all_in(tr.in_member, lkeys), 300)
            first = min(tr.sent[k] for k in lkeys)
            last = max(tr.in_member[k] for k in lkeys)
            stats = latency_stats(tr, lkeys)
            lw = window.done()
            lw.pop("_client_cpu_s")
            levels.append({"offered_per_s": rate, "workloads": n, "achieved_per_s": round(n / (last - first), 1),
                           "latency": stats, **lw})
            log(f"  offered {rate}/s: p50 {stats['p50_s']}s p99 {stats['p99_s']}s")
            await asyncio.sleep(op.resync)
        out["levels"] = levels
        await until("levels Running", lambda: all(tr.phase.get(k) == "Running" for k in tr.sent
                                                  if not k.startswith("bench-suspended/")), 120)

        log(f"burst of {burst} (member Jobs suspended: Tenbin's path without the members' pod machinery)")
        s = await run_burst(fleet, hub, op, tr, "bench-suspended", burst, suspend=True)
        log(f"  {s['placements_per_s']} placements/s (machine busy {s['machine_busy_pct']}%, "
            f"operator {s['operator_cpu_pct']}%)")
        await measure_ceiling("after the suspended burst, operator idle")
        out["burst_suspended"] = s
        out["duplicates_seen"] = tr.duplicates
        out["decision_latency"] = _decision_metrics(op.metrics())
    finally:
        if watchers is not None:
            await watchers.stop()
        if op is not None:
            op.stop()
        await hub.close()
        fleet.down()
    c1, c2, c3 = ceilings
    out["ceiling"] = {"samples": ceilings, "aiworkload_objects": aiw,
                      "raw_writes_per_s": round((c1["writes_per_s"] + c2["writes_per_s"]) / 2, 1),
                      "raw_writes_per_s_suspended": round((c2["writes_per_s"] + c3["writes_per_s"]) / 2, 1)}
    out["efficiency"] = round(b["placements_per_s"] * 3 / out["ceiling"]["raw_writes_per_s"], 3)
    out["efficiency_suspended"] = round(s["placements_per_s"] * 3 / out["ceiling"]["raw_writes_per_s_suspended"], 3)
    out["writes_per_placement"] = b["writes_per_placement"]
    return out


def _decision_metrics(text: str) -> dict[str, Any]:
    """Mean decision time (the pure core under the placement lock), from the operator's own histogram."""
    s = c = 0.0
    for line in text.splitlines():
        if line.startswith("tenbin_decision_seconds_sum"):
            s = float(line.split()[-1])
        elif line.startswith("tenbin_decision_seconds_count"):
            c = float(line.split()[-1])
    return {"decisions": int(c), "mean_ms": round(1000 * s / c, 3) if c else None}


# ------------------------------------------------------------------------------------------ phase: footprint


async def phase_footprint(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    n_members = 10
    targets = [int(x) for x in args.footprint.split(",")]
    gpus = -(-int(max(targets) * 1.03 / n_members) // 8) * 8
    specs = members(n_members, gpus, prefix="f")
    log(f"footprint phase: hub + {n_members} members x {gpus} fake GPUs; targets {targets}")
    t_up = time.monotonic()
    fleet = Fleet.up(specs, root / "fleet-b", log=lambda m: None)
    out: dict[str, Any] = {"members": n_members, "gpus_per_member": gpus,
                           "fleet_up_s": round(time.monotonic() - t_up, 1), "points": []}
    op: Operator | None = None
    watchers: Watchers | None = None
    hub = api_for(fleet, HUB, limit=32)
    try:
        prepare_hub(fleet, specs)
        await create_namespaces(hub, ["fp"])
        op = Operator(fleet, root / "operator-b.log")
        op.start()
        await wait_clusters_ready(hub, n_members, timeout=240)
        tr = Tracker()
        watchers = Watchers(fleet, tr)
        await watchers.start()
        out["points"].append(await _idle_point(op, 0, args.idle_window))
        have = 0
        # one deadline for the whole ramp keeps `make bench` inside its time budget on a busy machine; a
        # point measured before everything settled says so (settled: false, and how many were Running)
        deadline = time.monotonic() + args.ramp_timeout
        for target in targets:
            names = [f"fp-{i:05d}" for i in range(have, target)]
            keys = [f"fp/{n}" for n in names]
            all_keys = [f"fp/fp-{i:05d}" for i in range(target)]
            c0 = op.sample()
            window = CpuWindow()
            t0 = time.monotonic()
            await create_workloads(hub, "fp", names, tr, concurrency=8)
            settled = True
            try:
                await until(f"{target} in members", all_in(tr.in_member, keys), max(1.0, deadline - t0))
                placed_s = time.monotonic() - t0
                await until(f"{target} Running", all_running(tr, all_keys), max(1.0, deadline - time.monotonic()))
            except TimeoutError as e:
                log(f"  {e}: measuring anyway")
                settled = False
                placed_s = time.monotonic() - t0
            c1 = op.sample()
            in_member = sum(1 for k in keys if k in tr.in_member)
            ramp = {"added": len(names), "in_member": in_member, "placed_seconds": round(placed_s, 1),
                    "placements_per_s": round(in_member / placed_s, 1),
                    "running_seconds": round(time.monotonic() - t0, 1),
                    "operator_cpu_ms_per_workload": round(1000 * (c1.cpu_s - c0.cpu_s) / len(names), 2),
                    **window.done()}
            ramp.pop("_client_cpu_s")
            have = target
            point = await _idle_point(op, target, args.idle_window,
                                      root / f"steady-{target}.txt" if target == targets[-1] else None)
            point["ramp"] = ramp
            point["settled"] = settled
            point["running"] = sum(1 for k in all_keys if tr.phase.get(k) == "Running")
            out["points"].append(point)
            log(f"  {target}: RSS {point['rss_mib']} MiB, steady CPU {point['steady_cpu_pct']}% of a core, "
                f"ramp {ramp['placements_per_s']}/s")
    finally:
        if watchers is not None:
            await watchers.stop()
        if op is not None:
            op.stop()
        await hub.close()
        fleet.down()
    return out


async def _idle_point(op: Operator, workloads: int, window_s: float, profile: Path | None = None) -> dict[str, Any]:
    await asyncio.sleep(2 * op.resync)
    spy = None
    if profile is not None and shutil.which("py-spy", path=str(Path(sys.executable).parent)):
        # on-CPU samples of the steady state, attached to the running operator (no pause: --nonblocking)
        spy = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(op.pid), "--format", "raw",
            "--rate", "50", "--nonblocking", "--duration", str(int(window_s)), "-o", str(profile),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    s0 = op.sample()
    await asyncio.sleep(window_s)
    s1 = op.sample()
    hot: list[list[Any]] = []
    if spy is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(spy.wait(), 30)
            from pyspy_top import tally

            total, incl, _ = tally(profile)  # type: ignore[arg-type]
            by_fn: dict[str, int] = {}
            for f, c in incl.items():  # one entry per function, not per line
                fn = f.split(":")[0] + ")" if ":" in f else f
                by_fn[fn] = max(by_fn.get(fn, 0), c)
            hot = [[f, round(100 * c / total, 1)] for f, c in sorted(by_fn.items(), key=lambda kv: -kv[1])
                   if ("tenbin/" in f and "__main__" not in f and "cli.py" not in f and "runner.py" not in f)
                   or "json/decoder" in f][:12]
    return {"steady_profile_pct_of_samples": hot,
            "aiworkloads": workloads, "rss_mib": round(s1.rss_mib, 1), "peak_rss_mib": round(s1.hwm_mib, 1),
            "steady_cpu_pct": round(100 * (s1.cpu_s - s0.cpu_s) / (s1.t - s0.t), 1),
            "window_s": window_s, "resync_seconds": op.resync, "loadavg_1m": loadavg()[0]}


# ------------------------------------------------------------------------------------------ quality


def phase_quality(args: argparse.Namespace) -> dict[str, Any]:
    import quality

    log(f"quality: {args.batches} contended batches vs the MILP optimum")
    res = quality.run(args.batches, args.seed, quality.default_placers())
    for name, s in res["summary"].items():
        log(f"  {name}: placed {s['placed_total']}/{s['optimum_placed_total']} "
            f"(-{s['placed_shortfall_pct']}%), cost gap on the same work {s['cost_gap_pct_total']}%")
    return res


# ------------------------------------------------------------------------------------------ report


def summary_text(results: dict[str, Any]) -> str:
    from report import summary

    return summary(results, GOALS)


def git_state() -> dict[str, Any]:
    """The commit measured, and the operator files that differed from it (the tree is shared)."""
    import subprocess

    def git(*a: str) -> str:
        res = subprocess.run(["git", *a], cwd=HERE.parent, capture_output=True, text=True, check=False)
        return res.stdout.rstrip("\n")

    return {"head": git("rev-parse", "--short", "HEAD"),
            "modified": [line[3:] for line in git("status", "--porcelain", "--", "operator").splitlines()]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--phases", default="quality,operator,footprint")
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the benchmark itself")
    ap.add_argument("--burst", type=int, default=500)
    ap.add_argument("--ceiling-objects", type=int, default=2000)
    ap.add_argument("--footprint", default="1000,5000", help="AIWorkload counts at which to measure")
    ap.add_argument("--idle-window", type=float, default=20.0)
    ap.add_argument("--ramp-timeout", type=float, default=420.0, help="seconds for the whole footprint ramp")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--profile", type=Path, help="run the operator phase's operator under py-spy (raw stacks)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.burst, args.ceiling_objects, args.footprint, args.idle_window, args.batches = 100, 400, "200,400", 5, 4
    phases = set(args.phases.split(","))
    t0 = time.monotonic()
    results: dict[str, Any] = {}
    if args.out.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            results = json.loads(args.out.read_text())
    run: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "git": git_state(),
                           "python": platform.python_version(), "cores": os.cpu_count(),
                           "loadavg_at_start": loadavg(), "quick": args.quick}
    if "quality" in phases:
        results["quality"] = phase_quality(args)
    root = Path(tempfile.mkdtemp(prefix="tenbin-bench-"))
    try:
        if "operator" in phases:
            results["operator"] = asyncio.run(phase_operator(args, root))
        if "footprint" in phases:
            results["footprint"] = asyncio.run(phase_footprint(args, root))
    finally:
        keep = os.environ.get("TENBIN_BENCH_KEEP_LOGS")
        if keep:
            for f in root.glob("*.log"):
                Path(keep).mkdir(parents=True, exist_ok=True)
                f.replace(Path(keep) / f.name)
        shutil.rmtree(root, ignore_errors=True)
    run["loadavg_at_end"] = loadavg()
    run["seconds"] = round(time.monotonic() - t0, 1)
    results["run"] = run
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    text = summary_text(results)
    summary_path, plot_path = args.out.with_name(SUMMARY.name), PLOT
    if args.out.resolve() != RESULTS:
        summary_path, plot_path = args.out.with_suffix(".md"), args.out.with_suffix(".png")
    summary_path.write_text(text)
    print(text)
    from report import plot

    plot(results, plot_path)
    log(f"wrote {args.out}, {summary_path} and {plot_path} in {run['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
