"""The whole operator, in process, over a hub and members in memory, driven by a seeded random schedule.

The real `Controller` (its migrator, the real scheduling core) runs as `tenbin run` runs it: every hub
change is handed to it the way the Kopf handlers do (`observe_*`, then `reconcile`), and every GPUCluster's
monitor calls `sync_cluster` once per resync. Only time is fake: one tick is one resync period, and every
deadline, backoff and timeout of the operator runs on the simulation's clock.

Each step: maybe one random event (a workload created, deleted or edited; a member down, frozen, fenced
or back; a cordon, an evacuation, a re-place request; a price or residency change; a GPUCluster deleted;
an operator restart from the hub state alone), then one tick. After every step the invariants are
checked; after the schedule, the fleet settles (faults healed) and the end-state invariants are checked.
A failure raises :class:`InvariantBroken` with the seed and the steps that led to it.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy
from tenbin.clusters.gateway import UID_LABEL, GatewayError, ObjectRef
from tenbin.clusters.memory import RUN_ANNOTATION, SERVED_KINDS, HubEvent, MemoryHub, MemoryMember, Node
from tenbin.explain import explain_rows
from tenbin.gpumodels import product_labels
from tenbin.scheduling.migration import Trigger
from tenbin.services.clock import Clock
from tenbin.services.controller import Config, Controller
from tenbin.services.migration_state import FENCED_ANNOTATION

T0 = 1_800_000_000.0
NS = "sim"
SHARED_CONFIG, SHARED_SECRET = "shared-config", "shared-secret"
MODELS = {"H100-80GB": 80, "A100-80GB": 80, "L4-24GB": 24}  # model -> memory GiB
TIERS = ("OnPrem", "SovereignCloud", "Hyperscaler")
BUILTIN = {  # the contract's built-in classification rules: tiers (empty: any), jurisdictions (empty: any)
    "Restricted": ({"OnPrem"}, set()),
    "Confidential": ({"OnPrem", "SovereignCloud"}, set()),
    "Internal": (set(), set()),
    "Public": (set(), set()),
}
RULES = {  # the simulation's policy at start (as examples/policy/default.yaml)
    "Restricted": ({"OnPrem"}, {"JP"}),
    "Confidential": ({"OnPrem", "SovereignCloud"}, {"JP"}),
}
CONFIG = Config(resync_seconds=1.0, unreachable_after_seconds=3.0, delete_grace_seconds=5.0,
                cluster_lost_after_seconds=6.0, pending_timeout_seconds=8.0, min_move_interval_seconds=5.0,
                checkpoint_grace_seconds=4.0, migration_timeout_seconds=30.0, max_backoff_seconds=16.0,
                not_served_ttl_seconds=30.0)


MOVING = ("Pending", "Checkpointing", "StartingTarget", "StoppingSource")  # migration phases in flight
SETTLE_TICKS = 40  # past every deadline and backoff of CONFIG: a lost member, a pending timeout, a retry


class InvariantBroken(AssertionError):
    pass


class FakeClock(Clock):
    """Time that moves only when the simulation says so; sleepers wake when their time has come."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return T0 + self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)


def allowed(workload: Mapping[str, Any], cluster: Mapping[str, Any], policy: Mapping[str, Any] | None = None) -> bool:
    """The residency oracle, written from the contract, independently of the scheduling core: the policy's
    rule for the classification (else the built-in one), then the workload's own lists and labels."""
    res = workload["spec"]["residency"]
    spec = cluster["spec"]
    tiers, jurisdictions = BUILTIN[res["dataClassification"]]
    operators: set[str] = set()
    required = set(res.get("requiredLabels") or [])
    for rule in ((policy or {}).get("spec") or {}).get("classificationRules") or []:
        if rule["classification"] == res["dataClassification"]:
            tiers, jurisdictions = set(rule.get("allowedTiers") or []), set(rule.get("allowedJurisdictions") or [])
            operators = set(rule.get("allowedOperatorJurisdictions") or [])
            required |= set(rule.get("requiredLabels") or [])
    if (tiers and spec["tier"] not in tiers) or (jurisdictions and spec["jurisdiction"] not in jurisdictions):
        return False
    for wanted in (operators, set(res.get("operatorJurisdictions") or [])):  # an undeclared operator: no match
        if wanted and spec.get("operatorJurisdiction") not in wanted:
            return False
    if res.get("tiers") and spec["tier"] not in res["tiers"]:
        return False
    if res.get("jurisdictions") and spec["jurisdiction"] not in res["jurisdictions"]:
        return False
    return required <= set(spec.get("residencyLabels") or [])


@dataclass
class Outage:
    start: int  # tick
    until: int
    fenced: bool = False


@dataclass
class Simulation:
    seed: int
    steps: int
    trace: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clock = FakeClock()
        self.hub = MemoryHub(self.clock.time)
        self.members: dict[str, MemoryMember] = {}
        self.outages: dict[str, Outage] = {}
        self.tick_no = 0
        self.names = itertools.count(1)
        self.decided: dict[str, set[str]] = {}  # workload UID -> clusters it was placed or moved onto
        self.restarts = 0
        self.ctl = self._controller()

    # ---- set-up --------------------------------------------------------------------------------

    def _controller(self) -> Controller:
        async def factory(name: str, _conn: Mapping[str, Any]) -> MemoryMember:
            member = self.members.get(name)
            if member is None:
                raise GatewayError(f"{name}: no such member", 404)
            return member

        return Controller(self.hub, factory, self.hub.post_event, config=CONFIG, clock=self.clock)

    def _fleet(self) -> None:
        self.hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": "default"},
                         "spec": {"baseCurrency": "JPY", "exchangeRates": {"USD": 150.0},
                                  "weights": {"price": 0.7, "availability": 0.3},
                                  "classificationRules": [
                                      {"classification": c, "allowedTiers": sorted(tiers),
                                       "allowedJurisdictions": sorted(jurisdictions)}
                                      for c, (tiers, jurisdictions) in RULES.items()]}})
        # what some workloads' pods reference: the ConfigMap is copied with them, the Secret never (no opt-in)
        self.hub.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        self.hub.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SHARED_CONFIG, "namespace": NS},
                         "data": {"k": "v"}})
        self.hub.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SHARED_SECRET, "namespace": NS},
                         "type": "Opaque", "data": {"k": "dg=="}})
        n = self.rng.randint(2, 5)
        for i in range(n):
            tier = TIERS[i % 3] if i < 3 else self.rng.choice(TIERS)
            jurisdiction = "JP" if tier != "Hyperscaler" else self.rng.choice(["JP", "US"])
            model = self.rng.choice(list(MODELS))
            name = f"m{i}-{tier.lower()}-{jurisdiction.lower()}"
            nodes = [Node(f"{name}-n{j}", self._product(model), self.rng.choice([4, 8]))
                     for j in range(self.rng.randint(1, 3))]
            served = SERVED_KINDS if self.rng.random() < 0.8 else SERVED_KINDS - {("apps/v1", "Deployment")}
            if self.rng.random() < 0.3:  # a member without the add-ons
                served -= {("jobset.x-k8s.io/v1alpha2", "JobSet"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
                           ("kubeflow.org/v1", "PyTorchJob"), ("ray.io/v1", "RayJob")}
            self.members[name] = MemoryMember(name, nodes, random.Random(self.rng.random()), served=served,
                                              bind_chance=self.rng.choice([1.0, 0.6, 0.3]),
                                              discovers=self.rng.random() < 0.5)  # else: only its 404 says
            usd = tier == "Hyperscaler"
            self.hub.create({
                "apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": name},
                "spec": {"tier": tier, "provider": "sim", "region": name, "jurisdiction": jurisdiction,
                         # a hyperscaler's Tokyo region is run from the US; one provider does not say
                         **({} if (op := self.rng.choice([jurisdiction, jurisdiction, "US", None])) is None else
                            {"operatorJurisdiction": op}),
                         "residencyLabels": self.rng.sample(["ismap", "iso27017"], self.rng.randint(0, 2)),
                         "gpus": [{"model": model, "count": sum(nd.gpus for nd in nodes), "memoryGiB": MODELS[model],
                                   "pricePerGPUHour": round(self.rng.uniform(2, 5), 2) if usd else
                                   float(self.rng.randint(300, 700)), "currency": "USD" if usd else "JPY"}],
                         "connection": {"kubeconfigSecretRef": {"namespace": "tenbin-system", "name": name,
                                                                "key": "kubeconfig"}}}})

    def _product(self, model: str) -> str:
        """A node's `nvidia.com/gpu.product`: any spelling GFD or Tenbin's agent writes for the model, at
        times in another case (the inventory must count it, and the pod pin must reach it)."""
        product = self.rng.choice(product_labels(model))
        return product.lower() if self.rng.random() < 0.25 else product

    # ---- the operator's event loop, as Kopf drives it ------------------------------------------

    async def deliver(self) -> None:
        for _ in range(100_000):
            if not self.hub.watch:
                return
            ev = self.hub.watch.pop(0)
            deleted = ev.type == "DELETED"
            if ev.kind == "AIWorkload":
                key = self.ctl.observe_workload(ev.body, deleted=deleted)
                if not deleted:
                    await self.ctl.reconcile(key)
            elif ev.kind == "GPUCluster":
                self.ctl.observe_cluster(ev.body, deleted=deleted)
            elif ev.kind == "PlacementPolicy":
                self.ctl.observe_policy(ev.body, deleted=deleted)
            await self._background()
        raise self._broken("the operator never stops writing: 100,000 hub events in one step")

    def _relist(self) -> None:
        """Kopf's start: every existing object reaches the handlers once, as if just added."""
        for (kind, _, _), body in sorted(self.hub.objects.items()):
            self.hub.watch.append(HubEvent("ADDED", kind, copy.deepcopy(body)))

    async def _background(self) -> None:
        for _ in range(5):  # drains and gateway closes the controller started
            await asyncio.sleep(0)

    async def tick(self) -> None:
        self.tick_no += 1
        for name, out in list(self.outages.items()):
            if self.tick_no >= out.until:
                self._recover(name)
        self.clock.advance(CONFIG.resync_seconds)
        await self._background()
        for m in self.members.values():
            if m.reachable:
                m.tick()
        for (kind, _, name), body in sorted(self.hub.objects.items()):
            if kind == "GPUCluster" and not body["metadata"].get("deletionTimestamp"):
                await self.ctl.sync_cluster(name)  # the monitor daemon (Kopf stops it at deletion)
                await self.deliver()
        await self.deliver()

    # ---- random events -------------------------------------------------------------------------

    def workloads(self) -> list[dict[str, Any]]:
        return [b for (k, _, _), b in sorted(self.hub.objects.items()) if k == "AIWorkload"]

    def clusters(self) -> dict[str, dict[str, Any]]:
        return {n: b for (k, _, n), b in sorted(self.hub.objects.items()) if k == "GPUCluster"}

    def _new_workload(self) -> str:
        name = f"w{next(self.names)}"
        classification = self.rng.choice(["Restricted", "Confidential", "Internal", "Public", "Public"])
        kind = self.rng.choice(["Job", "Job", "Job", "Deployment", "Deployment", "JobSet", "LeaderWorkerSet",
                                "PyTorchJob", "RayJob"])
        per_pod = self.rng.choice([1, 1, 2, 4, 8])
        replicas = self.rng.choice([1, 1, 1, 2, 3])
        pod: dict[str, Any] = {"metadata": {"labels": {"app": name}, "annotations": {}},
                               "spec": {"containers": [{"name": "main", "image": "registry.example.com/x:1",
                                                        "resources": {"limits": {"nvidia.com/gpu": per_pod}}}]}}
        if self.rng.random() < 0.4:
            pod["spec"]["volumes"] = [{"name": "config", "configMap": {"name": SHARED_CONFIG}}]
        if self.rng.random() < 0.2:
            pod["spec"]["containers"][0]["env"] = [
                {"name": "K", "valueFrom": {"secretKeyRef": {"name": SHARED_SECRET, "key": "k"}}}]
        if kind in ("Job", "JobSet", "PyTorchJob", "RayJob"):
            pod["spec"]["restartPolicy"] = "Never"
            pod["metadata"]["annotations"][RUN_ANNOTATION] = str(self.rng.randint(3, 40))
        if kind == "Job":
            template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                        "spec": {"parallelism": replicas, "completions": replicas, "backoffLimit": 0,
                                 "template": pod}}
        elif kind == "Deployment":
            template = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": pod}}
        elif kind == "JobSet":  # a CPU-only launcher beside the GPU workers: only the workers' GPUs count
            launcher = copy.deepcopy(pod)
            del launcher["spec"]["containers"][0]["resources"]
            template = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": name},
                        "spec": {"replicatedJobs": [
                            {"name": "launcher", "replicas": 1, "template": {"spec": {"template": launcher}}},
                            {"name": "workers", "replicas": replicas, "template": {"spec": {"template": pod}}}]}}
        elif kind == "PyTorchJob":  # a master and replicas-1 workers
            roles = {"Master": {"replicas": 1, "template": pod}}
            if replicas > 1:
                roles["Worker"] = {"replicas": replicas - 1, "template": copy.deepcopy(pod)}
            template = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
                        "spec": {"pytorchReplicaSpecs": roles}}
        elif kind == "RayJob":  # a CPU-only head beside the GPU worker group: only the workers' GPUs count
            head = copy.deepcopy(pod)
            del head["spec"]["containers"][0]["resources"]
            template = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name},
                        "spec": {"entrypoint": "python job.py", "rayClusterSpec": {
                            "headGroupSpec": {"template": head},
                            "workerGroupSpecs": [{"groupName": "gpu", "replicas": replicas, "minReplicas": replicas,
                                                  "maxReplicas": replicas, "template": pod}]}}}
        else:  # one group of a leader and replicas-1 workers, all from the worker template
            template = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                        "metadata": {"name": name},
                        "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": replicas, "workerTemplate": pod}}}
        residency: dict[str, Any] = {"dataClassification": classification}
        if self.rng.random() < 0.3:
            residency["jurisdictions"] = [self.rng.choice(["JP", "US"])]
        if self.rng.random() < 0.2:
            residency["requiredLabels"] = ["ismap"]
        if self.rng.random() < 0.15:
            residency["operatorJurisdictions"] = ["JP"]
        spec: dict[str, Any] = {"gpu": {"count": per_pod}, "replicas": replicas, "residency": residency,
                                "template": template}
        if self.rng.random() < 0.5:
            spec["migration"] = {"policy": self.rng.choice(["OnFailure", "CostAware", "Never"]),
                                 "minSavingsPercent": 10, "cooldownSeconds": 5}
        self.hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload",
                         "metadata": {"name": name, "namespace": NS}, "spec": spec})
        return f"create {name}: {classification} {kind} {replicas}x{per_pod} GPUs {residency}"

    def _down(self, name: str, ticks: int, fenced: bool) -> None:
        self.members[name].reachable = False
        self.outages[name] = Outage(self.tick_no, self.tick_no + ticks, fenced)

    def _recover(self, name: str) -> None:
        out = self.outages.pop(name, None)
        if name in self.members:
            self.members[name].reachable = True
        if out is not None:
            self.trace.append(f"t{self.tick_no}: {name} answers again")

    def _fence(self, name: str) -> str:
        """An admin vouches that the lost member's work is stopped: it is (power off), then says so."""
        m = self.members[name]
        m.objects.clear()
        m.pods.clear()
        self.outages[name].fenced = True
        self.hub.merge("GPUCluster", None, name, {"metadata": {"annotations": {FENCED_ANNOTATION: "true"}}})
        return f"fence {name} (its work powered off)"

    def event(self) -> str | None:
        r = self.rng.random()
        wls = [w for w in self.workloads() if not w["metadata"].get("deletionTimestamp")]
        clusters = self.clusters()
        live = [n for n, b in clusters.items() if not b["metadata"].get("deletionTimestamp")]
        if r < 0.27 and len(wls) < 40:
            return self._new_workload()
        if r < 0.30 and len(wls) < 34:  # a burst: several placements before any member binds a pod
            return "burst: " + "; ".join(self._new_workload() for _ in range(self.rng.randint(3, 6)))
        if r < 0.38 and wls:
            w = self.rng.choice(wls)
            self.hub.delete("AIWorkload", NS, w["metadata"]["name"])
            return f"delete {w['metadata']['name']}"
        if r < 0.42 and wls:
            w = self.rng.choice([w for w in wls if w["spec"]["template"]["kind"] == "Deployment"] or wls)
            if w["spec"]["template"]["kind"] != "Deployment":
                return None
            n = self.rng.choice([1, 2, 3])
            tmpl = w["spec"]["template"]
            self.hub.merge("AIWorkload", NS, w["metadata"]["name"], {"spec": {
                "replicas": n, "template": {**tmpl, "spec": {**tmpl["spec"], "replicas": n}}}})
            return f"scale {w['metadata']['name']} to {n}"
        if r < 0.45 and live:
            name = self.rng.choice(live)
            if name not in self.outages:
                self._down(name, self.rng.randint(2, 15), fenced=False)
                return f"{name} unreachable"
        if r < 0.47:
            lost = [n for n, o in self.outages.items() if not o.fenced and n in self.members
                    and self.tick_no - o.start > CONFIG.cluster_lost_after_seconds]
            if lost:
                return self._fence(self.rng.choice(lost))
        if r < 0.49 and live:
            name = self.rng.choice(live)
            cordoned = not clusters[name]["spec"].get("cordoned")
            annotations = {"tenbin.io/evacuate": "true" if cordoned and self.rng.random() < 0.5 else None}
            self.hub.merge("GPUCluster", None, name, {"spec": {"cordoned": cordoned},
                                                     "metadata": {"annotations": annotations}})
            return f"{'cordon' if cordoned else 'uncordon'} {name} {annotations}"
        if r < 0.51 and wls:
            w = self.rng.choice(wls)
            self.hub.merge("AIWorkload", NS, w["metadata"]["name"],
                           {"metadata": {"annotations": {"tenbin.io/replace": f"tick-{self.tick_no}"}}})
            return f"re-place {w['metadata']['name']}"
        if r < 0.54 and live:
            name = self.rng.choice(live)
            gpus = [dict(g) for g in clusters[name]["spec"]["gpus"]]
            gpus[0]["pricePerGPUHour"] = round(gpus[0]["pricePerGPUHour"] * self.rng.choice([0.5, 0.8, 1.25, 2]), 2)
            self.hub.merge("GPUCluster", None, name, {"spec": {"gpus": gpus}})
            return f"price of {name} -> {gpus[0]['pricePerGPUHour']}"
        if r < 0.555 and live:
            name = self.rng.choice(live)
            labels = self.rng.sample(["ismap", "iso27017"], self.rng.randint(0, 2))
            jurisdiction = self.rng.choice(["JP", "JP", "US"])
            operator = self.rng.choice([jurisdiction, "US", None])  # resold, or the operator no longer said
            self.hub.merge("GPUCluster", None, name, {"spec": {"residencyLabels": labels,
                                                               "jurisdiction": jurisdiction,
                                                               "operatorJurisdiction": operator}})
            return f"residency of {name} -> {jurisdiction} (operator {operator}) {labels}"
        if r < 0.5565 and wls:
            w = self.rng.choice(wls)
            if w["spec"]["template"]["kind"] != "Deployment":
                return None
            n = self.rng.choice([1, 2, 4])
            tmpl = copy.deepcopy(w["spec"]["template"])
            tmpl["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = n
            self.hub.merge("AIWorkload", NS, w["metadata"]["name"], {"spec": {"gpu": {"count": n}, "template": tmpl}})
            return f"gpu.count of {w['metadata']['name']} -> {n}"
        if r < 0.5575:
            policy = self.hub.get("PlacementPolicy", None, "default") or {}
            rules = [x for x in policy["spec"]["classificationRules"] if x["classification"] != "Internal"]
            tighten = len(rules) == len(policy["spec"]["classificationRules"])
            if tighten:
                rules.append({"classification": "Internal", "allowedJurisdictions": ["JP"]})
            self.hub.merge("PlacementPolicy", None, "default", {"spec": {"classificationRules": rules}})
            return f"policy: Internal work {'only in JP' if tighten else 'anywhere'}"
        if r < 0.558 and len(live) > 1:
            name = self.rng.choice(live)
            self.hub.delete("GPUCluster", None, name)
            return f"delete GPUCluster {name}"
        if r < 0.568:
            self.restarts += 1
            self.ctl = self._controller()
            self.hub.watch.clear()  # a new process: it lists, then watches from now
            return "operator restart"
        return None

    # ---- invariants ----------------------------------------------------------------------------

    def _broken(self, what: str) -> InvariantBroken:
        tail = "\n  ".join(self.trace[-40:])
        return InvariantBroken(f"seed {self.seed}, tick {self.tick_no}: {what}\n"
                               f"replay: make simulate SEED={self.seed} STEPS={self.steps}\n  {tail}")

    def check(self) -> None:
        by_uid = {w["metadata"]["uid"]: w for w in self.workloads()}
        clusters = self.clusters()
        policy = self.hub.get("PlacementPolicy", None, "default")
        copies: dict[str, set[str]] = {}
        for name, m in self.members.items():
            for ref, obj in m.created_since_check():
                w = by_uid.get((obj["metadata"].get("labels") or {}).get(UID_LABEL, ""))
                c = clusters.get(name)
                if w is not None and c is not None and not allowed(w, c, policy):
                    raise self._broken(f"{ref} created in {name}, which residency forbids for "
                                       f"{w['metadata']['name']} ({w['spec']['residency']})")
            if any(r.kind == "Secret" for r in m.config):
                raise self._broken(f"a Secret was copied into {name}, though the policy lets no Secret leave the hub")
            if m.applied_while_deleting:
                raise self._broken(f"{m.applied_while_deleting[0]} applied in {name} while it was being deleted: the "
                                   "apply is accepted and lost with the object")
            if not m.reachable and self.outages.get(name, Outage(0, 0)).fenced:
                continue
            for p in m.live_pods():
                uid = (p["metadata"].get("labels") or {}).get(UID_LABEL)
                owner = m.objects.get(p["_owner"]) if p.get("_owner") else None
                want = ((owner or {}).get("metadata", {}).get("labels") or {}).get(UID_LABEL)
                if want and uid != want:  # its GPUs would count as a stranger's use while still reserved
                    raise self._broken(f"pod {p['metadata']['name']} of {p['_owner']} in {name} is not attributable "
                                       "to its AIWorkload (no workload label): its GPUs are counted twice")
                w = by_uid.get(uid or "")
                if w is not None and w["spec"]["template"]["kind"] == "Job":
                    copies.setdefault(uid or "", set()).add(name)
        for uid, where in copies.items():
            if len(where) > 1:
                raise self._broken(f"two running copies of Job {by_uid[uid]['metadata']['name']}: {sorted(where)}")
        for w in self.workloads():  # every new placement or move target, when it is decided
            st = w.get("status") or {}
            move = st.get("migration") or {}
            if move and (move.get("reason") not in set(Trigger) or not move.get("message")):
                raise self._broken(f"{w['metadata']['name']}: status.migration says why as reason "
                                   f"{move.get('reason')!r} and message {move.get('message')!r}: a trigger token "
                                   "and the sentence")
            targets = {(st.get("placement") or {}).get("cluster"), move.get("to")}
            for name in sorted(t for t in targets if t):
                seen = self.decided.setdefault(w["metadata"]["uid"], set())
                if name not in seen and name in clusters and not allowed(w, clusters[name], policy):
                    raise self._broken(f"{w['metadata']['name']} placed or moved onto {name}, which residency "
                                       f"forbids ({w['spec']['residency']})")
                seen.add(name)
        if self.tick_no % 4 == 0:  # every tick cost a fifth of the run; a wrong count lasts while pods wait
            self.check_explain(clusters, policy)

    def check_explain(self, clusters: Mapping[str, Mapping[str, Any]], policy: Mapping[str, Any] | None) -> None:
        """`tenbin explain` never shows more free GPUs than a cluster has: checked for every placed workload
        whose pods are not all bound yet (where counting its own GPUs as free again can go wrong)."""
        models: list[GPUCluster] | None = None
        pol = PlacementPolicy.model_validate(policy) if policy else None
        for w in self.workloads():
            p = (w.get("status") or {}).get("placement") or {}
            member = self.members.get(p.get("cluster") or "")
            if member is None or not member.reachable:
                continue
            uid = w["metadata"]["uid"]
            mine = [x for x in member.live_pods() if (x["metadata"].get("labels") or {}).get(UID_LABEL) == uid]
            if mine and all(x["spec"].get("nodeName") for x in mine):
                continue
            if models is None:
                models = [GPUCluster.model_validate(c) for c in clusters.values()]
            bound = sum(_pod_gpus(x) for x in mine if x["spec"].get("nodeName"))
            rows, _ = explain_rows(AIWorkload.model_validate(w), models, pol, own_bound=bound)
            for row in rows:
                inv = ((clusters[row["cluster"]].get("status") or {}).get("gpus")) or []
                has = next((g.get("allocatable", 0) for g in inv if g.get("model") == row["model"]), None)
                if has is not None and row["free"] > has:
                    raise self._broken(f"explain of {w['metadata']['name']} shows {row['free']} free "
                                       f"{row['model']} GPUs on {row['cluster']}, which has {has}")

    def over_asked(self) -> set[str]:
        """UIDs of workloads whose pods rightly wait in their member, saying so (Ready=False
        PodsUnschedulable): those grown past what their cluster's nodes hold (PlacementConflict
        InsufficientCapacity), and those on the same cluster whose promised room such a grown neighbour's
        extra pods took (the member's scheduler binds in its own order; README: the conditions of the
        node-fit promise)."""
        grown, squeezed, clusters = set(), {}, set()
        for w in self.workloads():
            st = w.get("status") or {}
            cond = {c["type"]: c for c in st.get("conditions") or []}
            conflict, ready = cond.get("PlacementConflict") or {}, cond.get("Ready") or {}
            cluster = (st.get("placement") or {}).get("cluster")
            waits = ready.get("reason") == "PodsUnschedulable"
            if (conflict.get("status"), conflict.get("reason")) == ("True", "InsufficientCapacity"):
                clusters.add(cluster)
                if waits:
                    grown.add(w["metadata"]["uid"])
            elif waits:
                squeezed[w["metadata"]["uid"]] = cluster
        return grown | {uid for uid, cluster in squeezed.items() if cluster in clusters}

    def check_settled(self) -> None:
        by_uid = {w["metadata"]["uid"]: w for w in self.workloads()}
        over_asked = self.over_asked()
        for w in self.workloads():
            st = w.get("status") or {}
            phase = st.get("phase")
            name = w["metadata"]["name"]
            if w["metadata"]["uid"] in over_asked:
                continue
            if phase not in ("Running", "Succeeded", "Failed", "Unschedulable"):
                raise self._broken(f"{name} did not settle: phase {phase}: {st.get('message')}")
            if phase in ("Unschedulable", "Failed") and not st.get("message"):
                raise self._broken(f"{name} is {phase} without saying why")
            cluster = (st.get("placement") or {}).get("cluster")
            if phase in ("Running", "Scheduled") and cluster not in self.clusters():
                raise self._broken(f"{name} says {phase} on {cluster}, which is no GPUCluster any more")
            if phase == "Running" and (cluster not in self.members or not any(
                    (o["metadata"].get("labels") or {}).get(UID_LABEL) == w["metadata"]["uid"]
                    for o in self.members[cluster].objects.values())):
                raise self._broken(f"{name} says Running on {cluster}, which has no copy of it")
        for name, m in self.members.items():
            for ref, obj in m.objects.items():
                uid = (obj["metadata"].get("labels") or {}).get(UID_LABEL, "")
                w = by_uid.get(uid)
                if w is None or ((w.get("status") or {}).get("placement") or {}).get("cluster") != name:
                    raise self._broken(f"{ref} left in {name} with no AIWorkload placed there")
            alive = {o["metadata"]["uid"] for o in m.objects.values()}
            for ref, obj in m.config.items():
                if not {o["uid"] for o in obj["metadata"].get("ownerReferences") or []} & alive:
                    raise self._broken(f"{ref} left in {name} with no workload there that uses it")
            for ref, obj in m.objects.items():
                if SHARED_CONFIG in json.dumps(obj.get("spec")) and not any(
                        o["uid"] == obj["metadata"]["uid"] for o in (m.config.get(ObjectRef(
                            "v1", "ConfigMap", NS, SHARED_CONFIG)) or {"metadata": {}})["metadata"].get(
                            "ownerReferences") or []):
                    raise self._broken(f"{ref} in {name} uses ConfigMap {SHARED_CONFIG}, which is not there owned "
                                       "by it")
            pending = [p["metadata"]["name"] for p in m.live_pods() if not p["spec"].get("nodeName")
                       and (p["metadata"].get("labels") or {}).get(UID_LABEL) not in over_asked]
            if pending:
                raise self._broken(f"pods placed by Tenbin but never bound in {name}: {pending}")
        for name, c in self.clusters().items():  # conditions say which spec they judge (Kubernetes conventions)
            stale = [(k["type"], k.get("observedGeneration")) for k in (c.get("status") or {}).get("conditions") or []
                     if k.get("observedGeneration") != c["metadata"].get("generation")]
            if stale:
                raise self._broken(f"GPUCluster {name} at generation {c['metadata'].get('generation')} has "
                                   f"conditions of another: {stale}")

    # ---- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        self._fleet()
        await self.ctl.seed()
        self.hub.watch.clear()
        for step in range(self.steps):
            what = self.event()
            if what is not None:
                self.trace.append(f"t{self.tick_no}: {what}")
                if what == "operator restart":
                    await self.ctl.seed()
                    self._relist()
            await self.deliver()
            await self.tick()
            self.check()
            del step
        await self.settle()

    async def settle(self) -> None:
        """Heal every fault, let the fleet come to rest, then check the end state."""
        self.trace.append(f"t{self.tick_no}: settle")
        for name in list(self.outages):
            self._recover(name)
        quiet = 0
        for n in range(400):
            await self.tick()
            self.check()
            quiet = quiet + 1 if self._quiet() else 0
            if n >= SETTLE_TICKS and quiet >= 3:
                break
        else:
            raise self._broken(f"the fleet never came to rest in 400 ticks after the faults healed: {self._busy()}")
        self.check_settled()

    def _busy(self) -> str:
        """What still moves, for the report of a fleet that never came to rest."""
        busy = []
        for w in self.workloads():
            st = w.get("status") or {}
            move = (st.get("migration") or {}).get("phase")
            if st.get("phase") not in ("Running", "Succeeded", "Failed", "Unschedulable") or move in MOVING:
                busy.append(f"{w['metadata']['name']} {st.get('phase')} (move {move}): {st.get('message')}")
        return "; ".join(busy[:6]) or "every workload at rest, but pods unbound or Job pods still running"

    def _quiet(self) -> bool:
        """Nothing left to happen: every workload at rest (or outgrown, and saying so), no move in flight,
        every pod bound (but an outgrown workload's extra ones), no bound Job pod still running (an unbound one is an
        outgrown workload's: it waits for room, it does not run)."""
        over_asked = self.over_asked()
        for w in self.workloads():
            st = w.get("status") or {}
            if w["metadata"]["uid"] in over_asked:
                continue
            if st.get("phase") not in ("Running", "Succeeded", "Failed", "Unschedulable") or \
                    (st.get("migration") or {}).get("phase") in MOVING:
                return False
        pods = [p for m in self.members.values() for p in m.live_pods()]
        return all(p["spec"].get("nodeName") or (p["metadata"].get("labels") or {}).get(UID_LABEL) in over_asked
                   for p in pods) and not any(p.get("_ticks_left") and p["spec"].get("nodeName") for p in pods)


def _pod_gpus(pod: Mapping[str, Any]) -> int:
    return sum(int(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
               for c in pod["spec"].get("containers") or [])


def simulate(seed: int, steps: int) -> Simulation:
    sim = Simulation(seed, steps)
    asyncio.run(sim.run())
    return sim


def main() -> int:
    import argparse
    import hashlib
    import logging
    import time

    ap = argparse.ArgumentParser(description="Run one deterministic simulation of the operator in memory.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    t0 = time.monotonic()
    try:
        sim = simulate(args.seed, args.steps)
    except InvariantBroken as e:
        print(e)
        return 1
    phases: dict[str, int] = {}
    for w in sim.workloads():
        phase = str((w.get("status") or {}).get("phase"))
        phases[phase] = phases.get(phase, 0) + 1
    digest = hashlib.sha256("\n".join(sim.trace).encode()).hexdigest()[:12]
    print(f"seed {args.seed}: {args.steps} steps, {sim.tick_no} ticks, {len(sim.trace)} events (trace {digest}), "
          f"{sim.restarts} operator restarts, every invariant kept, {time.monotonic() - t0:.1f} s; "
          f"workloads left: {dict(sorted(phases.items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
