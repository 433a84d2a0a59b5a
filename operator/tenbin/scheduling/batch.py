"""Optional batch placement: a short window of workloads placed jointly, exactly (a MILP, scipy's HiGHS).

The online scheduler places one workload at a time, so an early arrival can take the capacity a later,
more constrained one needed (an `Internal` job on the only sovereign cluster a `Confidential` job may use),
or split capacity so that a gang no longer fits. Solving a window of arrivals jointly avoids that:

    x[w, r] in {0, 1} for each (workload, candidate row) the core's filters accept (all but capacity)
    sum_r x[w, r] <= 1                          each workload at most once
    sum_w need[w] x[w, r] <= free[r]            the gang fits in one (cluster, model) row
    maximise placed workloads (or GPUs), then minimise sum need[w] * price_base[r] x[w, r]

Eligibility (residency, model, budget, selector, health) comes from the same filter plugins as the online
decision, so batch placement can never break a rule the online path keeps. Pure: no clock, no I/O.
scipy is imported lazily, only when a window is solved.

    assignments = place_window(workloads, snapshot, policy, reserved=...)
    assignments = place_windows(workloads, snapshot, policy, window=16)   # consecutive windows
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tenbin.api import AIWorkload, PlacementPolicy
from tenbin.scheduling.framework import Profile
from tenbin.scheduling.inputs import EffectivePolicy, WorkloadRequest
from tenbin.scheduling.scheduler import DEFAULT_FILTERS, DEFAULT_SCORES, Scheduler
from tenbin.scheduling.snapshot import IntArray, Snapshot

Objective = Literal["workloads", "gpus"]
_ELIGIBILITY = Profile.of(tuple(f for f in DEFAULT_FILTERS if f != "capacity"), DEFAULT_SCORES)


@dataclass(frozen=True)
class Assignment:
    """Where one workload of the window goes (cluster and model None: not placed in this window)."""

    workload: str
    gpus: int
    cluster: str | None = None
    model: str | None = None
    price_base: float | None = None

    @property
    def placed(self) -> bool:
        return self.cluster is not None


@dataclass(frozen=True)
class WindowResult:
    assignments: tuple[Assignment, ...]
    optimal: bool
    """False when the solver stopped at its time limit (the assignment is feasible, maybe not optimal)."""


def place_window(
    workloads: Sequence[AIWorkload | WorkloadRequest],
    snap: Snapshot,
    policy: PlacementPolicy | EffectivePolicy | None = None,
    *,
    reserved: Mapping[tuple[str, str], int] | None = None,
    objective: Objective = "workloads",
    time_limit: float = 5.0,
) -> WindowResult:
    """Place a window of workloads jointly on `snap` minus `reserved` (lexicographic, exact)."""
    return _solve([_req(w) for w in workloads], snap, Scheduler(policy, profile=_ELIGIBILITY),
                  snap.free_after(reserved).copy(), objective, time_limit)


def place_windows(
    workloads: Sequence[AIWorkload | WorkloadRequest],
    snap: Snapshot,
    policy: PlacementPolicy | EffectivePolicy | None = None,
    *,
    window: int = 16,
    reserved: Mapping[tuple[str, str], int] | None = None,
    objective: Objective = "workloads",
    time_limit: float = 5.0,
) -> WindowResult:
    """Consecutive windows of `window` arrivals, each solved jointly on what the earlier ones left free."""
    if window < 1:
        raise ValueError("window must be >= 1")
    sched = Scheduler(policy, profile=_ELIGIBILITY)
    free = snap.free_after(reserved).copy()
    reqs = [_req(w) for w in workloads]
    out: list[Assignment] = []
    optimal = True
    for i in range(0, len(reqs), window):
        res = _solve(reqs[i:i + window], snap, sched, free, objective, time_limit)
        optimal &= res.optimal
        for a in res.assignments:
            if a.cluster is not None and a.model is not None:
                r = snap.row(a.cluster, a.model)
                assert r is not None
                free[r] -= a.gpus
        out.extend(res.assignments)
    return WindowResult(tuple(out), optimal)


def _req(w: AIWorkload | WorkloadRequest) -> WorkloadRequest:
    return w if isinstance(w, WorkloadRequest) else WorkloadRequest.from_api(w)


def _solve(reqs: list[WorkloadRequest], snap: Snapshot, sched: Scheduler, free: IntArray, objective: Objective,
           time_limit: float) -> WindowResult:
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import csr_array
    except ImportError as exc:  # an extra: the operator's image leaves it out
        raise RuntimeError("batch placement needs scipy: pip install 'tenbin[batch]'") from exc

    price = sched.price_base(snap)
    pairs: list[tuple[int, int]] = []
    for wi, req in enumerate(reqs):
        ok = sched.place(req, snap).diagnosis.feasible & (free >= req.need)
        pairs.extend((wi, int(r)) for r in np.flatnonzero(ok))
    empty = tuple(Assignment(r.key, r.need) for r in reqs)
    if not pairs:
        return WindowResult(empty, True)
    n, nw, nr = len(pairs), len(reqs), snap.n_rows
    wi_idx = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=n)
    r_idx = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=n)
    need = np.asarray([reqs[w].need for w in wi_idx], dtype=np.float64)
    cost = need * price[r_idx]
    cols = np.arange(n)
    constraints = [
        LinearConstraint(csr_array((np.ones(n), (wi_idx, cols)), shape=(nw, n)), -np.inf, 1.0),
        LinearConstraint(csr_array((need, (r_idx, cols)), shape=(nr, n)), -np.inf,
                         np.maximum(free, 0).astype(np.float64)),
    ]
    opts = {"time_limit": time_limit, "mip_rel_gap": 0.0}
    integrality, bounds = np.ones(n), Bounds(0, 1)
    gain = np.ones(n) if objective == "workloads" else need
    first = milp(-gain, constraints=constraints, integrality=integrality, bounds=bounds, options=opts)
    if first.x is None:
        return WindowResult(empty, False)
    best = float(np.round(-first.fun))
    constraints.append(LinearConstraint(gain.reshape(1, n), best - 1e-6, np.inf))
    second = milp(cost, constraints=constraints, integrality=integrality, bounds=bounds, options=opts)
    x = second.x if second.x is not None else first.x
    optimal = first.status == 0 and second.status == 0
    chosen: dict[int, int] = {}
    for i in np.flatnonzero(x > 0.5):
        chosen[int(wi_idx[i])] = int(r_idx[i])
    out = []
    for wi, req in enumerate(reqs):
        r = chosen.get(wi)
        if r is None:
            out.append(Assignment(req.key, req.need))
        else:
            out.append(Assignment(req.key, req.need, snap.cluster_name(r), snap.model_name(r), float(price[r])))
    return WindowResult(tuple(out), optimal)


def assignments_by_key(result: WindowResult) -> dict[str, Assignment]:
    return {a.workload: a for a in result.assignments}
