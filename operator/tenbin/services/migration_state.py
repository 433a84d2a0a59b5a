"""Moves as data: the annotations and phases of `status.migration`, and what a workload's status says
about moves (one in flight, its history, a copy that should not be where it is). Read by placement,
member sync and the migrator alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenbin.api import MigrationPhase, Reason
from tenbin.clusters.gateway import GatewayError
from tenbin.scheduling.migration import History, Trigger
from tenbin.services.conditions import parse_time

CHECKPOINT_REQUESTED = "tenbin.io/checkpoint-requested"
CHECKPOINT_DONE = "tenbin.io/checkpoint-done"
RESUME_FROM = "tenbin.io/resume-from"
CHECKPOINT = "tenbin.io/checkpoint"
EVACUATE_ANNOTATION = "tenbin.io/evacuate"
FENCED_ANNOTATION = "tenbin.io/fenced"  # on a GPUCluster: its work is known stopped (powered off, revoked)


def is_fenced(cluster: Mapping[str, Any]) -> bool:
    """The GPUCluster body is annotated `tenbin.io/fenced: "true"`: someone who can know says its work is stopped."""
    annotations = (cluster.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(FENCED_ANNOTATION, "")).lower() == "true"
REPLACE_ANNOTATION = "tenbin.io/replace"
ACTIVE = frozenset({MigrationPhase.PENDING, MigrationPhase.CHECKPOINTING, MigrationPhase.STARTING_TARGET,
                    MigrationPhase.STOPPING_SOURCE})


class TargetRefused(Exception):
    """A move's target answered the copy with a refusal that a retry cannot change (404 kind, 422, 403)."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(str(error))
        self.error = error


def replace_requested(body: Mapping[str, Any]) -> str | None:
    """The tenbin.io/replace value not acted on yet (status.replaceRequest holds the one that was), or None."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if REPLACE_ANNOTATION not in annotations:
        return None
    value = str(annotations[REPLACE_ANNOTATION])
    return None if value == (body.get("status") or {}).get("replaceRequest") else value


def evacuation_requested(cluster: Mapping[str, Any]) -> bool:
    """Has the GPUCluster been asked to send its work away: cordoned and annotated tenbin.io/evacuate: "true"?"""
    annotations = (cluster.get("metadata") or {}).get("annotations") or {}
    return bool((cluster.get("spec") or {}).get("cordoned")) \
        and str(annotations.get(EVACUATE_ANNOTATION, "")).lower() == "true"


def active_migration(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    m = (body.get("status") or {}).get("migration")
    return m if m and m.get("phase") in ACTIVE else None


def history_of(body: Mapping[str, Any]) -> History:
    """The move history `should_migrate` needs, from status.history (oldest first, as Controller.history writes it).

    A `MigrationFailed` entry (Migrator._fail: `cluster` = the target that failed) counts toward the run of
    failed moves; a completed move or a (re-)placement ends the run.
    """
    entries = (body.get("status") or {}).get("history") or []
    last = None
    failovers = 0
    failed: set[str] = set()
    failed_moves = 0
    last_failed: float | None = None
    failed_targets: set[str] = set()
    for e in entries:
        if e.get("event") in (Reason.SCHEDULED, Reason.MIGRATED):
            last = parse_time(e.get("time")) or last
            failed_moves, last_failed, failed_targets = 0, None, set()
        if e.get("event") == Reason.MIGRATED and e.get("reason") == Trigger.CAPACITY_FAILOVER:
            failovers += 1
            if e.get("from"):
                failed.add(e["from"])
        if e.get("event") == Reason.MIGRATION_FAILED:
            failed_moves += 1
            last_failed = parse_time(e.get("time")) or last_failed
            if e.get("cluster"):
                failed_targets.add(e["cluster"])
    return History(last_move_at=last, failovers=failovers, failed_clusters=frozenset(failed),
                   failed_moves=failed_moves, last_failed_at=last_failed, failed_targets=frozenset(failed_targets))


def stale_copy(body: Mapping[str, Any], cluster: str) -> bool:
    """An object of this workload in `cluster` that should not be there (placed elsewhere, no move under way)."""
    status = body.get("status") or {}
    p = status.get("placement") or {}
    if p.get("cluster") == cluster:
        return False
    m = active_migration(body)
    return not (m and cluster in (m.get("from"), m.get("to")))
