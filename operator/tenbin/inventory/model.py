"""GPU inventory of one member cluster, computed from its Node and Pod objects.

Pure functions over plain dicts (as the Kubernetes API returns them): no client, no I/O. The
operator lists/watches Nodes and Pods through the cluster gateway and feeds them here.

Taints: a GPU counts as free only where a pod Tenbin applies could be scheduled. Tenbin's pods carry the
pod template's own tolerations plus :data:`TENBIN_TOLERATIONS` (what ``member_object`` adds); a node with a
``NoSchedule``/``NoExecute`` taint those do not tolerate offers no free GPUs (:attr:`NodeGPUs.free`), exactly
as kube-scheduler's TaintToleration filter would refuse it. :meth:`NodeGPUs.free_for` answers the same for a
pod template that brings tolerations of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tenbin.gpumodels import canonical_model

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
# Set by the Tenbin NVML agent (or an admin): how many of the node's GPUs are unhealthy.
UNHEALTHY_ANNOTATION = "tenbin.io/gpu-unhealthy"
TERMINAL_POD_PHASES = frozenset({"Succeeded", "Failed"})

NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE = "NoSchedule", "PreferNoSchedule", "NoExecute"
# the taint effects kube-scheduler's TaintToleration Filter refuses a node for (PreferNoSchedule only scores)
BLOCKING_EFFECTS = frozenset({NO_SCHEDULE, NO_EXECUTE})

# What the ExtendedResourceToleration admission plugin adds to a pod requesting nvidia.com/gpu, so that
# GPU nodes tainted ``nvidia.com/gpu[=...]:NoSchedule`` (the usual "GPU pods only" taint) take GPU pods. The
# plugin is off by default in kube-apiserver, so Tenbin adds it to every pod template that requests GPUs
# (``member_object``) and the inventory counts those nodes: one fact, used by both.
GPU_TOLERATION: Mapping[str, str] = {"key": GPU_RESOURCE, "operator": "Exists", "effect": NO_SCHEDULE}
TENBIN_TOLERATIONS: tuple[Mapping[str, str], ...] = (GPU_TOLERATION,)


@dataclass(frozen=True)
class Taint:
    """One ``spec.taints[]`` entry of a Node."""

    key: str
    value: str = ""
    effect: str = ""

    @property
    def blocks(self) -> bool:
        """Whether the taint keeps pods that do not tolerate it off the node (NoSchedule, NoExecute)."""
        return self.effect in BLOCKING_EFFECTS

    @classmethod
    def from_api(cls, t: Mapping[str, Any]) -> Taint:
        return cls(str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))


def _decimal_int(v: str) -> int | None:
    """``v`` as an int64 when it is a canonical decimal integer (apimachinery's IsDecimalInteger), else None."""
    digits = v[1:] if v.startswith("-") else v
    if not digits or not digits.isascii() or not digits.isdigit() or (digits[0] == "0" and v != "0"):
        return None
    n = int(v)
    return n if -(2**63) <= n < 2**63 else None


def toleration_tolerates(toleration: Mapping[str, Any], taint: Taint | Mapping[str, Any], *,
                         comparison_operators: bool = False) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint`` (k8s.io/api core/v1 toleration.go, v1.35):

    an empty effect matches every effect, else the effects must be equal; an empty key matches every key
    (with ``Exists``), else the keys must be equal; ``Exists`` matches any value, ``Equal`` (or no operator)
    the same value; ``Lt``/``Gt`` compare canonical int64 values (taint value < / > toleration value) and
    only with the alpha ``TaintTolerationComparisonOperators`` gate (off by default: they match nothing).
    Any other operator matches nothing. ``tolerationSeconds`` does not enter into it.
    """
    t = taint if isinstance(taint, Taint) else Taint.from_api(taint)
    effect = toleration.get("effect") or ""
    if effect and effect != t.effect:
        return False
    key = toleration.get("key") or ""
    if key and key != t.key:
        return False
    op = toleration.get("operator") or ""
    value = str(toleration.get("value") or "")
    if op in ("", "Equal"):
        return value == t.value
    if op == "Exists":
        return True
    if op in ("Lt", "Gt") and comparison_operators:
        want, have = _decimal_int(value), _decimal_int(t.value)
        if want is None or have is None:
            return False
        return have < want if op == "Lt" else have > want
    return False


def untolerated_taint(tolerations: Iterable[Mapping[str, Any]], taints: Iterable[Taint | Mapping[str, Any]], *,
                      comparison_operators: bool = False) -> Taint | None:
    """The first NoSchedule/NoExecute taint no toleration tolerates (component-helpers'
    ``FindMatchingUntoleratedTaint`` with the scheduler's ``DoNotScheduleTaintsFilterFunc``), or None."""
    tols = list(tolerations)
    for raw in taints:
        t = raw if isinstance(raw, Taint) else Taint.from_api(raw)
        if t.blocks and not any(toleration_tolerates(tol, t, comparison_operators=comparison_operators)
                                for tol in tols):
            return t
    return None


def tolerates(tolerations: Sequence[Mapping[str, Any]], taints: Iterable[Taint | Mapping[str, Any]], *,
              comparison_operators: bool = False) -> bool:
    """Whether a pod with these tolerations passes kube-scheduler's TaintToleration filter on a node with
    these taints: every NoSchedule and NoExecute taint is tolerated (PreferNoSchedule never blocks)."""
    return untolerated_taint(tolerations, taints, comparison_operators=comparison_operators) is None


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
    product: str = ""  # the raw nvidia.com/gpu.product label value ("" when the node has none)
    taints: tuple[Taint, ...] = ()

    @property
    def usable(self) -> int:
        """GPUs the scheduler could still give out: allocatable, healthy, on a Ready schedulable node
        (taints aside: see :meth:`free_for`)."""
        if not (self.ready and self.schedulable):
            return 0
        return max(0, self.allocatable - self.unhealthy)

    def admits(self, tolerations: Sequence[Mapping[str, Any]] = ()) -> bool:
        """Whether a Tenbin pod with the template's ``tolerations`` (plus :data:`TENBIN_TOLERATIONS`,
        which ``member_object`` adds) tolerates every taint of this node that blocks scheduling."""
        return tolerates([*tolerations, *TENBIN_TOLERATIONS], self.taints)

    def free_for(self, tolerations: Sequence[Mapping[str, Any]] = ()) -> int:
        """Free GPUs for a Tenbin pod whose template carries ``tolerations``: 0 when a blocking taint is not
        tolerated (by those or by :data:`TENBIN_TOLERATIONS`)."""
        if not self.admits(tolerations):
            return 0
        return max(0, self.usable - self.allocated)

    @property
    def free(self) -> int:
        """Free GPUs for a plain Tenbin pod (only the tolerations Tenbin adds)."""
        return self.free_for(())


@dataclass(frozen=True)
class ModelInventory:
    model: str
    capacity: int
    allocatable: int
    allocated: int
    free: int  # for a plain Tenbin pod: GPUs behind a taint it does not tolerate are not free
    utilization: float | None = None
    tainted: int = 0  # of `allocatable`, GPUs on nodes whose blocking taints a plain Tenbin pod does not tolerate


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
                tainted=sum(n.usable for n in ns if not n.admits()),
            )
        return out

    def free(self) -> dict[str, int]:
        """Free GPUs per model for a plain Tenbin pod (see :attr:`NodeGPUs.free`)."""
        return {m: inv.free for m, inv in self.by_model().items()}

    def free_for(self, tolerations: Sequence[Mapping[str, Any]] = ()) -> dict[str, int]:
        """Free GPUs per model for a Tenbin pod whose template carries ``tolerations``."""
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.model] = out.get(n.model, 0) + n.free_for(tolerations)
        return dict(sorted(out.items()))

    def products(self, model: str) -> tuple[str, ...]:
        """The exact ``nvidia.com/gpu.product`` values of this member's nodes of canonical ``model``, sorted
        (for the pod pin: node affinity compares label values exactly, the inventory case-insensitively)."""
        return tuple(sorted({n.product for n in self.nodes if n.model == model and n.product}))

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
    ``nvidia.com/gpu.product`` label (kept raw in ``product``), its ``spec.taints`` are kept in ``taints``.
    Allocated GPUs are those requested by non-terminal pods bound to it.
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
        product = str(labels.get(PRODUCT_LABEL) or "")
        name = meta.get("name", "")
        mem = labels.get(MEMORY_LABEL)
        spec = node.get("spec") or {}
        taints = tuple(Taint.from_api(t) for t in spec.get("taints") or [] if isinstance(t, Mapping))
        out.append(NodeGPUs(
            node=name,
            model=canonical_model(product) if product else "unknown",
            capacity=capacity,
            allocatable=_quantity((status.get("allocatable") or {}).get(GPU_RESOURCE, 0)),
            allocated=allocated.get(name, 0),
            unhealthy=min(capacity, _quantity(annotations.get(UNHEALTHY_ANNOTATION, 0))),
            ready=_node_ready(node),
            schedulable=not spec.get("unschedulable", False),
            memory_mib=_quantity(mem) or None,
            product=product,
            taints=taints,
        ))
    out.sort(key=lambda n: n.node)
    return ClusterInventory(tuple(out))
