"""`tenbin explain` never shows more free GPUs than a cluster has (issue 12, class 8a).

The workload's own GPUs are counted as free again only as far as the member shows them held by its
bound pods, never beyond the hub's allocated count and never beyond the model's usable GPUs.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from helpers import cluster_doc, workload_doc
from tenbin.api import AIWorkload, GPUCluster
from tenbin.explain import explain_rows, own_gpus_free_again

MODEL = "H100-80GB"


def member(name: str = "c1", *, allocatable: int = 8, allocated: int = 0, inventory: bool = True) -> GPUCluster:
    doc: dict[str, Any] = cluster_doc(name, gpus=[(MODEL, allocatable, 480, "JPY")])
    if inventory:
        doc["status"] = {"phase": "Ready", "gpus": [{
            "model": MODEL, "capacity": allocatable, "allocatable": allocatable, "allocated": allocated,
            "free": max(0, allocatable - allocated)}]}
    return GPUCluster.model_validate(doc)


def placed(count: int, replicas: int = 1, *, cluster: str = "c1", phase: str = "Scheduled") -> AIWorkload:
    doc = workload_doc("w", "team", count=count, replicas=replicas)
    doc["metadata"]["uid"] = "0b7a2f0e-0000-4000-8000-000000000001"
    doc["status"] = {"phase": phase, "placement": {"cluster": cluster, "gpuModel": MODEL,
                                                   "gpus": count * replicas}}
    return AIWorkload.model_validate(doc)


def free_on(rows: list[dict[str, Any]], cluster: str = "c1") -> int:
    [row] = [r for r in rows if r["cluster"] == cluster and r["model"] == MODEL]
    return int(row["free"])


def test_pending_pods_hold_nothing_so_nothing_is_added_back() -> None:
    # placed (8 GPUs reserved by the operator) but no pod bound yet: the member shows all 8 free
    rows, _ = explain_rows(placed(8), [member(allocated=0)], None)
    assert free_on(rows) == 8  # before the fix: 16 on an 8-GPU cluster


def test_bound_pods_are_added_back() -> None:
    rows, decision = explain_rows(placed(4), [member(allocated=4)], None, own_bound=4)
    assert free_on(rows) == 8
    assert decision.chosen is not None and decision.chosen.cluster == "c1"


def test_partly_bound_gang_adds_back_only_the_bound_part() -> None:
    # 2 x 4 GPUs placed, one pod bound (4), the other pending: 4 of 8 allocated in the member
    rows, _ = explain_rows(placed(4, replicas=2), [member(allocated=4)], None, own_bound=4)
    assert free_on(rows) == 8


def test_never_more_than_the_hub_counts_allocated() -> None:
    # the member read says 8 bound, the hub's (older) inventory counts 2 allocated: add back 2
    w = placed(8)
    assert own_gpus_free_again(w, [member(allocated=2)], 8) == 2
    rows, _ = explain_rows(w, [member(allocated=2)], None, own_bound=8)
    assert free_on(rows) == 8


def test_without_an_inventory_nothing_is_added_back() -> None:
    # no status.gpus: free is the spec's count, from which nothing was ever taken
    rows, _ = explain_rows(placed(4), [member(inventory=False)], None, own_bound=4)
    assert free_on(rows) == 8


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_finished_workload_holds_nothing(phase: str) -> None:
    assert own_gpus_free_again(placed(4, phase=phase), [member(allocated=4)], 4) == 0


def test_another_clusters_placement_does_not_change_this_one() -> None:
    rows, _ = explain_rows(placed(4, cluster="c2"), [member("c1", allocated=4), member("c2", allocated=0)],
                           None, own_bound=0)
    assert free_on(rows, "c1") == 4 and free_on(rows, "c2") == 8


@pytest.mark.parametrize(("allocatable", "allocated", "count", "replicas", "bound"), [
    combo for combo in itertools.product([0, 1, 4, 8], [0, 1, 4, 8, 12], [1, 4, 8], [1, 2], [0, 1, 4, 8, 16])
    if combo[1] <= combo[0] + 4  # a member may briefly show more allocated than usable (a node went away)
])
def test_free_never_exceeds_the_usable_gpus(allocatable: int, allocated: int, count: int, replicas: int,
                                            bound: int) -> None:
    c = member(allocatable=allocatable, allocated=allocated)
    assert c.status is not None and c.status.gpus is not None
    observed_free = c.status.gpus[0].free
    rows, _ = explain_rows(placed(count, replicas), [c], None, own_bound=bound)
    free = free_on(rows)
    assert observed_free <= free <= max(allocatable, observed_free)
    assert free - observed_free <= min(bound, count * replicas)
