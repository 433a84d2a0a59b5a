"""Helpers for the Karmada backend tests: this module's GPUClusters and what to read back."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from operator_harness import ROOT
from tenbin.testbed.fleet import SYSTEM_NAMESPACE, Fleet, wait_until
from tenbin.testbed.karmada import HUB_SECRET, Karmada

MEMBERS = ("t-onprem-jp", "t-sovereign-jp", "t-hyperscaler-us")
BACKEND_LABEL = "tenbin.io/backend"


def karmada_name(member: str) -> str:
    return "k-" + member.removeprefix("t-")


def direct_name(member: str) -> str:
    return "d-" + member.removeprefix("t-")


def _fixture_specs() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "tests" / "fixtures" / "fleet" / "members.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs if d and d.get("kind") == "GPUCluster"}


def gpuclusters() -> list[dict[str, Any]]:
    """One Karmada-backed GPUCluster per member, as the fixture fleet describes the members."""
    specs = _fixture_specs()
    out = []
    for member in MEMBERS:
        doc = copy.deepcopy(specs[member])
        doc["metadata"] = {"name": karmada_name(member), "labels": {BACKEND_LABEL: "karmada"}}
        doc["spec"]["connection"] = {"karmada": {
            "kubeconfigSecretRef": {"namespace": SYSTEM_NAMESPACE, "name": HUB_SECRET, "key": "kubeconfig"},
            "clusterName": member}}
        out.append(doc)
    return out


def direct_gpucluster(member: str) -> dict[str, Any]:
    """A GPUCluster reaching ``member`` directly by kubeconfig (for the latency comparison)."""
    doc = copy.deepcopy(_fixture_specs()[member])
    doc["metadata"] = {"name": direct_name(member), "labels": {BACKEND_LABEL: "direct"}}
    return doc  # keeps its kubeconfigSecretRef connection


def reaches_members_directly(doc: dict[str, Any]) -> bool:
    ref = ((doc.get("spec") or {}).get("connection") or {}).get("kubeconfigSecretRef") or {}
    return ref.get("name") in {f"{m}-kubeconfig" for m in MEMBERS}


def karmada_objects(karmada: Karmada, ns: str, resource: str) -> list[dict[str, Any]]:
    res = karmada.kubectl("get", resource, "-n", ns, "-o", "json", check=False)
    return list(json.loads(res.stdout)["items"]) if res.returncode == 0 else []


def member_objects(fleet: Fleet, member: str, ns: str, resource: str) -> list[dict[str, Any]]:
    res = fleet.kubectl("get", resource, "-n", ns, "-o", "json", cluster=member, check=False, timeout=15)
    return list(json.loads(res.stdout)["items"]) if res.returncode == 0 else []


def member_jobs(fleet: Fleet, member: str, ns: str) -> list[dict[str, Any]]:
    return member_objects(fleet, member, ns, "jobs")


def delete_gpuclusters(fleet: Fleet, names: list[str]) -> None:
    """Delete GPUClusters, also when no operator runs to release its finalizer (a test-only shortcut)."""
    if not names:
        return
    fleet.kubectl("delete", "gpucluster", *names, "--ignore-not-found", "--wait=false")

    def gone() -> bool:
        left = [d["metadata"]["name"] for d in json.loads(fleet.kubectl("get", "gpuclusters", "-o", "json").stdout)
                ["items"] if d["metadata"]["name"] in names]
        for name in left:
            fleet.kubectl("patch", "gpucluster", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                          check=False)
        return not left

    wait_until(f"GPUClusters {', '.join(names)} gone", gone, timeout=60)
