"""The runner: feasibility = all filters, weighted scores, tie-break, sequential capacity, plugin contracts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from helpers import cluster, policy, workload
from tenbin.scheduling import (
    EffectivePolicy,
    PluginError,
    Profile,
    Scheduler,
    Snapshot,
    default_registry,
    place,
    place_sequentially,
)
from tenbin.scheduling import reasons as R
from tenbin.scheduling.framework import Cycle

POL = EffectivePolicy(rates={"JPY": 1.0, "USD": 150.0})


def test_identical_candidates_tie_break_by_cluster_name_then_model() -> None:
    fleet = [cluster(n, gpus=[("H100-80GB", 8, 100, "JPY"), ("A100-80GB", 8, 100, "JPY")]) for n in ("b", "a", "c")]
    d = place(workload(), fleet, POL)
    assert d.chosen is not None
    assert (d.chosen.cluster, d.chosen.model) == ("a", "A100-80GB")
    assert [(c.cluster, c.model) for c in d.top] == [("a", "A100-80GB"), ("a", "H100-80GB"), ("b", "A100-80GB")]


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ({"price": 1}, "cheap"),            # workload weights replace the policy's
        ({"availability": 1}, "roomy"),
        ({"price": 1, "availability": 0}, "cheap"),
        ({"price": 0, "availability": 0}, "cheap"),  # all zero: every score 0, name order decides
    ],
)
def test_workload_weights_replace_policy_weights(weights: Mapping[str, float], expected: str) -> None:
    fleet = [cluster("cheap", gpus=[("H100-80GB", 4, 100, "JPY")]),
             cluster("roomy", gpus=[("H100-80GB", 64, 400, "JPY")])]
    d = place(workload(weights=weights), fleet, policy(weights={"price": 0, "availability": 1}))
    assert d.chosen is not None and d.chosen.cluster == expected
    assert {t.plugin for t in d.chosen.breakdown} == {k for k, v in weights.items() if v > 0}


def test_policy_weights_apply_without_workload_weights() -> None:
    fleet = [cluster("cheap", gpus=[("H100-80GB", 4, 100, "JPY")]),
             cluster("roomy", gpus=[("H100-80GB", 64, 400, "JPY")])]
    for w, expected in (({"price": 1}, "cheap"), ({"availability": 1}, "roomy")):
        d = place(workload(), fleet, policy(weights=w))
        assert d.chosen is not None and d.chosen.cluster == expected


def test_weighted_score_is_the_weighted_mean_of_the_breakdown() -> None:
    fleet = [cluster("a", gpus=[("H100-80GB", 8, 300, "JPY")]), cluster("b", gpus=[("H100-80GB", 16, 600, "JPY")])]
    d = place(workload(weights={"price": 3, "availability": 1}), fleet, POL)
    for c in d.top:
        total = sum(t.score * t.weight for t in c.breakdown) / sum(t.weight for t in c.breakdown)
        assert c.score == pytest.approx(total)
        assert 0 <= c.score <= 100


def test_sequential_placements_consume_capacity() -> None:
    fleet = [cluster("a", gpus=[("H100-80GB", 8, 100, "JPY")]), cluster("b", gpus=[("H100-80GB", 8, 200, "JPY")])]
    ws = [workload(f"w{i}", count=8) for i in range(3)]
    ds = place_sequentially(ws, fleet, POL)
    assert [d.chosen.cluster if d.chosen else None for d in ds] == ["a", "b", None]
    assert "insufficient H100-80GB (free 0 < 8)" in ds[2].reason


def test_reserved_gpus_are_not_free() -> None:
    fleet = [cluster("a", gpus=[("H100-80GB", 8, 100, "JPY")]), cluster("b", gpus=[("H100-80GB", 8, 200, "JPY")])]
    d = place(workload(count=4), fleet, POL, reserved={("a", "H100-80GB"): 6, ("ghost", "X"): 3})
    assert d.chosen is not None and d.chosen.cluster == "b"
    assert d.diagnosis.reasons[("a", "H100-80GB")][0].detail == "free 2 < 4"


def test_decision_for_an_empty_fleet() -> None:
    d = place(workload(), [], POL)
    assert not d.scheduled and d.score is None
    assert d.reason == "0/0 clusters fit: no GPUClusters"


def test_price_is_reported_in_the_base_currency() -> None:
    d = place(workload(), [cluster("us", gpus=[("H100-80GB", 8, 3.0, "USD")])], POL)
    assert d.chosen is not None
    assert d.chosen.price == 3.0 and d.chosen.currency == "USD"
    assert d.chosen.price_base == pytest.approx(3.0 * POL.rates["USD"])


def test_snapshot_is_reusable_and_not_mutated() -> None:
    snap = Snapshot([cluster("a", gpus=[("H100-80GB", 8, 100, "JPY")])])
    before = snap.free.copy()
    sched = Scheduler(POL)
    sched.place_all([workload(count=8), workload("w2", count=8)], snap)
    assert np.array_equal(snap.free, before)
    assert sched.place(workload(count=8), snap).scheduled


def test_duplicate_cluster_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Snapshot([cluster("a"), cluster("a")])


class _BrokenScore:
    name = "broken"

    def score(self, cy: Cycle, rows: Any) -> Any:
        return np.full(len(rows), 150.0)


def test_score_outside_range_is_a_plugin_error() -> None:
    reg = default_registry()
    reg.register_score("broken", lambda _args: _BrokenScore())
    pol = EffectivePolicy(weights={"broken": 1.0})
    sched = Scheduler(pol, profile=Profile.of(["health"], ["broken"]), registry=reg)
    with pytest.raises(PluginError):
        sched.place(workload(), Snapshot([cluster()]))


def test_registry_and_profile_errors() -> None:
    reg = default_registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.register_filter("health", lambda _a: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="unregistered"):
        Scheduler(POL, profile=Profile.of(["nope"], []))


def test_a_profile_without_a_filter_does_not_apply_it() -> None:
    fleet = [cluster("us", jurisdiction="US")]
    w = workload(jurisdictions=["JP"])
    assert not place(w, fleet, POL).scheduled
    no_residency = Profile.of(["health", "capacity"], ["price"])
    assert Scheduler(POL, profile=no_residency).place(w, Snapshot(fleet)).scheduled


def test_placement_status_is_what_the_operator_writes() -> None:
    d = place(workload(count=2, replicas=3), [cluster("us", tier="Hyperscaler", jurisdiction="US",
                                                      gpus=[("H100-80GB", 8, 3.0, "USD")])], POL)
    st = d.placement_status()
    assert st is not None
    dumped = st.model_dump(by_alias=True, exclude_none=True)
    assert dumped["cluster"] == "us" and dumped["gpuModel"] == "H100-80GB" and dumped["tier"] == "Hyperscaler"
    assert dumped["pricePerGPUHour"] == pytest.approx(3.0 * POL.rates["USD"])
    assert dumped["currency"] == POL.base_currency and dumped["gpus"] == 6
    assert place(workload(count=99), [cluster()], POL).placement_status() is None


def test_excluded_clusters_are_out_of_the_decision_and_say_why() -> None:
    fleet = Snapshot([cluster(n, gpus=[("H100-80GB", 8, price, "JPY")]) for n, price in
                      (("cheap", 100), ("dear", 300), ("dearer", 500))])
    sched = Scheduler(POL)
    assert sched.place(workload(), fleet).chosen.cluster == "cheap"  # type: ignore[union-attr]
    d = sched.place(workload(), fleet, exclude={"cheap": "Widget not served"})
    assert d.chosen is not None and d.chosen.cluster == "dear"
    assert [c.cluster for c in d.top] == ["dear", "dearer"]
    assert d.diagnosis.reasons == {("cheap", "H100-80GB"): (R.excluded("Widget not served"),)}
    none = sched.place(workload(), fleet, exclude={"cheap": "a", "dear": "b", "dearer": "b"})
    assert none.chosen is None
    assert none.reason == "0/3 clusters fit: 3 excluded (b; a)"  # the commoner reason first
    # without `exclude` the plugins are the profile's alone: the next decision is unaffected
    assert sched.place(workload(), fleet).chosen.cluster == "cheap"  # type: ignore[union-attr]
