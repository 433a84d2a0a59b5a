"""The human summary (Markdown) and the plot of bench/results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _ok(value: float | None, goal: float, higher_is_better: bool = False) -> str:
    if value is None:
        return "n/a"
    good = value >= goal if higher_is_better else value <= goal
    return "met" if good else "MISSED"


def summary(r: dict[str, Any], goals: dict[str, float]) -> str:
    run = r.get("run") or {}
    out = ["# Tenbin benchmarks", ""]
    out.append(f"Generated {run.get('generated_at', '?')} on {run.get('cores', '?')} cores, Python "
               f"{run.get('python', '?')}; load average at start {run.get('loadavg_at_start')}, at end "
               f"{run.get('loadavg_at_end')} (a machine shared with other work: absolute numbers vary, ratios "
               f"are measured in the same run). Whole run {run.get('seconds', '?')} s.")
    out.append("")
    op = r.get("operator")
    if op:
        c, b, w = op["ceiling"], op["burst"], op["writes_per_placement"]
        sb = op.get("burst_suspended")
        mid = op["levels"][2] if len(op["levels"]) > 2 else op["levels"][-1]  # offered = 50% of the throughput
        samples = " / ".join(str(x["writes_per_s"]) for x in c["samples"])
        out += ["## Operator (hub + 4 members, real control planes on the same machine)", "",
                "| measure | value | goal |", "|---|---|---|",
                f"| ceiling `raw_writes_per_s`: create + status patch of small custom objects, 32 in flight "
                f"(samples before / after / after the 2nd burst: {samples}) | **{c['raw_writes_per_s']}** | |",
                f"| same client, real AIWorkload objects (schema + CEL) | "
                f"{c['aiworkload_objects']['writes_per_s']} writes/s | |",
                f"| throughput, {b['workloads']} AIWorkloads in a burst, member Jobs run pods | "
                f"**{b['placements_per_s']} placements/s** (middle 80%: {b['sustained_placements_per_s']}/s) | |",
                f"| efficiency = placements/s × 3 / ceiling | **{op['efficiency']}** | ≥ {goals['efficiency']} "
                f"{_ok(op['efficiency'], goals['efficiency'], True)} |"]
        if sb:
            out += [f"| throughput, {sb['workloads']} more, member Jobs suspended (no pods: Tenbin's path without "
                    f"the members' pod machinery) | {sb['placements_per_s']} placements/s | |",
                    f"| efficiency, suspended Jobs | {op['efficiency_suspended']} | ≥ {goals['efficiency']} "
                    f"{_ok(op['efficiency_suspended'], goals['efficiency'], True)} |"]
        out += [f"| writes per placement, all (hub + member, incl. Events and the later Running update) | "
                f"{w['total']} | |",
                f"| writes per placement, placing only (finalizer, status, member apply, Scheduled Event) | "
                f"{w['placement_path']} | |",
                f"| writes per placement, placing only, without Events | **{w['placement_path_without_events']}** | "
                f"≤ {goals['writes_per_placement']} "
                f"{_ok(w['placement_path_without_events'], goals['writes_per_placement'])} |",
                f"| latency create → Job in member, offered {mid['offered_per_s']}/s (50% of the throughput), "
                f"p50 / p99 | {mid['latency']['p50_s']} s / **{mid['latency']['p99_s']} s** | p99 ≤ "
                f"{goals['latency_p99_s']} s {_ok(mid['latency']['p99_s'], goals['latency_p99_s'])} |",
                f"| latency in the {b['workloads']}-burst (queueing), p50 / p99 | {b['latency']['p50_s']} s / "
                f"{b['latency']['p99_s']} s | |",
                f"| operator CPU during the burst | {b['operator_cpu_pct']}% of a core, "
                f"{b['operator_cpu_ms_per_placement']} ms/placement | |",
                f"| machine during the burst | {b['machine_busy_pct']}% busy, load {b['loadavg_1m']} | |",
                ""]
        cpu = b.get("cpu_ms_per_placement") or {}
        if cpu:
            out += [f"Where the machine's CPU went during the burst ({b['machine_cpu_ms_per_placement']} ms of CPU "
                    "per placement on the whole machine):", "",
                    "| component | CPU ms per placement |", "|---|---|"]
            out += [f"| {k} | {v} |" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])]
            out.append("")
        out += ["Writes per placement by resource (the operator's own requests, burst with running Jobs):", "",
                "| cluster | resource verb | per placement |", "|---|---|---|"]
        out += [f"| hub | {k} | {v} |" for k, v in w["hub_operator"].items()]
        out += [f"| members | {k} | {v} |" for k, v in w["member_operator"].items()]
        out += ["", f"Not Tenbin's: the members' own control planes (controller-manager, scheduler, KWOK: pods, "
                    f"bindings, pod and Job status) add {w['member_control_plane_total']} writes per placement on the "
                    f"same 2 cores.", ""]
        out += ["Latency against offered load (open loop):", "",
                "| offered /s | achieved /s | p50 s | p90 s | p99 s | machine busy % |", "|---|---|---|---|---|---|"]
        for lv in op["levels"]:
            la = lv["latency"]
            out.append(f"| {lv['offered_per_s']} | {lv['achieved_per_s']} | {la['p50_s']} | {la['p90_s']} | "
                       f"{la['p99_s']} | {lv['machine_busy_pct']} |")
        out.append(f"| burst ({b['offered_per_s']}) | {b['placements_per_s']} | {b['latency']['p50_s']} | "
                   f"{b['latency']['p90_s']} | {b['latency']['p99_s']} | {b['machine_busy_pct']} |")
        out.append("")
    fp = r.get("footprint")
    if fp:
        out += [f"## Footprint (hub + {fp['members']} members)", "",
                "| AIWorkloads (Running) | RSS MiB | peak RSS MiB | steady CPU % of a core (resync "
                f"{fp['points'][0]['resync_seconds']} s) | ramp placements/s | ramp CPU ms/workload | load avg |",
                "|---|---|---|---|---|---|---|"]
        for p in fp["points"]:
            ramp = p.get("ramp") or {}
            running = "" if "running" not in p else f" ({p['running']}{'' if p.get('settled') else ', unsettled'})"
            out.append(f"| {p['aiworkloads']}{running} | {p['rss_mib']} | {p['peak_rss_mib']} | {p['steady_cpu_pct']} "
                       f"| {ramp.get('placements_per_s', '')} | {ramp.get('operator_cpu_ms_per_workload', '')} "
                       f"| {p['loadavg_1m']} |")
        hot = fp["points"][-1].get("steady_profile_pct_of_samples") or []
        if hot:
            out += ["", f"Where the operator's steady CPU goes at {fp['points'][-1]['aiworkloads']} AIWorkloads "
                        "(py-spy, % of on-CPU samples, inclusive): "
                        + "; ".join(f"{f.split(' (')[0]} {v}%" for f, v in hot[:8])]
        out.append("")
    q = r.get("quality")
    if q:
        out += [f"## Placement quality ({q['batches']} contended batches vs the exact MILP optimum)", "",
                "| placer | cost gap % on the same work (total / mean / max) | GPUs placed / max | GPU shortfall % "
                "| workloads placed / max | workload shortfall % |", "|---|---|---|---|---|---|"]
        for name, s in q["summary"].items():
            out.append(f"| {name} | {s['cost_gap_pct_total']} / {s['cost_gap_pct_mean']} / {s['cost_gap_pct_max']} "
                       f"| {s['gpus_total']} / {s['optimum_max_gpus_total']} | {s['gpu_shortfall_pct']} "
                       f"| {s['placed_total']} / {s['optimum_placed_total']} | {s['placed_shortfall_pct']} |")
        out += ["", f"Goal: gap ≤ {goals['quality_gap_pct']}%.", ""]
    core = r.get("core")
    if core:
        out += ["## Scheduling core (bench_core.py)", "",
                "| clusters | candidates | decisions/s | p50 ms | p99 ms | goal p99 ms |", "|---|---|---|---|---|---|"]
        for s in core["sizes"]:
            goal = s.get("goal_p99_ms")
            verdict = "" if goal is None else f"{goal} {_ok(s['p99_ms'], goal)}"
            out.append(f"| {s['clusters']} | {s['candidates']} | {s['decisions_per_s']} | {s['p50_ms']} | "
                       f"{s['p99_ms']} | {verdict} |")
        out.append("")
    return "\n".join(out)


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    op = r.get("operator")
    if not op:
        return
    b = op["burst"]
    xs = [lv["offered_per_s"] for lv in op["levels"]] + [b["offered_per_s"]]
    thr = [lv["achieved_per_s"] for lv in op["levels"]] + [b["placements_per_s"]]
    p50 = [lv["latency"]["p50_s"] for lv in op["levels"]] + [b["latency"]["p50_s"]]
    p99 = [lv["latency"]["p99_s"] for lv in op["levels"]] + [b["latency"]["p99_s"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    a1.plot(xs, thr, "o-", label="placements/s achieved")
    a1.plot([0, max(xs)], [0, max(xs)], ":", color="grey", label="offered")
    ceil3 = op["ceiling"]["raw_writes_per_s"] / 3
    a1.axhline(ceil3, color="red", ls="--", label=f"ceiling / 3 = {ceil3:.0f}/s")
    a1.axhline(ceil3 / 2, color="orange", ls="--", label="efficiency goal 0.5")
    a1.set_xscale("log")
    a1.set_xlabel("offered AIWorkloads/s (log; rightmost: 500-burst)")
    a1.set_ylabel("placements/s")
    a1.set_title("Throughput against load (hub + 4 members)")
    a1.legend(fontsize=8)
    a2.plot(xs, p50, "o-", label="p50")
    a2.plot(xs, p99, "s-", label="p99")
    a2.axhline(1.0, color="red", ls="--", label="goal p99 1 s")
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("offered AIWorkloads/s (log; rightmost: 500-burst)")
    a2.set_ylabel("create → Job in member (s)")
    a2.set_title("Latency against load")
    a2.legend(fontsize=8)
    fig.suptitle(f"Tenbin operator, {r.get('run', {}).get('cores', '?')} shared cores, "
                 f"{r.get('run', {}).get('generated_at', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
