"""Node-level admission (`tenbin.scheduling.nodefit`): what it admits fits, in every binding order."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from tenbin.scheduling.nodefit import admissible, slots


@cache
def _can_strand(frees: tuple[int, ...], pods: tuple[int, ...]) -> bool:
    """Can an adversarial scheduler bind `pods` (sizes) onto nodes with `frees` so that one fits nowhere?"""
    if not pods:
        return False
    for i, size in enumerate(pods):
        rest = (*pods[:i], *pods[i + 1:])
        fits = [j for j, f in enumerate(frees) if f >= size]
        if not fits:
            return True
        for j in fits:
            after = tuple(sorted((*frees[:j], frees[j] - size, *frees[j + 1:])))
            if _can_strand(after, rest):
                return True
    return False


nodes = st.lists(st.integers(0, 8), min_size=1, max_size=3)
pending = st.dictionaries(st.sampled_from([1, 2, 3, 4, 8]), st.integers(0, 2), max_size=3)


@settings(max_examples=300, deadline=None)
@given(nodes, pending, st.sampled_from([1, 2, 3, 4, 8]))
def test_admitted_pods_fit_in_any_binding_order(frees: list[int], waiting: dict[int, int], size: int) -> None:
    k = admissible(frees, waiting, size)
    pods = tuple(sorted([s for s, n in waiting.items() for _ in range(n)] + [size] * k))
    already_stuck = _can_strand(tuple(sorted(frees)), tuple(sorted(s for s, n in waiting.items() for _ in range(n))))
    if not already_stuck:
        assert not _can_strand(tuple(sorted(frees)), pods), (frees, waiting, size, k)


@given(nodes, st.sampled_from([1, 2, 3, 4, 8]))
def test_with_nothing_pending_every_slot_is_admitted(frees: list[int], size: int) -> None:
    assert admissible(frees, {}, size) == slots(frees, size) == sum(f // size for f in frees)


def test_two_pending_small_pods_on_two_whole_nodes_leave_no_room_for_a_whole_node_pod() -> None:
    assert admissible([8, 8], {1: 2}, 8) == 0  # the member may spread them, one per node
    assert admissible([8, 8], {1: 1}, 8) == 1
    assert admissible([7, 7], {}, 8) == 0
    assert admissible([8, 8], {1: 2}, 1) == 14


def test_a_size_already_stuck_does_not_block_other_sizes() -> None:
    # an 8-GPU pod already waits for a node that is not there; 1-GPU pods still fit
    assert admissible([4], {8: 1}, 1) == 4
    assert admissible([4], {8: 1}, 8) == 0
