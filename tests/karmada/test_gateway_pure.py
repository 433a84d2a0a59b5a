"""The Karmada gateway's pure parts and the GPUCluster connection rule (no control plane needed)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tenbin.api.gpucluster import ClusterConnection
from tenbin.clusters.karmada import _member_status, binding_name, pinned_to, propagation_policy

KARMADA = {"kubeconfigSecretRef": {"namespace": "tenbin-system", "name": "karmada-kubeconfig"},
           "clusterName": "sakura-ishikari"}
DIRECT = {"namespace": "tenbin-system", "name": "x-kubeconfig"}


def job() -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "train", "namespace": "research",
                         "labels": {"app.kubernetes.io/managed-by": "tenbin", "tenbin.io/workload-uid": "u1",
                                    "team": "ml"}},
            "spec": {"template": {"spec": {"containers": []}}}}


def test_the_policy_pins_exactly_the_chosen_member_and_selects_only_the_object() -> None:
    pp = propagation_policy(job(), ["sakura-ishikari"])
    assert pp["kind"] == "PropagationPolicy" and pp["metadata"]["name"] == "train"
    assert pp["metadata"]["namespace"] == "research"
    assert pp["spec"]["placement"]["clusterAffinity"] == {"clusterNames": ["sakura-ishikari"]}
    assert pp["spec"]["placement"]["replicaScheduling"] == {"replicaSchedulingType": "Duplicated"}
    assert pp["spec"]["resourceSelectors"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "train",
                                                 "namespace": "research"}]
    assert pp["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "tenbin", "tenbin.io/workload-uid": "u1"}
    assert pinned_to(pp) == ["sakura-ishikari"]


@pytest.mark.parametrize(("policy", "expected"), [
    (None, None),
    ({"spec": {"placement": {}}}, None),
    ({"spec": {"placement": {"clusterAffinity": {"clusterNames": ["a", "b"]}}}}, ["a", "b"]),
])
def test_pinned_to(policy: dict[str, Any] | None, expected: list[str] | None) -> None:
    assert pinned_to(policy) == expected


def test_binding_name_follows_karmadas_rule() -> None:
    assert binding_name("Job", "train") == "train-job"
    assert binding_name("Deployment", "Serve") == "serve-deployment"


def test_member_status_is_the_item_of_that_member_only() -> None:
    rb = {"status": {"aggregatedStatus": [
        {"clusterName": "a", "status": {"active": 1}},
        {"clusterName": "b", "status": {"succeeded": 1}},
    ]}}
    assert _member_status(rb, "b") == {"succeeded": 1}
    assert _member_status(rb, "c") == {}
    assert _member_status(None, "a") == {}


@pytest.mark.parametrize("conn", [
    {"karmada": KARMADA}, {"kubeconfigSecretRef": DIRECT}, {"inCluster": True},
])
def test_exactly_one_connection_is_valid(conn: dict[str, Any]) -> None:
    ClusterConnection.model_validate(conn)


@pytest.mark.parametrize("conn", [
    {}, {"karmada": KARMADA, "kubeconfigSecretRef": DIRECT}, {"karmada": KARMADA, "inCluster": True},
    {"inCluster": False},
])
def test_none_or_two_connections_are_invalid(conn: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ClusterConnection.model_validate(conn)


def test_karmada_connection_needs_a_cluster_name() -> None:
    with pytest.raises(ValidationError):
        ClusterConnection.model_validate({"karmada": {"kubeconfigSecretRef": DIRECT}})
