"""The testbed itself, on real control planes: versions, fake GPU nodes, the real scheduler's accounting."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tenbin.gpumodels import product_label
from tenbin.testbed.binaries import Binaries, TestbedError
from tenbin.testbed.fleet import SYSTEM_NAMESPACE, Fleet, load_fleet, pid_alive, wait_until

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_FLEET = ROOT / "tests" / "fixtures" / "fleet"
SPECS = {m.name: m for m in load_fleet([FIXTURE_FLEET])}


def kget(fleet: Fleet, cluster: str, *args: str) -> dict:
    return json.loads(fleet.kubectl("get", *args, "-o", "json", cluster=cluster).stdout)


@pytest.mark.parametrize("cluster", ["hub", *SPECS])
def test_apiserver_reports_pinned_version(fleet: Fleet, binaries: Binaries, cluster: str) -> None:
    assert fleet.version(cluster) == binaries.kubernetes_version


@pytest.mark.parametrize("member", list(SPECS))
def test_fake_gpu_nodes_ready_with_declared_gpus(fleet: Fleet, member: str) -> None:
    nodes = kget(fleet, member, "nodes")["items"]
    by_product: dict[str, int] = {}
    for n in nodes:
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", n["metadata"]["name"]
        labels = n["metadata"]["labels"]
        gpus = int(n["status"]["allocatable"]["nvidia.com/gpu"])
        assert gpus == int(n["status"]["capacity"]["nvidia.com/gpu"]) == int(labels["nvidia.com/gpu.count"])
        by_product[labels["nvidia.com/gpu.product"]] = by_product.get(labels["nvidia.com/gpu.product"], 0) + gpus
    declared = {product_label(g.model): g.count for g in SPECS[member].gpus}
    assert by_product == declared
    mem = {n["metadata"]["labels"]["nvidia.com/gpu.product"]: n["metadata"]["labels"]["nvidia.com/gpu.memory"]
           for n in nodes}
    assert mem == {product_label(g.model): str(g.memory_gib * 1024) for g in SPECS[member].gpus}


def test_hub_holds_a_kubeconfig_secret_per_member_that_works(fleet: Fleet, tmp_path: Path) -> None:
    for member in SPECS:
        secret = kget(fleet, "hub", "secret", "-n", SYSTEM_NAMESPACE, f"{member}-kubeconfig")
        import base64

        kubeconfig = tmp_path / f"{member}.kubeconfig"
        kubeconfig.write_bytes(base64.b64decode(secret["data"]["kubeconfig"]))
        out = subprocess.run(
            [str(fleet.binaries.kubectl), "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "name"],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        assert out and all(member in name for name in out)


def _job(name: str, gpus: int) -> str:
    return yaml.safe_dump({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        }}},
    })


def test_gpu_job_runs_to_succeeded(fleet: Fleet) -> None:
    member = "t-onprem-jp"
    name = f"gpu-job-{uuid.uuid4().hex[:6]}"
    fleet.kubectl("apply", "-n", "default", "-f", "-", input=_job(name, 1), cluster=member)
    fleet.kubectl("wait", "-n", "default", f"job/{name}", "--for=condition=Complete", "--timeout=120s",
                  cluster=member)
    job = kget(fleet, member, "job", "-n", "default", name)
    assert job["status"]["succeeded"] == 1
    pods = kget(fleet, member, "pods", "-n", "default", "-l", f"job-name={name}")["items"]
    assert pods and pods[0]["spec"]["nodeName"].startswith(member)
    fleet.kubectl("delete", "-n", "default", f"job/{name}", "--cascade=foreground", cluster=member)


def test_pod_asking_more_gpus_than_member_has_stays_pending(fleet: Fleet) -> None:
    member = "t-sovereign-jp"
    total = sum(g.count for g in SPECS[member].gpus)
    name = f"too-big-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox",
                                 "resources": {"limits": {"nvidia.com/gpu": str(total + 1)}}}]},
    }
    fleet.kubectl("apply", "-n", "default", "-f", "-", input=yaml.safe_dump(pod), cluster=member)

    def failed_scheduling() -> bool:
        events = kget(fleet, member, "events", "-n", "default",
                      "--field-selector", f"involvedObject.name={name}")["items"]
        return any(e["reason"] == "FailedScheduling" and "nvidia.com/gpu" in e["message"] for e in events)

    wait_until("FailedScheduling event", failed_scheduling, timeout=60)
    got = kget(fleet, member, "pod", "-n", "default", name)
    assert got["status"]["phase"] == "Pending"
    assert not got["spec"].get("nodeName")
    fleet.kubectl("delete", "-n", "default", f"pod/{name}", "--grace-period=0", "--force", cluster=member)


def test_crd_applied_to_hub_is_served(fleet: Fleet) -> None:
    group = f"t{uuid.uuid4().hex[:6]}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "properties": {
                         "size": {"type": "integer", "minimum": 1}}}}}}}]},
    }
    fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    fleet.wait_established(f"crd/widgets.{group}")
    good = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"},
            "spec": {"size": 2}}
    fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump(good))
    assert kget(fleet, "hub", f"widgets.{group}", "-n", "default", "w")["spec"]["size"] == 2
    bad = dict(good, metadata={"name": "bad", "namespace": "default"}, spec={"size": 0})
    res = fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert res.returncode != 0 and "spec.size" in res.stderr
    fleet.kubectl("delete", "crd", f"widgets.{group}")


# ------------------------------------------------------------------------------- the CLI's up / down


def _tenbin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenbin", *args], capture_output=True, text=True,
                          timeout=400, cwd=ROOT)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_dev_up_twice_then_down_leaves_nothing_running(tmp_path: Path, binaries: Binaries) -> None:
    fleet_file = tmp_path / "one.yaml"
    fleet_file.write_text(yaml.safe_dump({
        "apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": "solo"},
        "spec": {"tier": "OnPrem", "jurisdiction": "JP", "gpus": [{"model": "L4-24GB", "count": 2}]},
    }))
    state = tmp_path / "state"
    first = _tenbin("dev", "up", "-f", str(fleet_file), "--state-dir", str(state))
    assert first.returncode == 0, first.stderr
    assert (state / "hub.kubeconfig").exists() and (state / "solo.kubeconfig").exists()
    fleet = Fleet.load(state, binaries)
    assert fleet is not None
    procs = list(fleet.state.processes)
    names = {p.name for p in procs}
    assert {"etcd", "hub-kube-apiserver", "solo-kube-apiserver", "solo-kube-scheduler",
            "solo-kube-controller-manager", "solo-kwok"} <= names
    assert all(pid_alive(p) for p in procs)
    ports = [c.port for c in fleet.state.clusters.values()] + [fleet.state.etcd_port]
    try:
        second = _tenbin("dev", "up", "-f", str(fleet_file), "--state-dir", str(state))
        assert second.returncode == 0, second.stderr
        assert "already up" in second.stdout
        again = Fleet.load(state, binaries)
        assert again is not None and [p.pid for p in again.state.processes] == [p.pid for p in procs]
    finally:
        down = _tenbin("dev", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(p) for p in procs)
    assert all(_port_free(p) for p in ports)
    assert not state.exists()


def test_dev_up_rejects_a_bad_fleet_file_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: tenbin.io/v1alpha1\nkind: GPUCluster\nmetadata: {name: x}\nspec: {tier: OnPrem}\n")
    res = _tenbin("dev", "up", "-f", str(bad), "--state-dir", str(tmp_path / "s"))
    assert res.returncode == 1
    assert "bad.yaml: GPUCluster x: spec.jurisdiction: required" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "s").exists()


def test_missing_binaries_name_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENBIN_TESTBED_BIN", str(tmp_path))
    with pytest.raises(TestbedError, match=r"kube-apiserver.*make testbed"):
        Binaries.locate()
