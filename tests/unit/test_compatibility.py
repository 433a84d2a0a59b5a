"""docs/compatibility.md names the versions the testbed really builds and runs: each row's version is the pin
in the file the row names."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN_NAMES = {  # the part's first word in the table -> its pin's name
    "Kubernetes": "KUBERNETES_VERSION", "etcd": "ETCD_VERSION", "KWOK": "KWOK_VERSION",
    "Karmada": "KARMADA_VERSION", "Helm": "HELM_VERSION", "Argo": "ARGOCD_VERSION",
    "Prometheus": "PROMETHEUS_VERSION", "JobSet": "JOBSET_VERSION", "LeaderWorkerSet": "LWS_VERSION",
    "KubeRay": "KUBERAY_VERSION", "Kubeflow": "TRAINING_OPERATOR_VERSION", "Volcano": "VOLCANO_APIS_VERSION",
}


def pin(path: Path, name: str) -> str:
    found = re.search(rf'^{name}\s*=\s*"?(v[0-9][^"\s]*)"?\s*$', path.read_text(), re.M)
    assert found, f"no {name} in {path}"
    return found.group(1)


def test_every_tested_version_is_the_testbeds_pin() -> None:
    text = (ROOT / "docs" / "compatibility.md").read_text()
    rows = re.findall(r"^\| ([^|]+) \| (v[0-9][^ |]*) \| `([^`]+)` \|$", text, re.M)
    assert {part.split()[0] for part, _, _ in rows} == set(PIN_NAMES)
    for part, version, where in rows:
        assert version == pin(ROOT / where, PIN_NAMES[part.split()[0]]), part
