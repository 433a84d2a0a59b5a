"""The pure scheduling core: no Kopf, no Kubernetes client, no asyncio, no clock, no I/O.

Operator and `tenbin simulate` use:
    Scheduler(policy).place(workload, Snapshot(clusters), reserved=...)  -> Decision
    Scheduler(policy).place_all(workloads, snapshot)                    -> list[Decision]
    place(...), place_sequentially(...)                                 (one-shot helpers)
A Decision carries the chosen Candidate (or None), the top candidates with their per-plugin score
breakdown, and a Diagnosis with every failing reason of every rejected candidate.
"""

from tenbin.scheduling.framework import (
    Candidate,
    Cycle,
    Decision,
    Diagnosis,
    FilterPlugin,
    PluginError,
    PluginSpec,
    Profile,
    Registry,
    ScorePlugin,
    ScoreTerm,
)
from tenbin.scheduling.inputs import BUILTIN_RULES, ClassificationRule, EffectivePolicy, WorkloadRequest
from tenbin.scheduling.plugins import default_registry
from tenbin.scheduling.reasons import Reason, money
from tenbin.scheduling.scheduler import (
    DEFAULT_PROFILE,
    Scheduler,
    place,
    place_sequentially,
)
from tenbin.scheduling.snapshot import Snapshot, free_gpus

__all__ = [
    "BUILTIN_RULES",
    "DEFAULT_PROFILE",
    "Candidate",
    "ClassificationRule",
    "Cycle",
    "Decision",
    "Diagnosis",
    "EffectivePolicy",
    "FilterPlugin",
    "PluginError",
    "PluginSpec",
    "Profile",
    "Reason",
    "Registry",
    "Scheduler",
    "ScorePlugin",
    "ScoreTerm",
    "Snapshot",
    "WorkloadRequest",
    "default_registry",
    "free_gpus",
    "money",
    "place",
    "place_sequentially",
]
