"""should_migrate, table-driven: one row per situation."""

from __future__ import annotations

import math

import pytest

from tenbin.scheduling.migration import (
    Alternative,
    Current,
    History,
    Limits,
    Policy,
    Trigger,
    savings_percent,
    should_migrate,
)

NOW = 10_000.0
LIMITS = Limits(cluster_lost_after=30, pending_timeout=60, max_failovers=2, min_move_interval=20)
CHEAP = Alternative("cheap", "H100-80GB", 300.0, 90.0)
DEAR = Alternative("dear", "H100-80GB", 700.0, 40.0)
HERE = Current("here", "H100-80GB", 500.0)
OLD = History(last_move_at=NOW - 10_000)

CASES = [
    # id, current, alternatives, policy, history, expected trigger, expected target
    ("nothing-happens", HERE, [DEAR], Policy("CostAware"), OLD, None, None),
    ("drift-moves-even-with-never", Current("here", "H100-80GB", 500, residency_violations=("residency (x)",)),
     [DEAR, CHEAP], Policy("Never"), OLD, Trigger.RESIDENCY_DRIFT, "dear"),
    ("drift-without-target-still-decided", Current("here", "H100-80GB", 500, residency_violations=("r",)),
     [], Policy("OnFailure"), OLD, Trigger.RESIDENCY_DRIFT, None),
    ("never-ignores-cluster-loss", Current("here", "H100-80GB", 500, reachable=False, unreachable_for=999),
     [CHEAP], Policy("Never"), OLD, None, None),
    ("lost-after-grace", Current("here", "H100-80GB", 500, reachable=False, unreachable_for=31),
     [CHEAP], Policy("OnFailure"), OLD, Trigger.CLUSTER_LOST, "cheap"),
    ("lost-before-grace", Current("here", "H100-80GB", 500, reachable=False, unreachable_for=29),
     [CHEAP], Policy("OnFailure"), OLD, None, None),
    ("lost-without-target", Current("here", "H100-80GB", 500, reachable=False, unreachable_for=31),
     [], Policy("OnFailure"), OLD, Trigger.CLUSTER_LOST, None),
    ("lost-but-just-moved", Current("here", "H100-80GB", 500, reachable=False, unreachable_for=31),
     [CHEAP], Policy("OnFailure"), History(last_move_at=NOW - 5), None, None),
    ("pending-too-long", Current("here", "H100-80GB", 500, pending_for=61), [CHEAP], Policy("OnFailure"), OLD,
     Trigger.CAPACITY_FAILOVER, "cheap"),
    ("pending-skips-failed-clusters", Current("here", "H100-80GB", 500, pending_for=61), [CHEAP, DEAR],
     Policy("OnFailure"), History(NOW - 10_000, 1, frozenset({"cheap"})), Trigger.CAPACITY_FAILOVER, "dear"),
    ("pending-budget-exhausted", Current("here", "H100-80GB", 500, pending_for=61), [CHEAP], Policy("OnFailure"),
     History(NOW - 10_000, 2, frozenset()), None, None),
    ("evacuation", Current("here", "H100-80GB", 500, evacuating=True), [DEAR], Policy("OnFailure"), OLD,
     Trigger.EVACUATION, "dear"),
    ("evacuation-respects-never", Current("here", "H100-80GB", 500, evacuating=True), [DEAR], Policy("Never"), OLD,
     None, None),
    ("requested", Current("here", "H100-80GB", 500, replace_requested=True), [DEAR], Policy("OnFailure"), OLD,
     Trigger.REQUESTED, "dear"),
    ("cost-over-threshold", HERE, [CHEAP], Policy("CostAware", 20, 1800), OLD, Trigger.COST, "cheap"),
    ("cost-under-threshold", HERE, [Alternative("cheap", "H100-80GB", 420, 90)], Policy("CostAware", 20, 1800), OLD,
     None, None),
    ("cost-exactly-threshold", HERE, [Alternative("cheap", "H100-80GB", 400, 90)], Policy("CostAware", 20, 1800), OLD,
     Trigger.COST, "cheap"),
    ("cost-in-cooldown", HERE, [CHEAP], Policy("CostAware", 20, 1800), History(last_move_at=NOW - 1799), None, None),
    ("cost-needs-cost-aware", HERE, [CHEAP], Policy("OnFailure", 20, 1800), OLD, None, None),
    ("current-never-a-target", HERE, [Alternative("here", "H200-141GB", 1, 99)], Policy("CostAware", 1, 0), OLD,
     None, None),
]


@pytest.mark.parametrize(("current", "alts", "policy", "history", "trigger", "target"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_should_migrate(current: Current, alts: list[Alternative], policy: Policy, history: History,
                        trigger: Trigger | None, target: str | None) -> None:
    move = should_migrate(current, alts, policy, history, LIMITS, NOW)
    if trigger is None:
        assert move is None
        return
    assert move is not None
    assert move.trigger == trigger
    assert (move.target.cluster if move.target else None) == target
    assert move.mandatory == (trigger == Trigger.RESIDENCY_DRIFT)
    assert move.reason.startswith(str(trigger))


@pytest.mark.parametrize(("cur", "new", "want"), [(500, 400, 20.0), (500, 500, 0.0), (500, 600, -20.0),
                                                   (0, 100, 0.0), (math.nan, 1, 0.0), (500, math.nan, 0.0)])
def test_savings_percent(cur: float, new: float, want: float) -> None:
    assert savings_percent(cur, new) == pytest.approx(want)
