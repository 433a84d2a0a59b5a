"""One columnar snapshot of the fleet: a row per (cluster, GPU model) candidate, numpy columns.

Rows are sorted by cluster name, then model, whatever order the clusters arrive in; so `argmax`
(first maximum) is the deterministic tie-break, and shuffling the input changes nothing.
String attributes are dictionary-encoded (an int column plus a vocabulary) and label sets become
one boolean column per label, so every filter is a handful of vector operations.

The snapshot is inventory only: prices stay in their own currency (converted per policy at decision
time), and reservations are applied per decision, so the operator rebuilds it only when the fleet
changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from tenbin.api import ClusterPhase, GPUCluster, Tier

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

TIERS: tuple[Tier, ...] = tuple(Tier)
TIER_CODE = {t: i for i, t in enumerate(TIERS)}
PHASES: tuple[str, ...] = ("", *(p.value for p in ClusterPhase))  # "" = no status.phase yet
PHASE_CODE = {p: i for i, p in enumerate(PHASES)}
K = TypeVar("K")


@dataclass(frozen=True)
class ClusterInfo:
    """Per-cluster attributes kept for explanations and results."""

    name: str
    tier: Tier
    jurisdiction: str
    operator_jurisdiction: str
    """"" when the GPUCluster does not declare it."""
    labels: Mapping[str, str]
    residency_labels: frozenset[str]
    phase: str
    cordoned: bool
    region: str = ""


def free_gpus(cluster: GPUCluster) -> dict[str, int]:
    """Free GPUs per offered model: status.gpus[].free when the status has an inventory, else spec count.

    With an inventory, a model the spec offers but the inventory does not list has 0 free.
    """
    inv = cluster.status.gpus if cluster.status is not None else None
    if inv is None:
        return {g.model: g.count for g in cluster.spec.gpus}
    live = {g.model: g.free for g in inv}
    return {g.model: live.get(g.model, 0) for g in cluster.spec.gpus}


class Vocab:
    """String <-> dense int code."""

    def __init__(self, items: Iterable[str] = ()) -> None:
        self.codes: dict[str, int] = {}
        self.items: list[str] = []
        for it in items:
            self.code(it)

    def code(self, item: str) -> int:
        c = self.codes.get(item)
        if c is None:
            c = self.codes[item] = len(self.items)
            self.items.append(item)
        return c

    def lookup(self, items: Iterable[str]) -> list[int]:
        """Codes of the known items (unknown ones cannot match any row and are skipped)."""
        return [self.codes[i] for i in items if i in self.codes]

    def __len__(self) -> int:
        return len(self.items)


class Snapshot:
    """Candidates (cluster x model) of a fleet as columns; immutable after build."""

    def __init__(self, clusters: Iterable[GPUCluster]) -> None:
        ordered = sorted(clusters, key=lambda c: c.metadata.name)
        names = [c.metadata.name for c in ordered]
        for a, b in pairwise(names):
            if a == b:
                raise ValueError(f"duplicate GPUCluster {a!r}")

        self.clusters: tuple[ClusterInfo, ...] = tuple(
            ClusterInfo(
                name=c.metadata.name,
                tier=c.spec.tier,
                jurisdiction=c.spec.jurisdiction,
                operator_jurisdiction=c.spec.operator_jurisdiction or "",
                labels=dict(c.metadata.labels),
                residency_labels=frozenset(c.spec.residency_labels),
                phase=(c.status.phase.value if c.status is not None and c.status.phase is not None else ""),
                cordoned=c.spec.cordoned,
                region=c.spec.region or "",
            )
            for c in ordered
        )
        self.models = Vocab()
        self.currencies = Vocab()
        self.jurisdictions = Vocab()

        cl_idx: list[int] = []
        model: list[int] = []
        memory: list[float] = []
        free: list[int] = []
        price: list[float] = []
        currency: list[int] = []
        res_rows: dict[str, list[int]] = {}
        kv_rows: dict[tuple[str, str], list[int]] = {}
        key_rows: dict[str, list[int]] = {}
        for ci, c in enumerate(ordered):
            frees = free_gpus(c)
            for g in sorted(c.spec.gpus, key=lambda g: g.model):
                row = len(cl_idx)
                cl_idx.append(ci)
                model.append(self.models.code(g.model))
                memory.append(float(g.memory_gib))
                free.append(frees[g.model])
                price.append(g.price_per_gpu_hour)
                currency.append(self.currencies.code(g.currency))
                for lab in c.spec.residency_labels:
                    res_rows.setdefault(lab, []).append(row)
                for k, v in c.metadata.labels.items():
                    kv_rows.setdefault((k, v), []).append(row)
                    key_rows.setdefault(k, []).append(row)

        n = len(cl_idx)
        self.n_rows = n
        self.cluster: IntArray = np.asarray(cl_idx, dtype=np.int64)
        self.model: IntArray = np.asarray(model, dtype=np.int64)
        self.memory: FloatArray = np.asarray(memory, dtype=np.float64)
        self.free: IntArray = np.asarray(free, dtype=np.int64)
        self.price: FloatArray = np.asarray(price, dtype=np.float64)
        self.currency: IntArray = np.asarray(currency, dtype=np.int64)
        per_cluster_tier = np.asarray([TIER_CODE[c.tier] for c in self.clusters], dtype=np.int64)
        per_cluster_jur = np.asarray([self.jurisdictions.code(c.jurisdiction) for c in self.clusters],
                                     dtype=np.int64)
        per_cluster_operator = np.asarray([self.jurisdictions.code(c.operator_jurisdiction) for c in self.clusters],
                                          dtype=np.int64)
        per_cluster_phase = np.asarray([PHASE_CODE[c.phase] for c in self.clusters], dtype=np.int64)
        per_cluster_cordoned = np.asarray([c.cordoned for c in self.clusters], dtype=np.bool_)
        self.tier: IntArray = per_cluster_tier[self.cluster] if n else np.zeros(0, np.int64)
        self.jurisdiction: IntArray = per_cluster_jur[self.cluster] if n else np.zeros(0, np.int64)
        self.operator_jurisdiction: IntArray = per_cluster_operator[self.cluster] if n else np.zeros(0, np.int64)
        """Codes in `jurisdictions`; the code of "" is an undeclared operator jurisdiction (never allowed)."""
        self.phase: IntArray = per_cluster_phase[self.cluster] if n else np.zeros(0, np.int64)
        self.cordoned: BoolArray = per_cluster_cordoned[self.cluster] if n else np.zeros(0, np.bool_)

        def cols(rows_by: Mapping[K, list[int]]) -> dict[K, BoolArray]:
            out: dict[K, BoolArray] = {}
            for k, rows in rows_by.items():
                col = np.zeros(n, dtype=np.bool_)
                col[rows] = True
                out[k] = col
            return out

        self._residency = cols(res_rows)  # label -> rows whose cluster holds it
        self._kv = cols(kv_rows)  # (key, value) -> rows whose cluster has that metadata label
        self._key = cols(key_rows)  # key -> rows whose cluster has that metadata label key
        self._false = np.zeros(n, dtype=np.bool_)
        self._row_of = {(self.clusters[c].name, self.models.items[m]): i
                        for i, (c, m) in enumerate(zip(cl_idx, model, strict=True))}

    # ---- column access -----------------------------------------------------------------------------
    def has_residency_label(self, label: str) -> BoolArray:
        return self._residency.get(label, self._false)

    def has_label(self, key: str, value: str) -> BoolArray:
        return self._kv.get((key, value), self._false)

    def has_label_key(self, key: str) -> BoolArray:
        return self._key.get(key, self._false)

    def row(self, cluster: str, model: str) -> int | None:
        return self._row_of.get((cluster, model))

    def cluster_name(self, row: int) -> str:
        return self.clusters[int(self.cluster[row])].name

    def model_name(self, row: int) -> str:
        return self.models.items[int(self.model[row])]

    def free_after(self, reserved: Mapping[tuple[str, str], int] | None) -> IntArray:
        """Free GPUs per row after subtracting GPUs already promised elsewhere (never below 0)."""
        if not reserved:
            return self.free
        free = self.free.copy()
        for (cluster, model), n in reserved.items():
            r = self.row(cluster, model)
            if r is not None:
                free[r] -= n
        np.maximum(free, 0, out=free)
        return free

    def __len__(self) -> int:
        return self.n_rows
