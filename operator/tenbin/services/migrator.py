"""Moving placed work: when (the pure `should_migrate`) and how (migration as data in status.migration).

How a move happens, one step per observation round, each step recorded in `status.migration.phase`:

- Long-running work (Deployment, StatefulSet, ReplicaSet) is make-before-break:
  Pending -> StartingTarget (applied on the target; wait until Ready, or the deadline fails the move
  and the source keeps running) -> StoppingSource (source deleted) -> Completed.
- Batch work (Job) never runs twice: Pending -> Checkpointing (the source object is annotated
  `tenbin.io/checkpoint-requested`; wait for `tenbin.io/checkpoint-done` or the grace period)
  -> StoppingSource (source deleted; wait until gone) -> Completed (applied on the target with
  `tenbin.io/resume-from` and `tenbin.io/checkpoint` annotations on the object and its pods).
- An unreachable source is not waited for: its stale copy is removed when the member returns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tenbin.api import (
    AIWorkload,
    ClusterPhase,
    ConditionStatus,
    MigrationPhase,
    MigrationPolicy,
    Reason,
    WorkloadCondition,
    WorkloadPhase,
)
from tenbin.clusters.gateway import GatewayError
from tenbin.scheduling.migration import Alternative, Current, Limits, Move, Policy, Trigger, should_migrate
from tenbin.services.conditions import now_iso
from tenbin.services.ledger import MOVE
from tenbin.services.member_objects import is_finished, member_ref
from tenbin.services.migration_state import (
    active_migration,
    evacuation_requested,
    history_of,
    replace_requested,
)
from tenbin.services.migration_steps import MoveSteps, Refuse, await_fence, fenced
from tenbin.services.state import ClusterState
from tenbin.services.status import workload_status
from tenbin.services.world import World

log = logging.getLogger("tenbin.migration")


class Migrator:
    """Decides, for the workloads of each observed member, whether they move now, and starts the move;
    `steps` (`migration_steps.MoveSteps`) takes it from there, one step per round."""

    def __init__(self, world: World, refused: Refuse) -> None:
        self.ctl = world
        self.pending_since: dict[str, float] = {}
        self.steps = MoveSteps(world, refused, moved=lambda key: self.pending_since.pop(key, None))
        self._judged: dict[str, tuple[int, int]] = {}  # key -> (snapshot build, generation) last found settled

    # ------------------------------------------------------------------------------------- deciding

    def limits(self) -> Limits:
        c = self.ctl.config
        return Limits(cluster_lost_after=c.cluster_lost_after_seconds, pending_timeout=c.pending_timeout_seconds,
                      max_failovers=c.max_failovers, min_move_interval=c.min_move_interval_seconds)

    def _active_count(self) -> int:
        return sum(1 for b in self.ctl.workloads.values() if active_migration(b))

    async def evaluate(self, st: ClusterState) -> None:
        """Decide for every workload placed on this member whether it should move now."""
        ctl = self.ctl
        for key, body in list(ctl.workloads.items()):
            status = body.get("status") or {}
            p = status.get("placement") or {}
            if p.get("cluster") != st.name or is_finished(status.get("phase")) or active_migration(body):
                continue
            if body["metadata"].get("deletionTimestamp"):
                continue
            if not self._worth_deciding(key, body, st):
                continue
            try:
                wl = AIWorkload.model_validate(body)
            except ValidationError:
                continue
            # Decide and reserve the target's GPUs atomically, as a new placement does: no other decision
            # may take them in between (there is no await inside the lock).
            async with ctl.placement_lock:
                move = self.decide(key, body, wl, st)
                unfenced = move is not None and move.trigger == Trigger.CLUSTER_LOST and not fenced(st, body, ctl.kinds)
                if unfenced:
                    move = None  # a copy there may still run: a run-once workload never gets a second one
                if move is not None and move.target is not None:
                    if self._active_count() >= ctl.config.max_concurrent_migrations:
                        log.info("migration of %s deferred: %d already in flight", key, self._active_count())
                        continue
                    gpus = int((status.get("placement") or {}).get("gpus") or 0)
                    # the target's GPUs are held beside the source's: until the move completes, the
                    # source's pods (pending or not) may still take theirs
                    ctl.ledger.restore(body)
                    ctl.ledger.reserve(key + MOVE, move.target.cluster, move.target.model, gpus,
                                       body["metadata"]["uid"], wl.spec.gpu.count)
            if unfenced:
                await await_fence(self.ctl, key, body, st)
                continue
            if move is None:
                self._judged[key] = (ctl.snapshot_builds, int(body["metadata"].get("generation") or 0))
            requested = replace_requested(body) is not None
            if move is None:
                if requested:
                    await self._consume_request(key, body, "no other feasible cluster; staying on " + st.name)
                continue
            if requested and move.trigger == Trigger.REQUESTED:
                await self._consume_request(key, body, None)
            await self.start(key, move)

    def forget(self, key: str) -> None:
        self._judged.pop(key, None)
        self.pending_since.pop(key, None)

    def _worth_deciding(self, key: str, body: Mapping[str, Any], st: ClusterState) -> bool:
        """Skip the decision when nothing it depends on changed since it last found nothing to do.

        Residency, prices and alternatives only change with the fleet snapshot or the workload's spec;
        loss, pending pods, requests, evacuation and cost (cooldown expiry) are checked every round.
        """
        ctl = self.ctl
        ctl.snapshot()
        if self._judged.get(key) != (ctl.snapshot_builds, int(body["metadata"].get("generation") or 0)):
            return True
        spec = body.get("spec") or {}
        if (spec.get("migration") or {}).get("policy") == MigrationPolicy.COST_AWARE:
            return True
        if st.phase != ClusterPhase.READY or st.deleting or replace_requested(body) is not None:
            return True
        if key in self.pending_since:
            return True
        obj = st.observation.objects.get(body["metadata"]["uid"]) if st.observation else None
        if obj is not None and obj.pods_unschedulable > 0:
            return True
        return bool((st.body.get("spec") or {}).get("cordoned"))

    def decide(self, key: str, body: Mapping[str, Any], wl: AIWorkload, st: ClusterState) -> Move | None:
        ctl = self.ctl
        p = body["status"]["placement"]
        cluster, model = p["cluster"], p.get("gpuModel") or ""
        now_m = self.ctl.clock.monotonic()
        uid = body["metadata"]["uid"]
        obj = st.observation.objects.get(uid) if st.observation else None
        if obj is not None and obj.pods_unschedulable > 0 and st.phase == ClusterPhase.READY:
            since = self.pending_since.setdefault(key, now_m)
        else:
            self.pending_since.pop(key, None)
            since = now_m
        current = Current(
            cluster=cluster, model=model, price_base=ctl.price_base(cluster, model),
            reachable=st.phase == ClusterPhase.READY,
            unreachable_for=(now_m - st.first_failure) if st.first_failure is not None else 0.0,
            pending_for=now_m - since,
            residency_violations=ctl.violations(wl, cluster, model, plugins=frozenset({"residency"})),
            evacuating=st.deleting or evacuation_requested(st.body),
            replace_requested=replace_requested(body) is not None,
        )
        mig = wl.spec.migration
        policy = Policy(str(mig.policy), float(mig.min_savings_percent), float(mig.cooldown_seconds)) \
            if mig is not None else Policy()
        if st.deleting and policy.policy == MigrationPolicy.NEVER:
            # the cluster goes away: its work must leave it, whatever the policy
            policy = Policy(str(MigrationPolicy.ON_FAILURE))
        history = history_of(body)
        exclude = {cluster}
        if current.pending_for >= ctl.config.pending_timeout_seconds:
            exclude |= set(history.failed_clusters)
        alternatives = [Alternative(c.cluster, c.model, c.price_base, c.score)
                        for c in ctl.alternatives(wl, exclude)]
        return should_migrate(current, alternatives, policy, history, self.limits(), self.ctl.clock.time())

    async def _consume_request(self, key: str, body: Mapping[str, Any], outcome: str | None) -> None:
        """Record the request's value as acted on (the annotation stays: see AIWorkloadStatus.replace_request)."""
        meta = body["metadata"]
        try:
            self.ctl.workloads[key] = await self.ctl.hub.patch_status(
                "AIWorkload", meta["namespace"], meta["name"], workload_status(replace_request=replace_requested(body)))
        except GatewayError as e:
            log.warning("consume re-place request of %s: %s", key, e)
            return
        if outcome:
            self.ctl.post_event(body, "Normal", Reason.REPLACE_REQUEST, outcome)

    # ------------------------------------------------------------------------------------- starting

    async def start(self, key: str, move: Move) -> None:
        ctl = self.ctl
        async with ctl.lock(key):
            body = ctl.workloads.get(key)
            if body is None or active_migration(body) or not (body.get("status") or {}).get("placement"):
                if move.target is not None:  # the target was reserved with the decision: give it back
                    ctl.ledger.reservations.pop(key + MOVE, None)
                return
            status = body.get("status") or {}
            p = status.get("placement") or {}
            meta = body["metadata"]
            source = p["cluster"]
            if move.target is None:
                await self._no_target(key, body, move)
                return
            now = self.ctl.clock.time()
            migration = {"from": source, "to": move.target.cluster, "gpuModel": move.target.model,
                         "reason": str(move.trigger), "message": move.reason[:1024], "phase": MigrationPhase.PENDING,
                         "startedAt": now_iso(now),
                         "deadline": now_iso(now + ctl.config.migration_timeout_seconds)}
            patch = workload_status(phase=WorkloadPhase.MIGRATING, migration=migration,
                                    message=f"migrating from {source} to {move.target.cluster}: {move.reason}")
            try:
                ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], patch)
            except BaseException:
                ctl.ledger.reservations.pop(key + MOVE, None)  # no move recorded: nothing held for the target
                raise
            ctl.post_event(body, "Warning" if move.mandatory else "Normal", Reason.MIGRATING,
                           f"{source} -> {move.target.cluster}: {move.reason}")
            ctl.metrics.migrations.labels(str(move.trigger), "started").inc()
        await self.steps.advance(key)

    async def _no_target(self, key: str, body: dict[str, Any], move: Move) -> None:
        """Nowhere to go. Drift: stop the work now. Lost cluster: give up the placement. Else: say so once."""
        ctl = self.ctl
        meta = body["metadata"]
        status = body.get("status") or {}
        p = status.get("placement") or {}
        source = p["cluster"]
        st = ctl.clusters.get(source)
        deleting = st is not None and st.deleting
        if move.trigger not in (Trigger.RESIDENCY_DRIFT, Trigger.CLUSTER_LOST) and not deleting:
            if status.get("message", "").endswith("(no target)"):
                return
            msg = f"{move.reason}; no other feasible cluster (no target)"
            ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"],
                                                            workload_status(message=msg))
            ctl.post_event(body, "Warning", Reason.NO_MIGRATION_TARGET, msg)
            return
        if (move.trigger == Trigger.RESIDENCY_DRIFT or deleting) and st is not None and st.gateway is not None:
            try:
                await ctl.delete_copy(st, member_ref(body), meta["uid"])
            except GatewayError as e:
                log.warning("evacuating %s from %s: %s (the stale copy goes when it is reachable)", key, source, e)
        diagnosis = ctl.diagnose(body)
        event = Reason.EVACUATED if move.trigger == Trigger.RESIDENCY_DRIFT or deleting else Reason.LOST
        msg = f"{move.reason}; stopped there and waiting: {diagnosis}"
        conditions = ctl.condition(list(status.get("conditions") or []), WorkloadCondition.SCHEDULED,
                                   ConditionStatus.FALSE, str(move.trigger), msg)
        history = ctl.history(status, event, None, None, None, None, msg[:256], reason=str(move.trigger),
                              from_=source)
        ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], workload_status(
            phase=WorkloadPhase.UNSCHEDULABLE, placement=None, message=msg[:4096], conditions=conditions,
            history=history))
        ctl.ledger.release(key)
        ctl.unschedulable.add(key)
        ctl.post_event(body, "Warning", event, msg)
        ctl.metrics.migrations.labels(str(move.trigger), "no-target").inc()
