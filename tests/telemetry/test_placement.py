"""End to end: real member apiservers + real Prometheus telemetry change where `tenbin simulate` places work.

Two JP members offer 8 H100 each; the on-prem one is cheaper and wins. When the DCGM exporter reports its
H100 node 100% utilized (busy outside Kubernetes' accounting), telemetry leaves it no free H100 and the same
workload goes to the sovereign cloud. The inventory is read from the members' own Nodes and Pods, the
telemetry from Prometheus, and the decision comes from the public `tenbin simulate` contract.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prom_server import Prom

from tenbin.inventory.model import ClusterInventory, inventory_from_objects
from tenbin.inventory.telemetry import PrometheusTelemetrySource, apply_telemetry
from tenbin.testbed.fleet import Fleet

ONPREM, SOVEREIGN = "t-onprem-jp", "t-sovereign-jp"
PRICES = {ONPREM: 300, SOVEREIGN: 480}

WORKLOAD = {
    "apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload",
    "metadata": {"name": "train", "namespace": "research"},
    "spec": {
        "gpu": {"count": 8, "models": ["H100-80GB"]},
        "residency": {"jurisdictions": ["JP"]},
        "template": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}},
    },
}


def member_inventory(fleet: Fleet, member: str) -> tuple[ClusterInventory, dict[str, int]]:
    nodes = json.loads(fleet.kubectl("get", "nodes", "-o", "json", cluster=member).stdout)["items"]
    pods = json.loads(fleet.kubectl("get", "pods", "-A", "-o", "json", cluster=member).stdout)["items"]
    gpu_nodes = {n["metadata"]["name"]: int(n["status"]["capacity"]["nvidia.com/gpu"]) for n in nodes
                 if "nvidia.com/gpu" in (n["status"].get("capacity") or {})}
    return inventory_from_objects(nodes, pods), gpu_nodes


def gpucluster(name: str, inv: ClusterInventory) -> dict[str, Any]:
    by_model = inv.by_model()
    return {
        "apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": name},
        "spec": {"tier": "OnPrem" if name == ONPREM else "SovereignCloud", "jurisdiction": "JP",
                 "gpus": [{"model": m, "count": mi.capacity, "memoryGiB": 80 if m.startswith("H100") else 141,
                           "pricePerGPUHour": PRICES[name], "currency": "JPY"} for m, mi in by_model.items()]},
        "status": {"phase": "Ready", "gpus": [
            {"model": m, "capacity": mi.capacity, "allocatable": mi.allocatable, "allocated": mi.allocated,
             "free": mi.free} for m, mi in by_model.items()]},
    }


def place(tmp: Path, invs: dict[str, ClusterInventory]) -> dict[str, Any]:
    tmp.mkdir()
    docs = [gpucluster(name, inv) for name, inv in invs.items()] + [WORKLOAD]
    (tmp / "inputs.yaml").write_text(yaml.safe_dump_all(docs))
    res = subprocess.run([sys.executable, "-m", "tenbin", "simulate", "-f", str(tmp), "-o", "json"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    (placement,) = json.loads(res.stdout)["placements"]
    return dict(placement)


def test_busy_node_reported_by_dcgm_moves_the_placement(prom: Prom, fleet: Fleet, tmp_path: Path) -> None:
    api: dict[str, ClusterInventory] = {}
    h100_node = ""
    total = 0
    for member in (ONPREM, SOVEREIGN):
        inv, gpu_nodes = member_inventory(fleet, member)
        api[member] = inv
        for node, count in gpu_nodes.items():
            prom.exporter.dcgm.add_node(node, count)
            total += count
            if member == ONPREM and "h100" in node:
                h100_node = node
    assert h100_node and api[ONPREM].free().get("H100-80GB", 0) >= 8
    prom.await_query("all GPUs scraped", "DCGM_FI_DEV_GPU_UTIL", lambda r: len(r) == total)

    source = PrometheusTelemetrySource(prom.url)
    idle = source.fetch()
    before = {m: apply_telemetry(inv, idle, time.time()) for m, inv in api.items()}
    assert place(tmp_path / "before", before)["cluster"] == ONPREM  # cheaper, same availability

    prom.exporter.dcgm.set(h100_node, util=100, fb_used=60000, fb_free=21000)
    prom.await_query("busy node scraped", f'min(DCGM_FI_DEV_GPU_UTIL{{Hostname="{h100_node}"}})',
                     lambda r: r and float(r[0]["value"][1]) == 100)
    busy = source.fetch()
    after = {m: apply_telemetry(inv, busy, time.time()) for m, inv in api.items()}
    assert after[ONPREM].free().get("H100-80GB", 0) == api[ONPREM].free()["H100-80GB"] - 8
    assert after[SOVEREIGN].free() == api[SOVEREIGN].free()
    moved = place(tmp_path / "after", after)
    assert moved["cluster"] == SOVEREIGN, moved
    assert moved["gpuModel"] == "H100-80GB"
