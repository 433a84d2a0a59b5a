"""The models accept the examples, reject invalid documents naming the field, and round-trip by alias."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from helpers import DELETE, EXAMPLE_DIRS, INVALID, Invalid, cluster_doc, policy_doc, with_change, workload_doc
from tenbin.api import (
    AIWorkload,
    AIWorkloadStatus,
    DataClassification,
    GPUCluster,
    GPUClusterStatus,
    LabelSelector,
    MigrationPolicy,
    PlacementPolicy,
    parse_object,
)
from tenbin.api.objects import ObjectError, field_path


def example_docs() -> list[dict[str, Any]]:
    return [d for folder in EXAMPLE_DIRS for f in sorted(folder.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]


@pytest.mark.parametrize("doc", example_docs(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_example_validates_and_round_trips(doc: dict[str, Any]) -> None:
    obj = parse_object(doc)
    dumped = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
    # every key the user wrote survives under the same camelCase name
    assert parse_object(dumped) == obj
    assert set(dumped["spec"]) == set(doc["spec"])


@pytest.mark.parametrize("bad", INVALID, ids=[i.id for i in INVALID])
def test_invalid_documents_name_the_object_and_the_field(bad: Invalid) -> None:
    with pytest.raises(ObjectError) as err:
        parse_object(bad.doc)
    assert err.value.field_path == (bad.model_field or bad.field)
    assert bad.doc["metadata"]["name"] in err.value.obj
    assert str(err.value).startswith(f"{bad.doc['kind']} ")


def test_invalid_catalogue_covers_at_least_eight_distinct_fields() -> None:
    assert len({i.field for i in INVALID}) >= 8


@pytest.mark.parametrize(
    ("doc", "field", "fragment"),
    [
        (with_change(cluster_doc(), "apiVersion", "tenbin.io/v1"), "apiVersion", "tenbin.io/v1alpha1"),
        (with_change(cluster_doc(), "kind", "GPUPool"), "kind", "unknown kind"),
        (with_change(workload_doc(), "spec.gpu.count", "8"), "spec.gpu.count", "valid integer"),
        (with_change(workload_doc(), "spec.gpu.count", True), "spec.gpu.count", "valid integer"),
        (with_change(cluster_doc(), "spec.cordoned", "yes"), "spec.cordoned", "valid boolean"),
        (with_change(cluster_doc(), "spec.jurisdiction", "JPN"), "spec.jurisdiction", "at most 2"),
        (with_change(cluster_doc(), "spec.gpus", []), "spec.gpus", "at least 1"),
        (with_change(workload_doc(), "spec.gpu.models", ["H100-80GB", "H100-80GB"]), "spec.gpu.models",
         "duplicate"),
        (with_change(cluster_doc(gpus=[("H100-80GB", 1, 1, "JPY")] * 2), "spec.tier", "OnPrem"), "spec.gpus",
         "duplicate model"),
        (with_change(workload_doc(), "metadata.name", DELETE), "metadata.name", "required"),
        (with_change(policy_doc(rates={"JPY": 2.0}), "spec.baseCurrency", "JPY"), "spec", "1.0"),
        (with_change(policy_doc(), "spec.exchangeRates", {"USD": 0}), "spec.exchangeRates.USD", "greater than 0"),
    ],
)
def test_more_invalid_documents(doc: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ObjectError) as err:
        parse_object(doc)
    assert err.value.field_path == field
    assert fragment in err.value.message


def test_defaults_follow_the_contract() -> None:
    w = parse_object(workload_doc())
    assert isinstance(w, AIWorkload)
    assert w.spec.replicas == 1
    assert w.spec.residency.data_classification is DataClassification.INTERNAL
    assert w.spec.residency.jurisdictions == [] and w.spec.gpu.models == []
    assert w.spec.migration.policy is MigrationPolicy.ON_FAILURE
    assert w.key == "default/w1"
    assert parse_object(workload_doc(namespace=None)).key == "default/w1"  # type: ignore[union-attr]
    c = parse_object(cluster_doc())
    assert isinstance(c, GPUCluster) and c.spec.cordoned is False and c.status is None
    p = parse_object(policy_doc())
    assert isinstance(p, PlacementPolicy)
    assert p.spec.weights.price == p.spec.weights.availability == 0.5


def test_embedded_template_is_kept_whole() -> None:
    doc = workload_doc()
    w = parse_object(doc)
    assert isinstance(w, AIWorkload)
    assert w.spec.template.as_dict() == doc["spec"]["template"]


def test_status_models_accept_what_the_operator_writes() -> None:
    s = GPUClusterStatus.model_validate({
        "phase": "Ready", "freeGPUs": 12, "lastSyncTime": "2025-01-01T00:00:00Z",
        "gpus": [{"model": "H100-80GB", "capacity": 16, "allocatable": 16, "allocated": 4, "free": 12}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Synced"}],
    })
    assert s.gpus is not None and s.gpus[0].free == 12
    a = AIWorkloadStatus.model_validate({
        "phase": "Migrating",
        "placement": {"cluster": "sakura", "tier": "SovereignCloud", "jurisdiction": "JP", "gpuModel": "H100-80GB",
                      "pricePerGPUHour": 480, "currency": "JPY", "score": 87.5, "gpus": 16},
        "message": "2/7 clusters fit",
        "history": [{"time": "2025-01-01T00:00:00Z", "event": "Scheduled", "cluster": "sakura"}],
        "migration": {"from": "sakura", "to": "kddi", "reason": "Cost", "message": "cheaper by 25%",
                      "phase": "StartingTarget",
                      "startedAt": "2025-01-01T00:00:00Z", "deadline": "2025-01-01T00:10:00Z"},
    })
    assert a.migration is not None and a.migration.from_ == "sakura"
    assert a.model_dump(by_alias=True, exclude_none=True)["migration"]["from"] == "sakura"
    with pytest.raises(ValueError):
        AIWorkloadStatus.model_validate({"history": [{"time": "2025-01-01T00:00:00Z", "event": "x"}] * 21})


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ],
)
def test_label_selector_semantics(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(labels) is expected


@pytest.mark.parametrize(
    ("loc", "path"),
    [(("spec", "gpus", 0, "count"), "spec.gpus[0].count"), (("spec", "exchangeRates", "usd", "[key]"),
     "spec.exchangeRates.usd"), (("metadata",), "metadata")],
)
def test_field_path(loc: tuple[int | str, ...], path: str) -> None:
    assert field_path(loc) == path
