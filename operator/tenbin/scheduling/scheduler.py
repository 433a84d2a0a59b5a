"""The runner: snapshot -> filter (all plugins, all reasons) -> score (weighted) -> select.

Public entry points for the operator and `tenbin simulate`:

    sched = Scheduler(policy)                      # PlacementPolicy | EffectivePolicy | None
    snap = Snapshot(clusters)                      # once per inventory change
    decision = sched.place(workload, snap, reserved={("sakura", "H100-80GB"): 8})
    decision = sched.place(workload, snap, exclude={"aws-us": "Job not served"})  # out of this decision
    decisions = sched.place_all(workloads, snap)   # sequential: earlier placements consume capacity

or the one-shot helpers `place(workload, clusters, policy)` and `place_sequentially(...)`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy
from tenbin.scheduling import reasons as R
from tenbin.scheduling.framework import (
    BoolArray,
    Candidate,
    Cycle,
    Decision,
    Diagnosis,
    Explanation,
    FilterPlugin,
    PluginError,
    Profile,
    Registry,
    ScorePlugin,
    ScoreTerm,
    grouped,
)
from tenbin.scheduling.inputs import EffectivePolicy, WorkloadRequest
from tenbin.scheduling.plugins import default_registry
from tenbin.scheduling.snapshot import FloatArray, IntArray, Snapshot

DEFAULT_FILTERS = ("health", "selector", "residency", "model", "capacity", "budget")
DEFAULT_SCORES = ("price", "availability", "latency")
DEFAULT_PROFILE = Profile.of(DEFAULT_FILTERS, DEFAULT_SCORES)
TOP_K = 3

Reserved = Mapping[tuple[str, str], int]


class Scheduler:
    """Places workloads on a snapshot under one policy and one profile. Pure and deterministic."""

    def __init__(
        self,
        policy: PlacementPolicy | EffectivePolicy | None = None,
        profile: Profile = DEFAULT_PROFILE,
        registry: Registry | None = None,
        top_k: int = TOP_K,
    ) -> None:
        self.policy = policy if isinstance(policy, EffectivePolicy) else EffectivePolicy.from_api(policy)
        reg = registry or default_registry()
        try:
            self.filters: tuple[FilterPlugin, ...] = tuple(reg.filters[p.name](p.args) for p in profile.filters)
            self.scores: tuple[ScorePlugin, ...] = tuple(reg.scores[p.name](p.args) for p in profile.scores)
        except KeyError as err:
            raise ValueError(f"profile names an unregistered plugin: {err}") from None
        self.top_k = top_k
        self._price_base: weakref.WeakKeyDictionary[Snapshot, FloatArray] = weakref.WeakKeyDictionary()

    def price_base(self, snap: Snapshot) -> FloatArray:
        """Price per GPU-hour of every row in the base currency (NaN without an exchange rate)."""
        cached = self._price_base.get(snap)
        if cached is None:
            rates = np.asarray([self.policy.rates.get(c, math.nan) for c in snap.currencies.items] or [0.0])
            cached = snap.price * rates[snap.currency] if snap.n_rows else np.zeros(0)
            cached.setflags(write=False)
            self._price_base[snap] = cached
        return cached

    def _cycle(self, req: WorkloadRequest, snap: Snapshot, free: IntArray) -> Cycle:
        budget_base: float | None = None
        if req.budget is not None:
            b = self.policy.to_base(*req.budget)
            budget_base = math.nan if b is None else b
        return Cycle(
            snap=snap, req=req, policy=self.policy, free=free, price_base=self.price_base(snap),
            rule=self.policy.rules[req.classification], budget_base=budget_base,
        )

    def place(
        self,
        workload: AIWorkload | WorkloadRequest,
        snap: Snapshot,
        *,
        reserved: Reserved | None = None,
        exclude: Mapping[str, str | R.Reason] | None = None,
    ) -> Decision:
        """Decide where one workload goes. `reserved`: GPUs per (cluster, model) already promised;
        `exclude`: clusters out of this decision, each with why (its candidates' reason `excluded`)."""
        return self._place(_request(workload), snap, snap.free_after(reserved), exclude)

    def place_all(
        self,
        workloads: Iterable[AIWorkload | WorkloadRequest],
        snap: Snapshot,
        *,
        reserved: Reserved | None = None,
    ) -> list[Decision]:
        """Place workloads one at a time in order; each placement consumes its GPUs for the next."""
        free = snap.free_after(reserved).copy()
        out = []
        for w in workloads:
            req = _request(w)
            d = self._place(req, snap, free.copy())
            if d.chosen is not None:
                r = snap.row(d.chosen.cluster, d.chosen.model)
                assert r is not None
                free[r] -= req.need
            out.append(d)
        return out

    def _place(self, req: WorkloadRequest, snap: Snapshot, free: IntArray,
               exclude: Mapping[str, str | R.Reason] | None = None) -> Decision:
        cy = self._cycle(req, snap, free)
        filters = (*self.filters, ExcludeFilter(exclude)) if exclude else self.filters
        masks = [f.filter(cy) for f in filters]
        feasible = np.ones(snap.n_rows, dtype=np.bool_)
        for m in masks:
            feasible &= m
        rows = np.flatnonzero(feasible)
        weights = req.effective_weights(self.policy)

        terms: list[tuple[str, FloatArray, float]] = []
        total = np.zeros(len(rows))
        wsum = 0.0
        if len(rows):
            for sp in self.scores:
                w = float(weights.get(sp.name, 0.0))
                if w <= 0:
                    continue
                s = np.asarray(sp.score(cy, rows), dtype=np.float64)
                if s.shape != rows.shape or not np.all((s >= 0.0) & (s <= 100.0)):
                    raise PluginError(f"score plugin {sp.name!r} returned scores outside [0, 100]")
                total = total + w * s
                wsum += w
                terms.append((sp.name, s, w))
            if wsum > 0:
                total = total / wsum

        top: list[Candidate] = []
        if len(rows):
            # best score first; equal scores keep row order = cluster name, then model
            order = np.lexsort((rows, -total))[: self.top_k]
            for i in order.tolist():
                top.append(self._candidate(cy, int(rows[i]), float(total[i]),
                                           tuple(ScoreTerm(n, float(s[i]), w) for n, s, w in terms)))
        return Decision(
            workload=req.key,
            gpus=req.need,
            base_currency=self.policy.base_currency,
            chosen=top[0] if top else None,
            top=tuple(top),
            diagnosis=Diagnosis(cy, filters, masks, feasible),
        )

    @staticmethod
    def _candidate(cy: Cycle, row: int, score: float, breakdown: tuple[ScoreTerm, ...]) -> Candidate:
        s = cy.snap
        info = s.clusters[int(s.cluster[row])]
        return Candidate(
            cluster=info.name,
            model=s.model_name(row),
            tier=info.tier,
            jurisdiction=info.jurisdiction,
            memory_gib=float(s.memory[row]),
            free=int(cy.free[row]),
            price=float(s.price[row]),
            currency=s.currencies.items[int(s.currency[row])],
            price_base=float(cy.price_base[row]),
            score=score,
            breakdown=breakdown,
        )


class ExcludeFilter:
    """Clusters the caller takes out of one decision, each with its reason; not a policy plugin."""

    name = "excluded"

    def __init__(self, why: Mapping[str, str | R.Reason]) -> None:
        self.why = {c: w if isinstance(w, R.Reason) else R.excluded(w) for c, w in why.items()}

    def filter(self, cy: Cycle) -> BoolArray:
        s = cy.snap
        out_cluster = np.asarray([c.name in self.why for c in s.clusters], dtype=np.bool_)
        return ~out_cluster[s.cluster] if s.n_rows else np.ones(0, dtype=np.bool_)

    def explain(self, cy: Cycle, rows: IntArray) -> Explanation:
        s = cy.snap
        return grouped(s.cluster[rows], lambda k: (self.why[s.clusters[int(k[0])].name],))


def _request(w: AIWorkload | WorkloadRequest) -> WorkloadRequest:
    return w if isinstance(w, WorkloadRequest) else WorkloadRequest.from_api(w)


def _snapshot(clusters: Snapshot | Iterable[GPUCluster]) -> Snapshot:
    return clusters if isinstance(clusters, Snapshot) else Snapshot(clusters)


def place(
    workload: AIWorkload | WorkloadRequest,
    clusters: Snapshot | Iterable[GPUCluster],
    policy: PlacementPolicy | EffectivePolicy | None = None,
    *,
    reserved: Reserved | None = None,
) -> Decision:
    """One decision, no state: where `workload` goes on `clusters` under `policy`."""
    return Scheduler(policy).place(workload, _snapshot(clusters), reserved=reserved)


def place_sequentially(
    workloads: Sequence[AIWorkload | WorkloadRequest],
    clusters: Snapshot | Iterable[GPUCluster],
    policy: PlacementPolicy | EffectivePolicy | None = None,
    *,
    reserved: Reserved | None = None,
) -> list[Decision]:
    """Decisions in input order; GPUs taken by earlier placements are not free for later ones."""
    return Scheduler(policy).place_all(workloads, _snapshot(clusters), reserved=reserved)
