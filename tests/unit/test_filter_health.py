from __future__ import annotations

import pytest

from helpers import cluster, run_filter, workload
from tenbin.scheduling import reasons as R
from tenbin.scheduling.plugins import HealthFilter


@pytest.mark.parametrize(
    ("cordoned", "phase", "expected"),
    [
        (False, None, ()),
        (False, "Ready", ()),
        (True, None, (R.cordoned(),)),
        (False, "NotReady", (R.not_ready("NotReady"),)),
        (False, "Unknown", (R.not_ready("Unknown"),)),
        (True, "NotReady", (R.cordoned(), R.not_ready("NotReady"))),
    ],
)
def test_health(cordoned: bool, phase: str | None, expected: tuple[R.Reason, ...]) -> None:
    c = cluster("c", cordoned=cordoned, phase=phase, gpus=[("H100-80GB", 8, 1, "JPY"), ("L4-24GB", 8, 1, "JPY")])
    got = run_filter(HealthFilter(), workload(), [c])
    assert got == {("c", "H100-80GB"): expected, ("c", "L4-24GB"): expected}
