"""Argo CD health checks for AIWorkload and GPUCluster, executed by a real Lua runtime, for every phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_harness import ROOT

from health_lua import SCRIPTS, health
from tenbin.api.aiworkload import WorkloadPhase
from tenbin.api.gpucluster import ClusterPhase


def aiw(phase: str | None = None, generation: int = 1, observed: int | None = 1, message: str | None = None,
        conditions: list[dict[str, Any]] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "llm-finetune", "namespace": "research", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    obj: dict[str, Any] = {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload", "metadata": meta,
                           "spec": {"gpu": {"count": 8}}}
    if phase is not None:
        status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
        if observed is not None:
            status["observedGeneration"] = observed
        if message is not None:
            status["message"] = message
        obj["status"] = status
    return obj


def cond(type_: str, status: str, message: str = "", reason: str = "Test") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


AIW_CASES = [
    ("no status yet", aiw(), "Progressing", "Waiting for Tenbin to place"),
    ("Pending", aiw("Pending"), "Progressing", "Pending"),
    ("Scheduled", aiw("Scheduled", message="placed on sakura (H100-80GB)"), "Progressing", "placed on sakura"),
    ("Running", aiw("Running", message="1 pod(s) running on sakura"), "Healthy", "running on sakura"),
    ("Migrating", aiw("Migrating", message="moving to onprem"), "Progressing", "moving to onprem"),
    ("Succeeded", aiw("Succeeded", message="Job completed"), "Healthy", "Job completed"),
    ("Failed", aiw("Failed", message="Job failed (1 failed pods)"), "Degraded", "Job failed"),
    ("Unschedulable, waiting for room", aiw("Unschedulable", message="0/3 clusters fit: 3 insufficient H100-80GB",
                                            conditions=[cond("Scheduled", "False", reason="Unschedulable")]),
     "Progressing", "Waiting for capacity: 0/3 clusters fit"),
    ("Unschedulable, no cluster can ever fit", aiw("Unschedulable", message="0/3 clusters fit: 3 residency",
                                                   conditions=[cond("Scheduled", "False", reason="NoClusterCanFit")]),
     "Degraded", "0/3 clusters fit: 3 residency"),
    ("invalid spec", aiw("Failed", conditions=[cond("Valid", "False", "invalid spec: spec.gpu.count")]),
     "Degraded", "invalid spec: spec.gpu.count"),
    ("spec changed, not yet observed", aiw("Running", generation=3, observed=2), "Progressing",
     "observe generation 3"),
    ("no observedGeneration at all", aiw("Running", observed=None), "Progressing", "observe generation 1"),
    ("finished before a spec edit", aiw("Succeeded", generation=4, observed=2, message="done"), "Healthy", "done"),
    ("placement conflict",
     aiw("Running", conditions=[cond("PlacementConflict", "True", "jurisdiction US not in [JP]")]),
     "Degraded", "jurisdiction US not in [JP]"),
    ("conflict resolved", aiw("Running", message="ok", conditions=[cond("PlacementConflict", "False")]),
     "Healthy", "ok"),
    ("being deleted", aiw("Running", deleting=True), "Progressing", "Being deleted"),
    ("a phase from a newer Tenbin", aiw("Hibernating"), "Unknown", "Hibernating"),
]


@pytest.mark.parametrize(("obj", "want", "text"), [c[1:] for c in AIW_CASES], ids=[c[0] for c in AIW_CASES])
def test_aiworkload_health(obj: dict[str, Any], want: str, text: str) -> None:
    status, message = health("AIWorkload", obj)
    assert (status, text in message) == (want, True), message


def test_every_aiworkload_phase_has_a_definite_health() -> None:
    got = {p.value: health("AIWorkload", aiw(p.value))[0] for p in WorkloadPhase}
    assert got == {"Pending": "Progressing", "Scheduled": "Progressing", "Running": "Healthy",
                   "Migrating": "Progressing", "Succeeded": "Healthy", "Failed": "Degraded",
                   "Unschedulable": "Progressing"}


def gpuc(phase: str | None = None, cordoned: bool = False, message: str | None = None, free: int | None = None,
         conditions: list[dict[str, Any]] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "sakura-ishikari", "generation": 1}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    obj: dict[str, Any] = {"apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": meta,
                           "spec": {"tier": "SovereignCloud", "jurisdiction": "JP", "cordoned": cordoned}}
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if message is not None:
        status["message"] = message
    if free is not None:
        status["freeGPUs"] = free
    if conditions is not None:
        status["conditions"] = conditions
    if status:
        obj["status"] = status
    return obj


GPUC_CASES = [
    ("no status yet", gpuc(), "Progressing", "Waiting for Tenbin"),
    ("Unknown", gpuc("Unknown", message="not yet observed"), "Progressing", "Waiting for Tenbin"),
    ("Ready", gpuc("Ready", message="member apiserver reachable", free=12), "Healthy", "12 free GPUs"),
    ("NotReady", gpuc("NotReady", message="unreachable since 2026-12-04T06:15:05Z: connection refused"), "Degraded",
     "unreachable"),
    ("cordoned and Ready", gpuc("Ready", cordoned=True), "Suspended", "Cordoned"),
    ("cordoned and NotReady", gpuc("NotReady", cordoned=True, message="unreachable"), "Degraded", "unreachable"),
    ("cordoned, not observed yet", gpuc(cordoned=True), "Suspended", "Cordoned"),
    ("only a Ready=True condition", gpuc(conditions=[cond("Ready", "True")]), "Healthy", "ready"),
    ("only a Ready=False condition", gpuc(conditions=[cond("Ready", "False")]), "Degraded", "not ready"),
    ("being deleted", gpuc("Ready", deleting=True), "Progressing", "Being deleted"),
]


@pytest.mark.parametrize(("obj", "want", "text"), [c[1:] for c in GPUC_CASES], ids=[c[0] for c in GPUC_CASES])
def test_gpucluster_health(obj: dict[str, Any], want: str, text: str) -> None:
    status, message = health("GPUCluster", obj)
    assert (status, text in message) == (want, True), message


def test_every_gpucluster_phase_has_a_definite_health() -> None:
    got = {p.value: health("GPUCluster", gpuc(p.value))[0] for p in ClusterPhase}
    assert got == {"Ready": "Healthy", "NotReady": "Degraded", "Unknown": "Progressing"}


@pytest.mark.parametrize(("app_status", "want"), [
    (None, "Progressing"), ({"health": {"status": "Healthy"}}, "Healthy"),
    ({"health": {"status": "Degraded", "message": "x"}}, "Degraded"), ({"sync": {"status": "Synced"}}, "Progressing"),
])
def test_application_health_follows_the_child_application(app_status: dict[str, Any] | None, want: str) -> None:
    obj: dict[str, Any] = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"}}
    if app_status is not None:
        obj["status"] = app_status
    assert health("Application", obj)[0] == want


def test_argocd_cm_snippet_installs_exactly_these_scripts() -> None:
    cm = yaml.safe_load((ROOT / "examples" / "argocd" / "argocd-cm-health.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    assert cm["data"] == {
        "resource.customizations.health.tenbin.io_AIWorkload": SCRIPTS["AIWorkload"].read_text(),
        "resource.customizations.health.tenbin.io_GPUCluster": SCRIPTS["GPUCluster"].read_text(),
        "resource.customizations.health.argoproj.io_Application": SCRIPTS["Application"].read_text(),
    }


def test_a_broken_script_is_noticed(tmp_path: Path) -> None:
    """The runner really executes Lua: a script error raises instead of passing silently."""
    import lupa.lua51

    bad = tmp_path / "bad.lua"
    bad.write_text("hs = {}\nhs.status = obj.status.phase.nested\nreturn hs\n")
    with pytest.raises(lupa.lua51.LuaError):
        health("AIWorkload", aiw(), script=bad)  # no status: indexing nil fails, as it would in Argo CD
