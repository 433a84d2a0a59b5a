"""GPU product strings and taints on a real member: kube-apiserver, kube-scheduler, controller-manager, KWOK.

The inventory maps product labels to models case-insensitively and now sees taints; the pods Tenbin applies
must land exactly where the inventory counts free GPUs. Extra KWOK nodes are added to one member (with the
table's product strings in other cases, and with taints) and removed again afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest

from tenbin.gpumodels import known_products
from tenbin.inventory.model import ClusterInventory, inventory_from_objects
from tenbin.services.member_objects import member_object
from tenbin.testbed.binaries import TestbedError
from tenbin.testbed.fleet import FAKE_NODE_ANNOTATION, Fleet, wait_until

MEMBER = "t-hyperscaler-us"
RUN_LABEL = "tenbin.io/test-gpu-products"


class Member:
    """One member through the kubernetes client, with the nodes this module added (removed on close)."""

    def __init__(self, fleet: Fleet, name: str) -> None:
        from kubernetes import client

        self.name = name
        self.api = fleet.api_client(name)
        self.core: Any = client.CoreV1Api(self.api)
        self.apps: Any = client.AppsV1Api(self.api)
        self.run = uuid.uuid4().hex[:6]
        self.ns = f"gp-{self.run}"

    def as_dict(self, obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return out

    def add_node(self, suffix: str, product: str, gpus: int, taints: list[dict[str, str]] | None = None) -> str:
        name = f"gp-{self.run}-{suffix}"
        resources = {"cpu": "96", "memory": "1024Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
        self.core.create_node({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {FAKE_NODE_ANNOTATION: "fake"}, "labels": {
                "type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": str(gpus), RUN_LABEL: self.run}},
            "spec": {"taints": taints or []},
            "status": {"capacity": dict(resources), "allocatable": dict(resources)},
        })
        return name

    def inventory(self) -> ClusterInventory:
        nodes = [self.as_dict(n) for n in self.core.list_node().items]
        pods = [self.as_dict(p) for p in self.core.list_pod_for_all_namespaces().items]
        return inventory_from_objects(nodes, pods)

    def pods(self) -> list[dict[str, Any]]:
        return [self.as_dict(p) for p in self.core.list_namespaced_pod(self.ns).items]

    def close(self) -> None:
        from kubernetes.client.exceptions import ApiException

        with contextlib.suppress(ApiException):
            self.core.delete_namespace(self.ns)
        wait_until(f"pods of {self.ns} gone", lambda: not self.pods(), timeout=120)
        self.core.delete_collection_node(label_selector=f"{RUN_LABEL}={self.run}")
        wait_until("added nodes gone",
                   lambda: not self.core.list_node(label_selector=f"{RUN_LABEL}={self.run}").items, timeout=60)
        self.api.close()


@pytest.fixture
def member(fleet: Fleet) -> Iterator[Member]:
    from kubernetes.client.exceptions import ApiException

    m = Member(fleet, MEMBER)
    m.core.create_namespace({"metadata": {"name": m.ns}})

    def has_sa() -> bool:
        try:
            m.core.read_namespaced_service_account("default", m.ns)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    try:
        wait_until(f"{m.ns}: default ServiceAccount", has_sa, timeout=60)
        yield m
    finally:
        m.close()


def workload(name: str, gpus: int, *, replicas: int = 1, node: str | None = None,
             tolerations: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """An AIWorkload body whose template is a Deployment (pods that keep running on KWOK)."""
    pod_spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox",
                                                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}
    if node:
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {"metadata": {"name": name, "namespace": "unused", "uid": f"uid-{name}"},
            "spec": {"template": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                                  "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                                           "template": {"metadata": {"labels": {"app": name}},
                                                        "spec": pod_spec}}}}}


def apply_deployment(m: Member, body: dict[str, Any], model: str) -> None:
    """The Deployment Tenbin applies, pinned as the controller pins it: observed product strings included."""
    obj = member_object(body, m.name, model, m.inventory().products(model))
    obj["metadata"]["namespace"] = m.ns
    m.apps.create_namespaced_deployment(m.ns, obj)


def create_pod(m: Member, body: dict[str, Any], model: str) -> str:
    """A bare pod from the pod template of the Deployment Tenbin would apply (quicker than a Deployment each)."""
    obj = member_object(body, m.name, model, m.inventory().products(model))
    tmpl = obj["spec"]["template"]
    name = str(body["metadata"]["name"])
    m.core.create_namespaced_pod(m.ns, {"apiVersion": "v1", "kind": "Pod",
                                        "metadata": {"name": name, "labels": tmpl["metadata"]["labels"]},
                                        "spec": tmpl["spec"]})
    return name


def unschedulable(p: dict[str, Any]) -> bool:
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
               for c in (p.get("status") or {}).get("conditions") or [])


def await_nodes(m: Member, nodes: Iterable[str]) -> ClusterInventory:
    """Wait until the added nodes are Ready and the node lifecycle controller has lifted its
    ``node.kubernetes.io/not-ready`` taint (the inventory sees it too); then the member's inventory."""
    want = set(nodes)

    def settled() -> bool:
        by = {n.node: n for n in m.inventory().nodes}
        return all(n in by and by[n].ready and not any(t.key.startswith("node.kubernetes.io/") for t in by[n].taints)
                   for n in want)

    wait_until("added nodes Ready, without the node lifecycle controller's taints", settled, timeout=120)
    return m.inventory()


def await_bound(m: Member, pods: Mapping[str, str], what: str, labels: Mapping[str, str]) -> None:
    """Wait until every pod (name -> node) is bound to its node; on timeout, name the nodes (and their
    product labels, `labels`) whose pods were left behind."""
    def bound() -> dict[str, str | None]:
        got = {p["metadata"]["name"]: (p.get("spec") or {}).get("nodeName") for p in m.pods()}
        return {n: got.get(n) for n in pods}

    try:
        wait_until(what, lambda: bound() == dict(pods), timeout=120)
    except TestbedError:
        left = {n: node for n, node in bound().items() if node != pods[n]}
        pytest.fail(f"{what}: {len(left)} of {len(pods)} pods not bound where they can only go: "
                    f"{sorted(labels[pods[n]] for n in left)}")


def test_every_table_product_in_another_case_is_counted_and_reached_by_the_pin(member: Member) -> None:
    # one 1-GPU node per spelling: each table product as the table spells it, and with its case swapped
    table = {p.upper(): model for p, model in known_products().items()}
    spellings = sorted({v for p in known_products() for v in (p, p.swapcase())})
    nodes = {member.add_node(str(i), s, 1): s for i, s in enumerate(spellings)}
    inv = await_nodes(member, nodes)

    by = {n.node: n for n in inv.nodes}
    for name, spelling in nodes.items():
        assert (by[name].product, by[name].model, by[name].free) == (spelling, table[spelling.upper()], 1)

    # a pod pinned to the node's model and, by its own nodeSelector, to the node itself: only the pin can
    # keep it off
    pods = {create_pod(member, workload(f"p{i}", 1, node=name), by[name].model): name
            for i, name in enumerate(nodes)}
    await_bound(member, pods, "every pod bound to its node by kube-scheduler", nodes)
    after = {n.node: n for n in member.inventory().nodes}
    assert all((after[n].free, after[n].allocated) == (0, 1) for n in nodes)


def test_tainted_nodes_are_counted_as_the_scheduler_treats_them(member: Member) -> None:
    model = "L4-24GB"  # no fixture member has it: only the nodes added here
    plain = member.add_node("plain", "nvidia-l4", 2)
    gpu_only = member.add_node("gpu", "NVIDIA-L4", 2, [{"key": "nvidia.com/gpu", "value": "present",
                                                          "effect": "NoSchedule"}])
    dedicated = member.add_node("dedicated", "NVIDIA-L4", 8, [{"key": "tenbin.io/test-dedicated", "value": "other",
                                                                "effect": "NoSchedule"}])
    noexec = member.add_node("noexec", "NVIDIA-L4", 8, [{"key": "nvidia.com/gpu", "effect": "NoExecute"}])
    inv = await_nodes(member, [plain, gpu_only, dedicated, noexec])

    # the inventory: free only where a plain Tenbin pod can go; the tainted GPUs are said
    by = {n.node: n for n in inv.nodes}
    assert {n: by[n].free for n in (plain, gpu_only, dedicated, noexec)} == {plain: 2, gpu_only: 2, dedicated: 0,
                                                                           noexec: 0}
    summary = inv.by_model()[model]
    assert (summary.capacity, summary.allocatable, summary.free, summary.tainted) == (20, 20, 4, 16)
    assert inv.free()[model] == 4

    # one more replica than the inventory says is free: exactly the free ones are placed, the last waits
    apply_deployment(member, workload("plain", 1, replicas=inv.free()[model] + 1), model)

    def settled() -> bool:
        pods = [p for p in member.pods() if p["metadata"]["labels"].get("app") == "plain"]
        bound = [p for p in pods if (p.get("spec") or {}).get("nodeName")]
        return len(pods) == 5 and len(bound) == 4 and sum(unschedulable(p) for p in pods) == 1

    wait_until("4 pods bound and 1 unschedulable", settled, timeout=120)
    on = sorted(p["spec"]["nodeName"] for p in member.pods() if (p.get("spec") or {}).get("nodeName"))
    assert on == sorted([plain, plain, gpu_only, gpu_only])
    assert member.inventory().free()[model] == 0

    # a template that tolerates the dedicated taint: free_for says where it fits, and the scheduler agrees
    own = [{"key": "tenbin.io/test-dedicated", "operator": "Equal", "value": "other", "effect": "NoSchedule"}]
    by = {n.node: n for n in member.inventory().nodes}
    assert by[dedicated].free_for(own) == 8 and by[noexec].free_for(own) == 0
    fits = sum(n.free_for(own) for n in by.values() if n.model == model)
    assert fits == 8
    apply_deployment(member, workload("team", 1, replicas=fits, tolerations=own), model)

    def team_placed() -> bool:
        pods = [p for p in member.pods() if p["metadata"]["labels"].get("app") == "team"]
        return len(pods) == fits and all((p.get("spec") or {}).get("nodeName") for p in pods)

    wait_until(f"{fits} tolerating pods bound", team_placed, timeout=120)
    team_on = {p["spec"]["nodeName"] for p in member.pods() if p["metadata"]["labels"].get("app") == "team"}
    assert team_on == {dedicated}
    # the NoExecute-tainted node never got a pod, and the untolerating replica still waits
    assert all(p["spec"].get("nodeName") != noexec for p in member.pods())
    assert sum(unschedulable(p) for p in member.pods() if p["metadata"]["labels"].get("app") == "plain") == 1
