"""One table of the workload kinds Tenbin knows (`tenbin.kinds`): labelling, validation, phase and moves
all read it, so a kind is known the same way everywhere."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from helpers import workload_doc
from tenbin.clusters.gateway import UID_LABEL, ObjectRef, observed_object
from tenbin.kinds import DEFAULT_KINDS, KINDS, MAKE_BEFORE_BREAK
from tenbin.scheduling.inputs import EffectivePolicy
from tenbin.services.member_objects import member_object, observed_phase
from tenbin.services.validation import semantic_error


def as_kind(kind: str, pod_gpus: int, count: int) -> dict[str, Any]:
    doc = workload_doc(count=count)
    doc["metadata"]["uid"] = "u-1"
    pod = copy.deepcopy(doc["spec"]["template"]["spec"]["template"])
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = pod_gpus
    k = KINDS[kind]
    doc["spec"]["template"] = {"apiVersion": k.api_version, "kind": kind, "metadata": {"name": "w1"}, "spec": {}}
    node = doc["spec"]["template"]
    for key in k.pod_template[:-1]:
        node = node.setdefault(key, {})
    node[k.pod_template[-1]] = pod
    return doc


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_known_kind_has_its_pods_labelled_and_its_gpu_request_checked(kind: str) -> None:
    obj = member_object(as_kind(kind, 2, 2), "c1")
    node: Any = obj
    for key in KINDS[kind].pod_template:
        node = node[key]
    assert node["metadata"]["labels"][UID_LABEL] == "u-1"
    assert semantic_error(as_kind(kind, 2, 2), EffectivePolicy()) is None
    problem = semantic_error(as_kind(kind, 2, 4), EffectivePolicy())
    assert problem is not None and problem[0].startswith("spec.template." + ".".join(KINDS[kind].pod_template))


def test_how_each_kind_moves_and_is_listed() -> None:
    assert {"Deployment", "StatefulSet", "ReplicaSet"} == MAKE_BEFORE_BREAK  # the rest never runs twice
    assert ("batch/v1", "Job") in DEFAULT_KINDS and all(KINDS[k].observed_by_default for _, k in DEFAULT_KINDS)


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
