"""A small fleet in memory for tests that drive the real `Controller` through several members: the hub, one
`MemoryMember` per GPUCluster, and rounds in which the clock moves, the members' controllers run, the
operator observes every member and handles what the hub's watch delivered."""

from __future__ import annotations

import random
from typing import Any

from test_races import deliver
from world import CONFIG, FakeClock

from tenbin.clusters.memory import MemoryHub, MemoryMember, Node
from tenbin.services.controller import Controller
from tenbin.services.settings import Config


def gpucluster(name: str, price: float, currency: str = "JPY", tier: str = "SovereignCloud",
               residency_labels: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": name},
            "spec": {"tier": tier, "provider": name.split("-")[0], "region": "r", "jurisdiction": "JP",
                     "residencyLabels": list(residency_labels),
                     "gpus": [{"model": "H100-80GB", "count": 8, "memoryGiB": 80, "pricePerGPUHour": price,
                               "currency": currency}],
                     "connection": {"kubeconfigSecretRef": {"namespace": "tenbin-system", "name": name,
                                                            "key": "kubeconfig"}}}}


class Fleet:
    def __init__(self, policy_spec: dict[str, Any], clusters: list[dict[str, Any]], config: Config = CONFIG) -> None:
        self.clock = FakeClock()
        self.hub = MemoryHub(self.clock.time)
        self.hub.create({"apiVersion": "tenbin.io/v1alpha1", "kind": "PlacementPolicy",
                         "metadata": {"name": "default"}, "spec": policy_spec})
        self.members: dict[str, MemoryMember] = {}
        for c in clusters:
            name = c["metadata"]["name"]
            self.members[name] = MemoryMember(name, [Node(f"{name}-n0", "NVIDIA-H100-80GB-HBM3", 8)],
                                              random.Random(0))
            self.hub.create(c)

        async def factory(name: str, _conn: Any) -> MemoryMember:
            return self.members[name]

        self.ctl = Controller(self.hub, factory, self.hub.post_event, config=config, clock=self.clock)

    async def start(self) -> None:
        await self.ctl.seed()
        self.hub.watch.clear()
        await self.rounds(2)

    async def deliver(self) -> None:
        await deliver(self.hub, self.ctl)

    async def rounds(self, n: int, step: float = CONFIG.resync_seconds) -> None:
        for _ in range(n):
            self.clock.advance(step)
            for m in self.members.values():
                m.tick()
            for name in self.members:
                await self.ctl.sync_cluster(name)
            await self.deliver()

    def status(self, ns: str, name: str) -> dict[str, Any]:
        return dict((self.hub.get("AIWorkload", ns, name) or {}).get("status") or {})


def deployment_workload(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    pod = {"metadata": {"labels": {"app": name}},
           "spec": {"containers": [{"name": "m", "image": "registry.example.com/serve:1",
                                    "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload", "metadata": {"name": name, "namespace": ns},
            "spec": {"gpu": {"count": 1}, **spec,
                     "template": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                                           "template": pod}}}}
