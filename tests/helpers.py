"""Builders for tests: raw documents (what a user writes) and validated objects (what the core takes).

Every builder returns the smallest valid object; tests state only what they vary.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy, parse_object
from tenbin.scheduling import EffectivePolicy, Scheduler, Snapshot, WorkloadRequest
from tenbin.scheduling.framework import Cycle
from tenbin.scheduling.reasons import Reason

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_DIRS = [EXAMPLES / "fleet", EXAMPLES / "policy", EXAMPLES / "workloads"]
API = "tenbin.io/v1alpha1"

MEMORY = {"H100-80GB": 80, "H200-141GB": 141, "A100-80GB": 80, "A100-40GB": 40, "L4-24GB": 24}

# (model, count, price, currency) or a full dict
Gpu = tuple[str, int, float, str] | Mapping[str, Any]

def gpu_doc(g: Gpu) -> dict[str, Any]:
    if isinstance(g, Mapping):
        return dict(g)
    model, count, price, currency = g
    return {"model": model, "count": count, "memoryGiB": MEMORY.get(model, 80),
            "pricePerGPUHour": price, "currency": currency}

def cluster_doc(
    name: str = "c1",
    *,
    tier: str = "SovereignCloud",
    jurisdiction: str = "JP",
    gpus: Sequence[Gpu] = (("H100-80GB", 8, 480, "JPY"),),
    labels: Mapping[str, str] | None = None,
    residency_labels: Sequence[str] = (),
    cordoned: bool = False,
    phase: str | None = None,
    inventory: Mapping[str, int] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A GPUCluster document; `inventory` (model -> free) fills status.gpus."""
    doc: dict[str, Any] = {
        "apiVersion": API,
        "kind": "GPUCluster",
        "metadata": {"name": name, **({"labels": dict(labels)} if labels else {})},
        "spec": {
            "tier": tier,
            "jurisdiction": jurisdiction,
            "residencyLabels": list(residency_labels),
            "gpus": [gpu_doc(g) for g in gpus],
            "cordoned": cordoned,
            **spec,
        },
    }
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if inventory is not None:
        status["gpus"] = [{"model": m, "capacity": f, "allocatable": f, "allocated": 0, "free": f}
                          for m, f in inventory.items()]
    if status:
        doc["status"] = status
    return doc

def job_template(gpus: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "registry.example.com/test:1",
             "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}},
    }

def workload_doc(
    name: str = "w1",
    namespace: str | None = "default",
    *,
    count: int = 1,
    replicas: int | None = None,
    models: Sequence[str] = (),
    min_memory_gib: int | None = None,
    classification: str | None = None,
    jurisdictions: Sequence[str] = (),
    tiers: Sequence[str] = (),
    required_labels: Sequence[str] = (),
    operator_jurisdictions: Sequence[str] = (),
    budget: tuple[float, str] | None = None,
    selector: Mapping[str, Any] | None = None,
    weights: Mapping[str, float] | None = None,
    migration: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    gpu: dict[str, Any] = {"count": count}
    if models:
        gpu["models"] = list(models)
    if min_memory_gib is not None:
        gpu["minMemoryGiB"] = min_memory_gib
    residency: dict[str, Any] = {}
    if classification is not None:
        residency["dataClassification"] = classification
    if jurisdictions:
        residency["jurisdictions"] = list(jurisdictions)
    if tiers:
        residency["tiers"] = list(tiers)
    if required_labels:
        residency["requiredLabels"] = list(required_labels)
    if operator_jurisdictions:
        residency["operatorJurisdictions"] = list(operator_jurisdictions)
    spec: dict[str, Any] = {"gpu": gpu, "template": job_template(count)}
    if replicas is not None:
        spec["replicas"] = replicas
    if residency:
        spec["residency"] = residency
    if budget is not None:
        spec["budget"] = {"maxPricePerGPUHour": budget[0], "currency": budget[1]}
    placement: dict[str, Any] = {}
    if selector is not None:
        placement["clusterSelector"] = dict(selector)
    if weights is not None:
        placement["weights"] = dict(weights)
    if placement:
        spec["placement"] = placement
    if migration is not None:
        spec["migration"] = dict(migration)
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": API, "kind": "AIWorkload", "metadata": meta, "spec": spec}

def policy_doc(
    name: str = "default",
    *,
    base: str = "JPY",
    rates: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    rules: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    spec: dict[str, Any] = {"baseCurrency": base, "exchangeRates": dict(rates or {"USD": 150.0})}
    if weights is not None:
        spec["weights"] = dict(weights)
    if rules:
        spec["classificationRules"] = [dict(r) for r in rules]
    return {"apiVersion": API, "kind": "PlacementPolicy", "metadata": {"name": name}, "spec": spec}

def cluster(name: str = "c1", **kw: Any) -> GPUCluster:
    obj = parse_object(cluster_doc(name, **kw))
    assert isinstance(obj, GPUCluster)
    return obj

def workload(name: str = "w1", namespace: str | None = "default", **kw: Any) -> AIWorkload:
    obj = parse_object(workload_doc(name, namespace, **kw))
    assert isinstance(obj, AIWorkload)
    return obj

def policy(name: str = "default", **kw: Any) -> PlacementPolicy:
    obj = parse_object(policy_doc(name, **kw))
    assert isinstance(obj, PlacementPolicy)
    return obj

def with_change(doc: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `doc` with `path` ('spec.gpus[0].count') set to `value` (or deleted for DELETE)."""
    out = copy.deepcopy(dict(doc))
    parts: list[str | int] = []
    for piece in path.split("."):
        name, _, rest = piece.partition("[")
        parts.append(name)
        while rest:
            idx, _, rest = rest.partition("]")
            parts.append(int(idx))
            rest = rest.removeprefix("[")
    node: Any = out
    for p in parts[:-1]:
        node = node.setdefault(p, {}) if isinstance(p, str) else node[p]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return out

DELETE = object()

@dataclass(frozen=True)
class Invalid:
    """An object both pydantic and the apiserver must reject, naming `field`."""

    id: str
    doc: dict[str, Any]
    field: str
    """The field path as the apiserver names it (kubectl output)."""
    model_field: str | None = None
    """The field path as `parse_object` names it, when pydantic reports it one level up."""

    @property
    def kind_name(self) -> str:
        return f"{self.doc['kind']} {self.doc['metadata']['name']}"

def _aiw(name: str, path: str, value: Any, **kw: Any) -> dict[str, Any]:
    return with_change(workload_doc(name, "default", **kw), path, value)

def _gpuc(name: str, path: str, value: Any) -> dict[str, Any]:
    return with_change(cluster_doc(name), path, value)

_KIND_ROW = {"apiVersion": "batch/v1", "kind": "Job", "podTemplates": [{"path": "spec.template"}]}

INVALID: list[Invalid] = [
    Invalid("negative-gpu-count", _aiw("bad-count", "spec.gpu.count", -1), "spec.gpu.count"),
    Invalid("negative-cluster-gpus", _gpuc("bad-gpus", "spec.gpus[0].count", -4), "spec.gpus[0].count"),
    Invalid("unknown-tier", _gpuc("bad-tier", "spec.tier", "Cloud"), "spec.tier"),
    Invalid("lower-case-jurisdiction", _gpuc("bad-jurisdiction", "spec.jurisdiction", "jp"), "spec.jurisdiction"),
    Invalid("unknown-classification",
            _aiw("bad-class", "spec.residency.dataClassification", "Secret", classification="Public"),
            "spec.residency.dataClassification"),
    Invalid("budget-without-currency",
            _aiw("bad-budget", "spec.budget.currency", DELETE, budget=(500, "JPY")), "spec.budget.currency"),
    Invalid("bad-currency-pattern", _gpuc("bad-currency", "spec.gpus[0].currency", "yen"), "spec.gpus[0].currency"),
    Invalid("zero-replicas", _aiw("bad-replicas", "spec.replicas", 0), "spec.replicas"),
    Invalid("unknown-migration-policy",
            _aiw("bad-migration", "spec.migration.policy", "Sometimes", migration={"policy": "Never"}),
            "spec.migration.policy"),
    Invalid("negative-price", _gpuc("bad-price", "spec.gpus[0].pricePerGPUHour", -1), "spec.gpus[0].pricePerGPUHour"),
    Invalid("missing-tier", _gpuc("no-tier", "spec.tier", DELETE), "spec.tier"),
    Invalid("lower-case-workload-jurisdiction",
            _aiw("bad-jurs", "spec.residency.jurisdictions", ["jp"], jurisdictions=["JP"]),
            "spec.residency.jurisdictions[0]"),
    Invalid("weight-out-of-range", _aiw("bad-weight", "spec.placement.weights.price", 1000, weights={"price": 1}),
            "spec.placement.weights.price"),
    Invalid("selector-in-without-values",
            _aiw("bad-selector", "spec.placement.clusterSelector.matchExpressions",
                 [{"key": "team", "operator": "In"}], selector={"matchLabels": {"team": "a"}}),
            "spec.placement.clusterSelector.matchExpressions[0].values"),
    Invalid("exchange-rate-key-not-a-currency",
            with_change(policy_doc("bad-rates"), "spec.exchangeRates", {"usd": 150.0}), "spec.exchangeRates"),
    Invalid("connection-empty", _gpuc("bad-connection", "spec.connection", {}), "spec.connection"),
    Invalid("template-without-kind", _aiw("bad-template", "spec.template.kind", DELETE), "spec.template.kind"),
    Invalid("unknown-field-typo", _aiw("bad-typo", "spec.replica", 2), "spec.replica"),
    # upper case and two letters, but not a code ISO 3166-1 assigns (EU is only "exceptionally reserved")
    Invalid("not-an-iso-country", _gpuc("bad-country", "spec.jurisdiction", "EU"), "spec.jurisdiction"),
    Invalid("not-an-iso-country-in-a-workload",
            _aiw("bad-country-w", "spec.residency.jurisdictions", ["JP", "XX"], jurisdictions=["JP"]),
            "spec.residency.jurisdictions[1]"),
    Invalid("not-an-iso-currency", _gpuc("bad-iso-currency", "spec.gpus[0].currency", "JPX"), "spec.gpus[0].currency"),
    Invalid("exchange-rate-key-not-an-iso-currency",
            with_change(policy_doc("bad-iso-rates"), "spec.exchangeRates", {"USX": 150.0}), "spec.exchangeRates"),
    Invalid("built-in-kind-redeclared",
            with_change(policy_doc("bad-kind"), "spec.workloadKinds", [_KIND_ROW]), "spec.workloadKinds[0].kind",
            model_field="spec.workloadKinds[0]"),
    Invalid("kind-phase-path-and-conditions",
            with_change(policy_doc("bad-phase"), "spec.workloadKinds",
                        [{**_KIND_ROW, "apiVersion": "example.com/v1",
                          "phase": {"path": "status.phase", "fromConditions": True}}]),
            "spec.workloadKinds[0].phase"),
    Invalid("attestation-covering-nothing",
            with_change(policy_doc("bad-attestation"), "spec.attestations",
                        [{"label": "ismap", "validUntil": "2027-03-31T00:00:00Z"}]),
            "spec.attestations[0]"),
    Invalid("kind-template-path-malformed",
            with_change(policy_doc("bad-path"), "spec.workloadKinds",
                        [{**_KIND_ROW, "apiVersion": "example.com/v1", "podTemplates": [{"path": "spec..template"}]}]),
            "spec.workloadKinds[0].podTemplates[0].path"),
]

def parse_all(docs: Iterable[Mapping[str, Any]]) -> list[Any]:
    return [parse_object(d) for d in docs]

Check = Callable[[Any], bool]


# ---- running one plugin of the core on a small fleet ------------------------------------------------

POLICY = EffectivePolicy(rates={"JPY": 1.0, "USD": 150.0})


def cycle(w: AIWorkload | WorkloadRequest, clusters: Sequence[GPUCluster],
          policy: EffectivePolicy = POLICY) -> Cycle:
    req = w if isinstance(w, WorkloadRequest) else WorkloadRequest.from_api(w)
    snap = Snapshot(clusters)
    return Scheduler(policy)._cycle(req, snap, snap.free)


def run_filter(plugin: object, w: AIWorkload | WorkloadRequest, clusters: Sequence[GPUCluster],
               policy: EffectivePolicy = POLICY) -> dict[tuple[str, str], tuple[Reason, ...]]:
    """(cluster, model) -> reasons for every candidate; empty tuple = passes."""
    cy = cycle(w, clusters, policy)
    mask = plugin.filter(cy)  # type: ignore[attr-defined]
    rows = np.flatnonzero(~mask)
    groups, inverse = plugin.explain(cy, rows)  # type: ignore[attr-defined]
    out: dict[tuple[str, str], tuple[Reason, ...]] = {
        (cy.snap.cluster_name(r), cy.snap.model_name(r)): () for r in range(cy.snap.n_rows)}
    for r, g in zip(rows.tolist(), inverse.tolist(), strict=True):
        out[(cy.snap.cluster_name(r), cy.snap.model_name(r))] = groups[g]
        assert groups[g], "a rejected candidate must have at least one reason"
    return out


def load_script(path: Path, name: str) -> ModuleType:
    """A repository script that is not a package module (docs/architecture.py, image/lock.py), imported by path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod
