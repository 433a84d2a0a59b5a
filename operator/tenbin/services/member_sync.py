"""Member sync, one round per member per resync: observe the member (inventory, its Tenbin objects,
telemetry), decide its phase (Ready, NotReady after `unreachable_after_seconds`), write the GPUCluster's
status, and carry what the member shows into the AIWorkloads placed there (phase, Ready condition, the
ledger's promises the member now counts, copies that should not be there removed, copies gone applied
again). Moves are the migrator's; the controller runs them after each round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tenbin.api import (
    ClusterCondition,
    ClusterPhase,
    ClusterReason,
    ConditionStatus,
    Reason,
    WorkloadCondition,
    WorkloadPhase,
)
from tenbin.clusters.gateway import GatewayError, MemberObservation, ObjectRef, ObservedObject
from tenbin.inventory.telemetry import PrometheusTelemetrySource, read_telemetry
from tenbin.services.conditions import now_iso
from tenbin.services.member_objects import is_finished, observed_phase
from tenbin.services.migration_state import FENCED_ANNOTATION, active_migration, stale_copy
from tenbin.services.state import DRAIN_FINALIZER, ClusterState
from tenbin.services.status import cluster_status
from tenbin.services.world import World

log = logging.getLogger("tenbin")


class MemberSync:
    """Observes members and follows what they show into the hub's objects."""

    def __init__(self, world: World) -> None:
        self.w = world

    async def observe(self, name: str) -> tuple[ClusterState, bool] | None:
        """Observe one member: inventory, phase, and the status of the workloads placed there. Returns its
        state and whether the fleet as the core sees it changed (phase or free GPUs); None if unknown."""
        st = self.w.clusters.get(name)
        if st is None:
            return None
        await self._ensure_drain_finalizer(st)
        now = self.w.clock.monotonic()
        before = (st.phase, st.observation.inventory.free() if st.observation else None,
                  st.observation.served if st.observation else None)  # a kind served now: waiting work may fit
        if st.invalid is not None:
            st.phase, st.reason, st.message = ClusterPhase.NOT_READY, ClusterReason.INVALID_SPEC, st.invalid
        else:
            try:
                gw = await self.w.connect(st)
                obs = await self._with_telemetry(st, await gw.observe())
                if st.observation is None or obs.inventory != st.observation.inventory:
                    self.w.fleet_changed()  # before any other await: no decision may use the old inventory
                st.observation = obs
                for c, uid in [k for k, t in self.w.deleting.items() if k[0] == name and t < now]:
                    if uid not in obs.objects:
                        del self.w.deleting[(c, uid)]  # an observation begun after the delete shows it gone
                st.last_ok, st.first_failure = now, None
                st.phase, st.reason = ClusterPhase.READY, ClusterReason.OBSERVED
                st.message = "member apiserver reachable"
                self.w.metrics.member_syncs.labels(name, "ok").inc()
            except GatewayError as e:
                if e.status in (401, 403) and st.gateway is not None:
                    # credentials rotated or expired: read the kubeconfig Secret again next round
                    await st.gateway.close()
                    st.gateway, st.gateway_key = None, None
                self.w.metrics.member_errors.labels(name, "observe").inc()
                self.w.metrics.member_syncs.labels(name, "error").inc()
                if st.first_failure is None:
                    st.first_failure, st.failing_since = now, now_iso(self.w.clock.time())
                down_for = now - st.first_failure
                if down_for >= self.w.config.unreachable_after_seconds or st.last_ok is None:
                    st.phase, st.reason = ClusterPhase.NOT_READY, ClusterReason.UNREACHABLE
                    # since when, not for how long: a status that changes every round would be written every
                    # round (and Argo CD would refresh the GPUCluster every few seconds)
                    st.message = f"unreachable since {st.failing_since}: {e}"
                    st.observation = None if st.last_ok is None else st.observation
        st.attempted = True
        if st.phase == ClusterPhase.READY and st.first_failure is None:  # answered this very round
            await self._consume_fence(st)
        after = (st.phase, st.observation.inventory.free() if st.observation else None,
                 st.observation.served if st.observation else None)
        if before != after:
            self.w.fleet_changed()
        await self._write_cluster_status(st)
        if st.observation is not None and st.phase == ClusterPhase.READY:
            await self._follow(st)
        return st, before != after

    async def _with_telemetry(self, st: ClusterState, obs: MemberObservation) -> MemberObservation:
        """Adjust the API inventory with Prometheus/DCGM telemetry when the GPUCluster asks for it.

        Telemetry can only take GPUs away (unhealthy, busy); when it is stale or down the API inventory
        stands and the TelemetryAvailable condition says why. It never fails the observation.
        """
        spec = st.model.spec.telemetry if st.model is not None else None
        prom = spec.prometheus if spec is not None else None
        if prom is None:
            st.telemetry, st.telemetry_key, st.telemetry_condition = None, None, None
            return obs
        key = prom.model_dump_json()
        if st.telemetry is None or st.telemetry_key != key:
            token = None
            if prom.auth_secret_ref is not None:
                ref = prom.auth_secret_ref
                try:
                    token = (await self.w.hub.read_secret_key(ref.namespace, ref.name, ref.key)).strip()
                except GatewayError as e:
                    st.telemetry_condition = {"type": ClusterCondition.TELEMETRY_AVAILABLE,
                                              "status": ConditionStatus.FALSE, "reason": ClusterReason.NO_CREDENTIALS,
                                              "message": str(e)[:1024]}
                    return obs
            st.telemetry, st.telemetry_key = PrometheusTelemetrySource.from_spec(prom, token=token), key
        inv, cond = await asyncio.to_thread(read_telemetry, st.telemetry, obs.inventory)  # HTTP, blocking
        st.telemetry_condition = cond
        return replace(obs, inventory=inv)

    async def _write_cluster_status(self, st: ClusterState) -> None:
        inv = st.observation.inventory.by_model() if st.observation else {}
        gpus = [{"model": m.model, "capacity": m.capacity, "allocatable": m.allocatable,
                 "allocated": m.allocated, "free": m.free} for m in inv.values()]
        for m in inv.values():
            self.w.metrics.free_gpus.labels(st.name, m.model).set(m.free)
        ready = st.phase == ClusterPhase.READY
        self.w.metrics.cluster_ready.labels(st.name).set(1 if ready else 0)
        desired: dict[str, Any] = {"phase": st.phase, "message": st.message[:1024],
                                   "free_gpus": sum(g["free"] for g in gpus)}
        if st.observation is not None:
            desired["gpus"] = gpus
        conds = list((st.body.get("status") or {}).get("conditions") or [])
        generation = int((st.body.get("metadata") or {}).get("generation") or 0)  # the spec these judge
        ready_status = ConditionStatus.TRUE if ready else ConditionStatus.FALSE
        conds = self.w.condition(conds, ClusterCondition.READY, ready_status, st.reason, st.message, generation)
        if st.telemetry_condition is not None:
            tc = st.telemetry_condition
            conds = self.w.condition(conds, tc["type"], tc["status"], tc["reason"], tc["message"], generation)
        else:
            conds = [c for c in conds if c.get("type") != ClusterCondition.TELEMETRY_AVAILABLE]
        desired_cmp = {**desired, "conditions": [(c["type"], c["status"], c["reason"], c.get("observedGeneration"))
                                                 for c in conds]}
        now = self.w.clock.monotonic()
        if desired_cmp == st.last_status and now - st.last_status_write < self.w.config.status_heartbeat_seconds:
            return
        patch = cluster_status(**desired, conditions=conds, last_sync_time=now_iso(self.w.clock.time()))
        try:
            body = await self.w.hub.patch_status("GPUCluster", None, st.name, patch)
        except GatewayError as e:
            log.warning("GPUCluster %s status: %s", st.name, e)
            return
        st.body = body
        st.last_status = desired_cmp
        st.last_status_write = now

    async def _follow(self, st: ClusterState) -> None:
        """Carry member state into the AIWorkloads placed there; remove orphans."""
        assert st.observation is not None
        by_uid: dict[str, str] = {}
        for wkey, body in list(self.w.workloads.items()):
            p = ((body.get("status") or {}).get("placement") or {})
            if p.get("cluster") == st.name:
                by_uid[body["metadata"]["uid"]] = wkey
        known = {b["metadata"].get("uid"): k for k, b in self.w.workloads.items()}
        for uid, obj in st.observation.objects.items():
            found = by_uid.get(uid)
            if found is None:
                await self._remove_if_unwanted(st, uid, obj.ref, known.get(uid))
                continue
            key = found
            if (obj.body.get("metadata") or {}).get("deletionTimestamp"):
                # a copy on its way out (a stale one we removed, or one deleted in the member) says nothing
                # of the work: its pods may still be ready. Once it is gone the copy is applied again (below)
                continue
            r = self.w.ledger.reservations.get(key)
            phase, message = observed_phase(obj, self.w.kinds)
            if r is not None and r.cluster == st.name and (obj.pods_bound_gpus >= r.gpus or is_finished(phase)):
                self.w.ledger.reservations.pop(key, None)  # this member's inventory now counts the workload's GPUs
            await self._set_state(key, st.name, obj, phase, message)
        for uid, key in by_uid.items():
            if uid not in st.observation.objects and self._copy_expected(key, st):
                self.w.retry(key, 0.0)  # its copy is gone: _keep_placed applies it again
        self.w.update_cost()

    async def _remove_if_unwanted(self, st: ClusterState, uid: str, ref: ObjectRef, key: str | None) -> None:
        """Delete an observed copy no workload wants here: its owner is gone, or placed elsewhere.

        Decided under the owner's lock, on its body as it is now: this round's earlier awaits may have let
        a placement onto this very member adopt the copy (a member back after an outage, whose lost work
        is placed there again), and deleting it then would run that work twice."""
        if not self.w.seeded or st.gateway is None:
            return
        async with self.w.lock(key) if key is not None else contextlib.nullcontext():
            owner = self.w.workloads.get(key) if key is not None else None
            if owner is not None and owner["metadata"].get("uid") != uid:
                owner = None  # deleted and created again under its name: this copy is the old one's
            if owner is not None and not stale_copy(owner, st.name):
                return
            log.info("removing %s copy %s from %s", "orphan" if owner is None else "stale", ref, st.name)
            try:
                await self.w.delete_copy(st, ref, uid)
            except GatewayError as e:
                log.warning("orphan %s in %s: %s", ref, st.name, e)

    def _copy_expected(self, key: str, st: ClusterState) -> bool:
        """A placed, unfinished, unmoving workload not applied by this process since the observation began."""
        body = self.w.workloads.get(key) or {}
        applied = self.w.applied_at.get(key)
        return (applied is None or (st.last_ok or 0.0) > applied) and not active_migration(body) and \
            not is_finished((body.get("status") or {}).get("phase")) and not body["metadata"].get("deletionTimestamp")

    async def _set_state(self, key: str, cluster: str, obj: ObservedObject, phase: WorkloadPhase,
                         message: str) -> None:
        """What the member shows, in one status write: the phase (with a history entry and an Event when it
        changes) and the Ready condition. Ready is True while it runs; False, with one Warning event per
        cause, while the member leaves its pods unschedulable (capacity failover moves it after
        --pending-timeout when a compliant cluster has room; until then, and when there is none, this says so)."""
        async with self.w.lock(key):
            body = self.w.workloads.get(key)
            if body is None or body["metadata"].get("deletionTimestamp") or active_migration(body):
                return
            status = body.get("status") or {}
            fields: dict[str, Any] = {}
            events: list[tuple[str, str, str]] = []
            if status.get("phase") != phase and not is_finished(status.get("phase")):
                p = status.get("placement") or {}
                event = Reason(phase)  # the phase it reached names the event (and the history entry)
                text = f"{message} on {p.get('cluster')}"
                fields.update(phase=phase, message=text)
                if phase in (WorkloadPhase.RUNNING, WorkloadPhase.SUCCEEDED, WorkloadPhase.FAILED):
                    fields["history"] = self.w.history(status, event, p.get("cluster"), p.get("gpuModel"), None,
                                                       None, message)
                events.append(("Warning" if phase == WorkloadPhase.FAILED else "Normal", event, text))
            ready = _ready(cluster, obj, phase)
            old: Mapping[str, Any] = next(
                (c for c in status.get("conditions") or [] if c.get("type") == WorkloadCondition.READY), {})
            if ready is not None and (old.get("status"), old.get("reason")) != ready[:2]:
                status_, reason, text = ready
                generation = int(body["metadata"].get("generation") or 0)
                fields["conditions"] = self.w.condition(list(status.get("conditions") or []),
                                                        WorkloadCondition.READY, status_, reason, text, generation)
                if status_ == ConditionStatus.FALSE:
                    fields["message"] = text
                    events.append(("Warning", reason, text))
            if not fields or not await self.w.write_status(key, body, **fields):
                return
            for type_, cause, said in events:
                self.w.post_event(body, type_, cause, said)

    async def _consume_fence(self, st: ClusterState) -> None:
        """A fence vouches for one outage: once the member answers again it no longer holds, so the
        annotation is removed (and the next loss waits for a fence of its own)."""
        annotations = (st.body.get("metadata") or {}).get("annotations") or {}
        if FENCED_ANNOTATION not in annotations:
            return
        try:
            st.body = await self.w.hub.patch("GPUCluster", None, st.name,
                                           {"metadata": {"annotations": {FENCED_ANNOTATION: None}}})
        except GatewayError as e:
            log.warning("GPUCluster %s: removing %s: %s (next round)", st.name, FENCED_ANNOTATION, e)
            return
        self.w.post_event(st.body, "Normal", ClusterReason.FENCE_CONSUMED,
                        f"{st.name} answers again: {FENCED_ANNOTATION} removed; a next loss waits for a new fence")

    async def _ensure_drain_finalizer(self, st: ClusterState) -> None:
        meta = st.body.get("metadata") or {}
        if st.deleting or DRAIN_FINALIZER in (meta.get("finalizers") or []):
            return
        try:
            st.body = await self.w.hub.patch("GPUCluster", None, st.name, {"metadata": {
                "finalizers": [*(meta.get("finalizers") or []), DRAIN_FINALIZER],
                "resourceVersion": meta.get("resourceVersion")}})
        except GatewayError as e:
            log.warning("GPUCluster %s finalizer: %s (next round)", st.name, e)


def _ready(cluster: str, obj: ObservedObject, phase: WorkloadPhase
           ) -> tuple[ConditionStatus, Reason, str] | None:
    """(status, reason, message) of the Ready condition the member's object shows; None: not yet known."""
    if obj.pods_unschedulable:
        return ConditionStatus.FALSE, Reason.PODS_UNSCHEDULABLE, \
            f"{obj.pods_unschedulable} pod(s) unschedulable in {cluster}: {obj.unschedulable_message or 'no node fits'}"
    if phase == WorkloadPhase.RUNNING:
        return ConditionStatus.TRUE, Reason.RUNNING, f"running on {cluster}"
    return None
