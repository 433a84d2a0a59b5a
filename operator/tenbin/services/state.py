"""What the operator holds about the fleet between rounds: its settings and each member's state.

The data the controller and the migrator share, in a module of its own so neither imports the other
(the GPUs promised but not yet counted by the members are the ledger's, `tenbin.services.ledger`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenbin.api import ClusterPhase, ClusterReason, GPUCluster
from tenbin.clusters.gateway import ClusterGateway, MemberObservation
from tenbin.inventory.telemetry import PrometheusTelemetrySource

FINALIZER = "tenbin.io/member-cleanup"  # on AIWorkloads: deletion waits until the member copy is gone
DRAIN_FINALIZER = "tenbin.io/drain"  # on GPUClusters: deletion waits until no work is placed there

PostEvent = Callable[[Mapping[str, Any], str, str, str], None]  # body, type, reason, message
GatewayFactory = Callable[[str, Mapping[str, Any]], Awaitable[ClusterGateway]]


@dataclass
class ClusterState:
    name: str
    body: Mapping[str, Any]
    model: GPUCluster | None = None
    invalid: str | None = None
    gateway: ClusterGateway | None = None
    gateway_key: str | None = None
    observation: MemberObservation | None = None
    phase: ClusterPhase = ClusterPhase.UNKNOWN
    reason: ClusterReason = ClusterReason.NOT_YET_OBSERVED
    message: str = "not yet observed"
    last_ok: float | None = None
    first_failure: float | None = None
    """Monotonic time of the first failed observation in a row (None: the last one answered)."""
    failing_since: str = ""
    """The same moment in wall time (RFC 3339): the status says since when, not a ticking duration."""
    attempted: bool = False
    last_status_write: float = 0.0
    last_status: dict[str, Any] = field(default_factory=dict)
    telemetry: PrometheusTelemetrySource | None = None
    telemetry_key: str | None = None
    telemetry_condition: dict[str, str] | None = None

    @property
    def deleting(self) -> bool:
        """Marked for deletion: no new work; what runs there is moved out (or stopped) before it goes."""
        return bool((self.body.get("metadata") or {}).get("deletionTimestamp"))
