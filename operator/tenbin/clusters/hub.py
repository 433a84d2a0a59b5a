"""The hub apiserver, for the writes and reads Tenbin makes outside Kopf's watch streams."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tenbin.api import GROUP, VERSION
from tenbin.clusters.gateway import ClusterGateway, GatewayError
from tenbin.clusters.karmada import KarmadaGateway
from tenbin.clusters.kube import KubeGateway
from tenbin.clusters.plumbing import REQUEST_TIMEOUT, run_blocking

MERGE = "application/merge-patch+json"
CORE_PLURALS = {"ConfigMap": "configmaps", "Secret": "secrets", "ServiceAccount": "serviceaccounts",
                "PriorityClass": "priorityclasses", "Namespace": "namespaces"}
PLURALS = {"AIWorkload": "aiworkloads", "GPUCluster": "gpuclusters", "PlacementPolicy": "placementpolicies"}


def hub_api_client(kubeconfig: str | None) -> client.ApiClient:
    """A client for the hub: the given kubeconfig, else $KUBECONFIG/~/.kube/config, else in-cluster."""
    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(client_configuration=cfg)
    cfg.retries = 1
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(cfg)


class HubClient:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom: Any = client.CustomObjectsApi(api)  # returns plain dicts for custom objects
        self.core: Any = client.CoreV1Api(api)

    async def list(self, kind: str) -> list[dict[str, Any]]:
        def call() -> list[dict[str, Any]]:
            resp = self.custom.list_cluster_custom_object(
                GROUP, VERSION, PLURALS[kind], _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
            items = json.loads(resp.data)["items"]
            for it in items:
                it.setdefault("apiVersion", f"{GROUP}/{VERSION}")
                it.setdefault("kind", kind)
            return list(items)

        return await self._call(f"list {kind}", call)

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            c = self.custom
            if namespace:
                body = c.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name,
                                                      _request_timeout=REQUEST_TIMEOUT)
            else:
                body = c.get_cluster_custom_object(GROUP, VERSION, PLURALS[kind], name,
                                                   _request_timeout=REQUEST_TIMEOUT)
            return dict(body)

        return await self._call(f"get {kind} {namespace or ''}/{name}", call)

    async def patch_status(self, kind: str, namespace: str | None, name: str,
                           patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self._merge_patch(kind, namespace, name, patch, status=True)

    async def patch(self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self._merge_patch(kind, namespace, name, patch, status=False)

    async def _merge_patch(self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any],
                           status: bool) -> dict[str, Any]:
        """A merge patch of a Tenbin object (namespaced or cluster-scoped), or of its status subresource."""
        c = self.custom
        if namespace:
            method = c.patch_namespaced_custom_object_status if status else c.patch_namespaced_custom_object
            where: tuple[str, ...] = (GROUP, VERSION, namespace, PLURALS[kind], name)
        else:
            method = c.patch_cluster_custom_object_status if status else c.patch_cluster_custom_object
            where = (GROUP, VERSION, PLURALS[kind], name)

        def call() -> dict[str, Any]:
            return dict(method(*where, dict(patch), _content_type=MERGE, _request_timeout=REQUEST_TIMEOUT))

        return await self._call(f"patch {kind} {namespace or ''}/{name}{' status' if status else ''}", call)

    async def get_object(self, api_version: str, kind: str, namespace: str | None,
                         name: str) -> dict[str, Any] | None:
        """One of Kubernetes' own objects (a ConfigMap a workload uses, its Namespace), or None when absent."""
        plural = CORE_PLURALS[kind]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        path = f"{base}/namespaces/{namespace}/{plural}/{name}" if namespace else f"{base}/{plural}/{name}"

        def call() -> dict[str, Any] | None:
            method, url, headers, _, _ = self.api.param_serialize(
                "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
            resp = self.api.call_api(method, url, header_params=headers, _request_timeout=REQUEST_TIMEOUT)
            resp.read()
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise ApiException(status=resp.status, reason=resp.reason)
            return dict(json.loads(resp.data or b"{}"))

        return await self._call(f"get {kind} {namespace or ''}/{name}", call)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        def call() -> str:
            s = self.core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT)
            data = (s.data or {}).get(key)
            if data is None:
                raise GatewayError(f"Secret {namespace}/{name} has no key {key!r}", 404)
            return base64.b64decode(data).decode()

        return await self._call(f"read Secret {namespace}/{name}", call)

    async def _call(self, what: str, fn: Any) -> Any:
        try:
            return await run_blocking(fn)
        except GatewayError:
            raise
        except ApiException as e:
            body = ""
            try:
                body = json.loads(e.body or "{}").get("message", "")
            except ValueError:
                body = str(e.body or "")[:200]
            raise GatewayError(f"hub: {what}: {e.status} {e.reason} {body}".strip(), e.status) from None
        except (HTTPError, OSError) as e:
            raise GatewayError(f"hub: {what}: {type(e).__name__}: {e}".splitlines()[0]) from None


def pod_security_labels(level: str) -> dict[str, str]:
    """The Pod Security admission labels of a namespace Tenbin creates in a member: `level` enforced, and what
    `restricted` would refuse recorded in the member's audit log; `none` for no labels (the member's default)."""
    if level == "none":
        return {}
    return {"pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/audit": "restricted"}


def member_gateways(hub: HubClient, namespace_labels: Mapping[str, str] | None = None,
                    ) -> Callable[[str, Mapping[str, Any]], Awaitable[ClusterGateway]]:
    """How `tenbin run` (and `tenbin explain`) reach a member from its GPUCluster's `spec.connection`: a
    kubeconfig in a hub Secret, the hub itself (`inCluster`), or a cluster behind a Karmada control plane.
    `namespace_labels` go on the namespaces Tenbin creates there."""

    async def gateway(name: str, conn: Mapping[str, Any]) -> ClusterGateway:
        ref = conn.get("kubeconfigSecretRef")
        if ref:
            text = await hub.read_secret_key(ref["namespace"], ref["name"], ref.get("key") or "kubeconfig")
            return KubeGateway.from_kubeconfig(name, text, namespace_labels)
        if conn.get("inCluster"):
            return KubeGateway(name, hub.api, namespace_labels)
        karmada = conn.get("karmada")
        if karmada:
            kref = karmada["kubeconfigSecretRef"]
            text = await hub.read_secret_key(kref["namespace"], kref["name"], kref.get("key") or "kubeconfig")
            return KarmadaGateway.from_kubeconfig(name, karmada["clusterName"], text, namespace_labels)
        raise GatewayError(f"GPUCluster {name} has no spec.connection: it can be simulated, not used")

    return gateway
