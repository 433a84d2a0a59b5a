"""The built-in filter and score plugins (eligibility rules 1-6 of CONTRACT.md, and two scores).

Each filter is a few vector operations over the snapshot's columns. `explain` is only called for
rejected rows when someone reads the diagnosis, and renders one Reason tuple per *distinct* key
(e.g. per (model, free) pair), not per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from tenbin.api import LabelSelectorOperator
from tenbin.scheduling import reasons as R
from tenbin.scheduling.framework import Cycle, Explanation, Registry, grouped
from tenbin.scheduling.reasons import Reason
from tenbin.scheduling.snapshot import PHASE_CODE, PHASES, TIER_CODE, TIERS, BoolArray, FloatArray, IntArray

_READY = PHASE_CODE["Ready"]
_NO_PHASE = PHASE_CODE[""]


def _lut(size: int, codes: Iterable[int]) -> BoolArray:
    """Lookup table: lut[code] is True for the allowed codes (gathering through it beats np.isin)."""
    t = np.zeros(size, dtype=np.bool_)
    t[list(codes)] = True
    return t


def _tier_lut(tiers: Iterable[Any]) -> BoolArray:
    return _lut(len(TIERS), (TIER_CODE[t] for t in tiers))


def _missing_bits(snap: Any, labels: list[str], rows: IntArray) -> IntArray:
    """Bit i set when the row's cluster lacks labels[i] (labels sorted, at most 63)."""
    bits = np.zeros(len(rows), dtype=np.int64)
    for i, lab in enumerate(labels):
        bits |= (~snap.has_residency_label(lab)[rows]).astype(np.int64) << i
    return bits


def _from_bits(labels: list[str], bits: int) -> list[str]:
    return [lab for i, lab in enumerate(labels) if bits >> i & 1]


class HealthFilter:
    """1. not cordoned, and status.phase Ready when the cluster reports one."""

    name = "health"

    def filter(self, cy: Cycle) -> BoolArray:
        s = cy.snap
        return ~s.cordoned & ((s.phase == _READY) | (s.phase == _NO_PHASE))

    def explain(self, cy: Cycle, rows: IntArray) -> Explanation:
        s = cy.snap

        def render(k: npt.NDArray[Any]) -> tuple[Reason, ...]:
            out = [R.cordoned()] if k[0] else []
            if int(k[1]) not in (_READY, _NO_PHASE):
                out.append(R.not_ready(PHASES[int(k[1])]))
            return tuple(out)

        return grouped(np.column_stack([s.cordoned[rows].astype(np.int64), s.phase[rows]]), render)


class SelectorFilter:
    """2. cluster labels match placement.clusterSelector (when given)."""

    name = "selector"

    def filter(self, cy: Cycle) -> BoolArray:
        s, sel = cy.snap, cy.req.selector
        ok = np.ones(s.n_rows, dtype=np.bool_)
        if sel is None:
            return ok
        for k, v in sel.match_labels.items():
            ok &= s.has_label(k, v)
        for req in sel.match_expressions:
            if req.operator in (LabelSelectorOperator.IN, LabelSelectorOperator.NOT_IN):
                hit = np.zeros(s.n_rows, dtype=np.bool_)
                for v in req.values:
                    hit |= s.has_label(req.key, v)
                ok &= hit if req.operator is LabelSelectorOperator.IN else ~hit
            elif req.operator is LabelSelectorOperator.EXISTS:
                ok &= s.has_label_key(req.key)
            else:
                ok &= ~s.has_label_key(req.key)
        return ok

    def explain(self, cy: Cycle, rows: IntArray) -> Explanation:
        reason = (R.selector_mismatch(str(cy.req.selector)),)
        return grouped(np.zeros(len(rows), dtype=np.int64), lambda _k: reason)


class ResidencyFilter:
    """3. jurisdiction, tier and required labels of the workload, and its classification rule."""

    name = "residency"

    def filter(self, cy: Cycle) -> BoolArray:
        s, req, rule = cy.snap, cy.req, cy.rule
        ok = np.ones(s.n_rows, dtype=np.bool_)
        nj = len(s.jurisdictions)
        if req.jurisdictions:
            ok &= _lut(nj, s.jurisdictions.lookup(req.jurisdictions))[s.jurisdiction]
        if req.tiers:
            ok &= _tier_lut(req.tiers)[s.tier]
        for lab in req.required_labels:
            ok &= s.has_residency_label(lab)
        if rule.allowed_tiers:
            ok &= _tier_lut(rule.allowed_tiers)[s.tier]
        if rule.allowed_jurisdictions:
            ok &= _lut(nj, s.jurisdictions.lookup(rule.allowed_jurisdictions))[s.jurisdiction]
        for lab in rule.required_labels:
            ok &= s.has_residency_label(lab)
        for allowed in (req.operator_jurisdictions, rule.allowed_operator_jurisdictions):
            if allowed:  # "" (undeclared) is never in an ISO list: an unknown operator does not match
                ok &= _lut(nj, s.jurisdictions.lookup(allowed))[s.operator_jurisdiction]
        return ok

    def explain(self, cy: Cycle, rows: IntArray) -> Explanation:
        s, req, rule = cy.snap, cy.req, cy.rule
        req_labels = sorted(req.required_labels)
        rule_labels = sorted(rule.required_labels)
        cls = rule.classification.value
        keys = np.column_stack([
            s.jurisdiction[rows], s.tier[rows],
            _missing_bits(s, req_labels, rows), _missing_bits(s, rule_labels, rows), s.operator_jurisdiction[rows],
        ])

        def render(k: npt.NDArray[Any]) -> tuple[Reason, ...]:
            jur = s.jurisdictions.items[int(k[0])]
            tier = TIERS[int(k[1])]
            out = []
            if req.jurisdictions and jur not in req.jurisdictions:
                out.append(R.jurisdiction_not_allowed(jur, req.jurisdictions))
            if req.tiers and tier not in req.tiers:
                out.append(R.tier_not_allowed(tier, req.tiers))
            if k[2]:
                out.append(R.labels_missing(_from_bits(req_labels, int(k[2]))))
            if rule.allowed_tiers and tier not in rule.allowed_tiers:
                out.append(R.rule_tier(cls, tier, rule.allowed_tiers))
            if rule.allowed_jurisdictions and jur not in rule.allowed_jurisdictions:
                out.append(R.rule_jurisdiction(cls, jur, rule.allowed_jurisdictions))
            if k[3]:
                out.append(R.rule_labels(cls, _from_bits(rule_labels, int(k[3]))))
            op = s.jurisdictions.items[int(k[4])]
            if req.operator_jurisdictions and op not in req.operator_jurisdictions:
                out.append(R.operator_not_allowed(op, req.operator_jurisdictions))
            if rule.allowed_operator_jurisdictions and op not in rule.allowed_operator_jurisdictions:
                out.append(R.rule_operator(cls, op, rule.allowed_operator_jurisdictions))
            return tuple(out)

        return grouped(keys, render)


class ModelFilter:
    """4. model in gpu.models (when non-empty) and memoryGiB >= gpu.minMemoryGiB (when given)."""

    name = "model"
    shadows_in_summary = True  # the summary leaves out capacity/price reasons of a model not asked for

    def filter(self, cy: Cycle) -> BoolArray:
        s, req = cy.snap, cy.req
        ok = np.ones(s.n_rows, dtype=np.bool_)
        if req.models:
            ok &= _lut(len(s.models), s.models.lookup(req.models))[s.model]
        if req.min_memory_gib is not None:
            ok &= s.memory >= req.min_memory_gib
        return ok

    def explain(self, cy: Cycle, rows: IntArray) -> Explanation:
        s, req = cy.snap, cy.req

        def render(k: npt.NDArray[Any]) -> tuple[Reason, ...]:
            model, mem = s.models.items[int(k[0])], float(k[1])
            out = []
            if req.models and model not in req.models:
                out.append(R.model_not_requested(model, req.models))
            if req.min_memory_gib is not None and mem < req.min_memory_gib:
                out.append(R.too_little_memory(model, mem, req.min_memory_gib))
            return tuple(out)

        return grouped(np.column_stack([s.model[rows].astype(np.float64), s.memory[rows]]), render)


class CapacityFilter:
    """5. free GPUs of the model >= replicas x gpu.count (the whole gang in one cluster and one model)."""

    name = "capacity"
    model_specific = True

    def filter(self, cy: Cycle) -> BoolArray:
        return cy.free >= cy.req.need

    def explain(self, cy: Cycle, rows: IntArray) -> Explanation:
        s, need = cy.snap, cy.req.need
        return grouped(
            np.column_stack([s.model[rows], cy.free[rows]]),
            lambda k: (R.insufficient(s.models.items[int(k[0])], int(k[1]), need),),
        )


class BudgetFilter:
    """6. price in the base currency <= budget in the base currency; a price that cannot be converted fails."""

    name = "budget"
    model_specific = True

    def filter(self, cy: Cycle) -> BoolArray:
        ok = ~np.isnan(cy.price_base)
        if cy.budget_base is not None:
            ok &= cy.price_base <= cy.budget_base  # NaN budget: nothing passes
        return ok

    def explain(self, cy: Cycle, rows: IntArray) -> Explanation:
        s, pol, base = cy.snap, cy.policy, cy.policy.base_currency
        budget = cy.req.budget

        def render(k: npt.NDArray[Any]) -> tuple[Reason, ...]:
            cur, price = s.currencies.items[int(k[0])], float(k[1])
            rate = pol.rate(cur)
            out = []
            if rate is None:
                out.append(R.unpriced(cur, base))
            if budget is not None and cy.budget_base is not None and np.isnan(cy.budget_base):
                out.append(R.budget_currency_unknown(budget[1], base))
            elif rate is not None and cy.budget_base is not None and price * rate > cy.budget_base:
                out.append(R.over_budget(price * rate, cy.budget_base, base))
            return tuple(out)

        return grouped(np.column_stack([s.currency[rows].astype(np.float64), s.price[rows]]), render)


class PriceScore:
    """Cheaper is better: 100 x cheapest / price (so a candidate twice the cheapest price scores 50)."""

    name = "price"

    def score(self, cy: Cycle, rows: IntArray) -> FloatArray:
        p = cy.price_base[rows]
        out = np.ones(len(p))
        if len(p):
            # cheapest / price first: it is <= 1 exactly (100 x cheapest / price is not: 100.00000000000001
            # for one price in twenty, which the framework rightly refuses as out of range)
            np.divide(float(p.min()), p, out=out, where=p > 0)
        return 100.0 * out


class AvailabilityScore:
    """More free GPUs of the candidate's model is better: 100 x free / most free among the feasible."""

    name = "availability"

    def score(self, cy: Cycle, rows: IntArray) -> FloatArray:
        f = cy.free[rows].astype(np.float64)
        if not len(f) or f.max() <= 0:
            return np.zeros(len(f))
        return 100.0 * f / float(f.max())


LATENCY_SOFTENING_MS = 10.0
"""Added to both sides of the latency ratio: 2 ms against 18 ms scores 43, not 11 (both are close)."""


class LatencyScore:
    """Closer to where the workload is served from is better (AIWorkload placement.servedFrom): with L the
    mean latency from the cluster's region to those regions, 100 x (lowest L + 10 ms) / (L + 10 ms) among
    the feasible; 0 for a cluster whose region has no known latency to one of them; every candidate scores
    100 when the workload names none."""

    name = "latency"

    def score(self, cy: Cycle, rows: IntArray) -> FloatArray:
        served = sorted(cy.req.served_from)
        if not served:
            return np.full(len(rows), 100.0)
        by_cluster: dict[int, float | None] = {}
        for ci in {int(c) for c in cy.snap.cluster[rows]}:
            region = cy.snap.clusters[ci].region
            ms = [cy.policy.latency(region, s) for s in served]
            by_cluster[ci] = None if any(m is None for m in ms) else sum(m for m in ms if m is not None) / len(ms)
        known = [v for v in by_cluster.values() if v is not None]
        best = min(known) if known else 0.0
        soft = LATENCY_SOFTENING_MS
        scored = {c: 0.0 if v is None else min(100.0, 100.0 * (best + soft) / (v + soft))
                  for c, v in by_cluster.items()}
        return np.asarray([scored[int(c)] for c in cy.snap.cluster[rows]], dtype=np.float64)


FILTERS = (HealthFilter, SelectorFilter, ResidencyFilter, ModelFilter, CapacityFilter, BudgetFilter)
SCORES = (PriceScore, AvailabilityScore, LatencyScore)


def _factory(cls: Any) -> Any:
    def make(args: Mapping[str, Any]) -> Any:
        if args:
            raise ValueError(f"plugin {cls.name!r} takes no arguments, got {sorted(args)}")
        return cls()

    return make


def default_registry() -> Registry:
    reg = Registry()
    for f in FILTERS:
        reg.register_filter(f.name, _factory(f))
    for sc in SCORES:
        reg.register_score(sc.name, _factory(sc))
    return reg
