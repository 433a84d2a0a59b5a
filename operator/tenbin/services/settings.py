"""The operator's settings: one dataclass, the single source of each default, its `tenbin run` flag, its
lowest value, its help and its Helm value (`operator.<camelCaseName>` in charts/tenbin; the chart's schema
and flag table are checked against this by tests/unit/test_settings.py). Imports nothing heavy, so
`tenbin --help` stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def setting(default: float, flag: str, help_: str, group: str = "", minimum: float = 0) -> Any:
    """A field of `Config` and its `tenbin run` flag: the one place its default, flag, lowest value and help
    are written."""
    return field(default=default, metadata={"flag": flag, "help": help_, "group": group, "minimum": minimum})


@dataclass
class Config:
    """The operator's timings and limits: `tenbin run` has one flag per field (`config_flags`), and the
    Helm chart passes the flags it exposes."""

    resync_seconds: float = setting(2.0, "--resync-seconds", "how often each member is observed (inventory, objects)",
                                   minimum=0.1)
    unreachable_after_seconds: float = setting(
        10.0, "--unreachable-after",
        "seconds without a successful observation before a member turns NotReady and receives no placements")
    delete_grace_seconds: float = setting(
        30.0, "--delete-grace", "seconds deletion waits for an unreachable member before releasing the AIWorkload")
    history_limit: int = setting(10, "--history-limit", "entries kept in an AIWorkload's status.history")
    status_heartbeat_seconds: float = setting(
        60.0, "--status-heartbeat", "GPUCluster status.lastSyncTime is refreshed at least this often (seconds)")
    cluster_lost_after_seconds: float = setting(
        30.0, "--cluster-lost-after", "seconds a member may be unreachable before its workloads are re-placed",
        "migration")
    pending_timeout_seconds: float = setting(
        120.0, "--pending-timeout",
        "seconds pods may stay unschedulable in a member before trying the next cluster", "migration")
    max_failovers: int = setting(3, "--max-failovers", "capacity failovers per workload", "migration")
    min_move_interval_seconds: float = setting(
        30.0, "--min-move-interval", "seconds between two failure-driven moves of one workload", "migration")
    checkpoint_grace_seconds: float = setting(
        60.0, "--checkpoint-grace", "seconds a Job's source waits for tenbin.io/checkpoint-done", "migration")
    migration_timeout_seconds: float = setting(
        300.0, "--migration-timeout", "seconds a make-before-break target may take to become Ready", "migration")
    max_concurrent_migrations: int = setting(10, "--max-concurrent-migrations", "moves in flight at once",
                                             "migration")
    max_backoff_seconds: float = setting(
        300.0, "--max-backoff", "the longest wait between retries of one workload after member errors (seconds)")
    dependency_resync_seconds: float = setting(
        30.0, "--dependency-resync", "how often a placed workload's ConfigMaps, Secrets, ... are compared with the "
        "hub and copied again when changed (seconds)")
    not_served_ttl_seconds: float = setting(
        300.0, "--not-served-ttl", "seconds a member that said it does not serve a kind is not offered it again")


@dataclass(frozen=True)
class Flag:
    """One `Config` field as a `tenbin run` flag and a Helm value."""

    name: str
    flag: str
    kind: type
    default: Any
    help: str
    group: str
    minimum: float

    @property
    def chart_key(self) -> str:
        """The chart's value: `operator.<this>` (the field's name in camelCase)."""
        head, *rest = self.name.split("_")
        return head + "".join(w.capitalize() for w in rest)


def config_flags() -> list[Flag]:
    """Every `Config` field as a flag, in declaration order."""
    return [Flag(f.name, f.metadata["flag"], int if f.type in ("int", int) else float, f.default, f.metadata["help"],
                 f.metadata["group"], f.metadata["minimum"]) for f in fields(Config)]
