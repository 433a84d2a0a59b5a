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
from tenbin.kinds import KINDS

CLUSTER_ANNOTATION = "tenbin.io/cluster"

# Kubernetes' own vocabulary, read from the member's objects (not Tenbin's status: see tenbin.api)
POD_PENDING, POD_RUNNING, POD_SUCCEEDED, POD_FAILED = "Pending", "Running", "Succeeded", "Failed"  # Pod phases
JOB_COMPLETE, JOB_SUCCESS_CRITERIA_MET = "Complete", "SuccessCriteriaMet"  # batch/v1 Job condition types
JOB_FAILED, JOB_FAILURE_TARGET = "Failed", "FailureTarget"
CONDITION_TRUE = "True"  # the status of a member object's condition that holds
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
                  products: Iterable[str] | None = None) -> dict[str, Any]:
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
    if obj.get("kind") == "Pod":
        templates = [obj]
    elif (known := KINDS.get(str(obj.get("kind")))) is not None:
        templates = [_at(obj, known.pod_template)]
    else:
        templates = pod_templates(obj.get("spec"))
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


def _at(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The dict at `path` inside `obj`, made on the way when missing."""
    node = obj
    for key in path:
        node = node.setdefault(key, {})
    return node


def pod_templates(node: Any, depth: int = 0) -> list[dict[str, Any]]:
    """Every PodTemplateSpec inside an object of any kind: a dict under a `template` key whose `spec` has
    `containers` (a CronJob's job template, a JobSet's replicated jobs, a RayJob's head and worker groups,
    a LeaderWorkerSet's leader and worker templates...). Labelling them is how the member's pods of every
    kind become attributable to their AIWorkload, so their GPUs are counted once."""
    out: list[dict[str, Any]] = []
    if depth > 12:
        return out
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "template" and isinstance(value, dict) and isinstance(
                    (value.get("spec") or {}).get("containers"), list):
                out.append(value)
            else:
                out += pod_templates(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            out += pod_templates(item, depth + 1)
    return out


def member_ref(workload: Mapping[str, Any]) -> ObjectRef:
    tmpl = workload["spec"]["template"]
    meta = workload["metadata"]
    name = (tmpl.get("metadata") or {}).get("name") or meta["name"]
    return ObjectRef(tmpl["apiVersion"], tmpl["kind"], meta.get("namespace", "default"), name)


def _condition(obj: Mapping[str, Any], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == CONDITION_TRUE
               for c in (obj.get("status") or {}).get("conditions") or [])


def observed_phase(observed: ObservedObject) -> tuple[WorkloadPhase, str]:
    """(phase, message) of an AIWorkload from its member object: Scheduled, Running, Succeeded, Failed."""
    obj = observed.body
    kind = observed.ref.kind
    status = obj.get("status") or {}
    phase_from = KINDS[kind].phase_from if kind in KINDS else "pods"
    if phase_from == "job":
        if _condition(obj, JOB_COMPLETE) or _condition(obj, JOB_SUCCESS_CRITERIA_MET):
            return WorkloadPhase.SUCCEEDED, f"Job completed ({status.get('succeeded', 0)} succeeded)"
        if _condition(obj, JOB_FAILED) or _condition(obj, JOB_FAILURE_TARGET):
            return WorkloadPhase.FAILED, f"Job failed ({status.get('failed', 0)} failed pods)"
        if (status.get("active") or 0) > 0 and (status.get("ready") or 0) > 0:
            return WorkloadPhase.RUNNING, f"{status.get('ready')} pod(s) running"
        if observed.pods_unschedulable:
            return WorkloadPhase.SCHEDULED, f"{observed.pods_unschedulable} pod(s) unschedulable in the member"
        return WorkloadPhase.SCHEDULED, "waiting for pods to start in the member"
    if phase_from == "replicas":
        want = (obj.get("spec") or {}).get("replicas", 1)
        ready = status.get("readyReplicas") or 0
        if want == 0 or ready >= want:
            return WorkloadPhase.RUNNING, f"{ready}/{want} replicas ready"
        if observed.pods_unschedulable:
            return WorkloadPhase.SCHEDULED, \
                f"{ready}/{want} replicas ready; {observed.pods_unschedulable} pod(s) unschedulable"
        return WorkloadPhase.SCHEDULED, f"{ready}/{want} replicas ready"
    if kind == "Pod":
        pod_phase = status.get("phase") or POD_PENDING
        if pod_phase in (POD_SUCCEEDED, POD_FAILED):
            done = WorkloadPhase.SUCCEEDED if pod_phase == POD_SUCCEEDED else WorkloadPhase.FAILED
            return done, f"Pod {pod_phase.lower()}"
        if pod_phase == POD_RUNNING:
            return WorkloadPhase.RUNNING, "pod running"
    elif observed.pods_bound_gpus > 0 and observed.pods_pending == 0:
        # any other kind: what its labelled pods show (its own status has no meaning Tenbin knows)
        return WorkloadPhase.RUNNING, f"{kind}: its pods are bound ({observed.pods_bound_gpus} GPUs)"
    if observed.pods_unschedulable:
        return WorkloadPhase.SCHEDULED, f"{kind}: {observed.pods_unschedulable} pod(s) unschedulable in the member"
    return WorkloadPhase.SCHEDULED, f"{kind} exists in the member; waiting for its pods"


def is_finished(phase: str | None) -> bool:
    """An AIWorkload status.phase of work that ran to its end (Succeeded or Failed)."""
    return phase in FINISHED
