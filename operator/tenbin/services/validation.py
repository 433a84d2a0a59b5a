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
from tenbin.kinds import BUILT_IN, Kinds, get_in, render_path
from tenbin.scheduling.inputs import EffectivePolicy


def semantic_error(body: Mapping[str, Any], policy: EffectivePolicy, kinds: Kinds = BUILT_IN
                   ) -> tuple[str, str] | None:
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

    return template_error(tmpl, int((spec.get("gpu") or {}).get("count") or 0), int(spec.get("replicas") or 1), kinds)


def template_error(tmpl: Mapping[str, Any], per_replica: int, replicas: int, kinds: Kinds = BUILT_IN
                   ) -> tuple[str, str] | None:
    """The template must be of a kind Tenbin knows (`tenbin.kinds`, or declared by the policy's
    `spec.workloadKinds`), and its pods must ask for what the
    AIWorkload reserves: every pod that asks for GPUs asks for spec.gpu.count, and no more than spec.replicas
    of them run at once."""
    kind, api_version = tmpl.get("kind"), tmpl.get("apiVersion")
    known = kinds.of(tmpl)
    if known is None and kinds.versions_of(kind):
        return ("spec.template.apiVersion", f"a {kind} is {' or '.join(kinds.versions_of(kind))} here, not "
                f"{api_version} (another group's {kind} can be declared in PlacementPolicy default spec.workloadKinds)")
    if known is None:
        return ("spec.template.kind", f"Tenbin does not know how many GPUs a {kind} uses or what its status means; "
                f"use one of {', '.join(kinds)}, or declare it in PlacementPolicy default spec.workloadKinds")
    autoscaled = get_in(tmpl, ("spec", "rayClusterSpec", "enableInTreeAutoscaling")) is True
    if known.kind == "RayJob" and not known.declared and autoscaled:
        return ("spec.template.spec.rayClusterSpec.enableInTreeAutoscaling",
                "an autoscaled RayCluster may grow past the GPUs Tenbin reserves; set it false and size the "
                "worker groups (replicas)")
    gpu_pods, gpu_groups = 0, []
    for group in known.pod_groups(tmpl):
        pod_tmpl = get_in(tmpl, group.path)  # () is the template itself (a Pod)
        per_pod = pod_gpu_request(pod_tmpl) if isinstance(pod_tmpl, Mapping) else 0
        if not per_pod:
            continue
        where = "spec.template" + (f".{render_path(group.path)}" if group.path else "")
        if per_pod != per_replica:
            return (f"{where}.spec.containers[].resources.limits[nvidia.com/gpu]",
                    f"the pods ask for {per_pod} nvidia.com/gpu each but spec.gpu.count is {per_replica}")
        gpu_pods += group.pods
        gpu_groups.append(group)
    if gpu_pods > replicas:
        one = gpu_groups[0].count if len(gpu_groups) == 1 else None
        return ("spec.template." + render_path(one) if one else "spec.replicas",
                f"the {kind} runs {gpu_pods} GPU pods at once but spec.replicas is {replicas}: "
                "Tenbin would reserve too few GPUs")
    return None


def first_error_parts(err: ValidationError) -> tuple[str, str]:
    """(field path, message) of the first error pydantic found in an object."""
    e = err.errors()[0]
    return field_path(tuple(e["loc"])), str(e["msg"])


def first_error(err: ValidationError) -> str:
    path, msg = first_error_parts(err)
    return f"invalid spec: {path}: {msg}"
