"""The plugin framework: plugin protocols, the registry, profiles, the per-decision cycle and its results.

As in kube-scheduler, *registration* (name -> factory, `Registry`) is separate from *configuration*
(which plugins run, in which order: `Profile`); weights come from the policy or the workload at decision
time. Filter plugins return a pass mask and can explain any rejected row; the runner keeps every
plugin's mask, so a Diagnosis holds every failing reason of every candidate, not just the first.
Score plugins return scores in [0, 100] for the feasible rows; the runner checks the range, applies the
weights and keeps the plugins x candidates matrix for the breakdown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tenbin.api import PlacementStatus, Tier
from tenbin.scheduling.inputs import ClassificationRule, EffectivePolicy, WorkloadRequest
from tenbin.scheduling.reasons import Reason
from tenbin.scheduling.snapshot import BoolArray, FloatArray, IntArray, Snapshot


@dataclass
class Cycle:
    """Everything one decision looks at. Built by the Scheduler; plugins only read it."""

    snap: Snapshot
    req: WorkloadRequest
    policy: EffectivePolicy
    free: IntArray
    """Free GPUs per row for this decision (after reservations and earlier placements)."""
    price_base: FloatArray
    """Price per GPU-hour per row in the base currency; NaN when the currency has no rate."""
    rule: ClassificationRule
    budget_base: float | None
    """Budget in the base currency; None = no budget; NaN = budget currency without a rate."""


Explanation = tuple[list[tuple[Reason, ...]], IntArray]
"""(distinct reason tuples, index into them per explained row)."""


class FilterPlugin(Protocol):
    """A filter. Optional class attributes for the summary: `shadows_in_summary = True` means a candidate
    this plugin rejects was not what the workload asked for, so the reasons of `model_specific = True`
    plugins (capacity, price of that model) are left out of the summary for it."""

    name: str

    def filter(self, cy: Cycle) -> BoolArray:
        """True for every row that passes."""
        ...

    def explain(self, cy: Cycle, rows: IntArray) -> Explanation:
        """The reasons each of `rows` (all rejected by this plugin) fails, grouped."""
        ...


class ScorePlugin(Protocol):
    name: str

    def score(self, cy: Cycle, rows: IntArray) -> FloatArray:
        """Scores in [0, 100] for the feasible `rows` (higher is better)."""
        ...


def grouped(keys: npt.ArrayLike, render: Callable[[npt.NDArray[Any]], tuple[Reason, ...]]) -> Explanation:
    """Explain rows by distinct key: `render` runs once per distinct key row, not once per row."""
    k = np.asarray(keys)
    if k.ndim == 1:
        k = k[:, None]
    if len(k) == 0:
        return [], np.zeros(0, dtype=np.int64)
    if len(k) <= _SMALL:  # a dict over tuples beats np.unique(axis=0)'s structured sort on small inputs
        index: dict[tuple[Any, ...], int] = {}
        inv = [index.setdefault(tuple(row), len(index)) for row in k.tolist()]
        firsts = list(index)
        return [render(np.asarray(u, dtype=k.dtype)) for u in firsts], np.asarray(inv, dtype=np.int64)
    uniq, inverse = np.unique(k, axis=0, return_inverse=True)
    return [render(u) for u in uniq], inverse.reshape(-1).astype(np.int64)


_SMALL = 2048


class PluginError(RuntimeError):
    """A plugin broke its contract (e.g. a score outside [0, 100]); a bug, not a scheduling outcome."""


# ---- registry and profile ---------------------------------------------------------------------------------

FilterFactory = Callable[[Mapping[str, Any]], FilterPlugin]
ScoreFactory = Callable[[Mapping[str, Any]], ScorePlugin]


@dataclass
class Registry:
    """Plugin name -> factory(args). Configuration (which plugins, in what order) lives in a Profile."""

    filters: dict[str, FilterFactory] = field(default_factory=dict)
    scores: dict[str, ScoreFactory] = field(default_factory=dict)

    def register_filter(self, name: str, factory: FilterFactory) -> None:
        if name in self.filters:
            raise ValueError(f"filter plugin {name!r} already registered")
        self.filters[name] = factory

    def register_score(self, name: str, factory: ScoreFactory) -> None:
        if name in self.scores:
            raise ValueError(f"score plugin {name!r} already registered")
        self.scores[name] = factory


@dataclass(frozen=True)
class PluginSpec:
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    """Which plugins run, in order. Weights are not here: they come from the policy or the workload."""

    filters: tuple[PluginSpec, ...]
    scores: tuple[PluginSpec, ...]

    @classmethod
    def of(cls, filters: Sequence[str], scores: Sequence[str]) -> Profile:
        return cls(tuple(PluginSpec(n) for n in filters), tuple(PluginSpec(n) for n in scores))


# ---- results ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoreTerm:
    plugin: str
    score: float
    """Normalized score in [0, 100]."""
    weight: float


@dataclass(frozen=True)
class Candidate:
    """A feasible (cluster, model) pair with its score and the per-plugin breakdown."""

    cluster: str
    model: str
    tier: Tier
    jurisdiction: str
    memory_gib: float
    free: int
    price: float
    currency: str
    price_base: float
    score: float
    breakdown: tuple[ScoreTerm, ...]

    def explain(self) -> str:
        """'score 87.5 = price 100.0×0.50 + availability 75.0×0.50' (weights as shares of their sum)."""
        wsum = sum(t.weight for t in self.breakdown)
        if not self.breakdown or wsum <= 0:
            return f"score {self.score:.1f} (all weights 0)"
        terms = " + ".join(f"{t.plugin} {t.score:.1f}×{t.weight / wsum:.2f}" for t in self.breakdown)
        return f"score {self.score:.1f} = {terms}"


MAX_DETAILS = 2


SPEC_RULES = frozenset({"selector", "residency", "model"})
"""The filter plugins whose verdict only an edit changes (of the workload, a GPUCluster or the policy)."""


class Diagnosis:
    """Why candidates were rejected: every failing reason of every rejected candidate (computed lazily)."""

    def __init__(self, cy: Cycle, filters: Sequence[FilterPlugin], masks: Sequence[BoolArray],
                 feasible: BoolArray) -> None:
        self._cy = cy
        self._filters = tuple(filters)
        self._masks = tuple(masks)
        self.feasible = feasible
        snap = cy.snap
        self.total_clusters = len(snap.clusters)
        fits = np.zeros(self.total_clusters, dtype=np.bool_)
        if len(feasible):
            fits[snap.cluster[feasible]] = True
        self._cluster_fits = fits
        self.fit_clusters = int(fits.sum())

    # every reason of every rejected candidate, in plugin order
    @cached_property
    def reasons(self) -> dict[tuple[str, str], tuple[Reason, ...]]:
        snap = self._cy.snap
        acc: dict[int, list[Reason]] = {}
        for plugin, mask in zip(self._filters, self._masks, strict=True):
            rows = np.flatnonzero(~mask)
            if not len(rows):
                continue
            groups, inverse = plugin.explain(self._cy, rows)
            for row, g in zip(rows.tolist(), inverse.tolist(), strict=True):
                acc.setdefault(row, []).extend(groups[g])
        return {(snap.cluster_name(r), snap.model_name(r)): tuple(v) for r, v in sorted(acc.items())}

    def rejected_by(self, plugin: str) -> list[tuple[str, str]]:
        snap = self._cy.snap
        for p, mask in zip(self._filters, self._masks, strict=True):
            if p.name == plugin:
                return [(snap.cluster_name(r), snap.model_name(r)) for r in np.flatnonzero(~mask).tolist()]
        raise KeyError(plugin)

    @cached_property
    def categories(self) -> list[tuple[str, int, list[str]]]:
        """(category, clusters, details) over clusters with no feasible candidate, most common first."""
        snap = self._cy.snap
        unfit_row = ~self._cluster_fits[snap.cluster] if snap.n_rows else np.zeros(0, np.bool_)
        # category -> (clusters, detail -> clusters); dicts keep first-seen order for stable ties
        per_cat: dict[str, tuple[set[int], dict[str, set[int]]]] = {}
        # "insufficient H200" is noise when only H100 was requested: model-specific reasons of a model
        # that was not asked for stay out of the summary (`reasons` still has everything).
        shadow = np.zeros(snap.n_rows, dtype=np.bool_)
        for plugin, mask in zip(self._filters, self._masks, strict=True):
            if getattr(plugin, "shadows_in_summary", False):
                shadow |= ~mask
        n_cl = max(self.total_clusters, 1)
        for plugin, mask in zip(self._filters, self._masks, strict=True):
            sel = ~mask & unfit_row
            if getattr(plugin, "model_specific", False):
                sel &= ~shadow
            rows = np.flatnonzero(sel)
            if not len(rows):
                continue
            groups, inverse = plugin.explain(self._cy, rows)
            # distinct (group, cluster) pairs in one sort, instead of one scan of `rows` per group
            pairs = np.unique(inverse * n_cl + snap.cluster[rows])
            bounds = np.flatnonzero(np.diff(pairs // n_cl)) + 1
            for chunk in np.split(pairs, bounds):
                cl = set((chunk % n_cl).tolist())
                for r in groups[int(chunk[0] // n_cl)]:
                    entry = per_cat.get(r.category)
                    if entry is None:
                        entry = per_cat[r.category] = (set(), {})
                    entry[0].update(cl)
                    if r.detail:
                        entry[1].setdefault(r.detail, set()).update(cl)
        order = {cat: i for i, cat in enumerate(per_cat)}
        out = []
        for cat, (cl, details) in per_cat.items():
            ranked = sorted(details, key=lambda d: (-len(details[d]), d))
            out.append((cat, len(cl), ranked))
        out.sort(key=lambda x: (-x[1], order[x[0]]))
        return out

    @cached_property
    def no_capacity_helps(self) -> bool:
        """No cluster fits, and every candidate is ruled out by a rule capacity cannot change (residency, the
        cluster selector, GPU model or memory): only an edit of the workload or the fleet helps. Budget is not
        such a rule (prices change), nor is an empty fleet (clusters are added)."""
        reasons = self.reasons
        return self.fit_clusters == 0 and bool(reasons) and all(
            any(r.plugin in SPEC_RULES for r in rs) for rs in reasons.values())

    def summary(self) -> str:
        """'0/5 clusters fit: 2 residency (jurisdiction US not in [JP]), 1 insufficient H100-80GB (free 4 < 8)'."""
        head = f"{self.fit_clusters}/{self.total_clusters} clusters fit"
        if self.total_clusters == 0:
            return head + ": no GPUClusters"
        parts = []
        for cat, n, details in self.categories:
            shown = details[:MAX_DETAILS]
            more = len(details) - len(shown)
            inner = "; ".join(shown) + (f"; +{more} more" if more else "")
            parts.append(f"{n} {cat}" + (f" ({inner})" if inner else ""))
        return head + (": " + ", ".join(parts) if parts else "")

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class Decision:
    """The outcome for one workload: the chosen candidate (or None), the best few, and the diagnosis."""

    workload: str
    gpus: int
    base_currency: str
    chosen: Candidate | None
    top: tuple[Candidate, ...]
    diagnosis: Diagnosis

    @property
    def scheduled(self) -> bool:
        return self.chosen is not None

    @property
    def score(self) -> float | None:
        return None if self.chosen is None else self.chosen.score

    def placement_status(self) -> PlacementStatus | None:
        """The `status.placement` the operator writes for this decision (price in the base currency)."""
        c = self.chosen
        if c is None:
            return None
        return PlacementStatus(
            cluster=c.cluster, tier=c.tier, jurisdiction=c.jurisdiction, gpu_model=c.model,
            price_per_gpu_hour=round(c.price_base, 4), currency=self.base_currency,
            score=round(c.score, 2), gpus=self.gpus,
        )

    @property
    def reason(self) -> str:
        """One line: the score breakdown and runner-up when placed, the diagnosis when not."""
        d = self.diagnosis
        if self.chosen is None:
            return d.summary()
        c = self.chosen
        line = f"{d.fit_clusters}/{d.total_clusters} clusters fit; {c.explain()}"
        if len(self.top) > 1:
            r = self.top[1]
            line += f"; runner-up {r.cluster} {r.model} {r.score:.1f}"
        return line
