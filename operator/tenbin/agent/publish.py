"""What the agent writes on its Node (the Kubernetes call that writes it: tenbin.clusters.nodes).

Labels follow GPU Feature Discovery's names so schedulers and Tenbin's inventory read them the same way;
annotations carry Tenbin's health verdict. Only ``metadata`` is patched (strategic merge), and only these keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from tenbin.agent.gpus import GPUInfo, gfd_product, unhealthy_count
from tenbin.inventory.model import MEMORY_LABEL, PRODUCT_LABEL, UNHEALTHY_ANNOTATION

PRESENT_LABEL = "nvidia.com/gpu.present"
COUNT_LABEL = "nvidia.com/gpu.count"
MIG_CAPABLE_LABEL = "nvidia.com/mig.capable"
HEALTH_ANNOTATION = "tenbin.io/gpu-health"
MAX_GPUS_IN_ANNOTATION = 64

# the `status` field of the health annotation
STATUS_OK = "Healthy"
STATUS_DEGRADED = "Degraded"
STATUS_NO_GPUS = "NoGPUs"
STATUS_NO_DRIVER = "NoDriver"
STATUS_NVML_ERROR = "NVMLError"


def _stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def gpu_patch(gpus: Sequence[GPUInfo], now: datetime, *, node_labels: bool = True,
              driver_version: str | None = None) -> dict[str, Any]:
    """The Node metadata patch for a successful read of ``gpus``.

    Labels (unless ``node_labels`` is False, e.g. when GFD already runs on the node): ``nvidia.com/gpu.present``,
    ``nvidia.com/gpu.count``, and when there are GPUs ``nvidia.com/gpu.product`` (GFD form of the first GPU's
    name), ``nvidia.com/gpu.memory`` (MiB of the first GPU) and ``nvidia.com/mig.capable``.
    Annotations: ``tenbin.io/gpu-unhealthy`` (count) and ``tenbin.io/gpu-health`` (JSON, per GPU).
    """
    bad = unhealthy_count(gpus)
    status = STATUS_NO_GPUS if not gpus else STATUS_DEGRADED if bad else STATUS_OK
    health: dict[str, Any] = {
        "status": status, "time": _stamp(now), "count": len(gpus), "unhealthy": bad,
        "gpus": [g.as_json() for g in gpus[:MAX_GPUS_IN_ANNOTATION]],
    }
    if driver_version:
        health["driverVersion"] = driver_version
    models = sorted({g.name for g in gpus if g.name})
    if len(models) > 1:
        health["message"] = "mixed GPU models on one node: " + ", ".join(models)
    labels: dict[str, str] = {}
    if node_labels:
        labels[PRESENT_LABEL] = "true" if gpus else "false"
        labels[COUNT_LABEL] = str(len(gpus))
        first = next((g for g in gpus if g.name), None)
        if first is not None and first.name:
            labels[PRODUCT_LABEL] = gfd_product(first.name)
        mem = next((g.memory_mib for g in gpus if g.memory_mib), None)
        if mem:
            labels[MEMORY_LABEL] = str(mem)
        if gpus:
            labels[MIG_CAPABLE_LABEL] = "true" if any(g.mig_capable for g in gpus) else "false"
    meta: dict[str, Any] = {"annotations": {
        UNHEALTHY_ANNOTATION: str(bad),
        HEALTH_ANNOTATION: json.dumps(health, separators=(",", ":"), sort_keys=True),
    }}
    if labels:
        meta["labels"] = labels
    return {"metadata": meta}


def status_patch(status: str, message: str, now: datetime) -> dict[str, Any]:
    """A patch that records only a problem (no driver, NVML failing); labels and the unhealthy count stay."""
    health = {"status": status, "time": _stamp(now), "message": message[:1024]}
    return {"metadata": {"annotations": {HEALTH_ANNOTATION: json.dumps(health, separators=(",", ":"),
                                                                        sort_keys=True)}}}


class NodePublisher(Protocol):
    def patch(self, node: str, body: dict[str, Any]) -> None: ...


def api_error_text(e: BaseException) -> str:
    """One line for a Kubernetes client error: the HTTP status and reason, or the exception's first line."""
    status = getattr(e, "status", None)
    reason = getattr(e, "reason", None)
    body = getattr(e, "body", None)
    if status:
        msg = ""
        if isinstance(body, (str, bytes)):
            try:
                msg = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                msg = ""
        return f"HTTP {status} {reason or ''}".strip() + (f": {msg}" if msg else "")
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
