"""Tenbin's short names and plural names collide with none of the CRDs installed beside it: `kubectl get pp`
once returned Tenbin's PlacementPolicies on a hub that also ran Karmada (whose PropagationPolicy is `pp`).

Checked against the real CRDs the testbed builds (Karmada, JobSet, LeaderWorkerSet, KubeRay, the Kubeflow
training operator), plus the names of common projects' CRDs it does not install beside Tenbin here, as their
CRDs declare them (Argo CD, Kueue, Open Cluster Management, Istio, Kyverno)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tenbin.api import KINDS
from tenbin.testbed.addons import ADDONS, addon_dir
from tenbin.testbed.karmada import KarmadaBinaries

pytestmark = pytest.mark.testbed

NOT_BUILT_HERE = {
    "argo-cd": {"app", "apps", "appproj", "appprojs", "appset", "appsets"},
    "kueue": {"cq", "lq", "wl", "rf", "wpc", "ac", "mkc", "mkconfig", "tas"},
    "open-cluster-management": {"mcl", "mclset", "mcsb", "mw", "mwrs", "cma", "mca"},
    "istio": {"dr", "vs", "gw", "se", "pa", "ap", "ra", "ef", "wg", "we", "wasm"},
    "kyverno": {"pol", "cpol", "polr", "cpolr", "ur", "cleanpol", "ccleanpol"},
}


def _names(crd: dict[str, Any]) -> set[str]:
    names = (crd.get("spec") or {}).get("names") or {}
    return {str(n) for n in (names.get("shortNames") or [])} | {str(names.get("plural")), str(names.get("singular"))}


def _installed_beside() -> dict[str, set[str]]:
    dirs = {"karmada": KarmadaBinaries.locate().crds, **{name: addon_dir(name) / "crds" for name in ADDONS}}
    out: dict[str, set[str]] = {}
    for project, d in dirs.items():
        files = sorted(d.rglob("*.yaml"))
        assert files, f"no CRDs found for {project} in {d}"
        for f in files:
            for doc in yaml.load_all(f.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    out.setdefault(project, set()).update(_names(doc))
    return out


def test_no_tenbin_name_is_taken_by_a_crd_installed_beside_it() -> None:
    others = {**_installed_beside(), **NOT_BUILT_HERE}
    assert "pp" in others["karmada"]  # the collision this guards against is seen in the real CRDs
    for info in KINDS.values():
        for name in (*info.short_names, info.plural, info.singular):
            taken = sorted(project for project, names in others.items() if name in names)
            assert not taken, f"{info.kind}: {name!r} is also a name in {', '.join(taken)}"
