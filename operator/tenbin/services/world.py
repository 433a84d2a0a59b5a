"""The operator's view of the fleet, shared by its state machines: the hub's objects as last seen, each
member's observation, the ledger of promised GPUs, and the questions every decision asks of them.

Placement (`placement.py`), member sync (`member_sync.py`) and moves (`migrator.py`) each work on one
`World`; the controller (`controller.py`) owns it and feeds it the hub's events. One snapshot of the
fleet serves every decision until the fleet changes (`fleet_changed`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from tenbin.api import AIWorkload, GPUCluster, GPUClusterStatus, GPUOffering, PlacementPolicy
from tenbin.clusters.gateway import ClusterGateway, GatewayError, ObjectRef
from tenbin.kinds import BUILT_IN, Kinds
from tenbin.scheduling import reasons as R
from tenbin.scheduling.attestations import attested
from tenbin.scheduling.scheduler import Scheduler
from tenbin.scheduling.snapshot import Snapshot
from tenbin.services.clock import SYSTEM, Clock
from tenbin.services.conditions import now_iso, parse_time, set_condition
from tenbin.services.ledger import Ledger, tolerations_of
from tenbin.services.member_objects import is_finished
from tenbin.services.metrics import Metrics
from tenbin.services.migration_state import active_migration, is_fenced
from tenbin.services.settings import Config
from tenbin.services.state import ClusterState, GatewayFactory, PostEvent
from tenbin.services.status import workload_status
from tenbin.services.validation import first_error

log = logging.getLogger("tenbin")

SPEC_PLUGINS = frozenset({"selector", "residency", "model", "budget"})


class World:
    def __init__(self, hub: Any, gateway_factory: GatewayFactory, post_event: PostEvent,
                 config: Config | None = None, metrics: Metrics | None = None, clock: Clock = SYSTEM) -> None:
        self.hub = hub
        self.clock = clock
        self.gateway_factory = gateway_factory
        self.post_event = _plain_reasons(post_event)
        self.config = config or Config()
        self.metrics = metrics or Metrics()
        self.clusters: dict[str, ClusterState] = {}
        self.policy: PlacementPolicy | None = None
        self.kinds: Kinds = BUILT_IN  # the workload kinds in force: built in + the policy's (set with the policy)
        self.workloads: dict[str, dict[str, Any]] = {}
        self.ledger = Ledger(self.clusters)
        self.unschedulable: set[str] = set()
        self.retry_at: dict[str, float] = {}
        self.applied: dict[str, int] = {}  # key -> generation applied in the member by this process
        self.applied_at: dict[str, float] = {}  # key -> when (monotonic) this process last applied its copy
        self.failures: dict[str, int] = {}  # key -> member errors in a row (the retry backoff)
        self.deleting: dict[tuple[str, str], float] = {}  # (cluster, workload uid) -> when we deleted its copy
        self.not_served: dict[tuple[str, str, str], float] = {}  # (cluster, apiVersion, kind) -> until
        self.dependencies_synced_at: dict[str, float] = {}  # key -> when (monotonic) its dependencies were compared
        self.placement_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._scheduler: Scheduler | None = None
        self._alternatives_scheduler: Scheduler | None = None
        self._snapshot: Snapshot | None = None
        self._labels_until = math.inf  # when the snapshot's attested residency labels next change
        self.snapshot_builds = 0  # a new number whenever the fleet as the core sees it changed
        self.seeded = False

    def fleet_changed(self) -> None:
        """The fleet as the core sees it changed (inventory, phase, spec, policy): the next decision takes
        a new snapshot. Call it before any await that follows the change."""
        self._snapshot = None

    def lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

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
        out, change = attested(out, self.policy, self.now())
        self._labels_until = change.timestamp() if change is not None else math.inf
        return out

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def snapshot(self) -> Snapshot:
        if self._snapshot is not None and self.clock.time() >= self._labels_until:
            self._snapshot = None  # an attestation lapsed: the clusters' residency labels changed
        if self._snapshot is None:
            self._snapshot = Snapshot(self.cluster_models())
            self.snapshot_builds += 1
        return self._snapshot

    def ready_to_place(self) -> bool:
        """Every known member has been observed at least once (or given up on)."""
        return self.seeded and bool(self.clusters) and all(
            st.attempted or st.model is None for st in self.clusters.values())

    def retry(self, key: str, delay: float) -> None:
        self.retry_at[key] = self.clock.monotonic() + delay

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

    def not_serving(self, body: Mapping[str, Any]) -> dict[str, str | R.Reason]:
        """The clusters that do not serve the template's kind: those whose API discovery lacks it, and those
        that refused it (for a while): cluster -> why."""
        tmpl = (body.get("spec") or {}).get("template") or {}
        want = (str(tmpl.get("apiVersion")), str(tmpl.get("kind")))
        now = self.clock.monotonic()
        for k, until in list(self.not_served.items()):
            if until <= now:
                del self.not_served[k]
        out: dict[str, str | R.Reason] = {
            name: R.kind_not_served(want[1]) for name, st in self.clusters.items()
            if st.observation is not None and st.observation.served is not None and want not in st.observation.served}
        out.update({c: R.kind_not_served(kind) for (c, av, kind) in sorted(self.not_served) if (av, kind) == want})
        return out

    def note_not_served(self, cluster: str, tmpl: Mapping[str, Any]) -> None:
        """The member answered 404 for the template's kind: do not offer it that kind for a while."""
        self.not_served[(cluster, tmpl.get("apiVersion", ""), tmpl.get("kind", ""))] = \
            self.clock.monotonic() + self.config.not_served_ttl_seconds

    def conflict(self, wl: AIWorkload, cluster: str, model: str | None) -> str | None:
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
        out = {**{c: "not a target of this move" for c in exclude}, **self.not_serving(body)}
        return self.all_scheduler().place(wl, self.snapshot(), reserved=reserved, exclude=out).top

    def all_scheduler(self) -> Scheduler:
        """The scheduler with every feasible candidate in `top`: a Cost move is judged against the cheapest
        feasible cluster, which need not be among the best-scored few."""
        if self._alternatives_scheduler is None:  # dropped with the policy, like self._scheduler
            self._alternatives_scheduler = Scheduler(self.policy, top_k=1 << 30)
        return self._alternatives_scheduler

    def diagnose(self, body: Mapping[str, Any]) -> str:
        try:
            wl = AIWorkload.model_validate(body)
        except ValidationError as e:
            return first_error(e)
        reserved = self.ledger.reserved_for(wl.spec.gpu.count, tolerations_of(body))
        return self.scheduler().place(wl, self.snapshot(), reserved=reserved).reason

    def _offer(self, cluster: str, model: str) -> GPUOffering | None:
        """The GPUCluster's offering of `model`, as its spec states it."""
        st = self.clusters.get(cluster)
        if st is None or st.model is None:
            return None
        return next((g for g in st.model.spec.gpus if g.model == model), None)

    def price_base(self, cluster: str, model: str) -> float:
        g = self._offer(cluster, model)
        v = self.scheduler().policy.to_base(float(g.price_per_gpu_hour), str(g.currency)) if g is not None else None
        return math.nan if v is None else float(v)

    def placement_dict(self, cluster: str, model: str, gpus: int, score: float | None = None) -> dict[str, Any]:
        """status.placement for (cluster, model). Every optional field is present, None when it does not apply:
        status is written as a merge patch, so a field left out would keep the previous placement's value."""
        st = self.clusters.get(cluster)
        out: dict[str, Any] = {"cluster": cluster, "gpuModel": model, "gpus": gpus,
                               "currency": self.scheduler().policy.base_currency,
                               **dict.fromkeys(("tier", "jurisdiction", "pricePerGPUHour", "score",
                                                "listPricePerGPUHour", "listCurrency", "exchangeRate",
                                                "exchangeRatesAsOf"))}
        if st is not None and st.model is not None:
            out["tier"] = str(st.model.spec.tier)
            out["jurisdiction"] = st.model.spec.jurisdiction
        price = self.price_base(cluster, model)
        if not math.isnan(price):
            out["pricePerGPUHour"] = round(price, 4)
        offer = self._offer(cluster, model)
        rate = self.scheduler().policy.rate(str(offer.currency)) if offer is not None else None
        if offer is not None and rate is not None:  # the rate used, as the policy stated it then
            out.update(listPricePerGPUHour=float(offer.price_per_gpu_hour), listCurrency=str(offer.currency),
                       exchangeRate=rate)
            as_of = self.policy.spec.exchange_rates_as_of if self.policy is not None else None
            if as_of is not None and offer.currency != self.scheduler().policy.base_currency:
                out["exchangeRatesAsOf"] = as_of.isoformat().replace("+00:00", "Z")
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

    async def connect(self, st: ClusterState) -> ClusterGateway:
        conn = (st.body.get("spec") or {}).get("connection") or {}
        gw_key = repr(conn)
        if st.gateway is not None and st.gateway_key == gw_key:
            return st.gateway
        if st.gateway is not None:
            await st.gateway.close()
            st.gateway = None
        st.gateway = await self.gateway_factory(st.name, conn)
        st.gateway.want_kinds(self.kinds.declared())
        st.gateway_key = gw_key
        return st.gateway

    def within_delete_grace(self, meta: Mapping[str, Any]) -> bool:
        """Marked for deletion less than `delete_grace_seconds` ago: keep waiting for its member."""
        since = parse_time(meta.get("deletionTimestamp")) or self.clock.time()
        return self.clock.time() - since < self.config.delete_grace_seconds

    def placed_on(self, name: str) -> list[str]:
        out = []
        for key, body in self.workloads.items():
            status = body.get("status") or {}
            m = active_migration(body)
            if ((status.get("placement") or {}).get("cluster") == name and not is_finished(status.get("phase"))) \
                    or (m and name in (m.get("from"), m.get("to"))):
                out.append(key)
        return out

    def copies_elsewhere(self, body: Mapping[str, Any]) -> dict[str, str]:
        """For a run-once workload (a Job) being placed while a copy of it is still in a member (one being
        deleted after an evacuation, or one a returning member kept): every other cluster, and why it is
        left out. A Job runs once: it is placed back where its copy is (adopting it), or anywhere once that
        copy is gone. A member annotated `tenbin.io/fenced` vouches that its copies are stopped."""
        if self.kinds.long_running(body["spec"]["template"]):
            return {}
        uid = body["metadata"]["uid"]
        holding = []
        for st in self.clusters.values():
            if st.observation is not None and uid in st.observation.objects and not is_fenced(st.body):
                holding.append(st.name)
        if not holding:
            return {}
        why = f"its copy in {', '.join(sorted(holding))} is not gone yet: a {body['spec']['template'].get('kind')} " \
              "runs once"
        return {name: why for name in self.clusters if len(holding) > 1 or name != holding[0]}

    async def write_status(self, key: str, body: Mapping[str, Any], **fields: Any) -> bool:
        """Merge the status `fields` (AIWorkloadStatus names, see `status.workload_status`) into the
        AIWorkload's status; False (logged, retried by the next round) on failure."""
        meta = body["metadata"]
        patch = workload_status(**fields)
        try:
            self.workloads[key] = await self.hub.patch_status("AIWorkload", meta["namespace"], meta["name"], patch)
        except GatewayError as e:
            log.warning("status of %s: %s", key, e)
            return False
        return True

    def update_cost(self) -> None:
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

    def nudge_unschedulable(self) -> None:
        now = self.clock.monotonic()
        for key in self.unschedulable:
            self.retry_at[key] = min(self.retry_at.get(key, now), now)


def _plain_reasons(post_event: PostEvent) -> PostEvent:
    """`post_event` handed the reason as a plain string (the services pass `Reason` members)."""
    def post(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        post_event(body, type_, str(reason), message)
    return post
