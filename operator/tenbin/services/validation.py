"""Checks a valid-by-schema AIWorkload must still pass before it is placed.

The CRD schema cannot see inside the embedded template, nor the policy's exchange rates; these can.
Each problem names the field, so the status condition and the event tell the user what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tenbin.api.objects import field_path
from tenbin.inventory.model import pod_gpu_request
from tenbin.kinds import KINDS
from tenbin.scheduling.inputs import EffectivePolicy


def semantic_error(body: Mapping[str, Any], policy: EffectivePolicy) -> tuple[str, str] | None:
    """(field path, message) of the first problem, or None."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    tmpl = spec.get("template") or {}
    tmeta = tmpl.get("metadata") or {}
    ns = meta.get("namespace", "default")
    if tmeta.get("namespace") not in (None, "", ns):
        return ("spec.template.metadata.namespace",
                f"must be empty or {ns!r} (the object runs in the AIWorkload's namespace), not {tmeta['namespace']!r}")

    budget = spec.get("budget") or {}
    if budget.get("currency") and policy.rate(budget["currency"]) is None:
        return ("spec.budget.currency",
                f"no exchange rate from {budget['currency']} to {policy.base_currency} in PlacementPolicy default")

    known = KINDS.get(str(tmpl.get("kind")))
    path = known.pod_template if known is not None else None
    if path is None:
        return None
    pod_tmpl: Any = tmpl
    for k in path:
        pod_tmpl = (pod_tmpl or {}).get(k)
    if not isinstance(pod_tmpl, Mapping):
        return None
    per_pod = pod_gpu_request(pod_tmpl)
    want = int((spec.get("gpu") or {}).get("count") or 0)
    field = "spec.template." + ".".join(path) + ".spec.containers[].resources.limits[nvidia.com/gpu]"
    if per_pod and per_pod != want:
        return (field, f"the pods ask for {per_pod} nvidia.com/gpu each but spec.gpu.count is {want}")
    tspec = tmpl.get("spec") or {}
    pods = tspec.get("parallelism", 1) if tmpl.get("kind") == "Job" else tspec.get("replicas", 1)
    replicas = int(spec.get("replicas") or 1)
    if isinstance(pods, int) and pods > replicas:
        which = "parallelism" if tmpl.get("kind") == "Job" else "replicas"
        return (f"spec.template.spec.{which}",
                f"runs {pods} pods at once but spec.replicas is {replicas}: Tenbin would reserve too few GPUs")
    return None


def first_error_parts(err: ValidationError) -> tuple[str, str]:
    """(field path, message) of the first error pydantic found in an object."""
    e = err.errors()[0]
    return field_path(tuple(e["loc"])), str(e["msg"])


def first_error(err: ValidationError) -> str:
    path, msg = first_error_parts(err)
    return f"invalid spec: {path}: {msg}"
