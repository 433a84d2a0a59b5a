"""Telemetry against a real Prometheus scraping a DCGM-style exporter (see conftest.py)."""

from __future__ import annotations

import json
import time
from typing import Any

from prom_server import Prom

from tenbin.gpumodels import product_label
from tenbin.inventory.model import ClusterInventory, inventory_from_objects
from tenbin.inventory.telemetry import PrometheusTelemetrySource, apply_telemetry, telemetry_condition
from tenbin.testbed.fleet import Fleet, free_port, wait_until

H100 = "H100-80GB"


def node(name: str, gpus: int = 8, model: str = H100) -> dict[str, Any]:
    res = {"nvidia.com/gpu": str(gpus)}
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product_label(model)}},
        "status": {"capacity": res, "allocatable": res, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def api_inventory(*names: str) -> ClusterInventory:
    return inventory_from_objects([node(n) for n in names], [])


def series(prom: Prom, q: str) -> dict[tuple[str, str], float]:
    return {(r["metric"].get("Hostname", ""), r["metric"].get("gpu", "")): float(r["value"][1]) for r in prom.query(q)}


def await_scraped(prom: Prom, n_gpus: int) -> None:
    prom.await_query(f"{n_gpus} GPU series scraped", "DCGM_FI_DEV_XID_ERRORS", lambda r: len(r) == n_gpus)


def test_busy_node_and_xid_lower_availability_and_record_utilization(prom: Prom) -> None:
    prom.exporter.dcgm.add_node("gpu-a")
    prom.exporter.dcgm.add_node("gpu-b")
    await_scraped(prom, 16)
    inv = api_inventory("gpu-a", "gpu-b")
    assert inv.free() == {H100: 16}

    prom.exporter.dcgm.set("gpu-a", util=100, fb_used=70000, fb_free=11000)  # every GPU of gpu-a busy
    prom.exporter.dcgm.set("gpu-b", 3, xid=79)  # "GPU has fallen off the bus"
    prom.exporter.dcgm.set("gpu-b", 5, xid=31)  # an application page fault: not the GPU's fault
    prom.await_query("utilization and XIDs scraped", 'max(DCGM_FI_DEV_GPU_UTIL{Hostname="gpu-a"})',
                     lambda r: r and float(r[0]["value"][1]) == 100)
    prom.await_query("XIDs scraped", "changes(DCGM_FI_DEV_XID_ERRORS[10m]) > 0", lambda r: len(r) == 2)

    source = PrometheusTelemetrySource(prom.url, max_age_s=30)
    snap = source.fetch()
    assert snap.error is None
    now = time.time()
    out = apply_telemetry(inv, snap, now)
    by_node = {n.node: n for n in out.nodes}
    assert by_node["gpu-a"].allocated == 8 and by_node["gpu-a"].free == 0
    assert by_node["gpu-a"].utilization == 1.0
    assert by_node["gpu-b"].unhealthy == 1 and by_node["gpu-b"].free == 7
    assert by_node["gpu-b"].utilization == 0.0
    assert out.free() == {H100: 7}
    assert out.by_model()[H100].utilization == 0.5
    assert out.telemetry_note is not None
    assert "gpu-b gpu 3 XID 79" in out.telemetry_note and "XID 31" not in out.telemetry_note
    cond = telemetry_condition(inv, snap, now)
    assert (cond["status"], cond["reason"]) == ("True", "Fresh")


def test_member_cluster_nodes_on_a_real_apiserver(prom: Prom, fleet: Fleet) -> None:
    member = "t-sovereign-jp"  # one node of 8 H100 and one of 4 H200
    nodes = json.loads(fleet.kubectl("get", "nodes", "-o", "json", cluster=member).stdout)["items"]
    pods = json.loads(fleet.kubectl("get", "pods", "-A", "-o", "json", cluster=member).stdout)["items"]
    gpu_nodes = {n["metadata"]["name"]: int(n["status"]["capacity"]["nvidia.com/gpu"]) for n in nodes
                 if "nvidia.com/gpu" in n["status"].get("capacity", {})}
    for name, count in gpu_nodes.items():
        prom.exporter.dcgm.add_node(name, count)
    await_scraped(prom, sum(gpu_nodes.values()))
    inv = inventory_from_objects(nodes, pods)
    before = inv.free()

    h100 = next(n for n in gpu_nodes if "h100" in n)
    h200 = next(n for n in gpu_nodes if "h200" in n)
    prom.exporter.dcgm.set(h200, util=100)
    prom.exporter.dcgm.set(h100, 0, xid=48)  # double-bit ECC error
    prom.await_query("XID scraped", "changes(DCGM_FI_DEV_XID_ERRORS[10m]) > 0", lambda r: len(r) == 1)
    prom.await_query("utilization scraped", f'min(DCGM_FI_DEV_GPU_UTIL{{Hostname="{h200}"}})',
                     lambda r: r and float(r[0]["value"][1]) == 100)

    out = apply_telemetry(inv, PrometheusTelemetrySource(prom.url).fetch(), time.time())
    assert out.free() == {"H100-80GB": before["H100-80GB"] - 1, "H200-141GB": 0}


def test_frozen_samples_go_stale_and_fall_back_to_api_inventory(prom: Prom) -> None:
    prom.exporter.dcgm.explicit_timestamps = True
    prom.exporter.dcgm.add_node("gpu-a", util=100)
    await_scraped(prom, 8)
    inv = api_inventory("gpu-a")
    source = PrometheusTelemetrySource(prom.url, max_age_s=3)
    fresh = source.fetch()
    assert telemetry_condition(inv, fresh, time.time())["reason"] == "Fresh"
    assert apply_telemetry(inv, fresh, time.time()).free() == {H100: 0}

    frozen_at = prom.exporter.dcgm.freeze()
    # Prometheus keeps the series (explicit timestamps get no staleness markers); only their age grows
    wait_until("telemetry to turn stale",
               lambda: telemetry_condition(inv, source.fetch(), time.time())["reason"] == "Stale", 30)
    snap = source.fetch()
    assert snap.error is None and len(snap.gpus) == 8
    assert all(g.timestamp is not None and abs(g.timestamp - frozen_at) < 1.0 for g in snap.gpus)
    now = time.time()
    out = apply_telemetry(inv, snap, now)
    assert out.nodes == inv.nodes
    assert out.free() == {H100: 8}
    assert out.telemetry_note is not None and "stale" in out.telemetry_note
    assert telemetry_condition(inv, snap, now)["status"] == "False"


def test_exporter_gone_means_no_data_and_fallback(prom: Prom) -> None:
    prom.exporter.dcgm.add_node("gpu-a", util=100)
    await_scraped(prom, 8)
    inv = api_inventory("gpu-a")
    source = PrometheusTelemetrySource(prom.url)
    assert apply_telemetry(inv, source.fetch(), time.time()).free() == {H100: 0}

    prom.exporter.stop()
    # the failed scrape makes Prometheus mark every series of the target stale
    prom.await_query("series marked stale", "DCGM_FI_DEV_GPU_UTIL", lambda r: r == [])
    snap = source.fetch()
    out = apply_telemetry(inv, snap, time.time())
    assert out.nodes == inv.nodes and out.free() == {H100: 8}
    cond = telemetry_condition(inv, snap, time.time())
    assert (cond["status"], cond["reason"]) == ("False", "NoData")
    assert out.telemetry_note == cond["message"]


def test_bad_query_override_is_a_query_failure_not_an_exception(prom: Prom) -> None:
    source = PrometheusTelemetrySource(prom.url, queries={"utilization": "DCGM_FI_DEV_GPU_UTIL{"})
    snap = source.fetch()
    assert snap.error_kind == "QueryFailed" and snap.error is not None and "400" in snap.error
    inv = api_inventory("gpu-a")
    assert apply_telemetry(inv, snap, time.time()).nodes == inv.nodes


def test_unreachable_prometheus_falls_back_without_raising() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    started = time.monotonic()
    snap = PrometheusTelemetrySource(url, timeout_s=2).fetch()
    assert time.monotonic() - started < 10
    assert snap.error_kind == "Unreachable" and snap.error
    inv = api_inventory("gpu-a")
    out = apply_telemetry(inv, snap, time.time())
    assert out.nodes == inv.nodes
    assert out.telemetry_note is not None and url in out.telemetry_note and "using API inventory" in out.telemetry_note
    cond = telemetry_condition(inv, snap, time.time())
    assert (cond["status"], cond["reason"]) == ("False", "Unreachable")
