"""The Karmada testbed itself: a real control plane built from Go modules, members joined in Push mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kbackend import MEMBERS

from operator_harness import ROOT
from tenbin.testbed.fleet import HUB, SYSTEM_NAMESPACE, Fleet, load_fleet, pid_alive
from tenbin.testbed.karmada import COMPONENTS, KARMADA, KARMADA_VERSION, Karmada

SPECS = {m.name: m for m in load_fleet([ROOT / "tests" / "fixtures" / "fleet"])}


def test_members_joined_in_push_mode_with_their_gpus_in_the_resource_summary(karmada: Karmada) -> None:
    clusters = {c["metadata"]["name"]: c for c in karmada.get_json("clusters.cluster.karmada.io")["items"]}
    assert set(clusters) == set(MEMBERS)
    for name, c in clusters.items():
        assert c["spec"]["syncMode"] == "Push"
        assert c["spec"]["apiEndpoint"] == karmada.fleet.state.clusters[name].url
        assert c["status"]["kubernetesVersion"] == karmada.fleet.binaries.kubernetes_version
        # the cluster status controller sums every allocatable key: nvidia.com/gpu included, models not
        gpus = sum(g.count for g in SPECS[name].gpus)
        assert c["status"]["resourceSummary"]["allocatable"]["nvidia.com/gpu"] == str(gpus)


def test_processes_are_recorded_in_the_fleet_and_the_kubeconfig_is_published(karmada: Karmada) -> None:
    fleet = karmada.fleet
    names = {p.name for p in karmada.processes()}
    assert names == {f"{KARMADA}-{c}" for c in COMPONENTS}
    assert all(pid_alive(p) for p in karmada.processes())
    saved = json.loads(Fleet.state_file(fleet.state_dir).read_text())
    assert names <= {p["name"] for p in saved["processes"]} and saved["clusters"][KARMADA]["role"] == KARMADA
    assert (fleet.state_dir / "karmada.kubeconfig").is_file()
    secret = json.loads(fleet.kubectl("get", "secret", "-n", SYSTEM_NAMESPACE, "karmada-kubeconfig", "-o", "json",
                                      cluster=HUB).stdout)
    assert "kubeconfig" in secret["data"]
    apiservice = karmada.get_json("apiservice", "v1alpha1.cluster.karmada.io")
    assert any(c["type"] == "Available" and c["status"] == "True" for c in apiservice["status"]["conditions"])


def test_a_policy_gets_its_permanent_id_from_the_real_webhook(karmada: Karmada) -> None:
    ns = "webhook-check"
    karmada.kubectl("create", "namespace", ns, check=False)
    policy = {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
              "metadata": {"name": "p", "namespace": ns},
              "spec": {"resourceSelectors": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}],
                       "placement": {"clusterAffinity": {"clusterNames": [MEMBERS[0]]}}}}
    try:
        out = json.loads(karmada.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(policy)).stdout)
        assert out["metadata"]["labels"].get("propagationpolicy.karmada.io/permanent-id")
    finally:
        karmada.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_dev_up_karmada_and_down_from_the_command_line(tmp_path: Path, binaries: object) -> None:
    """`tenbin dev up --karmada` on a one-member fleet of its own; `dev down` stops every process it started."""
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text((ROOT / "tests" / "fixtures" / "fleet" / "members.yaml").read_text().split("\n---\n")[0])
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "tenbin", "dev"]
    try:
        up = subprocess.run([*cmd, "up", "-f", str(fleet_file), "--state-dir", str(state), "--karmada"],
                            capture_output=True, text=True, timeout=400, cwd=ROOT)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "joined t-onprem-jp" in up.stdout and f"{KARMADA}-controller-manager" in up.stdout
        fleet = Fleet.load(state)
        assert fleet is not None
        k = Karmada(fleet)
        assert k.cluster_ready("t-onprem-jp")
        assert len(k.processes()) == len(COMPONENTS)
        again = subprocess.run([*cmd, "up", "-f", str(fleet_file), "--state-dir", str(state), "--karmada"],
                               capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert again.returncode == 0 and "Karmada already up" in again.stdout, again.stdout + again.stderr
        records = list(fleet.state.processes)
    finally:
        down = subprocess.run([*cmd, "down", "--state-dir", str(state)], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(p) for p in records)
    assert not state.exists()


def test_the_pinned_version_is_what_was_built(binaries: object) -> None:
    from tenbin.testbed.karmada import KarmadaBinaries

    bins = KarmadaBinaries.locate()
    out = subprocess.run([str(bins.scheduler), "version"], capture_output=True, text=True, timeout=30).stdout
    assert f'GitVersion:"{KARMADA_VERSION}"' in out
