"""The running operator reads real Prometheus telemetry: a busy node moves a placement; stale metrics fall back.

The on-prem member (cheapest) gets `spec.telemetry.prometheus` pointing at a real Prometheus that scrapes a
DCGM-style exporter. When the exporter reports its only H100 node 100% utilized, the operator's inventory
shows no free H100 there and a cheapest-first workload lands on the sovereign cloud; the GPUCluster says
TelemetryAvailable=True. When the exporter goes away the samples go stale: the condition turns False,
the API inventory stands again, and the next workload lands on-prem.
"""

from __future__ import annotations

import json
from typing import Any

from prom_server import Prom

from operator_harness import OperatorProcess, aiw, apply, hub_json, workload
from tenbin.testbed.fleet import Fleet, wait_until

ONPREM, SOVEREIGN = "t-onprem-jp", "t-sovereign-jp"


def _cheapest_jp(name: str) -> dict[str, Any]:
    doc = workload(name, gpus=2, tiers=["OnPrem", "SovereignCloud"], models=["H100-80GB"], run_seconds=600)
    doc["spec"]["placement"] = {"weights": {"price": 1}}
    return doc


def _condition(fleet: Fleet, cluster: str) -> dict[str, Any]:
    conds = hub_json(fleet, "gpucluster", cluster).get("status", {}).get("conditions", [])
    return next((c for c in conds if c["type"] == "TelemetryAvailable"), {})


def _placed_on(fleet: Fleet, ns: str, name: str) -> str | None:
    st = aiw(fleet, ns, name).get("status") or {}
    return (st.get("placement") or {}).get("cluster") if st.get("phase") == "Running" else None


def test_busy_gpus_move_placement_and_stale_metrics_fall_back(operator: OperatorProcess, ns: str,
                                                               prom: Prom) -> None:
    fleet = operator.fleet
    nodes = json.loads(fleet.kubectl("get", "nodes", "-o", "json", cluster=ONPREM).stdout)["items"]
    for n in nodes:
        prom.exporter.dcgm.add_node(n["metadata"]["name"], gpus=8, util=100.0, fb_used=70000.0, fb_free=11000.0)
    patch = {"spec": {"telemetry": {"prometheus": {"url": prom.url, "maxAgeSeconds": 5}}}}
    fleet.kubectl("patch", "gpucluster", ONPREM, "--type=merge", "-p", json.dumps(patch))
    try:
        wait_until("telemetry fresh", lambda: _condition(fleet, ONPREM).get("status") == "True", timeout=60)
        wait_until("no free H100 on-prem", lambda: next(
            g["free"] for g in hub_json(fleet, "gpucluster", ONPREM)["status"]["gpus"] if g["model"] == "H100-80GB"
        ) == 0, timeout=30)
        apply(fleet, ns, _cheapest_jp("busy-elsewhere"))
        wait_until("placed", lambda: _placed_on(fleet, ns, "busy-elsewhere") is not None, timeout=60)
        assert _placed_on(fleet, ns, "busy-elsewhere") == SOVEREIGN  # on-prem is cheaper, but its GPUs are busy

        prom.exporter.stop()  # the exporter dies: samples age past maxAgeSeconds
        wait_until("telemetry unavailable", lambda: _condition(fleet, ONPREM).get("status") == "False", timeout=60)
        cond = _condition(fleet, ONPREM)
        assert cond["reason"] in ("Stale", "NoData") and cond["message"]
        assert hub_json(fleet, "gpucluster", ONPREM)["status"]["phase"] == "Ready"  # placement never fails on it
        apply(fleet, ns, _cheapest_jp("api-inventory"))
        wait_until("placed", lambda: _placed_on(fleet, ns, "api-inventory") is not None, timeout=60)
        assert _placed_on(fleet, ns, "api-inventory") == ONPREM
    finally:
        fleet.kubectl("patch", "gpucluster", ONPREM, "--type=json",
                      "-p", json.dumps([{"op": "remove", "path": "/spec/telemetry"}]))
