from __future__ import annotations

import pytest

from helpers import cluster, run_filter, workload
from tenbin.scheduling import reasons as R
from tenbin.scheduling.plugins import CapacityFilter
from tenbin.scheduling.snapshot import free_gpus


@pytest.mark.parametrize(
    ("count", "replicas", "spec_count", "inventory"),
    [
        (8, 1, 8, None),       # exactly fits
        (8, 2, 8, None),       # gang of 16 does not fit in 8
        (4, 2, 16, {"H100-80GB": 7}),   # live inventory wins over spec count
        (1, 1, 16, {"H100-80GB": 0}),
        (1, 1, 16, {"OTHER": 16}),      # inventory without the model: 0 free
        (1, 3, 2, None),
    ],
)
def test_gang_capacity(count: int, replicas: int, spec_count: int, inventory: dict[str, int] | None) -> None:
    c = cluster("c", gpus=[("H100-80GB", spec_count, 1, "JPY")], inventory=inventory)
    free = free_gpus(c)["H100-80GB"]
    assert free == (spec_count if inventory is None else inventory.get("H100-80GB", 0))
    need = count * replicas
    got = run_filter(CapacityFilter(), workload(count=count, replicas=replicas), [c])
    assert got[("c", "H100-80GB")] == (() if free >= need else (R.insufficient("H100-80GB", free, need),))
