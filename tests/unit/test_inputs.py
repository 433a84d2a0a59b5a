"""EffectivePolicy and WorkloadRequest: defaults, rule replacement, FX."""

from __future__ import annotations

from helpers import policy, workload
from tenbin.api import DataClassification, Tier
from tenbin.scheduling import BUILTIN_RULES, EffectivePolicy, WorkloadRequest


def test_builtin_rules_follow_the_contract() -> None:
    p = EffectivePolicy.from_api(None)
    assert p.rules[DataClassification.RESTRICTED].allowed_tiers == {Tier.ON_PREM}
    assert p.rules[DataClassification.CONFIDENTIAL].allowed_tiers == {Tier.ON_PREM, Tier.SOVEREIGN_CLOUD}
    for c in (DataClassification.INTERNAL, DataClassification.PUBLIC):
        assert not p.rules[c].allowed_tiers and not p.rules[c].allowed_jurisdictions
    assert p.weights == {"price": 0.5, "availability": 0.5, "latency": 0.0}


def test_a_policy_rule_replaces_only_its_classification() -> None:
    p = EffectivePolicy.from_api(policy(rules=[{"classification": "Public", "allowedJurisdictions": ["JP"]}]))
    assert p.rules[DataClassification.PUBLIC].allowed_jurisdictions == {"JP"}
    assert not p.rules[DataClassification.PUBLIC].builtin
    for c in (DataClassification.RESTRICTED, DataClassification.CONFIDENTIAL, DataClassification.INTERNAL):
        assert p.rules[c] == BUILTIN_RULES[c]


def test_exchange_rates_and_base_currency() -> None:
    p = EffectivePolicy.from_api(policy(base="EUR", rates={"USD": 0.9}))
    assert p.rate("EUR") == 1.0 and p.rate("USD") == 0.9 and p.rate("JPY") is None
    assert p.to_base(10, "USD") == 10 * 0.9 and p.to_base(10, "JPY") is None


def test_workload_request_from_api() -> None:
    r = WorkloadRequest.from_api(workload("x", "ns", count=4, replicas=3, models=["H100-80GB"],
                                          budget=(3.2, "USD"), weights={"price": 1}, selector={}))
    assert r.key == "ns/x" and r.need == 12 and r.models == {"H100-80GB"}
    assert r.budget == (3.2, "USD")
    assert r.selector is None  # an empty selector selects everything
    assert r.effective_weights(EffectivePolicy()) == {"price": 1.0, "availability": 0.0, "latency": 0.0}
    assert WorkloadRequest.from_api(workload()).effective_weights(EffectivePolicy()) == {
        "price": 0.5, "availability": 0.5, "latency": 0.0}
