"""The workload kinds Tenbin knows, one row each: where the pod templates are and how many pods each runs
at once, how the kind's own status reads as a phase, how it moves, how it is suspended, and whether members
are listed for it before any template of it was applied.

A kind outside this table (and not a bare Pod) is refused: the AIWorkload is `Valid=False` naming
`spec.template.kind`. Tenbin never guesses how many GPUs an object it does not understand will use, nor what
its status means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenbin.api import WorkloadPhase

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
    def suspended(self, obj: Mapping[str, Any]) -> bool:
        return self.suspend is not None and get_in(obj, self.suspend) is True


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

MAKE_BEFORE_BREAK = frozenset(k for k, v in KINDS.items() if v.long_running)
DEFAULT_KINDS = tuple((v.api_version, k) for k, v in KINDS.items() if v.observed_by_default)

