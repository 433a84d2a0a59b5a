"""The seam between the operator and a member cluster: apply, delete, observe.

Everything the services know about a member comes through a :class:`ClusterGateway`; the
Kubernetes implementation is :class:`tenbin.clusters.kube.KubeGateway`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenbin.inventory import ClusterInventory
from tenbin.inventory.model import TERMINAL_POD_PHASES, pod_gpu_request

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "tenbin"
UID_LABEL = "tenbin.io/workload-uid"
NAME_LABEL = "tenbin.io/workload"
NAMESPACE_LABEL = "tenbin.io/workload-namespace"
HUB_ANNOTATION = "tenbin.io/hub-object"
FIELD_MANAGER = "tenbin"


class GatewayError(RuntimeError):
    """The member could not be reached or refused a request; ``status`` is the HTTP code when known."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        """The member's own message (a Status `message`), when it gave one."""

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in (408, 409, 429) or self.status >= 500


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ObservedObject:
    """A Tenbin-managed object in a member, as last listed, with the GPUs its pods hold."""

    ref: ObjectRef
    uid_label: str
    body: Mapping[str, Any]
    pods_bound_gpus: int = 0
    pods_pending: int = 0
    pods_unschedulable: int = 0
    unschedulable_message: str = ""
    """The member scheduler's words for the first unschedulable pod (e.g. `0/2 nodes are available: ...`)."""


@dataclass(frozen=True)
class MemberObservation:
    """One consistent look at a member: its GPU inventory and the objects Tenbin put there."""

    inventory: ClusterInventory
    objects: Mapping[str, ObservedObject] = field(default_factory=dict)  # by workload UID
    served: frozenset[tuple[str, str]] | None = None
    """The (apiVersion, kind) pairs of Tenbin's workload kinds the member serves (API discovery, cached by the
    gateway); None when this gateway does not discover them (a refused apply says so instead)."""


def pods_by_uid(pods: list[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """A member's pods grouped by the workload UID label Tenbin puts on pod templates."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for p in pods:
        uid = ((p.get("metadata") or {}).get("labels") or {}).get(UID_LABEL)
        if uid:
            out.setdefault(uid, []).append(p)
    return out


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when the pod is unschedulable, else None."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return str(c.get("message") or "unschedulable")
    return None


def observed_object(obj: Mapping[str, Any], uid: str, pods: list[Mapping[str, Any]]) -> ObservedObject:
    """A managed object with the GPUs its bound pods hold and how many of its pods wait (or cannot run)."""
    bound = sum(pod_gpu_request(p) for p in pods
                if (p.get("spec") or {}).get("nodeName")
                and (p.get("status") or {}).get("phase") not in TERMINAL_POD_PHASES)
    pending = [p for p in pods if not (p.get("spec") or {}).get("nodeName")]
    why = [m for m in (_unschedulable(p) for p in pending) if m is not None]
    return ObservedObject(ObjectRef.of(obj), uid, obj, bound, len(pending), len(why), why[0][:512] if why else "")


class ClusterGateway(Protocol):
    name: str
    copies_dependencies: bool
    """Whether Tenbin copies a workload's ConfigMaps, Secrets, ... into the member through this gateway."""

    async def observe(self) -> MemberObservation: ...

    def want_kinds(self, kinds: frozenset[tuple[str, str]]) -> None:
        """The (apiVersion, kind) pairs the PlacementPolicy declares: a gateway that discovers which workload
        kinds the member serves asks about these too (they are listed once a template of them was applied)."""

    async def apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]: ...

    async def delete(self, ref: ObjectRef) -> bool: ...

    async def get(self, ref: ObjectRef) -> Mapping[str, Any] | None: ...

    async def add_owner(self, ref: ObjectRef, owner: Mapping[str, Any]) -> None: ...

    async def orphans(self) -> list[dict[str, Any]]: ...

    async def delete_unchanged(self, ref: ObjectRef, resource_version: str) -> bool: ...

    async def annotate(self, ref: ObjectRef, annotations: Mapping[str, str | None]) -> None: ...

    async def close(self) -> None: ...
