"""The fault classes a live audit found (issue 12), each against the real testbed fleet and `tenbin run`."""

from __future__ import annotations

import json
from typing import Any

from operator_harness import OperatorProcess, aiw, apply, hub_json, workload
from tenbin.testbed.fleet import Fleet, wait_until

US = "t-hyperscaler-us"  # two nodes of 8 H100 each
HOLD = "test.tenbin.io/hold"


def member_pods(fleet: Fleet, member: str, ns: str) -> list[dict[str, Any]]:
    res = fleet.kubectl("get", "pods", "-n", ns, "-o", "json", cluster=member, check=False)
    return list(json.loads(res.stdout)["items"]) if res.returncode == 0 else []


def events(fleet: Fleet, ns: str, name: str) -> list[dict[str, Any]]:
    return list(hub_json(fleet, "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"])


def phase(fleet: Fleet, ns: str, name: str) -> str | None:
    return (aiw(fleet, ns, name).get("status") or {}).get("phase")


def _held_spread(name: str) -> dict[str, Any]:
    """A 1-GPU Job on the US member whose pod waits behind a scheduling gate (placed, not bound) and, once
    released, must go to a node no other held pod is on: the member's scheduler spreads them."""
    doc = workload(name, gpus=1, jurisdictions=["US"], run_seconds=600)
    pod = doc["spec"]["template"]["spec"]["template"]
    pod["metadata"]["labels"]["spread"] = "yes"
    pod["spec"]["schedulingGates"] = [{"name": HOLD}]
    pod["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"spread": "yes"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    return doc


def test_a_whole_node_pod_is_never_promised_where_pending_pods_may_take_every_node(
        operator: OperatorProcess, ns: str) -> None:
    """Class 1: two 1-GPU pods placed but not bound may be spread over both 8-GPU nodes; an 8-GPU pod
    promised meanwhile would then fit nowhere. It must wait instead, and every placed pod must bind."""
    fleet = operator.fleet
    apply(fleet, ns, _held_spread("small-a"), _held_spread("small-b"))
    wait_until("both small pods created and gated in the member", lambda: sum(
        1 for p in member_pods(fleet, US, ns) if p["spec"].get("schedulingGates")) == 2, timeout=60)
    assert {aiw(fleet, ns, n)["status"]["placement"]["cluster"] for n in ("small-a", "small-b")} == {US}

    apply(fleet, ns, workload("whole-node", gpus=8, jurisdictions=["US"], run_seconds=600))
    wait_until("whole-node decided", lambda: phase(fleet, ns, "whole-node") in ("Unschedulable", "Scheduled",
                                                                                   "Running"), timeout=60)
    # release the gates: the member's scheduler binds the small pods, one per node
    for p in member_pods(fleet, US, ns):
        if p["spec"].get("schedulingGates"):
            fleet.kubectl("patch", "pod", "-n", ns, p["metadata"]["name"], "--type=json",
                          "-p", '[{"op": "remove", "path": "/spec/schedulingGates"}]', cluster=US)

    def settled() -> bool:
        return all(phase(fleet, ns, n) == "Running" for n in ("small-a", "small-b")) and \
            phase(fleet, ns, "whole-node") in ("Running", "Unschedulable")

    wait_until("small pods Running and the whole-node pod settled", settled, timeout=90)
    pods = member_pods(fleet, US, ns)
    unbound = [p["metadata"]["name"] for p in pods if not p["spec"].get("nodeName")]
    assert unbound == [], f"pods placed by Tenbin but Pending in the member: {unbound}"
    nodes = {p["spec"]["nodeName"] for p in pods if p["metadata"]["labels"].get("spread") == "yes"}
    assert len(nodes) == 2  # the adversarial spread really happened
    whole = aiw(fleet, ns, "whole-node")["status"]
    assert whole["phase"] == "Unschedulable" and not whole.get("placement"), whole
    assert f"{US} has 14 free H100-80GB but room for 0 pod(s) of 8 GPUs" in whole["message"], whole["message"]


ONPREM = "t-onprem-jp"  # one node of 8 H100


def _onprem(name: str, gpus: int, replicas: int) -> dict[str, Any]:
    return workload(name, gpus=gpus, replicas=replicas, classification="Confidential", jurisdictions=["JP"],
                    tiers=["OnPrem"], kind="Deployment")


def _condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def test_a_changed_request_is_rechecked_and_reserved_again(operator: OperatorProcess, ns: str) -> None:
    """Class 6: a larger `replicas` is re-reserved (placement.gpus follows) and re-checked against the nodes."""
    fleet = operator.fleet
    apply(fleet, ns, _onprem("grow", gpus=2, replicas=1))
    wait_until("grow Running on-prem", lambda: phase(fleet, ns, "grow") == "Running", timeout=60)
    assert aiw(fleet, ns, "grow")["status"]["placement"]["cluster"] == ONPREM

    apply(fleet, ns, _onprem("grow", gpus=2, replicas=3))  # 6 of the node's 8 GPUs
    generation = aiw(fleet, ns, "grow")["metadata"]["generation"]
    wait_until("the new generation observed", lambda: aiw(fleet, ns, "grow")["status"].get(
        "observedGeneration") == generation, timeout=60)
    grown = aiw(fleet, ns, "grow")
    assert grown["status"]["placement"]["gpus"] == 6
    assert _condition(grown, "PlacementConflict")["reason"] == "Fits"
    wait_until("3 replicas ready", lambda: phase(fleet, ns, "grow") == "Running" and len(
        [p for p in member_pods(fleet, ONPREM, ns) if p["spec"].get("nodeName")]) == 3, timeout=60)

    apply(fleet, ns, _onprem("grow", gpus=2, replicas=5))  # 10 GPUs on a node of 8
    generation = aiw(fleet, ns, "grow")["metadata"]["generation"]
    wait_until("the next generation observed", lambda: aiw(fleet, ns, "grow")["status"].get(
        "observedGeneration") == generation, timeout=60)
    too_big = aiw(fleet, ns, "grow")
    assert too_big["status"]["placement"]["gpus"] == 10
    cond = _condition(too_big, "PlacementConflict")
    assert (cond["status"], cond["reason"]) == ("True", "InsufficientCapacity"), cond
    assert "room for 1 more pod(s) of 2 H100-80GB GPUs on its nodes, 2 needed" in cond["message"], cond
    assert cond["observedGeneration"] == generation
