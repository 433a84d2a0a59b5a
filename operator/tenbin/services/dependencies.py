"""What a workload's pods reference in the hub (ConfigMaps, Secrets, ServiceAccounts, PriorityClasses), copied
into the member before the workload, kept in sync, and removed with it.

Found the way Karmada's dependencies distributor finds them: from the pod templates (every template of the kind,
see `tenbin.kinds`): volumes and projected sources, ``envFrom``, ``env[].valueFrom`` of every container, image
pull secrets, the service account and the priority class. PersistentVolumeClaims are data, not configuration:
they are never copied (a volume claim names storage the member must have).

- **Removed with it**: each namespaced copy carries an ownerReference to the member's copy of every workload that
  uses it, so the member's own garbage collector deletes it once the last of them is gone - on every path
  that removes a workload (deletion, a move's stopped source, a drained cluster), with no bookkeeping here.
- **Never taken over**: an object of that name the member already has and Tenbin did not make (no
  ``app.kubernetes.io/managed-by: tenbin``) is left as it is.
- **Secrets are opt-in**: copied only from a hub namespace labelled ``tenbin.io/copy-secrets: "true"`` and for a
  workload whose classification the policy lists in ``spec.copySecretsFor``; otherwise the member must have the
  Secret itself (External Secrets, a sealed secret), and the ``DependenciesSynced`` condition says when it does not.
- **PriorityClasses** are cluster-scoped and shared by every namespace: created in the member when missing,
  never changed or removed by a workload (Kubernetes allows no namespaced owner for a cluster-scoped object).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenbin.api import ConditionStatus, Reason, WorkloadCondition
from tenbin.clusters.gateway import (
    HUB_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ClusterGateway,
    GatewayError,
    ObjectRef,
)
from tenbin.kinds import BUILT_IN, Kinds
from tenbin.services.member_objects import pod_templates, workload_key
from tenbin.services.state import ClusterState
from tenbin.services.status import workload_status
from tenbin.services.world import World

log = logging.getLogger("tenbin")

COPY_SECRETS_LABEL = "tenbin.io/copy-secrets"
HASH_ANNOTATION = "tenbin.io/content-hash"
DEPENDENCY_LABEL = "tenbin.io/dependency"
SKIPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)

API_VERSIONS = {"ConfigMap": "v1", "Secret": "v1", "ServiceAccount": "v1", "PriorityClass": "scheduling.k8s.io/v1"}
CONTENT = {  # the fields of each kind that make up the copy (the rest is the hub's own bookkeeping)
    "ConfigMap": ("data", "binaryData", "immutable"),
    "Secret": ("type", "data", "immutable"),
    "ServiceAccount": ("automountServiceAccountToken", "imagePullSecrets"),
    "PriorityClass": ("value", "preemptionPolicy", "description"),
}
ORDER = ("PriorityClass", "ServiceAccount", "ConfigMap", "Secret")


@dataclass(frozen=True, order=True)
class Dependency:
    kind: str
    namespace: str  # "" for a PriorityClass
    name: str

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(API_VERSIONS[self.kind], self.kind, self.namespace, self.name)

    @property
    def namespaced(self) -> bool:
        return self.kind != "PriorityClass"

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespaced else f"{self.kind} {self.name}"


def referenced(obj: Mapping[str, Any], namespace: str, kinds: Kinds = BUILT_IN) -> list[tuple[Dependency, bool]]:
    """(dependency, optional) for everything the pod templates of `obj` (a workload template) reference, each
    once (required wins over optional), in the order they are copied: classes and accounts, then config."""
    found: dict[Dependency, bool] = {}

    def add(kind: str, name: Any, optional: Any = False) -> None:
        if not isinstance(name, str) or not name:
            return
        dep = Dependency(kind, "" if kind == "PriorityClass" else namespace, name)
        found[dep] = found.get(dep, True) and bool(optional)

    for tmpl in pod_templates(dict(obj), kinds):
        spec = tmpl.get("spec") or {}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount")
        if account != "default":
            add("ServiceAccount", account)
        priority = spec.get("priorityClassName")
        if isinstance(priority, str) and not priority.startswith("system-"):
            add("PriorityClass", priority)
        for s in spec.get("imagePullSecrets") or []:
            add("Secret", (s or {}).get("name"))
        for v in spec.get("volumes") or []:
            cm, sec = v.get("configMap") or {}, v.get("secret") or {}
            add("ConfigMap", cm.get("name"), cm.get("optional"))
            add("Secret", sec.get("secretName"), sec.get("optional"))
            for src in (v.get("projected") or {}).get("sources") or []:
                cm, sec = src.get("configMap") or {}, src.get("secret") or {}
                add("ConfigMap", cm.get("name"), cm.get("optional"))
                add("Secret", sec.get("name"), sec.get("optional"))
        for c in _containers(spec):
            for ef in c.get("envFrom") or []:
                cm, sec = ef.get("configMapRef") or {}, ef.get("secretRef") or {}
                add("ConfigMap", cm.get("name"), cm.get("optional"))
                add("Secret", sec.get("name"), sec.get("optional"))
            for env in c.get("env") or []:
                vf = (env or {}).get("valueFrom") or {}
                cm, sec = vf.get("configMapKeyRef") or {}, vf.get("secretKeyRef") or {}
                add("ConfigMap", cm.get("name"), cm.get("optional"))
                add("Secret", sec.get("name"), sec.get("optional"))
    return sorted(found.items(), key=lambda kv: (ORDER.index(kv[0].kind), kv[0].name))


def _containers(spec: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for k in ("initContainers", "containers", "ephemeralContainers"):
        yield from (c for c in spec.get(k) or [] if isinstance(c, Mapping))


def member_copy(hub_obj: Mapping[str, Any], dep: Dependency) -> dict[str, Any]:
    """The object to apply in the member for a hub object: its content, labels and annotations, marked as
    Tenbin's (so it is never mistaken for the member's own), with a hash of that content (so an unchanged copy
    is not written again). A copied PriorityClass is never the member's global default."""
    meta = hub_obj.get("metadata") or {}
    out: dict[str, Any] = {"apiVersion": API_VERSIONS[dep.kind], "kind": dep.kind}
    for k in CONTENT[dep.kind]:
        if hub_obj.get(k) is not None:
            out[k] = hub_obj[k]
    if dep.kind == "PriorityClass":
        out["globalDefault"] = False
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in SKIPPED_ANNOTATIONS}
    annotations[HUB_ANNOTATION] = str(dep)
    labels = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY, DEPENDENCY_LABEL: "true"}
    out["metadata"] = {"name": dep.name, **({"namespace": dep.namespace} if dep.namespaced else {}),
                       "labels": labels, "annotations": annotations}
    digest = hashlib.sha256(json.dumps(out, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    out["metadata"]["annotations"][HASH_ANNOTATION] = digest
    return out


def secrets_refused(namespace_obj: Mapping[str, Any] | None, classification: str,
                    allowed: Iterable[str]) -> str | None:
    """Why this workload's Secrets are not copied, or None when they are: the hub namespace must opt in
    (label tenbin.io/copy-secrets=true) and the policy must allow the workload's classification."""
    labels = ((namespace_obj or {}).get("metadata") or {}).get("labels") or {}
    if labels.get(COPY_SECRETS_LABEL) != "true":
        return f"namespace not labelled {COPY_SECRETS_LABEL}=true"
    if classification not in set(allowed):
        return f"the policy's spec.copySecretsFor does not list {classification}"
    return None


@dataclass
class DependencyReport:
    """What one sync of a workload's dependencies into one member did, for its status and its owners step."""

    cluster: str
    copied: list[Dependency] = field(default_factory=list)
    """Tenbin's copies in the member (written now or already current)."""
    owners: dict[Dependency, frozenset[str]] = field(default_factory=dict)
    """The member owner UIDs each namespaced copy already has."""
    present: list[tuple[Dependency, str]] = field(default_factory=list)
    """Left as the member has it, and why (the member's own object; a Secret that is not copied)."""
    problems: list[tuple[Dependency, str]] = field(default_factory=list)
    """What keeps the pods from starting: not in the hub, not copied and not in the member, refused."""
    wanted: dict[Dependency, dict[str, Any]] = field(default_factory=dict)
    """The copy of each, as applied (to apply again should it vanish before it is owned)."""
    fresh: dict[Dependency, str] = field(default_factory=dict)
    """Copies this sync wrote that no workload owns yet, with the resourceVersion written: withdrawn when the
    workload itself is then refused (a kind the member does not serve), rather than left to the sweep."""

    @property
    def any(self) -> bool:
        return bool(self.copied or self.present or self.problems)

    def message(self) -> str:
        parts = []
        if self.problems:
            parts.append("; ".join(f"{d}: {why}" for d, why in self.problems[:5])
                         + (f" (+{len(self.problems) - 5} more)" if len(self.problems) > 5 else ""))
        if self.copied:
            parts.append(f"copied to {self.cluster}: " + ", ".join(str(d) for d in self.copied[:8])
                         + (" ..." if len(self.copied) > 8 else ""))
        if self.present:
            parts.append("the member's own: " + ", ".join(f"{d} ({why})" for d, why in self.present[:5]))
        return "; ".join(parts)[:1024] or "the pod templates reference nothing to copy"


class ObjectReader(Protocol):
    async def get_object(self, api_version: str, kind: str, namespace: str | None,
                         name: str) -> Mapping[str, Any] | None: ...


class DependencyWriter(Protocol):
    async def get(self, ref: ObjectRef) -> Mapping[str, Any] | None: ...

    async def apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]: ...

    async def add_owner(self, ref: ObjectRef, owner: Mapping[str, Any]) -> None: ...


def is_tenbins(obj: Mapping[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


async def sync(hub: ObjectReader, member: DependencyWriter, cluster: str, template: Mapping[str, Any],
               namespace: str, classification: str, copy_secrets_for: Iterable[str], kinds: Kinds = BUILT_IN
               ) -> DependencyReport:
    """Copy what `template` references from the hub `namespace` into the member, before the workload is
    applied there. Unchanged copies are not written again. A transient error (either side unreachable)
    raises; a refusal by the member is reported, and the workload is applied all the same (its pods wait
    for what is missing, as they would in one cluster, and the condition says what)."""
    report = DependencyReport(cluster)
    deps = referenced(template, namespace, kinds)
    if not deps:
        return report
    secrets_why: str | None = None
    if any(d.kind == "Secret" for d, _ in deps):
        try:
            ns_obj = await hub.get_object("v1", "Namespace", None, namespace)
        except GatewayError as e:
            if e.transient:
                raise
            ns_obj = None  # not allowed to read it (the chart's RBAC): no opt-in can be seen
        secrets_why = secrets_refused(ns_obj, classification, copy_secrets_for)
    for dep, optional in deps:
        try:
            theirs = await member.get(dep.ref)
        except GatewayError as e:
            if e.transient:
                raise
            report.problems.append((dep, f"cannot be read in {cluster} ({e.status}): see the member chart's "
                                         "hubAccess.dependencies"))
            continue
        if theirs is not None and not is_tenbins(theirs):
            report.present.append((dep, "not made by Tenbin: left as it is"))
            continue
        if dep.kind == "Secret" and secrets_why is not None:
            if theirs is not None:
                report.copied.append(dep)  # copied while it was allowed: kept (and owned) until the workload goes
                report.owners[dep] = _owner_uids(theirs)
            elif not optional:
                report.problems.append((dep, f"not copied ({secrets_why}) and not in {cluster}"))
            continue
        if theirs is not None and dep.kind == "PriorityClass":
            report.copied.append(dep)
            continue
        try:
            source = await hub.get_object(dep.ref.api_version, dep.kind, dep.namespace or None, dep.name)
        except GatewayError as e:
            if e.transient:
                raise
            report.problems.append((dep, f"cannot be read in the hub ({e.status}): see the chart's dependencies "
                                         "values"))
            continue
        if source is None:
            if not optional:
                report.problems.append((dep, "not found in the hub"))
            continue
        want = member_copy(source, dep)
        report.wanted[dep] = want
        if theirs is None or _hash(theirs) != _hash(want):
            try:
                theirs = await member.apply(want)
            except GatewayError as e:
                if e.transient:
                    raise
                report.problems.append((dep, f"{cluster} refused it: {(e.detail or str(e))[:200]}"))
                continue
            rv = (theirs.get("metadata") or {}).get("resourceVersion")
            if dep.namespaced and rv and not _owner_uids(theirs):
                report.fresh[dep] = str(rv)
        report.copied.append(dep)
        if dep.namespaced:
            report.owners[dep] = _owner_uids(theirs)
    return report


async def _withdraw(gw: ClusterGateway, report: DependencyReport) -> None:
    """Delete the copies a sync just wrote for a workload the member then refused, unless changed or owned
    since (the resourceVersion precondition); what cannot be deleted now is left to the orphan sweep."""
    for dep, rv in report.fresh.items():
        try:
            await gw.delete_unchanged(dep.ref, rv)
        except GatewayError as e:
            log.info("%s: withdrawing %s: %s (the orphan sweep removes it)", report.cluster, dep, e)


async def own(member: DependencyWriter, report: DependencyReport, workload: Mapping[str, Any]) -> None:
    """After the workload is applied: make its member object an owner of each namespaced copy (the member's
    garbage collector then removes a copy with the last workload that uses it)."""
    meta = workload.get("metadata") or {}
    uid = meta.get("uid")
    if not uid:
        return
    owner = {"apiVersion": workload["apiVersion"], "kind": workload["kind"], "name": meta["name"], "uid": uid}
    for dep in report.copied:
        if dep.namespaced and uid not in report.owners.get(dep, frozenset()):
            try:
                try:
                    await member.add_owner(dep.ref, owner)
                except GatewayError as e:
                    if e.status != 404 or dep not in report.wanted:
                        raise
                    # an unowned copy the orphan sweep removed just now (it was left over before): copy it again
                    await member.apply(report.wanted[dep])
                    await member.add_owner(dep.ref, owner)
            except GatewayError as e:
                if e.transient:
                    raise
                report.problems.append((dep, f"could not be made owned by the workload ({e.status}): it would "
                                             "stay in the member after it"))
                continue
            report.owners[dep] = report.owners.get(dep, frozenset()) | {uid}


def _owner_uids(obj: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(o.get("uid")) for o in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _hash(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)


class DependencyCopier:
    """Copies a workload's dependencies around each apply of it into a member, keeps them in sync while it is
    placed, and says how they stand (condition DependenciesSynced, one event when something is missing)."""

    def __init__(self, world: World) -> None:
        self.w = world

    async def apply(self, key: str, st: ClusterState, body: Mapping[str, Any],
                    obj: Mapping[str, Any]) -> Mapping[str, Any]:
        """Apply `obj` (the member object of `body`) into `st`'s member, its dependencies first; returns what
        the member answered. Member errors propagate as the workload apply's own."""
        gw = st.gateway
        assert gw is not None
        report = await self._copy(st, body)
        try:
            out = await gw.apply(obj)
        except GatewayError as e:
            if report is not None and not e.transient:  # refused (not served, invalid): it never arrives
                await _withdraw(gw, report)
            raise
        if report is not None:
            await own(gw, report, out)
            await self._report(key, body, report)
        return out

    def due(self, key: str) -> bool:
        """Time to compare this workload's dependencies with the hub again. When not yet, the comparison is
        (re)scheduled: a sooner reconcile of the workload (an event, a nudge) takes its retry slot."""
        last = self.w.dependencies_synced_at.get(key)
        if last is None or self.w.clock.monotonic() - last >= self.w.config.dependency_resync_seconds:
            return True
        self._arm(key, last + self.w.config.dependency_resync_seconds)
        return False

    def _arm(self, key: str, at: float) -> None:
        if self.w.retry_at.get(key, math.inf) > at:
            self.w.retry_at[key] = at

    async def resync(self, key: str, st: ClusterState, body: Mapping[str, Any], observed: Mapping[str, Any]) -> None:
        """A placed workload whose copy the member has: copy what changed in the hub, own what is not yet."""
        if st.gateway is None:
            return
        report = await self._copy(st, body)
        if report is not None:
            await own(st.gateway, report, observed)
            await self._report(key, body, report)

    async def _copy(self, st: ClusterState, body: Mapping[str, Any]) -> DependencyReport | None:
        """None when the template references nothing (no condition at all then)."""
        key = workload_key(body)
        tmpl = body["spec"]["template"]
        ns = body["metadata"].get("namespace", "default")
        if not referenced(tmpl, ns, self.w.kinds):
            self.w.dependencies_synced_at.pop(key, None)
            return None
        now = self.w.dependencies_synced_at[key] = self.w.clock.monotonic()
        self._arm(key, now + self.w.config.dependency_resync_seconds)  # the next comparison with the hub
        report = DependencyReport(st.name)
        gw = st.gateway
        if gw is None or not gw.copies_dependencies:
            first = referenced(tmpl, ns, self.w.kinds)[0][0]
            report.present.append((first, "not copied through this member's gateway"))
            return report
        spec = body.get("spec") or {}
        policy = self.w.policy  # the PlacementPolicy as written (None: no Secret is copied)
        allowed = [str(c) for c in policy.spec.copy_secrets_for] if policy is not None else []
        classification = str((spec.get("residency") or {}).get("dataClassification") or "Internal")
        try:
            return await sync(self.w.hub, gw, st.name, tmpl, ns, classification, allowed, self.w.kinds)
        except GatewayError:
            self.w.metrics.member_errors.labels(st.name, "dependencies").inc()
            raise

    async def _report(self, key: str, body: Mapping[str, Any], report: DependencyReport) -> None:
        gw = self.w.clusters[report.cluster].gateway if report.cluster in self.w.clusters else None
        latest = self.w.workloads.get(key) or body
        status = latest.get("status") or {}
        if gw is not None and not gw.copies_dependencies:
            state, reason = ConditionStatus.UNKNOWN, Reason.DEPENDENCIES_NOT_COPIED
            text = (f"{report.cluster}'s gateway does not copy the ConfigMaps, Secrets, ServiceAccounts and "
                    "PriorityClasses the pod templates reference; the member must have them")
        elif report.problems:
            state, reason, text = ConditionStatus.FALSE, Reason.DEPENDENCY_MISSING, report.message()
        else:
            state, reason, text = ConditionStatus.TRUE, Reason.DEPENDENCIES_SYNCED, report.message()
        now = next((c for c in status.get("conditions") or []
                    if c.get("type") == WorkloadCondition.DEPENDENCIES_SYNCED), None)
        if now is not None and (now.get("status"), now.get("reason"), now.get("message")) == (state, reason, text):
            return  # nothing new to say: no write, no event
        meta = latest["metadata"]
        conditions = self.w.condition(list(status.get("conditions") or []), WorkloadCondition.DEPENDENCIES_SYNCED,
                                      state, reason, text, int(meta.get("generation") or 0))
        self.w.workloads[key] = await self.w.hub.patch_status(
            "AIWorkload", meta["namespace"], meta["name"], workload_status(conditions=conditions))
        if state == ConditionStatus.FALSE:
            self.w.post_event(latest, "Warning", reason, text)


async def sweep_orphans(st: ClusterState, seen_before: frozenset[tuple[ObjectRef, str]]) -> frozenset[
        tuple[ObjectRef, str]]:
    """Remove Tenbin's dependency copies that no workload object in the member owns, found unchanged in two
    sweeps in a row (a copy is owned a moment after it is made, so one seen unowned twice is left from an apply
    that never came - a member that went away, a refused workload). Returns this sweep's (ref, version) set."""
    gw = st.gateway
    if gw is None:
        return frozenset()
    now = frozenset((ObjectRef.of(o), str((o.get("metadata") or {}).get("resourceVersion") or ""))
                    for o in await gw.orphans())
    # a placement may adopt one between the listing and the deletion: the precondition keeps a copy it has
    # owned by then; one deleted just before its owner is added is copied again by that placement (`own`)
    for ref, version in sorted(now & seen_before, key=str):
        if await gw.delete_unchanged(ref, version):
            log.info("%s: removed %s, which no workload there uses any more", st.name, ref)
    return now
