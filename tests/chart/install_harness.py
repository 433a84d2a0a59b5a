"""The hub and member charts installed by the real Helm into the testbed, and the operator run with the chart's
own ServiceAccount identity: shared by tests/chart/test_chart_install.py and tests/chart/test_chart_image.py."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from chart_harness import HUB_CHART, MEMBER_CHART, ROOT, Helm, crds_established, kubeconfig_for_token

from operator_harness import DELETE_GRACE, RESYNC, UNREACHABLE_AFTER, OperatorProcess, hub_json
from tenbin.testbed.fleet import SYSTEM_NAMESPACE, Fleet, wait_until

NS = SYSTEM_NAMESPACE  # the release namespace: where the fixture fleet keeps the member kubeconfig Secrets
SA = f"system:serviceaccount:{NS}:tenbin"
MEMBER = "t-sovereign-jp"
SCOPED_SECRET = f"{MEMBER}-scoped-kubeconfig"  # MEMBER reached through the member chart's ServiceAccount only
FIXTURE_FLEET = ROOT / "tests" / "fixtures" / "fleet"
PERMISSION_ERRORS = ("403", "Forbidden", "forbidden", "Not enough permissions")
CRDS = ["aiworkloads.tenbin.io", "gpuclusters.tenbin.io", "placementpolicies.tenbin.io"]
LEASE = "tenbin"  # the chart's Lease: the release's full name, in the release namespace


class ChartOperator(OperatorProcess):
    """`tenbin run` as the chart's Deployment runs it: leader election on the chart's Lease, POD_NAME and
    POD_NAMESPACE from the downward API."""

    def __init__(self, fleet: Fleet, log: Path, kubeconfig: Path, pod_name: str) -> None:
        super().__init__(fleet, log)
        self.kubeconfig = kubeconfig
        self.pod_name = pod_name

    def run_flags(self) -> list[str]:
        """`tenbin run`'s flags, but the hub connection: loopback-only ports, the chart's Lease, test timings."""
        return ["--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
                "--health-address", "127.0.0.1", "--health-port", str(self.health_port),
                "--lease-name", LEASE, "--resync-seconds", str(RESYNC),
                "--unreachable-after", str(UNREACHABLE_AFTER), "--delete-grace", str(DELETE_GRACE)]

    def start(self) -> None:
        argv = [sys.executable, "-m", "tenbin", "run", "--kubeconfig", str(self.kubeconfig), *self.run_flags()]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "POD_NAME": self.pod_name, "POD_NAMESPACE": NS}
        env.pop("KUBECONFIG", None)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        wait_until("operator /healthz", self._healthy, timeout=90, abort=self._died)


@dataclass
class Installed:
    fleet: Fleet
    helm: Helm
    dir: Path
    hub_sa_kubeconfig: Path
    member_sa_kubeconfig: Path
    install_output: str

    def as_sa(self, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl with the chart's ServiceAccount token (not the admin's)."""
        argv = [str(self.fleet.binaries.kubectl), "--kubeconfig", str(kubeconfig or self.hub_sa_kubeconfig), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def ca_b64(fleet: Fleet) -> str:
    return base64.b64encode(fleet.pki.ca_cert.read_bytes()).decode()


def write_hub_sa_kubeconfig(fleet: Fleet, path: Path) -> Path:
    """A kubeconfig holding a fresh TokenRequest token of the chart's ServiceAccount (as its pod would get)."""
    token = fleet.kubectl("create", "token", "tenbin", "-n", NS, "--duration=2h").stdout.strip()
    path.write_text(kubeconfig_for_token(fleet.state.clusters["hub"].url, ca_b64(fleet), token, "hub-sa"))
    return path


def install_hub_chart(fleet: Fleet, helm: Helm) -> str:
    out = helm.run("install", "tenbin", str(HUB_CHART), "--namespace", NS,
                   "--kubeconfig", str(fleet.kubeconfig("hub"))).stdout
    wait_until("CRDs Established", lambda: crds_established(fleet, *CRDS), timeout=60)
    return out


@contextmanager
def installed_charts(fleet: Fleet, helm: Helm, d: Path) -> Iterator[Installed]:
    """Both charts installed (the member chart on MEMBER), MEMBER reached through its scoped identity; undone after."""
    hub_kc, member_kc = str(fleet.kubeconfig("hub")), str(fleet.kubeconfig(MEMBER))
    try:
        out = install_hub_chart(fleet, helm)
        fleet.kubectl("apply", "-f", str(FIXTURE_FLEET),
                      "-f", str(ROOT / "examples" / "policy" / "default.yaml"))
        helm.run("install", "tenbin-member", str(MEMBER_CHART), "--namespace", NS, "--create-namespace",
                 "--kubeconfig", member_kc)

        # the hub identity: a TokenRequest token for the chart's ServiceAccount, as the kubelet would mount it
        hub_sa = write_hub_sa_kubeconfig(fleet, d / "hub-sa.kubeconfig")

        # the member identity: the long-lived token the member chart's Secret receives (docs/install.md)
        def token_filled() -> bool:
            s = json.loads(fleet.kubectl("get", "secret", "tenbin-hub-token", "-n", NS, "-o", "json",
                                         cluster=MEMBER).stdout)
            return bool((s.get("data") or {}).get("token"))

        wait_until("the member chart's token Secret is filled in", token_filled, timeout=60)
        secret = json.loads(fleet.kubectl("get", "secret", "tenbin-hub-token", "-n", NS, "-o", "json",
                                          cluster=MEMBER).stdout)
        member_text = kubeconfig_for_token(fleet.state.clusters[MEMBER].url, secret["data"]["ca.crt"],
                                           base64.b64decode(secret["data"]["token"]).decode(), MEMBER)
        member_sa = d / "member-sa.kubeconfig"
        member_sa.write_text(member_text)
        # connect MEMBER the documented way: its GPUCluster now points at the scoped kubeconfig Secret
        fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": SCOPED_SECRET, "namespace": NS}, "stringData": {"kubeconfig": member_text}}))
        ref = {"namespace": NS, "name": SCOPED_SECRET, "key": "kubeconfig"}
        fleet.kubectl("patch", "gpucluster", MEMBER, "--type=merge",
                      "-p", json.dumps({"spec": {"connection": {"kubeconfigSecretRef": ref}}}))
        yield Installed(fleet, helm, d, hub_sa, member_sa, out)
    finally:
        fleet.kubectl("apply", "-f", str(FIXTURE_FLEET), check=False)  # MEMBER's admin connection again
        fleet.kubectl("delete", "secret", SCOPED_SECRET, "-n", NS, "--ignore-not-found", check=False)
        helm.run("uninstall", "tenbin", "--namespace", NS, "--kubeconfig", hub_kc, check=False)
        helm.run("uninstall", "tenbin-member", "--namespace", NS, "--kubeconfig", member_kc, check=False)
        # Helm's server-side apply left field manager "helm" owning the CRDs it created: take them back the
        # way docs/install.md upgrades CRDs, so later tests' `kubectl apply --server-side` meets no conflict
        fleet.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"), check=False)


@contextmanager
def hub_namespace(installed: Installed) -> Iterator[str]:
    """A fresh hub namespace; its AIWorkloads deleted (and gone) before the namespace is."""
    fleet = installed.fleet
    name = f"chart-{uuid.uuid4().hex[:8]}"
    fleet.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        fleet.kubectl("delete", "aiworkloads", "--all", "-n", name, "--wait=false", check=False)
        wait_until(f"AIWorkloads in {name} gone", lambda: not hub_json(fleet, "aiworkloads", "-n", name)["items"],
                   timeout=60)
        fleet.kubectl("delete", "namespace", name, "--wait=false", check=False)
