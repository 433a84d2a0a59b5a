"""Properties of the core over generated fleets, policies and workloads (Hypothesis).

- the vectorized engine equals the scalar reference (feasible set, every reason, scores, choice);
- residency is never violated; capacity is never over-committed across sequential placements;
- reordering clusters changes nothing; the same input always gives the same output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import MEMORY, cluster_doc, policy_doc, workload_doc
from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy, parse_object
from tenbin.scheduling import EffectivePolicy, Scheduler, Snapshot, WorkloadRequest
from tenbin.scheduling.reference import reference_place

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
MODELS = ["H100-80GB", "H200-141GB", "A100-40GB", "L4-24GB"]
TIERS = ["OnPrem", "SovereignCloud", "Hyperscaler"]
JURS = ["JP", "US", "DE"]
REGIONS = ["jp-tokyo", "jp-ishikari", "us-east-1"]
RLABELS = ["ismap", "medical", "jp-operator"]
CLASSES = ["Public", "Internal", "Confidential", "Restricted"]
CURRENCIES = ["JPY", "JPY", "USD", "EUR"]  # EUR has no rate in some policies


@st.composite
def gpus(draw: st.DrawFn) -> list[dict[str, Any]]:
    models = draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True))
    return [{"model": m, "count": draw(st.integers(0, 16)), "memoryGiB": MEMORY[m],
             "pricePerGPUHour": float(draw(st.integers(0, 8)) * 100 if draw(st.booleans()) else
                                      draw(st.sampled_from([2.5, 3.0, 3.9]))),
             "currency": draw(st.sampled_from(CURRENCIES))} for m in models]


@st.composite
def clusters(draw: st.DrawFn) -> list[GPUCluster]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=0, max_size=8, unique=True))
    out = []
    for n in names:
        g = draw(gpus())
        inventory = None
        if draw(st.booleans()):
            inventory = {x["model"]: draw(st.integers(0, 16)) for x in g if draw(st.booleans())}
        labels = {}
        if draw(st.booleans()):
            labels["team"] = draw(st.sampled_from(["ml", "web"]))
        doc = cluster_doc(
            n, tier=draw(st.sampled_from(TIERS)), jurisdiction=draw(st.sampled_from(JURS)), gpus=g, labels=labels,
            residency_labels=draw(st.lists(st.sampled_from(RLABELS), unique=True, max_size=3)),
            cordoned=draw(st.booleans()) and draw(st.booleans()),
            **({"operatorJurisdiction": op} if (op := draw(st.sampled_from([None, *JURS]))) else {}),
            **({"region": region} if (region := draw(st.sampled_from([None, *REGIONS]))) else {}),
            phase=draw(st.sampled_from([None, None, "Ready", "NotReady"])), inventory=inventory,
        )
        c = parse_object(doc)
        assert isinstance(c, GPUCluster)
        out.append(c)
    return out


@st.composite
def policies(draw: st.DrawFn) -> EffectivePolicy:
    rates = {"USD": 150.0, **({"EUR": 160.0} if draw(st.booleans()) else {})}
    rules = []
    for cls in draw(st.lists(st.sampled_from(CLASSES), unique=True, max_size=2)):
        rules.append({"classification": cls,
                      "allowedTiers": draw(st.lists(st.sampled_from(TIERS), unique=True, max_size=2)),
                      "allowedJurisdictions": draw(st.lists(st.sampled_from(JURS), unique=True, max_size=2)),
                      "requiredLabels": draw(st.lists(st.sampled_from(RLABELS), unique=True, max_size=1)),
                      "allowedOperatorJurisdictions": draw(st.lists(st.sampled_from(JURS), unique=True, max_size=1))})
    weights = draw(st.sampled_from([None, {"price": 1}, {"availability": 1}, {"price": 0.3, "availability": 0.7},
                                    {"latency": 1, "price": 0.5}]))
    doc = policy_doc(rates=rates, rules=rules, weights=weights)
    doc["spec"]["latencyMilliseconds"] = {a: {b: draw(st.sampled_from([0.0, 2.0, 18.0, 150.0]))
                                              for b in REGIONS if b > a and draw(st.booleans())} for a in REGIONS}
    p = parse_object(doc)
    assert isinstance(p, PlacementPolicy)
    return EffectivePolicy.from_api(p)


@st.composite
def workloads(draw: st.DrawFn, name: str = "w") -> AIWorkload:
    selector = draw(st.sampled_from([None, {"matchLabels": {"team": "ml"}},
                                     {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["web"]}]},
                                     {"matchExpressions": [{"key": "team", "operator": "Exists"}]}]))
    w = parse_object(workload_doc(
        name, "ns", count=draw(st.integers(1, 8)), replicas=draw(st.integers(1, 3)),
        models=draw(st.lists(st.sampled_from(MODELS), unique=True, max_size=2)),
        min_memory_gib=draw(st.sampled_from([None, None, 40, 80, 141])),
        classification=draw(st.sampled_from([None, *CLASSES])),
        jurisdictions=draw(st.lists(st.sampled_from(JURS), unique=True, max_size=2)),
        tiers=draw(st.lists(st.sampled_from(TIERS), unique=True, max_size=2)),
        required_labels=draw(st.lists(st.sampled_from(RLABELS), unique=True, max_size=2)),
        operator_jurisdictions=draw(st.lists(st.sampled_from(JURS), unique=True, max_size=1)),
        budget=draw(st.sampled_from([None, (400, "JPY"), (3.0, "USD"), (600, "JPY"), (2, "EUR")])),
        selector=selector,
        weights=draw(st.sampled_from([None, None, {"price": 1}, {"availability": 2, "price": 1},
                                      {"latency": 1}, {"latency": 2, "price": 1}])),
    ))
    assert isinstance(w, AIWorkload)
    w.spec.placement.served_from = draw(st.lists(st.sampled_from(REGIONS), unique=True, max_size=2))
    return w


def satisfies_residency(w: AIWorkload, c: GPUCluster, policy: EffectivePolicy) -> bool:
    """Eligibility rule 3, written from the contract, independently of both implementations."""
    r, s = w.spec.residency, c.spec
    rule = policy.rules[r.data_classification]
    return ((not r.jurisdictions or s.jurisdiction in r.jurisdictions)
            and (not r.tiers or s.tier in r.tiers)
            and set(r.required_labels) <= set(s.residency_labels)
            and (not rule.allowed_tiers or s.tier in rule.allowed_tiers)
            and (not rule.allowed_jurisdictions or s.jurisdiction in rule.allowed_jurisdictions)
            and rule.required_labels <= set(s.residency_labels)
            # the operator (who can be made to hand the data over): undeclared never matches a list
            and (not r.operator_jurisdictions or s.operator_jurisdiction in r.operator_jurisdictions)
            and (not rule.allowed_operator_jurisdictions
                 or s.operator_jurisdiction in rule.allowed_operator_jurisdictions))


def initial_free(c: GPUCluster) -> Mapping[str, int]:
    if c.status is not None and c.status.gpus is not None:
        live = {g.model: g.free for g in c.status.gpus}
        return {g.model: live.get(g.model, 0) for g in c.spec.gpus}
    return {g.model: g.count for g in c.spec.gpus}


@SETTINGS
@given(fleet=clusters(), policy=policies(), w=workloads(),
       reserved=st.dictionaries(st.tuples(st.sampled_from(NAMES), st.sampled_from(MODELS)), st.integers(0, 10),
                                max_size=3))
def test_vectorized_equals_reference(fleet: list[GPUCluster], policy: EffectivePolicy, w: AIWorkload,
                                     reserved: dict[tuple[str, str], int]) -> None:
    d = Scheduler(policy).place(w, Snapshot(fleet), reserved=reserved)
    ref = reference_place(WorkloadRequest.from_api(w), fleet, policy, reserved)
    assert d.diagnosis.reasons == dict(ref.reasons)
    feasible = {(c.cluster, c.model) for c in d.top}
    assert feasible <= set(ref.feasible)
    assert d.diagnosis.fit_clusters == len({c for c, _ in ref.feasible})
    assert (None if d.chosen is None else (d.chosen.cluster, d.chosen.model)) == ref.chosen
    for c in d.top:
        assert c.score == ref.scores[(c.cluster, c.model)]  # bit-for-bit: same formulas, same order


@SETTINGS
@given(fleet=clusters(), policy=policies(), ws=st.lists(workloads(), min_size=1, max_size=6))
def test_residency_never_violated_and_capacity_never_overcommitted(
    fleet: list[GPUCluster], policy: EffectivePolicy, ws: list[AIWorkload]
) -> None:
    by_name = {c.metadata.name: c for c in fleet}
    decisions = Scheduler(policy).place_all(ws, Snapshot(fleet))
    used: dict[tuple[str, str], int] = {}
    for w, d in zip(ws, decisions, strict=True):
        if d.chosen is None:
            continue
        c = by_name[d.chosen.cluster]
        assert satisfies_residency(w, c, policy)
        assert not c.spec.cordoned
        key = (d.chosen.cluster, d.chosen.model)
        used[key] = used.get(key, 0) + w.spec.replicas * w.spec.gpu.count
    for (name, model), n in used.items():
        assert n <= initial_free(by_name[name])[model]


@SETTINGS
@given(fleet=clusters(), policy=policies(), ws=st.lists(workloads(), min_size=1, max_size=4), data=st.data())
def test_reordering_clusters_changes_nothing_and_output_is_deterministic(
    fleet: list[GPUCluster], policy: EffectivePolicy, ws: list[AIWorkload], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(fleet))

    def outcome(cs: list[GPUCluster]) -> list[tuple[Any, ...]]:
        return [(d.chosen, d.top, d.reason, d.diagnosis.reasons)
                for d in Scheduler(policy).place_all(ws, Snapshot(cs))]

    first = outcome(fleet)
    assert outcome(list(shuffled)) == first
    assert outcome(fleet) == first


@SETTINGS
@given(fleet=clusters(), policy=policies(), ws=st.lists(workloads(), min_size=1, max_size=5))
def test_sequential_vectorized_equals_sequential_reference(
    fleet: list[GPUCluster], policy: EffectivePolicy, ws: list[AIWorkload]
) -> None:
    reserved: dict[tuple[str, str], int] = {}
    for w, d in zip(ws, Scheduler(policy).place_all(ws, Snapshot(fleet)), strict=True):
        ref = reference_place(WorkloadRequest.from_api(w), fleet, policy, reserved)
        assert (None if d.chosen is None else (d.chosen.cluster, d.chosen.model)) == ref.chosen
        if ref.chosen is not None:
            reserved[ref.chosen] = reserved.get(ref.chosen, 0) + w.spec.replicas * w.spec.gpu.count
