"""The optional batch placement mode: a window solved jointly, never breaking a rule the online path keeps."""

from __future__ import annotations

from helpers import cluster
from tenbin.api import DataClassification
from tenbin.scheduling import Scheduler, Snapshot, WorkloadRequest
from tenbin.scheduling.batch import place_window, place_windows


def _fleet() -> Snapshot:
    return Snapshot([
        cluster("sovereign", tier="SovereignCloud", gpus=(("H100-80GB", 8, 480, "JPY"),)),
        cluster("hyper", tier="Hyperscaler", jurisdiction="US", gpus=(("H100-80GB", 8, 300, "JPY"),)),
    ])


def _req(key: str, count: int, cls: DataClassification = DataClassification.INTERNAL) -> WorkloadRequest:
    return WorkloadRequest(key=key, count=count, classification=cls)


def test_a_window_keeps_the_only_compliant_capacity_for_the_confidential_job() -> None:
    snap = _fleet()
    # online: internal-a takes the cheaper hyperscaler, internal-b the sovereign cluster, nothing is left for
    # the Confidential job (sovereign only); jointly, one Internal job waits and the Confidential one runs
    reqs = [_req("internal-a", 8), _req("internal-b", 8), _req("confidential", 8, DataClassification.CONFIDENTIAL)]
    online = Scheduler().place_all(reqs, snap)
    assert [d.chosen is not None for d in online] == [True, True, False]  # the sovereign cluster went to Internal
    res = place_window(reqs, snap)
    placed = {a.workload: a.cluster for a in res.assignments}
    assert res.optimal
    assert placed["confidential"] == "sovereign"
    assert sum(1 for c in placed.values() if c) == 2


def test_windows_never_overcommit_and_never_break_residency() -> None:
    snap = _fleet()
    reqs = [_req(f"w{i}", 1 + i % 4, DataClassification.CONFIDENTIAL if i % 3 == 0 else DataClassification.PUBLIC)
            for i in range(20)]
    res = place_windows(reqs, snap, window=4)
    used: dict[str, int] = {}
    for req, a in zip(reqs, res.assignments, strict=True):
        assert a.workload == req.key and a.gpus == req.need
        if a.cluster is None:
            continue
        used[a.cluster] = used.get(a.cluster, 0) + a.gpus
        if req.classification is DataClassification.CONFIDENTIAL:
            assert a.cluster == "sovereign"
    assert all(n <= 8 for n in used.values())
    assert sum(used.values()) == 16  # demand exceeds supply: everything is used


def test_cost_is_minimised_among_maximal_placements() -> None:
    snap = _fleet()
    res = place_window([_req("a", 4), _req("b", 4)], snap)
    assert [a.cluster for a in res.assignments] == ["hyper", "hyper"]  # the cheaper cluster holds both
    assert all(a.price_base == 300 for a in res.assignments)
