"""Placement, as a state machine over one AIWorkload: new → Scheduled (decided, status written, then
applied in the member) or Unschedulable (why, one event); a placed workload's changed template applied
again (or its refusal reported); a copy gone from its member applied again; deletion (the member copy
first). Every decision comes from the pure core, on the World's one snapshot, with the ledger's promise
made before the first await.

Writes per placement are kept to the minimum: a finalizer patch, a status patch written *before*
the member object is applied (so a crash can never lead to a second copy elsewhere), and one
server-side apply in the member.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tenbin.api import AIWorkload, ConditionStatus, Reason, WorkloadCondition, WorkloadPhase
from tenbin.clusters.gateway import GatewayError
from tenbin.services.conditions import parse_time
from tenbin.services.dependencies import DependencyCopier
from tenbin.services.ledger import tolerations_of
from tenbin.services.member_objects import is_finished, member_object, member_ref, unlabelled_templates, workload_key
from tenbin.services.migration_state import active_migration
from tenbin.services.state import FINALIZER
from tenbin.services.status import workload_status
from tenbin.services.validation import first_error_parts, semantic_error
from tenbin.services.world import World

log = logging.getLogger("tenbin")


class Placement:
    """Places, keeps placed and finalizes AIWorkloads; the caller holds the workload's lock."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.deps = DependencyCopier(world)

    async def run(self, key: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            await self.finalize(key, body)
            return
        try:
            wl = AIWorkload.model_validate(body)
        except ValidationError as e:
            await self._report_invalid(key, body, *first_error_parts(e))
            return
        problem = semantic_error(body, self.w.scheduler().policy, self.w.kinds)
        if problem is not None:
            await self._report_invalid(key, body, *problem)
            return
        status = body.get("status") or {}
        generation = int(meta.get("generation") or 0)

        if FINALIZER not in (meta.get("finalizers") or []):
            fins = [*(meta.get("finalizers") or []), FINALIZER]
            body = await self.w.hub.patch("AIWorkload", meta["namespace"], meta["name"],
                                        {"metadata": {"finalizers": fins, "resourceVersion": meta["resourceVersion"]}})
            self.w.workloads[key] = body
            meta = body["metadata"]
            status = body.get("status") or {}

        placement = status.get("placement") or {}
        if placement.get("cluster"):
            await self._keep_placed(key, body, wl, placement, generation)
            return
        if is_finished(status.get("phase")) and not _refused_before(status, generation):
            return  # it ran; a spec that was refused is tried again once it changed (it passed the checks)
        if not self.w.ready_to_place():
            self.w.retry(key, self.w.config.resync_seconds)
            return
        await self._place(key, body, wl, generation)

    async def _place(self, key: str, body: dict[str, Any], wl: AIWorkload, generation: int) -> None:
        meta = body["metadata"]
        async with self.w.placement_lock:
            t0 = time.perf_counter()
            reserved = self.w.ledger.reserved_for(wl.spec.gpu.count, tolerations_of(body))
            elsewhere = self.w.copies_elsewhere(body)
            decision = self.w.scheduler().place(wl, self.w.snapshot(), reserved=reserved,
                                                exclude={**self.w.not_serving(body), **elsewhere})
            self.w.metrics.decision_latency.observe(time.perf_counter() - t0)
            chosen = decision.chosen
            if chosen is not None:
                log.info("placing %s: %d GPUs on %s/%s (free %d before this placement)", key, decision.gpus,
                         chosen.cluster, chosen.model, chosen.free)
                self.w.ledger.reserve(key, chosen.cluster, chosen.model, decision.gpus, meta["uid"], wl.spec.gpu.count)
        status = body.get("status") or {}
        conditions = list(status.get("conditions") or [])
        conditions = [c for c in conditions if c.get("type") != WorkloadCondition.VALID]
        if chosen is None:
            message = decision.reason + self.w.ledger.node_fit_note(wl, reserved)
            self.w.unschedulable.add(key)
            if status.get("phase") == WorkloadPhase.UNSCHEDULABLE and status.get("message") == message:
                return  # nothing new to say: no write, no event
            why = Reason.NO_CLUSTER_CAN_FIT if decision.diagnosis.no_capacity_helps else Reason.UNSCHEDULABLE
            conditions = self.w.condition(conditions, WorkloadCondition.SCHEDULED, ConditionStatus.FALSE,
                                          why, message, generation)
            patch = workload_status(phase=WorkloadPhase.UNSCHEDULABLE, message=message, conditions=conditions,
                                    observed_generation=generation)
            self.w.workloads[key] = await self.w.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], patch)
            self.w.post_event(body, "Warning", why, message)
            self.w.metrics.placements.labels("unschedulable", _category(decision)).inc()
            if elsewhere:  # looked at again once its old copy is gone
                self.w.retry(key, self.w.config.resync_seconds)
            return

        self.w.unschedulable.discard(key)
        base = decision.base_currency
        pl = self.w.placement_dict(chosen.cluster, chosen.model, decision.gpus, chosen.score)
        message = f"placed on {chosen.cluster} ({chosen.model}, {chosen.price_base:g} {base}/GPU-h): " \
                  f"{decision.reason}"
        conditions = self.w.condition(conditions, WorkloadCondition.SCHEDULED, ConditionStatus.TRUE, Reason.PLACED,
                                      message, generation)
        history = self.w.history(status, Reason.SCHEDULED, chosen.cluster, chosen.model, chosen.price_base, base)
        patch = workload_status(phase=WorkloadPhase.SCHEDULED, placement=pl, message=message[:4096],
                                conditions=conditions, observed_generation=generation, history=history)
        try:
            body = await self.w.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], patch)
        except BaseException:
            self.w.ledger.release(key)
            raise
        self.w.workloads[key] = body
        self.w.post_event(body, "Normal", Reason.SCHEDULED, message)
        self.w.metrics.placements.labels("placed", "fit").inc()
        try:
            await self._apply(key, body, chosen.cluster, generation, chosen.model)
        except GatewayError as e:
            if e.transient:
                raise
            await self.refused(key, chosen.cluster, e)
            return
        created = parse_time(meta.get("creationTimestamp"))
        if created:
            self.w.metrics.placement_latency.observe(max(0.0, self.w.clock.time() - created))

    async def _apply(self, key: str, body: Mapping[str, Any], cluster: str, generation: int,
                     model: str | None = None) -> None:
        st = self.w.clusters.get(cluster)
        if st is None or st.gateway is None:
            raise GatewayError(f"member {cluster} is not connected yet")
        self.w.check_not_deleting(cluster, body["metadata"]["uid"])
        try:
            inv = st.observation.inventory if st.observation else None
            products = inv.products(model) if inv is not None and model else None
            stored = await self.deps.apply(key, st, body, member_object(body, cluster, model, products, self.w.kinds))
        except GatewayError:
            self.w.metrics.member_errors.labels(cluster, "apply").inc()
            raise
        self.w.applied[key] = generation
        self.w.applied_at[key] = self.w.clock.monotonic()
        say_if_pruned(self.w, body, cluster, stored)

    async def _keep_placed(self, key: str, body: dict[str, Any], wl: AIWorkload, placement: Mapping[str, Any],
                           generation: int) -> None:
        """A placed workload: restore its reservation, re-apply a changed template, re-check the fit."""
        self.w.ledger.restore(body)
        status = body.get("status") or {}
        cluster = placement["cluster"]
        if active_migration(body):
            return  # the migrator owns the member objects until the move completes
        if is_finished(status.get("phase")):
            self.w.ledger.release(key)
            return
        st = self.w.clusters.get(cluster)
        observed = None
        if st and st.observation:
            observed = st.observation.objects.get(body["metadata"]["uid"])
        template_changed = self.w.applied.get(key) != generation and status.get("observedGeneration") != generation
        # no copy in the member: never applied by this process (a restart between status write and apply), or
        # gone since (deleted in the member, the member reset): an observation begun after our apply shows none
        missing = st is not None and st.observation is not None and observed is None and (
            key not in self.w.applied_at or (st.last_ok or 0.0) > self.w.applied_at[key])
        if missing and key in self.w.applied_at:
            self.w.post_event(body, "Warning", Reason.COPY_MISSING,
                            f"the copy in {cluster} is gone (deleted in the member, or the member was reset); "
                            "applying it again")
        if (st is None or st.observation is None) and key not in self.w.applied:
            # not observed yet (e.g. just restarted: a crash may have come between the status write and the
            # member apply): look again once the member has been observed
            self.w.retry(key, self.w.config.resync_seconds)
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
            body = self.w.workloads.get(key) or body  # the dependencies' condition may have been written
            status = body.get("status") or {}
        elif st is not None and self.deps.due(key):
            if observed is not None:
                await self.deps.resync(key, st, body, observed.body)
            else:  # its copy not in this observation: look again at the next one
                self.w.retry(key, self.w.config.resync_seconds)
        if status.get("observedGeneration") == generation:
            return
        # spec changed: does the current placement still satisfy the rules, and the request still fit?
        conflict = self.w.conflict(wl, cluster, placement.get("gpuModel"))
        conditions = list(status.get("conditions") or [])
        fields: dict[str, Any] = {"observed_generation": generation}
        if resized is not None:
            fields["placement"] = {"gpus": wl.spec.total_gpus}
        conflict_type = WorkloadCondition.PLACEMENT_CONFLICT
        if conflict:
            conditions = self.w.condition(conditions, conflict_type, ConditionStatus.TRUE, Reason.SPEC_CHANGED,
                                       f"the current placement on {cluster} no longer fits: {conflict}; "
                                       "it keeps running there until it is migrated", generation)
            self.w.post_event(body, "Warning", Reason.PLACEMENT_CONFLICT, conflict)
        elif resized:
            conditions = self.w.condition(conditions, conflict_type, ConditionStatus.TRUE, Reason.INSUFFICIENT_CAPACITY,
                                       f"{resized}; the pods that do not fit wait there and move with "
                                       "capacity failover (policy allowing)", generation)
            self.w.post_event(body, "Warning", Reason.PLACEMENT_CONFLICT, resized)
        else:
            conditions = self.w.condition(conditions, conflict_type, ConditionStatus.FALSE, Reason.FITS,
                                       f"the placement on {cluster} still satisfies the spec", generation)
        if template_changed and any(c.get("type") == WorkloadCondition.APPLIED for c in conditions):
            conditions = self.w.condition(conditions, WorkloadCondition.APPLIED, ConditionStatus.TRUE, Reason.APPLIED,
                                       f"generation {generation} applied on {cluster}", generation)
        meta = body["metadata"]
        self.w.workloads[key] = await self.w.hub.patch_status(
            "AIWorkload", meta["namespace"], meta["name"], workload_status(**fields, conditions=conditions))

    def _resize(self, key: str, body: Mapping[str, Any], wl: AIWorkload, cluster: str, model: str) -> str:
        """A changed `gpu.count` or `replicas`: reserve the new request; '' when its pods fit, else why not.

        The check and the new reservation happen with no await in between, like a placement's.
        """
        uid = body["metadata"]["uid"]
        per_pod, total = wl.spec.gpu.count, wl.spec.total_gpus
        self.w.ledger.reservations.pop(key, None)  # our own old promise is not in our way
        st = self.w.clusters.get(cluster)
        obs = st.observation if st is not None else None
        mine = obs.objects.get(uid) if obs is not None else None
        bound = mine.pods_bound_gpus if mine is not None and not (mine.body.get("metadata") or {}).get(
            "deletionTimestamp") else 0
        pods = -(-max(0, total - bound) // per_pod)
        room = self.w.ledger.room_for(cluster, model, per_pod, tolerations_of(body))
        self.w.ledger.reserve(key, cluster, model, total, uid, per_pod)
        if room >= pods:
            return ""
        return (f"the request changed to {wl.spec.replicas} x {per_pod} GPUs; {cluster} has room for {room} more "
                f"pod(s) of {per_pod} {model} GPUs on its nodes, {pods} needed")

    async def refused(self, key: str, cluster: str, e: GatewayError,
                      migration: Mapping[str, Any] | None = None) -> None:
        """The member refused the object of a new placement (or of a move whose source is already gone, whose
        `migration` is recorded with it): it cannot run there. Release what it holds and say why, once. A kind
        the member does not serve: try the other clusters (after a backoff). Any other refusal (422 invalid,
        403 forbidden): the template is bad input for that member; it waits for a changed spec."""
        body = self.w.workloads.get(key)
        self.w.ledger.release(key)
        self.w.applied.pop(key, None)
        if body is None:
            return
        meta, status = body["metadata"], body.get("status") or {}
        generation = int(meta.get("generation") or 0)
        tmpl = body["spec"]["template"]
        not_served = e.status == 404
        if not_served:
            self.w.note_not_served(cluster, tmpl)
            reason = Reason.KIND_NOT_SERVED
            text = f"{cluster} does not serve {tmpl.get('kind')} ({tmpl.get('apiVersion')}): spec.template.kind; " \
                "trying the other clusters"
        else:
            reason, text = Reason.MEMBER_REJECTED, f"{cluster} refused spec.template: {_member_message(e)}"
        conditions = self.w.condition(list(status.get("conditions") or []), WorkloadCondition.SCHEDULED,
                                      ConditionStatus.FALSE, reason, text, generation)
        if not not_served:
            conditions = self.w.condition(conditions, WorkloadCondition.VALID, ConditionStatus.FALSE, reason, text,
                                          generation)
        history = self.w.history(status, Reason.REFUSED, cluster, None, None, None, text[:256], reason=reason)
        moved = {"migration": dict(migration)} if migration is not None else {}
        patch = workload_status(
            phase=WorkloadPhase.PENDING if not_served else WorkloadPhase.FAILED, placement=None, message=text,
            conditions=conditions, history=history, observed_generation=generation, **moved)
        self.w.workloads[key] = await self.w.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], patch)
        self.w.post_event(body, "Warning", reason, text)
        self.w.metrics.placements.labels("refused", reason).inc()
        if not_served:
            self.w.unschedulable.add(key)
            self.w.retry(key, self.w.config.resync_seconds)

    async def _edit_refused(self, key: str, body: Mapping[str, Any], cluster: str, generation: int,
                            e: GatewayError) -> None:
        """The member refused a changed template (a Job's pod template is immutable). The copy there keeps
        running as it was; the change is reported once for this generation, not retried."""
        meta, status = body["metadata"], body.get("status") or {}
        text = f"{cluster} refused the changed spec.template: {_member_message(e)}; the copy there keeps " \
               "the previous template (to change an immutable field, re-create the AIWorkload)"
        conditions = self.w.condition(list(status.get("conditions") or []), WorkloadCondition.APPLIED,
                                      ConditionStatus.FALSE, Reason.MEMBER_REJECTED, text, generation)
        self.w.applied[key] = generation  # nothing more to do for this generation
        self.w.workloads[key] = await self.w.hub.patch_status(
            "AIWorkload", meta["namespace"], meta["name"],
            workload_status(conditions=conditions, observed_generation=generation, message=text))
        self.w.post_event(body, "Warning", Reason.MEMBER_REJECTED, text)

    async def _report_invalid(self, key: str, body: Mapping[str, Any], path: str, message: str) -> None:
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        status = body.get("status") or {}
        text = f"invalid spec: {path}: {message}"
        valid = next((c for c in status.get("conditions") or [] if c.get("type") == WorkloadCondition.VALID), None)
        if valid and valid.get("status") == ConditionStatus.FALSE and valid.get("observedGeneration") == generation:
            return  # already reported for this generation: no retry storm
        conditions = self.w.condition(list(status.get("conditions") or []), WorkloadCondition.VALID,
                                      ConditionStatus.FALSE, Reason.INVALID_SPEC, text, generation)
        self.w.workloads[key] = await self.w.hub.patch_status(
            "AIWorkload", meta["namespace"], meta["name"],
            workload_status(phase=WorkloadPhase.FAILED if not status.get("placement") else status.get("phase"),
                            message=text, conditions=conditions, observed_generation=generation))
        self.w.post_event(body, "Warning", Reason.INVALID_SPEC, text)
        self.w.metrics.invalid_specs.labels(path).inc()

    async def finalize(self, key: str, body: dict[str, Any]) -> None:
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
            st = self.w.clusters.get(cluster)
            if st is None:
                continue  # no GPUCluster any more: its drain removed Tenbin's objects before it went
            try:
                await self.w.delete_copy(st, member_ref(body), meta.get("uid", ""))
            except GatewayError as e:
                if self.w.within_delete_grace(meta):
                    self.w.retry(key, self.w.config.resync_seconds)
                    return
                self.w.post_event(body, "Warning", Reason.MEMBER_UNREACHABLE,
                                f"could not delete the object in {cluster} ({e}); released the AIWorkload after "
                                f"{self.w.config.delete_grace_seconds:g}s; the copy is removed when {cluster} is back")
        fins.remove(FINALIZER)
        try:
            await self.w.hub.patch("AIWorkload", meta["namespace"], meta["name"],
                                 {"metadata": {"finalizers": fins, "resourceVersion": meta["resourceVersion"]}})
        except GatewayError as e:
            if e.status != 404:
                raise
        self.w.ledger.release(key)
        self.w.retry_at.pop(key, None)
        self.w.dependencies_synced_at.pop(key, None)


def say_if_pruned(w: World, body: Mapping[str, Any], cluster: str, stored: Mapping[str, Any]) -> None:
    """One Warning event when the member stored the object without Tenbin's label on a pod template."""
    lost = unlabelled_templates(stored, w.kinds)
    if not lost:
        return
    kind = body["spec"]["template"].get("kind")
    text = (f"{cluster} stored the {kind} without Tenbin's label on {', '.join(lost)}: its CRD's schema prunes "
            "pod template metadata, so its pods cannot be attributed to this workload (their GPUs count as other "
            "work beside its reservation, never as free); keep metadata in that schema (controller-gen: "
            "generateEmbeddedObjectMeta=true)")
    log.warning("%s: %s", workload_key(body), text)
    w.post_event(body, "Warning", Reason.POD_LABELS_PRUNED, text[:1024])


def _refused_before(status: Mapping[str, Any], generation: int) -> bool:
    """Refused, and the checks pass now: Valid=False for an older generation (the spec changed since), or
    refused by Tenbin's own checks (which just passed: the policy changed, e.g. it declares the kind now)."""
    return any(c.get("observedGeneration") != generation or c.get("reason") == Reason.INVALID_SPEC
               for c in _refusals(status))


def refused_for_this_spec(status: Mapping[str, Any]) -> bool:
    """Never placed because Tenbin's checks refused the spec (`Valid=False`, InvalidSpec)."""
    return not (status.get("placement") or {}).get("cluster") and any(
        c.get("reason") == Reason.INVALID_SPEC for c in _refusals(status))


def _refusals(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The `Valid=False` conditions of a status."""
    return [c for c in status.get("conditions") or []
            if c.get("type") == WorkloadCondition.VALID and c.get("status") == ConditionStatus.FALSE]

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

def _category(decision: Any) -> str:
    cats = decision.diagnosis.categories
    return cats[0][0] if cats else "no-clusters"
