"""`tenbin run`: the operator against a hub (kubeconfig, $KUBECONFIG, or in-cluster)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf
from prometheus_client import start_http_server

from tenbin.clusters.gateway import ClusterGateway, GatewayError
from tenbin.clusters.hub import HubClient, hub_api_client
from tenbin.clusters.kube import KubeGateway
from tenbin.handlers import PEERING_NAME, register
from tenbin.services.controller import Config, Controller
from tenbin.services.metrics import Metrics


@dataclass
class RunOptions:
    kubeconfig: str | None = None
    metrics_address: str = "0.0.0.0"
    metrics_port: int = 8080
    health_address: str = "0.0.0.0"
    health_port: int = 8081
    standalone: bool = False
    priority: int | None = None
    verbose: bool = False
    config: Config | None = None


def _post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, dict(body)), type=type_, reason=reason, message=message[:1024])


def make_controller(opts: RunOptions) -> Controller:
    hub = HubClient(hub_api_client(opts.kubeconfig))

    async def gateway_factory(name: str, conn: Mapping[str, Any]) -> ClusterGateway:
        ref = conn.get("kubeconfigSecretRef")
        if ref:
            text = await hub.read_secret_key(ref["namespace"], ref["name"], ref.get("key") or "kubeconfig")
            return KubeGateway.from_kubeconfig(name, text)
        if conn.get("inCluster"):
            return KubeGateway(name, hub.api)
        karmada = conn.get("karmada")
        if karmada:
            from tenbin.clusters.karmada import KarmadaGateway

            kref = karmada["kubeconfigSecretRef"]
            text = await hub.read_secret_key(kref["namespace"], kref["name"], kref.get("key") or "kubeconfig")
            return KarmadaGateway.from_kubeconfig(name, karmada["clusterName"], text)
        raise GatewayError(f"GPUCluster {name} has no spec.connection: it can be simulated, not used")

    return Controller(hub, gateway_factory, _post_event, opts.config or Config(), Metrics())


def connection_info(cfg: Any) -> kopf.ConnectionInfo:
    """Kopf's credentials from the same client configuration the hub client uses (one source of truth)."""
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
        username=cfg.username or None, password=cfg.password or None, scheme=scheme, token=token,
        certificate_path=cfg.cert_file, private_key_path=cfg.key_file,
    )


def run(opts: RunOptions) -> int:
    logging.basicConfig(level=logging.DEBUG if opts.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not opts.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not one line per watch event
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # not one line per probe
    ctl = make_controller(opts)
    registry = kopf.OperatorRegistry()
    register(registry, ctl, opts.priority)

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(ctl.hub.api.configuration)

    if opts.metrics_port:
        start_http_server(opts.metrics_port, addr=opts.metrics_address, registry=ctl.metrics.registry)
    liveness = f"http://{opts.health_address}:{opts.health_port}/healthz" if opts.health_port else None
    asyncio.run(kopf.operator(
        registry=registry, clusterwide=True, standalone=opts.standalone, priority=opts.priority,
        peering_name=PEERING_NAME, liveness_endpoint=liveness,
    ))
    return 0
