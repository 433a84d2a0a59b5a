"""What a workload template references (every pod template of its kind) and the copy Tenbin makes of it."""

from __future__ import annotations

from typing import Any

from tenbin.services.dependencies import (
    HASH_ANNOTATION,
    Dependency,
    member_copy,
    referenced,
    secrets_refused,
)


def pod(**spec: Any) -> dict[str, Any]:
    spec.setdefault("containers", [{"name": "main", "image": "x"}])
    return {"spec": spec}


def test_every_kind_of_reference_in_every_pod_template_is_found_once_required_winning() -> None:
    launcher = pod(serviceAccountName="launcher", priorityClassName="system-cluster-critical",
                   volumes=[{"name": "c", "configMap": {"name": "shared", "optional": True}}])
    worker = pod(
        priorityClassName="train", imagePullSecrets=[{"name": "pull"}],
        volumes=[{"name": "c", "configMap": {"name": "shared"}},
                 {"name": "s", "secret": {"secretName": "opt", "optional": True}},
                 {"name": "p", "projected": {"sources": [{"configMap": {"name": "proj"}},
                                                        {"secret": {"name": "proj-s"}}]}},
                 {"name": "data", "persistentVolumeClaim": {"claimName": "dataset"}}],
        initContainers=[{"name": "i", "image": "x", "envFrom": [{"configMapRef": {"name": "init-env"}}]}],
        containers=[{"name": "main", "image": "x", "envFrom": [{"secretRef": {"name": "env-s"}}],
                     "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "key-cm", "key": "a"}}},
                             {"name": "B", "valueFrom": {"secretKeyRef": {"name": "key-s", "key": "b"}}},
                             {"name": "C", "value": "plain"}]}])
    jobset = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "spec": {"replicatedJobs": [
        {"name": "launcher", "replicas": 1, "template": {"spec": {"template": launcher}}},
        {"name": "workers", "replicas": 2, "template": {"spec": {"template": worker}}}]}}
    found = {str(d): optional for d, optional in referenced(jobset, "ml")}
    assert found == {
        "PriorityClass train": False, "ServiceAccount ml/launcher": False,
        "ConfigMap ml/init-env": False, "ConfigMap ml/key-cm": False, "ConfigMap ml/proj": False,
        "ConfigMap ml/shared": False,  # optional in one template, required in the other
        "Secret ml/env-s": False, "Secret ml/key-s": False, "Secret ml/opt": True, "Secret ml/proj-s": False,
        "Secret ml/pull": False,
    }  # system-* classes, the PVC and the plain env var are not dependencies
    kinds = [d.kind for d, _ in referenced(jobset, "ml")]
    assert kinds == sorted(kinds, key=("PriorityClass", "ServiceAccount", "ConfigMap", "Secret").index)


def test_the_default_service_account_and_a_template_without_references_need_nothing() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "spec": {"template": pod(serviceAccountName="default")}}
    assert referenced(job, "ml") == []
    assert referenced({"apiVersion": "v1", "kind": "Widget", "spec": {}}, "ml") == []


def test_the_copy_keeps_content_and_labels_drops_bookkeeping_and_is_never_a_default_class() -> None:
    hub_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "cfg", "namespace": "ml", "uid": "u", "resourceVersion": "7", "managedFields": [{}],
        "labels": {"team": "a"}, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                                 "note": "kept"}},
        "data": {"k": "v"}, "binaryData": {"b": "AA=="}}
    out = member_copy(hub_cm, Dependency("ConfigMap", "ml", "cfg"))
    assert out["data"] == {"k": "v"} and out["binaryData"] == {"b": "AA=="}
    assert set(out["metadata"]) == {"name", "namespace", "labels", "annotations"}
    assert out["metadata"]["labels"]["team"] == "a" and out["metadata"]["labels"]["app.kubernetes.io/managed-by"] \
        == "tenbin"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in out["metadata"]["annotations"]
    changed = member_copy({**hub_cm, "data": {"k": "w"}}, Dependency("ConfigMap", "ml", "cfg"))
    assert changed["metadata"]["annotations"][HASH_ANNOTATION] != out["metadata"]["annotations"][HASH_ANNOTATION]
    pc = member_copy({"metadata": {"name": "hi"}, "value": 10, "globalDefault": True},
                     Dependency("PriorityClass", "", "hi"))
    assert pc["globalDefault"] is False and pc["value"] == 10 and "namespace" not in pc["metadata"]


def test_secrets_need_the_namespace_label_and_the_policy_classification() -> None:
    labelled = {"metadata": {"labels": {"tenbin.io/copy-secrets": "true"}}}
    assert secrets_refused(None, "Internal", ["Internal"]) is not None
    assert secrets_refused({"metadata": {"labels": {"tenbin.io/copy-secrets": "yes"}}}, "Internal",
                           ["Internal"]) is not None
    assert "Restricted" in (secrets_refused(labelled, "Restricted", ["Internal"]) or "")
    assert secrets_refused(labelled, "Internal", ["Internal", "Public"]) is None
