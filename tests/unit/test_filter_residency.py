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
