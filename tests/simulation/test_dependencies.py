"""A workload's ConfigMaps, Secrets, ServiceAccounts and PriorityClasses, driven through the real `Controller`
against the in-memory hub and member: copied before the workload, kept in sync, removed with it (by the
member's garbage collector, through ownerReferences), Secrets only when opted in, never taking over what the
member has of its own. The testbed e2e (tests/e2e/test_ai_kinds.py) checks the same against real apiservers."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

from test_races import deliver
from world import CONFIG, NS, FakeClock

from tenbin.api import Reason, WorkloadCondition
from tenbin.clusters.gateway import ObjectRef
from tenbin.clusters.memory import RUN_ANNOTATION, MemoryHub, MemoryMember, Node
from tenbin.services.controller import Controller
from tenbin.services.dependencies import COPY_SECRETS_LABEL, HASH_ANNOTATION

MEMBER = "m0-onprem-jp"
RESYNC = 3.0
SETTINGS = dataclasses.replace(CONFIG, dependency_resync_seconds=RESYNC)


def cm_ref(name: str) -> ObjectRef:
    return ObjectRef("v1", "ConfigMap", NS, name)


def secret_ref(name: str) -> ObjectRef:
    return ObjectRef("v1", "Secret", NS, name)


class Fleet:
    def __init__(self, copy_secrets_for: list[str] | None = None) -> None:
        self.clock = FakeClock()
        self.hub = MemoryHub(self.clock.time)
        self.member = MemoryMember(MEMBER, [Node(f"{MEMBER}-n0", "NVIDIA-H100-80GB-HBM3", 8)], random.Random(0))
        spec: dict[str, Any] = {"baseCurrency": "JPY"}
        if copy_secrets_for is not None:
            spec["copySecretsFor"] = copy_secrets_for
        self.hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "PlacementPolicy",
                         "metadata": {"name": "default"}, "spec": spec})
        self.hub.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        self.hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": MEMBER},
                         "spec": {"tier": "OnPrem", "provider": "sim", "region": "r", "jurisdiction": "JP",
                                  "gpus": [{"model": "H100-80GB", "count": 8, "memoryGiB": 80,
                                            "pricePerGPUHour": 400.0, "currency": "JPY"}],
                                  "connection": {"kubeconfigSecretRef": {
                                      "namespace": "tenbin-system", "name": MEMBER, "key": "kubeconfig"}}}})

        async def factory(name: str, _conn: Any) -> MemoryMember:
            return self.member

        self.ctl = Controller(self.hub, factory, self.hub.post_event, config=SETTINGS, clock=self.clock)

    async def round(self, seconds: float = CONFIG.resync_seconds) -> None:
        self.clock.advance(seconds)
        self.member.tick()
        await self.ctl.sync_cluster(MEMBER)
        await deliver(self.hub, self.ctl)

    async def start(self) -> None:
        await self.ctl.seed()
        await deliver(self.hub, self.ctl)
        await self.round()

    def workload(self, name: str) -> dict[str, Any]:
        found = self.hub.get("AIWorkload", NS, name)
        assert found is not None
        return found

    def condition(self, name: str) -> dict[str, Any] | None:
        conds = (self.workload(name).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == WorkloadCondition.DEPENDENCIES_SYNCED), None)

    def workload_ref(self, name: str) -> ObjectRef:
        return ObjectRef("batch/v1", "Job", NS, name)


def config_map(name: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS, **meta},
            "data": data}


def job(name: str, pod_spec: dict[str, Any], classification: str = "Confidential") -> dict[str, Any]:
    spec = {"restartPolicy": "Never", **pod_spec}
    spec.setdefault("containers", [{"name": "main", "image": "registry.example.com/x:1"}])
    spec["containers"][0].setdefault("resources", {"limits": {"nvidia.com/gpu": 1}})
    pod = {"metadata": {"annotations": {RUN_ANNOTATION: "1000"}}, "spec": spec}
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload", "metadata": {"name": name, "namespace": NS},
            "spec": {"gpu": {"count": 1}, "residency": {"dataClassification": classification},
                     "template": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                                  "spec": {"backoffLimit": 0, "template": pod}}}}


def uses_config(name: str, *config_maps: str, **pod_spec: Any) -> dict[str, Any]:
    return job(name, {
        **pod_spec, "volumes": [{"name": f"v{i}", "configMap": {"name": cm}} for i, cm in enumerate(config_maps)]})


async def two_rounds(f: Fleet) -> None:
    await f.round()
    await f.round()


def test_dependencies_are_copied_before_the_workload_and_owned_by_it() -> None:
    async def run() -> None:
        f = Fleet()
        f.hub.create(config_map("train-config", {"lr": "0.1"},
                                annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"}))
        f.hub.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "trainer", "namespace": NS}})
        f.hub.create({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                      "metadata": {"name": "batch-high"}, "value": 1000, "globalDefault": True})
        await f.start()
        f.hub.create(uses_config("train", "train-config", serviceAccountName="trainer",
                                 priorityClassName="batch-high"))
        await deliver(f.hub, f.ctl)
        await two_rounds(f)

        writes = f.member.writes
        job_at = writes.index(f.workload_ref("train"))
        for ref in (cm_ref("train-config"), ObjectRef("v1", "ServiceAccount", NS, "trainer"),
                    ObjectRef("scheduling.k8s.io/v1", "PriorityClass", "", "batch-high")):
            assert ref in writes[:job_at], f"{ref} was not written before the Job: {writes}"
        copied = f.member.config[cm_ref("train-config")]
        assert copied["data"] == {"lr": "0.1"}
        assert "kubectl.kubernetes.io/last-applied-configuration" not in copied["metadata"]["annotations"]
        job_uid = f.member.objects[f.workload_ref("train")]["metadata"]["uid"]
        assert [o["uid"] for o in copied["metadata"]["ownerReferences"]] == [job_uid]
        pc = f.member.config[ObjectRef("scheduling.k8s.io/v1", "PriorityClass", "", "batch-high")]
        assert pc["globalDefault"] is False and "ownerReferences" not in pc["metadata"]
        cond = f.condition("train")
        assert cond is not None and cond["status"] == "True" and cond["reason"] == Reason.DEPENDENCIES_SYNCED
        assert "ConfigMap sim/train-config" in cond["message"]

    asyncio.run(run())


def test_a_changed_config_map_is_copied_again_and_an_unchanged_one_is_not_written() -> None:
    async def run() -> None:
        f = Fleet()
        f.hub.create(config_map("train-config", {"lr": "0.1"}))
        await f.start()
        f.hub.create(uses_config("train", "train-config"))
        await deliver(f.hub, f.ctl)
        await two_rounds(f)
        first = f.member.config[cm_ref("train-config")]["metadata"]["annotations"][HASH_ANNOTATION]
        n = len(f.member.writes)
        for _ in range(int(RESYNC) * 2 + 1):
            await f.round()
        assert len(f.member.writes) == n, "an unchanged dependency was written again"
        f.hub.merge("ConfigMap", NS, "train-config", {"data": {"lr": "0.2"}})
        for _ in range(int(RESYNC) + 1):
            await f.round()
        copied = f.member.config[cm_ref("train-config")]
        assert copied["data"] == {"lr": "0.2"}
        assert copied["metadata"]["annotations"][HASH_ANNOTATION] != first
        assert copied["metadata"]["ownerReferences"], "the owner went with the update"

    asyncio.run(run())


def test_a_shared_config_map_leaves_the_member_with_the_last_workload_that_uses_it() -> None:
    async def run() -> None:
        f = Fleet()
        f.hub.create(config_map("shared", {"k": "v"}))
        await f.start()
        for name in ("a", "b"):
            f.hub.create(uses_config(name, "shared"))
            await deliver(f.hub, f.ctl)
            await two_rounds(f)
        assert len(f.member.config[cm_ref("shared")]["metadata"]["ownerReferences"]) == 2
        f.hub.delete("AIWorkload", NS, "a")
        await deliver(f.hub, f.ctl)
        await two_rounds(f)
        assert f.workload_ref("a") not in f.member.objects
        assert cm_ref("shared") in f.member.config, "removed while b still uses it"
        f.hub.delete("AIWorkload", NS, "b")
        await deliver(f.hub, f.ctl)
        await two_rounds(f)
        assert f.workload_ref("b") not in f.member.objects
        assert cm_ref("shared") not in f.member.config, "left behind after its last workload went"

    asyncio.run(run())


def test_a_member_object_of_the_same_name_that_tenbin_did_not_make_is_left_alone() -> None:
    async def run() -> None:
        f = Fleet()
        f.hub.create(config_map("train-config", {"lr": "0.1"}))
        theirs = config_map("train-config", {"lr": "member's own"})
        f.member.config[cm_ref("train-config")] = theirs
        await f.start()
        f.hub.create(uses_config("train", "train-config"))
        await deliver(f.hub, f.ctl)
        await two_rounds(f)
        assert f.member.config[cm_ref("train-config")]["data"] == {"lr": "member's own"}
        assert "ownerReferences" not in f.member.config[cm_ref("train-config")]["metadata"]
        cond = f.condition("train")
        assert cond is not None and cond["status"] == "True" and "not made by Tenbin" in cond["message"]

    asyncio.run(run())


def test_a_missing_config_map_is_named_once_and_copied_when_it_appears() -> None:
    async def run() -> None:
        f = Fleet()
        await f.start()
        f.hub.create(uses_config("train", "later"))
        await deliver(f.hub, f.ctl)
        await two_rounds(f)
        cond = f.condition("train")
        assert cond is not None and cond["status"] == "False" and cond["reason"] == Reason.DEPENDENCY_MISSING
        assert "ConfigMap sim/later: not found in the hub" in cond["message"]
        assert f.workload_ref("train") in f.member.objects, "the workload waits in the member, as in one cluster"
        for _ in range(int(RESYNC) * 2):
            await f.round()
        warned = [e for e in f.hub.events if e[2] == Reason.DEPENDENCY_MISSING]
        assert len(warned) == 1, warned
        f.hub.create(config_map("later", {"k": "v"}))
        for _ in range(int(RESYNC) + 1):
            await f.round()
        assert cm_ref("later") in f.member.config
        cond = f.condition("train")
        assert cond is not None and cond["status"] == "True"

    asyncio.run(run())


def secret_job(name: str) -> dict[str, Any]:
    return job(name, {"imagePullSecrets": [{"name": "registry"}], "containers": [
        {"name": "main", "image": "registry.example.com/x:1",
         "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "t"}}}]}]})


def test_secrets_stay_in_the_hub_unless_the_namespace_and_the_policy_both_allow_them() -> None:
    async def run(namespace_opts_in: bool, policy_allows: bool) -> None:
        f = Fleet(copy_secrets_for=["Confidential"] if policy_allows else [])
        if namespace_opts_in:
            f.hub.merge("Namespace", None, NS, {"metadata": {"labels": {COPY_SECRETS_LABEL: "true"}}})
        for name in ("registry", "api-token"):
            f.hub.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
                          "type": "Opaque", "data": {"t": "c2VjcmV0"}})
        await f.start()
        f.hub.create(secret_job("train"))
        await deliver(f.hub, f.ctl)
        await two_rounds(f)
        cond = f.condition("train")
        assert cond is not None
        if namespace_opts_in and policy_allows:
            assert secret_ref("registry") in f.member.config and secret_ref("api-token") in f.member.config
            assert f.member.config[secret_ref("api-token")]["data"] == {"t": "c2VjcmV0"}
            assert cond["status"] == "True"
        else:
            assert not [r for r in f.member.config if r.kind == "Secret"], "a Secret left the hub"
            assert cond["status"] == "False" and cond["reason"] == Reason.DEPENDENCY_MISSING
            why = "namespace not labelled" if not namespace_opts_in else "spec.copySecretsFor does not list"
            assert why in cond["message"] and "Secret sim/api-token" in cond["message"]

    for opts_in in (False, True):
        for allows in (False, True):
            asyncio.run(run(opts_in, allows))


def test_a_secret_the_member_has_itself_satisfies_the_workload_without_copying() -> None:
    async def run() -> None:
        f = Fleet()
        for name in ("registry", "api-token"):
            f.member.config[secret_ref(name)] = {"apiVersion": "v1", "kind": "Secret",
                                                 "metadata": {"name": name, "namespace": NS}, "data": {}}
        await f.start()
        f.hub.create(secret_job("train"))
        await deliver(f.hub, f.ctl)
        await two_rounds(f)
        cond = f.condition("train")
        assert cond is not None and cond["status"] == "True", cond
        assert "the member's own" in cond["message"]

    asyncio.run(run())


def test_a_copy_no_workload_owns_is_removed_after_two_sweeps_and_an_owned_one_stays() -> None:
    """A copy made just before an apply that never came (the member went away, the workload was refused):
    nothing would ever own it, so the member's garbage collector would never remove it."""
    async def run() -> None:
        f = Fleet()
        f.hub.create(config_map("used", {"k": "v"}))
        await f.start()
        f.hub.create(uses_config("train", "used"))
        await deliver(f.hub, f.ctl)
        await two_rounds(f)
        left = config_map("left-behind", {"k": "v"}, labels={"app.kubernetes.io/managed-by": "tenbin",
                                                            "tenbin.io/dependency": "true"})
        await f.member.apply({**left, "metadata": {**left["metadata"]}})
        theirs = config_map("theirs", {"k": "v"})  # the member's own, unowned: never Tenbin's to remove
        await f.member.apply(theirs)
        await f.round(RESYNC)
        assert cm_ref("left-behind") in f.member.config, "removed at its first sighting (it may be in flight)"
        await f.round(RESYNC)
        await f.round(RESYNC)
        assert cm_ref("left-behind") not in f.member.config
        assert cm_ref("used") in f.member.config and cm_ref("theirs") in f.member.config

    asyncio.run(run())


def test_a_sooner_reconcile_does_not_cancel_the_next_comparison_with_the_hub() -> None:
    """The comparison is scheduled in the workload's retry slot; an earlier reconcile (an event, a nudge) that
    takes the slot must schedule it again (found by the e2e test, where other events came in between)."""
    async def run() -> None:
        f = Fleet()
        f.hub.create(config_map("train-config", {"lr": "0.1"}))
        await f.start()
        f.hub.create(uses_config("train", "train-config"))
        await deliver(f.hub, f.ctl)
        await two_rounds(f)
        key = f"{NS}/train"
        for _ in range(3):  # reconciles in between, each taking the slot before the comparison is due
            f.ctl.retry(key, 0.5)
            await f.round(0.5)
        f.hub.merge("ConfigMap", NS, "train-config", {"data": {"lr": "0.2"}})
        for _ in range(int(RESYNC) + 1):
            await f.round()
        assert f.member.config[cm_ref("train-config")]["data"] == {"lr": "0.2"}

    asyncio.run(run())


def test_a_copy_swept_away_just_before_it_is_owned_is_copied_again() -> None:
    """The orphan sweep may delete a left-over copy that a placement has just found current: the owner
    step then finds it gone (404) and copies it again before owning it."""
    from tenbin.services.dependencies import Dependency, DependencyReport, member_copy, own

    async def run() -> None:
        member = MemoryMember(MEMBER, [Node(f"{MEMBER}-n0", "NVIDIA-H100-80GB-HBM3", 8)], random.Random(0))
        dep = Dependency("ConfigMap", NS, "cfg")
        report = DependencyReport(MEMBER, copied=[dep], owners={dep: frozenset()},
                                  wanted={dep: member_copy(config_map("cfg", {"k": "v"}), dep)})
        owner = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train", "uid": "job-uid"}}
        await own(member, report, owner)
        got = member.config[cm_ref("cfg")]
        assert got["data"] == {"k": "v"} and [o["uid"] for o in got["metadata"]["ownerReferences"]] == ["job-uid"]
        assert not report.problems

    asyncio.run(run())


def test_a_workload_the_member_refuses_takes_its_fresh_copies_with_it() -> None:
    """The member does not serve the kind (and does not say so in discovery): the ConfigMap copied just
    before the refused apply is withdrawn at once, not left for the sweep (the random simulation found a
    pending workload re-tried on such a member keeping an unowned copy there for good)."""
    async def run() -> None:
        f = Fleet()
        f.member.served = f.member.served - {("batch/v1", "Job")}
        f.member.discovers = False  # only the refusal of the apply says it
        f.hub.create(config_map("train-config", {"lr": "0.1"}))
        await f.start()
        f.hub.create(uses_config("train", "train-config"))
        await deliver(f.hub, f.ctl)
        await f.round()
        assert cm_ref("train-config") in f.member.writes  # it was copied first ...
        assert Reason.KIND_NOT_SERVED in [e[2] for e in f.hub.events if e[0] == f"{NS}/train"]
        assert cm_ref("train-config") not in f.member.config  # ... and withdrawn with the refused Job
        assert not f.member.objects

    asyncio.run(run())
