"""A deliberately plain scalar implementation of the same rules, for differential tests only.

It reads the API objects directly (no snapshot, no numpy, no plugins) and loops over every
(cluster, model) pair. The vectorized engine must agree with it on the feasible set, on every reason
of every rejected candidate, on the scores and on the choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tenbin.api import ClusterPhase, GPUCluster
from tenbin.scheduling import reasons as R
from tenbin.scheduling.inputs import EffectivePolicy, WorkloadRequest
from tenbin.scheduling.reasons import Reason
from tenbin.scheduling.snapshot import free_gpus

SCORE_ORDER = ("price", "availability", "latency")


@dataclass(frozen=True)
class ReferenceResult:
    feasible: tuple[tuple[str, str], ...]
    reasons: Mapping[tuple[str, str], tuple[Reason, ...]]
    scores: Mapping[tuple[str, str], float]
    chosen: tuple[str, str] | None


def reference_place(
    req: WorkloadRequest,
    clusters: Sequence[GPUCluster],
    policy: EffectivePolicy,
    reserved: Mapping[tuple[str, str], int] | None = None,
) -> ReferenceResult:
    reserved = reserved or {}
    rule = policy.rules[req.classification]
    cls = rule.classification.value
    base = policy.base_currency
    budget_base: float | None = None
    budget_known = True
    if req.budget is not None:
        r = policy.rate(req.budget[1])
        budget_known = r is not None
        budget_base = req.budget[0] * r if r is not None else None

    reasons: dict[tuple[str, str], tuple[Reason, ...]] = {}
    feasible: list[tuple[str, str, float, int]] = []  # cluster, model, price_base, free
    for c in clusters:
        spec = c.spec
        frees = free_gpus(c)
        phase = c.status.phase if c.status is not None else None
        for g in spec.gpus:
            why: list[Reason] = []
            if spec.cordoned:
                why.append(R.cordoned())
            if phase is not None and phase is not ClusterPhase.READY:
                why.append(R.not_ready(phase.value))
            if req.selector is not None and not req.selector.matches(c.metadata.labels):
                why.append(R.selector_mismatch(str(req.selector)))
            if req.jurisdictions and spec.jurisdiction not in req.jurisdictions:
                why.append(R.jurisdiction_not_allowed(spec.jurisdiction, req.jurisdictions))
            if req.tiers and spec.tier not in req.tiers:
                why.append(R.tier_not_allowed(spec.tier, req.tiers))
            missing = [lab for lab in req.required_labels if lab not in spec.residency_labels]
            if missing:
                why.append(R.labels_missing(missing))
            if rule.allowed_tiers and spec.tier not in rule.allowed_tiers:
                why.append(R.rule_tier(cls, spec.tier, rule.allowed_tiers))
            if rule.allowed_jurisdictions and spec.jurisdiction not in rule.allowed_jurisdictions:
                why.append(R.rule_jurisdiction(cls, spec.jurisdiction, rule.allowed_jurisdictions))
            rule_missing = [lab for lab in rule.required_labels if lab not in spec.residency_labels]
            if rule_missing:
                why.append(R.rule_labels(cls, rule_missing))
            op = spec.operator_jurisdiction or ""
            if req.operator_jurisdictions and op not in req.operator_jurisdictions:
                why.append(R.operator_not_allowed(op, req.operator_jurisdictions))
            if rule.allowed_operator_jurisdictions and op not in rule.allowed_operator_jurisdictions:
                why.append(R.rule_operator(cls, op, rule.allowed_operator_jurisdictions))
            if req.models and g.model not in req.models:
                why.append(R.model_not_requested(g.model, req.models))
            if req.min_memory_gib is not None and g.memory_gib < req.min_memory_gib:
                why.append(R.too_little_memory(g.model, float(g.memory_gib), req.min_memory_gib))
            free = max(frees[g.model] - reserved.get((c.metadata.name, g.model), 0), 0)
            if free < req.need:
                why.append(R.insufficient(g.model, free, req.need))
            rate = policy.rate(g.currency)
            price_base = g.price_per_gpu_hour * rate if rate is not None else None
            if price_base is None:
                why.append(R.unpriced(g.currency, base))
            if req.budget is not None and not budget_known:
                why.append(R.budget_currency_unknown(req.budget[1], base))
            elif price_base is not None and budget_base is not None and price_base > budget_base:
                why.append(R.over_budget(price_base, budget_base, base))
            if why:
                reasons[(c.metadata.name, g.model)] = tuple(why)
            else:
                assert price_base is not None
                feasible.append((c.metadata.name, g.model, price_base, free))

    weights = req.effective_weights(policy)
    scores: dict[tuple[str, str], float] = {}
    if feasible:
        pmin = min(p for _, _, p, _ in feasible)
        fmax = max(f for _, _, _, f in feasible)
        region = {c.metadata.name: c.spec.region or "" for c in clusters}

        def mean_latency(cluster: str) -> float | None:
            ms = [policy.latency(region[cluster], s) for s in sorted(req.served_from)]
            if not ms:
                return 0.0
            return None if any(m is None for m in ms) else sum(m or 0.0 for m in ms) / len(ms)

        lat = {name: mean_latency(name) for name, _, _, _ in feasible}
        lmin = min((v for v in lat.values() if v is not None), default=0.0)
        for name, model, price, free in feasible:
            acc, wsum = 0.0, 0.0
            for plugin in SCORE_ORDER:
                w = float(weights.get(plugin, 0.0))
                if w <= 0:
                    continue
                if plugin == "price":
                    s = 100.0 * (pmin / price) if price > 0 else 100.0  # as PriceScore: <= 100 exactly
                elif plugin == "latency":
                    v = lat[name]
                    s = 100.0 if not req.served_from else 0.0 if v is None else min(100.0, (lmin + 10) / (v + 10) * 100)
                else:
                    s = 100.0 * float(free) / float(fmax)
                acc = acc + w * s
                wsum += w
            scores[(name, model)] = acc / wsum if wsum > 0 else acc
    chosen = min(scores, key=lambda k: (-scores[k], k[0], k[1])) if scores else None
    return ReferenceResult(
        feasible=tuple(sorted((n, m) for n, m, _, _ in feasible)),
        reasons=reasons,
        scores=scores,
        chosen=chosen,
    )
