"""The operator: one `World` (the hub's objects, the members' observations, the ledger) and the state
machines that work on it — placement (`placement.py`), member sync (`member_sync.py`) and moves
(`migrator.py`) — composed.

Kopf handlers feed object bodies in (`observe_*`) and call `reconcile(key)`; one monitor loop per
GPUCluster (a Kopf daemon) calls `sync_cluster`. A GPUCluster marked for deletion is drained here: its
work moves out (or stops there), what Tenbin left there is removed, then its finalizer goes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tenbin.api import ClusterPhase, ClusterReason, DataClassification, GPUCluster, PlacementPolicy
from tenbin.clusters.gateway import GatewayError, ObjectRef
from tenbin.kinds import Kinds
from tenbin.scheduling.attestations import covers, lapsing
from tenbin.scheduling.inputs import ClassificationRule
from tenbin.services.clock import SYSTEM, Clock
from tenbin.services.dependencies import sweep_orphans
from tenbin.services.member_objects import is_finished, workload_key
from tenbin.services.member_sync import MemberSync
from tenbin.services.metrics import Metrics
from tenbin.services.migration_state import FENCED_ANNOTATION, is_fenced
from tenbin.services.migrator import Migrator
from tenbin.services.placement import Placement, refused_for_this_spec
from tenbin.services.settings import Config
from tenbin.services.state import DRAIN_FINALIZER, FINALIZER, ClusterState, GatewayFactory, PostEvent
from tenbin.services.validation import first_error
from tenbin.services.world import World

log = logging.getLogger("tenbin")

POLICY_NAME = "default"

__all__ = ["FINALIZER", "POLICY_NAME", "Config", "Controller"]


class Controller(World):
    """What `tenbin run` runs: the World, fed by the hub's events, and its state machines."""

    def __init__(self, hub: Any, gateway_factory: GatewayFactory, post_event: PostEvent,
                 config: Config | None = None, metrics: Metrics | None = None, clock: Clock = SYSTEM) -> None:
        super().__init__(hub, gateway_factory, post_event, config, metrics, clock)
        self._background: set[asyncio.Future[None]] = set()
        self._drains: dict[str, asyncio.Task[None]] = {}
        self.placement = Placement(self)
        self.attestations_said: set[tuple[str, str, str, bool]] = set()  # (cluster, label, validUntil, lapsed)
        self.fence_asked: set[str] = set()  # deleted clusters told once that their deletion waits for a fence
        self.swept_at: dict[str, float] = {}  # cluster -> when (monotonic) its orphaned dependency copies were sought
        self.orphans_seen: dict[str, frozenset[tuple[ObjectRef, str]]] = {}
        self.members = MemberSync(self)
        self.migrator = Migrator(self, self.placement.refused)

    async def seed(self) -> None:
        """List everything once at start-up, before any watch event is handled."""
        for body in await self.hub.list("GPUCluster"):
            self.observe_cluster(body)
        for body in await self.hub.list("PlacementPolicy"):
            self.observe_policy(body)
        for body in await self.hub.list("AIWorkload"):
            self.observe_workload(body)
            self.ledger.restore(body)
        self.seeded = True
        for st in list(self.clusters.values()):
            if st.deleting:  # marked for deletion while no operator ran: drain it now
                self.observe_cluster(st.body)

    def observe_policy(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        if (body.get("metadata") or {}).get("name") != POLICY_NAME:
            return
        if deleted:
            self.policy = None
        else:
            try:
                self.policy = PlacementPolicy.model_validate(body)
            except ValidationError as e:
                log.warning("PlacementPolicy default is invalid, using built-in defaults: %s", e)
                self.policy = None
        self.kinds = Kinds.from_policy(self.policy)
        for st in self.clusters.values():
            if st.gateway is not None:
                st.gateway.want_kinds(self.kinds.declared())
        for key, wl in self.workloads.items():
            if refused_for_this_spec(wl.get("status") or {}):
                self.retry(key, 0.0)  # refused by a check the policy takes part in (kind, rates): check again
        self._scheduler = None
        self._alternatives_scheduler = None
        self.fleet_changed()
        self.nudge_unschedulable()

    def observe_cluster(self, body: Mapping[str, Any], deleted: bool = False) -> ClusterState | None:
        name = body["metadata"]["name"]
        if deleted:
            st = self.clusters.pop(name, None)
            for k in [k for k in self.deleting if k[0] == name]:
                del self.deleting[k]
            if st and st.gateway:
                task = asyncio.ensure_future(st.gateway.close())
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            self.fleet_changed()
            return None
        st = self.clusters.get(name)
        if st is None:
            st = self.clusters[name] = ClusterState(name, body)
        old = (st.body.get("spec"), (st.body.get("metadata") or {}).get("labels"))
        new = (body.get("spec"), (body.get("metadata") or {}).get("labels"))
        was_deleting = st.deleting
        st.body = body
        if st.deleting and DRAIN_FINALIZER in (body.get("metadata") or {}).get("finalizers", []) \
                and name not in self._drains and self.seeded:
            self._drains[name] = asyncio.ensure_future(self._drain(name))
        if st.model is not None and old == new and was_deleting == st.deleting:
            return st  # only its status changed (our own write): the core sees nothing new
        try:
            st.model = GPUCluster.model_validate({**body, "status": None})
            st.invalid = None
        except ValidationError as e:
            st.model, st.invalid = None, first_error(e)
        self.fleet_changed()
        self.nudge_unschedulable()
        return st

    def observe_workload(self, body: Mapping[str, Any], deleted: bool = False) -> str:
        key = workload_key(body)
        if deleted:
            self.workloads.pop(key, None)
            self.ledger.release(key)
            self.unschedulable.discard(key)
            self.retry_at.pop(key, None)
            self.applied.pop(key, None)
            self.applied_at.pop(key, None)
            self.migrator.forget(key)
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]
        else:
            old = self.workloads.get(key)
            if old is not None and _rv(old) > _rv(body):
                return key  # a late event older than what a write of ours already returned
            self.workloads[key] = dict(body)
        return key

    async def reconcile(self, key: str) -> None:
        async with self.lock(key):
            body = self.workloads.get(key)
            if body is None:
                return
            try:
                await self.placement.run(key, body)
            except GatewayError as e:
                n = self.failures[key] = self.failures.get(key, 0) + 1
                delay = min(self.config.max_backoff_seconds, self.config.resync_seconds * 2 ** (n - 1))
                log.warning("reconcile %s: %s (retry %d in %.0fs)", key, e, n, delay)
                self.retry(key, delay)
            else:
                self.failures.pop(key, None)

    async def sync_cluster(self, name: str) -> None:
        """One round over one member (the GPUCluster's monitor): observe it, follow what it shows into the
        AIWorkloads, run the moves that concern it, then place whatever became due."""
        seen = await self.members.observe(name)
        if seen is None:
            return
        st, fleet_changed = seen
        self._say_attestations(st)
        await self._sweep(st)
        await self.migrator.evaluate(st)
        await self.migrator.steps.advance_for(st.name)
        if fleet_changed:
            self.nudge_unschedulable()
        await self._run_due()

    def _say_attestations(self, st: ClusterState) -> None:
        """One Warning event per attestation covering the cluster as it enters the warning window, and one
        when it lapses, naming the work placed here that needs the label (once per operator process)."""
        if st.model is None or self.policy is None or not self.policy.spec.attestations:
            return
        now = self.now()
        rules = self.scheduler().policy.rules
        for a in self.policy.spec.attestations:
            if not covers(a, st.model):
                continue
            lapsed = now >= a.valid_until
            key = (st.name, a.label, a.valid_until.isoformat(), lapsed)
            if key in self.attestations_said or not (lapsed or a in lapsing(st.model, self.policy, now)):
                continue
            self.attestations_said.add(key)
            needing = sorted(k for k, b in self.workloads.items()
                             if ((b.get("status") or {}).get("placement") or {}).get("cluster") == st.name
                             and a.label in _needed_labels(b, rules))
            names = f"{', '.join(needing[:5])}{' ...' if len(needing) > 5 else ''}" if needing else "none"
            evidence = f" ({a.evidence})" if a.evidence else ""
            if lapsed:
                self.post_event(st.body, "Warning", ClusterReason.ATTESTATION_LAPSED,
                                f"attestation {a.label}{evidence} lapsed at {a.valid_until.isoformat()}: "
                                f"{st.name} no longer holds {a.label}; work placed here that needs it moves: {names}")
            else:
                self.post_event(st.body, "Warning", ClusterReason.ATTESTATION_LAPSING,
                                f"attestation {a.label}{evidence} lapses at {a.valid_until.isoformat()}; work placed "
                                f"here that needs it ({names}) moves then unless the PlacementPolicy renews it")

    async def _sweep(self, st: ClusterState) -> None:
        """Every `dependency_resync_seconds`: remove the dependency copies no workload in the member owns."""
        now = self.clock.monotonic()
        if st.gateway is None or now - self.swept_at.get(st.name, -math.inf) < self.config.dependency_resync_seconds:
            return
        self.swept_at[st.name] = now
        try:
            self.orphans_seen[st.name] = await sweep_orphans(st, self.orphans_seen.get(st.name, frozenset()))
        except GatewayError as e:
            log.warning("GPUCluster %s: looking for dependency copies left behind: %s (next round)", st.name, e)

    async def _run_due(self) -> None:
        now = self.clock.monotonic()
        due = sorted((k for k, t in self.retry_at.items() if t <= now),
                     key=lambda k: (self.workloads.get(k, {}).get("metadata", {}).get("creationTimestamp") or "", k))
        for key in due:
            self.retry_at.pop(key, None)
            await self.reconcile(key)

    async def _drain(self, name: str) -> None:
        """A GPUCluster marked for deletion: keep observing it (Kopf stopped its daemon) while the migrator
        moves its work out (or stops it there when no compliant cluster has room), removes what Tenbin left
        there (the copies of finished work), then lets it go."""
        try:
            while (st := self.clusters.get(name)) is not None and st.deleting:
                await self.sync_cluster(name)
                if not self.placed_on(name) and await self._remove_leftovers(st):
                    await self._release_cluster(st)
                    return
                await self.clock.sleep(self.config.resync_seconds)  # the monitor's period, as the daemon's
        finally:
            self._drains.pop(name, None)

    async def _remove_leftovers(self, st: ClusterState) -> bool:
        """Delete Tenbin's objects still in a member that is being let go (the copies of finished work), so
        nothing of Tenbin's stays in a cluster it no longer watches. True once the member shows none; or
        when it has not answered for `delete_grace_seconds` since the deletion (one event names what stays)."""
        if st.phase == ClusterPhase.READY and st.observation is not None and st.gateway is not None:
            if not st.observation.objects:
                return True
            try:
                for obj in st.observation.objects.values():
                    if not (obj.body.get("metadata") or {}).get("deletionTimestamp"):
                        await self.delete_copy(st, obj.ref, obj.uid_label)
            except GatewayError as e:
                log.warning("GPUCluster %s: removing what Tenbin left there: %s (next round)", st.name, e)
            return False  # gone once an observation shows it gone
        if self.within_delete_grace(st.body.get("metadata") or {}):
            return False
        unstopped = self._run_once_copies(st)
        if unstopped and not is_fenced(st.body):
            if st.name not in self.fence_asked:  # once per deletion: the annotation is what it waits for
                self.fence_asked.add(st.name)
                self.post_event(st.body, "Warning", ClusterReason.DELETION_AWAITS_FENCE,
                                f"{st.name} does not answer and holds run-once work that may still run there: "
                                f"{', '.join(unstopped[:5])}{' ...' if len(unstopped) > 5 else ''}; annotate it "
                                f"{FENCED_ANNOTATION}=true once it is known stopped, and it is let go")
            return False
        self.fence_asked.discard(st.name)
        what = sorted(str(o.ref) for o in st.observation.objects.values()) if st.observation else []
        if what:
            self.post_event(st.body, "Warning", ClusterReason.LEFT_IN_MEMBER,
                            f"{st.name} did not answer for {self.config.delete_grace_seconds:g}s after its "
                            f"deletion; left there: {', '.join(what[:5])}{' ...' if len(what) > 5 else ''}")
        return True

    def _run_once_copies(self, st: ClusterState) -> list[str]:
        """Run-once copies in the member of workloads that are not finished (they could be placed again)."""
        if st.observation is None:
            return []
        live = {b["metadata"].get("uid"): b for b in self.workloads.values()
                if not is_finished((b.get("status") or {}).get("phase"))}
        return sorted(f"{o.ref}" for o in st.observation.objects.values()
                      if o.uid_label in live and not self.kinds.long_running(o.body))

    async def _release_cluster(self, st: ClusterState) -> None:
        meta = st.body.get("metadata") or {}
        fins = [f for f in meta.get("finalizers") or [] if f != DRAIN_FINALIZER]
        try:
            await self.hub.patch("GPUCluster", None, st.name, {"metadata": {
                "finalizers": fins, "resourceVersion": meta.get("resourceVersion")}})
        except GatewayError as e:
            if e.status != 404:
                raise
        log.info("GPUCluster %s drained: no work placed there any more", st.name)

def _needed_labels(body: Mapping[str, Any], rules: Mapping[DataClassification, ClassificationRule]) -> set[str]:
    """The residency labels a workload needs: its own requiredLabels and its classification rule's."""
    residency = (body.get("spec") or {}).get("residency") or {}
    rule = rules.get(DataClassification(residency.get("dataClassification") or "Internal"))
    return set(residency.get("requiredLabels") or []) | set(rule.required_labels if rule else ())


def _rv(body: Mapping[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or -1)
    except ValueError:
        return -1
