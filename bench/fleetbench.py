"""The benchmark's fleet: members, hub objects, workload builder and the watchers that time placements."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubeapi import Api, ApiError

from tenbin.testbed.fleet import HUB, SYSTEM_NAMESPACE, Fleet, GPUSpec, MemberSpec

ROOT = Path(__file__).resolve().parents[1]
GROUP_PATH = "/apis/tenbin.io/v1alpha1"
MANAGED = "app.kubernetes.io%2Fmanaged-by%3Dtenbin"
PROBE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "probes.bench.tenbin.io"},
    "spec": {"group": "bench.tenbin.io", "scope": "Namespaced",
             "names": {"plural": "probes", "singular": "probe", "kind": "Probe"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}
# (tier, jurisdiction, price, currency) per member; every member offers H100-80GB
PROFILES = [("OnPrem", "JP", 300, "JPY"), ("SovereignCloud", "JP", 480, "JPY"), ("Hyperscaler", "US", 3.0, "USD"),
            ("Hyperscaler", "JP", 3.4, "USD"), ("SovereignCloud", "JP", 450, "JPY")]


def members(n: int, gpus: int, prefix: str = "b") -> list[MemberSpec]:
    out = []
    for i in range(n):
        tier, jur, _, _ = PROFILES[i % len(PROFILES)]
        out.append(MemberSpec(f"{prefix}{i:02d}-{tier.lower()}-{jur.lower()}", tier, jur,
                              (GPUSpec("H100-80GB", gpus, 80),)))
    return out


def gpucluster_docs(specs: list[MemberSpec]) -> list[dict[str, Any]]:
    docs = []
    for i, m in enumerate(specs):
        _, _, price, cur = PROFILES[i % len(PROFILES)]
        docs.append({
            "apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": m.name},
            "spec": {"tier": m.tier, "jurisdiction": m.jurisdiction,
                     "residencyLabels": ["jp-domestic-operator"] if m.jurisdiction == "JP" else [],
                     "gpus": [{"model": g.model, "count": g.count, "memoryGiB": g.memory_gib,
                               "pricePerGPUHour": price, "currency": cur} for g in m.gpus],
                     "connection": {"kubeconfigSecretRef": {"namespace": SYSTEM_NAMESPACE,
                                                            "name": f"{m.name}-kubeconfig", "key": "kubeconfig"}}},
        })
    return docs


def prepare_hub(fleet: Fleet, specs: list[MemberSpec]) -> None:
    """CRDs, the benchmark's probe CRD, the GPUClusters and the example default policy."""
    fleet.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    fleet.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(PROBE_CRD))
    fleet.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(gpucluster_docs(specs)))
    fleet.kubectl("apply", "-f", str(ROOT / "examples" / "policy" / "default.yaml"))


def workload(name: str, gpus: int = 1, run_seconds: int = 1800, suspend: bool = False) -> dict[str, Any]:
    """An AIWorkload whose Job pod holds its GPUs for run_seconds on KWOK (delay and jitter both pinned).

    suspend: the member Job is created suspended (no pods): placement without the member's pod machinery.
    """
    ann = {"pod-complete.stage.kwok.x-k8s.io/delay": f"{run_seconds}s",
           "pod-complete.stage.kwok.x-k8s.io/jitter-delay": f"{run_seconds}s"}
    pod = {"metadata": {"annotations": ann, "labels": {"app": name}},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "registry.example.com/train:1",
                                    "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload", "metadata": {"name": name},
            "spec": {"gpu": {"count": gpus}, "replicas": 1, "residency": {"dataClassification": "Internal"},
                     "template": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                                  "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 0,
                                           **({"suspend": True} if suspend else {}), "template": pod}}}}


def api_for(fleet: Fleet, cluster: str, limit: int = 64) -> Api:
    return Api(fleet.state.clusters[cluster].url, fleet.state.token, str(fleet.pki.ca_cert), limit)


@dataclass
class Tracker:
    """Client-side timestamps (monotonic, same clock) of every workload's milestones."""

    sent: dict[str, float] = field(default_factory=dict)  # POST of the AIWorkload sent
    created: dict[str, float] = field(default_factory=dict)  # POST answered
    in_member: dict[str, float] = field(default_factory=dict)  # the Job seen in a member (watch)
    member_of: dict[str, str] = field(default_factory=dict)
    placed: dict[str, float] = field(default_factory=dict)  # status.placement seen on the hub (watch)
    running: dict[str, float] = field(default_factory=dict)  # status.phase Running seen on the hub
    phase: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0

    def on_member(self, member: str) -> Callable[[str, dict[str, Any], float], None]:
        def handle(kind: str, obj: dict[str, Any], t: float) -> None:
            if kind not in ("ADDED", "EXISTING"):
                return
            m = obj.get("metadata") or {}
            key = f"{m.get('namespace')}/{m.get('name')}"
            if key in self.in_member:
                if self.member_of.get(key) != member:
                    self.duplicates += 1
                return
            self.in_member[key] = t
            self.member_of[key] = member
        return handle

    def on_hub(self, kind: str, obj: dict[str, Any], t: float) -> None:
        m = obj.get("metadata") or {}
        key = f"{m.get('namespace')}/{m.get('name')}"
        st = obj.get("status") or {}
        if (st.get("placement") or {}).get("cluster"):
            self.placed.setdefault(key, t)
        ph = st.get("phase")
        if ph:
            self.phase[key] = ph
            if ph == "Running":
                self.running.setdefault(key, t)


class Watchers:
    """List+watch of managed Jobs in every member and of AIWorkloads on the hub, for the whole run."""

    def __init__(self, fleet: Fleet, tracker: Tracker) -> None:
        self.fleet = fleet
        self.tracker = tracker
        self.apis: list[Api] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        readies = []
        for member in self.fleet.members:
            api = api_for(self.fleet, member, limit=4)
            self.apis.append(api)
            ev = asyncio.Event()
            readies.append(ev)
            self.tasks.append(asyncio.create_task(api.watch(f"/apis/batch/v1/jobs?labelSelector={MANAGED}",
                                                            self.tracker.on_member(member), ev)))
        hub = api_for(self.fleet, HUB, limit=4)
        self.apis.append(hub)
        ev = asyncio.Event()
        readies.append(ev)
        self.tasks.append(asyncio.create_task(hub.watch(f"{GROUP_PATH}/aiworkloads", self.tracker.on_hub, ev)))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), 60)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for a in self.apis:
            await a.close()


async def until(what: str, check: Callable[[], bool], timeout: float, poll: float = 0.05) -> float:
    """Await a condition; returns the time it took. Raises TimeoutError with `what`."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(poll)
    return time.monotonic() - t0


async def create_workloads(hub: Api, ns: str, names: list[str], tracker: Tracker, concurrency: int = 16,
                           rate: float | None = None, gpus: int = 1, suspend: bool = False) -> None:
    """Create AIWorkloads: as fast as `concurrency` allows, or open-loop at `rate` per second."""
    path = f"{GROUP_PATH}/namespaces/{ns}/aiworkloads"
    sem = asyncio.Semaphore(concurrency if rate is None else 256)

    async def one(name: str) -> None:
        async with sem:
            key = f"{ns}/{name}"
            tracker.sent[key] = time.monotonic()
            for attempt in range(5):
                try:
                    await hub.create(path, workload(name, gpus, suspend=suspend))
                    break
                except ApiError as e:
                    if e.status == 409 or attempt == 4:
                        raise
                    await asyncio.sleep(0.2)
            tracker.created[key] = time.monotonic()

    if rate is None:
        await asyncio.gather(*(one(n) for n in names))
        return
    t0 = time.monotonic()
    tasks = []
    for i, n in enumerate(names):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)


async def create_namespaces(hub: Api, names: list[str]) -> None:
    for n in names:
        with contextlib.suppress(ApiError):
            await hub.create("/api/v1/namespaces", {"metadata": {"name": n}})


async def gather_counts(fleet: Fleet) -> dict[str, dict[tuple[str, str], float]]:
    apis = {c: api_for(fleet, c, limit=2) for c in fleet.state.clusters}
    try:
        vals = await asyncio.gather(*(a.request_counts() for a in apis.values()))
        return dict(zip(apis, vals, strict=True))
    finally:
        for a in apis.values():
            await a.close()


def kubectl_quiet(fleet: Fleet, *args: str) -> None:
    with contextlib.suppress(subprocess.SubprocessError, Exception):
        fleet.kubectl(*args, check=False, timeout=60)


Step = Callable[[], Awaitable[None]]
