"""The hub chart installed by the real Helm into the testbed hub, and the operator run with the chart's own
ServiceAccount identity (a TokenRequest token, as a pod would get): an end-to-end placement succeeds (the RBAC
is sufficient) and the same identity is refused what it should not do (the RBAC is minimal). The member side
goes through the member chart's scoped ServiceAccount, so both charts' RBAC is proven on real apiservers.

The hub has no kubelet: the Deployment's pods are created (the pod template is valid) but never run, so the
operator runs here as a process holding the ServiceAccount's token, exactly what the pod would hold."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import yaml
from chart_harness import HUB_CHART, Helm, json_of
from install_harness import (
    CRDS,
    LEASE,
    MEMBER,
    NS,
    PERMISSION_ERRORS,
    SA,
    SCOPED_SECRET,
    ChartOperator,
    Installed,
    hub_namespace,
    install_hub_chart,
    installed_charts,
    write_hub_sa_kubeconfig,
)

from health_lua import discover, health
from operator_harness import OperatorProcess, aiw, apply, hub_json, workload
from tenbin.testbed.binaries import TestbedError
from tenbin.testbed.fleet import Fleet, wait_until


@pytest.fixture(scope="module")
def installed(fleet: Fleet, helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    with installed_charts(fleet, helm, tmp_path_factory.mktemp("chart-install")) as inst:
        yield inst


@pytest.fixture(scope="module")
def operator(installed: Installed) -> Iterator[ChartOperator]:
    op = ChartOperator(installed.fleet, installed.dir / "operator-a.log", installed.hub_sa_kubeconfig,
                       pod_name="tenbin-chart-a")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def ns(installed: Installed) -> Iterator[str]:
    with hub_namespace(installed) as name:
        yield name



def test_helm_install_creates_the_hub_side(installed: Installed) -> None:
    fleet = installed.fleet
    assert "Tenbin 0.1.0 is installed on this hub in namespace tenbin-system" in installed.install_output
    status = json_of(installed.helm.run("status", "tenbin", "-n", NS, "-o", "json",
                                        "--kubeconfig", str(fleet.kubeconfig("hub"))))
    assert status["info"]["status"] == "deployed"
    dep = hub_json(fleet, "deployment", "tenbin", "-n", NS)
    assert dep["spec"]["replicas"] == 2
    # the ReplicaSet controller accepted the pod template: both pods exist (no kubelet runs them on the hub)
    selector = "app.kubernetes.io/name=tenbin,app.kubernetes.io/component=operator"
    wait_until("2 operator pods created", lambda: len(hub_json(fleet, "pods", "-n", NS, "-l", selector)["items"]) == 2,
               timeout=60)
    pod = hub_json(fleet, "pods", "-n", NS, "-l", selector)["items"][0]
    assert pod["spec"]["serviceAccountName"] == "tenbin"
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    for kind, name in (("poddisruptionbudget", "tenbin"), ("service", "tenbin-metrics"),
                       ("serviceaccount", "tenbin"), ("role", "tenbin-secrets"), ("rolebinding", "tenbin-secrets"),
                       ("role", "tenbin-leader-election"), ("rolebinding", "tenbin-leader-election")):
        assert hub_json(fleet, kind, name, "-n", NS)["metadata"]["name"] == name
    for kind in ("clusterrole", "clusterrolebinding"):
        assert hub_json(fleet, kind, "tenbin")["metadata"]["name"] == "tenbin"
    # the member chart on the member: its identity, and the agent DaemonSet scheduled on the GPU nodes
    member_nodes = len(json.loads(fleet.kubectl("get", "nodes", "-l", "nvidia.com/gpu.present=true", "-o", "json",
                                                cluster=MEMBER).stdout)["items"])
    assert member_nodes >= 1

    def agents_scheduled() -> bool:
        ds = json.loads(fleet.kubectl("get", "daemonset", "tenbin-member-agent", "-n", NS, "-o", "json",
                                      cluster=MEMBER).stdout)
        return int((ds.get("status") or {}).get("desiredNumberScheduled", -1)) == member_nodes

    wait_until("agent DaemonSet scheduled on every GPU node", agents_scheduled, timeout=60)


def _log_permission_errors(op: OperatorProcess) -> list[str]:
    return [ln for ln in op.log.read_text(errors="replace").splitlines() if any(e in ln for e in PERMISSION_ERRORS)]


def test_the_chart_identity_places_work_end_to_end(installed: Installed, operator: ChartOperator, ns: str) -> None:
    fleet = installed.fleet
    # SovereignCloud in JP: of the fixture fleet, only MEMBER (reached with the scoped identity) qualifies
    w = workload("chart-e2e", gpus=2, run_seconds=3, jurisdictions=["JP"])
    w["spec"]["residency"]["tiers"] = ["SovereignCloud"]
    apply(fleet, ns, w)
    wait_until("Succeeded", lambda: aiw(fleet, ns, "chart-e2e").get("status", {}).get("phase") == "Succeeded",
               timeout=120, abort=operator._died)
    body = aiw(fleet, ns, "chart-e2e")
    assert body["status"]["placement"]["cluster"] == MEMBER
    assert [h["event"] for h in body["status"]["history"]] == ["Scheduled", "Running", "Succeeded"]
    assert "tenbin.io/member-cleanup" in body["metadata"]["finalizers"]  # patch aiworkloads
    job = json.loads(fleet.kubectl("get", "job", "chart-e2e", "-n", ns, "-o", "json", cluster=MEMBER).stdout)
    assert job["status"].get("succeeded") == 1  # applied through the member chart's ServiceAccount
    # the namespace Tenbin made there enforces Pod Security baseline (the member chart's policy requires a level)
    made = json.loads(fleet.kubectl("get", "namespace", ns, "-o", "json", cluster=MEMBER).stdout)["metadata"]["labels"]
    assert made["pod-security.kubernetes.io/enforce"] == "baseline" and made["app.kubernetes.io/managed-by"] == "tenbin"
    events = hub_json(fleet, "events", "-n", ns, "--field-selector", "involvedObject.name=chart-e2e")["items"]
    assert {"Scheduled", "Running", "Succeeded"} <= {e["reason"] for e in events}  # create events
    cluster = hub_json(fleet, "gpucluster", MEMBER)
    assert cluster["spec"]["connection"]["kubeconfigSecretRef"]["name"] == SCOPED_SECRET
    assert cluster["status"]["phase"] == "Ready" and cluster["status"]["gpus"]  # patch gpuclusters/status
    assert "tenbin.io/kopf-daemon" in cluster["metadata"]["finalizers"]  # Kopf's finalizer: patch gpuclusters
    # the Argo CD health checks and actions agree with what the operator really wrote
    assert health("AIWorkload", body)[0] == "Healthy"
    assert health("GPUCluster", cluster)[0] == "Healthy"
    assert discover("AIWorkload", body) == {"re-place": False}  # finished: nothing to move
    assert discover("GPUCluster", cluster) == {"cordon": True, "uncordon": False, "evacuate": True, "fence": False}

    # deletion: the member copy is removed (delete in the member), then the finalizer released
    fleet.kubectl("delete", "aiworkload", "chart-e2e", "-n", ns, "--wait=false")
    wait_until("AIWorkload gone", lambda: not hub_json(fleet, "aiworkloads", "-n", ns)["items"], timeout=60,
               abort=operator._died)
    res = fleet.kubectl("get", "job", "chart-e2e", "-n", ns, "--ignore-not-found", "-o", "name", cluster=MEMBER)
    assert res.stdout.strip() == ""
    assert _log_permission_errors(operator) == []


def _lease_holder(fleet: Fleet) -> str:
    res = fleet.kubectl("get", "lease", LEASE, "-n", NS, "-o", "json", check=False)
    return str((json.loads(res.stdout).get("spec") or {}).get("holderIdentity") or "") if res.returncode == 0 else ""


def test_leader_election_keeps_a_second_replica_standing_by(installed: Installed, operator: ChartOperator) -> None:
    """Both replicas with the chart's identity: a holds the chart's Lease (create, get, update suffice), b reads
    it and stands by, and neither meets a permission error."""
    fleet = installed.fleet
    wait_until("replica a holds the chart's Lease", lambda: _lease_holder(fleet).startswith("tenbin-chart-a_"),
               timeout=60, abort=operator._died)
    b = ChartOperator(fleet, installed.dir / "operator-b.log", installed.hub_sa_kubeconfig, pod_name="tenbin-chart-b")
    b.start()
    try:
        wait_until("replica b stands by", lambda: "standing by" in b.log.read_text(errors="replace"),
                   timeout=60, abort=b._died)
        renewed = hub_json(fleet, "lease", LEASE, "-n", NS)["spec"]["renewTime"]
        wait_until("a renews the Lease", lambda: hub_json(fleet, "lease", LEASE, "-n", NS)["spec"]["renewTime"]
                   != renewed, timeout=30, abort=operator._died)
        assert _lease_holder(fleet).startswith("tenbin-chart-a_")
        assert "acquired the Lease" not in b.log.read_text(errors="replace")
        assert _log_permission_errors(b) == []
    finally:
        b.stop()
    assert _log_permission_errors(operator) == []


def test_a_kubeconfig_secret_outside_the_release_namespace_is_refused(installed: Installed,
                                                                      operator: ChartOperator) -> None:
    """What a user sees when a GPUCluster points at a Secret the operator may not read."""
    fleet = installed.fleet
    fleet.kubectl("create", "secret", "generic", "elsewhere-kubeconfig", "-n", "default",
                  f"--from-file=kubeconfig={fleet.kubeconfig(MEMBER)}")
    doc = {"apiVersion": "tenbin.io/v1alpha1", "kind": "GPUCluster", "metadata": {"name": "t-chart-elsewhere"},
           "spec": {"tier": "OnPrem", "jurisdiction": "JP",
                    "gpus": [{"model": "H100-80GB", "count": 8, "memoryGiB": 80, "pricePerGPUHour": 1,
                              "currency": "JPY"}],
                    "connection": {"kubeconfigSecretRef": {"namespace": "default", "name": "elsewhere-kubeconfig"}}}}
    fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    try:
        def refused() -> bool:
            st = hub_json(fleet, "gpucluster", "t-chart-elsewhere").get("status") or {}
            return st.get("phase") == "NotReady" and "403" in (st.get("message") or "")

        wait_until("t-chart-elsewhere NotReady with a 403", refused, timeout=60, abort=operator._died)
        st = hub_json(fleet, "gpucluster", "t-chart-elsewhere")["status"]
        assert "read Secret default/elsewhere-kubeconfig" in st["message"], st["message"]
    finally:  # deleted while the operator runs: it releases Kopf's finalizer
        fleet.kubectl("delete", "gpucluster", "t-chart-elsewhere", "--wait=false", check=False)
        wait_until("t-chart-elsewhere gone", lambda: not fleet.kubectl(
            "get", "gpucluster", "t-chart-elsewhere", "--ignore-not-found", "-o", "name").stdout.strip(),
            timeout=60, abort=operator._died)
        fleet.kubectl("delete", "secret", "elsewhere-kubeconfig", "-n", "default", check=False)


def test_the_chart_identity_cannot_read_secrets_elsewhere(installed: Installed) -> None:
    fleet = installed.fleet
    other = f"chart-other-{uuid.uuid4().hex[:6]}"
    fleet.kubectl("create", "namespace", other)
    try:
        fleet.kubectl("create", "secret", "generic", "not-yours", "-n", other, "--from-literal=k=v")
        refused = installed.as_sa("get", "secret", "not-yours", "-n", other)
        assert refused.returncode != 0
        assert (f'User "{SA}" cannot get resource "secrets" in API group "" in the namespace "{other}"'
                in refused.stderr), refused.stderr
        # in its own namespace: get by name only, no listing
        allowed = installed.as_sa("get", "secret", f"{MEMBER}-kubeconfig", "-n", NS, "-o", "name")
        assert allowed.returncode == 0, allowed.stderr
        listing = installed.as_sa("get", "secrets", "-n", NS)
        assert listing.returncode != 0 and "cannot list resource \"secrets\"" in listing.stderr
    finally:
        fleet.kubectl("delete", "namespace", other, "--wait=false", check=False)


HUB_CAN_I = [
    ("get", "secrets", NS, True), ("get", "secrets", "default", False), ("list", "secrets", NS, False),
    ("watch", "aiworkloads.tenbin.io", "default", True), ("patch", "aiworkloads.tenbin.io/status", "default", True),
    ("get", "aiworkloads.tenbin.io", "default", False),
    ("create", "aiworkloads.tenbin.io", "default", False), ("delete", "aiworkloads.tenbin.io", "default", False),
    ("update", "aiworkloads.tenbin.io", "default", False),
    ("create", "gpuclusters.tenbin.io", None, False), ("delete", "gpuclusters.tenbin.io", None, False),
    ("patch", "placementpolicies.tenbin.io", None, False), ("create", "events", "default", True),
    ("delete", "events", "default", False), ("create", "pods", NS, False), ("list", "pods", None, False),
    ("create", "leases.coordination.k8s.io", NS, True), ("get", f"leases.coordination.k8s.io/{LEASE}", NS, True),
    ("update", f"leases.coordination.k8s.io/{LEASE}", NS, True),
    ("update", "leases.coordination.k8s.io/another-operator", NS, False),
    ("delete", f"leases.coordination.k8s.io/{LEASE}", NS, False), ("list", "leases.coordination.k8s.io", NS, False),
    ("create", "leases.coordination.k8s.io", "default", False),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", None, False),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None, False),
    ("get", "configmaps", "default", True), ("list", "configmaps", "default", False),
    ("create", "configmaps", "default", False), ("get", "namespaces", None, True), ("list", "namespaces", None, False),
    ("get", "priorityclasses.scheduling.k8s.io", None, True),
]


def test_the_chart_identity_is_least_privilege(installed: Installed) -> None:
    got, want = {}, {}
    for verb, resource, namespace, expected in HUB_CAN_I:
        where = ["-n", namespace] if namespace else []
        res = installed.fleet.kubectl("auth", "can-i", verb, resource, *where, "--as", SA, check=False)
        got[(verb, resource, namespace)] = res.stdout.strip() == "yes"
        want[(verb, resource, namespace)] = expected
    assert got == want


MEMBER_CAN_I = [
    ("list", "nodes", None, True), ("list", "pods", None, True), ("create", "namespaces", None, True),
    ("patch", "jobs.batch", "any", True), ("delete", "deployments.apps", "any", True),
    ("get", "secrets", "kube-system", False), ("create", "pods", "any", False), ("patch", "nodes", None, False),
    ("delete", "namespaces", None, False), ("create", "daemonsets.apps", "any", False),
    ("get", "serviceaccounts", "any", True), ("create", "serviceaccounts", "any", True),
    ("create", "configmaps", "any", True), ("patch", "configmaps", "any", True), ("delete", "configmaps", "any", True),
    ("create", "secrets", "any", False), ("patch", "secrets", "any", False),
    ("create", "priorityclasses.scheduling.k8s.io", None, True),
    ("delete", "priorityclasses.scheduling.k8s.io", None, False),
]


def test_the_member_identity_is_least_privilege(installed: Installed) -> None:
    got, want = {}, {}
    for verb, resource, namespace, expected in MEMBER_CAN_I:
        where = ["-n", namespace] if namespace else []
        res = installed.as_sa("auth", "can-i", verb, resource, *where, kubeconfig=installed.member_sa_kubeconfig)
        got[(verb, resource, namespace)] = res.stdout.strip() == "yes"
        want[(verb, resource, namespace)] = expected
    assert got == want
    refused = installed.as_sa("get", "secrets", "-n", "kube-system", kubeconfig=installed.member_sa_kubeconfig)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()


def test_helm_upgrade_then_uninstall_keeps_crds_and_custom_resources(installed: Installed,
                                                                      operator: ChartOperator) -> None:
    fleet, helm, hub_kc = installed.fleet, installed.helm, str(installed.fleet.kubeconfig("hub"))
    helm.run("upgrade", "tenbin", str(HUB_CHART), "--namespace", NS, "--kubeconfig", hub_kc, "--reuse-values",
             "--set", "replicaCount=3", "--set", "operator.resyncSeconds=5")
    dep = hub_json(fleet, "deployment", "tenbin", "-n", NS)
    assert dep["spec"]["replicas"] == 3
    assert "--resync-seconds=5" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    # an invalid upgrade is refused before anything changes
    bad = helm.run("upgrade", "tenbin", str(HUB_CHART), "--namespace", NS, "--kubeconfig", hub_kc, "--reuse-values",
                   "--set", "replicaCount=0", check=False)
    assert bad.returncode != 0 and "at '/replicaCount'" in bad.stderr
    assert hub_json(fleet, "deployment", "tenbin", "-n", NS)["spec"]["replicas"] == 3

    operator.stop()  # the RBAC it runs with goes away with the release
    helm.run("uninstall", "tenbin", "--namespace", NS, "--kubeconfig", hub_kc)
    try:
        for kind, name, namespaced in (("deployment", "tenbin", True), ("clusterrole", "tenbin", False),
                                       ("role", "tenbin-secrets", True), ("role", "tenbin-leader-election", True)):
            where = ["-n", NS] if namespaced else []
            assert fleet.kubectl("get", kind, name, *where, "--ignore-not-found", "-o", "name").stdout.strip() == "", \
                kind
        for crd in CRDS:  # Helm never deletes crds/: the AIWorkloads and GPUClusters survive an uninstall
            assert hub_json(fleet, "crd", crd)["metadata"]["name"] == crd
        assert any(c["metadata"]["name"] == MEMBER for c in hub_json(fleet, "gpuclusters")["items"])
    finally:  # as the module found it, for the tests after this one: installed again, a fresh token, running
        install_hub_chart(fleet, helm)
        write_hub_sa_kubeconfig(fleet, installed.hub_sa_kubeconfig)
        operator.start()




def _as_member_identity(installed: Installed, *args: str,
                        input_: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(installed.fleet.binaries.kubectl), "--kubeconfig", str(installed.member_sa_kubeconfig), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, input=input_)


def test_the_member_chart_keeps_the_hub_identity_out_of_system_namespaces(installed: Installed) -> None:
    """RBAC lets the hub identity write Jobs and ConfigMaps in every namespace; the member chart's
    ValidatingAdmissionPolicy refuses it in kube-system and the release namespace, and refuses a namespace it
    creates without a Pod Security level, each with a message naming the namespace and the chart value. Other
    users (here the admin) are not affected."""
    fleet = installed.fleet
    for namespace in ("kube-system", NS):
        res = _as_member_identity(installed, "create", "configmap", "probe", "-n", namespace, "--from-literal=a=b")
        assert res.returncode != 0, res.stdout
        assert f"namespace {namespace} is closed to Tenbin" in res.stderr and "hubAccess.namespaces.denied" in \
            res.stderr, res.stderr
        res = _as_member_identity(installed, "create", "job", "probe", "-n", namespace, "--image=busybox")
        assert res.returncode != 0 and f"namespace {namespace} is closed to Tenbin" in res.stderr, res.stderr
    # the admin is not the hub identity: the policy does not look at its requests
    fleet.kubectl("create", "configmap", "tenbin-vap-probe", "-n", "kube-system", "--from-literal=a=b", cluster=MEMBER)
    fleet.kubectl("delete", "configmap", "tenbin-vap-probe", "-n", "kube-system", cluster=MEMBER)

    name = f"vap-{uuid.uuid4().hex[:8]}"

    def namespace(labels: dict[str, str]) -> str:
        return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})

    try:
        for labels in ({}, {"pod-security.kubernetes.io/enforce": "privileged"}):
            res = _as_member_identity(installed, "create", "-f", "-", input_=namespace(labels))
            assert res.returncode != 0, res.stdout
            assert f"namespace {name} must enforce a Pod Security level of baseline, restricted" in res.stderr, \
                res.stderr
        res = _as_member_identity(installed, "create", "-f", "-",
                                  input_=namespace({"pod-security.kubernetes.io/enforce": "baseline"}))
        assert res.returncode == 0, res.stderr
        res = _as_member_identity(installed, "create", "configmap", "probe", "-n", name, "--from-literal=a=b")
        assert res.returncode == 0, res.stderr  # an open namespace: allowed
    finally:
        fleet.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false", cluster=MEMBER, check=False)


def test_a_workload_in_a_closed_namespace_is_refused_and_says_why(installed: Installed,
                                                                  operator: ChartOperator) -> None:
    """An AIWorkload in the hub's kube-public, whose only cluster is MEMBER: MEMBER's policy refuses the Job,
    so it never runs there, and the AIWorkload says which namespace and which chart value (no silent retry)."""
    fleet = installed.fleet
    w = workload("closed", gpus=1, run_seconds=3, jurisdictions=["JP"])
    w["spec"]["residency"]["tiers"] = ["SovereignCloud"]
    apply(fleet, "kube-public", w)
    try:
        try:
            wait_until("refused", lambda: aiw(fleet, "kube-public", "closed").get("status", {}).get("phase")
                       == "Failed", timeout=60, abort=operator._died)
        except TestbedError as exc:
            raise AssertionError(f"{exc}: {aiw(fleet, 'kube-public', 'closed').get('status')}\n{operator.tail()}") \
                from exc
        st = aiw(fleet, "kube-public", "closed")["status"]
        valid = next(c for c in st["conditions"] if c["type"] == "Valid")
        assert valid["status"] == "False" and valid["reason"] == "MemberRejected", valid
        assert "namespace kube-public is closed to Tenbin" in valid["message"], valid
        assert st.get("placement") is None
        res = fleet.kubectl("get", "job", "closed", "-n", "kube-public", "--ignore-not-found", "-o", "name",
                            cluster=MEMBER)
        assert res.stdout.strip() == ""
    finally:
        fleet.kubectl("delete", "aiworkload", "closed", "-n", "kube-public", "--ignore-not-found", check=False)
        wait_until("closed gone", lambda: not hub_json(fleet, "aiworkloads", "-n", "kube-public")["items"],
                   timeout=60)
