"""What the operator holds about the fleet between rounds: its settings and each member's state.

The data the controller and the migrator share, in a module of its own so neither imports the other
(the GPUs promised but not yet counted by the members are the ledger's, `tenbin.services.ledger`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenbin.api import GPUCluster
from tenbin.clusters.gateway import ClusterGateway, MemberObservation
from tenbin.inventory.telemetry import PrometheusTelemetrySource

FINALIZER = "tenbin.io/member-cleanup"  # on AIWorkloads: deletion waits until the member copy is gone
DRAIN_FINALIZER = "tenbin.io/drain"  # on GPUClusters: deletion waits until no work is placed there

PostEvent = Callable[[Mapping[str, Any], str, str, str], None]  # body, type, reason, message
GatewayFactory = Callable[[str, Mapping[str, Any]], Awaitable[ClusterGateway]]


@dataclass
class Config:
    resync_seconds: float = 2.0
    """How often each member is observed (inventory, objects)."""
    unreachable_after_seconds: float = 10.0
    """A member that cannot be observed for this long turns NotReady and receives no placements."""
    delete_grace_seconds: float = 30.0
    """How long deletion waits for an unreachable member before letting the AIWorkload go."""
    history_limit: int = 10
    status_heartbeat_seconds: float = 60.0
    """GPUCluster.status.lastSyncTime is refreshed at least this often even when nothing changes."""
    cluster_lost_after_seconds: float = 30.0
    """A member unreachable this long is lost: its workloads are re-placed (policy allowing)."""
    pending_timeout_seconds: float = 120.0
    """Pods unschedulable in the member this long: try the next feasible cluster."""
    max_failovers: int = 3
    """Capacity failovers per workload before it stays where it is."""
    min_move_interval_seconds: float = 30.0
    """Failure-driven moves of one workload are at least this far apart."""
    checkpoint_grace_seconds: float = 60.0
    """How long a Job's source waits for tenbin.io/checkpoint-done before it is stopped anyway."""
    migration_timeout_seconds: float = 300.0
    """Make-before-break: how long the target may take to become Ready before the move is abandoned."""
    max_concurrent_migrations: int = 10
    """Global rate limit: moves in flight at once."""
    max_backoff_seconds: float = 300.0
    """Retries of one workload after member errors back off exponentially up to this."""
    not_served_ttl_seconds: float = 300.0
    """A member that said it does not serve a kind is not offered that kind again for this long."""


@dataclass
class ClusterState:
    name: str
    body: Mapping[str, Any]
    model: GPUCluster | None = None
    invalid: str | None = None
    gateway: ClusterGateway | None = None
    gateway_key: str | None = None
    observation: MemberObservation | None = None
    phase: str = "Unknown"
    reason: str = "NotYetObserved"
    message: str = "not yet observed"
    last_ok: float | None = None
    first_failure: float | None = None
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
