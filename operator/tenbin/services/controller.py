"""The operator's brain: the hub view, reservations, placement, status following, deletion.

Kopf handlers feed object bodies in (`observe_*`) and call `reconcile(key)`; one monitor loop per
GPUCluster (a Kopf daemon) calls `sync_cluster`. Decisions come from the pure scheduling core.

Writes per placement are kept to the minimum: a finalizer patch, a status patch written *before*
the member object is applied (so a crash can never lead to a second copy elsewhere), and one
server-side apply in the member.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from tenbin.api import AIWorkload, GPUCluster, GPUClusterStatus, PlacementPolicy
from tenbin.api.objects import field_path
from tenbin.clusters.gateway import ClusterGateway, GatewayError, MemberObservation, ObjectRef, ObservedObject
from tenbin.clusters.kube import run_blocking
from tenbin.inventory.telemetry import PrometheusTelemetrySource, read_telemetry
from tenbin.scheduling.scheduler import Scheduler
from tenbin.scheduling.snapshot import Snapshot
from tenbin.services.clock import SYSTEM, Clock
from tenbin.services.conditions import now_iso, set_condition
from tenbin.services.ledger import Ledger, tolerations_of
from tenbin.services.member_objects import (
    is_finished,
    member_object,
    member_ref,
    observed_phase,
    workload_key,
)
from tenbin.services.metrics import Metrics
from tenbin.services.migrator import FENCED_ANNOTATION, Migrator, active_migration, stale_copy
from tenbin.services.state import ClusterState, Config, GatewayFactory, PostEvent, parse_time
from tenbin.services.validation import semantic_error

log = logging.getLogger("tenbin")

FINALIZER = "tenbin.io/member-cleanup"
DRAIN_FINALIZER = "tenbin.io/drain"  # on GPUClusters: deletion waits until no work is placed there
POLICY_NAME = "default"
SPEC_PLUGINS = frozenset({"selector", "residency", "model", "budget"})

class Controller:
    def __init__(self, hub: Any, gateway_factory: GatewayFactory, post_event: PostEvent,
                 config: Config | None = None, metrics: Metrics | None = None, clock: Clock = SYSTEM) -> None:
        self.hub = hub
        self.clock = clock
        self.gateway_factory = gateway_factory
        self.post_event = post_event
        self.config = config or Config()
        self.metrics = metrics or Metrics()
        self.clusters: dict[str, ClusterState] = {}
        self.policy: PlacementPolicy | None = None
        self.workloads: dict[str, dict[str, Any]] = {}
        self.ledger = Ledger(self.clusters)
        self.unschedulable: set[str] = set()
        self.retry_at: dict[str, float] = {}
        self.applied: dict[str, int] = {}  # key -> generation applied in the member by this process
        self.applied_at: dict[str, float] = {}  # key -> when (monotonic) this process last applied its copy
        self.failures: dict[str, int] = {}  # key -> member errors in a row (the retry backoff)
        self.deleting: dict[tuple[str, str], float] = {}  # (cluster, workload uid) -> when we deleted its copy
        self.not_served: dict[tuple[str, str, str], float] = {}  # (cluster, apiVersion, kind) -> until
        self.placement_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._scheduler: Scheduler | None = None
        self._alternatives_scheduler: Scheduler | None = None
        self._snapshot: Snapshot | None = None
        self.snapshot_builds = 0  # a new number whenever the fleet as the core sees it changed
        self._seeded = False
        self._background: set[asyncio.Future[None]] = set()
        self._drains: dict[str, asyncio.Task[None]] = {}
        self.migrator = Migrator(self)

    # ------------------------------------------------------------------------------------ hub view

    async def seed(self) -> None:
        """List everything once at start-up, before any watch event is handled."""
        for body in await self.hub.list("GPUCluster"):
            self.observe_cluster(body)
        for body in await self.hub.list("PlacementPolicy"):
            self.observe_policy(body)
        for body in await self.hub.list("AIWorkload"):
            self.observe_workload(body)
            self.ledger.restore(body)
        self._seeded = True
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
        self._scheduler = None
        self._alternatives_scheduler = None
        self._snapshot = None
        self._nudge_unschedulable()

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
            self._snapshot = None
            return None
        st = self.clusters.get(name)
        if st is None:
            st = self.clusters[name] = ClusterState(name, body)
        old = (st.body.get("spec"), (st.body.get("metadata") or {}).get("labels"))
        new = (body.get("spec"), (body.get("metadata") or {}).get("labels"))
        was_deleting = st.deleting
        st.body = body
        if st.deleting and DRAIN_FINALIZER in (body.get("metadata") or {}).get("finalizers", []) \
                and name not in self._drains and self._seeded:
            self._drains[name] = asyncio.ensure_future(self._drain(name))
        if st.model is not None and old == new and was_deleting == st.deleting:
            return st  # only its status changed (our own write): the core sees nothing new
        try:
            st.model = GPUCluster.model_validate({**body, "status": None})
            st.invalid = None
        except ValidationError as e:
            st.model, st.invalid = None, _first_error(e)
        self._snapshot = None
        self._nudge_unschedulable()
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

    def lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    # ------------------------------------------------------------------------------- reservations

    # --------------------------------------------------------------------------------- scheduling

    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = Scheduler(self.policy)
        return self._scheduler

    def cluster_models(self) -> list[GPUCluster]:
        """GPUClusters as the core sees them: spec from the hub, phase and inventory observed live."""
        out = []
        for st in self.clusters.values():
            if st.model is None:
                continue
            inv = st.observation.inventory.by_model() if st.observation else {}
            gpus = [{"model": m.model, "capacity": m.capacity, "allocatable": m.allocatable,
                     "allocated": m.allocated, "free": m.free} for m in inv.values()]
            status: dict[str, Any] = {"phase": st.phase}
            if st.observation is not None:
                status["gpus"] = gpus
            update: dict[str, Any] = {"status": GPUClusterStatus.model_validate(status)}
            if st.deleting:  # a cluster being deleted takes no new work: the core sees it cordoned
                update["spec"] = st.model.spec.model_copy(update={"cordoned": True})
            out.append(st.model.model_copy(update=update))
        return out

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = Snapshot(self.cluster_models())
            self.snapshot_builds += 1
        return self._snapshot

    def ready_to_place(self) -> bool:
        """Every known member has been observed at least once (or given up on)."""
        return self._seeded and bool(self.clusters) and all(
            st.attempted or st.model is None for st in self.clusters.values())

    # ---------------------------------------------------------------------------------- reconcile

    async def reconcile(self, key: str) -> None:
        async with self.lock(key):
            body = self.workloads.get(key)
            if body is None:
                return
            try:
                await self._reconcile(key, body)
            except GatewayError as e:
                n = self.failures[key] = self.failures.get(key, 0) + 1
                delay = min(self.config.max_backoff_seconds, self.config.resync_seconds * 2 ** (n - 1))
                log.warning("reconcile %s: %s (retry %d in %.0fs)", key, e, n, delay)
                self._retry(key, delay)
            else:
                self.failures.pop(key, None)

    def _retry(self, key: str, delay: float) -> None:
        self.retry_at[key] = self.clock.monotonic() + delay

    async def _reconcile(self, key: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            await self._finalize(key, body)
            return
        try:
            wl = AIWorkload.model_validate(body)
        except ValidationError as e:
            await self._report_invalid(key, body, *_first_error_parts(e))
            return
        problem = semantic_error(body, self.scheduler().policy)
        if problem is not None:
            await self._report_invalid(key, body, *problem)
            return
        status = body.get("status") or {}
        generation = int(meta.get("generation") or 0)

        if FINALIZER not in (meta.get("finalizers") or []):
            fins = [*(meta.get("finalizers") or []), FINALIZER]
            body = await self.hub.patch("AIWorkload", meta["namespace"], meta["name"],
                                        {"metadata": {"finalizers": fins, "resourceVersion": meta["resourceVersion"]}})
            self.workloads[key] = body
            meta = body["metadata"]
            status = body.get("status") or {}

        placement = status.get("placement") or {}
        if placement.get("cluster"):
            await self._keep_placed(key, body, wl, placement, generation)
            return
        if is_finished(status.get("phase")) and not _refused_before(status, generation):
            return  # it ran; a spec that was refused is tried again once it changed (it passed the checks)
        if not self.ready_to_place():
            self._retry(key, self.config.resync_seconds)
            return
        await self._place(key, body, wl, generation)

    async def _place(self, key: str, body: dict[str, Any], wl: AIWorkload, generation: int) -> None:
        meta = body["metadata"]
        async with self.placement_lock:
            t0 = time.perf_counter()
            reserved = self.ledger.reserved_for(wl.spec.gpu.count, tolerations_of(body))
            decision = self.scheduler().place(wl, self.snapshot(), reserved=reserved, exclude=self._not_serving(body))
            self.metrics.decision_latency.observe(time.perf_counter() - t0)
            chosen = decision.chosen
            if chosen is not None:
                log.info("placing %s: %d GPUs on %s/%s (free %d before this placement)", key, decision.gpus,
                         chosen.cluster, chosen.model, chosen.free)
                self.ledger.reserve(key, chosen.cluster, chosen.model, decision.gpus, meta["uid"], wl.spec.gpu.count)
        status = body.get("status") or {}
        conditions = list(status.get("conditions") or [])
        conditions = [c for c in conditions if c.get("type") != "Valid"]
        if chosen is None:
            message = decision.reason + self.ledger.node_fit_note(wl, reserved)
            self.unschedulable.add(key)
            if status.get("phase") == "Unschedulable" and status.get("message") == message:
                return  # nothing new to say: no write, no event
            conditions = self.condition(conditions, "Scheduled", "False", "Unschedulable", message, generation)
            patch = {"status": {"phase": "Unschedulable", "message": message, "conditions": conditions,
                                "observedGeneration": generation}}
            self.workloads[key] = await self.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], patch)
            self.post_event(body, "Warning", "Unschedulable", message)
            self.metrics.placements.labels("unschedulable", _category(decision)).inc()
            return

        self.unschedulable.discard(key)
        base = decision.base_currency
        pl = self.placement_dict(chosen.cluster, chosen.model, decision.gpus, chosen.score)
        message = f"placed on {chosen.cluster} ({chosen.model}, {chosen.price_base:g} {base}/GPU-h): " \
                  f"{decision.reason}"
        conditions = self.condition(conditions, "Scheduled", "True", "Placed", message, generation)
        history = self.history(status, "Scheduled", chosen.cluster, chosen.model, chosen.price_base, base)
        patch = {"status": {"phase": "Scheduled", "placement": pl, "message": message[:4096],
                            "conditions": conditions, "observedGeneration": generation, "history": history}}
        try:
            body = await self.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], patch)
        except BaseException:
            self.ledger.release(key)
            raise
        self.workloads[key] = body
        self.post_event(body, "Normal", "Scheduled", message)
        self.metrics.placements.labels("placed", "fit").inc()
        try:
            await self._apply(key, body, chosen.cluster, generation, chosen.model)
        except GatewayError as e:
            if e.transient:
                raise
            await self.refused(key, chosen.cluster, e)
            return
        created = parse_time(meta.get("creationTimestamp"))
        if created:
            self.metrics.placement_latency.observe(max(0.0, self.clock.time() - created))

    async def _apply(self, key: str, body: Mapping[str, Any], cluster: str, generation: int,
                     model: str | None = None) -> None:
        st = self.clusters.get(cluster)
        if st is None or st.gateway is None:
            raise GatewayError(f"member {cluster} is not connected yet")
        self.check_not_deleting(cluster, body["metadata"]["uid"])
        try:
            inv = st.observation.inventory if st.observation else None
            products = inv.products(model) if inv is not None and model else None
            await st.gateway.apply(member_object(body, cluster, model, products))
        except GatewayError:
            self.metrics.member_errors.labels(cluster, "apply").inc()
            raise
        self.applied[key] = generation
        self.applied_at[key] = self.clock.monotonic()

    def check_not_deleting(self, cluster: str, uid: str) -> None:
        """Refuse (for a retry) to apply a copy where this workload's previous copy is still being deleted:
        the member accepts an apply onto a terminating object, and the write is lost with it."""
        if (cluster, uid) in self.deleting:
            raise GatewayError(f"{cluster}: the previous copy of this workload is still being deleted; applying "
                               "once it is gone")

    async def delete_copy(self, st: ClusterState, ref: ObjectRef, uid: str) -> None:
        """Delete a copy in a member and remember it until an observation shows it gone (see above)."""
        if st.gateway is None:
            raise GatewayError(f"member {st.name} is not connected")
        if await st.gateway.delete(ref):
            self.deleting[(st.name, uid)] = self.clock.monotonic()

    async def _keep_placed(self, key: str, body: dict[str, Any], wl: AIWorkload, placement: Mapping[str, Any],
                           generation: int) -> None:
        """A placed workload: restore its reservation, re-apply a changed template, re-check the fit."""
        self.ledger.restore(body)
        status = body.get("status") or {}
        cluster = placement["cluster"]
        if active_migration(body):
            return  # the migrator owns the member objects until the move completes
        if is_finished(status.get("phase")):
            self.ledger.release(key)
            return
        st = self.clusters.get(cluster)
        observed = None
        if st and st.observation:
            observed = st.observation.objects.get(body["metadata"]["uid"])
        template_changed = self.applied.get(key) != generation and status.get("observedGeneration") != generation
        # no copy in the member: never applied by this process (a restart between status write and apply), or
        # gone since (deleted in the member, the member reset): an observation begun after our apply shows none
        missing = st is not None and st.observation is not None and observed is None and (
            key not in self.applied_at or (st.last_ok or 0.0) > self.applied_at[key])
        if missing and key in self.applied_at:
            self.post_event(body, "Warning", "CopyMissing",
                            f"the copy in {cluster} is gone (deleted in the member, or the member was reset); "
                            "applying it again")
        if (st is None or st.observation is None) and key not in self.applied:
            # not observed yet (e.g. just restarted: a crash may have come between the status write and the
            # member apply): look again once the member has been observed
            self._retry(key, self.config.resync_seconds)
        resized = None
        if template_changed and int(placement.get("gpus") or 0) != wl.spec.total_gpus:
            resized = self._resize(key, body, wl, cluster, placement.get("gpuModel") or "")  # before the pods exist
        if template_changed or missing:
            try:
                await self._apply(key, body, cluster, generation, placement.get("gpuModel"))
            except GatewayError as e:
                if e.transient:
                    raise
                if missing and not template_changed:
                    await self.refused(key, cluster, e)
                else:
                    await self._edit_refused(key, body, cluster, generation, e)
                return
        if status.get("observedGeneration") == generation:
            return
        # spec changed: does the current placement still satisfy the rules, and the request still fit?
        conflict = self._conflict(wl, cluster, placement.get("gpuModel"))
        conditions = list(status.get("conditions") or [])
        patch: dict[str, Any] = {"observedGeneration": generation}
        if resized is not None:
            patch["placement"] = {"gpus": wl.spec.total_gpus}
        if conflict:
            conditions = self.condition(conditions, "PlacementConflict", "True", "SpecChanged",
                                       f"the current placement on {cluster} no longer fits: {conflict}; "
                                       "it keeps running there until it is migrated", generation)
            self.post_event(body, "Warning", "PlacementConflict", conflict)
        elif resized:
            conditions = self.condition(conditions, "PlacementConflict", "True", "InsufficientCapacity",
                                       f"{resized}; the pods that do not fit wait there and move with "
                                       "capacity failover (policy allowing)", generation)
            self.post_event(body, "Warning", "PlacementConflict", resized)
        else:
            conditions = self.condition(conditions, "PlacementConflict", "False", "Fits",
                                       f"the placement on {cluster} still satisfies the spec", generation)
        if template_changed and any(c.get("type") == "Applied" for c in conditions):
            conditions = self.condition(conditions, "Applied", "True", "Applied",
                                       f"generation {generation} applied on {cluster}", generation)
        patch["conditions"] = conditions
        meta = body["metadata"]
        self.workloads[key] = await self.hub.patch_status(
            "AIWorkload", meta["namespace"], meta["name"], {"status": patch})

    def _resize(self, key: str, body: Mapping[str, Any], wl: AIWorkload, cluster: str, model: str) -> str:
        """A changed `gpu.count` or `replicas`: reserve the new request; '' when its pods fit, else why not.

        The check and the new reservation happen with no await in between, like a placement's.
        """
        uid = body["metadata"]["uid"]
        per_pod, total = wl.spec.gpu.count, wl.spec.total_gpus
        self.ledger.reservations.pop(key, None)  # our own old promise is not in our way
        st = self.clusters.get(cluster)
        obs = st.observation if st is not None else None
        mine = obs.objects.get(uid) if obs is not None else None
        bound = mine.pods_bound_gpus if mine is not None else 0
        pods = -(-max(0, total - bound) // per_pod)
        room = self.ledger.room_for(cluster, model, per_pod, tolerations_of(body))
        self.ledger.reserve(key, cluster, model, total, uid, per_pod)
        if room >= pods:
            return ""
        return (f"the request changed to {wl.spec.replicas} x {per_pod} GPUs; {cluster} has room for {room} more "
                f"pod(s) of {per_pod} {model} GPUs on its nodes, {pods} needed")

    def _not_serving(self, body: Mapping[str, Any]) -> dict[str, str]:
        """The clusters that said they do not serve the template's kind (for a while): cluster -> why."""
        tmpl = (body.get("spec") or {}).get("template") or {}
        now = self.clock.monotonic()
        for k, until in list(self.not_served.items()):
            if until <= now:
                del self.not_served[k]
        return {c: f"{kind} not served by {c}" for (c, av, kind) in sorted(self.not_served)
                if (av, kind) == (tmpl.get("apiVersion"), tmpl.get("kind"))}

    def note_not_served(self, cluster: str, tmpl: Mapping[str, Any]) -> None:
        """The member answered 404 for the template's kind: do not offer it that kind for a while."""
        self.not_served[(cluster, tmpl.get("apiVersion", ""), tmpl.get("kind", ""))] = \
            self.clock.monotonic() + self.config.not_served_ttl_seconds

    async def refused(self, key: str, cluster: str, e: GatewayError,
                      migration: Mapping[str, Any] | None = None) -> None:
        """The member refused the object of a new placement (or of a move whose source is already gone, whose
        `migration` is recorded with it): it cannot run there. Release what it holds and say why, once. A kind
        the member does not serve: try the other clusters (after a backoff). Any other refusal (422 invalid,
        403 forbidden): the template is bad input for that member; it waits for a changed spec."""
        body = self.workloads.get(key)
        self.ledger.release(key)
        self.applied.pop(key, None)
        if body is None:
            return
        meta, status = body["metadata"], body.get("status") or {}
        generation = int(meta.get("generation") or 0)
        tmpl = body["spec"]["template"]
        not_served = e.status == 404
        if not_served:
            self.note_not_served(cluster, tmpl)
            reason = "KindNotServed"
            text = f"{cluster} does not serve {tmpl.get('kind')} ({tmpl.get('apiVersion')}): spec.template.kind; " \
                "trying the other clusters"
        else:
            reason, text = "MemberRejected", f"{cluster} refused spec.template: {_member_message(e)}"
        conditions = self.condition(list(status.get("conditions") or []), "Scheduled", "False", reason, text,
                                   generation)
        if not not_served:
            conditions = self.condition(conditions, "Valid", "False", reason, text, generation)
        history = self.history(status, "Refused", cluster, None, None, None, text[:256], reason=reason)
        patch: dict[str, Any] = {"status": {
            "phase": "Pending" if not_served else "Failed", "placement": None, "message": text,
            "conditions": conditions, "history": history, "observedGeneration": generation}}
        if migration is not None:
            patch["status"]["migration"] = dict(migration)
        self.workloads[key] = await self.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], patch)
        self.post_event(body, "Warning", reason, text)
        self.metrics.placements.labels("refused", reason).inc()
        if not_served:
            self.unschedulable.add(key)
            self._retry(key, self.config.resync_seconds)

    async def _edit_refused(self, key: str, body: Mapping[str, Any], cluster: str, generation: int,
                            e: GatewayError) -> None:
        """The member refused a changed template (a Job's pod template is immutable). The copy there keeps
        running as it was; the change is reported once for this generation, not retried."""
        meta, status = body["metadata"], body.get("status") or {}
        text = f"{cluster} refused the changed spec.template: {_member_message(e)}; the copy there keeps " \
               "the previous template (to change an immutable field, re-create the AIWorkload)"
        conditions = self.condition(list(status.get("conditions") or []), "Applied", "False", "MemberRejected",
                                   text, generation)
        self.applied[key] = generation  # nothing more to do for this generation
        self.workloads[key] = await self.hub.patch_status(
            "AIWorkload", meta["namespace"], meta["name"],
            {"status": {"conditions": conditions, "observedGeneration": generation, "message": text}})
        self.post_event(body, "Warning", "MemberRejected", text)

    def _conflict(self, wl: AIWorkload, cluster: str, model: str | None) -> str | None:
        """Why (cluster, model) breaks the workload's rules now; capacity and health are not rule conflicts."""
        return "; ".join(self.violations(wl, cluster, model or "", SPEC_PLUGINS)) or None

    def violations(self, wl: AIWorkload, cluster: str, model: str, plugins: frozenset[str]) -> tuple[str, ...]:
        """Every reason the given filter plugins reject (cluster, model) for this workload now."""
        decision = self.scheduler().place(wl, self.snapshot(), reserved={})
        return tuple(str(r) for r in decision.diagnosis.reasons.get((cluster, model), ()) if r.plugin in plugins)

    def alternatives(self, wl: AIWorkload, exclude: set[str]) -> tuple[Any, ...]:
        """Feasible candidates (best first) outside `exclude`, as if the workload were new."""
        body = self.workloads.get(wl.key) or {}
        reserved = self.ledger.reserved_for(wl.spec.gpu.count, tolerations_of(body))
        out = {**{c: "not a target of this move" for c in exclude}, **self._not_serving(body)}
        return self._all_scheduler().place(wl, self.snapshot(), reserved=reserved, exclude=out).top

    def _all_scheduler(self) -> Scheduler:
        """The scheduler with every feasible candidate in `top`: a Cost move is judged against the cheapest
        feasible cluster, which need not be among the best-scored few."""
        if self._alternatives_scheduler is None:  # dropped with the policy, like self._scheduler
            self._alternatives_scheduler = Scheduler(self.policy, top_k=1 << 30)
        return self._alternatives_scheduler

    def diagnose(self, body: Mapping[str, Any]) -> str:
        try:
            wl = AIWorkload.model_validate(body)
        except ValidationError as e:
            return _first_error(e)
        reserved = self.ledger.reserved_for(wl.spec.gpu.count, tolerations_of(body))
        return self.scheduler().place(wl, self.snapshot(), reserved=reserved).reason

    def price_base(self, cluster: str, model: str) -> float:
        st = self.clusters.get(cluster)
        if st is None or st.model is None:
            return math.nan
        for g in st.model.spec.gpus:
            if g.model == model:
                v = self.scheduler().policy.to_base(float(g.price_per_gpu_hour), str(g.currency))
                return math.nan if v is None else float(v)
        return math.nan

    def placement_dict(self, cluster: str, model: str, gpus: int, score: float | None = None) -> dict[str, Any]:
        st = self.clusters.get(cluster)
        out: dict[str, Any] = {"cluster": cluster, "gpuModel": model, "gpus": gpus,
                               "currency": self.scheduler().policy.base_currency}
        if st is not None and st.model is not None:
            out["tier"] = str(st.model.spec.tier)
            out["jurisdiction"] = st.model.spec.jurisdiction
        price = self.price_base(cluster, model)
        if not math.isnan(price):
            out["pricePerGPUHour"] = round(price, 4)
        if score is not None:
            out["score"] = round(score, 2)
        return out

    def condition(self, conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str,
                  generation: int | None = None) -> list[dict[str, Any]]:
        """`conditions` with one set, its lastTransitionTime from the controller's clock."""
        return set_condition(conditions, type_, status, reason, message, generation, now=self.clock.time())


    def history(self, status: Mapping[str, Any], event: str, cluster: str | None, model: str | None,
                price: float | None, currency: str | None, message: str | None = None,
                reason: str | None = None, from_: str | None = None) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"time": now_iso(self.clock.time()), "event": event}
        for k, v in (("cluster", cluster), ("gpuModel", model), ("currency", currency), ("message", message),
                     ("reason", reason), ("from", from_)):
            if v:
                entry[k] = v
        if price is not None:
            entry["pricePerGPUHour"] = round(price, 4)
        hist = [*(status.get("history") or []), entry]
        return hist[-self.config.history_limit:]

    async def _report_invalid(self, key: str, body: Mapping[str, Any], path: str, message: str) -> None:
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        status = body.get("status") or {}
        text = f"invalid spec: {path}: {message}"
        valid = next((c for c in status.get("conditions") or [] if c.get("type") == "Valid"), None)
        if valid and valid.get("status") == "False" and valid.get("observedGeneration") == generation:
            return  # already reported for this generation: no retry storm
        conditions = self.condition(list(status.get("conditions") or []), "Valid", "False", "InvalidSpec",
                                   text, generation)
        self.workloads[key] = await self.hub.patch_status(
            "AIWorkload", meta["namespace"], meta["name"],
            {"status": {"phase": "Failed" if not status.get("placement") else status.get("phase"),
                        "message": text, "conditions": conditions, "observedGeneration": generation}})
        self.post_event(body, "Warning", "InvalidSpec", text)
        self.metrics.invalid_specs.labels(path).inc()

    async def _finalize(self, key: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        fins = list(meta.get("finalizers") or [])
        if FINALIZER not in fins:
            return
        status = body.get("status") or {}
        copies = {(status.get("placement") or {}).get("cluster")}
        m = active_migration(body)
        if m:
            copies |= {m.get("from"), m.get("to")}
        for cluster in sorted(c for c in copies if c):
            st = self.clusters.get(cluster)
            if st is None:
                continue  # no GPUCluster any more: its drain removed Tenbin's objects before it went
            try:
                await self.delete_copy(st, member_ref(body), meta.get("uid", ""))
            except GatewayError as e:
                if self._within_delete_grace(meta):
                    self._retry(key, self.config.resync_seconds)
                    return
                self.post_event(body, "Warning", "MemberUnreachable",
                                f"could not delete the object in {cluster} ({e}); released the AIWorkload after "
                                f"{self.config.delete_grace_seconds:g}s; the copy is removed when {cluster} is back")
        fins.remove(FINALIZER)
        try:
            await self.hub.patch("AIWorkload", meta["namespace"], meta["name"],
                                 {"metadata": {"finalizers": fins, "resourceVersion": meta["resourceVersion"]}})
        except GatewayError as e:
            if e.status != 404:
                raise
        self.ledger.release(key)
        self.retry_at.pop(key, None)

    # --------------------------------------------------------------------------- cluster monitor

    async def _connect(self, st: ClusterState) -> ClusterGateway:
        conn = (st.body.get("spec") or {}).get("connection") or {}
        gw_key = repr(conn)
        if st.gateway is not None and st.gateway_key == gw_key:
            return st.gateway
        if st.gateway is not None:
            await st.gateway.close()
            st.gateway = None
        st.gateway = await self.gateway_factory(st.name, conn)
        st.gateway_key = gw_key
        return st.gateway

    async def _drain(self, name: str) -> None:
        """A GPUCluster marked for deletion: keep observing it (Kopf stopped its daemon) while the migrator
        moves its work out (or stops it there when no compliant cluster has room), removes what Tenbin left
        there (the copies of finished work), then lets it go."""
        try:
            while (st := self.clusters.get(name)) is not None and st.deleting:
                await self.sync_cluster(name)
                if not self._placed_on(name) and await self._remove_leftovers(st):
                    await self._release_cluster(st)
                    return
                await self.clock.sleep(self.config.resync_seconds)  # the monitor's period, as the daemon's
        finally:
            self._drains.pop(name, None)

    def _within_delete_grace(self, meta: Mapping[str, Any]) -> bool:
        """Marked for deletion less than `delete_grace_seconds` ago: keep waiting for its member."""
        since = parse_time(meta.get("deletionTimestamp")) or self.clock.time()
        return self.clock.time() - since < self.config.delete_grace_seconds

    async def _remove_leftovers(self, st: ClusterState) -> bool:
        """Delete Tenbin's objects still in a member that is being let go (the copies of finished work), so
        nothing of Tenbin's stays in a cluster it no longer watches. True once the member shows none; or
        when it has not answered for `delete_grace_seconds` since the deletion (one event names what stays)."""
        if st.phase == "Ready" and st.observation is not None and st.gateway is not None:
            if not st.observation.objects:
                return True
            try:
                for obj in st.observation.objects.values():
                    if not (obj.body.get("metadata") or {}).get("deletionTimestamp"):
                        await self.delete_copy(st, obj.ref, obj.uid_label)
            except GatewayError as e:
                log.warning("GPUCluster %s: removing what Tenbin left there: %s (next round)", st.name, e)
            return False  # gone once an observation shows it gone
        if self._within_delete_grace(st.body.get("metadata") or {}):
            return False
        what = sorted(str(o.ref) for o in st.observation.objects.values()) if st.observation else []
        if what:
            self.post_event(st.body, "Warning", "LeftInMember",
                            f"{st.name} did not answer for {self.config.delete_grace_seconds:g}s after its "
                            f"deletion; left there: {', '.join(what[:5])}{' ...' if len(what) > 5 else ''}")
        return True

    def _placed_on(self, name: str) -> list[str]:
        out = []
        for key, body in self.workloads.items():
            status = body.get("status") or {}
            m = active_migration(body)
            if ((status.get("placement") or {}).get("cluster") == name and not is_finished(status.get("phase"))) \
                    or (m and name in (m.get("from"), m.get("to"))):
                out.append(key)
        return out

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

    async def _consume_fence(self, st: ClusterState) -> None:
        """A fence vouches for one outage: once the member answers again it no longer holds, so the
        annotation is removed (and the next loss waits for a fence of its own)."""
        annotations = (st.body.get("metadata") or {}).get("annotations") or {}
        if FENCED_ANNOTATION not in annotations:
            return
        try:
            st.body = await self.hub.patch("GPUCluster", None, st.name,
                                           {"metadata": {"annotations": {FENCED_ANNOTATION: None}}})
        except GatewayError as e:
            log.warning("GPUCluster %s: removing %s: %s (next round)", st.name, FENCED_ANNOTATION, e)
            return
        self.post_event(st.body, "Normal", "FenceConsumed",
                        f"{st.name} answers again: {FENCED_ANNOTATION} removed; a next loss waits for a new fence")

    async def _ensure_drain_finalizer(self, st: ClusterState) -> None:
        meta = st.body.get("metadata") or {}
        if st.deleting or DRAIN_FINALIZER in (meta.get("finalizers") or []):
            return
        try:
            st.body = await self.hub.patch("GPUCluster", None, st.name, {"metadata": {
                "finalizers": [*(meta.get("finalizers") or []), DRAIN_FINALIZER],
                "resourceVersion": meta.get("resourceVersion")}})
        except GatewayError as e:
            log.warning("GPUCluster %s finalizer: %s (next round)", st.name, e)

    async def sync_cluster(self, name: str) -> None:
        """Observe one member: inventory, phase, and the status of the workloads placed there."""
        st = self.clusters.get(name)
        if st is None:
            return
        await self._ensure_drain_finalizer(st)
        now = self.clock.monotonic()
        before = (st.phase, st.observation.inventory.free() if st.observation else None)
        if st.invalid is not None:
            st.phase, st.reason, st.message = "NotReady", "InvalidSpec", st.invalid
        else:
            try:
                gw = await self._connect(st)
                obs = await self._with_telemetry(st, await gw.observe())
                if st.observation is None or obs.inventory != st.observation.inventory:
                    self._snapshot = None  # before any other await: no decision may use the old inventory
                st.observation = obs
                for c, uid in [k for k, t in self.deleting.items() if k[0] == name and t < now]:
                    if uid not in obs.objects:
                        del self.deleting[(c, uid)]  # an observation begun after the delete shows it gone
                st.last_ok, st.first_failure = now, None
                st.phase, st.reason, st.message = "Ready", "Observed", "member apiserver reachable"
                self.metrics.member_syncs.labels(name, "ok").inc()
            except GatewayError as e:
                if e.status in (401, 403) and st.gateway is not None:
                    # credentials rotated or expired: read the kubeconfig Secret again next round
                    await st.gateway.close()
                    st.gateway, st.gateway_key = None, None
                self.metrics.member_errors.labels(name, "observe").inc()
                self.metrics.member_syncs.labels(name, "error").inc()
                st.first_failure = st.first_failure or now
                down_for = now - st.first_failure
                if down_for >= self.config.unreachable_after_seconds or st.last_ok is None:
                    st.phase, st.reason = "NotReady", "Unreachable"
                    st.message = f"unreachable for {down_for:.0f}s: {e}"
                    st.observation = None if st.last_ok is None else st.observation
        st.attempted = True
        if st.phase == "Ready" and st.first_failure is None:  # answered this very round
            await self._consume_fence(st)
        after = (st.phase, st.observation.inventory.free() if st.observation else None)
        if before != after:
            self._snapshot = None
        await self._write_cluster_status(st)
        if st.observation is not None and st.phase == "Ready":
            await self._follow(st)
        await self.migrator.evaluate(st)
        await self.migrator.advance_for(st.name)
        if before != after:
            self._nudge_unschedulable()
        await self._run_due()

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
                    token = (await self.hub.read_secret_key(ref.namespace, ref.name, ref.key)).strip()
                except GatewayError as e:
                    st.telemetry_condition = {"type": "TelemetryAvailable", "status": "False",
                                              "reason": "NoCredentials", "message": str(e)[:1024]}
                    return obs
            st.telemetry, st.telemetry_key = PrometheusTelemetrySource.from_spec(prom, token=token), key
        inv, cond = await run_blocking(read_telemetry, st.telemetry, obs.inventory)
        st.telemetry_condition = cond
        return replace(obs, inventory=inv)

    async def _write_cluster_status(self, st: ClusterState) -> None:
        inv = st.observation.inventory.by_model() if st.observation else {}
        gpus = [{"model": m.model, "capacity": m.capacity, "allocatable": m.allocatable,
                 "allocated": m.allocated, "free": m.free} for m in inv.values()]
        for m in inv.values():
            self.metrics.free_gpus.labels(st.name, m.model).set(m.free)
        self.metrics.cluster_ready.labels(st.name).set(1 if st.phase == "Ready" else 0)
        desired: dict[str, Any] = {"phase": st.phase, "message": st.message[:1024],
                                   "freeGPUs": sum(g["free"] for g in gpus)}
        if st.observation is not None:
            desired["gpus"] = gpus
        conds = list((st.body.get("status") or {}).get("conditions") or [])
        conds = self.condition(conds, "Ready", "True" if st.phase == "Ready" else "False", st.reason, st.message)
        if st.telemetry_condition is not None:
            tc = st.telemetry_condition
            conds = self.condition(conds, tc["type"], tc["status"], tc["reason"], tc["message"])
        else:
            conds = [c for c in conds if c.get("type") != "TelemetryAvailable"]
        desired_cmp = {**desired, "conditions": [(c["type"], c["status"], c["reason"]) for c in conds]}
        now = self.clock.monotonic()
        if desired_cmp == st.last_status and now - st.last_status_write < self.config.status_heartbeat_seconds:
            return
        desired["conditions"] = conds
        desired["lastSyncTime"] = now_iso(self.clock.time())
        try:
            body = await self.hub.patch_status("GPUCluster", None, st.name, {"status": desired})
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
        for wkey, body in list(self.workloads.items()):
            p = ((body.get("status") or {}).get("placement") or {})
            if p.get("cluster") == st.name:
                by_uid[body["metadata"]["uid"]] = wkey
        known = {b["metadata"].get("uid"): k for k, b in self.workloads.items()}
        for uid, obj in st.observation.objects.items():
            found = by_uid.get(uid)
            if found is None:
                await self._remove_if_unwanted(st, uid, obj.ref, known.get(uid))
                continue
            key = found
            r = self.ledger.reservations.get(key)
            phase, message = observed_phase(obj)
            if r is not None and r.cluster == st.name and (obj.pods_bound_gpus >= r.gpus or is_finished(phase)):
                self.ledger.reservations.pop(key, None)  # this member's inventory now counts the workload's GPUs
            await self._set_phase(key, phase, message)
            await self._set_ready(key, st.name, obj, phase)
        for uid, key in by_uid.items():
            if uid not in st.observation.objects and self._copy_expected(key, st):
                self._retry(key, 0.0)  # its copy is gone: _keep_placed applies it again
        self._update_cost()

    async def _remove_if_unwanted(self, st: ClusterState, uid: str, ref: ObjectRef, key: str | None) -> None:
        """Delete an observed copy no workload wants here: its owner is gone, or placed elsewhere.

        Decided under the owner's lock, on its body as it is now: this round's earlier awaits may have let
        a placement onto this very member adopt the copy (a member back after an outage, whose lost work
        is placed there again), and deleting it then would run that work twice."""
        if not self._seeded or st.gateway is None:
            return
        async with self.lock(key) if key is not None else contextlib.nullcontext():
            owner = self.workloads.get(key) if key is not None else None
            if owner is not None and owner["metadata"].get("uid") != uid:
                owner = None  # deleted and created again under its name: this copy is the old one's
            if owner is not None and not stale_copy(owner, st.name):
                return
            log.info("removing %s copy %s from %s", "orphan" if owner is None else "stale", ref, st.name)
            try:
                await self.delete_copy(st, ref, uid)
            except GatewayError as e:
                log.warning("orphan %s in %s: %s", ref, st.name, e)

    def _copy_expected(self, key: str, st: ClusterState) -> bool:
        """A placed, unfinished, unmoving workload not applied by this process since the observation began."""
        body = self.workloads.get(key) or {}
        applied = self.applied_at.get(key)
        return (applied is None or (st.last_ok or 0.0) > applied) and not active_migration(body) and \
            not is_finished((body.get("status") or {}).get("phase")) and not body["metadata"].get("deletionTimestamp")

    async def _set_phase(self, key: str, phase: str, message: str) -> None:
        async with self.lock(key):
            body = self.workloads.get(key)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            status = body.get("status") or {}
            if status.get("phase") == phase or is_finished(status.get("phase")) or active_migration(body):
                return
            p = status.get("placement") or {}
            patch: dict[str, Any] = {"phase": phase, "message": f"{message} on {p.get('cluster')}"}
            if phase in ("Running", "Succeeded", "Failed"):
                patch["history"] = self.history(status, phase, p.get("cluster"), p.get("gpuModel"), None, None,
                                                 message)
            if not await self.write_status(key, body, patch):
                return
            self.post_event(body, "Warning" if phase == "Failed" else "Normal", phase,
                            f"{message} on {p.get('cluster')}")

    async def write_status(self, key: str, body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        """Merge `status` into the AIWorkload's status; False (logged, retried by the next round) on failure."""
        meta = body["metadata"]
        try:
            self.workloads[key] = await self.hub.patch_status("AIWorkload", meta["namespace"], meta["name"],
                                                              {"status": dict(status)})
        except GatewayError as e:
            log.warning("status of %s: %s", key, e)
            return False
        return True

    async def _set_ready(self, key: str, cluster: str, obj: ObservedObject, phase: str) -> None:
        """The Ready condition: True while it runs; False, with one Warning event per cause, while the member
        leaves its pods unschedulable (capacity failover moves it after --pending-timeout when a compliant
        cluster has room; until then, and when there is none, this says so)."""
        if obj.pods_unschedulable:
            status_, reason = "False", "PodsUnschedulable"
            message = f"{obj.pods_unschedulable} pod(s) unschedulable in {cluster}: " \
                      f"{obj.unschedulable_message or 'no node fits'}"
        elif phase == "Running":
            status_, reason, message = "True", "Running", f"running on {cluster}"
        else:
            return
        async with self.lock(key):
            body = self.workloads.get(key)
            if body is None or body["metadata"].get("deletionTimestamp") or active_migration(body):
                return
            status = body.get("status") or {}
            old: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            if (old.get("status"), old.get("reason")) == (status_, reason):
                return
            generation = int(body["metadata"].get("generation") or 0)
            conditions = self.condition(list(status.get("conditions") or []), "Ready", status_, reason, message,
                                       generation)
            patch: dict[str, Any] = {"conditions": conditions}
            if status_ == "False":
                patch["message"] = message
            if not await self.write_status(key, body, patch):
                return
            if status_ == "False":
                self.post_event(body, "Warning", reason, message)

    def _update_cost(self) -> None:
        per_ns: dict[tuple[str, str], float] = {}
        for body in self.workloads.values():
            status = body.get("status") or {}
            p = status.get("placement") or {}
            if not p or is_finished(status.get("phase")):
                continue
            ns = body["metadata"].get("namespace", "default")
            k = (ns, p.get("currency") or "")
            per_ns[k] = per_ns.get(k, 0.0) + float(p.get("pricePerGPUHour") or 0) * int(p.get("gpus") or 0)
        self.metrics.cost_per_hour.clear()
        for (ns, cur), v in per_ns.items():
            self.metrics.cost_per_hour.labels(ns, cur).set(v)

    def _nudge_unschedulable(self) -> None:
        now = self.clock.monotonic()
        for key in self.unschedulable:
            self.retry_at[key] = min(self.retry_at.get(key, now), now)

    async def _run_due(self) -> None:
        now = self.clock.monotonic()
        due = sorted((k for k, t in self.retry_at.items() if t <= now),
                     key=lambda k: (self.workloads.get(k, {}).get("metadata", {}).get("creationTimestamp") or "", k))
        for key in due:
            self.retry_at.pop(key, None)
            await self.reconcile(key)


def _refused_before(status: Mapping[str, Any], generation: int) -> bool:
    """Valid=False for an older generation: the spec changed since it was refused."""
    return any(c.get("type") == "Valid" and c.get("status") == "False" and c.get("observedGeneration") != generation
               for c in status.get("conditions") or [])


def _member_message(e: GatewayError) -> str:
    """The member's own words for a refusal (its Status message names the field), bounded: the values it
    quotes back (`Invalid value: {...whole pod template...}`) are elided, the field and the verdict kept."""
    text, out, i = e.detail or str(e), [], 0
    marker = "Invalid value: "
    while (j := text.find(marker, i)) >= 0:
        out.append(text[i:j + len(marker)])
        k = j + len(marker)
        if k < len(text) and text[k] in "{[":
            depth, in_str, esc = 0, False, False
            for pos in range(k, len(text)):
                ch, k = text[pos], pos
                if in_str:
                    esc, in_str = (not esc and ch == "\\"), in_str and (esc or ch != '"')
                elif ch == '"':
                    in_str = True
                elif ch in "{[":
                    depth += 1
                elif ch in "}]":
                    depth -= 1
                    if depth == 0:
                        break
            out.append("{...}")
            k += 1
        i = k
    out.append(text[i:])
    return "".join(out)[:512]





def _rv(body: Mapping[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or -1)
    except ValueError:
        return -1


def _first_error_parts(err: ValidationError) -> tuple[str, str]:
    e = err.errors()[0]
    return field_path(tuple(e["loc"])), str(e["msg"])


def _first_error(err: ValidationError) -> str:
    path, msg = _first_error_parts(err)
    return f"invalid spec: {path}: {msg}"


def _category(decision: Any) -> str:
    cats = decision.diagnosis.categories
    return cats[0][0] if cats else "no-clusters"
