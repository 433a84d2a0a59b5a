"""The agent's one Kubernetes call: a metadata patch of its own Node (strategic merge, field manager
tenbin-agent), and the client it is made with."""

from __future__ import annotations

import os
from typing import Any

from kubernetes import client, config

AGENT_FIELD_MANAGER = "tenbin-agent"


class KubeNodePublisher:
    """Patches Node metadata with the kubernetes (sync) client: strategic merge, field manager tenbin-agent."""

    def __init__(self, api_client: Any, timeout_s: float = 10.0) -> None:
        self._core = client.CoreV1Api(api_client)
        self._timeout = timeout_s

    def patch(self, node: str, body: dict[str, Any]) -> None:
        self._core.patch_node(node, body, field_manager=AGENT_FIELD_MANAGER,
                              _content_type="application/strategic-merge-patch+json",
                              _request_timeout=self._timeout)


def load_api_client(kubeconfig: str | None) -> Any:
    """In-cluster credentials in a pod (unless a kubeconfig is given), else the kubeconfig ($KUBECONFIG, ~/.kube)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        return client.ApiClient(cfg)
    return config.new_client_from_config(config_file=kubeconfig)
