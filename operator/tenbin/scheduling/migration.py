"""Should a placed workload move, and where? A pure function of the situation and the clock.

`should_migrate` sees the current placement (reachability, pending time, rule violations, requests),
the feasible alternatives the scheduler found (best first), the workload's migration policy, its
move history and `now`. It never invents a target: a target is always one of the feasible
alternatives given, so a move can never cross a residency line the filters enforce.

Priorities, highest first:
1. ResidencyDrift   — the current cluster breaks the workload's residency rules. Mandatory, whatever
                      the policy (even `Never`): move to a compliant cluster, or stop the work.
2. `Never`          — nothing else moves the workload.
3. ClusterLost      — the member has been unreachable for `cluster_lost_after` seconds.
4. CapacityFailover — the member has left the pods unschedulable for `pending_timeout` seconds;
                      clusters that already failed the workload are skipped; at most `max_failovers`.
5. Evacuation       — the cluster is cordoned and an evacuation was requested: to the best other cluster.
6. Requested        — the workload asked to be re-placed now: it moves to the best other cluster.
7. Cost             — `CostAware` only: the *cheapest* feasible alternative (lowest price in the base
                      currency; an unknown price never wins; equal prices: the higher score), when it
                      is cheaper by at least `min_savings_percent` (and cheaper at all), at least
                      `cooldown_seconds` after the last move (or the placement), and outside the
                      backoff after a failed move.
Failure-driven moves (3, 4) also wait `min_move_interval` after the last move, so a flapping fleet
cannot bounce a workload around.

Backoff after a failed move (a `MigrationFailed` in the history: the target never became ready). With
n failed moves in a row since the last completed move or placement, the backoff lasts
`max(cooldown_seconds, min_move_interval) * 2**(n-1)` seconds from the last failure, at most
`max_move_backoff` (but never less than the first step). Within it:
- no Cost move at all (a cheaper price is no reason to retry at once what just failed);
- Evacuation and Requested still move — someone asked — but never to a target that failed within
  the backoff (Requested without another target does not move; Evacuation reports no target);
- the failure-driven moves (1, 3, 4) ignore failed moves entirely: drift is mandatory, and a lost or
  full cluster is not made better by waiting. They keep their own limits above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Trigger(StrEnum):
    RESIDENCY_DRIFT = "ResidencyDrift"
    CLUSTER_LOST = "ClusterLost"
    CAPACITY_FAILOVER = "CapacityFailover"
    EVACUATION = "Evacuation"
    REQUESTED = "Requested"
    COST = "Cost"


@dataclass(frozen=True)
class Current:
    cluster: str
    model: str
    price_base: float
    """Price per GPU-hour now, in the base currency (NaN when unknown)."""
    reachable: bool = True
    unreachable_for: float = 0.0
    pending_for: float = 0.0
    """Seconds the member has reported the workload's pods unschedulable (0 when they run)."""
    residency_violations: tuple[str, ...] = ()
    evacuating: bool = False
    replace_requested: bool = False


@dataclass(frozen=True)
class Alternative:
    cluster: str
    model: str
    price_base: float
    score: float


@dataclass(frozen=True)
class Policy:
    policy: str = "OnFailure"  # Never | OnFailure | CostAware
    min_savings_percent: float = 20.0
    cooldown_seconds: float = 1800.0


@dataclass(frozen=True)
class History:
    last_move_at: float | None = None
    """When the workload last moved, or was placed (epoch seconds)."""
    failovers: int = 0
    failed_clusters: frozenset[str] = frozenset()
    """Sources of completed CapacityFailover moves."""
    failed_moves: int = 0
    """Failed moves (MigrationFailed) in a row since the last completed move or placement."""
    last_failed_at: float | None = None
    """When the last of those failed (epoch seconds); None: no failed move since the last move."""
    failed_targets: frozenset[str] = frozenset()
    """The targets of those failed moves."""


@dataclass(frozen=True)
class Limits:
    cluster_lost_after: float = 30.0
    pending_timeout: float = 120.0
    max_failovers: int = 3
    min_move_interval: float = 30.0
    max_move_backoff: float = 6 * 3600.0
    """The longest backoff after failed moves in a row (unless the first step is longer)."""


@dataclass(frozen=True)
class Move:
    trigger: Trigger
    target: Alternative | None
    """None: no feasible cluster to go to (a mandatory move then stops the work)."""
    mandatory: bool
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.trigger}: {self.detail}"


def _first(alternatives: Sequence[Alternative], current: Current, exclude: frozenset[str] = frozenset()
           ) -> Alternative | None:
    for a in alternatives:
        if a.cluster != current.cluster and a.cluster not in exclude:
            return a
    return None


def _cheapest(alternatives: Sequence[Alternative], current: Current) -> Alternative | None:
    """The lowest-priced alternative elsewhere; unknown (NaN) prices never win; equal prices: higher score,
    then the earlier one (the scheduler's order)."""
    best: Alternative | None = None
    for a in alternatives:
        if a.cluster == current.cluster or math.isnan(a.price_base):
            continue
        if best is None or (a.price_base, -a.score) < (best.price_base, -best.score):
            best = a
    return best


def move_backoff(policy: Policy, history: History, limits: Limits) -> float:
    """Seconds after the last failed move during which voluntary moves hold back (0: no failed move)."""
    if history.last_failed_at is None:
        return 0.0
    first = max(policy.cooldown_seconds, limits.min_move_interval)
    n = max(1, history.failed_moves)
    return max(first, min(limits.max_move_backoff, first * 2.0 ** min(n - 1, 64)))


def savings_percent(current_price: float, target_price: float) -> float:
    if not current_price > 0 or target_price != target_price or current_price != current_price:
        return 0.0
    return (current_price - target_price) / current_price * 100.0


def should_migrate(current: Current, alternatives: Sequence[Alternative], policy: Policy, history: History,
                   limits: Limits, now: float) -> Move | None:
    """The move to make now, or None. `alternatives`: feasible candidates, best first."""
    if current.residency_violations:
        target = _first(alternatives, current)
        return Move(Trigger.RESIDENCY_DRIFT, target, True,
                    f"{current.cluster} no longer satisfies the residency rules: "
                    + "; ".join(current.residency_violations))
    if policy.policy == "Never":
        return None

    since_move = None if history.last_move_at is None else now - history.last_move_at
    settled = since_move is None or since_move >= limits.min_move_interval

    if not current.reachable and current.unreachable_for >= limits.cluster_lost_after and settled:
        return Move(Trigger.CLUSTER_LOST, _first(alternatives, current), False,
                    f"{current.cluster} unreachable for {current.unreachable_for:.0f}s")
    if current.pending_for >= limits.pending_timeout and settled:
        if history.failovers >= limits.max_failovers:
            return None
        target = _first(alternatives, current, history.failed_clusters)
        if target is not None:
            return Move(Trigger.CAPACITY_FAILOVER, target, False,
                        f"pods unschedulable on {current.cluster} for {current.pending_for:.0f}s")
        return None

    # voluntary moves from here on: held back after a failed move
    backoff = move_backoff(policy, history, limits)
    since_failure = None if history.last_failed_at is None else now - history.last_failed_at
    backing_off = since_failure is not None and since_failure < backoff
    skip = history.failed_targets if backing_off else frozenset()
    skipped = ""
    if skip:
        skipped = (f"; not to {', '.join(sorted(skip))}: a move there failed {since_failure:.0f}s ago "
                   f"(backing off {backoff:.0f}s)")
    if current.evacuating:
        target = _first(alternatives, current, skip)
        return Move(Trigger.EVACUATION, target, False,
                    f"{current.cluster} is cordoned and being evacuated" + (skipped if target is None else ""))
    if current.replace_requested:
        target = _first(alternatives, current, skip)
        if target is None:
            return None
        return Move(Trigger.REQUESTED, target, False, "re-placement requested on the AIWorkload")
    if policy.policy == "CostAware" and not backing_off:
        if since_move is not None and since_move < policy.cooldown_seconds:
            return None
        cheapest = _cheapest(alternatives, current)
        if cheapest is None:
            return None
        saved = savings_percent(current.price_base, cheapest.price_base)
        if saved > 0 and saved >= policy.min_savings_percent:
            return Move(Trigger.COST, cheapest, False,
                        f"{cheapest.cluster} is {saved:.0f}% cheaper ({cheapest.price_base:g} vs "
                        f"{current.price_base:g} per GPU-hour; threshold {policy.min_savings_percent:g}%)")
    return None
