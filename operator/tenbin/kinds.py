"""The workload kinds Tenbin knows, one row each: where the pod templates are and how many pods each runs
at once, how the kind's own status reads as a phase, how it moves, how it is suspended, and whether members
are listed for it before any template of it was applied.

A kind outside this table is refused unless the PlacementPolicy declares it (`spec.workloadKinds`: its pod
templates, replica fields, phase rule, move strategy, suspend field): `Kinds.from_policy` is the table the
operator and `tenbin simulate` use. A kind nobody declared makes the AIWorkload `Valid=False` naming
`spec.template.kind`: Tenbin never guesses how many GPUs an object it does not understand will use, nor what
its status means.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tenbin.api import WorkloadPhase
from tenbin.api.policy import BUILT_IN_KINDS, PhaseRule, PlacementPolicy, WorkloadKindRule

Path = tuple[str | int, ...]
Phase = tuple[WorkloadPhase, str]
CONDITION_TRUE = "True"  # the status of a member object's condition that holds


@dataclass(frozen=True)
class PodGroup:
    """Pods made from one pod template: where the template is (from the object's root) and how many of its
    pods run at once."""

    path: Path
    pods: int
    count: Path | None = None
    """The field that sets how many of them run (to name when it is too many)."""


def get_in(obj: Any, path: Path) -> Any:
    """The value at `path` (keys and list indexes), or None when any step is missing."""
    node = obj
    for step in path:
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and -len(node) <= step < len(node) else None
        else:
            node = node.get(step) if isinstance(node, Mapping) else None
        if node is None:
            return None
    return node


_STEP = re.compile(r"([^.\[\]]+)|\[([0-9]+)\]")


def parse_path(text: str) -> Path:
    """("spec", "groups", 0, "template") for `spec.groups[0].template` (the inverse of `render_path`); the
    policy schema has checked the shape."""
    return tuple(int(m.group(2)) if m.group(2) is not None else m.group(1) for m in _STEP.finditer(text))


def render_path(path: Path) -> str:
    """`spec.replicatedJobs[0].template` for ("spec", "replicatedJobs", 0, "template")."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def condition(obj: Mapping[str, Any], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == CONDITION_TRUE
               for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, Mapping))


# ---- pod groups, per kind -------------------------------------------------------------------------------


def _job_pods(job_spec: Mapping[str, Any]) -> int:
    """A Job runs min(parallelism, completions) pods at once (parallelism defaults to 1)."""
    parallelism = _int(job_spec.get("parallelism"), 1)
    completions = job_spec.get("completions")
    return min(parallelism, completions) if isinstance(completions, int) else parallelism


def _one_template(replicas: Callable[[Mapping[str, Any]], int], count: str | None
                  ) -> Callable[[Mapping[str, Any]], list[PodGroup]]:
    def groups(obj: Mapping[str, Any]) -> list[PodGroup]:
        spec = obj.get("spec") or {}
        if not isinstance(spec.get("template"), Mapping):
            return []
        return [PodGroup(("spec", "template"), replicas(spec), ("spec", count) if count else None)]
    return groups


def _jobset_groups(obj: Mapping[str, Any]) -> list[PodGroup]:
    out = []
    for i, rj in enumerate(get_in(obj, ("spec", "replicatedJobs")) or []):
        job_spec = get_in(rj, ("template", "spec")) or {}
        if isinstance(job_spec.get("template"), Mapping):
            out.append(PodGroup(("spec", "replicatedJobs", i, "template", "spec", "template"),
                                _int(rj.get("replicas"), 1) * _job_pods(job_spec),
                                ("spec", "replicatedJobs", i, "replicas")))
    return out


def _pytorchjob_groups(obj: Mapping[str, Any]) -> list[PodGroup]:
    specs = get_in(obj, ("spec", "pytorchReplicaSpecs")) or {}
    return [PodGroup(("spec", "pytorchReplicaSpecs", role, "template"), _int(rs.get("replicas"), 1),
                     ("spec", "pytorchReplicaSpecs", role, "replicas"))
            for role, rs in sorted(specs.items())
            if isinstance(rs, Mapping) and isinstance(rs.get("template"), Mapping)]


def _rayjob_groups(obj: Mapping[str, Any]) -> list[PodGroup]:
    """The RayCluster the RayJob creates: one head pod, and per worker group replicas (within
    [minReplicas, maxReplicas], as Kuberay clamps it) times numOfHosts. The submitter pod asks for no GPU."""
    base: Path = ("spec", "rayClusterSpec")
    out = []
    if isinstance(get_in(obj, (*base, "headGroupSpec", "template")), Mapping):
        out.append(PodGroup((*base, "headGroupSpec", "template"), 1))
    for i, wg in enumerate(get_in(obj, (*base, "workerGroupSpecs")) or []):
        if isinstance(wg, Mapping) and isinstance(wg.get("template"), Mapping):
            low, high = _int(wg.get("minReplicas"), 0), _int(wg.get("maxReplicas"), 2**31 - 1)
            replicas = min(max(_int(wg.get("replicas"), low), low), high)
            out.append(PodGroup((*base, "workerGroupSpecs", i, "template"), replicas * _int(wg.get("numOfHosts"), 1),
                                (*base, "workerGroupSpecs", i, "replicas")))
    return out


def _lws_groups(obj: Mapping[str, Any]) -> list[PodGroup]:
    """`replicas` groups of `size` pods: one leader (from leaderTemplate, else the worker template) and
    size-1 workers."""
    spec = obj.get("spec") or {}
    groups, size = _int(spec.get("replicas"), 1), max(_int(get_in(spec, ("leaderWorkerTemplate", "size")), 1), 1)
    base: Path = ("spec", "leaderWorkerTemplate")
    if isinstance(get_in(obj, (*base, "leaderTemplate")), Mapping):
        return [PodGroup((*base, "leaderTemplate"), groups, ("spec", "replicas")),
                PodGroup((*base, "workerTemplate"), groups * (size - 1), (*base, "size"))]
    if isinstance(get_in(obj, (*base, "workerTemplate")), Mapping):
        return [PodGroup((*base, "workerTemplate"), groups * size, (*base, "size"))]
    return []


# ---- phases, per kind: Scheduled (with its progress) or None while the work has not started; the caller
# adds what its pods wait for


def _job_phase(obj: Mapping[str, Any]) -> Phase | None:
    status = obj.get("status") or {}
    if condition(obj, "Complete") or condition(obj, "SuccessCriteriaMet"):
        return WorkloadPhase.SUCCEEDED, f"Job completed ({status.get('succeeded', 0)} succeeded)"
    if condition(obj, "Failed") or condition(obj, "FailureTarget"):
        return WorkloadPhase.FAILED, f"Job failed ({status.get('failed', 0)} failed pods)"
    if (status.get("active") or 0) > 0 and (status.get("ready") or 0) > 0:
        return WorkloadPhase.RUNNING, f"{status.get('ready')} pod(s) running"
    return None


def _replicas_phase(obj: Mapping[str, Any]) -> Phase | None:
    want = _int((obj.get("spec") or {}).get("replicas"), 1)
    ready = (obj.get("status") or {}).get("readyReplicas") or 0
    return (WorkloadPhase.RUNNING if want == 0 or ready >= want else WorkloadPhase.SCHEDULED), \
        f"{ready}/{want} replicas ready"


def _jobset_phase(obj: Mapping[str, Any]) -> Phase | None:
    status = obj.get("status") or {}
    if condition(obj, "Completed"):
        return WorkloadPhase.SUCCEEDED, "JobSet completed"
    if condition(obj, "Failed"):
        msg = next((c.get("message") for c in status.get("conditions") or [] if c.get("type") == "Failed"), "")
        return WorkloadPhase.FAILED, f"JobSet failed{': ' + str(msg)[:200] if msg else ''}"
    jobs = {str(rj.get("name")): _int(rj.get("replicas"), 1) for rj in get_in(obj, ("spec", "replicatedJobs")) or []}
    seen = {str(s.get("name")): _int(s.get("ready"), 0) + _int(s.get("succeeded"), 0)
            for s in status.get("replicatedJobsStatus") or []}
    want, ready = sum(jobs.values()), sum(min(seen.get(n, 0), r) for n, r in jobs.items())
    return (WorkloadPhase.RUNNING if want and ready >= want else WorkloadPhase.SCHEDULED), f"{ready}/{want} jobs ready"


def _kubeflow_phase(obj: Mapping[str, Any]) -> Phase | None:
    kind = obj.get("kind", "job")
    if condition(obj, "Succeeded"):
        return WorkloadPhase.SUCCEEDED, f"{kind} succeeded"
    if condition(obj, "Failed"):
        return WorkloadPhase.FAILED, f"{kind} failed"
    if condition(obj, "Running"):
        return WorkloadPhase.RUNNING, f"{kind} running"
    return None


def _rayjob_phase(obj: Mapping[str, Any]) -> Phase | None:
    status = obj.get("status") or {}
    deployment, job = status.get("jobDeploymentStatus") or "", status.get("jobStatus") or ""
    if deployment == "Complete":
        if job in ("SUCCEEDED", ""):
            return WorkloadPhase.SUCCEEDED, "RayJob complete (job SUCCEEDED)"
        return WorkloadPhase.FAILED, f"RayJob complete (job {job})"
    if deployment in ("Failed", "ValidationFailed"):
        why = str(status.get("message") or status.get("reason") or "")[:200]
        return WorkloadPhase.FAILED, f"RayJob {deployment}: {why}"
    if deployment == "Running":
        return WorkloadPhase.RUNNING, f"RayJob running (job {job or 'PENDING'})"
    return None


def _pod_phase(obj: Mapping[str, Any]) -> Phase | None:
    phase = (obj.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return (WorkloadPhase.SUCCEEDED if phase == "Succeeded" else WorkloadPhase.FAILED), f"Pod {phase.lower()}"
    return (WorkloadPhase.RUNNING, "pod running") if phase == "Running" else None


@dataclass(frozen=True)
class WorkloadKind:
    api_version: str
    kind: str
    pod_groups: Callable[[Mapping[str, Any]], list[PodGroup]]
    """The object's pod templates and how many pods each runs at once."""
    phase: Callable[[Mapping[str, Any]], Phase | None] | None
    """Running / Succeeded / Failed from the kind's own status; None: what its labelled pods show."""
    long_running: bool
    """Moves make-before-break (a second replica for a while is how it rolls out anyway); otherwise it is
    run-once work that never runs twice: checkpoint, stop, then start on the target."""
    observed_by_default: bool
    """Listed on every member observation; other kinds are listed once a template of them was applied."""
    suspend: Path | None = None
    """The boolean that suspends it (no pods while true), when the kind has one."""
    declared: bool = False
    """Declared by the PlacementPolicy (`spec.workloadKinds`), not built in."""

    def suspended(self, obj: Mapping[str, Any]) -> bool:
        return self.suspend is not None and get_in(obj, self.suspend) is True


# ---- a kind the policy declares ---------------------------------------------------------------------------


def _declared_groups(rule: WorkloadKindRule) -> Callable[[Mapping[str, Any]], list[PodGroup]]:
    refs = [(parse_path(t.path), parse_path(t.replicas_path) if t.replicas_path else None, t.default_replicas)
            for t in rule.pod_templates]

    def groups(obj: Mapping[str, Any]) -> list[PodGroup]:
        return [PodGroup(path, _int(get_in(obj, count), default) if count else default, count)
                for path, count, default in refs if isinstance(get_in(obj, path), Mapping)]
    return groups


def _declared_phase(kind: str, rule: PhaseRule) -> Callable[[Mapping[str, Any]], Phase | None]:
    path = parse_path(rule.path) if rule.path else None

    def phase(obj: Mapping[str, Any]) -> Phase | None:
        if path is not None:
            value = get_in(obj, path)
            holds: Callable[[str], bool] = lambda v: isinstance(value, str) and value == v  # noqa: E731
            where = f"{render_path(path)} {value}"
        else:
            holds = lambda v: condition(obj, v)  # noqa: E731
            where = "condition"
        for wanted, values in ((WorkloadPhase.FAILED, rule.failed), (WorkloadPhase.SUCCEEDED, rule.succeeded),
                               (WorkloadPhase.RUNNING, rule.running)):
            hit = next((v for v in values if holds(v)), None)
            if hit is not None:
                return wanted, f"{kind} {where if path is not None else hit}"
        return None
    return phase


def declared_kind(rule: WorkloadKindRule) -> WorkloadKind:
    """The table row for a kind a PlacementPolicy declares."""
    return WorkloadKind(rule.api_version, rule.kind, _declared_groups(rule),
                        _declared_phase(rule.kind, rule.phase) if rule.phase is not None else None,
                        long_running=rule.move_strategy == "MakeBeforeBreak", observed_by_default=False,
                        suspend=parse_path(rule.suspend_path) if rule.suspend_path else None, declared=True)


_REPLICAS = _one_template(lambda s: _int(s.get("replicas"), 1), "replicas")

KINDS: dict[str, WorkloadKind] = {k.kind: k for k in (
    WorkloadKind("v1", "Pod", lambda obj: [PodGroup((), 1)], _pod_phase, long_running=False,
                 observed_by_default=False),
    WorkloadKind("batch/v1", "Job", _one_template(_job_pods, "parallelism"), _job_phase, long_running=False,
                 observed_by_default=True, suspend=("spec", "suspend")),
    WorkloadKind("apps/v1", "Deployment", _REPLICAS, _replicas_phase,
                 long_running=True, observed_by_default=True),
    WorkloadKind("apps/v1", "StatefulSet", _REPLICAS, _replicas_phase,
                 long_running=True, observed_by_default=True),
    WorkloadKind("apps/v1", "ReplicaSet", _REPLICAS, _replicas_phase,
                 long_running=True, observed_by_default=False),
    WorkloadKind("apps/v1", "DaemonSet", _one_template(lambda s: 1, None), None, long_running=False,
                 observed_by_default=False),
    WorkloadKind("jobset.x-k8s.io/v1alpha2", "JobSet", _jobset_groups, _jobset_phase, long_running=False,
                 observed_by_default=False, suspend=("spec", "suspend")),
    WorkloadKind("kubeflow.org/v1", "PyTorchJob", _pytorchjob_groups, _kubeflow_phase, long_running=False,
                 observed_by_default=False, suspend=("spec", "runPolicy", "suspend")),
    WorkloadKind("ray.io/v1", "RayJob", _rayjob_groups, _rayjob_phase, long_running=False,
                 observed_by_default=False, suspend=("spec", "suspend")),
    WorkloadKind("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", _lws_groups, _replicas_phase, long_running=True,
                 observed_by_default=False),
)}

if {(v.api_version, k) for k, v in KINDS.items()} != set(BUILT_IN_KINDS):  # the policy schema refuses these
    raise AssertionError(f"tenbin.api.policy.BUILT_IN_KINDS {sorted(BUILT_IN_KINDS)} != the table {sorted(KINDS)}")

DEFAULT_KINDS = tuple((v.api_version, k) for k, v in KINDS.items() if v.observed_by_default)



KindKey = tuple[str, str]  # (apiVersion, kind)


@dataclass(frozen=True)
class Kinds:
    """The workload kinds in force: the built-in table plus the kinds the PlacementPolicy declares, by
    (apiVersion, kind) (Volcano's batch.volcano.sh Job is not batch/v1's)."""

    rows: Mapping[KindKey, WorkloadKind] = field(
        default_factory=lambda: MappingProxyType({(v.api_version, k): v for k, v in KINDS.items()}))

    @classmethod
    def from_policy(cls, policy: PlacementPolicy | None) -> Kinds:
        if policy is None or not policy.spec.workload_kinds:
            return BUILT_IN
        declared = {(r.api_version, r.kind): declared_kind(r) for r in policy.spec.workload_kinds}
        return cls(MappingProxyType({**declared, **BUILT_IN.rows}))  # the schema refuses built-in pairs anyway

    def of(self, obj: Mapping[str, Any]) -> WorkloadKind | None:
        """The row for an object or template (its apiVersion and kind)."""
        return self.rows.get((str(obj.get("apiVersion")), str(obj.get("kind"))))

    def long_running(self, obj: Mapping[str, Any]) -> bool:
        """Moves make-before-break; any other kind (and an unknown one) is run-once work."""
        row = self.of(obj)
        return row is not None and row.long_running

    def versions_of(self, kind: object) -> list[str]:
        """The apiVersions a kind of this name is known in."""
        return sorted(a for a, k in self.rows if k == kind)

    def __iter__(self) -> Iterator[str]:
        """Kind names, sorted (for messages)."""
        return iter(sorted({k for _, k in self.rows}))

    def declared(self) -> frozenset[KindKey]:
        """(apiVersion, kind) of the kinds the policy declares: members are asked whether they serve them."""
        return frozenset(key for key, r in self.rows.items() if r.declared)


BUILT_IN = Kinds()
