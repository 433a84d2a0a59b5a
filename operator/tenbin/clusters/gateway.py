"""The seam between the operator and a member cluster: apply, delete, observe.

Everything the services know about a member comes through a :class:`ClusterGateway`; the
Kubernetes implementation is :class:`tenbin.clusters.kube.KubeGateway`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenbin.inventory import ClusterInventory

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "tenbin"
UID_LABEL = "tenbin.io/workload-uid"
NAME_LABEL = "tenbin.io/workload"
NAMESPACE_LABEL = "tenbin.io/workload-namespace"
HUB_ANNOTATION = "tenbin.io/hub-object"
FIELD_MANAGER = "tenbin"


class GatewayError(RuntimeError):
    """The member could not be reached or refused a request; ``status`` is the HTTP code when known."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

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


@dataclass(frozen=True)
class MemberObservation:
    """One consistent look at a member: its GPU inventory and the objects Tenbin put there."""

    inventory: ClusterInventory
    objects: Mapping[str, ObservedObject] = field(default_factory=dict)  # by workload UID


class ClusterGateway(Protocol):
    name: str

    async def observe(self) -> MemberObservation: ...

    async def apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]: ...

    async def delete(self, ref: ObjectRef) -> bool: ...

    async def annotate(self, ref: ObjectRef, annotations: Mapping[str, str | None]) -> None: ...

    async def close(self) -> None: ...
