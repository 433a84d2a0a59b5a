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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError

from tenbin.api import AIWorkload
from tenbin.clusters.gateway import GatewayError
from tenbin.scheduling.migration import Alternative, Current, Limits, Move, Policy, Trigger, should_migrate
from tenbin.services.conditions import now_iso, parse_time
from tenbin.services.ledger import MOVE
from tenbin.services.member_objects import is_finished, member_object, member_ref, observed_phase, workload_key
from tenbin.services.migration_state import (
    CHECKPOINT,
    CHECKPOINT_DONE,
    CHECKPOINT_REQUESTED,
    EVACUATE_ANNOTATION,
    FENCED_ANNOTATION,
    MAKE_BEFORE_BREAK,
    REPLACE_ANNOTATION,
    RESUME_FROM,
    TargetRefused,
    active_migration,
    history_of,
)
from tenbin.services.state import ClusterState
from tenbin.services.world import World

Refuse = Callable[..., Awaitable[None]]  # Placement.refused(key, cluster, error, migration=...)

log = logging.getLogger("tenbin.migration")


class Migrator:
    """Decides moves for the workloads of each observed member and advances the moves in flight; the
    placement's `refused` reports a move whose target refuses the copy once its source is gone."""

    def __init__(self, world: World, refused: Refuse) -> None:
        self.ctl = world
        self._refused = refused
        self.pending_since: dict[str, float] = {}
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
                unfenced = move is not None and move.trigger == Trigger.CLUSTER_LOST and not self.fenced(st, body)
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
                await self._await_fence(key, body, st)
                continue
            if move is None:
                self._judged[key] = (ctl.snapshot_builds, int(body["metadata"].get("generation") or 0))
            requested = REPLACE_ANNOTATION in (body["metadata"].get("annotations") or {})
            if move is None:
                if requested:
                    await self._consume_request(key, body, "no other feasible cluster; staying on " + st.name)
                continue
            if requested and move.trigger == Trigger.REQUESTED:
                await self._consume_request(key, body, None)
            await self.start(key, move)

    @staticmethod
    def fenced(st: ClusterState, body: Mapping[str, Any]) -> bool:
        """May a lost member's copy be replaced? For long-running kinds (make-before-break: a second replica
        for a while is how they move anyway) yes; for run-once work (Jobs, and any other kind) only when
        someone who can know says the copy is stopped: the GPUCluster annotated `tenbin.io/fenced: "true"`
        (after powering the cluster off, revoking its nodes, or seeing the Job gone)."""
        if body["spec"]["template"].get("kind") in MAKE_BEFORE_BREAK:
            return True
        annotations = (st.body.get("metadata") or {}).get("annotations") or {}
        return str(annotations.get(FENCED_ANNOTATION, "")).lower() == "true"

    async def _await_fence(self, key: str, body: Mapping[str, Any], st: ClusterState) -> None:
        """Say once that the work waits for the lost member to be fenced (or to come back)."""
        ctl = self.ctl
        status = body.get("status") or {}
        ready: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        if ready.get("reason") == "AwaitingFence":
            return
        msg = (f"{st.name} is unreachable and its copy may still run: a {body['spec']['template'].get('kind')} never "
               f"runs twice, so it waits until {st.name} is back or annotated {FENCED_ANNOTATION}=true "
               "(by whoever made sure the copy is stopped)")
        generation = int(body["metadata"].get("generation") or 0)
        conditions = ctl.condition(list(status.get("conditions") or []), "Ready", "False", "AwaitingFence", msg,
                                   generation)
        if await ctl.write_status(key, body, {"conditions": conditions, "message": msg}):
            ctl.post_event(body, "Warning", "AwaitingFence", msg)

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
        if (spec.get("migration") or {}).get("policy") == "CostAware":
            return True
        if st.phase != "Ready" or st.deleting or REPLACE_ANNOTATION in (body["metadata"].get("annotations") or {}):
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
        if obj is not None and obj.pods_unschedulable > 0 and st.phase == "Ready":
            since = self.pending_since.setdefault(key, now_m)
        else:
            self.pending_since.pop(key, None)
            since = now_m
        annotations = (st.body.get("metadata") or {}).get("annotations") or {}
        cordoned = bool((st.body.get("spec") or {}).get("cordoned"))
        current = Current(
            cluster=cluster, model=model, price_base=ctl.price_base(cluster, model),
            reachable=st.phase == "Ready",
            unreachable_for=(now_m - st.first_failure) if st.first_failure is not None else 0.0,
            pending_for=now_m - since,
            residency_violations=ctl.violations(wl, cluster, model, plugins=frozenset({"residency"})),
            evacuating=st.deleting or (cordoned and str(annotations.get(EVACUATE_ANNOTATION, "")).lower() == "true"),
            replace_requested=REPLACE_ANNOTATION in (body["metadata"].get("annotations") or {}),
        )
        mig = wl.spec.migration
        policy = Policy(str(mig.policy), float(mig.min_savings_percent), float(mig.cooldown_seconds)) \
            if mig is not None else Policy()
        if st.deleting and policy.policy == "Never":
            policy = Policy("OnFailure")  # the cluster goes away: its work must leave it, whatever the policy
        history = history_of(body)
        exclude = {cluster}
        if current.pending_for >= ctl.config.pending_timeout_seconds:
            exclude |= set(history.failed_clusters)
        alternatives = [Alternative(c.cluster, c.model, c.price_base, c.score)
                        for c in ctl.alternatives(wl, exclude)]
        return should_migrate(current, alternatives, policy, history, self.limits(), self.ctl.clock.time())

    async def _consume_request(self, key: str, body: Mapping[str, Any], outcome: str | None) -> None:
        meta = body["metadata"]
        try:
            self.ctl.workloads[key] = await self.ctl.hub.patch(
                "AIWorkload", meta["namespace"], meta["name"],
                {"metadata": {"annotations": {REPLACE_ANNOTATION: None}}})
        except GatewayError as e:
            log.warning("consume re-place request of %s: %s", key, e)
            return
        if outcome:
            self.ctl.post_event(body, "Normal", "ReplaceRequest", outcome)

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
                         "reason": move.reason[:1024], "phase": "Pending", "startedAt": now_iso(now),
                         "deadline": now_iso(now + ctl.config.migration_timeout_seconds)}
            patch = {"status": {"phase": "Migrating", "migration": migration,
                                "message": f"migrating from {source} to {move.target.cluster}: {move.reason}"}}
            try:
                ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], patch)
            except BaseException:
                ctl.ledger.reservations.pop(key + MOVE, None)  # no move recorded: nothing held for the target
                raise
            ctl.post_event(body, "Warning" if move.mandatory else "Normal", "Migrating",
                           f"{source} -> {move.target.cluster}: {move.reason}")
            ctl.metrics.migrations.labels(str(move.trigger), "started").inc()
        await self.advance(key)

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
                                                            {"status": {"message": msg}})
            ctl.post_event(body, "Warning", "NoMigrationTarget", msg)
            return
        if (move.trigger == Trigger.RESIDENCY_DRIFT or deleting) and st is not None and st.gateway is not None:
            try:
                await ctl.delete_copy(st, member_ref(body), meta["uid"])
            except GatewayError as e:
                log.warning("evacuating %s from %s: %s (the stale copy goes when it is reachable)", key, source, e)
        diagnosis = ctl.diagnose(body)
        event = "Evacuated" if move.trigger == Trigger.RESIDENCY_DRIFT or deleting else "Lost"
        msg = f"{move.reason}; stopped there and waiting: {diagnosis}"
        conditions = ctl.condition(list(status.get("conditions") or []), "Scheduled", "False", str(move.trigger), msg)
        history = ctl.history(status, event, None, None, None, None, msg[:256], reason=str(move.trigger),
                              from_=source)
        ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], {"status": {
            "phase": "Unschedulable", "placement": None, "message": msg[:4096], "conditions": conditions,
            "history": history}})
        ctl.ledger.release(key)
        ctl.unschedulable.add(key)
        ctl.post_event(body, "Warning", event, msg)
        ctl.metrics.migrations.labels(str(move.trigger), "no-target").inc()

    # ------------------------------------------------------------------------------------ advancing

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
            except GatewayError as e:
                log.warning("migration of %s: %s (will retry)", key, e)

    async def _target_refused(self, key: str, body: dict[str, Any], m: dict[str, Any], e: GatewayError) -> None:
        """The target refused the copy (does not serve the kind, rejects the template): retrying cannot help.
        While the source still runs the move fails and it stays there; once the source is gone (a Job's
        StoppingSource) the workload is placed anew, the refusing cluster left out."""
        ctl = self.ctl
        if e.status == 404:
            ctl.note_not_served(m["to"], body["spec"]["template"])
        if body["spec"]["template"].get("kind") in MAKE_BEFORE_BREAK or m.get("phase") != "StoppingSource":
            await self._fail(key, body, m, f"{m['to']} refused the copy: {e.detail or e}")
            return
        ctl.ledger.reservations.pop(key + MOVE, None)
        await self._refused(key, m["to"], e, migration={**m, "phase": "Failed"})

    async def _step(self, key: str, body: dict[str, Any], m: dict[str, Any]) -> None:
        ctl = self.ctl
        src, dst = ctl.clusters.get(m["from"]), ctl.clusters.get(m["to"])
        uid = body["metadata"]["uid"]
        kind = body["spec"]["template"]["kind"]
        src_up = src is not None and src.phase == "Ready" and src.gateway is not None
        src_obj = src.observation.objects.get(uid) if src_up and src and src.observation else None
        dst_obj = dst.observation.objects.get(uid) if dst and dst.observation else None
        now = self.ctl.clock.time()
        deadline = parse_time(m.get("deadline")) or now
        phase = m["phase"]
        ref = member_ref(body)

        if phase == "Pending":
            if kind in MAKE_BEFORE_BREAK:
                await self._apply_target(body, m)
                await self._set(key, body, m, "StartingTarget", deadline=now + ctl.config.migration_timeout_seconds)
            elif src_up and src_obj is not None and src is not None and src.gateway is not None:
                await src.gateway.annotate(ref, {CHECKPOINT_REQUESTED: now_iso(now)})
                await self._set(key, body, m, "Checkpointing", deadline=now + ctl.config.checkpoint_grace_seconds)
            else:
                await self._set(key, body, m, "StoppingSource")
        elif phase == "Checkpointing":
            done = ((src_obj.body.get("metadata") or {}).get("annotations") or {}).get(CHECKPOINT_DONE) \
                if src_obj is not None else None
            if done is not None or not src_up or src_obj is None or now >= deadline:
                hint = str(done) if done is not None else ("none: grace period expired" if src_up else
                                                           "none: source unreachable")
                if src_up and src_obj is not None and src is not None and src.gateway is not None:
                    await ctl.delete_copy(src, ref, uid)
                await self._set(key, body, m, "StoppingSource", resume_hint=hint[:1024])
        elif phase == "StartingTarget":
            ready = dst_obj is not None and observed_phase(dst_obj)[0] == "Running"
            if ready:
                if src_up and src_obj is not None and src is not None and src.gateway is not None:
                    await ctl.delete_copy(src, ref, uid)
                    await self._set(key, body, m, "StoppingSource")
                else:
                    await self._complete(key, body, m)
            elif now >= deadline:
                await self._fail(key, body, m, "the target did not become ready before the deadline")
        elif phase == "StoppingSource":
            if src_up and src_obj is not None:
                if not (src_obj.body.get("metadata") or {}).get("deletionTimestamp") and src is not None \
                        and src.gateway is not None:
                    await ctl.delete_copy(src, ref, uid)  # it could not be deleted while its member was away
                return  # stopped once an observation shows it gone (its pods with it: foreground deletion)
            if kind not in MAKE_BEFORE_BREAK and src is not None and not src_up and not self.fenced(src, body):
                # a run-once copy whose member went away before it was seen gone may still run there
                await self._await_fence(key, body, src)
                return
            if kind not in MAKE_BEFORE_BREAK:
                await self._apply_target(body, m)
            await self._complete(key, body, m)

    async def _apply_target(self, body: Mapping[str, Any], m: Mapping[str, Any]) -> None:
        ctl = self.ctl
        st = ctl.clusters.get(m["to"])
        if st is None or st.gateway is None:
            raise GatewayError(f"migration target {m['to']} is not connected")
        ctl.check_not_deleting(m["to"], body["metadata"]["uid"])
        inv = st.observation.inventory if st.observation else None
        model = m.get("gpuModel")
        obj = member_object(body, m["to"], model, inv.products(model) if inv is not None and model else None)
        if obj.get("kind") not in MAKE_BEFORE_BREAK:
            hints = {RESUME_FROM: m["from"], CHECKPOINT: m.get("resumeHint") or "none"}
            obj["metadata"]["annotations"].update(hints)
            tmpl = obj.get("spec", {}).get("template")
            if isinstance(tmpl, dict):
                tm = tmpl.setdefault("metadata", {})
                tm["annotations"] = {**(tm.get("annotations") or {}), **hints}
        try:
            await st.gateway.apply(obj)
        except GatewayError as e:
            if e.transient:
                raise
            raise TargetRefused(e) from None
        ctl.applied_at[workload_key(body)] = ctl.clock.monotonic()

    async def _set(self, key: str, body: Mapping[str, Any], m: dict[str, Any], phase: str,
                   deadline: float | None = None, resume_hint: str | None = None) -> None:
        m = {**m, "phase": phase}
        if deadline is not None:
            m["deadline"] = now_iso(deadline)
        if resume_hint is not None:
            m["resumeHint"] = resume_hint
        meta = body["metadata"]
        self.ctl.workloads[key] = await self.ctl.hub.patch_status(
            "AIWorkload", meta["namespace"], meta["name"], {"status": {"migration": m}})

    async def _complete(self, key: str, body: Mapping[str, Any], m: dict[str, Any]) -> None:
        ctl = self.ctl
        meta = body["metadata"]
        status = body.get("status") or {}
        old = status.get("placement") or {}
        gpus = int(old.get("gpus") or 0)
        placement = ctl.placement_dict(m["to"], m.get("gpuModel") or old.get("gpuModel") or "", gpus)
        trigger = str(m.get("reason", "")).split(":", 1)[0]
        msg = f"migrated from {m['from']} to {m['to']}: {m.get('reason')}"
        history = ctl.history(status, "Migrated", m["to"], placement.get("gpuModel"), placement.get("pricePerGPUHour"),
                              placement.get("currency"), msg[:256], reason=trigger, from_=m["from"])
        ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], {"status": {
            "phase": "Scheduled", "placement": placement, "message": msg[:4096], "history": history,
            "migration": {**m, "phase": "Completed"}}})
        ctl.applied[key] = int(meta.get("generation") or 0)
        target = ctl.ledger.reservations.pop(key + MOVE, None)
        ctl.ledger.release(key)  # the source's GPUs
        if target is not None:
            ctl.ledger.reservations[key] = target  # until the member shows the target's pods bound
        self.pending_since.pop(key, None)
        ctl.post_event(body, "Normal", "Migrated", msg)
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
        history = ctl.history(status, "MigrationFailed", m["to"], None, None, None, msg[:256],
                              reason=str(m.get("reason", "")).split(":", 1)[0], from_=m["from"])
        ctl.workloads[key] = await ctl.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], {"status": {
            "phase": "Scheduled", "message": msg, "history": history, "migration": {**m, "phase": "Failed"}}})
        ctl.ledger.reservations.pop(key + MOVE, None)
        ctl.post_event(body, "Warning", "MigrationFailed", msg)
        ctl.metrics.migrations.labels(str(m.get("reason", "")).split(":", 1)[0], "failed").inc()


