"""GPU inventory of one member cluster, computed from its Node and Pod objects.

Pure functions over plain dicts (as the Kubernetes API returns them): no client, no I/O. The
operator lists/watches Nodes and Pods through the cluster gateway and feeds them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tenbin.gpumodels import canonical_model

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
# Set by the Tenbin NVML agent (or an admin): how many of the node's GPUs are unhealthy.
UNHEALTHY_ANNOTATION = "tenbin.io/gpu-unhealthy"
TERMINAL_POD_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class NodeGPUs:
    """GPUs of one node: one canonical model per node, as GPU Feature Discovery labels it."""

    node: str
    model: str
    capacity: int
    allocatable: int
    allocated: int = 0
    unhealthy: int = 0
    ready: bool = True
    schedulable: bool = True
    memory_mib: int | None = None
    utilization: float | None = None  # 0..1 average GPU utilization, when telemetry knows it

    @property
    def usable(self) -> int:
        """GPUs the scheduler could still give out: allocatable, healthy, on a Ready schedulable node."""
        if not (self.ready and self.schedulable):
            return 0
        return max(0, self.allocatable - self.unhealthy)

    @property
    def free(self) -> int:
        return max(0, self.usable - self.allocated)


@dataclass(frozen=True)
class ModelInventory:
    model: str
    capacity: int
    allocatable: int
    allocated: int
    free: int
    utilization: float | None = None


@dataclass(frozen=True)
class ClusterInventory:
    nodes: tuple[NodeGPUs, ...]
    telemetry_note: str | None = None  # why telemetry was (not) applied, for the GPUCluster condition

    def by_model(self) -> dict[str, ModelInventory]:
        acc: dict[str, list[NodeGPUs]] = {}
        for n in self.nodes:
            acc.setdefault(n.model, []).append(n)
        out: dict[str, ModelInventory] = {}
        for model in sorted(acc):
            ns = acc[model]
            utils = [(n.utilization, n.capacity) for n in ns if n.utilization is not None and n.capacity]
            util = (sum(u * c for u, c in utils) / sum(c for _, c in utils)) if utils else None
            out[model] = ModelInventory(
                model=model,
                capacity=sum(n.capacity for n in ns),
                allocatable=sum(n.usable for n in ns),
                allocated=sum(n.allocated for n in ns),
                free=sum(n.free for n in ns),
                utilization=util,
            )
        return out

    def free(self) -> dict[str, int]:
        return {m: inv.free for m, inv in self.by_model().items()}

    def with_nodes(self, nodes: Iterable[NodeGPUs], note: str | None = None) -> ClusterInventory:
        return replace(self, nodes=tuple(nodes), telemetry_note=note)


def _quantity(v: Any) -> int:
    """An integer extended-resource quantity ("8", 8); anything else counts as 0."""
    try:
        return int(str(v))
    except (TypeError, ValueError):
        return 0


def pod_gpu_request(pod: Mapping[str, Any]) -> int:
    """GPUs a pod holds: the sum over containers, or the largest init container if that is more."""
    spec = pod.get("spec") or {}

    def req(c: Mapping[str, Any]) -> int:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        return _quantity(limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE, 0)))

    main = sum(req(c) for c in spec.get("containers") or [])
    init = max((req(c) for c in spec.get("initContainers") or []), default=0)
    return max(main, init)


def _node_ready(node: Mapping[str, Any]) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def inventory_from_objects(nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> ClusterInventory:
    """GPU inventory from Node and Pod objects (dicts in API form).

    A node counts when it advertises ``nvidia.com/gpu``; its model is the canonical name of its
    ``nvidia.com/gpu.product`` label. Allocated GPUs are those requested by non-terminal pods bound to it.
    """
    allocated: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node or phase in TERMINAL_POD_PHASES:
            continue
        allocated[node] = allocated.get(node, 0) + pod_gpu_request(pod)

    out: list[NodeGPUs] = []
    for node in nodes:
        meta, status = node.get("metadata") or {}, node.get("status") or {}
        capacity = _quantity((status.get("capacity") or {}).get(GPU_RESOURCE, 0))
        if capacity <= 0:
            continue
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        product = labels.get(PRODUCT_LABEL)
        name = meta.get("name", "")
        mem = labels.get(MEMORY_LABEL)
        out.append(NodeGPUs(
            node=name,
            model=canonical_model(product) if product else "unknown",
            capacity=capacity,
            allocatable=_quantity((status.get("allocatable") or {}).get(GPU_RESOURCE, 0)),
            allocated=allocated.get(name, 0),
            unhealthy=min(capacity, _quantity(annotations.get(UNHEALTHY_ANNOTATION, 0))),
            ready=_node_ready(node),
            schedulable=not (node.get("spec") or {}).get("unschedulable", False),
            memory_mib=_quantity(mem) or None,
        ))
    out.sort(key=lambda n: n.node)
    return ClusterInventory(tuple(out))
