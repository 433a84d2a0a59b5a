"""A hub and members in memory, for the deterministic simulation of the operator (`tests/simulation`).

They answer as the real parts do where the operator's logic depends on it - they complement the
real-control-plane suites, never replace them:

- :class:`MemoryHub` is the hub apiserver as :class:`tenbin.clusters.hub.HubClient` sees it: merge patches
  (``null`` removes), the status subresource apart from the rest, ``metadata.resourceVersion`` preconditions
  answered 409, ``generation`` bumped by spec changes only, finalizers holding a deleted object with a
  ``deletionTimestamp``, 404 for what is gone, and unreachability. Every change is queued as a watch event.
- :class:`MemoryMember` is a member as :class:`tenbin.clusters.gateway.ClusterGateway` sees it, with the
  controllers that matter in a member: server-side apply (a Job's pod template is immutable: 422; a kind
  not served: 404), pods made from every pod template, a scheduler that binds each pod to a random node
  that fits (GPUs, node affinity, taints), so it spreads pods the way a real one may, pods that finish,
  foreground deletion (the object goes one tick later, with its pods), and unreachability. Its
  observations are built by the same functions as the Kubernetes gateway's.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenbin.clusters.gateway import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    UID_LABEL,
    GatewayError,
    MemberObservation,
    ObjectRef,
    ObservedObject,
    observed_object,
    pods_by_uid,
)
from tenbin.inventory.model import (
    GPU_RESOURCE,
    PRODUCT_LABEL,
    TERMINAL_POD_PHASES,
    inventory_from_objects,
    pod_gpu_request,
    tolerates,
)
from tenbin.kinds import BUILT_IN, KINDS, get_in

Json = dict[str, Any]
SERVED_KINDS = frozenset({("batch/v1", "Job"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
                          ("apps/v1", "ReplicaSet"), ("v1", "Pod"), ("jobset.x-k8s.io/v1alpha2", "JobSet"),
                          ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"), ("kubeflow.org/v1", "PyTorchJob"),
                          ("ray.io/v1", "RayJob")})
"""Kubernetes' own kinds and four add-ons (a member without the add-ons is made with a smaller set)."""
CONFIG_KINDS = frozenset({("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "ServiceAccount"),
                          ("scheduling.k8s.io/v1", "PriorityClass")})
"""What a workload's pods reference (`tenbin.services.dependencies`): every member serves them."""
RUN_ANNOTATION = "sim.tenbin.io/run-ticks"  # on a pod template: a Job pod succeeds after this many ticks


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` removes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# ------------------------------------------------------------------------------------------------ hub


@dataclass
class HubEvent:
    type: str  # ADDED, MODIFIED, DELETED
    kind: str
    body: Json


class MemoryHub:
    """The hub apiserver for Tenbin's own kinds, plus the Events the operator posts."""

    def __init__(self, now: Callable[[], float]) -> None:
        """`now`: the wall clock its timestamps come from."""
        self.now = now
        self.objects: dict[tuple[str, str, str], Json] = {}  # (kind, namespace or "", name)
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.watch: list[HubEvent] = []
        self.events: list[tuple[str, str, str, str]] = []  # (object key, type, reason, message)
        self.reachable = True
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)

    # ---- what the operator calls (HubClient's surface) ---------------------------------------

    async def list(self, kind: str) -> list[Json]:
        self._answer(f"list {kind}")
        return [copy.deepcopy(b) for (k, _, _), b in sorted(self.objects.items()) if k == kind]

    async def patch_status(self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any]) -> Json:
        self._answer(f"patch {kind} {namespace}/{name} status")
        body = self._get(kind, namespace, name)
        new = dict(body)
        new["status"] = merge_patch(body.get("status") or {}, (patch.get("status") or {}))
        return self._store(kind, new, spec_changed=False)

    async def patch(self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any]) -> Json:
        self._answer(f"patch {kind} {namespace}/{name}")
        return self.merge(kind, namespace, name, patch)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        self._answer(f"read Secret {namespace}/{name}")
        data = self.secrets.get((namespace, name))
        if data is None or key not in data:
            raise GatewayError(f"hub: Secret {namespace}/{name} key {key}: 404 Not Found", 404)
        return data[key]

    async def get_object(self, api_version: str, kind: str, namespace: str | None, name: str) -> Json | None:
        self._answer(f"get {kind} {namespace or ''}/{name}")
        return self.get(kind, namespace, name)

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = body.get("metadata") or {}
        self.events.append((f"{meta.get('namespace', '')}/{meta.get('name')}", type_, reason, message))

    # ---- what a user (kubectl) does --------------------------------------------------------------

    def create(self, body: Mapping[str, Any]) -> Json:
        kind, meta = body["kind"], dict(body.get("metadata") or {})
        key = (kind, meta.get("namespace", ""), meta["name"])
        if key in self.objects:
            raise GatewayError(f"hub: {kind} {meta['name']} already exists: 409 Conflict", 409)
        meta.update(uid=f"uid-{next(self._uid)}", generation=1, creationTimestamp=iso(self.now()))
        new = {**copy.deepcopy(dict(body)), "metadata": meta}
        new.pop("status", None)
        self.objects[key] = new
        return self._store(kind, new, spec_changed=False, event="ADDED")

    def merge(self, kind: str, namespace: str | None, name: str, changes: Mapping[str, Any]) -> Json:
        """A merge patch of the object (its status aside), with a resourceVersion precondition if given."""
        body = self._get(kind, namespace, name)
        patch: Json = copy.deepcopy(dict(changes))
        pmeta = dict(patch.get("metadata") or {})
        want_rv = pmeta.pop("resourceVersion", None)
        if want_rv is not None and str(want_rv) != body["metadata"]["resourceVersion"]:
            raise GatewayError(f"hub: patch {kind} {name}: 409 Conflict: the object has been modified", 409)
        for immutable in ("uid", "name", "namespace", "creationTimestamp", "generation", "deletionTimestamp"):
            pmeta.pop(immutable, None)
        patch["metadata"] = pmeta
        patch.pop("status", None)
        new = merge_patch(body, patch)
        if body["metadata"].get("deletionTimestamp") and \
                len(new["metadata"].get("finalizers") or []) > len(body["metadata"].get("finalizers") or []):
            raise GatewayError(f"hub: patch {kind} {name}: 422 Forbidden: no new finalizers can be added if "
                               "the object is being deleted", 422)
        return self._store(kind, new, spec_changed=new.get("spec") != body.get("spec"))

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        body = self._get(kind, namespace, name)
        if body["metadata"].get("finalizers"):
            if not body["metadata"].get("deletionTimestamp"):
                new = copy.deepcopy(body)
                new["metadata"]["deletionTimestamp"] = iso(self.now())
                self._store(kind, new, spec_changed=False)
            return
        self._remove(kind, body)

    def get(self, kind: str, namespace: str | None, name: str) -> Json | None:
        b = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(b) if b is not None else None

    # ---- inside ----------------------------------------------------------------------------------

    def _answer(self, what: str) -> None:
        if not self.reachable:
            raise GatewayError(f"hub: {what}: ConnectionRefusedError: [Errno 111] Connection refused")

    def _get(self, kind: str, namespace: str | None, name: str) -> Json:
        body = self.objects.get((kind, namespace or "", name))
        if body is None:
            raise GatewayError(f"hub: {kind} {namespace or ''}/{name}: 404 Not Found", 404)
        return body

    def _store(self, kind: str, new: Json, spec_changed: bool, event: str = "MODIFIED") -> Json:
        _validate(kind, new)
        meta = new["metadata"] = dict(new["metadata"])
        key = (kind, meta.get("namespace", ""), meta["name"])
        if spec_changed:
            meta["generation"] = int(meta.get("generation") or 1) + 1
        meta["resourceVersion"] = str(next(self._rv))
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(kind, new)
            return copy.deepcopy(new)
        self.objects[key] = new
        self.watch.append(HubEvent(event, kind, copy.deepcopy(new)))
        return copy.deepcopy(new)

    def _remove(self, kind: str, body: Json) -> None:
        meta = body["metadata"]
        self.objects.pop((kind, meta.get("namespace", ""), meta["name"]), None)
        self.watch.append(HubEvent("DELETED", kind, copy.deepcopy(body)))


def _validate(kind: str, body: Json) -> None:
    """What the CRD schema (generated from these very models) refuses, the apiserver answers 422."""
    from pydantic import ValidationError

    from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy

    model: Any = {"AIWorkload": AIWorkload, "GPUCluster": GPUCluster, "PlacementPolicy": PlacementPolicy}.get(kind)
    if model is None:
        return  # Kubernetes' own kinds (a ConfigMap, a Namespace): their schema is not what is tested here
    try:
        model.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise GatewayError(f"hub: {kind} {body['metadata'].get('name')} is invalid: {where}: {err['msg']}: "
                           "422 Unprocessable Entity", 422) from None


# ------------------------------------------------------------------------------------------- members


@dataclass
class Node:
    name: str
    product: str
    gpus: int
    taints: list[Json] = field(default_factory=list)
    ready: bool = True

    def api(self) -> Json:
        return {"metadata": {"name": self.name, "labels": {PRODUCT_LABEL: self.product,
                                                          "kubernetes.io/hostname": self.name}},
                "spec": {"taints": list(self.taints)},
                "status": {"capacity": {GPU_RESOURCE: str(self.gpus)}, "allocatable": {GPU_RESOURCE: str(self.gpus)},
                           "conditions": [{"type": "Ready", "status": "True" if self.ready else "False"}]}}


class MemoryMember:
    """One member cluster: the gateway the operator talks to, and the member's own controllers (`tick`)."""

    copies_dependencies = True

    def __init__(self, name: str, nodes: list[Node], rng: random.Random,
                 served: frozenset[tuple[str, str]] = SERVED_KINDS, bind_chance: float = 1.0,
                 discovers: bool = True) -> None:
        """`bind_chance`: how likely the scheduler gets to a pending pod in one tick (a busy scheduler leaves
        pods placed but unbound across several of the operator's observations)."""
        self.name = name
        self.nodes = nodes
        self.bind_chance = bind_chance
        self.rng = rng
        self.served = served
        self.discovers = discovers  # reports the served kinds with each observation (else only refuses them)
        self.reachable = True
        self.objects: dict[ObjectRef, Json] = {}
        self.config: dict[ObjectRef, Json] = {}  # ConfigMaps, Secrets, ServiceAccounts, PriorityClasses
        self.writes: list[ObjectRef] = []  # every apply, in order (a dependency comes before its workload)
        self.pods: dict[tuple[str, str], Json] = {}  # (namespace, name)
        self.garbage: list[ObjectRef] = []  # deleted objects whose pods go at the next tick
        self.created: list[tuple[ObjectRef, Json]] = []  # objects created since the last look
        self.applied_while_deleting: list[ObjectRef] = []  # applies onto an object being deleted (a lost write)
        self.applies = 0
        self._seq = itertools.count(1)

    # ---- the gateway ---------------------------------------------------------------------------

    def want_kinds(self, kinds: frozenset[tuple[str, str]]) -> None:
        """Nothing to ask: this member reports every kind it serves (`served`) with each observation."""

    async def observe(self) -> MemberObservation:
        self._answer("observe")
        nodes = [n.api() for n in self.nodes]
        pods: list[Mapping[str, Any]] = [p for p in self.pods.values()
                                         if p["status"]["phase"] not in TERMINAL_POD_PHASES]
        by_uid = pods_by_uid(pods)
        observed: dict[str, ObservedObject] = {}
        for obj in self.objects.values():
            labels = obj["metadata"].get("labels") or {}
            uid = labels.get(UID_LABEL)
            if uid and labels.get(MANAGED_BY_LABEL) == MANAGED_BY:
                observed[uid] = observed_object(copy.deepcopy(obj), uid, by_uid.get(uid, []))
        return MemberObservation(inventory_from_objects(nodes, pods), observed,
                                 self.served if self.discovers else None)

    async def apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = ObjectRef.of(obj)
        self._answer(f"apply {ref}")
        if (ref.api_version, ref.kind) in CONFIG_KINDS:
            return self._apply_config(ref, obj)
        if (ref.api_version, ref.kind) not in self.served:
            raise GatewayError(f"{self.name}: the member does not serve {ref.kind} in {ref.api_version}", 404)
        new = copy.deepcopy(dict(obj))
        old = self.objects.get(ref)
        if old is not None:
            batch_job = (ref.api_version, ref.kind) == ("batch/v1", "Job")
            if batch_job and (old["spec"].get("template") != new["spec"].get("template")):
                raise GatewayError(f"{self.name}: apply {ref}: 422 Unprocessable Entity", 422,
                                   f'Job.batch "{ref.name}" is invalid: spec.template: Invalid value: field is '
                                   "immutable")
            new["status"] = old.get("status") or {}
            if old["metadata"].get("deletionTimestamp"):
                self.applied_while_deleting.append(ref)  # accepted, and lost with the object in a moment
            keep = {k: old["metadata"][k] for k in ("uid", "deletionTimestamp", "finalizers") if k in old["metadata"]}
            new["metadata"] = {**new["metadata"], **keep}  # an object being deleted stays so
            if not batch_job and old["spec"].get("template") != new["spec"].get("template"):
                for key in [k for k, p in self.pods.items() if self._owner(p) == ref]:
                    del self.pods[key]  # a rollout: the old pods go, the controller makes new ones
        else:
            new["metadata"] = {**new["metadata"], "uid": f"{self.name}-{next(self._seq)}"}
            new["status"] = {}
            self.created.append((ref, copy.deepcopy(new)))
        self.objects[ref] = new
        self.applies += 1
        self.writes.append(ref)
        self._reconcile(ref)
        return copy.deepcopy(new)

    def _apply_config(self, ref: ObjectRef, obj: Mapping[str, Any]) -> Json:
        """Server-side apply of a configuration object: the applied fields replace ours, the owners stay."""
        old = self.config.get(ref)
        if old is not None and old.get("immutable") and old.get("data") != obj.get("data"):
            raise GatewayError(f"{self.name}: apply {ref}: 422 Unprocessable Entity", 422,
                               f'{ref.kind} "{ref.name}" is invalid: data: Forbidden: field is immutable when '
                               "`immutable` is set")
        new = copy.deepcopy(dict(obj))
        keep = {k: old["metadata"][k] for k in ("uid", "ownerReferences") if old and k in old["metadata"]}
        new["metadata"] = {**new["metadata"], "uid": f"{self.name}-{next(self._seq)}", **keep,
                           "resourceVersion": str(next(self._seq))}
        self.config[ref] = new
        self.writes.append(ref)
        return copy.deepcopy(new)

    async def get(self, ref: ObjectRef) -> Mapping[str, Any] | None:
        self._answer(f"get {ref}")
        found = self.config.get(ref) if (ref.api_version, ref.kind) in CONFIG_KINDS else self.objects.get(ref)
        return copy.deepcopy(found) if found is not None else None

    async def add_owner(self, ref: ObjectRef, owner: Mapping[str, Any]) -> None:
        self._answer(f"add an owner to {ref}")
        obj = self.config.get(ref) or self.objects.get(ref)
        if obj is None:
            raise GatewayError(f"{self.name}: patch {ref}: 404 Not Found", 404)
        owners = [o for o in obj["metadata"].get("ownerReferences") or [] if o.get("uid") != owner.get("uid")]
        obj["metadata"]["ownerReferences"] = [*owners, dict(owner)]
        obj["metadata"]["resourceVersion"] = str(next(self._seq))

    async def orphans(self) -> list[Json]:
        self._answer("list dependencies")
        return [copy.deepcopy(o) for r, o in self.config.items() if r.kind != "PriorityClass"
                and (o["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
                and not o["metadata"].get("ownerReferences")]

    async def delete_unchanged(self, ref: ObjectRef, resource_version: str) -> bool:
        self._answer(f"delete {ref}")
        obj = self.config.get(ref)
        if obj is None or obj["metadata"].get("resourceVersion") != resource_version:
            return False
        del self.config[ref]
        return True

    async def delete(self, ref: ObjectRef) -> bool:
        """propagationPolicy Foreground, as the Kubernetes gateway deletes: the object stays, marked, until
        the garbage collector has removed its pods (at the next tick), then it goes."""
        self._answer(f"delete {ref}")
        obj = self.objects.get(ref)
        if obj is None:
            return False
        if not obj["metadata"].get("deletionTimestamp"):
            obj["metadata"]["deletionTimestamp"] = "deleting"
            obj["metadata"]["finalizers"] = [*obj["metadata"].get("finalizers", []), "foregroundDeletion"]
            self.garbage.append(ref)
        return True

    async def annotate(self, ref: ObjectRef, annotations: Mapping[str, str | None]) -> None:
        self._answer(f"annotate {ref}")
        obj = self.objects.get(ref)
        if obj is None:
            raise GatewayError(f"{self.name}: annotate {ref}: 404 Not Found", 404)
        obj["metadata"]["annotations"] = merge_patch(obj["metadata"].get("annotations") or {}, dict(annotations))

    async def close(self) -> None:
        return None

    # ---- the member's own controllers ----------------------------------------------------------

    def tick(self) -> None:
        """One round of the member's controllers: garbage collection, pods from templates, the scheduler
        (a random fitting node per pod, so pods spread), pods that finish, object status."""
        for ref in self.garbage:
            for key in [k for k, p in self.pods.items() if self._owner(p) == ref]:
                del self.pods[key]
            self.objects.pop(ref, None)
        self.garbage.clear()
        self._collect_config()
        for p in self.pods.values():
            if p["spec"].get("nodeName") and p["status"]["phase"] == "Running" and p.get("_ticks_left") is not None:
                p["_ticks_left"] -= 1
                if p["_ticks_left"] <= 0:
                    p["status"]["phase"] = "Succeeded"
        for ref in list(self.objects):
            self._reconcile(ref)
        self._schedule()
        for ref in list(self.objects):
            self._write_status(ref)

    def _collect_config(self) -> None:
        """The garbage collector for owned configuration: dangling owners are dropped; an object whose
        owners are all gone goes (one without owners stays, as Kubernetes keeps it)."""
        alive = {o["metadata"].get("uid") for o in self.objects.values()}
        for ref, obj in list(self.config.items()):
            owners = obj["metadata"].get("ownerReferences") or []
            if not owners:
                continue
            left = [o for o in owners if o.get("uid") in alive]
            if left:
                obj["metadata"]["ownerReferences"] = left
            else:
                del self.config[ref]

    def _owner(self, pod: Json) -> ObjectRef | None:
        return pod.get("_owner")

    def _templates(self, obj: Json) -> list[tuple[Json, int]]:
        """(pod template, pods wanted now) of an object, per pod template of its kind (`tenbin.kinds`)."""
        spec = obj.get("spec") or {}
        ref = ObjectRef.of(obj)
        known = BUILT_IN.of(obj)  # the controllers this member runs: the built-in kinds' (a declared kind's
        if known is None:         # CRD is served, but no controller makes its pods: status is set from outside)
            return []
        kind = known.kind
        if kind == "Pod":
            return [({"metadata": obj["metadata"], "spec": spec}, 1)]
        if kind == "Job":
            done = sum(1 for p in self.pods.values()
                       if self._owner(p) == ref and p["status"]["phase"] == "Succeeded")
            left = int(spec.get("completions") or 1) - done
            return [(spec["template"], max(0, min(int(spec.get("parallelism") or 1), left)))]
        out = []
        for i, group in enumerate(known.pod_groups(obj)):
            want = group.pods
            if not known.long_running:  # run-once: a pod that succeeded is not made again
                want -= sum(1 for p in self.pods.values() if self._owner(p) == ref and p.get("_group") == i
                            and p["status"]["phase"] == "Succeeded")
            out.append((get_in(obj, group.path), max(0, want)))
        return out

    def _reconcile(self, ref: ObjectRef) -> None:
        obj = self.objects[ref]
        if obj["metadata"].get("deletionTimestamp"):
            return  # being deleted: its controller makes no more pods
        if any(c.get("type") in ("Complete", "Completed", "Failed") and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or []):
            return
        for group, (template, want) in enumerate(self._templates(obj)):
            mine = [k for k, p in self.pods.items() if self._owner(p) == ref and p.get("_group", 0) == group
                    and p["status"]["phase"] not in TERMINAL_POD_PHASES]
            for key in mine[want:]:
                del self.pods[key]
            for _ in range(want - len(mine)):
                name = f"{ref.name}-{next(self._seq)}"
                meta = copy.deepcopy(template.get("metadata") or {})
                pod = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {**meta, "name": name, "namespace": ref.namespace},
                       "spec": copy.deepcopy(template.get("spec") or {}), "status": {"phase": "Pending"},
                       "_owner": ref, "_group": group}
                run = (meta.get("annotations") or {}).get(RUN_ANNOTATION)
                run_once = not BUILT_IN.long_running(obj)
                pod["_ticks_left"] = int(run) if run and run_once else None
                self.pods[(ref.namespace, name)] = pod

    def _used(self) -> dict[str, int]:
        used: dict[str, int] = {}
        for p in self.pods.values():
            node = p["spec"].get("nodeName")
            if node and p["status"]["phase"] not in TERMINAL_POD_PHASES:
                used[node] = used.get(node, 0) + pod_gpu_request(p)
        return used

    def _schedule(self) -> None:
        pending = [p for p in self.pods.values() if not p["spec"].get("nodeName")]
        self.rng.shuffle(pending)
        used = self._used()
        for pod in pending:
            if self.rng.random() >= self.bind_chance:
                continue  # not this round
            need = pod_gpu_request(pod)
            fits = [n for n in self.nodes if n.ready and n.gpus - used.get(n.name, 0) >= need
                    and _affinity_allows(pod, n) and tolerates(pod["spec"].get("tolerations") or [], n.taints)]
            if not fits:
                msg = f"0/{len(self.nodes)} nodes are available: {len(self.nodes)} Insufficient {GPU_RESOURCE}."
                pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                                "reason": "Unschedulable", "message": msg}]
                continue
            node = self.rng.choice(fits)
            pod["spec"]["nodeName"] = node.name
            pod["status"] = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"},
                                                                {"type": "Ready", "status": "True"}]}
            used[node.name] = used.get(node.name, 0) + need

    def _write_status(self, ref: ObjectRef) -> None:
        obj = self.objects[ref]
        if BUILT_IN.of(obj) is None:
            return  # a declared kind: no controller here writes its status (a test does, as its controller would)
        pods = [p for p in self.pods.values() if self._owner(p) == ref]
        running = sum(1 for p in pods if p["status"]["phase"] == "Running")
        if ref.kind == "Job":
            spec = obj.get("spec") or {}
            succeeded = sum(1 for p in pods if p["status"]["phase"] == "Succeeded")
            status = dict(obj.get("status") or {})
            status.update(active=sum(1 for p in pods if p["status"]["phase"] in ("Pending", "Running")),
                          ready=running, succeeded=succeeded)
            if succeeded >= int(spec.get("completions") or 1):
                status["conditions"] = [{"type": "Complete", "status": "True"}]
            obj["status"] = status
        elif ref.kind == "Pod":
            pod = pods[0] if pods else None
            obj["status"] = {"phase": pod["status"]["phase"]} if pod else {"phase": "Pending"}
        elif ref.kind == "JobSet":  # as the JobSet controller reports it: per replicated job, jobs ready
            status = {"replicatedJobsStatus": []}
            finished = True
            for i, (group, rj) in enumerate(zip(KINDS["JobSet"].pod_groups(obj), obj["spec"]["replicatedJobs"],
                                                strict=True)):
                mine = [p for p in pods if p.get("_group") == i]
                ok = sum(1 for p in mine if p["status"]["phase"] in ("Running", "Succeeded"))
                finished &= sum(1 for p in mine if p["status"]["phase"] == "Succeeded") >= group.pods
                jobs = int(rj.get("replicas") or 1)
                status["replicatedJobsStatus"].append(
                    {"name": rj["name"], "ready": jobs if ok >= group.pods else 0, "active": jobs})
            if finished:
                status["conditions"] = [{"type": "Completed", "status": "True", "reason": "AllJobsCompleted"}]
            obj["status"] = status
        elif ref.kind in ("PyTorchJob", "RayJob"):  # as the training operator / KubeRay report it
            want = sum(g.pods for g in KINDS[ref.kind].pod_groups(obj))
            done = sum(1 for p in pods if p["status"]["phase"] == "Succeeded") >= want
            if ref.kind == "PyTorchJob":
                conditions = [{"type": "Created", "status": "True"}]
                if running >= want or done:
                    conditions.append({"type": "Running", "status": "False" if done else "True"})
                if done:
                    conditions.append({"type": "Succeeded", "status": "True"})
                obj["status"] = {"conditions": conditions}
            else:
                obj["status"] = ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"} if done else
                                 {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"} if running >= want else
                                 {"jobDeploymentStatus": "Initializing"})
        elif ref.kind == "LeaderWorkerSet":  # groups ready once all their pods run
            want = sum(g.pods for g in KINDS["LeaderWorkerSet"].pod_groups(obj))
            groups = int((obj.get("spec") or {}).get("replicas") or 1)
            obj["status"] = {"replicas": groups, "readyReplicas": groups if running >= want else 0}
        else:
            obj["status"] = {"replicas": len(pods), "readyReplicas": running}

    def _answer(self, what: str) -> None:
        if not self.reachable:
            raise GatewayError(f"{self.name}: {what}: ConnectionRefusedError: [Errno 111] Connection refused")

    # ---- for the simulation's invariants -------------------------------------------------------

    def created_since_check(self) -> list[tuple[ObjectRef, Json]]:
        out, self.created = self.created, []
        return out

    def live_pods(self) -> list[Json]:
        return [p for p in self.pods.values() if p["status"]["phase"] not in TERMINAL_POD_PHASES]


def _affinity_allows(pod: Json, node: Node) -> bool:
    """Required node affinity (In / NotIn / Exists / DoesNotExist over node labels) and nodeSelector."""
    labels = node.api()["metadata"]["labels"]
    spec = pod["spec"]
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True

    def holds(e: Mapping[str, Any]) -> bool:
        value, op = labels.get(e["key"]), e["operator"]
        if op == "In":
            return value in (e.get("values") or [])
        if op == "NotIn":
            return value not in (e.get("values") or [])
        if op == "Exists":
            return value is not None
        if op == "DoesNotExist":
            return value is None
        return False

    return any(all(holds(e) for e in t.get("matchExpressions") or []) for t in terms)
