"""Plain inputs of the core, built once from the API objects: the effective policy and a workload request.

Keeping these as small frozen dataclasses means the operator can build them from live objects and the
core never sees Kubernetes, and tests can build them without YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tenbin.api import (
    DEFAULT_WEIGHTS,
    AIWorkload,
    DataClassification,
    LabelSelector,
    PlacementPolicy,
    Tier,
    Weights,
)

DEFAULT_BASE_CURRENCY = "JPY"


@dataclass(frozen=True)
class ClassificationRule:
    """Where data of one classification may go; empty sets mean "any"."""

    classification: DataClassification
    allowed_tiers: frozenset[Tier] = frozenset()
    allowed_jurisdictions: frozenset[str] = frozenset()
    required_labels: frozenset[str] = frozenset()
    builtin: bool = True
    allowed_operator_jurisdictions: frozenset[str] = frozenset()


BUILTIN_RULES: Mapping[DataClassification, ClassificationRule] = MappingProxyType(
    {
        DataClassification.RESTRICTED: ClassificationRule(
            DataClassification.RESTRICTED, allowed_tiers=frozenset({Tier.ON_PREM})
        ),
        DataClassification.CONFIDENTIAL: ClassificationRule(
            DataClassification.CONFIDENTIAL, allowed_tiers=frozenset({Tier.ON_PREM, Tier.SOVEREIGN_CLOUD})
        ),
        DataClassification.INTERNAL: ClassificationRule(DataClassification.INTERNAL),
        DataClassification.PUBLIC: ClassificationRule(DataClassification.PUBLIC),
    }
)


def _weights(w: Weights) -> Mapping[str, float]:
    return MappingProxyType(w.as_dict())


@dataclass(frozen=True)
class EffectivePolicy:
    """The PlacementPolicy after defaults: base currency, rates (base -> 1.0), weights, all four rules."""

    base_currency: str = DEFAULT_BASE_CURRENCY
    rates: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({DEFAULT_BASE_CURRENCY: 1.0}))
    weights: Mapping[str, float] = field(default_factory=lambda: _weights(DEFAULT_WEIGHTS))
    rules: Mapping[DataClassification, ClassificationRule] = field(default_factory=lambda: BUILTIN_RULES)
    name: str | None = None
    latencies: Mapping[tuple[str, str], float] = field(default_factory=lambda: MappingProxyType({}))
    """Milliseconds between two regions, both ways."""

    @classmethod
    def from_api(cls, policy: PlacementPolicy | None) -> EffectivePolicy:
        """Built-in defaults when there is no policy; a policy rule replaces the built-in one."""
        if policy is None:
            return cls()
        spec = policy.spec
        rates = {**spec.exchange_rates, spec.base_currency: 1.0}
        rules = dict(BUILTIN_RULES)
        for r in spec.classification_rules:
            rules[r.classification] = ClassificationRule(
                r.classification,
                allowed_tiers=frozenset(r.allowed_tiers),
                allowed_jurisdictions=frozenset(r.allowed_jurisdictions),
                required_labels=frozenset(r.required_labels),
                builtin=False,
                allowed_operator_jurisdictions=frozenset(r.allowed_operator_jurisdictions),
            )
        latencies: dict[tuple[str, str], float] = {}
        for a, row in spec.latency_milliseconds.items():
            for b, ms in row.items():
                latencies[(a, b)] = latencies[(b, a)] = float(ms)
        return cls(
            latencies=MappingProxyType(latencies),
            base_currency=spec.base_currency,
            rates=MappingProxyType(rates),
            weights=_weights(spec.weights),
            rules=MappingProxyType(rules),
            name=policy.metadata.name,
        )

    def latency(self, a: str, b: str) -> float | None:
        """Milliseconds between regions a and b (0 within one region), or None when the policy does not say."""
        return 0.0 if a == b else self.latencies.get((a, b))

    def rate(self, currency: str) -> float | None:
        """Units of the base currency for one unit of `currency`, or None when unknown."""
        return self.rates.get(currency)

    def to_base(self, amount: float, currency: str) -> float | None:
        r = self.rate(currency)
        return None if r is None else amount * r


@dataclass(frozen=True)
class WorkloadRequest:
    """What one AIWorkload asks of the fleet, as plain values."""

    key: str
    count: int
    replicas: int = 1
    models: frozenset[str] = frozenset()
    min_memory_gib: int | None = None
    classification: DataClassification = DataClassification.INTERNAL
    jurisdictions: frozenset[str] = frozenset()
    tiers: frozenset[Tier] = frozenset()
    required_labels: frozenset[str] = frozenset()
    operator_jurisdictions: frozenset[str] = frozenset()
    served_from: frozenset[str] = frozenset()
    budget: tuple[float, str] | None = None
    """(maxPricePerGPUHour, currency)."""
    selector: LabelSelector | None = None
    weights: Mapping[str, float] | None = None
    """The workload's own weights (they replace the policy's), or None."""

    @property
    def need(self) -> int:
        """GPUs of one model that must be free in one cluster (gang)."""
        return self.count * self.replicas

    @classmethod
    def from_api(cls, w: AIWorkload) -> WorkloadRequest:
        s = w.spec
        sel = s.placement.cluster_selector
        if sel is not None and not sel.match_labels and not sel.match_expressions:
            sel = None  # an empty selector selects everything
        return cls(
            key=w.key,
            count=s.gpu.count,
            replicas=s.replicas,
            models=frozenset(s.gpu.models),
            min_memory_gib=s.gpu.min_memory_gib,
            classification=s.residency.data_classification,
            jurisdictions=frozenset(s.residency.jurisdictions),
            tiers=frozenset(s.residency.tiers),
            required_labels=frozenset(s.residency.required_labels),
            operator_jurisdictions=frozenset(s.residency.operator_jurisdictions),
            served_from=frozenset(s.placement.served_from),
            budget=(s.budget.max_price_per_gpu_hour, s.budget.currency) if s.budget else None,
            selector=sel,
            weights=_weights(s.placement.weights) if s.placement.weights is not None else None,
        )

    def effective_weights(self, policy: EffectivePolicy) -> Mapping[str, float]:
        return self.weights if self.weights is not None else policy.weights
