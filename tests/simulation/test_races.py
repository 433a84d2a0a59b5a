"""Interleavings the random simulation reaches only by luck, pinned down one by one.

Each test builds a hub and members in memory, drives the real `Controller` to a state, and then runs two
of its activities in a chosen order (one inside an await of the other), as the event loop can.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from world import CONFIG, NS, FakeClock

from tenbin.clusters.gateway import UID_LABEL
from tenbin.clusters.memory import RUN_ANNOTATION, MemoryHub, MemoryMember, Node
from tenbin.services.controller import Controller

MEMBER = "m0-onprem-jp"


def fleet() -> tuple[MemoryHub, MemoryMember, Controller, FakeClock]:
    clock = FakeClock()
    hub = MemoryHub(clock.time)
    member = MemoryMember(MEMBER, [Node(f"{MEMBER}-n0", "NVIDIA-H100-80GB-HBM3", 8)], random.Random(0))
    hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": "default"},
                "spec": {"baseCurrency": "JPY"}})
    hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": MEMBER},
                "spec": {"tier": "OnPrem", "provider": "sim", "region": "r", "jurisdiction": "JP",
                         "gpus": [{"model": "H100-80GB", "count": 8, "memoryGiB": 80, "pricePerGPUHour": 400.0,
                                   "currency": "JPY"}],
                         "connection": {"kubeconfigSecretRef": {"namespace": "tenbin-system", "name": MEMBER,
                                                                "key": "kubeconfig"}}}})

    async def factory(name: str, _conn: Any) -> MemoryMember:
        return member

    ctl = Controller(hub, factory, hub.post_event, config=CONFIG, clock=clock)
    return hub, member, ctl, clock


def job(name: str, gpus: int) -> dict[str, Any]:
    pod = {"metadata": {"annotations": {RUN_ANNOTATION: "1000"}},
           "spec": {"restartPolicy": "Never", "containers": [
               {"name": "main", "image": "registry.example.com/x:1",
                "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload", "metadata": {"name": name, "namespace": NS},
            "spec": {"gpu": {"count": gpus}, "residency": {"dataClassification": "Confidential"},
                     "template": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                                  "spec": {"backoffLimit": 0, "template": pod}}}}


async def deliver(hub: MemoryHub, ctl: Controller) -> None:
    while hub.watch:
        ev = hub.watch.pop(0)
        if ev.kind == "AIWorkload":
            key = ctl.observe_workload(ev.body, deleted=ev.type == "DELETED")
            if ev.type != "DELETED":
                await ctl.reconcile(key)
        elif ev.kind == "GPUCluster":
            ctl.observe_cluster(ev.body, deleted=ev.type == "DELETED")
        elif ev.kind == "PlacementPolicy":
            ctl.observe_policy(ev.body, deleted=ev.type == "DELETED")


async def round_(hub: MemoryHub, member: MemoryMember, ctl: Controller, clock: FakeClock) -> None:
    clock.advance(CONFIG.resync_seconds)
    member.tick()
    await ctl.sync_cluster(MEMBER)
    await deliver(hub, ctl)


def copies(member: MemoryMember, uid: str) -> list[dict[str, Any]]:
    return [o for o in member.objects.values() if (o["metadata"].get("labels") or {}).get(UID_LABEL) == uid]


def test_a_copy_adopted_by_a_placement_during_an_observation_is_not_removed_as_stale() -> None:
    """A member comes back with the copies of two workloads that, meanwhile, lost their placement (they
    were lost with the member). The operator's round over the member removes both copies as stale; if,
    while it removes the first, a placement onto that same member adopts the second, the round must not
    delete that one: the workload would run a second time, its status saying Running over a copy that is
    being deleted."""
    async def run() -> None:
        hub, member, ctl, clock = fleet()
        await ctl.seed()
        hub.watch.clear()
        hub.create(job("generic", 2))
        hub.create(job("secret", 2))
        await deliver(hub, ctl)
        for _ in range(5):
            await round_(hub, member, ctl, clock)
        uids = {}
        for name in ("generic", "secret"):
            body = hub.get("AIWorkload", NS, name)
            assert body is not None and body["status"]["phase"] == "Running", body.get("status")
            uids[name] = body["metadata"]["uid"]
            # as the migrator leaves a workload lost with its member: no placement, its copy still there
            await hub.patch_status("AIWorkload", NS, name, {"status": {
                "phase": "Unschedulable", "placement": None, "message": "lost with its member"}})
        for event in hub.watch:
            ctl.observe_workload(event.body)  # the operator knows; `secret` is placed in the round below
        hub.watch.clear()
        real_delete = member.delete
        placed = []

        async def delete(ref: Any) -> bool:
            gone = await real_delete(ref)
            if not placed:  # the round is removing its first stale copy: meanwhile, `secret` is placed
                placed.append(ref.name)
                await ctl.reconcile(f"{NS}/secret")
            return gone

        member.delete = delete  # type: ignore[method-assign]
        await ctl.sync_cluster(MEMBER)
        member.delete = real_delete  # type: ignore[method-assign]
        assert placed == ["generic"]
        await deliver(hub, ctl)
        assert hub.get("AIWorkload", NS, "secret")["status"]["placement"]["cluster"] == MEMBER
        left = copies(member, uids["secret"])
        assert len(left) == 1 and not left[0]["metadata"].get("deletionTimestamp"), left
        assert [c["metadata"].get("deletionTimestamp") for c in copies(member, uids["generic"])] == ["deleting"]

    asyncio.run(run())


def test_a_copy_being_deleted_is_not_taken_for_the_running_work() -> None:
    """The same member return, the other order: the round deletes the stale copy first (foreground: it
    stays, marked, while its pods go), then the workload is placed on that member again; its apply waits
    for the old copy to go. Until a new copy exists, the status must not say Running because the old one's
    pods still show ready, and once the old copy is gone, the new one is applied: exactly one copy runs."""
    async def run() -> None:
        hub, member, ctl, clock = fleet()
        await ctl.seed()
        hub.watch.clear()
        hub.create(job("secret", 2))
        await deliver(hub, ctl)
        for _ in range(5):
            await round_(hub, member, ctl, clock)
        uid = hub.get("AIWorkload", NS, "secret")["metadata"]["uid"]
        await hub.patch_status("AIWorkload", NS, "secret", {"status": {
            "phase": "Unschedulable", "placement": None, "message": "lost with its member"}})
        for event in hub.watch:
            ctl.observe_workload(event.body)
        hub.watch.clear()
        clock.advance(CONFIG.resync_seconds)
        await ctl.sync_cluster(MEMBER)  # the round removes the stale copy: marked, still there
        [old] = copies(member, uid)
        assert old["metadata"].get("deletionTimestamp")
        await ctl.reconcile(f"{NS}/secret")  # placed there again; its apply waits for the old copy to go
        await deliver(hub, ctl)
        st = hub.get("AIWorkload", NS, "secret")["status"]
        assert st["placement"]["cluster"] == MEMBER and st["phase"] == "Scheduled", st
        clock.advance(CONFIG.resync_seconds)
        await ctl.sync_cluster(MEMBER)  # observes the old copy, still being deleted, its pods still ready
        await deliver(hub, ctl)
        assert hub.get("AIWorkload", NS, "secret")["status"]["phase"] == "Scheduled"
        for _ in range(40):
            await round_(hub, member, ctl, clock)
            st = hub.get("AIWorkload", NS, "secret")["status"]
            left = copies(member, uid)
            if st["phase"] == "Running":
                assert len(left) == 1 and not left[0]["metadata"].get("deletionTimestamp"), left
                break
        else:
            raise AssertionError(f"never Running again: {st}")

    asyncio.run(run())
