"""The operator's settings: one dataclass, the single source of each default, its `tenbin run` flag and
its help. Imports nothing heavy, so `tenbin --help` stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def setting(default: float, flag: str, help_: str, group: str = "") -> Any:
    """A field of `Config` and its `tenbin run` flag: the one place its default, flag and help are written."""
    return field(default=default, metadata={"flag": flag, "help": help_, "group": group})


@dataclass
class Config:
    """The operator's timings and limits: `tenbin run` has one flag per field (`config_flags`), and the
    Helm chart passes the flags it exposes."""

    resync_seconds: float = setting(2.0, "--resync-seconds", "how often each member is observed (inventory, objects)")
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
    not_served_ttl_seconds: float = setting(
        300.0, "--not-served-ttl", "seconds a member that said it does not serve a kind is not offered it again")


def config_flags() -> list[tuple[str, str, type, Any, str, str]]:
    """(field, flag, type, default, help, group) of every `Config` field, in declaration order."""
    out: list[tuple[str, str, type, Any, str, str]] = []
    for f in fields(Config):
        kind = int if f.type in ("int", int) else float
        out.append((f.name, f.metadata["flag"], kind, f.default, f.metadata["help"], f.metadata["group"]))
    return out
