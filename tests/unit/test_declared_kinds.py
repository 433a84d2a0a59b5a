"""Kinds the PlacementPolicy declares (`spec.workloadKinds`): the policy says where the pod templates are, how
many pods each runs, how the status reads and how the kind moves; validation, labelling, phase and moves read
that row exactly as they read a built-in one. The example is Volcano's Job (batch.volcano.sh/v1alpha1), a kind
that shares batch/v1 Job's name: rows are keyed by apiVersion and kind."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tenbin.api import PlacementPolicy, WorkloadPhase
from tenbin.clusters.gateway import UID_LABEL, observed_object
from tenbin.kinds import BUILT_IN, Kinds, parse_path, render_path
from tenbin.scheduling.inputs import EffectivePolicy
from tenbin.services.member_objects import member_object, observed_phase, unlabelled_templates
from tenbin.services.validation import semantic_error

VOLCANO = {
    "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
    "podTemplates": [{"path": "spec.tasks[0].template", "replicasPath": "spec.tasks[0].replicas"},
                     {"path": "spec.tasks[1].template", "replicasPath": "spec.tasks[1].replicas"}],
    "phase": {"path": "status.state.phase", "running": ["Running"], "succeeded": ["Completed"],
              "failed": ["Failed", "Aborted", "Terminated"]},
}


def policy(*kinds: dict[str, Any]) -> PlacementPolicy:
    return PlacementPolicy.model_validate({
        "apiVersion": "tenbin.io/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": "default"},
        "spec": {"baseCurrency": "JPY", "workloadKinds": list(kinds)}})


def pod(gpus: int) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "m", "image": "x", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}


def volcano_workload(workers: int = 3, gpus: int = 2, replicas: int = 4) -> dict[str, Any]:
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload",
            "metadata": {"name": "vj", "namespace": "research", "uid": "u-1"},
            "spec": {"gpu": {"count": gpus}, "replicas": replicas,
                     "template": {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"name": "vj"},
                                  "spec": {"minAvailable": workers + 1, "tasks": [
                                      {"name": "master", "replicas": 1, "template": pod(gpus)},
                                      {"name": "worker", "replicas": workers, "template": pod(gpus)}]}}}}


KINDS = Kinds.from_policy(policy(VOLCANO))


def check(doc: dict[str, Any], kinds: Kinds = KINDS) -> tuple[str, str] | None:
    return semantic_error(doc, EffectivePolicy(), kinds)


def test_a_declared_kind_is_accepted_and_counted_over_all_its_templates() -> None:
    assert check(volcano_workload(workers=3, replicas=4)) is None
    field, message = check(volcano_workload(workers=4, replicas=4)) or ("", "")
    assert field == "spec.replicas" and "runs 5 GPU pods at once" in message


def test_a_gpu_request_that_differs_names_the_template_of_the_declared_kind() -> None:
    doc = volcano_workload()
    doc["spec"]["template"]["spec"]["tasks"][1]["template"] = pod(1)
    field, _ = check(doc) or ("", "")
    assert field == "spec.template.spec.tasks[1].template.spec.containers[].resources.limits[nvidia.com/gpu]"


def test_without_the_declaration_the_kind_is_refused_and_the_message_says_how_to_declare_it() -> None:
    field, message = check(volcano_workload(), BUILT_IN) or ("", "")
    assert field == "spec.template.apiVersion" and "batch/v1" in message and "spec.workloadKinds" in message
    other = volcano_workload()
    other["spec"]["template"].update(apiVersion="example.com/v1", kind="TrainingRun")
    field, message = check(other, BUILT_IN) or ("", "")
    assert field == "spec.template.kind" and "TrainingRun" in message and "spec.workloadKinds" in message


def test_the_built_in_job_is_untouched_by_a_declared_job_of_another_group() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"parallelism": 2, "template": pod(1)}}
    assert KINDS.of(job) is BUILT_IN.of(job)
    assert KINDS.of(volcano_workload()["spec"]["template"]) is not None
    assert BUILT_IN.of(volcano_workload()["spec"]["template"]) is None
    assert KINDS.declared() == frozenset({("batch.volcano.sh/v1alpha1", "Job")}) and not BUILT_IN.declared()


def test_every_declared_template_is_labelled_and_pinned() -> None:
    obj = member_object(volcano_workload(), "onprem", "H100-80GB", kinds=KINDS)
    for task in obj["spec"]["tasks"]:
        assert task["template"]["metadata"]["labels"][UID_LABEL] == "u-1"
        assert task["template"]["spec"]["affinity"]["nodeAffinity"]  # pinned to the chosen model
    assert "labels" not in member_object(volcano_workload(), "onprem", "H100-80GB")["spec"]["tasks"][0]["template"] \
        .get("metadata", {})  # the built-in table does not know it: nothing is guessed


def _observed(status: dict[str, Any], spec: dict[str, Any] | None = None, kinds: Kinds = KINDS) -> tuple[str, str]:
    obj = copy.deepcopy(volcano_workload()["spec"]["template"])
    obj["metadata"]["namespace"] = "research"
    obj["spec"].update(spec or {})
    obj["status"] = status
    return observed_phase(observed_object(obj, "u-1", []), kinds)


@pytest.mark.parametrize(("state", "phase"), [("Pending", "Scheduled"), ("Running", "Running"),
                                              ("Completed", "Succeeded"), ("Aborted", "Failed"),
                                              ("Failed", "Failed"), (None, "Scheduled")])
def test_the_declared_phase_field_reads_as_a_phase(state: str | None, phase: str) -> None:
    got, message = _observed({"state": {"phase": state}} if state else {})
    assert got == WorkloadPhase(phase)
    if phase != "Scheduled":
        assert f"status.state.phase {state}" in message


def test_phase_from_conditions_checks_failed_before_succeeded_before_running() -> None:
    rule = {**VOLCANO, "phase": {"fromConditions": True, "running": ["Running"], "succeeded": ["Complete"],
                                 "failed": ["Failed"]}, "suspendPath": "spec.suspend"}
    kinds = Kinds.from_policy(policy(rule))

    def conds(*types: str) -> dict[str, Any]:
        return {"conditions": [{"type": t, "status": "True"} for t in types] + [{"type": "X", "status": "False"}]}
    assert _observed(conds("Running"), kinds=kinds)[0] == "Running"
    assert _observed(conds("Running", "Complete"), kinds=kinds)[0] == "Succeeded"
    assert _observed(conds("Running", "Complete", "Failed"), kinds=kinds)[0] == "Failed"
    phase, message = _observed({}, {"suspend": True}, kinds=kinds)
    assert phase == "Scheduled" and "suspended" in message and "spec.suspend" in message


def test_without_a_phase_rule_it_runs_once_its_labelled_pods_are_bound() -> None:
    kinds = Kinds.from_policy(policy({k: v for k, v in VOLCANO.items() if k != "phase"}))
    obj = copy.deepcopy(volcano_workload()["spec"]["template"])
    obj["metadata"]["namespace"] = "research"
    bound = {"metadata": {"labels": {UID_LABEL: "u-1"}}, "spec": {"nodeName": "n1", **pod(2)["spec"]},
             "status": {"phase": "Running"}}
    assert observed_phase(observed_object(obj, "u-1", [bound]), kinds)[0] == "Running"
    assert observed_phase(observed_object(obj, "u-1", []), kinds)[0] == "Scheduled"


def test_the_move_strategy_decides_make_before_break() -> None:
    template = volcano_workload()["spec"]["template"]
    assert not KINDS.long_running(template)  # Checkpoint by default: never two copies
    service = Kinds.from_policy(policy({**VOLCANO, "moveStrategy": "MakeBeforeBreak"}))
    assert service.long_running(template)


@pytest.mark.parametrize(("change", "field"), [
    ({"apiVersion": "batch/v1"}, "workloadKinds.0"),  # the built-in Job's row cannot be replaced
    ({"apiVersion": "v1", "kind": "Pod"}, "workloadKinds.0.apiVersion"),  # not group/version
    ({"phase": {"path": "status.phase", "fromConditions": True}}, "workloadKinds.0.phase"),
    ({"phase": {"running": ["Running"]}}, "workloadKinds.0.phase"),
    ({"podTemplates": []}, "workloadKinds.0.podTemplates"),
    ({"podTemplates": [{"path": "spec..template"}]}, "workloadKinds.0.podTemplates.0.path"),
    ({"suspendPath": "spec.suspend; rm"}, "workloadKinds.0.suspendPath"),
])
def test_a_bad_declaration_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        policy({**VOLCANO, **change})
    assert any(".".join(str(p) for p in err["loc"]).startswith(f"spec.{field}") for err in e.value.errors())


def test_one_kind_is_declared_once() -> None:
    with pytest.raises(ValidationError, match="duplicate apiVersion/kind"):
        policy(VOLCANO, VOLCANO)


@given(st.lists(st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True),
                          st.integers(0, 99)), min_size=1, max_size=6)
       .filter(lambda p: isinstance(p[0], str)))
def test_a_path_renders_and_parses_back(path: list[str | int]) -> None:
    assert parse_path(render_path(tuple(path))) == tuple(path)


def test_a_member_that_pruned_the_template_labels_is_noticed() -> None:
    """A CRD whose schema prunes pod template metadata (controller-gen without generateEmbeddedObjectMeta)
    stores the object without Tenbin's labels: the pods could not be attributed, and Tenbin says so."""
    stored = member_object(volcano_workload(), "onprem", kinds=KINDS)
    assert unlabelled_templates(stored, KINDS) == []
    del stored["spec"]["tasks"][1]["template"]["metadata"]
    assert unlabelled_templates(stored, KINDS) == ["spec.tasks[1].template"]
