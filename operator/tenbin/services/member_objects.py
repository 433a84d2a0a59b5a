"""Pure builders and readers for the objects Tenbin puts into member clusters.

- :func:`member_object` turns an AIWorkload's ``spec.template`` into the object applied in the member:
  same namespace, labelled back to the AIWorkload (also on the pod template, so pods are attributable).
- :func:`observed_phase` reads a member object back into an AIWorkload phase.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from tenbin.api import WorkloadPhase
from tenbin.clusters.gateway import (
    HUB_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    NAMESPACE_LABEL,
    UID_LABEL,
    ObjectRef,
    ObservedObject,
)
from tenbin.gpumodels import canonical_model, product_labels
from tenbin.inventory.model import PRODUCT_LABEL, TENBIN_TOLERATIONS, pod_gpu_request
from tenbin.kinds import BUILT_IN, Kinds, get_in, render_path

CLUSTER_ANNOTATION = "tenbin.io/cluster"

FINISHED = (WorkloadPhase.SUCCEEDED, WorkloadPhase.FAILED)


def workload_key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name')}"


def pin_gpu_model(pod_spec: dict[str, Any], model: str, products: Iterable[str] | None = None) -> None:
    """Require nodes whose ``nvidia.com/gpu.product`` is the chosen model, ANDed with the pod's own affinity.

    Without it the member's scheduler may put a pod on any node with free ``nvidia.com/gpu`` - another
    model than the one Tenbin chose, priced and reserved. Node affinity compares values exactly while the
    inventory maps product labels to models case-insensitively, so the ``In`` values are the table's spellings
    for the model plus ``products``: the exact labels observed on the member's nodes of that model
    (``ClusterInventory.products(model)``). A product whose canonical model is another one is left out.
    """
    values = set(product_labels(model))
    values.update(p for p in products or () if p and canonical_model(p) == model)
    requirement = {"key": PRODUCT_LABEL, "operator": "In", "values": sorted(values)}
    affinity = pod_spec.setdefault("affinity", {})
    node = affinity.setdefault("nodeAffinity", {})
    required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    for term in terms:  # terms are ORed: the model must hold in each
        exprs = [e for e in term.get("matchExpressions") or [] if e.get("key") != PRODUCT_LABEL]
        term["matchExpressions"] = [*exprs, requirement]
    required["nodeSelectorTerms"] = terms


def member_object(workload: Mapping[str, Any], cluster: str, model: str | None = None,
                  products: Iterable[str] | None = None, kinds: Kinds = BUILT_IN) -> dict[str, Any]:
    """The object to server-side-apply in the member for this AIWorkload body (its pods pinned to `model`,
    matching the table's product labels and the observed `products`, see :func:`pin_gpu_model`).

    A pod template that requests ``nvidia.com/gpu`` also gets ``TENBIN_TOLERATIONS`` (what the
    ExtendedResourceToleration admission plugin would add), so GPU nodes tainted ``nvidia.com/gpu:NoSchedule``
    take it, as the inventory counts them.
    """
    meta = workload["metadata"]
    obj = copy.deepcopy(dict(workload["spec"]["template"]))
    om = obj.setdefault("metadata", {})
    om["namespace"] = meta.get("namespace", "default")
    om.setdefault("name", meta["name"])
    for k in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "ownerReferences"):
        om.pop(k, None)
    obj.pop("status", None)
    if obj.get("kind") == "Job":
        # Tenbin removes the copy when the AIWorkload goes; a TTL that deleted it first would look like a
        # copy lost in the member (which Tenbin applies again), i.e. a finished Job run twice
        (obj.get("spec") or {}).pop("ttlSecondsAfterFinished", None)
    labels = {
        MANAGED_BY_LABEL: MANAGED_BY,
        UID_LABEL: meta["uid"],
        NAME_LABEL: meta["name"][:63],
        NAMESPACE_LABEL: om["namespace"],
    }
    om["labels"] = {**(om.get("labels") or {}), **labels}
    om["annotations"] = {
        **(om.get("annotations") or {}),
        HUB_ANNOTATION: f"{om['namespace']}/{meta['name']}",
        CLUSTER_ANNOTATION: cluster,
    }
    templates = pod_templates(obj, kinds)
    for tmpl in templates:
        tm = tmpl.setdefault("metadata", {})
        tm["labels"] = {**(tm.get("labels") or {}), UID_LABEL: meta["uid"]}
        pod_spec = tmpl.setdefault("spec", {})
        if model:
            pin_gpu_model(pod_spec, model, products)
        if pod_gpu_request({"spec": pod_spec}) > 0:
            tolerations = list(pod_spec.get("tolerations") or [])

            def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:  # core/v1 MatchToleration
                return all((a.get(k) or "") == (b.get(k) or "") for k in ("key", "operator", "value", "effect"))

            tolerations += [dict(t) for t in TENBIN_TOLERATIONS if not any(same(t, u) for u in tolerations)]
            pod_spec["tolerations"] = tolerations
    return obj


def pod_templates(obj: dict[str, Any], kinds: Kinds = BUILT_IN) -> list[dict[str, Any]]:
    """The pod templates of a member object of a known kind (see `tenbin.kinds`), to label, pin and annotate:
    labelling them is how the member's pods become attributable to their AIWorkload, so their GPUs are
    counted once. Empty for a kind Tenbin does not know (validation refuses those before they get here)."""
    known = kinds.of(obj)
    if known is None:
        return []
    found = [get_in(obj, g.path) for g in known.pod_groups(obj)]  # () is the object itself (a Pod)
    return [t for t in found if isinstance(t, dict)]


def unlabelled_templates(obj: Mapping[str, Any], kinds: Kinds = BUILT_IN) -> list[str]:
    """The pod templates of an object as the member stored it that lost Tenbin's workload label (a CRD whose
    schema prunes the template's metadata does that): their pods cannot be attributed, so their GPUs are
    counted from the reservation alone and the phase cannot come from them."""
    known = kinds.of(obj)
    if known is None:
        return []
    out = []
    for group in known.pod_groups(obj):
        tmpl = get_in(obj, group.path)
        labels = ((tmpl.get("metadata") or {}).get("labels") or {}) if isinstance(tmpl, Mapping) else {}
        if group.path and UID_LABEL not in labels:
            out.append(render_path(group.path))
    return out


def annotate_pods(obj: dict[str, Any], annotations: Mapping[str, str], kinds: Kinds = BUILT_IN) -> None:
    """Put `annotations` on the object and on every pod template of it (a resumed run reads them from either)."""
    obj.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
    for tmpl in pod_templates(obj, kinds):
        if tmpl is obj:
            continue
        tm = tmpl.setdefault("metadata", {})
        tm["annotations"] = {**(tm.get("annotations") or {}), **annotations}


def member_ref(workload: Mapping[str, Any]) -> ObjectRef:
    tmpl = workload["spec"]["template"]
    meta = workload["metadata"]
    name = (tmpl.get("metadata") or {}).get("name") or meta["name"]
    return ObjectRef(tmpl["apiVersion"], tmpl["kind"], meta.get("namespace", "default"), name)


def observed_phase(observed: ObservedObject, kinds: Kinds = BUILT_IN) -> tuple[WorkloadPhase, str]:
    """(phase, message) of an AIWorkload from its member object: Scheduled, Running, Succeeded, Failed.

    Running / Succeeded / Failed come from the kind's own status as `tenbin.kinds` reads it; a kind whose
    status means nothing Tenbin knows (a DaemonSet) is Running once its labelled pods are all bound."""
    obj = observed.body
    kind = observed.ref.kind
    known = kinds.rows.get((observed.ref.api_version, kind))
    read = known.phase(obj) if known is not None and known.phase is not None else None
    if read is None and (known is None or known.phase is None) and observed.pods_bound_gpus > 0 \
            and observed.pods_pending == 0:
        read = WorkloadPhase.RUNNING, f"{kind}: its pods are bound ({observed.pods_bound_gpus} GPUs)"
    if read is not None and read[0] != WorkloadPhase.SCHEDULED:
        return read
    progress = f"{read[1]}; " if read is not None else ""
    if known is not None and known.suspended(obj):
        where = render_path(known.suspend or ())
        return WorkloadPhase.SCHEDULED, f"{progress}{kind} is suspended in the member ({where})"
    if observed.pods_unschedulable:
        return WorkloadPhase.SCHEDULED, f"{progress}{observed.pods_unschedulable} pod(s) unschedulable in the member"
    return WorkloadPhase.SCHEDULED, progress + (f"waiting for the {kind}'s pods to start in the member")


def is_finished(phase: str | None) -> bool:
    """An AIWorkload status.phase of work that ran to its end (Succeeded or Failed)."""
    return phase in FINISHED
