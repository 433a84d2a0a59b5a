"""A member cluster reached by kubeconfig, with the official Kubernetes client.

The client is synchronous; every call runs in a bounded thread pool so the operator's event loop
never blocks. Each request has a connect/read timeout, so an unreachable member fails fast.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError
from urllib3.exceptions import HTTPError

from tenbin.clusters.gateway import (
    FIELD_MANAGER,
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
from tenbin.clusters.plumbing import (
    MANAGED_SELECTOR,
    REQUEST_TIMEOUT,
    api_client_from_kubeconfig,
    plain,
    run_blocking,
    wrap,
)
from tenbin.inventory import inventory_from_objects
from tenbin.kinds import DEFAULT_KINDS, KINDS

SERVICE_ACCOUNT_WAIT_S = 10.0
log = logging.getLogger(__name__)
DEPENDENCY_SELECTOR = "app.kubernetes.io/managed-by=tenbin,tenbin.io/dependency=true"
DISCOVERY_TTL_S = 60.0  # how long a member's answer to "which workload kinds do you serve" is kept
KARMADA_MANAGED_LABEL = "karmada.io/managed"


class KubeGateway:
    """`ClusterGateway` for a member reached through a kubeconfig."""

    copies_dependencies = True

    def __init__(self, name: str, api: client.ApiClient, namespace_labels: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.api = api
        self.namespace_labels = dict(namespace_labels or {})
        """Labels of a namespace this gateway creates (Pod Security admission's, `tenbin run --member-pod-security`);
        a namespace that exists already is never changed."""
        self.core: Any = client.CoreV1Api(api)  # plain-dict bodies are valid; the stubs want models
        self._dyn: DynamicClient | None = None
        self._dyn_lock = threading.Lock()
        self._kinds: set[tuple[str, str]] = set(DEFAULT_KINDS)
        self._declared: frozenset[tuple[str, str]] = frozenset()
        self._served: frozenset[tuple[str, str]] | None = None
        self._served_at = -math.inf
        self._namespaces: set[str] = set()
        self._ns_lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, name: str, text: str, namespace_labels: Mapping[str, str] | None = None) -> KubeGateway:
        return cls(name, api_client_from_kubeconfig(text), namespace_labels)

    # ---- helpers ---------------------------------------------------------------------------------

    def _dynamic(self) -> DynamicClient:
        with self._dyn_lock:
            if self._dyn is None:
                self._dyn = DynamicClient(self.api)
            return self._dyn

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return self._dynamic().resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise GatewayError(f"{self.name}: the member does not serve {kind} in {api_version}", 404) from None

    def _get_json(self, method: Callable[..., Any], **kw: Any) -> dict[str, Any]:
        resp = method(_preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kw)
        return dict(json.loads(resp.data))

    # ---- observe ---------------------------------------------------------------------------------

    def _observe(self) -> MemberObservation:
        try:
            nodes = self._get_json(self.core.list_node)["items"]
            pods = self._get_json(
                self.core.list_pod_for_all_namespaces,
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
            )["items"]
            objects: list[dict[str, Any]] = []
            for api_version, kind in sorted(self._kinds):
                res = self._resource(api_version, kind)
                listed = self._dynamic().get(res, label_selector=MANAGED_SELECTOR, _request_timeout=REQUEST_TIMEOUT,
                                             serializer=plain)
                for item in listed.get("items") or []:
                    item.setdefault("apiVersion", api_version)
                    item.setdefault("kind", kind)
                    objects.append(item)
        except GatewayError:
            raise
        except (ApiException, DynamicApiError, HTTPError, OSError) as e:
            raise wrap(f"{self.name}: observe", e) from None

        served = self._discover()
        by_uid_pods = pods_by_uid(pods)
        observed: dict[str, ObservedObject] = {}
        for obj in objects:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            uid = labels.get(UID_LABEL)
            if not uid or labels.get(KARMADA_MANAGED_LABEL) == "true":
                continue  # not ours, or Karmada's copy of a template Tenbin placed through Karmada
            observed[uid] = observed_object(obj, uid, by_uid_pods.get(uid, []))
        return MemberObservation(inventory_from_objects(nodes, pods), observed, served)

    def _discover(self) -> frozenset[tuple[str, str]] | None:
        """Which of Tenbin's workload kinds the member serves, from its API discovery (one request per group
        version), cached for DISCOVERY_TTL_S; a refused apply of an unserved kind asks again sooner. None when
        discovery itself failed (the refusal of an apply then says it)."""
        if time.monotonic() - self._served_at < DISCOVERY_TTL_S:
            return self._served
        wanted: dict[str, set[str]] = {}
        for api_version, kind in {(k.api_version, k.kind) for k in KINDS.values()} | self._kinds | self._declared:
            wanted.setdefault(api_version, set()).add(kind)
        served: set[tuple[str, str]] = set()
        try:
            for gv, kinds in sorted(wanted.items()):
                path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
                method, url, headers, _, _ = self.api.param_serialize(
                    "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
                resp = self.api.call_api(method, url, header_params=headers, _request_timeout=REQUEST_TIMEOUT)
                resp.read()
                if resp.status == 404:
                    continue  # the group version is not served at all
                if resp.status != 200:
                    raise OSError(f"GET {path}: HTTP {resp.status}")
                listed = {r.get("kind") for r in json.loads(resp.data or b"{}").get("resources") or []}
                served |= {(gv, k) for k in kinds if k in listed}
        except (ApiException, HTTPError, OSError, ValueError) as e:
            log.debug("%s: API discovery failed: %s", self.name, e)
            return self._served
        self._served, self._served_at = frozenset(served), time.monotonic()
        return self._served

    async def observe(self) -> MemberObservation:
        return await run_blocking(self._observe)

    def want_kinds(self, kinds: frozenset[tuple[str, str]]) -> None:
        if not kinds <= self._declared | self._kinds:
            self._served_at = -math.inf  # a newly declared kind: discovery asks at the next look
        self._declared = kinds

    # ---- apply / delete --------------------------------------------------------------------------

    def _ensure_namespace(self, namespace: str) -> None:
        if not namespace or namespace in self._namespaces:
            return
        with self._ns_lock:  # one thread creates it; the others wait for it to be usable too
            if namespace in self._namespaces:
                return
            try:
                self.core.read_namespace(namespace, _request_timeout=REQUEST_TIMEOUT)
            except ApiException as e:
                if e.status != 404:
                    raise
                try:
                    labels = {**self.namespace_labels, MANAGED_BY_LABEL: MANAGED_BY}
                    self.core.create_namespace({"metadata": {"name": namespace, "labels": labels}},
                                               _request_timeout=REQUEST_TIMEOUT)
                except ApiException as e2:
                    if e2.status != 409:
                        raise
            self._await_default_service_account(namespace)
            self._namespaces.add(namespace)

    def _await_default_service_account(self, namespace: str) -> None:
        """A new namespace gets its `default` ServiceAccount a moment later; pods created before that are
        refused, and a Job controller backs off for many seconds. Wait for it (bounded) before applying."""
        deadline = time.monotonic() + SERVICE_ACCOUNT_WAIT_S
        delay = 0.05
        while time.monotonic() < deadline:
            try:
                self.core.read_namespaced_service_account("default", namespace, _request_timeout=REQUEST_TIMEOUT)
                return
            except ApiException as e:
                if e.status == 403:
                    return  # not allowed to look (older member RBAC): apply anyway, the Job controller retries
                if e.status != 404:
                    raise
            time.sleep(delay)  # in a worker thread, polling a condition with a deadline
            delay = min(delay * 2, 0.5)

    def _apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = ObjectRef.of(obj)
        try:
            try:
                res = self._resource(ref.api_version, ref.kind)
            except GatewayError:
                self._served_at = -math.inf  # refused as not served: discovery asks again at the next look
                raise
            if res.namespaced:
                self._ensure_namespace(ref.namespace)
            out = self._dynamic().server_side_apply(
                res, body=dict(obj), name=ref.name, namespace=ref.namespace or None,
                field_manager=FIELD_MANAGER, force_conflicts=True, _request_timeout=REQUEST_TIMEOUT,
                serializer=plain,
            )
        except GatewayError:
            raise
        except (ApiException, DynamicApiError, HTTPError, OSError) as e:
            raise wrap(f"{self.name}: apply {ref}", e) from None
        if UID_LABEL in ((obj.get("metadata") or {}).get("labels") or {}):
            # a workload (built in or declared; a dependency copy carries no workload UID): listed with every
            # observation from now on
            self._kinds.add((ref.api_version, ref.kind))
        return dict(out)

    async def apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        return await run_blocking(self._apply, obj)

    def _annotate(self, ref: ObjectRef, annotations: Mapping[str, str | None]) -> None:
        try:
            res = self._resource(ref.api_version, ref.kind)
            self._dynamic().patch(
                res, body={"metadata": {"annotations": dict(annotations)}}, name=ref.name,
                namespace=ref.namespace or None, content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except GatewayError:
            raise
        except (ApiException, DynamicApiError, HTTPError, OSError) as e:
            raise wrap(f"{self.name}: annotate {ref}", e) from None

    async def annotate(self, ref: ObjectRef, annotations: Mapping[str, str | None]) -> None:
        """Merge annotations into an object (None removes one): the checkpoint handshake's channel."""
        await run_blocking(self._annotate, ref, annotations)

    def _get(self, ref: ObjectRef) -> Mapping[str, Any] | None:
        try:
            res = self._resource(ref.api_version, ref.kind)
            return dict(self._dynamic().get(res, name=ref.name, namespace=ref.namespace or None,
                                            _request_timeout=REQUEST_TIMEOUT, serializer=plain))
        except NotFoundError:
            return None
        except GatewayError:
            raise
        except (ApiException, DynamicApiError, HTTPError, OSError) as e:
            if getattr(e, "status", None) == 404:
                return None
            raise wrap(f"{self.name}: get {ref}", e) from None

    async def get(self, ref: ObjectRef) -> Mapping[str, Any] | None:
        """The member's object, or None when it has none of that name."""
        return await run_blocking(self._get, ref)

    def _add_owner(self, ref: ObjectRef, owner: Mapping[str, Any]) -> None:
        try:
            res = self._resource(ref.api_version, ref.kind)
            # a strategic merge patch merges ownerReferences by uid: the other owners stay
            self._dynamic().patch(
                res, body={"metadata": {"ownerReferences": [dict(owner)]}}, name=ref.name,
                namespace=ref.namespace or None, content_type="application/strategic-merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except GatewayError:
            raise
        except (ApiException, DynamicApiError, HTTPError, OSError) as e:
            raise wrap(f"{self.name}: add an owner to {ref}", e) from None

    async def add_owner(self, ref: ObjectRef, owner: Mapping[str, Any]) -> None:
        """Add an ownerReference to a member object (the others stay)."""
        await run_blocking(self._add_owner, ref, owner)

    def _orphans(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for kind in ("ConfigMap", "ServiceAccount", "Secret"):
            try:
                listed = self._dynamic().get(self._resource("v1", kind), label_selector=DEPENDENCY_SELECTOR,
                                             _request_timeout=REQUEST_TIMEOUT, serializer=plain)
            except (ApiException, DynamicApiError) as e:
                if getattr(e, "status", None) in (403, 404):
                    continue  # not allowed to list them here (Secrets, by default): none of ours to find
                raise wrap(f"{self.name}: list {kind}s", e) from None
            except (HTTPError, OSError) as e:
                raise wrap(f"{self.name}: list {kind}s", e) from None
            for item in listed.get("items") or []:
                if not (item.get("metadata") or {}).get("ownerReferences"):
                    found.append({**item, "apiVersion": "v1", "kind": kind})
        return found

    async def orphans(self) -> list[dict[str, Any]]:
        """Tenbin's dependency copies here that no object owns (any more, or yet)."""
        return await run_blocking(self._orphans)

    def _delete_unchanged(self, ref: ObjectRef, resource_version: str) -> bool:
        try:
            self._dynamic().delete(self._resource(ref.api_version, ref.kind), name=ref.name,
                                   namespace=ref.namespace or None,
                                   body={"preconditions": {"resourceVersion": resource_version}},
                                   _request_timeout=REQUEST_TIMEOUT)
            return True
        except (ApiException, DynamicApiError) as e:
            if getattr(e, "status", None) in (404, 409):
                return False  # gone, or changed since (owned meanwhile)
            raise wrap(f"{self.name}: delete {ref}", e) from None
        except (HTTPError, OSError) as e:
            raise wrap(f"{self.name}: delete {ref}", e) from None

    async def delete_unchanged(self, ref: ObjectRef, resource_version: str) -> bool:
        """Delete the object if it still is at `resource_version`; False when it is gone or changed."""
        return await run_blocking(self._delete_unchanged, ref, resource_version)

    def _delete(self, ref: ObjectRef) -> bool:
        """Foreground: the object stays (with a deletionTimestamp) until its pods are gone, so "the copy is
        gone" (a move's StoppingSource) means its pods no longer run; with Background the Job vanished at
        once while its pods still ran their termination grace next to the new copy."""
        try:
            res = self._resource(ref.api_version, ref.kind)
            self._dynamic().delete(
                res, name=ref.name, namespace=ref.namespace or None,
                body={"propagationPolicy": "Foreground"}, _request_timeout=REQUEST_TIMEOUT,
            )
            return True
        except NotFoundError:
            return False
        except GatewayError as e:
            if e.status == 404:
                return False
            raise
        except (ApiException, DynamicApiError, HTTPError, OSError) as e:
            if getattr(e, "status", None) == 404:
                return False
            raise wrap(f"{self.name}: delete {ref}", e) from None

    async def delete(self, ref: ObjectRef) -> bool:
        return await run_blocking(self._delete, ref)

    async def close(self) -> None:
        await run_blocking(self.api.close)
