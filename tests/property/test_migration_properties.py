"""Migration decisions under arbitrary situations: never an infeasible target, no ping-pong."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from tenbin.scheduling.migration import Alternative, Current, History, Limits, Policy, Trigger, should_migrate

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
                      st.integers(min_value=0, max_value=5), st.frozensets(st.sampled_from(CLUSTERS)))


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
