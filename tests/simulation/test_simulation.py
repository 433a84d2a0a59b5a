"""The deterministic simulation of the whole operator (world.py): random fleets and schedules, every
invariant after every step. Run more with `make simulate SEED=... STEPS=...`."""

from __future__ import annotations

import pytest
from world import Simulation, allowed, simulate

SEEDS = range(1, 41)  # 40 schedules x 300 steps, each followed by a settle: >= 12,000 steps in all
STEPS = 300


@pytest.mark.parametrize("seed", SEEDS)
def test_a_random_schedule_keeps_every_invariant(seed: int) -> None:
    sim = simulate(seed, STEPS)
    assert sim.tick_no >= STEPS  # it ran its schedule (and then settled)
    assert sim.workloads(), "the schedule created no workloads: it tested nothing"


def test_the_same_seed_replays_the_same_run() -> None:
    a, b = simulate(7, 120), simulate(7, 120)
    assert a.trace == b.trace
    assert [(w["metadata"]["name"], (w.get("status") or {}).get("phase"), (w.get("status") or {}).get("placement"))
            for w in a.workloads()] == \
        [(w["metadata"]["name"], (w.get("status") or {}).get("phase"), (w.get("status") or {}).get("placement"))
         for w in b.workloads()]


def test_the_residency_oracle_refuses_what_the_contract_refuses() -> None:
    def cluster(tier: str, jurisdiction: str, labels: list[str]) -> dict[str, object]:
        return {"spec": {"tier": tier, "jurisdiction": jurisdiction, "residencyLabels": labels}}

    def wl(classification: str, **extra: object) -> dict[str, object]:
        return {"spec": {"residency": {"dataClassification": classification, **extra}}}

    assert allowed(wl("Restricted"), cluster("OnPrem", "JP", []))
    assert not allowed(wl("Restricted"), cluster("SovereignCloud", "JP", []))
    sim_policy = {"spec": {"classificationRules": [
        {"classification": "Confidential", "allowedTiers": ["OnPrem", "SovereignCloud"],
         "allowedJurisdictions": ["JP"]}]}}
    assert not allowed(wl("Confidential"), cluster("SovereignCloud", "US", []), sim_policy)
    assert not allowed(wl("Public", requiredLabels=["ismap"]), cluster("Hyperscaler", "US", ["iso27017"]))
    assert not allowed(wl("Internal", jurisdictions=["JP"]), cluster("Hyperscaler", "US", []))
    assert allowed(wl("Public"), cluster("Hyperscaler", "US", []))
    tight = {"spec": {"classificationRules": [{"classification": "Internal", "allowedJurisdictions": ["JP"]}]}}
    assert allowed(wl("Internal"), cluster("Hyperscaler", "US", []))
    assert not allowed(wl("Internal"), cluster("Hyperscaler", "US", []), tight)
    assert allowed(wl("Confidential"), cluster("SovereignCloud", "US", []))  # the built-in rule: any jurisdiction


def test_the_invariants_catch_a_residency_breach() -> None:
    """The checks can fail: a copy created on a forbidden member is reported with a replayable trace."""
    import asyncio

    sim = Simulation(3, 1)

    async def breach() -> None:
        sim._fleet()
        name = next(n for n, c in sim.clusters().items() if c["spec"]["tier"] == "Hyperscaler")
        sim.hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload",
                        "metadata": {"name": "secret", "namespace": "sim"},
                        "spec": {"gpu": {"count": 1}, "replicas": 1,
                                 "residency": {"dataClassification": "Restricted"},
                                 "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "secret"},
                                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
        uid = sim.hub.get("AIWorkload", "sim", "secret")["metadata"]["uid"]  # type: ignore[index]
        await sim.members[name].apply({"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "secret", "namespace": "sim",
                                                    "labels": {"tenbin.io/workload-uid": uid}},
                                       "spec": {"containers": [{"name": "c", "image": "x"}]}})
        sim.check()

    with pytest.raises(AssertionError, match="which residency forbids"):
        asyncio.run(breach())
