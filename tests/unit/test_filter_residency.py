from __future__ import annotations

from typing import Any

import pytest

from helpers import POLICY, cluster, run_filter, workload
from tenbin.api import DataClassification, Tier
from tenbin.scheduling import EffectivePolicy
from tenbin.scheduling import reasons as R
from tenbin.scheduling.inputs import ClassificationRule
from tenbin.scheduling.plugins import ResidencyFilter

ONPREM = cluster("onprem", tier="OnPrem", jurisdiction="JP", residency_labels=["ismap", "medical"])
SOV = cluster("sov", tier="SovereignCloud", jurisdiction="JP", residency_labels=["ismap"])
HYPER_US = cluster("hyper-us", tier="Hyperscaler", jurisdiction="US")
FLEET = [ONPREM, SOV, HYPER_US]
CONF = ["OnPrem", "SovereignCloud"]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, {}),
        ({"jurisdictions": ["JP"]}, {"hyper-us": (R.jurisdiction_not_allowed("US", ["JP"]),)}),
        ({"tiers": ["OnPrem"]}, {"sov": (R.tier_not_allowed("SovereignCloud", ["OnPrem"]),),
                                 "hyper-us": (R.tier_not_allowed("Hyperscaler", ["OnPrem"]),)}),
        ({"required_labels": ["ismap", "medical"]},
         {"sov": (R.labels_missing(["medical"]),), "hyper-us": (R.labels_missing(["ismap", "medical"]),)}),
        ({"classification": "Restricted"},
         {"sov": (R.rule_tier("Restricted", "SovereignCloud", ["OnPrem"]),),
          "hyper-us": (R.rule_tier("Restricted", "Hyperscaler", ["OnPrem"]),)}),
        ({"classification": "Confidential"}, {"hyper-us": (R.rule_tier("Confidential", "Hyperscaler", CONF),)}),
        ({"classification": "Public"}, {}),
        ({"classification": "Confidential", "jurisdictions": ["JP"]},
         {"hyper-us": (R.jurisdiction_not_allowed("US", ["JP"]), R.rule_tier("Confidential", "Hyperscaler", CONF))}),
    ],
)
def test_residency_with_builtin_rules(kw: dict[str, Any], expected: dict[str, tuple[R.Reason, ...]]) -> None:
    got = run_filter(ResidencyFilter(), workload(**kw), FLEET)
    assert got == {(c.metadata.name, "H100-80GB"): expected.get(c.metadata.name, ()) for c in FLEET}


def test_policy_rule_replaces_the_builtin_rule() -> None:
    rules = dict(POLICY.rules)
    rules[DataClassification.RESTRICTED] = ClassificationRule(
        DataClassification.RESTRICTED, allowed_tiers=frozenset({Tier.ON_PREM, Tier.HYPERSCALER}),
        allowed_jurisdictions=frozenset({"US"}), required_labels=frozenset({"medical"}), builtin=False)
    pol = EffectivePolicy(rates=POLICY.rates, rules=rules)
    got = run_filter(ResidencyFilter(), workload(classification="Restricted"), FLEET, pol)
    assert got[("onprem", "H100-80GB")] == (R.rule_jurisdiction("Restricted", "JP", ["US"]),)
    assert got[("sov", "H100-80GB")] == (
        R.rule_tier("Restricted", "SovereignCloud", ["Hyperscaler", "OnPrem"]),
        R.rule_jurisdiction("Restricted", "JP", ["US"]),
        R.rule_labels("Restricted", ["medical"]),
    )
    assert got[("hyper-us", "H100-80GB")] == (R.rule_labels("Restricted", ["medical"]),)


# Who operates the service apart from where the data sits: a Japanese sovereign cloud, the same GPUs resold
# through a US hyperscaler's marketplace (still run by the Japanese company), a US company's Tokyo region, and
# a provider that does not say who runs it.
OPERATED = [cluster("sakura", jurisdiction="JP", operatorJurisdiction="JP"),
            cluster("sakura-via-aws", tier="Hyperscaler", jurisdiction="JP", operatorJurisdiction="JP"),
            cluster("aws-tokyo", tier="Hyperscaler", jurisdiction="JP", operatorJurisdiction="US"),
            cluster("unknown-jp", jurisdiction="JP")]


def test_a_workload_may_require_who_operates_the_cluster() -> None:
    got = run_filter(ResidencyFilter(), workload(operator_jurisdictions=["JP"]), OPERATED)
    assert got == {("sakura", "H100-80GB"): (), ("sakura-via-aws", "H100-80GB"): (),
                   ("aws-tokyo", "H100-80GB"): (R.operator_not_allowed("US", ["JP"]),),
                   ("unknown-jp", "H100-80GB"): (R.operator_not_allowed("", ["JP"]),)}
    assert "operator jurisdiction not declared (must be in [JP])" in str(got[("unknown-jp", "H100-80GB")][0])
    assert all(not why for why in run_filter(ResidencyFilter(), workload(), OPERATED).values())  # default: any


def test_a_classification_rule_may_require_who_operates_the_cluster() -> None:
    rules = dict(POLICY.rules)
    rules[DataClassification.INTERNAL] = ClassificationRule(
        DataClassification.INTERNAL, allowed_operator_jurisdictions=frozenset({"JP"}), builtin=False)
    pol = EffectivePolicy(rates=POLICY.rates, rules=rules)
    got = run_filter(ResidencyFilter(), workload(classification="Internal"), OPERATED, pol)
    assert got[("aws-tokyo", "H100-80GB")] == (R.rule_operator("Internal", "US", ["JP"]),)
    assert got[("unknown-jp", "H100-80GB")] == (R.rule_operator("Internal", "", ["JP"]),)
    assert got[("sakura-via-aws", "H100-80GB")] == ()  # resold, still run from Japan
