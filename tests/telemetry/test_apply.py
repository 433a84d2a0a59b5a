"""apply_telemetry / assess / telemetry_condition: the pure half, table-driven."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tenbin.inventory.model import ClusterInventory, NodeGPUs
from tenbin.inventory.telemetry import (
    GPUTelemetry,
    TelemetrySnapshot,
    adjust_node,
    apply_telemetry,
    assess,
    telemetry_condition,
)

NOW = 1_000_000.0
M = "H100-80GB"


def n(name: str = "a", cap: int = 8, alloc: int = 0, unhealthy: int = 0, **kw: object) -> NodeGPUs:
    return NodeGPUs(node=name, model=M, capacity=cap, allocatable=cap, allocated=alloc, unhealthy=unhealthy,
                    **kw)  # type: ignore[arg-type]


def gpus(node: str = "a", count: int = 8, util: float = 0.0, age: float = 1.0, **kw: object) -> list[GPUTelemetry]:
    return [GPUTelemetry(node=node, gpu=str(i), utilization=util, timestamp=NOW - age, **kw)  # type: ignore[arg-type]
            for i in range(count)]


def snap(*gs: GPUTelemetry, max_age: float = 120.0) -> TelemetrySnapshot:
    return TelemetrySnapshot(gpus=tuple(gs), source="http://prom", max_age_s=max_age)


def with_(g: list[GPUTelemetry], i: int, **kw: object) -> list[GPUTelemetry]:
    return [replace(x, **kw) if j == i else x for j, x in enumerate(g)]  # type: ignore[arg-type]


# (case, node, gpu telemetry, expected (unhealthy, allocated, free, utilization))
CASES = [
    ("idle, nothing allocated: unchanged", n(), gpus(), (0, 0, 8, 0.0)),
    ("all busy outside Kubernetes: nothing free", n(), gpus(util=1.0), (0, 8, 0, 1.0)),
    ("3 busy, 2 allocated: one more taken", n(alloc=2), with_(with_(with_(gpus(), 0, utilization=0.9), 1,
                                                                          utilization=0.5), 2, utilization=0.3),
     (0, 3, 5, pytest.approx(1.7 / 8))),
    ("allocated but idle stays allocated", n(alloc=4), gpus(), (0, 4, 4, 0.0)),
    ("util at the idle threshold is idle", n(), gpus(util=0.05), (0, 0, 8, pytest.approx(0.05))),
    ("memory held while compute idle counts as busy", n(),
     with_(gpus(fb_free_mib=80000.0, fb_used_mib=1000.0), 0, fb_free_mib=20000.0, fb_used_mib=61000.0),
     (0, 1, 7, 0.0)),
    ("critical XID: one unhealthy", n(), with_(gpus(), 3, xid=79), (1, 0, 7, 0.0)),
    ("application XID 31 and 43 ignored", n(), with_(with_(gpus(), 3, xid=31), 4, xid=43), (0, 0, 8, 0.0)),
    ("xid 0 means none", n(), with_(gpus(), 3, xid=0), (0, 0, 8, 0.0)),
    ("annotation and XID overlap: max, not sum", n(unhealthy=2), with_(gpus(), 1, xid=48), (2, 0, 6, 0.0)),
    ("XID GPU busy is not counted twice", n(), with_(gpus(util=1.0), 0, xid=79), (1, 7, 0, 1.0)),
    ("busy capped by usable", n(unhealthy=2), gpus(util=1.0), (2, 6, 0, 1.0)),
    ("unready node: allocated untouched", n(ready=False), gpus(util=1.0), (0, 0, 0, 1.0)),
    ("more GPUs reported than capacity are cut", n(cap=4), gpus(count=8, util=1.0), (0, 4, 0, 1.0)),
    ("no utilization series keeps API utilization", n(), gpus(util=None), (0, 0, 8, None)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("case", "node", "tel", "want"), CASES, ids=[c[0] for c in CASES])
def test_apply_per_node(case: str, node: NodeGPUs, tel: list[GPUTelemetry], want: tuple) -> None:
    out = apply_telemetry(ClusterInventory((node,)), snap(*tel), NOW)
    got = out.nodes[0]
    assert (got.unhealthy, got.allocated, got.free, got.utilization) == want
    assert out.telemetry_note is not None and out.telemetry_note.startswith("http://prom: fresh on all 1")


def test_memory_filled_from_framebuffer_only_when_the_label_is_missing() -> None:
    tel = gpus(fb_free_mib=80000.0, fb_used_mib=1559.0)
    assert adjust_node(n(), tel)[0].memory_mib == 81559
    assert adjust_node(n(memory_mib=81920), tel)[0].memory_mib == 81920


def test_note_lists_xids_busy_and_idle() -> None:
    inv = ClusterInventory((n("a", alloc=2), n("b")))
    tel = [*with_(gpus("a"), 5, xid=79), *gpus("b", util=1.0)]
    note = apply_telemetry(inv, snap(*tel), NOW).telemetry_note
    assert note == ("http://prom: fresh on all 2 GPU nodes; 1 GPU(s) unhealthy: a gpu 5 XID 79; "
                    "8 GPU(s) busy but free in Kubernetes' accounting (counted as allocated); "
                    "2 GPU(s) allocated but idle")


# --- staleness and fallback -------------------------------------------------------------------------------

FALLBACKS = [
    ("unreachable", TelemetrySnapshot.failed("http://prom", "Unreachable", "ConnectionError: refused"),
     "Unreachable", "http://prom: ConnectionError: refused; using API inventory"),
    ("query failed", TelemetrySnapshot.failed("http://prom", "QueryFailed", "HTTP 400"), "QueryFailed",
     "http://prom: HTTP 400; using API inventory"),
    ("no series", snap(), "NoData", "http://prom: no GPU series for any of the cluster's 2 GPU nodes; using API"
     " inventory"),
    ("series of other nodes only", snap(*gpus("zzz", util=1.0)), "NoData", None),
    ("all samples too old", snap(*gpus("a", age=300), *gpus("b", age=200)), "Stale",
     "http://prom: GPU samples are stale (newest 300s old, max age 120s) on a, b; using API inventory"),
    ("just over max age", snap(*gpus("a", age=10.001), *gpus("b", age=11), max_age=10), "Stale", None),
]


@pytest.mark.parametrize(("case", "tel", "reason", "message"), FALLBACKS, ids=[c[0] for c in FALLBACKS])
def test_unusable_telemetry_leaves_api_inventory(case: str, tel: TelemetrySnapshot, reason: str,
                                                 message: str | None) -> None:
    inv = ClusterInventory((n("a", alloc=1), n("b", unhealthy=1)))
    out = apply_telemetry(inv, tel, NOW)
    assert out.nodes == inv.nodes
    cond = telemetry_condition(inv, tel, NOW)
    assert (cond["type"], cond["status"], cond["reason"]) == ("TelemetryAvailable", "False", reason)
    assert out.telemetry_note == cond["message"]
    if message is not None:
        assert cond["message"] == message


def test_exactly_max_age_is_still_fresh() -> None:
    inv = ClusterInventory((n("a"),))
    assert assess(inv, snap(*gpus("a", age=10, util=1.0), max_age=10), NOW).reason == "Fresh"


def test_partial_applies_fresh_nodes_only() -> None:
    inv = ClusterInventory((n("a"), n("b"), n("c")))
    tel = snap(*gpus("a", util=1.0), *gpus("b", util=1.0, age=500))
    out = apply_telemetry(inv, tel, NOW)
    by = {x.node: x for x in out.nodes}
    assert by["a"].free == 0 and by["b"] == inv.nodes[1] and by["c"] == inv.nodes[2]
    cond = telemetry_condition(inv, tel, NOW)
    assert (cond["status"], cond["reason"]) == ("True", "Partial")
    assert cond["message"] == "http://prom: fresh on 1/3 GPU nodes; stale on b; missing on c (API inventory there)"


def test_some_stale_gpus_on_a_node_are_ignored_the_fresh_ones_count() -> None:
    tel = [*gpus("a", count=4, util=1.0), *[replace(g, gpu=str(int(g.gpu) + 4)) for g in gpus("a", 4, 1.0, 999)]]
    out = apply_telemetry(ClusterInventory((n("a"),)), snap(*tel), NOW)
    assert out.nodes[0].allocated == 4


def test_unknown_sample_time_counts_as_fresh() -> None:
    tel = [replace(g, timestamp=None) for g in gpus(util=1.0)]
    assert apply_telemetry(ClusterInventory((n(),)), snap(*tel), NOW).free() == {M: 0}


def test_short_hostname_matches_fqdn_node_name() -> None:
    inv = ClusterInventory((n("gpu-a.example.internal"),))
    out = apply_telemetry(inv, snap(*gpus("gpu-a", util=1.0)), NOW)
    assert out.free() == {M: 0}


def test_ambiguous_short_name_is_not_guessed() -> None:
    inv = ClusterInventory((n("gpu-a.zone1"), n("gpu-a.zone2")))
    assert assess(inv, snap(*gpus("gpu-a")), NOW).reason == "NoData"


def test_no_telemetry_configured_is_a_no_op() -> None:
    inv = ClusterInventory((n(),), telemetry_note=None)
    assert apply_telemetry(inv, None, NOW) is inv
    assert telemetry_condition(inv, None, NOW)["reason"] == "NotConfigured"


def test_no_gpu_nodes() -> None:
    inv = ClusterInventory(())
    cond = telemetry_condition(inv, snap(*gpus()), NOW)
    assert (cond["status"], cond["reason"]) == ("False", "NoGPUNodes")
    assert apply_telemetry(inv, snap(*gpus()), NOW).nodes == ()


def test_free_never_rises_and_never_goes_negative() -> None:
    # a property over a small grid: telemetry can only take GPUs away, never add free ones
    for alloc in range(0, 9, 2):
        for unhealthy in range(0, 9, 3):
            for busy in range(0, 9, 2):
                for xid_gpus in range(0, 4):
                    node = n(alloc=alloc, unhealthy=unhealthy)
                    tel = gpus()
                    for i in range(busy):
                        tel = with_(tel, i, utilization=1.0)
                    for i in range(xid_gpus):
                        tel = with_(tel, 7 - i, xid=79)
                    got = adjust_node(node, tel)[0]
                    assert 0 <= got.free <= node.free
                    assert got.allocated >= node.allocated and got.unhealthy >= node.unhealthy
