"""should_migrate, table-driven: one row per situation; and the history it is given, read from status."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

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
from tenbin.services.conditions import now_iso
from tenbin.services.migration_state import history_of

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
    # Cost is judged against the cheapest feasible alternative, not the top-scored one
    ("cost-cheapest-is-not-top-scored", HERE,
     [Alternative("near", "H100-80GB", 450, 95), Alternative("far", "H100-80GB", 300, 10)],
     Policy("CostAware", 20, 1800), OLD, Trigger.COST, "far"),
    ("cost-dearer-top-does-not-mask-cheaper", HERE, [DEAR, Alternative("far", "H100-80GB", 300, 10)],
     Policy("CostAware", 20, 1800), OLD, Trigger.COST, "far"),
    ("cost-unknown-price-never-wins", HERE, [Alternative("unknown", "H100-80GB", math.nan, 99), CHEAP],
     Policy("CostAware", 20, 1800), OLD, Trigger.COST, "cheap"),
    ("cost-only-unknown-prices", HERE, [Alternative("unknown", "H100-80GB", math.nan, 99)],
     Policy("CostAware", 0, 0), OLD, None, None),
    ("cost-equal-prices-go-to-the-higher-score", HERE,
     [Alternative("low", "H100-80GB", 300, 10), Alternative("high", "H100-80GB", 300, 80)],
     Policy("CostAware", 20, 1800), OLD, Trigger.COST, "high"),
    ("cost-cheapest-under-threshold", HERE,
     [Alternative("near", "H100-80GB", 420, 95), Alternative("far", "H100-80GB", 410, 10)],
     Policy("CostAware", 20, 1800), OLD, None, None),
    ("cost-zero-threshold-still-needs-a-saving", HERE, [Alternative("same", "H100-80GB", 500, 99)],
     Policy("CostAware", 0, 0), OLD, None, None),
    ("cost-unknown-current-price", Current("here", "H100-80GB", math.nan), [CHEAP], Policy("CostAware", 0, 0), OLD,
     None, None),
    ("requested-stays-top-scored", Current("here", "H100-80GB", 500, replace_requested=True), [DEAR, CHEAP],
     Policy("CostAware"), OLD, Trigger.REQUESTED, "dear"),
    ("evacuation-stays-top-scored", Current("here", "H100-80GB", 500, evacuating=True), [DEAR, CHEAP],
     Policy("CostAware"), OLD, Trigger.EVACUATION, "dear"),
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


# After a failed move: (failed moves in a row, seconds since the last failure, targets that failed).
# The backoff is max(cooldownSeconds, min_move_interval) * 2**(failures - 1), at most max_move_backoff.
LOST = Current("here", "H100-80GB", 500, reachable=False, unreachable_for=31)
PENDING = Current("here", "H100-80GB", 500, pending_for=61)
DRIFTED = Current("here", "H100-80GB", 500, residency_violations=("residency (x)",))
COST = Policy("CostAware", 20, 1800)
AFTER_FAILURE = [
    ("cost-backs-off-after-a-failure", HERE, [CHEAP], COST, (1, 100, {"cheap"}), None, None),
    ("cost-backs-off-even-to-another-target", HERE, [CHEAP], COST, (1, 100, {"elsewhere"}), None, None),
    ("cost-backoff-ends", HERE, [CHEAP], COST, (1, 1800, {"cheap"}), Trigger.COST, "cheap"),
    ("cost-backoff-doubles", HERE, [CHEAP], COST, (2, 1800, {"cheap"}), None, None),
    ("cost-doubled-backoff-ends", HERE, [CHEAP], COST, (2, 3600, {"cheap"}), Trigger.COST, "cheap"),
    ("cost-backoff-is-capped", HERE, [CHEAP], COST, (20, 6 * 3600, {"cheap"}), Trigger.COST, "cheap"),
    ("cost-backoff-cap-not-yet", HERE, [CHEAP], COST, (20, 6 * 3600 - 1, {"cheap"}), None, None),
    ("cost-backoff-at-least-min-move-interval", HERE, [CHEAP], Policy("CostAware", 20, 0), (1, 19, {"cheap"}),
     None, None),
    ("cost-backoff-min-move-interval-ends", HERE, [CHEAP], Policy("CostAware", 20, 0), (1, 20, {"cheap"}),
     Trigger.COST, "cheap"),
    ("requested-skips-the-failed-target", Current("here", "H100-80GB", 500, replace_requested=True),
     [CHEAP, DEAR], COST, (1, 100, {"cheap"}), Trigger.REQUESTED, "dear"),
    ("requested-only-the-failed-target", Current("here", "H100-80GB", 500, replace_requested=True),
     [CHEAP], COST, (1, 100, {"cheap"}), None, None),
    ("requested-failed-target-after-backoff", Current("here", "H100-80GB", 500, replace_requested=True),
     [CHEAP, DEAR], COST, (1, 1800, {"cheap"}), Trigger.REQUESTED, "cheap"),
    ("evacuation-skips-the-failed-target", Current("here", "H100-80GB", 500, evacuating=True),
     [CHEAP, DEAR], COST, (1, 100, {"cheap"}), Trigger.EVACUATION, "dear"),
    ("evacuation-only-the-failed-target", Current("here", "H100-80GB", 500, evacuating=True),
     [CHEAP], COST, (1, 100, {"cheap"}), Trigger.EVACUATION, None),
    # failure-driven moves are not held back by a failed move, nor kept from its target
    ("lost-ignores-failures", LOST, [CHEAP], COST, (3, 1, {"cheap"}), Trigger.CLUSTER_LOST, "cheap"),
    ("pending-ignores-failures", PENDING, [CHEAP], COST, (3, 1, {"cheap"}), Trigger.CAPACITY_FAILOVER, "cheap"),
    ("drift-ignores-failures", DRIFTED, [CHEAP], Policy("Never"), (3, 1, {"cheap"}), Trigger.RESIDENCY_DRIFT,
     "cheap"),
]


def _after_failure(failures: int, ago: float, targets: set[str]) -> History:
    return replace(OLD, failed_moves=failures, last_failed_at=NOW - ago, failed_targets=frozenset(targets))


@pytest.mark.parametrize(("current", "alts", "policy", "failed", "trigger", "target"),
                         [c[1:] for c in AFTER_FAILURE], ids=[c[0] for c in AFTER_FAILURE])
def test_should_migrate_after_a_failed_move(current: Current, alts: list[Alternative], policy: Policy,
                                            failed: tuple[int, float, set[str]], trigger: Trigger | None,
                                            target: str | None) -> None:
    test_should_migrate(current, alts, policy, _after_failure(*failed), trigger, target)


def _entry(t: float, event: str, cluster: str | None, **extra: Any) -> dict[str, Any]:
    """A status.history entry as Controller.history writes it (falsy fields left out)."""
    e: dict[str, Any] = {"time": now_iso(t), "event": event}
    if cluster:
        e["cluster"] = cluster
    e.update({k: v for k, v in extra.items() if v})
    return e


def _failed(t: float, to: str, source: str, trigger: str) -> dict[str, Any]:
    # as Migrator._fail records it: cluster = the failed target, reason = the trigger, from = the source
    return _entry(t, "MigrationFailed", to, message=f"migration to {to} failed: the target did not become ready "
                  f"before the deadline; staying on {source}", reason=trigger, **{"from": source})


def test_history_of_reads_failed_moves() -> None:
    t0 = 1_700_000_000.0
    entries = [
        _entry(t0, "Scheduled", "here", gpuModel="H100-80GB", currency="USD", pricePerGPUHour=5.0,
               message="placed on here"),
        _failed(t0 + 100, "cheap", "here", "Cost"),
        _failed(t0 + 400, "other", "here", "Cost"),
    ]
    h = history_of({"status": {"history": entries}})
    assert h.last_move_at == t0
    assert h.failed_moves == 2
    assert h.last_failed_at == t0 + 400
    assert h.failed_targets == frozenset({"cheap", "other"})
    assert h.failovers == 0

    # the backoff is read from status: no Cost move within it, one after it
    cost = Policy("CostAware", 20, 1800)
    assert should_migrate(HERE, [CHEAP], cost, h, LIMITS, t0 + 400 + 3599) is None
    move = should_migrate(HERE, [CHEAP], cost, h, LIMITS, t0 + 400 + 3600)
    assert move is not None and move.trigger == Trigger.COST and move.target == CHEAP


def test_history_of_a_completed_move_ends_the_run_of_failures() -> None:
    t0 = 1_700_000_000.0
    entries = [
        _entry(t0, "Scheduled", "here", gpuModel="H100-80GB"),
        _failed(t0 + 100, "cheap", "here", "CapacityFailover"),
        _entry(t0 + 200, "Migrated", "dear", gpuModel="H100-80GB", reason="CapacityFailover", **{"from": "here"}),
        _failed(t0 + 300, "cheap", "dear", "Cost"),
    ]
    h = history_of({"status": {"history": entries}})
    assert h.last_move_at == t0 + 200
    assert (h.failovers, h.failed_clusters) == (1, frozenset({"here"}))
    assert (h.failed_moves, h.last_failed_at, h.failed_targets) == (1, t0 + 300, frozenset({"cheap"}))

    h = history_of({"status": {"history": [*entries, _entry(t0 + 400, "Migrated", "far", reason="Cost",
                                                            **{"from": "dear"})]}})
    assert (h.failed_moves, h.last_failed_at, h.failed_targets) == (0, None, frozenset())
    assert h.last_move_at == t0 + 400


def test_history_of_tolerates_odd_entries() -> None:
    h = history_of({"status": {"history": [{"event": "MigrationFailed"}, {"event": "MigrationFailed",
                                                                            "time": "not a time", "cluster": "x"}]}})
    assert h.failed_moves == 2
    assert h.failed_targets == frozenset({"x"})
    assert h.last_failed_at is None
    assert history_of({}) == History()


@pytest.mark.parametrize(("cur", "new", "want"), [(500, 400, 20.0), (500, 500, 0.0), (500, 600, -20.0),
                                                   (0, 100, 0.0), (math.nan, 1, 0.0), (500, math.nan, 0.0)])
def test_savings_percent(cur: float, new: float, want: float) -> None:
    assert savings_percent(cur, new) == pytest.approx(want)
