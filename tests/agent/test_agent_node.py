"""The agent against a real apiserver (a member of the session `fleet`): labels, health changes, no driver.

Each test creates its own throwaway Node (`agent-test-*`) in a member and deletes it afterwards; KWOK leaves
it alone (no kwok annotation), so nothing but the agent writes its metadata.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_pynvml import FakeDevice, FakeNVML

from tenbin.agent.main import EXIT_KUBE, EXIT_NO_DRIVER, EXIT_OK, Agent, AgentMetrics
from tenbin.agent.publish import HEALTH_ANNOTATION
from tenbin.clusters.nodes import KubeNodePublisher
from tenbin.inventory.model import UNHEALTHY_ANNOTATION, inventory_from_objects
from tenbin.testbed.fleet import Fleet, free_port, wait_until

MEMBER = "t-onprem-jp"
HERE = Path(__file__).resolve().parent
AGENT = [sys.executable, "-m", "tenbin.agent.main"]


def get_node(fleet: Fleet, name: str) -> dict[str, Any]:
    return dict(json.loads(fleet.kubectl("get", "node", name, "-o", "json", cluster=MEMBER).stdout))


def node_annotations(fleet: Fleet, name: str) -> dict[str, str]:
    return dict(get_node(fleet, name)["metadata"].get("annotations") or {})


@pytest.fixture
def node(fleet: Fleet) -> Iterator[str]:
    """A throwaway Node with 8 GPUs in its status, deleted (and awaited gone) afterwards."""
    name = f"agent-test-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"capacity": {"nvidia.com/gpu": "8"}, "allocatable": {"nvidia.com/gpu": "8"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }
    fleet.kubectl("create", "-f", "-", input=json.dumps(body), cluster=MEMBER)
    try:
        yield name
    finally:
        fleet.kubectl("delete", "node", name, "--ignore-not-found", "--wait=true", cluster=MEMBER)
        wait_until(f"node {name} gone",
                   lambda: fleet.kubectl("get", "node", name, "--ignore-not-found", "-o", "name",
                                         cluster=MEMBER).stdout.strip() == "", 60)


@contextlib.contextmanager
def running(agent: Agent) -> Iterator[threading.Event]:
    """Run the agent's loop in a thread; stop it and join on exit (the test fails if it does not stop)."""
    stop = threading.Event()
    result: dict[str, int] = {}
    t = threading.Thread(target=lambda: result.setdefault("code", agent.run(stop)), daemon=True)
    t.start()
    try:
        yield stop
    finally:
        stop.set()
        t.join(timeout=30)
        assert not t.is_alive(), "agent loop did not stop"
    assert result.get("code") == EXIT_OK


def test_agent_labels_node_and_propagates_health_changes(fleet: Fleet, node: str) -> None:
    fake = FakeNVML([FakeDevice() for _ in range(8)])
    api = fleet.api_client(MEMBER)
    agent = Agent(nvml=fake, publisher=KubeNodePublisher(api), node=node, interval_s=0.1)
    try:
        with running(agent):
            wait_until("agent labels", lambda: UNHEALTHY_ANNOTATION in node_annotations(fleet, node), 30)
            meta = get_node(fleet, node)["metadata"]
            labels = meta["labels"]
            assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
            assert labels["nvidia.com/gpu.memory"] == "81559"
            assert labels["nvidia.com/gpu.count"] == "8"
            assert labels["nvidia.com/gpu.present"] == "true"
            assert labels["nvidia.com/mig.capable"] == "true"
            assert labels["kubernetes.io/hostname"] == node  # other labels untouched
            assert meta["annotations"][UNHEALTHY_ANNOTATION] == "0"
            assert json.loads(meta["annotations"][HEALTH_ANNOTATION])["status"] == "Healthy"

            fake.update(2, ecc_uncorrected_volatile=3)
            fake.inject_xid(6, 79)  # fallen off the bus
            fake.inject_xid(7, 13)  # application error: stays healthy
            wait_until("unhealthy annotation = 2",
                       lambda: node_annotations(fleet, node)[UNHEALTHY_ANNOTATION] == "2", 30)
            health = json.loads(node_annotations(fleet, node)[HEALTH_ANNOTATION])
            assert health["status"] == "Degraded"
            assert [(g["index"], g["problems"]) for g in health["gpus"] if not g["healthy"]] == [
                (2, ["3 uncorrectable ECC error(s) since the driver loaded"]), (6, ["critical XID 79"])]

            # the inventory the operator computes from this Node now counts 2 GPUs fewer
            inv = inventory_from_objects([get_node(fleet, node)], [])
            assert inv.free() == {"H100-80GB": 6}

            fake.update(2, ecc_uncorrected_volatile=0)  # driver reloaded: volatile counter reset
            wait_until("unhealthy annotation = 1",
                       lambda: node_annotations(fleet, node)[UNHEALTHY_ANNOTATION] == "1", 30)
    finally:
        api.close()
    assert not fake.initialized  # nvmlShutdown on stop


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def run_agent(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def test_real_pynvml_without_driver_exits_3_and_records_it_on_the_node(fleet: Fleet, node: str) -> None:
    res = run_agent("--once", "--node-name", node, "--kubeconfig", str(fleet.kubeconfig(MEMBER)))
    assert res.returncode == EXIT_NO_DRIVER, res.stderr
    assert res.stderr.splitlines() == ["tenbin-agent ERROR no NVIDIA driver: NVML Shared Library Not Found"]
    assert res.stdout == ""
    health = json.loads(node_annotations(fleet, node)[HEALTH_ANNOTATION])
    assert (health["status"], health["message"]) == ("NoDriver", "no NVIDIA driver: NVML Shared Library Not Found")
    assert UNHEALTHY_ANNOTATION not in node_annotations(fleet, node)


def test_no_driver_and_no_apiserver_still_exits_3_without_traceback(tmp_path: Path) -> None:
    kc = write_kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{free_port()}")  # nothing listens
    res = run_agent("--node-name", "n1", "--kubeconfig", str(kc), env={"NODE_NAME": ""})
    assert res.returncode == EXIT_NO_DRIVER
    lines = res.stderr.splitlines()
    assert lines[0] == "tenbin-agent ERROR no NVIDIA driver: NVML Shared Library Not Found"
    assert lines[1].startswith("tenbin-agent ERROR could not patch node n1: ")
    assert len(lines) == 2 and "Traceback" not in res.stderr


def fake_env(tmp_path: Path, devices: list[dict[str, Any]]) -> dict[str, str]:
    cfg = tmp_path / "nvml.json"
    cfg.write_text(json.dumps({"devices": devices}))
    return {"FAKE_NVML_CONFIG": str(cfg), "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


def test_cli_once_with_fake_nvml_module(fleet: Fleet, node: str, tmp_path: Path) -> None:
    env = fake_env(tmp_path, [{"name": "NVIDIA H200", "memory_mib": 143771, "mig_capable": False, "count": 4}])
    res = run_agent("--once", "--nvml-module", "fake_pynvml", "--kubeconfig", str(fleet.kubeconfig(MEMBER)),
                    env={**env, "NODE_NAME": node})
    assert res.returncode == EXIT_OK, res.stderr
    labels = get_node(fleet, node)["metadata"]["labels"]
    assert (labels["nvidia.com/gpu.product"], labels["nvidia.com/gpu.count"], labels["nvidia.com/mig.capable"]) == \
        ("NVIDIA-H200", "4", "false")


def test_cli_once_on_a_missing_node_exits_4(fleet: Fleet, tmp_path: Path) -> None:
    env = fake_env(tmp_path, [{"count": 1}])
    res = run_agent("--once", "--nvml-module", "fake_pynvml", "--node-name", "agent-test-does-not-exist",
                    "--kubeconfig", str(fleet.kubeconfig(MEMBER)), env=env)
    assert res.returncode == EXIT_KUBE
    assert "could not patch node agent-test-does-not-exist: HTTP 404" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_loop_serves_metrics_and_stops_on_sigterm(fleet: Fleet, node: str, tmp_path: Path) -> None:
    port = free_port()
    env = fake_env(tmp_path, [{"count": 8}])
    proc = subprocess.Popen(
        [*AGENT, "--node-name", node, "--nvml-module", "fake_pynvml", "--kubeconfig", str(fleet.kubeconfig(MEMBER)),
         "--interval", "0.2", "--metrics-port", str(port), "--metrics-address", "127.0.0.1"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        def metrics() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return str(r.read().decode())

        wait_until("agent /metrics", lambda: "tenbin_agent_gpus 8.0" in metrics()
                   and 'tenbin_agent_node_patches_total{result="ok"}' in metrics(), 30,
                   abort=lambda: None if proc.poll() is None else f"agent exited {proc.returncode}")
        text = metrics()
        assert "tenbin_agent_nvml_up 1.0" in text and "tenbin_agent_unhealthy_gpus 0.0" in text
        assert 'tenbin_agent_gpu_healthy{gpu="7",model="NVIDIA H100 80GB HBM3",uuid="GPU-fake-0007"} 1.0' in text
        assert node_annotations(fleet, node)[UNHEALTHY_ANNOTATION] == "0"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == EXIT_OK, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def test_metrics_reflect_no_driver() -> None:
    m = AgentMetrics()
    agent = Agent(nvml=FakeNVML(driver="not_loaded"), publisher=None, node="n", metrics=m)
    assert agent.run(threading.Event(), once=True) == EXIT_NO_DRIVER
    assert m.registry.get_sample_value("tenbin_agent_nvml_up") == 0.0


def test_tenbin_agent_subcommand_passes_options_through() -> None:
    res = subprocess.run([sys.executable, "-m", "tenbin", "agent", "--help"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0 and "--node-name" in res.stdout
