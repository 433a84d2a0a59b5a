"""The workload kinds Tenbin knows, one row each: where the pod template is, how the kind's phase is
read, how it moves, and whether members are listed for it before any template of it was applied.

Any other kind runs too: its pods are found by their label wherever its templates are
(`services.member_objects.pod_templates`), its phase is what those pods show, and it moves as run-once
work does (stopped before it starts elsewhere: never two copies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class WorkloadKind:
    api_version: str
    kind: str
    phase_from: Literal["job", "replicas", "pods"]
    """`job`: the Job's conditions and counts; `replicas`: ready replicas against spec.replicas; `pods`:
    what its labelled pods show."""
    long_running: bool
    """Moves make-before-break (a second replica for a while is how it rolls out anyway); otherwise it is
    run-once work that never runs twice: checkpoint, stop, then start on the target."""
    observed_by_default: bool
    """Listed on every member observation; other kinds are listed once a template of them was applied."""
    pod_template: tuple[str, ...] = ("spec", "template")


KINDS: dict[str, WorkloadKind] = {k.kind: k for k in (
    WorkloadKind("batch/v1", "Job", "job", long_running=False, observed_by_default=True),
    WorkloadKind("apps/v1", "Deployment", "replicas", long_running=True, observed_by_default=True),
    WorkloadKind("apps/v1", "StatefulSet", "replicas", long_running=True, observed_by_default=True),
    WorkloadKind("apps/v1", "ReplicaSet", "replicas", long_running=True, observed_by_default=False),
    WorkloadKind("apps/v1", "DaemonSet", "pods", long_running=False, observed_by_default=False),
)}

MAKE_BEFORE_BREAK = frozenset(k for k, v in KINDS.items() if v.long_running)
DEFAULT_KINDS = tuple((v.api_version, k) for k, v in KINDS.items() if v.observed_by_default)
