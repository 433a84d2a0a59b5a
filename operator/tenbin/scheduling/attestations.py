"""Residency labels the PlacementPolicy vouches for, until a date (`spec.attestations`).

A label that any attestation names is the policy's from then on: a GPUCluster holds it exactly while an
attestation that covers the cluster (by name, or by its provider) has not lapsed; the cluster's own
`residencyLabels` entry for it no longer counts. Every other label is the cluster's own, as before. The core
sees the clusters as `attested` returns them, so a lapse is residency drift like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from tenbin.api import GPUCluster, PlacementPolicy
from tenbin.api.policy import Attestation


def covers(a: Attestation, cluster: GPUCluster) -> bool:
    return cluster.metadata.name in a.clusters or (cluster.spec.provider or "") in a.providers


def _lists(policy: PlacementPolicy | None) -> list[Attestation]:
    return list(policy.spec.attestations) if policy is not None else []


def attested(clusters: Iterable[GPUCluster], policy: PlacementPolicy | None,
             now: datetime) -> tuple[list[GPUCluster], datetime | None]:
    """The clusters with their residency labels as the attestations say at `now`, and the next instant at
    which that changes (the earliest lapse still ahead; None when none is)."""
    atts = _lists(policy)
    clusters = list(clusters)
    if not atts:
        return clusters, None
    theirs = {a.label for a in atts}
    out = []
    for c in clusters:
        own = [lab for lab in c.spec.residency_labels if lab not in theirs]
        vouched = sorted({a.label for a in atts if covers(a, c) and now < a.valid_until})
        labels = own + [lab for lab in vouched if lab not in own]
        if labels != list(c.spec.residency_labels):
            c = c.model_copy(update={"spec": c.spec.model_copy(update={"residency_labels": labels})})
        out.append(c)
    ahead = [a.valid_until for a in atts if a.valid_until > now]
    return out, min(ahead) if ahead else None


def lapsing(cluster: GPUCluster, policy: PlacementPolicy | None, now: datetime) -> Sequence[Attestation]:
    """The attestations covering the cluster that lapse within the policy's warning window from `now` (not
    yet lapsed)."""
    if policy is None:
        return ()
    window = timedelta(days=policy.spec.attestation_warning_days)
    return [a for a in _lists(policy) if covers(a, cluster) and now < a.valid_until <= now + window]
