"""Placement quality: Tenbin's online sequential placement vs the exact optimum (MILP), no cluster needed.

    python bench/quality.py [--batches 20] [--seed 11]

Each batch is a random contended problem: ~8 member clusters (mixed tiers, jurisdictions, models, prices
in JPY/USD) and more GPU demand than supply (mixed residency classes, jurisdiction and model constraints,
gang sizes). Tenbin places the workloads one by one in arrival order (`Scheduler.place_all`, the operator's
decision function). The optimum is solved exactly with scipy.optimize.milp (HiGHS):

    x[w, r] in {0, 1} for every (workload, candidate row) pair the core's non-capacity filters accept
    sum_r x[w, r] <= 1                      each workload at most once
    sum_w need[w] x[w, r] <= free[r]         capacity of every (cluster, model) row (the gang fits in one row)
    lexicographic: maximize placed workloads, then minimize sum need[w] * price_base[r] x[w, r]

Reported per batch: placed (Tenbin vs optimum), cost of Tenbin's placement, and the cost of the cheapest
placement of exactly the same workloads ("same work"), which isolates the price quality of the choices
from the packing. Gaps are relative to the optimum.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from tenbin.api import DataClassification, GPUCluster, PlacementPolicy
from tenbin.scheduling import EffectivePolicy, Profile, Scheduler, Snapshot, WorkloadRequest
from tenbin.scheduling.batch import Objective, place_windows
from tenbin.scheduling.scheduler import DEFAULT_FILTERS, DEFAULT_SCORES

ROOT = Path(__file__).resolve().parents[1]
MODELS = [("H100-80GB", 80), ("A100-80GB", 80), ("L40S-48GB", 48), ("H200-141GB", 141)]
TIERS = ["OnPrem", "SovereignCloud", "Hyperscaler"]
NO_CAPACITY = Profile.of(tuple(f for f in DEFAULT_FILTERS if f != "capacity"), DEFAULT_SCORES)
Placer = Callable[[Sequence[WorkloadRequest], Snapshot], list[tuple[str, str] | None]]


def default_policy() -> EffectivePolicy:
    doc = yaml.safe_load((ROOT / "examples" / "policy" / "default.yaml").read_text())
    return EffectivePolicy.from_api(PlacementPolicy.model_validate(doc))


def price_only(policy: EffectivePolicy) -> EffectivePolicy:
    return replace(policy, weights=MappingProxyType({"price": 1.0, "availability": 0.0}))


def random_fleet(rng: random.Random, n: int) -> list[GPUCluster]:
    out = []
    for i in range(n):
        tier = rng.choice(TIERS)
        jur = rng.choice(["JP", "JP", "US", "DE"]) if tier != "OnPrem" else "JP"
        gpus = []
        for model, mem in rng.sample(MODELS, rng.randint(1, 2)):
            usd = tier == "Hyperscaler" and rng.random() < 0.7
            base = {"H100-80GB": 450.0, "A100-80GB": 300.0, "L40S-48GB": 180.0, "H200-141GB": 650.0}[model]
            base *= {"OnPrem": 0.7, "SovereignCloud": 1.0, "Hyperscaler": 1.2}[tier] * rng.uniform(0.7, 1.4)
            gpus.append({"model": model, "count": rng.choice([8, 16, 16, 24, 32]), "memoryGiB": mem,
                         "pricePerGPUHour": round(base / 150, 2) if usd else round(base),
                         "currency": "USD" if usd else "JPY"})
        labels = ["jp-domestic-operator"] if jur == "JP" and tier != "Hyperscaler" else []
        out.append(GPUCluster.model_validate({
            "apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": f"c{i:02d}"},
            "spec": {"tier": tier, "jurisdiction": jur, "residencyLabels": labels, "gpus": gpus},
        }))
    return out


def random_workloads(rng: random.Random, supply: int, ratio: float) -> list[WorkloadRequest]:
    out: list[WorkloadRequest] = []
    demand = 0
    classes = [DataClassification.RESTRICTED] + [DataClassification.CONFIDENTIAL] * 3 + \
        [DataClassification.INTERNAL] * 4 + [DataClassification.PUBLIC] * 2
    while demand < supply * ratio:
        count = rng.choice([1, 1, 2, 2, 4, 4, 8])
        replicas = rng.choice([1, 1, 1, 2])
        cls = rng.choice(classes)
        w = WorkloadRequest(
            key=f"ns/w{len(out):03d}", count=count, replicas=replicas,
            models=frozenset(m for m, _ in rng.sample(MODELS, rng.randint(1, 2))) if rng.random() < 0.4
            else frozenset(),
            classification=cls,
            jurisdictions=frozenset({"JP"}) if rng.random() < 0.3 else frozenset(),
        )
        out.append(w)
        demand += w.need
    return out


@dataclass
class Problem:
    snap: Snapshot
    workloads: list[WorkloadRequest]
    price: np.ndarray  # base currency per GPU-hour, per row
    feasible: list[np.ndarray]  # per workload: rows passing every filter but capacity

    @classmethod
    def build(cls, fleet: list[GPUCluster], workloads: list[WorkloadRequest], policy: EffectivePolicy) -> Problem:
        snap = Snapshot(fleet)
        probe = Scheduler(policy, profile=NO_CAPACITY)
        feas = [np.flatnonzero(probe.place(w, snap).diagnosis.feasible) for w in workloads]
        return cls(snap, workloads, probe.price_base(snap), feas)

    def evaluate(self, placement: Sequence[int | None]) -> tuple[int, float]:
        used = np.zeros(self.snap.n_rows, dtype=np.int64)
        placed, cost = 0, 0.0
        for w, r in zip(self.workloads, placement, strict=True):
            if r is None:
                continue
            assert r in set(self.feasible[self.workloads.index(w)].tolist()), "infeasible placement"
            used[r] += w.need
            placed += 1
            cost += w.need * float(self.price[r])
        assert np.all(used <= self.snap.free), "over-commit"
        return placed, cost


def tenbin_online(problem: Problem, policy: EffectivePolicy) -> list[int | None]:
    decisions = Scheduler(policy).place_all(problem.workloads, problem.snap)
    return [None if d.chosen is None else problem.snap.row(d.chosen.cluster, d.chosen.model) for d in decisions]


def solve(problem: Problem, fixed: Sequence[bool] | None = None, time_limit: float = 20.0,
          gpus: bool = False) -> tuple[list[int | None], int, float, bool]:
    """Exact lexicographic optimum (max placed workloads, or GPUs with `gpus`, then min cost);
    `fixed`: exactly these workloads are placed."""
    pairs = [(wi, int(r)) for wi, rows in enumerate(problem.feasible) for r in rows]
    n = len(pairs)
    if n == 0:
        return [None] * len(problem.workloads), 0, 0.0, True
    need = np.array([problem.workloads[wi].need for wi, _ in pairs], dtype=float)
    cost = np.array([need[i] * problem.price[r] for i, (_, r) in enumerate(pairs)])
    nw, nr = len(problem.workloads), problem.snap.n_rows
    wi_idx = np.array([wi for wi, _ in pairs])
    r_idx = np.array([r for _, r in pairs])
    a_w = csr_array((np.ones(n), (wi_idx, np.arange(n))), shape=(nw, n))
    a_r = csr_array((need, (r_idx, np.arange(n))), shape=(nr, n))
    lo_w = np.zeros(nw) if fixed is None else np.array([1.0 if f else 0.0 for f in fixed])
    hi_w = np.ones(nw) if fixed is None else lo_w.copy()
    cons = [LinearConstraint(a_w, lo_w, hi_w), LinearConstraint(a_r, -np.inf, problem.snap.free.astype(float))]
    opts = {"time_limit": time_limit, "mip_rel_gap": 0.0}
    integrality = np.ones(n)
    bounds = Bounds(0, 1)
    optimal = True
    if fixed is None:
        gain = need if gpus else np.ones(n)
        first = milp(-gain, constraints=cons, integrality=integrality, bounds=bounds, options=opts)
        optimal &= first.status == 0
        best = round(-first.fun)
        cons.append(LinearConstraint(gain.reshape(1, n), best, best))
    second = milp(cost, constraints=cons, integrality=integrality, bounds=bounds, options=opts)
    optimal &= second.status == 0
    if second.x is None:
        raise RuntimeError(f"MILP failed: {second.message}")
    out: list[int | None] = [None] * nw
    for i in np.flatnonzero(second.x > 0.5):
        out[pairs[i][0]] = pairs[i][1]
    placed = sum(1 for r in out if r is not None)
    return out, placed, float(second.fun), optimal


def gap(value: float, best: float) -> float:
    return 0.0 if best == 0 else (value - best) / best * 100.0


def run(batches: int, seed: int, placers: dict[str, Callable[[Problem], list[int | None]]]) -> dict[str, Any]:
    rng = random.Random(seed)
    policy = default_policy()
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for b in range(batches):
        fleet = random_fleet(rng, rng.randint(6, 10))
        snap = Snapshot(fleet)
        supply = int(snap.free.sum())
        wls = random_workloads(rng, supply, rng.uniform(1.3, 2.0))
        problem = Problem.build(fleet, wls, policy)
        _, opt_placed, opt_cost, opt_ok = solve(problem)
        gpu_opt, _, _, gpu_ok = solve(problem, gpus=True)
        max_gpus = sum(w.need for w, r in zip(wls, gpu_opt, strict=True) if r is not None)
        row: dict[str, Any] = {"batch": b, "clusters": len(fleet), "rows": snap.n_rows, "workloads": len(wls),
                               "supply_gpus": supply, "demand_gpus": sum(w.need for w in wls),
                               "optimum": {"placed": opt_placed, "cost": round(opt_cost, 1), "proven": opt_ok,
                                           "max_gpus": max_gpus, "max_gpus_proven": gpu_ok}}
        for name, placer in placers.items():
            t = time.perf_counter()
            placement = placer(problem)
            secs = time.perf_counter() - t
            placed, cost = problem.evaluate(placement)
            _, _, same_cost, same_ok = solve(problem, fixed=[r is not None for r in placement])
            gpus_placed = sum(w.need for w, r in zip(wls, placement, strict=True) if r is not None)
            row[name] = {"placed": placed, "cost": round(cost, 1), "same_work_optimum_cost": round(same_cost, 1),
                         "gpus": gpus_placed, "gpu_gap_pct": round(gap(max_gpus, gpus_placed), 2),
                         "placed_gap_pct": round(gap(opt_placed, placed) if placed else math.inf, 2),
                         "cost_gap_pct": round(gap(cost, same_cost), 2), "seconds": round(secs, 4),
                         "proven": same_ok}
        rows.append(row)
    summary: dict[str, Any] = {}
    for name in placers:
        pg = [r[name]["placed_gap_pct"] for r in rows]
        cg = [r[name]["cost_gap_pct"] for r in rows]
        tot_placed = sum(r[name]["placed"] for r in rows)
        tot_opt = sum(r["optimum"]["placed"] for r in rows)
        tot_gpus = sum(r[name]["gpus"] for r in rows)
        max_gpus = sum(r["optimum"]["max_gpus"] for r in rows)
        summary[name] = {
            "gpus_total": tot_gpus, "optimum_max_gpus_total": max_gpus,
            "gpu_shortfall_pct": round((max_gpus - tot_gpus) / max_gpus * 100, 2),
            "placed_total": tot_placed, "optimum_placed_total": tot_opt,
            "placed_shortfall_pct": round((tot_opt - tot_placed) / tot_opt * 100, 2),
            "cost_gap_pct_mean": round(statistics.fmean(cg), 2), "cost_gap_pct_max": round(max(cg), 2),
            "cost_gap_pct_total": round(gap(sum(r[name]["cost"] for r in rows),
                                            sum(r[name]["same_work_optimum_cost"] for r in rows)), 2),
            "placed_gap_pct_mean": round(statistics.fmean(pg), 2), "placed_gap_pct_max": round(max(pg), 2),
            "mean_seconds_per_batch": round(statistics.fmean(r[name]["seconds"] for r in rows), 4),
        }
    return {"batches": batches, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
            "what": "20 random contended batches: online placement vs exact lexicographic MILP optimum "
                    "(max placed, then min cost); cost gap on the same placed work",
            "summary": summary, "per_batch": rows}


def tenbin_windows(problem: Problem, policy: EffectivePolicy, window: int,
                   objective: Objective = "workloads") -> list[int | None]:
    res = place_windows(problem.workloads, problem.snap, policy, window=window, objective=objective)
    return [None if a.cluster is None or a.model is None else problem.snap.row(a.cluster, a.model)
            for a in res.assignments]


def default_placers(windows: Sequence[int] = (8, 32)) -> dict[str, Callable[[Problem], list[int | None]]]:
    policy = default_policy()
    placers: dict[str, Callable[[Problem], list[int | None]]] = {
        "online": lambda p: tenbin_online(p, policy),
        "online_price_only": lambda p: tenbin_online(p, price_only(policy)),
    }
    def windowed(k: int, objective: Objective) -> Callable[[Problem], list[int | None]]:
        return lambda p: tenbin_windows(p, policy, k, objective)

    for k in windows:
        placers[f"batch_window_{k}"] = windowed(k, "workloads")
        placers[f"batch_window_{k}_gpus"] = windowed(k, "gpus")
    return placers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    res = run(args.batches, args.seed, default_placers())
    print(json.dumps(res["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
