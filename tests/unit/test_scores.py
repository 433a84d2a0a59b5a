"""Score plugins: price (cheaper better) and availability (more free better), both in [0, 100]."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import cluster, cycle, workload
from tenbin.scheduling.plugins import AvailabilityScore, PriceScore


@pytest.mark.parametrize("prices", [[480, 520, 300], [100, 100], [0, 50], [1]])
def test_price_score(prices: list[float]) -> None:
    fleet = [cluster(f"c{i}", gpus=[("H100-80GB", 8, p, "JPY")]) for i, p in enumerate(prices)]
    cy = cycle(workload(), fleet)
    s = PriceScore().score(cy, np.arange(len(prices)))
    assert np.all((s >= 0) & (s <= 100))
    cheapest = min(prices)
    for i, p in enumerate(prices):
        assert s[i] == pytest.approx(100.0 if p == cheapest else 100.0 * cheapest / p)
    assert list(np.argsort(-s, kind="stable")) == sorted(range(len(prices)), key=lambda i: prices[i])


@pytest.mark.parametrize("frees", [[16, 8, 4], [3, 3], [1]])
def test_availability_score(frees: list[int]) -> None:
    fleet = [cluster(f"c{i}", gpus=[("H100-80GB", f, 1, "JPY")]) for i, f in enumerate(frees)]
    cy = cycle(workload(), fleet)
    s = AvailabilityScore().score(cy, np.arange(len(frees)))
    assert np.all((s >= 0) & (s <= 100))
    assert s.max() == 100.0
    for i, f in enumerate(frees):
        assert s[i] == pytest.approx(100.0 * f / max(frees))
