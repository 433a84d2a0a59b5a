"""A member cluster reached through Karmada: Tenbin decides, Karmada propagates.

For the member ``X`` (the Karmada ``Cluster`` named in ``spec.connection.karmada.clusterName``):

- ``apply(obj)`` writes the object into the Karmada apiserver as a *resource template*, plus a
  ``PropagationPolicy`` named after it whose ``placement.clusterAffinity.clusterNames`` is exactly ``[X]``:
  Karmada's scheduler has one candidate, so it confirms Tenbin's choice instead of making its own.
  A migration re-pins: the target's gateway applies the same template with a policy pinned to the target.
- ``observe()`` returns
  * X's GPU inventory from X's own Nodes and Pods, read through Karmada's cluster proxy
    (``/apis/cluster.karmada.io/v1alpha1/clusters/X/proxy/...``, Karmada's credentials only). The Cluster's
    ``resourceSummary`` also counts ``nvidia.com/gpu``, but only as one cluster-wide sum: no GPU model, no
    per-node free GPUs (a 4-GPU pod needs 4 free on ONE node), and refreshed only every status period;
  * the objects pinned to X, as Karmada sees them: the template with the status Karmada collected from X
    (``ResourceBinding.status.aggregatedStatus`` for X; a Job's ``ready`` is there, not in the summed
    template status), keyed by the ``tenbin.io/workload-uid`` label, with GPUs bound from X's pods.
  X is NotReady for Tenbin when Karmada reports its Cluster not Ready or the proxy cannot reach it.
- ``delete(ref)`` removes the template and its policy only while the policy pins X alone; pinned to X and
  another member (a make-before-break move), it withdraws X from the policy; pinned elsewhere only, it does
  nothing: after a re-pin, deleting "the copy on the source" must not tear down the moved workload (Karmada
  removes the source's copy itself, when the source is reachable).
- Moves: a Deployment/StatefulSet applied here while pinned elsewhere is pinned to both until the source's
  delete; a Job is withdrawn from the old member first and applied afresh (a new run, immutable pod template).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError
from urllib3.exceptions import HTTPError

from tenbin.clusters.gateway import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    NAMESPACE_LABEL,
    UID_LABEL,
    GatewayError,
    MemberObservation,
    ObjectRef,
    ObservedObject,
    observed_object,
    pods_by_uid,
)
from tenbin.clusters.kube import KubeGateway
from tenbin.clusters.plumbing import (
    MANAGED_SELECTOR,
    REQUEST_TIMEOUT,
    api_client_from_kubeconfig,
    run_blocking,
    wrap,
)
from tenbin.inventory import inventory_from_objects
from tenbin.kinds import DEFAULT_KINDS

POLICY_API = "policy.karmada.io/v1alpha1"
BINDING_API = "work.karmada.io/v1alpha2"
CLUSTER_API = "cluster.karmada.io/v1alpha1"
CLUSTER_ANNOTATION = "tenbin.io/cluster"  # on the template: the member it is pinned to (as member_object sets)
PROXY_PATH = "/apis/cluster.karmada.io/v1alpha1/clusters/{}/proxy"
DELETE_ATTEMPTS = 3


def propagation_policy(obj: Mapping[str, Any], clusters: list[str]) -> dict[str, Any]:
    """The PropagationPolicy that pins ``obj`` (a template in the Karmada apiserver) to ``clusters``: the member
    Tenbin chose, or during a make-before-break move the source and the target."""
    ref = ObjectRef.of(obj)
    labels = {k: v for k, v in ((obj.get("metadata") or {}).get("labels") or {}).items()
              if k in (MANAGED_BY_LABEL, UID_LABEL, NAME_LABEL, NAMESPACE_LABEL)}
    return {
        "apiVersion": POLICY_API, "kind": "PropagationPolicy",
        "metadata": {"name": ref.name, "namespace": ref.namespace,
                     "labels": {**labels, MANAGED_BY_LABEL: MANAGED_BY},
                     "annotations": {CLUSTER_ANNOTATION: ",".join(clusters)}},
        "spec": {
            "resourceSelectors": [{"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name,
                                   "namespace": ref.namespace}],
            "placement": {"clusterAffinity": {"clusterNames": list(clusters)},
                          "replicaScheduling": {"replicaSchedulingType": "Duplicated"}},
            # what the template's pods reference (the ConfigMaps, Secrets, ServiceAccounts Tenbin copied into the
            # Karmada apiserver beside it) follows it to the same members: Karmada's dependencies distributor
            "propagateDeps": True,
        },
    }


def pinned_to(policy: Mapping[str, Any] | None) -> list[str] | None:
    """The clusters a PropagationPolicy allows (None: no policy, or one that does not name clusters)."""
    if not policy:
        return None
    names = (((policy.get("spec") or {}).get("placement") or {}).get("clusterAffinity") or {}).get("clusterNames")
    return list(names) if names else None


def binding_name(kind: str, name: str) -> str:
    """The ResourceBinding Karmada creates for a namespaced template (names.GenerateBindingName)."""
    return f"{name}-{kind}".lower().replace(":", ".")


class KarmadaGateway:
    """`ClusterGateway` for a member ``cluster_name`` that Tenbin reaches through a Karmada control plane."""

    copies_dependencies = True
    """Into the Karmada apiserver, beside the template and owned by it; Karmada's dependencies distributor
    (PropagationPolicy `propagateDeps`) carries them to the members the template is propagated to, and its
    garbage collector removes them with the last template that owns them. Karmada starts propagating them
    once the template's binding is scheduled: they arrive beside the workload, not strictly before it (pods
    wait for a missing ConfigMap, as in one cluster)."""

    def __init__(self, name: str, cluster_name: str, api: client.ApiClient,
                 namespace_labels: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.cluster_name = cluster_name
        # the Karmada apiserver; Karmada propagates the namespaces made there, labels included, to its members
        self.karmada = KubeGateway(f"{name} (Karmada)", api, namespace_labels)
        self._proxy = PROXY_PATH.format(cluster_name)
        self._kinds: set[tuple[str, str]] = set(DEFAULT_KINDS)

    @classmethod
    def from_kubeconfig(cls, name: str, cluster_name: str, karmada_kubeconfig: str,
                        namespace_labels: Mapping[str, str] | None = None) -> KarmadaGateway:
        return cls(name, cluster_name, api_client_from_kubeconfig(karmada_kubeconfig), namespace_labels)

    # ---- helpers ---------------------------------------------------------------------------------

    def _list(self, api_version: str, kind: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        res = self.karmada._resource(api_version, kind)
        listed = self.karmada._dynamic().get(res, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT)
        items = listed.to_dict().get("items") or []
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return list(items)

    def _get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        res = self.karmada._resource(api_version, kind)
        try:
            got = self.karmada._dynamic().get(res, name=name, namespace=namespace or None,
                                              _request_timeout=REQUEST_TIMEOUT)
        except NotFoundError:
            return None
        return dict(got.to_dict())

    def _member_get(self, path: str, **query: str) -> dict[str, Any]:
        """GET from the member through Karmada's cluster proxy (Karmada's credentials, impersonated there)."""
        got = self.karmada._dynamic().request("GET", self._proxy + path, serialize=False,
                                              query_params=list(query.items()), _request_timeout=REQUEST_TIMEOUT)
        return dict(json.loads(got.data))

    def _cluster_ready(self) -> None:
        """Raise unless Karmada reports the member's Cluster Ready (it cannot propagate there otherwise)."""
        cluster = self._get(CLUSTER_API, "Cluster", "", self.cluster_name)
        if cluster is None:
            raise GatewayError(f"{self.name}: Karmada has no Cluster {self.cluster_name}", 404)
        conds = (cluster.get("status") or {}).get("conditions") or []
        ready = next((c for c in conds if c.get("type") == "Ready"), None)
        if ready is None or ready.get("status") != "True":
            why = (ready or {}).get("message") or "no Ready condition yet"
            raise GatewayError(f"{self.name}: Karmada reports Cluster {self.cluster_name} not Ready: {why}", 503)

    # ---- observe ---------------------------------------------------------------------------------

    def _observe(self) -> MemberObservation:
        try:
            self._cluster_ready()
            nodes = self._member_get("/api/v1/nodes")["items"]
            pods = self._member_get("/api/v1/pods",
                                    fieldSelector="status.phase!=Succeeded,status.phase!=Failed")["items"]
            policies = {(p["metadata"]["namespace"], p["metadata"]["name"]): p
                        for p in self._list(POLICY_API, "PropagationPolicy", MANAGED_SELECTOR)}
            templates = [t for api_version, kind in sorted(self._kinds)
                         for t in self._list(api_version, kind, MANAGED_SELECTOR)]
            bindings: dict[tuple[str, str], dict[str, Any]] = {}
            if templates:
                for b in self._list(BINDING_API, "ResourceBinding"):
                    bindings[(b["metadata"]["namespace"], b["metadata"]["name"])] = b
        except GatewayError:
            raise
        except (ApiException, DynamicApiError, HTTPError, OSError) as e:
            raise wrap(f"{self.name}: observe through Karmada", e) from None

        by_uid_pods = pods_by_uid(pods)
        observed: dict[str, ObservedObject] = {}
        for tmpl in templates:
            meta = tmpl.get("metadata") or {}
            uid = (meta.get("labels") or {}).get(UID_LABEL)
            ns, name = meta.get("namespace", ""), meta["name"]
            if not uid or self.cluster_name not in (pinned_to(policies.get((ns, name))) or []):
                continue  # not ours, or pinned elsewhere only (moved): another gateway reports it
            binding = bindings.get((ns, binding_name(tmpl["kind"], name)))
            status = _member_status(binding, self.cluster_name)
            its = by_uid_pods.get(uid, [])
            if tmpl["kind"] == "Job" and status and "ready" not in status:
                # Karmada reflects a Job's active/succeeded/failed/conditions, not `ready`: count X's ready pods
                status["ready"] = sum(1 for p in its if _pod_ready(p))
            body = {**tmpl, "status": status}
            observed[uid] = observed_object(body, uid, its)
        return MemberObservation(inventory_from_objects(nodes, pods), observed)

    def want_kinds(self, kinds: frozenset[tuple[str, str]]) -> None:
        """Nothing to ask: Karmada's members are not discovered through this gateway (a refused apply says it)."""

    async def observe(self) -> MemberObservation:
        return await run_blocking(self._observe)

    # ---- apply / delete / annotate -----------------------------------------------------------------

    def _apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        if UID_LABEL not in ((obj.get("metadata") or {}).get("labels") or {}):
            return self.karmada._apply(obj)  # a dependency: propagated with the templates that own it
        try:
            return self._apply_pinned(obj)
        except GatewayError:
            raise
        except (ApiException, DynamicApiError, HTTPError, OSError) as e:
            raise wrap(f"{self.name}: apply {ObjectRef.of(obj)} through Karmada", e) from None

    def _apply_pinned(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = ObjectRef.of(obj)
        body = copy.deepcopy(dict(obj))
        body.setdefault("metadata", {}).setdefault("annotations", {})[CLUSTER_ANNOTATION] = self.cluster_name
        current = self._get(ref.api_version, ref.kind, ref.namespace, ref.name)
        pins = pinned_to(self._get(POLICY_API, "PropagationPolicy", ref.namespace, ref.name)) or []
        clusters = [self.cluster_name]
        if current is not None and any(c != self.cluster_name for c in pins):
            if ref.kind == "Job":
                # A Job moving here: a new run (with the migration's resume hints in its pod template, which is
                # immutable). Withdraw the old template first; Karmada removes its binding and works.
                self._delete_one(ref.api_version, ref.kind, ref, current)
                current = None
            else:
                # Long-running work moving here: run on both members until the source's delete withdraws it
                # (make-before-break through Karmada: Duplicated onto the old and the new member).
                clusters = [*pins, self.cluster_name] if self.cluster_name not in pins else pins
        if current is None:
            # a binding without its template is a previous one Karmada is still removing: a new template now
            # could have its binding written into the old one as that goes away. Try again next round.
            rb = self._get(BINDING_API, "ResourceBinding", ref.namespace, binding_name(ref.kind, ref.name))
            if rb is not None:
                raise GatewayError(f"{self.name}: apply {ref}: Karmada is still removing the previous binding "
                                   f"{rb['metadata']['name']}; retrying", 409)
        # the policy first: the template is claimed by it as soon as it exists (never seen unpinned)
        self.karmada._apply(propagation_policy(body, clusters))
        out = self.karmada._apply(body)
        self._kinds.add((ref.api_version, ref.kind))
        return out

    async def apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        return await run_blocking(self._apply, obj)

    def _delete(self, ref: ObjectRef) -> bool:
        """Withdraw the object from this member, if Karmada still places it here; True if it was.

        Pinned here alone: the template and its policy are deleted. Pinned here and elsewhere (a make-before-
        break move under way): this member is removed from the policy. Pinned elsewhere only: nothing to do.
        """
        try:
            for _ in range(DELETE_ATTEMPTS):
                tmpl = self._get(ref.api_version, ref.kind, ref.namespace, ref.name)
                policy = self._get(POLICY_API, "PropagationPolicy", ref.namespace, ref.name)
                pins = pinned_to(policy)
                if pins is None and tmpl is not None:  # no policy: go by the template's own record
                    pins = [((tmpl.get("metadata") or {}).get("annotations") or {}).get(CLUSTER_ANNOTATION, "")]
                if not pins or self.cluster_name not in pins:
                    return False  # re-pinned elsewhere (or gone): not this member's to remove
                try:
                    if policy is not None and pins != [self.cluster_name]:
                        rest = [c for c in pins if c != self.cluster_name]
                        self._repin(ref, policy, rest)
                        return True
                    deleted = False
                    if tmpl is not None:
                        self._delete_one(ref.api_version, ref.kind, ref, tmpl)
                        deleted = True
                    if policy is not None:
                        self._delete_one(POLICY_API, "PropagationPolicy", ref, policy)
                    return deleted
                except GatewayError as e:
                    if e.status == 409:  # changed meanwhile (a re-pin?): look again
                        continue
                    raise
            raise GatewayError(f"{self.name}: delete {ref}: kept changing under us", 409)
        except GatewayError:
            raise
        except (ApiException, DynamicApiError, HTTPError, OSError) as e:
            raise wrap(f"{self.name}: delete {ref} through Karmada", e) from None

    def _repin(self, ref: ObjectRef, policy: Mapping[str, Any], clusters: list[str]) -> None:
        res = self.karmada._resource(POLICY_API, "PropagationPolicy")
        patch = {"metadata": {"resourceVersion": policy["metadata"]["resourceVersion"],
                              "annotations": {CLUSTER_ANNOTATION: ",".join(clusters)}},
                 "spec": {"placement": {"clusterAffinity": {"clusterNames": clusters}}}}
        try:
            self.karmada._dynamic().patch(res, body=patch, name=ref.name, namespace=ref.namespace,
                                          content_type="application/merge-patch+json",
                                          _request_timeout=REQUEST_TIMEOUT)
        except (ApiException, DynamicApiError) as e:
            raise wrap(f"{self.name}: re-pin {ref} to {clusters}", e) from None

    def _delete_one(self, api_version: str, kind: str, ref: ObjectRef, current: Mapping[str, Any]) -> None:
        res = self.karmada._resource(api_version, kind)
        rv = (current.get("metadata") or {}).get("resourceVersion")
        try:
            self.karmada._dynamic().delete(
                res, name=ref.name, namespace=ref.namespace or None,
                body={"propagationPolicy": "Background", "preconditions": {"resourceVersion": rv}},
                _request_timeout=REQUEST_TIMEOUT,
            )
        except NotFoundError:
            return
        except (ApiException, DynamicApiError) as e:
            if getattr(e, "status", None) == 404:
                return
            raise wrap(f"{self.name}: delete {kind} {ref.namespace}/{ref.name}", e) from None

    async def delete(self, ref: ObjectRef) -> bool:
        return await run_blocking(self._delete, ref)

    async def get(self, ref: ObjectRef) -> Mapping[str, Any] | None:
        return await self.karmada.get(ref)

    async def add_owner(self, ref: ObjectRef, owner: Mapping[str, Any]) -> None:
        """`owner` is the template in the Karmada apiserver (what `apply` answered)."""
        await self.karmada.add_owner(ref, owner)

    async def orphans(self) -> list[dict[str, Any]]:
        return await self.karmada.orphans()

    async def delete_unchanged(self, ref: ObjectRef, resource_version: str) -> bool:
        return await self.karmada.delete_unchanged(ref, resource_version)

    async def annotate(self, ref: ObjectRef, annotations: Mapping[str, str | None]) -> None:
        """Merge annotations into the template (None removes one); Karmada carries them to the member's copy."""
        await self.karmada.annotate(ref, annotations)

    async def close(self) -> None:
        await self.karmada.close()


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _member_status(binding: Mapping[str, Any] | None, cluster: str) -> dict[str, Any]:
    """The status Karmada collected from ``cluster`` for a binding ({} until the member reported one)."""
    for item in ((binding or {}).get("status") or {}).get("aggregatedStatus") or []:
        if item.get("clusterName") == cluster:
            status = item.get("status")
            if isinstance(status, str):
                status = json.loads(status)
            return dict(status or {})
    return {}
