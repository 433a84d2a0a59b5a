"""The ledger: GPUs promised to placements and moves that the members do not count yet, and how many
more pods of a size each cluster can still be promised, node by node (`tenbin.scheduling.nodefit`).

A member's inventory counts a pod's GPUs once the pod is bound to a node; until then the promise is the
ledger's. Placement, resize and moves all ask it, with no await between the question and the promise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tenbin.api import AIWorkload
from tenbin.clusters.gateway import MemberObservation
from tenbin.scheduling import nodefit
from tenbin.services.member_objects import is_finished, workload_key
from tenbin.services.state import ClusterState

MOVE = "#move"  # reservations[key + MOVE]: the GPUs a move in flight holds on its target


@dataclass
class Reservation:
    cluster: str
    model: str
    gpus: int
    uid: str
    per_pod: int = 0
    """GPUs per pod (0: one pod of all `gpus`): pods, not only GPUs, must fit the member's nodes."""

    @property
    def pod_size(self) -> int:
        return self.per_pod if 0 < self.per_pod <= self.gpus else self.gpus


class Reservations(dict[str, Reservation]):
    """Reservations by workload key, with a `version` that changes with every change, so `reserved()` can
    reuse its sum: the migrator asks for it once per placed workload per member sync, which made summing
    every reservation again the operator's top CPU cost at a few thousand AIWorkloads."""

    version = 0

    def __setitem__(self, key: str, value: Reservation) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version += 1

    def pop(self, key: str, *default: Any) -> Any:
        self.version += 1
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Reservation) -> Reservation:
        if key not in self:
            self.version += 1
        return super().setdefault(key, default)

    def popitem(self) -> tuple[str, Reservation]:
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> Reservations:  # type: ignore[override,misc]
        self.version += 1
        return super().__ior__(other)


class Ledger:
    """The reservations, and what they leave of each member's nodes. `clusters` is the operator's own
    view of the members (shared, not copied): each observation replaces a member's whole."""

    def __init__(self, clusters: Mapping[str, ClusterState]) -> None:
        self.clusters = clusters
        self.reservations = Reservations()
        self._cache: tuple[int, tuple[tuple[str, MemberObservation | None], ...],
                           dict[tuple[str, str], dict[int, int]]] | None = None

    def restore(self, body: Mapping[str, Any]) -> None:
        """The reservation of a placed, unfinished workload, as its status records it (after a restart)."""
        status = body.get("status") or {}
        p = status.get("placement") or {}
        if p.get("cluster") and p.get("gpuModel") and not is_finished(status.get("phase")):
            key = workload_key(body)
            self.reservations.setdefault(key, Reservation(
                p["cluster"], p["gpuModel"], int(p.get("gpus") or 0), body["metadata"].get("uid", ""),
                per_pod_of(body)))

    def release(self, key: str) -> None:
        """Drop what the workload holds: its placement's reservation and a move's target reservation."""
        self.reservations.pop(key, None)
        self.reservations.pop(key + MOVE, None)

    def reserve(self, key: str, cluster: str, model: str, gpus: int, uid: str, per_pod: int = 0) -> None:
        self.reservations[key] = Reservation(cluster, model, gpus, uid, per_pod)

    def pending_pods(self) -> dict[tuple[str, str], dict[int, int]]:
        """Pods promised to placed workloads that the member does not show bound yet, per (cluster, model):
        GPUs per pod -> how many. Bound pods are in the member's inventory already (node by node).

        It depends only on the reservations and on each member's observation (immutable, replaced whole):
        it is reused while neither changed.
        """
        observed = tuple((st.name, st.observation) for st in self.clusters.values())
        c = self._cache
        if c is not None and c[0] == self.reservations.version and len(c[1]) == len(observed) and all(
                a[0] == b[0] and a[1] is b[1] for a, b in zip(c[1], observed, strict=True)):
            return c[2]
        version = self.reservations.version
        out: dict[tuple[str, str], dict[int, int]] = {}
        for r in self.reservations.values():
            st = self.clusters.get(r.cluster)
            bound = 0
            if st and st.observation:
                obj = st.observation.objects.get(r.uid)
                # a copy on its way out (a stale one being deleted) holds none of the new placement's pods
                leaving = obj is not None and bool((obj.body.get("metadata") or {}).get("deletionTimestamp"))
                bound = obj.pods_bound_gpus if obj and not leaving else 0
            outstanding = max(0, r.gpus - bound)
            if outstanding:
                size = r.pod_size
                sizes = out.setdefault((r.cluster, r.model), {})
                sizes[size] = sizes.get(size, 0) + -(-outstanding // size)
        self._cache = (version, observed, out)
        return out

    def reserved(self) -> dict[tuple[str, str], int]:
        """GPUs promised to placed workloads whose pods the member's inventory does not show yet."""
        return {k: sum(s * n for s, n in sizes.items()) for k, sizes in self.pending_pods().items()}

    def reserved_for(self, per_pod: int, tolerations: Sequence[Mapping[str, Any]] = ()
                     ) -> dict[tuple[str, str], int]:
        """What the core must count as taken for a new workload of `per_pod`-GPU pods: a pod fits ONE node.

        Per (cluster, model), everything but `k * per_pod` GPUs, where `k` is how many more such pods the
        nodes can hold next to every pod promised but not yet bound, in any order the member's scheduler
        binds them (`tenbin.scheduling.nodefit`). Nodes of 3 and 2 free GPUs hold no 4-GPU pod; two empty
        8-GPU nodes with two 1-GPU pods pending hold no 8-GPU pod, since the member may spread them.
        """
        pending = self.pending_pods()
        out: dict[tuple[str, str], int] = {}
        for st in self.clusters.values():
            if st.observation is None:
                continue
            per_model: dict[str, list[int]] = {}
            for n in st.observation.inventory.nodes:
                per_model.setdefault(n.model, []).append(n.free_for(tolerations))
            for model, frees in per_model.items():
                total = sum(n.free for n in st.observation.inventory.nodes if n.model == model)
                k = nodefit.admissible(frees, pending.get((st.name, model), {}), max(1, per_pod))
                taken = total - k * max(1, per_pod)
                if taken > 0:
                    out[(st.name, model)] = taken
        return out

    def node_fit_note(self, wl: AIWorkload, reserved: Mapping[tuple[str, str], int]) -> str:
        """Why a cluster with enough free GPUs in total was still refused: no node can take a pod for sure."""
        need, per_pod = wl.spec.total_gpus, wl.spec.gpu.count
        plain = self.reserved()
        notes = []
        for (cluster, model), taken in sorted(reserved.items()):
            st = self.clusters.get(cluster)
            if st is None or st.observation is None:
                continue
            free = st.observation.inventory.free().get(model, 0)
            if free - plain.get((cluster, model), 0) >= need > free - taken:
                pending = sum(self.pending_pods().get((cluster, model), {}).values())
                why = f"{pending} placed pod(s) not bound yet may take them" if pending else \
                    "they are spread over nodes"
                notes.append(f"{cluster} has {free} free {model} but room for {(free - taken) // per_pod} "
                             f"pod(s) of {per_pod} GPUs on its nodes ({why})")
        return ("; node fit: " + "; ".join(notes[:3])) if notes else ""

    def room_for(self, cluster: str, model: str, per_pod: int, tolerations: Sequence[Mapping[str, Any]] = ()) -> int:
        """How many more pods of `per_pod` GPUs the cluster's `model` nodes hold for sure, next to every pod
        promised but not bound (the caller's own promise taken out first, when it is asking for itself)."""
        st = self.clusters.get(cluster)
        obs = st.observation if st is not None else None
        frees = [n.free_for(tolerations) for n in obs.inventory.nodes if n.model == model] if obs else []
        return nodefit.admissible(frees, self.pending_pods().get((cluster, model), {}), per_pod)


def per_pod_of(body: Mapping[str, Any]) -> int:
    """GPUs per pod of an AIWorkload body (0 when the spec does not say)."""
    try:
        return int(((body.get("spec") or {}).get("gpu") or {}).get("count") or 0)
    except (TypeError, ValueError):
        return 0


def tolerations_of(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tolerations of the pods of an AIWorkload's template."""
    tmpl = (body.get("spec") or {}).get("template") or {}
    pod = ((tmpl.get("spec") or {}).get("template") or {}).get("spec") or {}
    return list(pod.get("tolerations") or [])
