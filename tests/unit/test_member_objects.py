"""The object Tenbin applies in a member: labelled back to the AIWorkload, its pods pinned to the chosen model."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tenbin.agent.gpus import gfd_product
from tenbin.gpumodels import canonical_model, known_products, product_labels
from tenbin.inventory.model import TENBIN_TOLERATIONS, NodeGPUs, Taint, inventory_from_objects, tolerates
from tenbin.services.member_objects import member_object, pin_gpu_model

PRODUCT = "nvidia.com/gpu.product"

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


# ---------------------------------------------------------------- the pin matches the strings Nodes really carry


def _matches(pod_spec: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a node with `labels` satisfies the pod's required node affinity (matchExpressions In/NotIn/
    Exists, exact strings, as kube-scheduler compares them; terms ORed, expressions ANDed)."""
    req = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]

    def ok(e: dict[str, Any]) -> bool:
        if e["operator"] == "In":
            return labels.get(e["key"]) in e["values"]
        if e["operator"] == "NotIn":
            return labels.get(e["key"]) not in e["values"]
        return e["key"] in labels

    return any(all(ok(e) for e in t["matchExpressions"]) for t in req["nodeSelectorTerms"])


def _variants(product: str) -> list[str]:
    return sorted({product, product.lower(), product.upper(), product.swapcase(), product.title()})


@pytest.mark.parametrize(("product", "model"), sorted(known_products().items()))
def test_the_pin_reaches_every_table_product_in_every_case_the_inventory_counts(product: str, model: str) -> None:
    nodes = [{"metadata": {"name": f"n{i}", "labels": {PRODUCT: p}},
              "status": {"capacity": {"nvidia.com/gpu": "8"}, "allocatable": {"nvidia.com/gpu": "8"},
                         "conditions": [{"type": "Ready", "status": "True"}]}}
             for i, p in enumerate(_variants(product))]
    inv = inventory_from_objects(nodes, [])
    # as the controller calls it: the observed strings of the member's nodes of the chosen model
    spec = member_object(WORKLOAD, "sakura", model, inv.products(model))["spec"]["template"]["spec"]
    for n in inv.nodes:
        assert n.model == model and n.free == 8
        assert _matches(spec, {PRODUCT: n.product}), n.product
    # the table alone reaches the table's own spelling
    table_only = member_object(WORKLOAD, "sakura", model)["spec"]["template"]["spec"]
    assert _matches(table_only, {PRODUCT: product})
    # and never a node of another model
    for other, other_model in known_products().items():
        if other_model != model:
            assert not _matches(spec, {PRODUCT: other}), other


# NVML device names of the table's models (as nvidia-smi prints them); GFD and Tenbin's agent label a node
# with the name's spaces turned into dashes, case kept.
NVML_NAMES = ["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA B200",
              "NVIDIA GH200 480GB", "NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "NVIDIA A100 80GB PCIe",
              "NVIDIA A100-PCIE-40GB", "NVIDIA L40S", "NVIDIA L4", "NVIDIA A10G", "Tesla T4"]


@pytest.mark.parametrize("name", NVML_NAMES)
def test_the_table_alone_reaches_what_gfd_and_the_agent_write(name: str) -> None:
    product = gfd_product(name)
    model = canonical_model(product)
    assert model in known_products().values()
    spec = member_object(WORKLOAD, "sakura", model)["spec"]["template"]["spec"]
    assert _matches(spec, {PRODUCT: product})


def test_observed_products_of_another_model_never_widen_the_pin() -> None:
    spec: dict[str, Any] = {}
    pin_gpu_model(spec, "H100-80GB", ["nvidia-h100-80gb-hbm3", "NVIDIA-L4", "", "NVIDIA-H100-80GB-HBM3-SHARED"])
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (req,) = term["matchExpressions"]
    assert req["values"] == sorted({*product_labels("H100-80GB"), "nvidia-h100-80gb-hbm3"})
    # time-sliced GPUs (GFD appends -SHARED) are not whole GPUs of the model: neither counted nor pinned
    assert canonical_model("NVIDIA-H100-80GB-HBM3-SHARED") != "H100-80GB"


def test_an_unknown_model_is_pinned_to_its_observed_spelling() -> None:
    inv = inventory_from_objects([{"metadata": {"name": "x", "labels": {PRODUCT: "nvidia-RTX-PRO-6000"}},
                                   "status": {"capacity": {"nvidia.com/gpu": "2"}}}], [])
    (n,) = inv.nodes
    spec: dict[str, Any] = {}
    pin_gpu_model(spec, n.model, inv.products(n.model))
    assert _matches(spec, {PRODUCT: "nvidia-RTX-PRO-6000"})


# ---------------------------------------------------------------- tolerations: what the inventory assumes


def test_gpu_pods_tolerate_the_gpu_taint_the_inventory_counts() -> None:
    spec = member_object(WORKLOAD, "sakura", "H100-80GB")["spec"]["template"]["spec"]
    gpu_only = NodeGPUs("n", "H100-80GB", 8, 8, taints=(Taint("nvidia.com/gpu", "present", "NoSchedule"),))
    assert gpu_only.free == 8
    assert tolerates(spec["tolerations"], gpu_only.taints)
    assert spec["tolerations"] == [dict(t) for t in TENBIN_TOLERATIONS]
    # the member object of a NoExecute-tainted node's pod would not pass, and the inventory agrees
    noexec = NodeGPUs("n", "H100-80GB", 8, 8, taints=(Taint("nvidia.com/gpu", "", "NoExecute"),))
    assert noexec.free == 0 and not tolerates(spec["tolerations"], noexec.taints)


def test_the_templates_own_tolerations_are_kept_and_not_duplicated() -> None:
    w = copy.deepcopy(WORKLOAD)
    own = [{"key": "dedicated", "operator": "Equal", "value": "team-a", "effect": "NoSchedule"},
           {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    w["spec"]["template"]["spec"]["template"]["spec"]["tolerations"] = copy.deepcopy(own)
    spec = member_object(w, "sakura", "H100-80GB")["spec"]["template"]["spec"]
    assert spec["tolerations"] == own
    assert w["spec"]["template"]["spec"]["template"]["spec"]["tolerations"] == own  # body untouched


def test_a_template_without_gpus_gets_no_toleration() -> None:
    w = copy.deepcopy(WORKLOAD)
    w["spec"]["template"]["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    assert "tolerations" not in member_object(w, "sakura", "H100-80GB")["spec"]["template"]["spec"]
