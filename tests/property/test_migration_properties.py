"""Migration decisions under arbitrary situations: never an infeasible target, no ping-pong, the cheapest
target for a Cost move, backoff after failed moves that never holds back a failure-driven one."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tenbin.scheduling.migration import (
    Alternative,
    Current,
    History,
    Limits,
    Policy,
    Trigger,
    move_backoff,
    savings_percent,
    should_migrate,
)

CLUSTERS = ["a", "b", "c", "d"]
prices = st.floats(min_value=1, max_value=2000, allow_nan=False)

alternatives = st.lists(
    st.builds(Alternative, st.sampled_from(CLUSTERS), st.just("H100-80GB"), prices,
              st.floats(min_value=0, max_value=100)),
    max_size=4,
)
currents = st.builds(
    Current, st.sampled_from(CLUSTERS), st.just("H100-80GB"), prices, st.booleans(),
    st.floats(min_value=0, max_value=500), st.floats(min_value=0, max_value=500),
    st.lists(st.just("residency (jurisdiction US not in [JP])"), max_size=1).map(tuple),
    st.booleans(), st.booleans(),
)
policies = st.builds(Policy, st.sampled_from(["Never", "OnFailure", "CostAware"]),
                     st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=3600))
histories = st.builds(History, st.one_of(st.none(), st.floats(min_value=0, max_value=10_000)),
                      st.integers(min_value=0, max_value=5), st.frozensets(st.sampled_from(CLUSTERS)),
                      st.integers(min_value=0, max_value=6),
                      st.one_of(st.none(), st.floats(min_value=0, max_value=10_000)),
                      st.frozensets(st.sampled_from(CLUSTERS)))
maybe_unknown_prices = st.one_of(prices, st.just(math.nan))
priced_alternatives = st.lists(
    st.builds(Alternative, st.sampled_from(CLUSTERS), st.just("H100-80GB"), maybe_unknown_prices,
              st.floats(min_value=0, max_value=100)),
    max_size=5,
)
# situations where a voluntary move (Evacuation, Requested, Cost) is what is decided, and failed moves
# whose backoff may or may not have run out at now = 10_000
settled_currents = st.builds(
    Current, st.sampled_from(CLUSTERS), st.just("H100-80GB"), maybe_unknown_prices, st.just(True),
    st.just(0.0), st.just(0.0), st.just(()), st.booleans(), st.booleans(),
)
cost_policies = st.builds(Policy, st.just("CostAware"), st.floats(min_value=0, max_value=100),
                          st.floats(min_value=0, max_value=3600))
recent_histories = st.builds(History, st.one_of(st.none(), st.floats(min_value=0, max_value=10_000)),
                             st.integers(min_value=0, max_value=5), st.frozensets(st.sampled_from(CLUSTERS)),
                             st.integers(min_value=0, max_value=6),
                             st.one_of(st.none(), st.floats(min_value=-10_000, max_value=10_000)),
                             st.frozensets(st.sampled_from(CLUSTERS), min_size=1))
FAILURE_DRIVEN = (Trigger.RESIDENCY_DRIFT, Trigger.CLUSTER_LOST, Trigger.CAPACITY_FAILOVER)


@settings(max_examples=300)
@given(currents, alternatives, policies, histories)
def test_target_is_always_a_given_feasible_alternative_elsewhere(
        current: Current, alts: list[Alternative], policy: Policy, history: History) -> None:
    move = should_migrate(current, alts, policy, history, Limits(), 10_000.0)
    if move is None or move.target is None:
        return
    assert move.target in alts
    assert move.target.cluster != current.cluster
    if move.trigger == Trigger.CAPACITY_FAILOVER:
        assert move.target.cluster not in history.failed_clusters


@settings(max_examples=300)
@given(currents, alternatives, policies, histories)
def test_never_policy_moves_only_for_residency(
        current: Current, alts: list[Alternative], policy: Policy, history: History) -> None:
    move = should_migrate(current, alts, Policy("Never", policy.min_savings_percent, policy.cooldown_seconds),
                          history, Limits(), 10_000.0)
    assert move is None or move.trigger == Trigger.RESIDENCY_DRIFT


@settings(max_examples=200)
@given(st.lists(st.tuples(prices, prices), min_size=2, max_size=60),
       st.floats(min_value=1, max_value=600), st.floats(min_value=1, max_value=90))
def test_flapping_prices_never_ping_pong_within_the_cooldown(
        steps: list[tuple[float, float]], cooldown: float, threshold: float) -> None:
    """Two clusters whose prices change every 10 s: a CostAware workload moves at most once per cooldown."""
    policy = Policy("CostAware", threshold, cooldown)
    where, last_move, moves = "a", 0.0, []
    for i, (pa, pb) in enumerate(steps):
        now = 10.0 * (i + 1)
        price = {"a": pa, "b": pb}
        other = "b" if where == "a" else "a"
        move = should_migrate(Current(where, "H100-80GB", price[where]),
                              [Alternative(other, "H100-80GB", price[other], 50.0)],
                              policy, History(last_move_at=last_move), Limits(), now)
        if move is not None:
            assert move.trigger == Trigger.COST and move.target is not None
            assert (price[where] - price[other]) / price[where] * 100 >= threshold
            where, last_move = move.target.cluster, now
            moves.append(now)
    for earlier, later in itertools.pairwise(moves):
        assert later - earlier >= cooldown


@settings(max_examples=500)
@given(st.one_of(currents, settled_currents), priced_alternatives, st.one_of(policies, cost_policies),
       st.one_of(histories, recent_histories))
def test_a_cost_move_goes_to_the_cheapest_feasible_alternative(
        current: Current, alts: list[Alternative], policy: Policy, history: History) -> None:
    now = 10_000.0
    move = should_migrate(current, alts, policy, history, Limits(), now)
    if move is None or move.trigger != Trigger.COST:
        return
    assert move.target is not None and move.target in alts
    elsewhere = [a for a in alts if a.cluster != current.cluster and not math.isnan(a.price_base)]
    cheapest = min(a.price_base for a in elsewhere)
    assert move.target.price_base == cheapest
    assert move.target.score == max(a.score for a in elsewhere if a.price_base == cheapest)
    saved = savings_percent(current.price_base, move.target.price_base)
    assert saved >= policy.min_savings_percent and saved > 0
    assert history.last_move_at is None or now - history.last_move_at >= policy.cooldown_seconds
    if history.last_failed_at is not None:
        assert now - history.last_failed_at >= move_backoff(policy, history, Limits())


@settings(max_examples=300)
@given(st.sampled_from(CLUSTERS), prices, priced_alternatives, st.floats(min_value=0, max_value=100))
def test_a_cheap_enough_alternative_always_moves_a_cost_aware_workload(
        here: str, price: float, alts: list[Alternative], threshold: float) -> None:
    """Wherever the cheapest alternative sits in the scheduler's order, its saving alone decides the move."""
    current = Current(here, "H100-80GB", price)
    move = should_migrate(current, alts, Policy("CostAware", threshold, 0), History(), Limits(), 10_000.0)
    priced = [a for a in alts if a.cluster != here and not math.isnan(a.price_base)]
    saved = savings_percent(price, min((a.price_base for a in priced), default=math.nan))
    if saved > 0 and saved >= threshold:
        assert move is not None and move.trigger == Trigger.COST and move.target is not None
        assert move.target.price_base == min(a.price_base for a in priced)
    else:
        assert move is None


@settings(max_examples=500)
@given(currents, priced_alternatives, policies, st.one_of(histories, recent_histories))
def test_failure_driven_moves_ignore_the_failed_moves(
        current: Current, alts: list[Alternative], policy: Policy, history: History) -> None:
    """Drift, loss and capacity failover decide the same with or without failed moves in the history."""
    clean = replace(history, failed_moves=0, last_failed_at=None, failed_targets=frozenset())
    with_failures = should_migrate(current, alts, policy, history, Limits(), 10_000.0)
    without = should_migrate(current, alts, policy, clean, Limits(), 10_000.0)
    if (with_failures is not None and with_failures.trigger in FAILURE_DRIVEN) or \
            (without is not None and without.trigger in FAILURE_DRIVEN):
        assert with_failures == without


@settings(max_examples=500)
@given(settled_currents, priced_alternatives, st.one_of(policies, cost_policies), recent_histories)
def test_no_voluntary_move_to_a_target_that_just_failed(
        current: Current, alts: list[Alternative], policy: Policy, history: History) -> None:
    now = 10_000.0
    move = should_migrate(current, alts, policy, history, Limits(), now)
    if move is None or move.target is None or move.trigger in FAILURE_DRIVEN:
        return
    if history.last_failed_at is not None and now - history.last_failed_at < move_backoff(policy, history, Limits()):
        assert move.target.cluster not in history.failed_targets
        assert move.trigger != Trigger.COST


@settings(max_examples=200)
@given(st.floats(min_value=0, max_value=3600), st.floats(min_value=1, max_value=120),
       st.floats(min_value=600, max_value=20_000), st.integers(min_value=2, max_value=400))
def test_a_target_that_keeps_failing_is_retried_ever_more_rarely(
        cooldown: float, min_interval: float, cap: float, steps: int) -> None:
    """A cheaper cluster whose moves always fail: each retry waits twice as long as the one before, up to the cap."""
    limits = Limits(min_move_interval=min_interval, max_move_backoff=cap)
    policy = Policy("CostAware", 10, cooldown)
    here, cheap = Current("a", "H100-80GB", 500), Alternative("b", "H100-80GB", 100, 50)
    history = History(last_move_at=0.0)
    attempts: list[float] = []
    for i in range(steps):
        now = 60.0 * (i + 1)
        move = should_migrate(here, [cheap], policy, history, limits, now)
        if move is None:
            continue
        assert move.trigger == Trigger.COST and move.target == cheap
        attempts.append(now)
        history = replace(history, failed_moves=history.failed_moves + 1, last_failed_at=now,
                          failed_targets=history.failed_targets | {cheap.cluster})
    base = max(cooldown, min_interval)
    for n, (earlier, later) in enumerate(itertools.pairwise(attempts), start=1):
        assert later - earlier >= max(base, min(cap, base * 2 ** (n - 1)))
