"""What every gateway to a Kubernetes apiserver shares: the bounded thread pool the synchronous client
runs in, request timeouts, the client from a kubeconfig, and client errors as `GatewayError`s.
Used by the member gateways (`kube.py`, `karmada.py`) and the hub client (`hub.py`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError

from tenbin.clusters.gateway import MANAGED_BY, MANAGED_BY_LABEL, GatewayError

T = TypeVar("T")
REQUEST_TIMEOUT = (3.0, 15.0)  # connect, read (seconds)
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# Kinds listed on every observation; kinds first seen in an applied template are added.

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="tenbin-k8s")
        return _pool


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking client call in the shared bounded pool, off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args, **kwargs))


def _status_message(body: Any) -> str:
    """The `message` of a Kubernetes Status in an error body (it names the field a refusal is about)."""
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return ""
    return str(data.get("message") or "")[:65536] if isinstance(data, dict) else ""  # callers elide and bound it


def wrap(what: str, e: Exception) -> GatewayError:
    """A client error as the GatewayError every caller handles: status, reason and the member's message."""
    if isinstance(e, ApiException):
        detail = _status_message(e.body)
        return GatewayError(f"{what}: {e.status} {e.reason}" + (f": {detail}" if detail else ""), e.status, detail)
    if isinstance(e, DynamicApiError):
        detail = _status_message(getattr(e, "body", None))
        return GatewayError(f"{what}: {e.status} {e.reason}: {e.summary()}", e.status, detail)
    return GatewayError(f"{what}: {type(e).__name__}: {e}".splitlines()[0])


def api_client_from_kubeconfig(text: str) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config_from_dict(yaml.safe_load(text), client_configuration=cfg)
    cfg.retries = 0  # an unreachable member must fail fast; the monitor retries on its own schedule
    cfg.connection_pool_maxsize = 32  # as many as the thread pool can use at once
    return client.ApiClient(cfg)

def plain(_client: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The dynamic client's response as the plain dict it parsed: no ResourceInstance wrapping and unwrapping
    (which cost more CPU than the request itself for lists of hundreds of Jobs)."""
    return data
