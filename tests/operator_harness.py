"""Helpers to drive the operator end to end: the `tenbin run` process and AIWorkload builders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tenbin.testbed.fleet import Fleet, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
RESYNC = 1.0
UNREACHABLE_AFTER = 3.0
DELETE_GRACE = 5.0
CLUSTER_LOST_AFTER = 5.0
PENDING_TIMEOUT = 8.0
CHECKPOINT_GRACE = 15.0  # long enough that the test's acknowledgement lands in time on a loaded machine
MIN_MOVE_INTERVAL = 5.0

class OperatorProcess:
    """`tenbin run` in a subprocess; stopped by the fixture that started it."""

    def __init__(self, fleet: Fleet, log: Path, leader_elect: list[str] | None = None,
                 env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.fleet = fleet
        self.extra_args = extra_args
        self.log = log
        self.leader_elect = leader_elect  # None: --standalone; else these leader election flags instead
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.health_port = free_port()

    def start(self) -> None:
        argv = [sys.executable, "-m", "tenbin", "run", "--kubeconfig", str(self.fleet.kubeconfig("hub")),
                "--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
                "--health-address", "127.0.0.1", "--health-port", str(self.health_port),
                *(["--standalone"] if self.leader_elect is None else self.leader_elect),
                "--resync-seconds", str(RESYNC), "--unreachable-after", str(UNREACHABLE_AFTER),
                "--delete-grace", str(DELETE_GRACE), "--cluster-lost-after", str(CLUSTER_LOST_AFTER),
                "--pending-timeout", str(PENDING_TIMEOUT), "--checkpoint-grace", str(CHECKPOINT_GRACE),
                "--min-move-interval", str(MIN_MOVE_INTERVAL), "--migration-timeout", "60", *self.extra_args]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        wait_until("operator /healthz", self._healthy, timeout=60, abort=self._died)

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
            return bool(r.status == 200)

    def _died(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"operator exited with {self.proc.returncode}:\n{self.tail()}"
        return None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen (SIGSTOPped) process could not stop
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])



def hub_json(fleet: Fleet, *args: str) -> Any:
    return json.loads(fleet.kubectl("get", *args, "-o", "json").stdout)


def aiw(fleet: Fleet, ns: str, name: str) -> dict[str, Any]:
    return dict(hub_json(fleet, "aiworkload", "-n", ns, name))


def workload(name: str, gpus: int = 1, replicas: int = 1, classification: str = "Internal",
             jurisdictions: list[str] | None = None, run_seconds: int | None = None,
             models: list[str] | None = None, tiers: list[str] | None = None,
             required_labels: list[str] | None = None, migration: dict[str, Any] | None = None,
             kind: str = "Job") -> dict[str, Any]:
    """An AIWorkload running a Job (pods 'run' for run_seconds on KWOK, default 1-5 s) or a Deployment."""
    # KWOK completes a Job pod after a delay drawn between delay and jitter-delay: pin both
    annotations = {"pod-complete.stage.kwok.x-k8s.io/delay": f"{run_seconds}s",
                   "pod-complete.stage.kwok.x-k8s.io/jitter-delay": f"{run_seconds}s"} if run_seconds else {}
    residency: dict[str, Any] = {"dataClassification": classification}
    if jurisdictions:
        residency["jurisdictions"] = jurisdictions
    if tiers:
        residency["tiers"] = tiers
    if required_labels:
        residency["requiredLabels"] = required_labels
    pod = {"metadata": {"annotations": annotations, "labels": {"app": name}},
           "spec": {"containers": [{"name": "main", "image": "registry.example.com/train:1",
                                    "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}
    if kind == "Job":
        pod["spec"]["restartPolicy"] = "Never"
        template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                    "spec": {"parallelism": replicas, "completions": replicas, "backoffLimit": 0, "template": pod}}
    else:
        template = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": pod}}
    spec: dict[str, Any] = {
        "gpu": {"count": gpus, **({"models": models} if models else {})},
        "replicas": replicas,
        "residency": residency,
        "template": template,
    }
    if migration:
        spec["migration"] = migration
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload", "metadata": {"name": name}, "spec": spec}


def apply(fleet: Fleet, ns: str, *docs: dict[str, Any]) -> None:
    fleet.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))


HOLD = "test.tenbin.io/hold"  # a scheduling gate: the pod is created, and waits unbound until the test says


def held(doc: dict[str, Any]) -> dict[str, Any]:
    """The AIWorkload's pods wait behind the HOLD scheduling gate in whichever member they are created."""
    tmpl = doc["spec"]["template"]
    pod = tmpl["spec"]["template"] if tmpl["kind"] != "Pod" else tmpl
    pod["spec"]["schedulingGates"] = [{"name": HOLD}]
    return doc


def member_pods(fleet: Fleet, member: str, ns: str) -> list[dict[str, Any]]:
    res = fleet.kubectl("get", "pods", "-n", ns, "-o", "json", cluster=member, check=False)
    return list(json.loads(res.stdout)["items"]) if res.returncode == 0 else []


def release(fleet: Fleet, member: str, ns: str) -> int:
    """Remove the scheduling gates of the namespace's pods in `member`; how many were released."""
    n = 0
    for p in member_pods(fleet, member, ns):
        if p["spec"].get("schedulingGates"):
            fleet.kubectl("patch", "pod", "-n", ns, p["metadata"]["name"], "--type=json",
                          "-p", '[{"op": "remove", "path": "/spec/schedulingGates"}]', cluster=member)
            n += 1
    return n


def bring_member_back(fleet: Fleet, member: str) -> None:
    """Restart a stopped member apiserver, and its controller-manager with it.

    After its apiserver went away, kube-controller-manager's garbage collector can take minutes to
    resync, leaving the pods of deleted Jobs (and their GPUs) behind for the tests that follow; a
    member that comes back in real life comes back whole, so the testbed restarts both.
    """
    fleet.restart(f"{member}-kube-apiserver")
    fleet.stop(f"{member}-kube-controller-manager")
    fleet.restart(f"{member}-kube-controller-manager")
