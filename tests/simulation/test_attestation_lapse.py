"""An attestation of the PlacementPolicy lapses, driven through the real `Controller` against the in-memory hub
and members: the GPUCluster it covers is warned once inside the warning window, and once it lapses the work
that needs the label moves to a cluster that still holds it (ResidencyDrift) — with no edit of anything."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

from world import CONFIG, NS, T0, FakeClock

from tenbin.api import ClusterReason
from tenbin.clusters.memory import MemoryHub, MemoryMember, Node
from tenbin.services.controller import Controller

DAY = 86_400.0
SAKURA, KDDI = "sakura-ishikari", "kddi-osaka"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def gpucluster(name: str, price: float) -> dict[str, Any]:
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": name},
            "spec": {"tier": "SovereignCloud", "provider": name.split("-")[0], "region": "r", "jurisdiction": "JP",
                     "residencyLabels": ["ismap"],  # its own claim: not enough once the policy attests ismap
                     "gpus": [{"model": "H100-80GB", "count": 8, "memoryGiB": 80, "pricePerGPUHour": price,
                               "currency": "JPY"}],
                     "connection": {"kubeconfigSecretRef": {"namespace": "tenbin-system", "name": name,
                                                            "key": "kubeconfig"}}}}


def test_a_lapsed_attestation_moves_the_work_that_needs_it_after_one_warning() -> None:
    async def run() -> None:
        clock = FakeClock()
        hub = MemoryHub(clock.time)
        members = {n: MemoryMember(n, [Node(f"{n}-n0", "NVIDIA-H100-80GB-HBM3", 8)], random.Random(0))
                   for n in (SAKURA, KDDI)}
        hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": "default"},
                    "spec": {"baseCurrency": "JPY", "attestationWarningDays": 1, "attestations": [
                        {"label": "ismap", "providers": ["sakura"], "validUntil": iso(T0 + 2 * DAY),
                         "evidence": "ISMAP C22-0042"},
                        {"label": "ismap", "clusters": [KDDI], "validUntil": iso(T0 + 365 * DAY)}]}})
        hub.create(gpucluster(SAKURA, 300.0))  # the cheaper one: chosen first
        hub.create(gpucluster(KDDI, 500.0))

        async def factory(name: str, _conn: Any) -> MemoryMember:
            return members[name]

        ctl = Controller(hub, factory, hub.post_event, config=CONFIG, clock=clock)

        async def rounds(n: int, step: float = CONFIG.resync_seconds) -> None:
            for _ in range(n):
                clock.advance(step)
                for m in members.values():
                    m.tick()
                for name in members:
                    await ctl.sync_cluster(name)
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

        await ctl.seed()
        hub.watch.clear()
        await rounds(2)
        pod = {"metadata": {"labels": {"app": "serve"}},
               "spec": {"containers": [{"name": "m", "image": "registry.example.com/serve:1",
                                        "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}
        hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload",
                    "metadata": {"name": "serve", "namespace": NS},
                    "spec": {"gpu": {"count": 1}, "residency": {"dataClassification": "Confidential",
                                                                 "requiredLabels": ["ismap"]},
                             "template": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "serve"},
                                          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "serve"}},
                                                   "template": pod}}}})
        await rounds(4)

        def where() -> tuple[str | None, str | None]:
            st = (hub.get("AIWorkload", NS, "serve") or {}).get("status") or {}
            return (st.get("placement") or {}).get("cluster"), st.get("phase")

        def said(reason: str) -> list[str]:
            return [e[3] for e in hub.events if e[0] == f"/{SAKURA}" and e[2] == reason]

        assert where() == (SAKURA, "Running")
        assert not said(ClusterReason.ATTESTATION_LAPSING)
        clock.advance(1.5 * DAY)  # inside the one-day window before the lapse
        await rounds(3)
        [warning] = said(ClusterReason.ATTESTATION_LAPSING)
        assert "ISMAP C22-0042" in warning and f"{NS}/serve" in warning
        assert where() == (SAKURA, "Running")  # not yet

        clock.advance(0.5 * DAY)
        await rounds(8)
        assert where() == (KDDI, "Running")
        [lapsed] = said(ClusterReason.ATTESTATION_LAPSED)
        assert f"{NS}/serve" in lapsed
        history = (hub.get("AIWorkload", NS, "serve") or {})["status"]["history"]
        assert [h.get("reason") for h in history if h["event"] == "Migrated"] == ["ResidencyDrift"]
        assert len(said(ClusterReason.ATTESTATION_LAPSING)) == 1  # once

    asyncio.run(run())
