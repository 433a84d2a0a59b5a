"""`GPUCluster.spec.telemetry`: where Tenbin reads live GPU telemetry (DCGM exporter series in Prometheus).

Telemetry is optional and advisory: when it is missing, stale or unreachable the operator falls back to
the inventory the member's apiserver reports and says so in the `TelemetryAvailable` condition. Placement
never fails because telemetry is down.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from tenbin.api.common import MAX_NAME, ApiModel, Name, StrictInt

MAX_URL = 2048
MAX_QUERY = 2048
MIN_MAX_AGE_S = 1
MAX_MAX_AGE_S = 3600

Url = Annotated[
    str, StringConstraints(min_length=8, max_length=MAX_URL, pattern=r"^https?://[^\s/?#]+(/[^\s]*)?$")
]
"""An absolute http(s) URL without whitespace."""

PromLabelName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
]
"""A Prometheus label name."""

PromQL = Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY)]


class PrometheusAuthSecretRef(ApiModel):
    """A key of a Secret on the hub whose value is sent as `Authorization: Bearer <value>`."""

    namespace: Name
    """The Secret's namespace on the hub; the operator must be allowed to read it there (the hub chart allows its own
    namespace)."""
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    """The Secret's name."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=253)] = "token"
    """The key within the Secret's data (default token)."""


class TelemetryQueries(ApiModel):
    """PromQL overrides. Each must return an instant vector with one series per GPU, carrying the node
    label (`nodeLabel`) and a GPU label (`gpu`, else `UUID`, else `device`). Unset: the DCGM default."""

    utilization: PromQL | None = None
    """GPU utilization in percent (0-100). Default `DCGM_FI_DEV_GPU_UTIL`."""
    fb_free: PromQL | None = None
    """Free framebuffer memory in MiB. Default `DCGM_FI_DEV_FB_FREE`."""
    fb_used: PromQL | None = None
    """Used framebuffer memory in MiB. Default `DCGM_FI_DEV_FB_USED`."""
    xid_errors: PromQL | None = None
    """The most recent XID error code of a GPU, only for GPUs whose XID changed recently (0 or absent: none).
    Default: the DCGM_FI_DEV_XID_ERRORS series that changed within the last 10 minutes."""


class PrometheusTelemetry(ApiModel):
    """A Prometheus server that scrapes NVIDIA's DCGM exporter on the member cluster's GPU nodes."""

    url: Url
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090 (no /api/v1 suffix)."""
    auth_secret_ref: PrometheusAuthSecretRef | None = None
    """A bearer token for Prometheus, from a Secret on the hub (optional)."""
    node_label: PromLabelName = "Hostname"
    """The series label that holds the Kubernetes node name (DCGM exporter: Hostname; often node)."""
    max_age_seconds: Annotated[StrictInt, Field(ge=MIN_MAX_AGE_S, le=MAX_MAX_AGE_S)] = 120
    """Samples older than this are stale: that node's telemetry is ignored."""
    queries: TelemetryQueries | None = None
    """PromQL overrides for the DCGM default queries."""


class TelemetrySpec(ApiModel):
    """Live GPU telemetry of a member cluster (optional; the API inventory is used without it)."""

    prometheus: PrometheusTelemetry | None = None
    """Read DCGM exporter series from this Prometheus."""


__all__ = ["PrometheusAuthSecretRef", "PrometheusTelemetry", "TelemetryQueries", "TelemetrySpec"]
