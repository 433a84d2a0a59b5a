"""examples/argocd/ against Argo CD's own published CRDs (from its Go module, pinned in testbed/helm/versions.env)
installed into the testbed hub: every Application, the ApplicationSet and the argocd-cm snippet are accepted by
server-side apply; the sync waves put the CRDs first; every Git path exists here and the Helm values they carry
pass the charts' schemas."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_harness import ROOT, Helm, crds_established, pins

from operator_harness import hub_json
from tenbin.testbed.fleet import Fleet, wait_until

ARGOCD = ROOT / "examples" / "argocd"
MANIFESTS = sorted(p for p in ARGOCD.rglob("*.yaml"))
ARGO_CRDS = ["application-crd.yaml", "applicationset-crd.yaml"]


def argocd_module_dir() -> Path:
    version = pins()["ARGOCD_VERSION"]
    res = subprocess.run(["go", "mod", "download", "-json", f"github.com/argoproj/argo-cd/v3@{version}"],
                         capture_output=True, text=True, cwd="/", timeout=600, check=False)
    info = json.loads(res.stdout or "{}")
    crds = Path(info.get("Dir", "/nonexistent")) / "manifests" / "crds"
    if res.returncode != 0 or not (crds / ARGO_CRDS[0]).is_file():
        raise AssertionError(f"Argo CD {version} CRDs unavailable ({info.get('Error') or res.stderr.strip()}); "
                             "run 'bash testbed/build-helm.sh' (it fetches them through the Go module proxy)")
    return crds


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def argo(fleet: Fleet) -> Iterator[Fleet]:
    crds = argocd_module_dir()
    for name in ARGO_CRDS:  # the ApplicationSet CRD is 1.4 MB: only server-side apply takes it
        fleet.kubectl("apply", "--server-side", "-f", str(crds / name))
    wait_until("Argo CD CRDs Established", lambda: crds_established(
        fleet, "applications.argoproj.io", "applicationsets.argoproj.io"), timeout=60)
    fleet.kubectl("create", "namespace", "argocd")
    try:
        yield fleet
    finally:
        fleet.kubectl("delete", "namespace", "argocd", "--wait=false", check=False)
        fleet.kubectl("delete", "crd", "applications.argoproj.io", "applicationsets.argoproj.io", "--wait=false",
                      check=False)


def test_every_argocd_manifest_is_accepted_by_server_side_apply(argo: Fleet) -> None:
    assert {p.relative_to(ARGOCD).as_posix() for p in MANIFESTS} >= {
        "root.yaml", "argocd-cm-health.yaml", "argocd-cm-actions.yaml", "hub/tenbin-crds.yaml",
        "hub/tenbin-hub.yaml", "hub/tenbin-fleet.yaml", "members/tenbin-members.yaml",
        "members/tenbin-member-onprem-tokyo.yaml"}
    for path in MANIFESTS:
        # each argocd-cm snippet with the field manager its header (and docs/install.md) gives: server-side
        # apply then merges their keys instead of one snippet taking the other's away
        header = [w for w in path.read_text().split() if w.startswith("--field-manager=")]
        argo.kubectl("apply", "--server-side", *(header[:1] or ["--field-manager=tenbin-examples"]), "-f", str(path))
    apps = {a["metadata"]["name"]: a for a in hub_json(argo, "applications", "-n", "argocd")["items"]}
    assert set(apps) == {"tenbin", "tenbin-crds", "tenbin-hub", "tenbin-fleet", "tenbin-member-onprem-tokyo"}
    sets = hub_json(argo, "applicationsets", "-n", "argocd")["items"]
    assert [s["metadata"]["name"] for s in sets] == ["tenbin-members"]
    cm = hub_json(argo, "configmap", "argocd-cm", "-n", "argocd")
    keys = {"resource.customizations.health.tenbin.io_AIWorkload",
            "resource.customizations.actions.tenbin.io_AIWorkload",
            "resource.customizations.actions.tenbin.io_GPUCluster"}
    assert keys <= set(cm["data"]), sorted(cm["data"])

    # the schema is enforced (so acceptance above means something): a wrong type is refused
    bad = docs_of(ARGOCD / "hub" / "tenbin-hub.yaml")[0]
    bad["metadata"]["name"] = "broken"
    bad["spec"]["syncPolicy"]["syncOptions"] = "ServerSideApply=true"
    res = argo.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert res.returncode != 0 and "spec.syncPolicy.syncOptions" in res.stderr, res.stderr


def test_sync_waves_install_the_crds_first_with_server_side_apply() -> None:
    hub = {d["metadata"]["name"]: d for p in sorted((ARGOCD / "hub").glob("*.yaml")) for d in docs_of(p)}
    wave = {n: int(d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for n, d in hub.items()}
    assert sorted(wave, key=wave.__getitem__) == ["tenbin-crds", "tenbin-hub", "tenbin-fleet"]
    crds = hub["tenbin-crds"]["spec"]
    assert "ServerSideApply=true" in crds["syncPolicy"]["syncOptions"]
    assert crds["syncPolicy"]["automated"]["prune"] is False  # deleting a CRD would delete every AIWorkload
    assert hub["tenbin-hub"]["spec"]["source"]["helm"]["skipCrds"] is True  # one owner for the CRDs
    root = docs_of(ARGOCD / "root.yaml")[0]
    assert root["spec"]["source"]["path"] == "examples/argocd/hub"


def _sources(app: dict[str, Any]) -> list[dict[str, Any]]:
    spec = app["spec"]["template"]["spec"] if app["kind"] == "ApplicationSet" else app["spec"]
    return list(spec.get("sources") or [spec["source"]])


def test_every_git_path_exists_and_every_helm_values_object_passes_the_chart(helm: Helm, tmp_path: Path) -> None:
    seen = 0
    for path in MANIFESTS:
        for app in docs_of(path):
            if app["kind"] not in ("Application", "ApplicationSet"):
                continue
            for src in _sources(app):
                target = ROOT / src["path"]
                assert target.is_dir(), f"{path.name}: path {src['path']} does not exist in this repository"
                if "helm" not in src:
                    continue
                assert (target / "Chart.yaml").is_file(), src["path"]
                values = tmp_path / f"{app['metadata']['name']}.yaml"
                values.write_text(yaml.safe_dump(src["helm"].get("valuesObject") or {}))
                docs = helm.template(target, release=src["helm"]["releaseName"], values=[values])
                assert docs, f"{path.name}: {src['path']} rendered nothing"
                seen += 1
    assert seen == 3  # tenbin-hub, the members ApplicationSet, the single member
    # the CRD directory an Application syncs holds exactly the chart's CRDs
    crd_dir = ROOT / "charts" / "tenbin" / "crds"
    kinds = {docs_of(p)[0]["kind"] for p in crd_dir.glob("*.yaml")}
    assert kinds == {"CustomResourceDefinition"}
