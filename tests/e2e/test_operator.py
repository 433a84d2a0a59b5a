"""The operator end to end on the testbed fleet: real hub, real members, the real `tenbin run` process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from typing import Any

from operator_harness import ROOT, OperatorProcess, aiw, apply, bring_member_back, hub_json, workload
from tenbin.testbed.fleet import Fleet, load_fleet, wait_until

SPECS = {m.name: m for m in load_fleet([ROOT / "tests" / "fixtures" / "fleet"])}
JP_COMPLIANT = {n for n, m in SPECS.items() if m.jurisdiction == "JP" and m.tier in ("OnPrem", "SovereignCloud")}
CAPACITY = {(n, g.model): g.count for n, m in SPECS.items() for g in m.gpus}


def member_jobs(fleet: Fleet, member: str, ns: str) -> list[dict[str, Any]]:
    res = fleet.kubectl("get", "jobs", "-n", ns, "-l", "app.kubernetes.io/managed-by=tenbin", "-o", "json",
                        cluster=member, check=False)
    if res.returncode != 0:
        return []
    return list(json.loads(res.stdout)["items"])


def phases(fleet: Fleet, ns: str) -> dict[str, dict[str, Any]]:
    return {w["metadata"]["name"]: w for w in hub_json(fleet, "aiworkloads", "-n", ns)["items"]}


def test_confidential_jp_workload_runs_on_a_compliant_member(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    apply(fleet, ns, workload("finetune", gpus=4, classification="Confidential", jurisdictions=["JP"],
                              run_seconds=4))
    wait_until("Succeeded", lambda: aiw(fleet, ns, "finetune").get("status", {}).get("phase") == "Succeeded",
               timeout=90)
    status = aiw(fleet, ns, "finetune")["status"]
    cluster = status["placement"]["cluster"]
    assert cluster in JP_COMPLIANT
    assert status["placement"]["jurisdiction"] == "JP" and status["placement"]["gpus"] == 4
    job = member_jobs(fleet, cluster, ns)
    assert [j["metadata"]["name"] for j in job] == ["finetune"]
    assert job[0]["status"].get("succeeded") == 1
    assert [h["event"] for h in status["history"]] == ["Scheduled", "Running", "Succeeded"]
    for other in SPECS:
        if other != cluster:
            assert member_jobs(fleet, other, ns) == []
    events = hub_json(fleet, "events", "-n", ns, "--field-selector", "involvedObject.name=finetune")["items"]
    assert {"Scheduled", "Running", "Succeeded"} <= {e["reason"] for e in events}


def _assert_no_overcommit(fleet: Fleet, ns: str, items: dict[str, dict[str, Any]]) -> dict[tuple[str, str], int]:
    used: dict[tuple[str, str], int] = {}
    for w in items.values():
        p = (w.get("status") or {}).get("placement")
        if p:
            k = (p["cluster"], p["gpuModel"])
            used[k] = used.get(k, 0) + p["gpus"]
    for k, n in used.items():
        assert n <= CAPACITY[k], f"{k}: {n} GPUs placed > capacity {CAPACITY[k]}"
    return used


def test_burst_of_50_never_overcommits_and_places_everything_that_fits(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    sizes = [1, 2, 3, 4, 8]
    docs = [workload(f"burst-{i:02d}", gpus=sizes[i % len(sizes)], run_seconds=600) for i in range(50)]
    apply(fleet, ns, *docs)

    def settled() -> bool:
        items = phases(fleet, ns)
        return len(items) == 50 and all(
            (w.get("status") or {}).get("phase") in ("Running", "Unschedulable") for w in items.values())

    wait_until("50 workloads Running or Unschedulable", settled, timeout=180)
    items = phases(fleet, ns)
    _assert_no_overcommit(fleet, ns, items)
    placed = [w for w in items.values() if w["status"]["phase"] == "Running"]
    assert placed, "nothing was placed"
    # every workload left out really fits nowhere: no member node of an acceptable model has its GPUs free
    node_free = {member: _node_free(fleet, member) for member in SPECS}
    for w in items.values():
        if w["status"]["phase"] == "Unschedulable":
            need = w["spec"]["gpu"]["count"]
            assert all(f < need for frees in node_free.values() for f in frees.values()), (
                w["metadata"]["name"], need, node_free, w["status"].get("message"))
    # the members agree: every placed Job has all its pods running (none Pending for lack of GPUs)
    for member in SPECS:
        for job in member_jobs(fleet, member, ns):
            assert job["status"].get("active", 0) == job["spec"]["parallelism"], job["metadata"]["name"]


def _node_free(fleet: Fleet, member: str) -> dict[str, int]:
    """Free GPUs per node, as the member's own objects say: allocatable minus GPUs of running pods."""
    nodes = json.loads(fleet.kubectl("get", "nodes", "-o", "json", cluster=member).stdout)["items"]
    pods = json.loads(fleet.kubectl("get", "pods", "-A", "-o", "json", cluster=member).stdout)["items"]
    free = {n["metadata"]["name"]: int(n["status"]["allocatable"].get("nvidia.com/gpu", 0)) for n in nodes}
    for p in pods:
        if p["spec"].get("nodeName") in free and p["status"].get("phase") not in ("Succeeded", "Failed"):
            for c in p["spec"]["containers"]:
                free[p["spec"]["nodeName"]] -= int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
    return free


def test_deleting_an_aiworkload_deletes_its_member_object(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    apply(fleet, ns, workload("short-lived", gpus=1, run_seconds=600))
    wait_until("Running", lambda: aiw(fleet, ns, "short-lived").get("status", {}).get("phase") == "Running",
               timeout=60)
    cluster = aiw(fleet, ns, "short-lived")["status"]["placement"]["cluster"]
    assert [j["metadata"]["name"] for j in member_jobs(fleet, cluster, ns)] == ["short-lived"]
    fleet.kubectl("delete", "aiworkload", "-n", ns, "short-lived", "--timeout=60s")
    wait_until("member Job deleted", lambda: member_jobs(fleet, cluster, ns) == [], timeout=30)


def test_kill_mid_burst_and_restart_loses_nothing_and_duplicates_nothing(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    apply(fleet, ns, *(workload(f"crash-{i:02d}", gpus=1, run_seconds=600) for i in range(20)))
    wait_until("first placement", lambda: any(
        (w.get("status") or {}).get("placement") for w in phases(fleet, ns).values()), timeout=60)
    operator.stop(signal.SIGKILL)
    placed_before = sum(1 for w in phases(fleet, ns).values() if (w.get("status") or {}).get("placement"))
    operator.start()
    wait_until("all 20 Running", lambda: sum(
        1 for w in phases(fleet, ns).values() if (w.get("status") or {}).get("phase") == "Running") == 20,
        timeout=120)
    items = phases(fleet, ns)
    copies: dict[str, list[str]] = {}
    for member in SPECS:
        for job in member_jobs(fleet, member, ns):
            copies.setdefault(job["metadata"]["labels"]["tenbin.io/workload-uid"], []).append(member)
    for w in items.values():
        where = copies.get(w["metadata"]["uid"], [])
        assert where == [w["status"]["placement"]["cluster"]], (w["metadata"]["name"], where)
    _assert_no_overcommit(fleet, ns, items)
    assert 1 <= placed_before <= 20


def test_invalid_spec_gets_a_condition_and_an_event_and_others_still_run(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    bad = workload("bad-gpus", gpus=2)
    bad["spec"]["template"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 4
    apply(fleet, ns, bad, workload("good", gpus=1, run_seconds=600))

    def valid_false() -> bool:
        conds = aiw(fleet, ns, "bad-gpus").get("status", {}).get("conditions", [])
        return any(c["type"] == "Valid" and c["status"] == "False" for c in conds)

    wait_until("Valid=False", valid_false, timeout=60)
    wait_until("good Running", lambda: aiw(fleet, ns, "good").get("status", {}).get("phase") == "Running", timeout=60)
    status = aiw(fleet, ns, "bad-gpus")["status"]
    cond = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert "spec.template.spec.template.spec.containers" in cond["message"] and "spec.gpu.count is 2" in cond["message"]
    assert "placement" not in status
    # a new watch event for it (a label) and several resync rounds later: still one event, no writes
    fleet.kubectl("label", "aiworkload", "-n", ns, "bad-gpus", "touched=yes")
    rv = aiw(fleet, ns, "bad-gpus")["metadata"]["resourceVersion"]
    _await_resyncs(operator, 3)
    events = hub_json(fleet, "events", "-n", ns, "--field-selector", "involvedObject.name=bad-gpus")["items"]
    invalid = [e for e in events if e["reason"] == "InvalidSpec"]
    assert len(invalid) == 1 and invalid[0].get("count", 1) == 1
    assert "spec.template" in invalid[0]["message"]
    assert aiw(fleet, ns, "bad-gpus")["metadata"]["resourceVersion"] == rv


def _syncs(operator: OperatorProcess, cluster: str) -> float:
    m = re.search(rf'tenbin_member_syncs_total{{cluster="{cluster}",result="ok"}} ([0-9.]+)', operator.metrics())
    return float(m.group(1)) if m else 0.0


def _await_resyncs(operator: OperatorProcess, rounds: int) -> None:
    """Wait until the operator has observed every member `rounds` more times (its own progress, not a sleep)."""
    start = {c: _syncs(operator, c) for c in SPECS}
    wait_until(f"{rounds} more resync rounds", lambda: all(
        _syncs(operator, c) >= start[c] + rounds for c in SPECS), timeout=60)


def test_member_outage_turns_cluster_notready_and_new_work_avoids_it(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    victim = "t-onprem-jp"  # the cheapest JP member: a Confidential JP workload would go there
    fleet.stop(f"{victim}-kube-apiserver")
    try:
        def not_ready() -> bool:
            return hub_json(fleet, "gpucluster", victim).get("status", {}).get("phase") == "NotReady"

        t0 = time.monotonic()
        wait_until(f"{victim} NotReady", not_ready, timeout=30)
        took = time.monotonic() - t0
        cluster = hub_json(fleet, "gpucluster", victim)
        ready = next(c for c in cluster["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False" and ready["reason"] == "Unreachable"
        assert ready["observedGeneration"] == cluster["metadata"]["generation"]  # it judges this spec
        assert took < 20
        apply(fleet, ns, workload("avoid", gpus=2, classification="Confidential", jurisdictions=["JP"],
                                  run_seconds=600))
        wait_until("placed", lambda: (aiw(fleet, ns, "avoid").get("status") or {}).get("placement"), timeout=60)
        placement = aiw(fleet, ns, "avoid")["status"]["placement"]
        assert placement["cluster"] != victim and placement["cluster"] in JP_COMPLIANT
    finally:
        bring_member_back(fleet, victim)
        wait_until(f"{victim} Ready again", lambda: hub_json(fleet, "gpucluster", victim)
                   .get("status", {}).get("phase") == "Ready", timeout=60)


def test_deleting_while_member_is_down_finishes_with_a_warning(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    # policy Never: the outage does not move it away, so deletion meets the unreachable member
    apply(fleet, ns, workload("stranded", gpus=1, jurisdictions=["US"], run_seconds=600,
                              migration={"policy": "Never"}))
    wait_until("Running", lambda: aiw(fleet, ns, "stranded").get("status", {}).get("phase") == "Running", timeout=60)
    member = aiw(fleet, ns, "stranded")["status"]["placement"]["cluster"]
    assert member == "t-hyperscaler-us"
    fleet.stop(f"{member}-kube-apiserver")
    try:
        fleet.kubectl("delete", "aiworkload", "-n", ns, "stranded", "--wait=false")
        wait_until("AIWorkload gone", lambda: not hub_json(fleet, "aiworkloads", "-n", ns)["items"], timeout=60)
        events = hub_json(fleet, "events", "-n", ns, "--field-selector", "involvedObject.name=stranded")["items"]
        assert any(e["reason"] == "MemberUnreachable" and e["type"] == "Warning" for e in events)
    finally:
        bring_member_back(fleet, member)
    # the member comes back: its stale copy is removed by the operator
    wait_until("stale copy removed", lambda: member_jobs(fleet, member, ns) == [], timeout=60)


def test_metrics_are_served(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    apply(fleet, ns, workload("metered", gpus=1, run_seconds=600))
    wait_until("Running", lambda: aiw(fleet, ns, "metered").get("status", {}).get("phase") == "Running", timeout=60)
    text = operator.metrics()
    assert 'tenbin_placements_total{reason="fit",result="placed"}' in text
    assert "tenbin_placement_latency_seconds_bucket" in text
    for member in SPECS:
        assert f'tenbin_free_gpus{{cluster="{member}"' in text
    assert f'tenbin_estimated_cost_per_hour{{currency="JPY",namespace="{ns}"}}' in text


def test_explain_shows_every_candidate_with_scores_and_reasons(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    apply(fleet, ns, workload("explained", gpus=2, classification="Confidential", jurisdictions=["JP"],
                              run_seconds=600))
    wait_until("Running", lambda: aiw(fleet, ns, "explained").get("status", {}).get("phase") == "Running",
               timeout=60)
    placed = aiw(fleet, ns, "explained")["status"]["placement"]
    run = [sys.executable, "-m", "tenbin", "explain", f"{ns}/explained", "--kubeconfig", str(fleet.kubeconfig("hub"))]
    out = subprocess.run([*run, "-o", "json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)["candidates"]
    assert {(r["cluster"], r["model"]) for r in rows} == set(CAPACITY)
    chosen = [r for r in rows if r["chosen"]]
    assert [(r["cluster"], r["model"]) for r in chosen] == [(placed["cluster"], placed["gpuModel"])]
    assert set(chosen[0]["breakdown"]) == {"price", "availability"}
    us = next(r for r in rows if r["cluster"] == "t-hyperscaler-us")
    assert not us["feasible"] and any("jurisdiction US not in [JP]" in x for x in us["reasons"])
    table = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert "WHY NOT" in table and "t-hyperscaler-us" in table and "Traceback" not in table
    missing = subprocess.run([*run[:4], f"{ns}/nope", *run[5:]], capture_output=True, text=True)
    assert missing.returncode == 1 and "404" in missing.stderr and "Traceback" not in missing.stderr
