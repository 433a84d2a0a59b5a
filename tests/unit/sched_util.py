"""Run one filter/score plugin on a small fleet (shared by the per-plugin test files)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tenbin.api import AIWorkload, GPUCluster
from tenbin.scheduling import EffectivePolicy, Scheduler, Snapshot, WorkloadRequest
from tenbin.scheduling.framework import Cycle
from tenbin.scheduling.reasons import Reason

POLICY = EffectivePolicy(rates={"JPY": 1.0, "USD": 150.0})


def cycle(w: AIWorkload | WorkloadRequest, clusters: Sequence[GPUCluster],
          policy: EffectivePolicy = POLICY) -> Cycle:
    req = w if isinstance(w, WorkloadRequest) else WorkloadRequest.from_api(w)
    snap = Snapshot(clusters)
    return Scheduler(policy)._cycle(req, snap, snap.free)


def run_filter(plugin: object, w: AIWorkload | WorkloadRequest, clusters: Sequence[GPUCluster],
               policy: EffectivePolicy = POLICY) -> dict[tuple[str, str], tuple[Reason, ...]]:
    """(cluster, model) -> reasons for every candidate; empty tuple = passes."""
    cy = cycle(w, clusters, policy)
    mask = plugin.filter(cy)  # type: ignore[attr-defined]
    rows = np.flatnonzero(~mask)
    groups, inverse = plugin.explain(cy, rows)  # type: ignore[attr-defined]
    out = {(cy.snap.cluster_name(r), cy.snap.model_name(r)): () for r in range(cy.snap.n_rows)}
    for r, g in zip(rows.tolist(), inverse.tolist(), strict=True):
        out[(cy.snap.cluster_name(r), cy.snap.model_name(r))] = groups[g]
        assert groups[g], "a rejected candidate must have at least one reason"
    return out
