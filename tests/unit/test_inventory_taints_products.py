"""Inventory from Node objects: raw product strings in any spelling, and taints as kube-scheduler sees them."""

from __future__ import annotations

from typing import Any

import pytest

from tenbin.gpumodels import known_products
from tenbin.inventory.model import (
    GPU_TOLERATION,
    ClusterInventory,
    NodeGPUs,
    Taint,
    inventory_from_objects,
    tolerates,
    toleration_tolerates,
    untolerated_taint,
)

TABLE = sorted(known_products().items())


def variants(product: str) -> list[str]:
    """The table's spelling and case variants of it (a label value keeps its case; the inventory must not)."""
    return sorted({product, product.lower(), product.upper(), product.swapcase(), product.title()})


def node(name: str, product: str | None, gpus: int = 8, taints: list[dict[str, str]] | None = None,
         **spec: Any) -> dict[str, Any]:
    labels = {"nvidia.com/gpu.product": product} if product is not None else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {**({"taints": taints} if taints is not None else {}), **spec},
        "status": {"capacity": {"nvidia.com/gpu": str(gpus)}, "allocatable": {"nvidia.com/gpu": str(gpus)},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod(node_name: str, gpus: int, phase: str = "Running") -> dict[str, Any]:
    return {"spec": {"nodeName": node_name, "containers": [{"resources": {"limits": {"nvidia.com/gpu": gpus}}}]},
            "status": {"phase": phase}}


# ------------------------------------------------------------------------------------------- product strings


@pytest.mark.parametrize(("product", "model"), TABLE)
def test_every_table_product_in_every_case_is_counted_as_its_model_and_kept_raw(product: str, model: str) -> None:
    spellings = variants(product)
    inv = inventory_from_objects([node(f"n{i}", p) for i, p in enumerate(spellings)], [])
    assert [(n.model, n.product) for n in inv.nodes] == [(model, p) for p in spellings]
    assert inv.free() == {model: 8 * len(spellings)}
    assert inv.products(model) == tuple(sorted(spellings))


def test_products_are_per_model_sorted_unique_and_skip_nodes_without_a_label() -> None:
    inv = inventory_from_objects([
        node("a", "nvidia-h100-80gb-hbm3"), node("b", "NVIDIA-H100-80GB-HBM3"), node("c", "nvidia-h100-80gb-hbm3"),
        node("d", "NVIDIA-L4"), node("e", None),
    ], [])
    assert inv.products("H100-80GB") == ("NVIDIA-H100-80GB-HBM3", "nvidia-h100-80gb-hbm3")
    assert inv.products("L4-24GB") == ("NVIDIA-L4",)
    assert inv.products("unknown") == ()  # a node without the label has nothing to pin to
    assert inv.products("A100-80GB") == ()
    assert {n.node: n.product for n in inv.nodes}["e"] == ""


# ------------------------------------------------------------------------------------------- toleration rules

NS, PNS, NE = "NoSchedule", "PreferNoSchedule", "NoExecute"


def tol(key: str = "", operator: str = "", value: str = "", effect: str = "") -> dict[str, str]:
    return {k: v for k, v in {"key": key, "operator": operator, "value": value, "effect": effect}.items() if v}


# (toleration, taint, tolerated) - the rules of core/v1 Toleration.ToleratesTaint (k8s.io/api v0.35)
TOLERATION_TABLE: list[tuple[dict[str, str], Taint, bool]] = [
    (tol("foo", "Exists", effect=NS), Taint("foo", "", NS), True),             # Exists, taint without value
    (tol("foo", "Exists", effect=NS), Taint("foo", "bar", NS), True),          # Exists matches any value
    (tol("foo", "Exists", "ignored", NS), Taint("foo", "bar", NS), True),      # Exists ignores its value
    (tol("", "Exists", effect=NS), Taint("foo", "bar", NS), True),             # empty key + Exists: every key
    (tol("", "Exists"), Taint("foo", "bar", NE), True),                        # ... and every effect
    (tol("", "Exists", effect=NS), Taint("foo", "bar", NE), False),            # the effect still has to match
    (tol("foo", "Equal", "bar", NS), Taint("foo", "bar", NS), True),
    (tol("foo", "", "bar", NS), Taint("foo", "bar", NS), True),                # no operator means Equal
    (tol("foo", "Equal", "value1", NS), Taint("foo", "value2", NS), False),    # different values
    (tol("foo", "Equal", "", NS), Taint("foo", "bar", NS), False),             # Equal with no value: only ""
    (tol("foo", "Equal", "", NS), Taint("foo", "", NS), True),
    (tol("foo", "Equal", "bar", NS), Taint("foo", "bar", NE), False),          # different effects
    (tol("foo", "Equal", "bar"), Taint("foo", "bar", NE), True),               # empty effect: every effect
    (tol("foo", "Equal", "bar"), Taint("foo", "bar", PNS), True),
    (tol("foo", "Exists", effect=NS), Taint("bar", "", NS), False),            # different keys
    (tol("foo", "Equal", "bar", NS), Taint("Foo", "bar", NS), False),          # keys are case-sensitive
    (tol("foo", "Equal", "bar", NS), Taint("foo", "Bar", NS), False),          # values too
    (tol("foo", "exists", effect=NS), Taint("foo", "", NS), False),            # an unknown operator: nothing
    (tol("foo", "Gt", "100", NS), Taint("foo", "200", NS), False),             # Lt/Gt: gate off by default
    (tol("foo", "Lt", "300", NS), Taint("foo", "200", NS), False),
]


@pytest.mark.parametrize(("toleration", "taint", "want"), TOLERATION_TABLE)
def test_toleration_matching_follows_kubernetes(toleration: dict[str, str], taint: Taint, want: bool) -> None:
    assert toleration_tolerates(toleration, taint) is want
    # the same taint as the API writes it
    raw = {"key": taint.key, "effect": taint.effect, **({"value": taint.value} if taint.value else {})}
    assert toleration_tolerates(toleration, raw) is want


@pytest.mark.parametrize(("op", "want_value", "taint_value", "want"), [
    ("Gt", "750", "950", True), ("Gt", "950", "800", False), ("Gt", "950", "950", False),
    ("Lt", "950", "800", True), ("Lt", "800", "950", False), ("Lt", "0", "0", False),
    ("Gt", "-100", "-50", True), ("Lt", "0", "-9223372036854775808", True),
    ("Gt", "0", "9223372036854775807", True), ("Gt", "0", "9223372036854775808", False),  # past int64
    ("Gt", "950", "high", False), ("Gt", "0100", "200", False), ("Gt", "+100", "200", False),
    ("Gt", "100.5", "200", False), ("Gt", "-", "100", False), ("Gt", "", "100", False),
    ("Gt", "100", "0200", False), ("Lt", "100", " 50", False), ("Gt", "-0", "5", False),
])
def test_numeric_operators_with_the_alpha_gate(op: str, want_value: str, taint_value: str, want: bool) -> None:
    t = Taint("sla", taint_value, NS)
    assert toleration_tolerates(tol("sla", op, want_value, NS), t, comparison_operators=True) is want
    assert toleration_tolerates(tol("sla", op, want_value, NS), t) is False


@pytest.mark.parametrize(("tolerations", "taints", "want"), [
    ([], [], True),
    ([], [Taint("a", "", PNS)], True),                                   # PreferNoSchedule only scores
    ([], [Taint("a", "", NS)], False),
    ([], [Taint("a", "", NE)], False),
    ([tol("a", "Exists", effect=NS)], [Taint("a", "", NS), Taint("b", "", NE)], False),  # every taint counts
    ([tol("a", "Exists", effect=NS), tol("b", "Exists")], [Taint("a", "", NS), Taint("b", "", NE)], True),
    ([tol("", "Exists")], [Taint("a", "1", NS), Taint("b", "2", NE)], True),
    ([tol("a", "Exists", effect=NS)], [Taint("a", "", NE)], False),
])
def test_a_pod_passes_a_node_when_every_blocking_taint_is_tolerated(
        tolerations: list[dict[str, str]], taints: list[Taint], want: bool) -> None:
    assert tolerates(tolerations, taints) is want
    blocker = untolerated_taint(tolerations, taints)
    assert (blocker is None) is want
    if blocker is not None:
        assert blocker.blocks and blocker in taints


# ------------------------------------------------------------------------------------------- taints in inventory


def test_taints_are_parsed_from_nodes() -> None:
    inv = inventory_from_objects([node("a", "NVIDIA-L4", taints=[
        {"key": "nvidia.com/gpu", "value": "present", "effect": NS},
        {"key": "dedicated", "effect": NE, "timeAdded": "2026-01-01T00:00:00Z"},
    ])], [])
    (n,) = inv.nodes
    assert n.taints == (Taint("nvidia.com/gpu", "present", NS), Taint("dedicated", "", NE))


FLEET_TAINTS: dict[str, list[dict[str, str]] | None] = {
    "plain": None,
    "gpu-only": [{"key": "nvidia.com/gpu", "value": "present", "effect": NS}],  # GPU operators' convention
    "gpu-noexec": [{"key": "nvidia.com/gpu", "effect": NE}],                    # not what the plugin tolerates
    "dedicated": [{"key": "dedicated", "value": "team-a", "effect": NS}],
    "prefer": [{"key": "dedicated", "value": "team-a", "effect": PNS}],
}


@pytest.fixture
def tainted() -> ClusterInventory:
    nodes = [node(name, "NVIDIA-L4", 4, taints) for name, taints in FLEET_TAINTS.items()]
    return inventory_from_objects(nodes, [pod("plain", 1), pod("dedicated", 1)])


def test_cluster_free_leaves_out_gpus_a_tenbin_pod_cannot_be_scheduled_on(tainted: ClusterInventory) -> None:
    by = {n.node: n for n in tainted.nodes}
    assert {k: n.free for k, n in by.items()} == {"plain": 3, "gpu-only": 4, "gpu-noexec": 0, "dedicated": 0,
                                                  "prefer": 4}
    inv = tainted.by_model()["L4-24GB"]
    assert (inv.capacity, inv.allocatable, inv.allocated, inv.free, inv.tainted) == (20, 20, 2, 11, 8)
    assert tainted.free() == {"L4-24GB": 11}


def test_free_for_a_template_with_its_own_tolerations(tainted: ClusterInventory) -> None:
    by = {n.node: n for n in tainted.nodes}
    team_a = [tol("dedicated", "Equal", "team-a", NS)]
    assert by["dedicated"].free_for(team_a) == 3
    assert by["dedicated"].free_for([tol("dedicated", "Equal", "team-b", NS)]) == 0
    assert by["gpu-noexec"].free_for([tol("nvidia.com/gpu", "Exists", effect=NE)]) == 4
    assert by["gpu-only"].free_for([]) == 4  # Tenbin's own toleration always counts
    assert tainted.free_for(team_a) == {"L4-24GB": 14}
    assert tainted.free_for([tol(operator="Exists")]) == {"L4-24GB": 18}
    assert tainted.free_for() == tainted.free()


def test_taints_do_not_hide_unready_or_cordoned_nodes() -> None:
    n = NodeGPUs("a", "L4-24GB", 4, 4, ready=False)
    assert n.free_for([tol(operator="Exists")]) == 0
    cordoned = inventory_from_objects([node("c", "NVIDIA-L4", 4, unschedulable=True)], [])
    assert cordoned.free() == {"L4-24GB": 0}


def test_the_toleration_inventory_assumes_is_the_one_the_admission_plugin_adds() -> None:
    # plugin/pkg/admission/extendedresourcetoleration: key = the resource, Exists, NoSchedule
    assert dict(GPU_TOLERATION) == {"key": "nvidia.com/gpu", "operator": "Exists", "effect": NS}
