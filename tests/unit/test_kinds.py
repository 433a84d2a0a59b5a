"""One table of the workload kinds Tenbin knows (`tenbin.kinds`): labelling, validation, phase and moves
all read it, so a kind is known the same way everywhere. Each kind is exercised through its example in
examples/workloads/ and through status shapes its own controller writes (the e2e tests in
tests/e2e/test_ai_kinds.py read the same statuses from the real controllers)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import EXAMPLES, workload_doc
from tenbin.api import WorkloadPhase
from tenbin.clusters.gateway import UID_LABEL, ObjectRef, observed_object
from tenbin.kinds import BUILT_IN, DEFAULT_KINDS, KINDS, get_in, render_path
from tenbin.scheduling.inputs import EffectivePolicy
from tenbin.services.member_objects import annotate_pods, member_object, observed_phase, pod_templates
from tenbin.services.validation import semantic_error


def examples() -> dict[str, dict[str, Any]]:
    """The example AIWorkload of each kind, by its template's kind."""
    out: dict[str, dict[str, Any]] = {}
    for f in sorted((EXAMPLES / "workloads").glob("*.yaml")):
        for doc in yaml.safe_load_all(Path(f).read_text()):
            doc["metadata"]["uid"] = "u-1"
            out.setdefault(doc["spec"]["template"]["kind"], doc)
    return out


EXAMPLE_KINDS = ["Job", "JobSet", "PyTorchJob", "RayJob", "LeaderWorkerSet"]


def test_every_ai_kind_has_an_example() -> None:
    assert set(EXAMPLE_KINDS) <= set(examples())


@pytest.mark.parametrize("kind", EXAMPLE_KINDS)
def test_every_pod_template_of_a_kind_is_labelled_and_its_gpus_checked(kind: str) -> None:
    doc = examples()[kind]
    assert semantic_error(doc, EffectivePolicy()) is None
    obj = member_object(doc, "c1")
    groups = KINDS[kind].pod_groups(obj)
    assert len(groups) == len(pod_templates(obj)) >= 1
    for g in groups:
        assert get_in(obj, g.path)["metadata"]["labels"][UID_LABEL] == "u-1"
    gpu_pods = sum(g.pods for g in groups if get_in(obj, g.path)["spec"]["containers"][0].get("resources"))
    assert gpu_pods == doc["spec"]["replicas"]  # the examples reserve exactly what their pods ask for

    wrong = copy.deepcopy(doc)
    wrong["spec"]["gpu"]["count"] += 1
    problem = semantic_error(wrong, EffectivePolicy())
    assert problem is not None and problem[0].endswith(".resources.limits[nvidia.com/gpu]"), problem
    assert problem[0].startswith("spec.template." + render_path(groups[-1].path)[:10])

    fewer = copy.deepcopy(doc)
    fewer["spec"]["replicas"] -= 1
    problem = semantic_error(fewer, EffectivePolicy())
    assert problem is not None and "runs" in problem[1] and "too few" in problem[1], problem


@pytest.mark.parametrize(("kind", "pods"), [("JobSet", {"coordinator": 1, "workers": 2}),
                                            ("LeaderWorkerSet", {"leaderTemplate": 1, "workerTemplate": 1}),
                                            ("RayJob", {"headGroupSpec": 1, 0: 2}),
                                            ("PyTorchJob", {"Master": 1, "Worker": 1})])
def test_pods_at_once_per_template(kind: str, pods: dict[Any, int]) -> None:
    tmpl = examples()[kind]["spec"]["template"]
    def name(path: tuple[Any, ...]) -> Any:
        if kind == "JobSet":
            return tmpl["spec"]["replicatedJobs"][path[2]]["name"]
        return path[-1] if kind == "LeaderWorkerSet" else path[-2]

    counted = {name(g.path): g.pods for g in KINDS[kind].pod_groups(tmpl)}
    assert counted == pods


def test_a_leaderworkerset_without_a_leader_template_runs_size_workers_per_group() -> None:
    tmpl = copy.deepcopy(examples()["LeaderWorkerSet"]["spec"]["template"])
    del tmpl["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    tmpl["spec"]["replicas"] = 3
    [group] = KINDS["LeaderWorkerSet"].pod_groups(tmpl)
    assert group.pods == 6 and group.path[-1] == "workerTemplate"


def test_an_unknown_kind_or_version_is_refused_naming_the_field() -> None:
    doc = workload_doc()
    doc["spec"]["template"] = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "x"},
                               "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
    field, message = semantic_error(doc, EffectivePolicy()) or ("", "")
    assert field == "spec.template.kind" and "ReplicationController" in message and "JobSet" in message
    doc = copy.deepcopy(examples()["JobSet"])
    doc["spec"]["template"]["apiVersion"] = "jobset.x-k8s.io/v1alpha1"
    assert (semantic_error(doc, EffectivePolicy()) or ("",))[0] == "spec.template.apiVersion"


def test_an_autoscaled_raycluster_is_refused() -> None:
    doc = copy.deepcopy(examples()["RayJob"])
    doc["spec"]["template"]["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] = True
    assert (semantic_error(doc, EffectivePolicy()) or ("",))[0] == \
        "spec.template.spec.rayClusterSpec.enableInTreeAutoscaling"


def test_a_single_template_kind_names_its_own_count_field() -> None:
    doc = workload_doc(count=1, replicas=1)
    doc["spec"]["template"]["spec"]["parallelism"] = 3
    assert (semantic_error(doc, EffectivePolicy()) or ("",))[0] == "spec.template.spec.parallelism"


def test_how_each_kind_moves_and_is_listed() -> None:
    make_before_break = {k for (_, k), row in BUILT_IN.rows.items() if row.long_running}
    assert {"Deployment", "StatefulSet", "ReplicaSet", "LeaderWorkerSet"} == make_before_break  # others never run twice
    assert ("batch/v1", "Job") in DEFAULT_KINDS and all(KINDS[k].observed_by_default for _, k in DEFAULT_KINDS)
    assert all(KINDS[k].suspend == ("spec", "suspend") for k in ("Job", "JobSet", "RayJob"))


def test_resume_annotations_go_on_the_object_and_every_pod_template() -> None:
    obj = member_object(examples()["JobSet"], "c1")
    annotate_pods(obj, {"tenbin.io/resume-from": "c0"})
    assert obj["metadata"]["annotations"]["tenbin.io/resume-from"] == "c0"
    assert all(t["metadata"]["annotations"]["tenbin.io/resume-from"] == "c0" for t in pod_templates(obj))


def _observed(kind: str, status: dict[str, Any], spec: dict[str, Any] | None = None) -> Any:
    tmpl = copy.deepcopy(examples()[kind]["spec"]["template"]) if kind in examples() else \
        {"apiVersion": KINDS[kind].api_version, "kind": kind, "metadata": {"name": "x"}, "spec": {}}
    tmpl["metadata"]["namespace"] = "default"
    tmpl["spec"].update(spec or {})
    tmpl["status"] = status
    return observed_object(tmpl, "u-1", [])


# Status shapes as each controller writes them (field names from its Go API types, values as observed on
# the testbed's real controllers).
PHASES = [
    ("JobSet", {"replicatedJobsStatus": [{"name": "coordinator", "ready": 1, "active": 1},
                                         {"name": "workers", "ready": 2, "active": 2}]}, "Running"),
    ("JobSet", {"replicatedJobsStatus": [{"name": "coordinator", "ready": 1, "active": 1},
                                         {"name": "workers", "ready": 1, "active": 2}]}, "Scheduled"),
    ("JobSet", {"conditions": [{"type": "Completed", "status": "True", "reason": "AllJobsCompleted"}],
                "terminalState": "Completed"}, "Succeeded"),
    ("JobSet", {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedJobs",
                                "message": "jobset failed due to reaching max number of restarts"}]}, "Failed"),
    ("PyTorchJob", {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]},
     "Running"),
    ("PyTorchJob", {"conditions": [{"type": "Running", "status": "False"}, {"type": "Succeeded", "status": "True"}]},
     "Succeeded"),
    ("PyTorchJob", {"conditions": [{"type": "Failed", "status": "True"}]}, "Failed"),
    ("RayJob", {"jobDeploymentStatus": "Initializing"}, "Scheduled"),
    ("RayJob", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, "Running"),
    ("RayJob", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, "Succeeded"),
    ("RayJob", {"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}, "Failed"),
    ("RayJob", {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded"}, "Failed"),
    ("LeaderWorkerSet", {"readyReplicas": 1, "replicas": 1}, "Running"),
    ("LeaderWorkerSet", {"readyReplicas": 0, "replicas": 1}, "Scheduled"),
]


@pytest.mark.parametrize(("kind", "status", "phase"), PHASES)
def test_each_kinds_status_reads_as_a_phase(kind: str, status: dict[str, Any], phase: str) -> None:
    assert observed_phase(_observed(kind, status))[0] == WorkloadPhase(phase)


def test_a_suspended_object_says_so() -> None:
    phase, message = observed_phase(_observed("JobSet", {}, {"suspend": True}))
    assert phase == WorkloadPhase.SCHEDULED and "suspended" in message and "spec.suspend" in message


def test_a_daemonsets_phase_is_what_its_pods_show() -> None:
    body = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d", "namespace": "default",
                                                                       "labels": {UID_LABEL: "u-1"}},
            "status": {"numberReady": 0}}
    pod = {"metadata": {"name": "d-1", "namespace": "default", "labels": {UID_LABEL: "u-1"}},
           "spec": {"nodeName": "n1", "containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
           "status": {"phase": "Running"}}
    observed = observed_object(body, "u-1", [pod])
    assert observed.ref == ObjectRef("apps/v1", "DaemonSet", "default", "d")
    assert observed_phase(observed)[0] == "Running"
