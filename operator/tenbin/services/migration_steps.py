"""Moves in flight, one step per observation round, each step recorded in `status.migration.phase`
(the phases and why are in `migrator.py`). Every step runs under the workload's lock, on its body as
the hub last returned it; a step that cannot go on says so and fails the move, the source kept."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tenbin.api import (
    AIWorkload,
    ClusterPhase,
    ConditionStatus,
    MigrationPhase,
    Reason,
    WorkloadCondition,
    WorkloadPhase,
)
from tenbin.clusters.gateway import GatewayError
from tenbin.kinds import Kinds
from tenbin.services.conditions import now_iso, parse_time
from tenbin.services.dependencies import DependencyCopier
from tenbin.services.ledger import MOVE
from tenbin.services.member_objects import annotate_pods, member_object, member_ref, observed_phase, workload_key
from tenbin.services.migration_state import (
    CHECKPOINT,
    CHECKPOINT_DONE,
    CHECKPOINT_REQUESTED,
    FENCED_ANNOTATION,
    RESUME_FROM,
    TargetRefused,
    active_migration,
    is_fenced,
)
from tenbin.services.placement import say_if_pruned
from tenbin.services.state import ClusterState
from tenbin.services.status import workload_status
from tenbin.services.world import World

Refuse = Callable[..., Awaitable[None]]  # Placement.refused(key, cluster, error, migration=...)


class TargetForbidden(Exception):
    """A move's target breaks the workload's rules now (it met them when the move was decided)."""

log = logging.getLogger("tenbin.migration")


def fenced(st: ClusterState, body: Mapping[str, Any], kinds: Kinds) -> bool:
    """May a lost member's copy be replaced? For long-running kinds (make-before-break: a second replica
    for a while is how they move anyway) yes; for run-once work (Jobs, and any other kind) only when
    someone who can know says the copy is stopped: the GPUCluster annotated `tenbin.io/fenced: "true"`
    (after powering the cluster off, revoking its nodes, or seeing the Job gone)."""
    return kinds.long_running(body["spec"]["template"]) or is_fenced(st.body)


async def await_fence(ctl: World, key: str, body: Mapping[str, Any], st: ClusterState) -> None:
    """Say once that the work waits for the lost member to be fenced (or to come back)."""
    status = body.get("status") or {}
    ready: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == WorkloadCondition.READY), {})
    if ready.get("reason") == Reason.AWAITING_FENCE:
        return
    msg = (f"{st.name} is unreachable and its copy may still run: a {body['spec']['template'].get('kind')} never "
           f"runs twice, so it waits until {st.name} is back or annotated {FENCED_ANNOTATION}=true "
           "(by whoever made sure the copy is stopped)")
    generation = int(body["metadata"].get("generation") or 0)
    conditions = ctl.condition(list(status.get("conditions") or []), WorkloadCondition.READY, ConditionStatus.FALSE,
                               Reason.AWAITING_FENCE, msg, generation)
    if await ctl.write_status(key, body, conditions=conditions, message=msg):
        ctl.post_event(body, "Warning", Reason.AWAITING_FENCE, msg)


class MoveSteps:
    """Advances the moves in flight; `refused` (the placement's) reports a target that refuses the copy
    once the source is gone, `moved(key)` tells the decider a move completed."""

    def __init__(self, world: World, refused: Refuse, moved: Callable[[str], object]) -> None:
        self.ctl = world
        self.deps = DependencyCopier(world)
        self._refused = refused
        self._moved = moved

    async def advance_for(self, cluster: str) -> None:
        for key, body in list(self.ctl.workloads.items()):
            m = active_migration(body)
            if m and cluster in (m.get("from"), m.get("to")):
                await self.advance(key)

    async def advance(self, key: str) -> None:
        ctl = self.ctl
        async with ctl.lock(key):
            body = ctl.workloads.get(key)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            m = active_migration(body)
            if m is None:
                return
            try:
                await self._step(key, body, dict(m))
            except TargetRefused as r:
                await self._target_refused(key, body, dict(m), r.error)
            except TargetForbidden as f:
                await self._target_forbidden(key, body, dict(m), str(f))
            except GatewayError as e:
                log.warning("migration of %s: %s (will retry)", key, e)

    async def _target_refused(self, key: str, body: dict[str, Any], m: dict[str, Any], e: GatewayError) -> None:
        """The target refused the copy (does not serve the kind, rejects the template): retrying cannot help.
        While the source still runs the move fails and it stays there; once the source is gone (a Job's
        StoppingSource) the workload is placed anew, the refusing cluster left out."""
        ctl = self.ctl
        if e.status == 404:
            ctl.note_not_served(m["to"], body["spec"]["template"])
        if ctl.kinds.long_running(body["spec"]["template"]) \
                or m.get("phase") != MigrationPhase.STOPPING_SOURCE:
            await self._fail(key, body, m, f"{m['to']} refused the copy: {e.detail or e}")
            return
        ctl.ledger.reservations.pop(key + MOVE, None)
        await self._refused(key, m["to"], e, migration={**m, "phase": MigrationPhase.FAILED})

    async def _target_forbidden(self, key: str, body: dict[str, Any], m: dict[str, Any], why: str) -> None:
        """The target no longer meets the workload's rules (its residency, labels or price changed since the
        move was decided): nothing is applied there. While the source still runs the move fails and the work
        stays; once the source is gone (a Job's StoppingSource) it is placed anew, by the rules of now."""
        ctl = self.ctl
        text = f"{m['to']} no longer meets the workload's rules: {why}"
        if ctl.kinds.long_running(body["spec"]["template"]) or m.get("phase") != MigrationPhase.STOPPING_SOURCE:
            await self._fail(key, body, m, text)
            return
        meta, status = body["metadata"], body.get("status") or {}
        msg = f"migration to {m['to']} stopped: {text}; its copy on {m['from']} is stopped, so it is placed anew"
        trigger = str(m.get("reason", "")).split(":", 1)[0]
        history = ctl.history(status, Reason.MIGRATION_FAILED, m["to"], None, None, None, msg[:256], reason=trigger,
                              from_=m["from"])
        ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], workload_status(
            phase=WorkloadPhase.PENDING, placement=None, message=msg[:4096], history=history,
            migration={**m, "phase": MigrationPhase.FAILED}))
        ctl.ledger.release(key)  # neither the stopped source's GPUs nor the target's
        ctl.applied.pop(key, None)
        ctl.post_event(body, "Warning", Reason.MIGRATION_FAILED, msg)
        ctl.metrics.migrations.labels(trigger, "failed").inc()
        ctl.retry(key, 0.0)

    async def _step(self, key: str, body: dict[str, Any], m: dict[str, Any]) -> None:
        ctl = self.ctl
        src, dst = ctl.clusters.get(m["from"]), ctl.clusters.get(m["to"])
        uid = body["metadata"]["uid"]
        long_running = ctl.kinds.long_running(body["spec"]["template"])
        src_up = src is not None and src.phase == ClusterPhase.READY and src.gateway is not None
        src_obj = src.observation.objects.get(uid) if src_up and src and src.observation else None
        dst_obj = dst.observation.objects.get(uid) if dst and dst.observation else None
        now = self.ctl.clock.time()
        deadline = parse_time(m.get("deadline")) or now
        phase = m["phase"]
        ref = member_ref(body)

        if phase == MigrationPhase.PENDING:
            if long_running:
                body = dict(await self._apply_target(body, m))
                await self._set(key, body, m, MigrationPhase.STARTING_TARGET,
                                deadline=now + ctl.config.migration_timeout_seconds)
            elif src_up and src_obj is not None and src is not None and src.gateway is not None:
                await src.gateway.annotate(ref, {CHECKPOINT_REQUESTED: now_iso(now)})
                await self._set(key, body, m, MigrationPhase.CHECKPOINTING,
                                deadline=now + ctl.config.checkpoint_grace_seconds)
            else:
                await self._set(key, body, m, MigrationPhase.STOPPING_SOURCE)
        elif phase == MigrationPhase.CHECKPOINTING:
            done = ((src_obj.body.get("metadata") or {}).get("annotations") or {}).get(CHECKPOINT_DONE) \
                if src_obj is not None else None
            if done is not None or not src_up or src_obj is None or now >= deadline:
                hint = str(done) if done is not None else ("none: grace period expired" if src_up else
                                                           "none: source unreachable")
                if src_up and src_obj is not None and src is not None and src.gateway is not None:
                    await ctl.delete_copy(src, ref, uid)
                await self._set(key, body, m, MigrationPhase.STOPPING_SOURCE, resume_hint=hint[:1024])
        elif phase == MigrationPhase.STARTING_TARGET:
            ready = dst_obj is not None and observed_phase(dst_obj, ctl.kinds)[0] == WorkloadPhase.RUNNING
            if ready:
                if src_up and src_obj is not None and src is not None and src.gateway is not None:
                    await ctl.delete_copy(src, ref, uid)
                    await self._set(key, body, m, MigrationPhase.STOPPING_SOURCE)
                else:
                    await self._complete(key, body, m)
            elif now >= deadline:
                await self._fail(key, body, m, "the target did not become ready before the deadline")
        elif phase == MigrationPhase.STOPPING_SOURCE:
            if src_up and src_obj is not None:
                if not (src_obj.body.get("metadata") or {}).get("deletionTimestamp") and src is not None \
                        and src.gateway is not None:
                    await ctl.delete_copy(src, ref, uid)  # it could not be deleted while its member was away
                return  # stopped once an observation shows it gone (its pods with it: foreground deletion)
            if not long_running and src is not None and not src_up and not fenced(src, body, ctl.kinds):
                # a run-once copy whose member went away before it was seen gone may still run there
                await await_fence(self.ctl, key, body, src)
                return
            if not long_running:
                body = dict(await self._apply_target(body, m))
            await self._complete(key, body, m)

    async def _apply_target(self, body: Mapping[str, Any], m: Mapping[str, Any]) -> Mapping[str, Any]:
        ctl = self.ctl
        st = ctl.clusters.get(m["to"])
        if st is None or st.gateway is None:
            raise GatewayError(f"migration target {m['to']} is not connected")
        ctl.check_not_deleting(m["to"], body["metadata"]["uid"])
        # decided before, applied now: the target's residency (or labels, or price) may have changed since
        why = ctl.conflict(AIWorkload.model_validate(body), m["to"], m.get("gpuModel"))
        if why:
            raise TargetForbidden(why)
        inv = st.observation.inventory if st.observation else None
        model = m.get("gpuModel")
        obj = member_object(body, m["to"], model, inv.products(model) if inv is not None and model else None,
                            ctl.kinds)
        if not ctl.kinds.long_running(obj):
            annotate_pods(obj, {RESUME_FROM: m["from"], CHECKPOINT: m.get("resumeHint") or "none"}, ctl.kinds)
        try:
            stored = await self.deps.apply(workload_key(body), st, body, obj)
        except GatewayError as e:
            if e.transient:
                raise
            raise TargetRefused(e) from None
        ctl.applied_at[workload_key(body)] = ctl.clock.monotonic()
        say_if_pruned(ctl, body, m["to"], stored)
        return ctl.workloads.get(workload_key(body)) or body  # with the dependencies' condition, if written

    async def _set(self, key: str, body: Mapping[str, Any], m: dict[str, Any], phase: MigrationPhase,
                   deadline: float | None = None, resume_hint: str | None = None) -> None:
        m = {**m, "phase": phase}
        if deadline is not None:
            m["deadline"] = now_iso(deadline)
        if resume_hint is not None:
            m["resumeHint"] = resume_hint
        meta = body["metadata"]
        self.ctl.workloads[key] = await self.ctl.hub.patch_status(
            "AIWorkload", meta["namespace"], meta["name"], workload_status(migration=m))

    async def _complete(self, key: str, body: Mapping[str, Any], m: dict[str, Any]) -> None:
        ctl = self.ctl
        meta = body["metadata"]
        status = body.get("status") or {}
        old = status.get("placement") or {}
        gpus = int(old.get("gpus") or 0)
        placement = ctl.placement_dict(m["to"], m.get("gpuModel") or old.get("gpuModel") or "", gpus)
        trigger = str(m.get("reason", "")).split(":", 1)[0]
        msg = f"migrated from {m['from']} to {m['to']}: {m.get('reason')}"
        history = ctl.history(status, Reason.MIGRATED, m["to"], placement.get("gpuModel"),
                              placement.get("pricePerGPUHour"), placement.get("currency"), msg[:256], reason=trigger,
                              from_=m["from"])
        ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], workload_status(
            phase=WorkloadPhase.SCHEDULED, placement=placement, message=msg[:4096], history=history,
            migration={**m, "phase": MigrationPhase.COMPLETED}))
        ctl.applied[key] = int(meta.get("generation") or 0)
        target = ctl.ledger.reservations.pop(key + MOVE, None)
        ctl.ledger.release(key)  # the source's GPUs
        if target is not None:
            ctl.ledger.reservations[key] = target  # until the member shows the target's pods bound
        self._moved(key)
        ctl.post_event(body, "Normal", Reason.MIGRATED, msg)
        ctl.metrics.migrations.labels(trigger, "completed").inc()

    async def _fail(self, key: str, body: Mapping[str, Any], m: dict[str, Any], why: str) -> None:
        ctl = self.ctl
        meta = body["metadata"]
        status = body.get("status") or {}
        dst = ctl.clusters.get(m["to"])
        if dst is not None and dst.gateway is not None:
            try:
                await ctl.delete_copy(dst, member_ref(body), meta["uid"])
            except GatewayError as e:
                log.warning("removing failed target copy of %s from %s: %s", key, m["to"], e)
        msg = f"migration to {m['to']} failed: {why}; staying on {m['from']}"
        history = ctl.history(status, Reason.MIGRATION_FAILED, m["to"], None, None, None, msg[:256],
                              reason=str(m.get("reason", "")).split(":", 1)[0], from_=m["from"])
        ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], workload_status(
            phase=WorkloadPhase.SCHEDULED, message=msg, history=history,
            migration={**m, "phase": MigrationPhase.FAILED}))
        ctl.ledger.reservations.pop(key + MOVE, None)
        ctl.post_event(body, "Warning", Reason.MIGRATION_FAILED, msg)
        ctl.metrics.migrations.labels(str(m.get("reason", "")).split(":", 1)[0], "failed").inc()
