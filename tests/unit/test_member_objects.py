"""The object Tenbin applies in a member: labelled back to the AIWorkload, its pods pinned to the chosen model."""

from __future__ import annotations

import copy
from typing import Any

from tenbin.gpumodels import canonical_model
from tenbin.services.member_objects import member_object

WORKLOAD: dict[str, Any] = {
    "metadata": {"name": "train", "namespace": "research", "uid": "u-1"},
    "spec": {"template": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {
        "containers": [{"name": "main", "image": "x", "resources": {"limits": {"nvidia.com/gpu": 8}}}]}}}}},
}


def _terms(obj: dict[str, Any]) -> list[dict[str, Any]]:
    aff = obj["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    return list(aff["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"])


def test_pods_are_pinned_to_the_chosen_model_and_labelled() -> None:
    obj = member_object(WORKLOAD, "sakura", "H100-80GB")
    (term,) = _terms(obj)
    (req,) = term["matchExpressions"]
    assert req["key"] == "nvidia.com/gpu.product" and req["operator"] == "In"
    assert {canonical_model(v) for v in req["values"]} == {"H100-80GB"}
    assert obj["metadata"]["namespace"] == "research" and obj["metadata"]["labels"]["tenbin.io/workload-uid"] == "u-1"
    assert obj["spec"]["template"]["metadata"]["labels"]["tenbin.io/workload-uid"] == "u-1"
    assert obj["metadata"]["annotations"]["tenbin.io/cluster"] == "sakura"


def test_the_model_is_anded_with_every_term_of_the_pods_own_affinity() -> None:
    w = copy.deepcopy(WORKLOAD)
    w["spec"]["template"]["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]}]},
        ]}}}
    terms = _terms(member_object(w, "sakura", "H200-141GB"))
    assert len(terms) == 2
    for t in terms:
        products = [e for e in t["matchExpressions"] if e["key"] == "nvidia.com/gpu.product"]
        assert len(products) == 1 and {canonical_model(v) for v in products[0]["values"]} == {"H200-141GB"}
    assert {"key": "zone", "operator": "In", "values": ["a"]} in terms[0]["matchExpressions"]
    # the workload body itself is left untouched
    assert "nodeSelectorTerms" in str(w) and "H200" not in str(w)


def test_without_a_model_nothing_is_pinned() -> None:
    assert "affinity" not in member_object(WORKLOAD, "sakura")["spec"]["template"]["spec"]
