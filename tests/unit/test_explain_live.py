"""`tenbin explain` against the real testbed: the operator placed the workload, the member holds (or not)
its pods' GPUs, and explain counts as free again only what the member shows bound."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from operator_harness import ROOT, OperatorProcess, aiw, apply, hub_json, workload
from tenbin.testbed.fleet import wait_until

CLUSTER, MODEL = "t-sovereign-jp", "H200-141GB"  # the only H200s of the fixture fleet (4)


def inventory(op: OperatorProcess) -> dict[str, Any]:
    c = hub_json(op.fleet, "gpucluster", CLUSTER)
    return next(g for g in (c.get("status") or {}).get("gpus") or [] if g["model"] == MODEL)


def explain(op: OperatorProcess, ns: str, name: str) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "tenbin", "explain", f"{ns}/{name}", "--kubeconfig",
                          str(op.fleet.kubeconfig("hub")), "-o", "json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def row(out: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in out["candidates"] if r["cluster"] == CLUSTER and r["model"] == MODEL)


def member_pods(op: OperatorProcess, ns: str) -> list[dict[str, Any]]:
    res = op.fleet.kubectl("get", "pods", "-n", ns, "-o", "json", cluster=CLUSTER, check=False)
    return list(json.loads(res.stdout)["items"]) if res.returncode == 0 else []


def test_pending_pods_are_not_counted_as_free_again(operator: OperatorProcess, ns: str) -> None:
    doc = workload("pending", gpus=4, models=[MODEL])
    # no scheduler serves this name: the pods stay Pending without an Unschedulable condition (no failover)
    doc["spec"]["template"]["spec"]["template"]["spec"]["schedulerName"] = "tenbin-test-nobody"
    apply(operator.fleet, ns, doc)
    wait_until("placed, pods pending in the member",
               lambda: ((aiw(operator.fleet, ns, "pending").get("status") or {}).get("placement") or {})
               .get("cluster") == CLUSTER and any(not p["spec"].get("nodeName") for p in member_pods(operator, ns)),
               timeout=90)
    inv = inventory(operator)
    out = explain(operator, ns, "pending")
    assert out["ownGPUsCountedFree"] == 0
    assert row(out)["free"] == inv["free"] <= inv["allocatable"]  # before the fix: free + 4 (8 of 4 GPUs)


def test_bound_pods_are_counted_as_free_again(operator: OperatorProcess, ns: str) -> None:
    apply(operator.fleet, ns, workload("bound", gpus=2, models=[MODEL], run_seconds=600))
    wait_until("Running, and the hub's inventory counts its GPUs",
               lambda: (aiw(operator.fleet, ns, "bound").get("status") or {}).get("phase") == "Running"
               and inventory(operator)["allocated"] >= 2, timeout=90)
    inv = inventory(operator)
    out = explain(operator, ns, "bound")
    assert out["ownGPUsCountedFree"] == 2
    assert row(out)["free"] == inv["free"] + 2 <= inv["allocatable"]
