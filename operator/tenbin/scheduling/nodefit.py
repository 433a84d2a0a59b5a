"""Node-level admission: how many more pods of one size can be promised so that every promised pod fits a node.

The core counts GPUs per (cluster, model). A member's scheduler places pods on *nodes*, one at a time, in an
order and a spread Tenbin does not control (the default scoring spreads pods over the least allocated
nodes). Two quick 1-GPU placements on two empty 8-GPU nodes can be spread one per node, after which an
8-GPU pod promised in between fits nowhere and stays Pending. So a promise must hold for *any* binding
order of the pods placed but not yet bound.

The rule (sufficient, and exact when nothing is pending): for every pod size ``c`` among the pods promised
but not bound, and the new ones,

    S_c - sum over pending pods p of another size of ceil(size_p / c)  >=  pods of size c

where ``S_c = sum_i floor(free_i / c)`` counts the ``c``-sized slots of the nodes. Binding a pod of size ``s``
anywhere removes at most ``ceil(s / c)`` such slots, and a pod of size ``c`` removes exactly one, so when the
last ``c``-sized pod binds a slot is still there, whatever the order. A size whose pods cannot all fit
even alone (e.g. GPUs taken by pods Tenbin did not place) is not made a reason to refuse others: those pods
wait for capacity failover, and the new pods are checked against every other size.

Assumption, stated where the promise is made (README): no pod outside Tenbin's placements takes the GPUs
of a member between two of its observations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def slots(frees: Iterable[int], size: int) -> int:
    """Pods of `size` GPUs the nodes can hold side by side: each node holds floor(free / size)."""
    return sum(f // size for f in frees if f > 0)


def admissible(frees: Iterable[int], pending: Mapping[int, int], size: int) -> int:
    """How many more pods of `size` GPUs fit on nodes with these free GPUs, next to the `pending` pods
    (GPUs per pod -> how many) promised but not yet bound, in any order the member binds them."""
    if size <= 0:
        return 0
    frees = [f for f in frees if f > 0]
    waiting = {s: n for s, n in pending.items() if n > 0 and s > 0}

    def room(c: int, among: Mapping[int, int]) -> int:
        others = sum(-(-s // c) * n for s, n in among.items() if s != c)
        return slots(frees, c) - others - among.get(c, 0)

    # sizes whose pods cannot all fit even with nothing else pending (the member's GPUs were taken by pods
    # Tenbin did not place) wait for capacity failover; they neither count against the others nor make a
    # reason to refuse them
    stuck = {c for c, n in waiting.items() if slots(frees, c) < n}
    live = {s: n for s, n in waiting.items() if s not in stuck}
    if size in stuck:
        return 0
    best: int | None = None
    for c in set(live) | {size}:
        cost = 1 if c == size else -(-size // c)  # slots of size c one new pod can take
        k = max(0, room(c, live)) // cost
        best = k if best is None else min(best, k)
    return best or 0
