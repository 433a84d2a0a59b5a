"""The charts through the real Helm engine: lint, render for default and non-default values, schema errors,
least-privilege RBAC over every rendered manifest, and the CRDs kept identical to crds/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_harness import HUB_CHART, MEMBER_CHART, ROOT, VALUES, Helm, by_kind, one, rules

HUB_SETS = {"default": [], "ha-monitoring": [VALUES / "ha-monitoring.yaml"],
            "single-minimal": [VALUES / "single-minimal.yaml"]}
MEMBER_SETS = {"default": [], "member-custom": [VALUES / "member-custom.yaml"]}
ALL = [(HUB_CHART, n, v) for n, v in HUB_SETS.items()] + [(MEMBER_CHART, n, v) for n, v in MEMBER_SETS.items()]


def _id(case: tuple[Path, str, list[Path]]) -> str:
    return f"{case[0].name}:{case[1]}"


@pytest.mark.parametrize("case", ALL, ids=_id)
def test_lint_strict(helm: Helm, case: tuple[Path, str, list[Path]]) -> None:
    chart, _, values = case
    res = helm.run("lint", "--strict", str(chart), *(a for f in values for a in ("--values", str(f))))
    assert "1 chart(s) linted, 0 chart(s) failed" in res.stdout, res.stdout


@pytest.mark.parametrize("case", ALL, ids=_id)
def test_rbac_has_no_wildcards_and_secrets_only_in_the_release_namespace(
        helm: Helm, case: tuple[Path, str, list[Path]]) -> None:
    chart, _, values = case
    docs = helm.template(chart, values=values, namespace="tenbin-system")
    seen = 0
    for role, rule in rules(docs):
        seen += 1
        for key in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
            assert not any("*" in str(x) for x in rule.get(key) or []), (role["metadata"]["name"], rule)
        assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"] and "impersonate" not in rule["verbs"]
        if "secrets" in rule.get("resources", []):
            assert role["kind"] == "Role", f"{role['metadata']['name']}: Secrets granted cluster-wide"
            assert role["metadata"]["namespace"] == "tenbin-system" and rule["verbs"] == ["get"], rule
    assert seen, "no RBAC rendered"
    # every binding points at a role rendered here, bound to a subject in the release namespace
    names = {d["metadata"]["name"] for d in docs if d["kind"] in ("Role", "ClusterRole")}
    for b in docs:
        if b["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            assert b["roleRef"]["name"] in names


def test_secrets_are_read_only_in_the_namespaces_that_opt_in_to_copying(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "copy.yaml"
    values.write_text("rbac:\n  copySecretsFromNamespaces: [ml-team, research]\n")
    docs = helm.template(HUB_CHART, values=[values], namespace="tenbin-system")
    secret_rules = [(r["kind"], r["metadata"]["namespace"], tuple(rule["verbs"])) for r, rule in rules(docs)
                    if "secrets" in rule["resources"]]
    assert sorted(secret_rules) == [("Role", "ml-team", ("get",)), ("Role", "research", ("get",)),
                                    ("Role", "tenbin-system", ("get",))]
    bound = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(docs, "RoleBinding")}
    assert {("ml-team", "tenbin-copy-secrets"), ("research", "tenbin-copy-secrets")} <= bound
    member = helm.template(MEMBER_CHART, release="tenbin-member", namespace="tenbin-system")
    role = one(member, "ClusterRole", "tenbin-member-hub-access")
    assert not [r for r in role["rules"] if "secrets" in r["resources"]], "Secrets writable by default"
    assert {"apiGroups": [""], "resources": ["configmaps", "serviceaccounts"],
            "verbs": ["get", "list", "create", "patch", "delete"]} in role["rules"]


def test_default_hub_render(helm: Helm) -> None:
    docs = helm.template(HUB_CHART)
    dep = one(docs, "Deployment", "tenbin")
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert spec["replicas"] == 2
    assert c["image"] == "ghcr.io/tenbin/tenbin:0.1.0"  # the chart's appVersion
    assert c["args"] == ["run", "--metrics-port=8080", "--health-port=8081", "--lease-name=tenbin",
                         "--lease-duration=15", "--renew-deadline=10", "--retry-period=2"]  # leader election on;
    # no operator setting is passed: the operator's own defaults hold (written once, in Config)
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in c["env"]
    assert not [e for e in c["env"] if e["name"] == "POD_ID"], "Kopf peering's identity is gone"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "privileged": False, "capabilities": {"drop": ["ALL"]}}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == "tenbin"
    assert pod["affinity"]["podAntiAffinity"]
    assert one(docs, "ServiceAccount", "tenbin")
    assert not by_kind(docs, "ClusterKopfPeering")
    assert one(docs, "RoleBinding", "tenbin-leader-election")["roleRef"]["name"] == "tenbin-leader-election"
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    svc = one(docs, "Service", "tenbin-metrics")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert not by_kind(docs, "ServiceMonitor")
    # CRDs are not templates: `helm template` without --include-crds leaves them out; with it, Tenbin's three
    crds = by_kind(helm.template(HUB_CHART, "--include-crds"), "CustomResourceDefinition")
    assert sorted(d["metadata"]["name"] for d in crds) == [
        "aiworkloads.tenbin.io", "gpuclusters.tenbin.io", "placementpolicies.tenbin.io"]


def test_hub_cluster_role_is_exactly_what_the_operator_uses(helm: Helm) -> None:
    """A change here is a change of the operator's privileges: it must be deliberate (and tested on a hub)."""
    docs = helm.template(HUB_CHART)
    got = [(r["kind"], tuple(rule["apiGroups"]), tuple(rule["resources"]), tuple(rule.get("resourceNames", ())),
            tuple(rule["verbs"])) for r, rule in rules(docs)]
    assert got == [
        ("ClusterRole", ("tenbin.io",), ("aiworkloads", "gpuclusters", "placementpolicies"), (),
         ("list", "watch")),
        ("ClusterRole", ("tenbin.io",), ("aiworkloads", "gpuclusters"), (), ("patch",)),
        ("ClusterRole", ("tenbin.io",), ("aiworkloads/status", "gpuclusters/status"), (), ("patch",)),
        ("ClusterRole", ("",), ("events",), (), ("create",)),
        ("ClusterRole", ("",), ("configmaps", "serviceaccounts", "namespaces"), (), ("get",)),
        ("ClusterRole", ("scheduling.k8s.io",), ("priorityclasses",), (), ("get",)),
        ("ClusterRole", ("apiextensions.k8s.io",), ("customresourcedefinitions",), (), ("list", "watch")),
        ("Role", ("",), ("secrets",), (), ("get",)),
        ("Role", ("coordination.k8s.io",), ("leases",), (), ("create",)),
        ("Role", ("coordination.k8s.io",), ("leases",), ("tenbin",), ("get", "update")),
    ]
    lease_roles = {r["metadata"]["name"] for r, rule in rules(docs) if "leases" in rule["resources"]}
    assert lease_roles == {"tenbin-leader-election"}
    assert {r["metadata"].get("namespace") for r, rule in rules(docs) if "leases" in rule["resources"]} == {
        "tenbin-system"}


def test_every_operator_setting_reaches_tenbin_run(helm: Helm, tmp_path: Path) -> None:
    """Each `operator.<setting>` renders its flag, and `tenbin run` parses the rendered args to that value."""
    from tenbin.cli import build_parser
    from tenbin.services.settings import config_flags

    flags = config_flags()
    wanted = {f.name: f.kind(f.minimum + 7) for f in flags}  # not a default, allowed by the minimum
    values = tmp_path / "settings.yaml"  # a values file: `--set` would pass 7.1 as a string
    values.write_text(yaml.safe_dump({"operator": {f.chart_key: wanted[f.name] for f in flags}}))
    docs = helm.template(HUB_CHART, values=[values])
    (c,) = one(docs, "Deployment", "tenbin")["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(c["args"])
    assert {f.name: getattr(args, f.name) for f in flags} == wanted


def test_json_logs_are_one_value(helm: Helm) -> None:
    (c,) = one(helm.template(HUB_CHART, sets={"operator.logFormat": "json"}), "Deployment", "tenbin")["spec"][
        "template"]["spec"]["containers"]
    from tenbin.cli import build_parser

    assert "--log-format=json" in c["args"] and build_parser().parse_args(c["args"]).log_format == "json"
    with pytest.raises(AssertionError, match="logFormat"):
        helm.template(HUB_CHART, sets={"operator.logFormat": "yaml"})


@pytest.mark.parametrize(("level", "want"), [(None, "baseline"), ("restricted", "restricted"), ("none", "none")])
def test_member_pod_security_reaches_tenbin_run(helm: Helm, level: str | None, want: str) -> None:
    from tenbin.cli import build_parser
    from tenbin.clusters.hub import pod_security_labels

    sets = {"operator.memberPodSecurity": level} if level else {}
    (c,) = one(helm.template(HUB_CHART, sets=sets), "Deployment", "tenbin")["spec"]["template"]["spec"]["containers"]
    got = build_parser().parse_args(c["args"]).member_pod_security
    assert got == want
    labels = pod_security_labels(got)
    assert labels.get("pod-security.kubernetes.io/enforce") == (None if want == "none" else want)
    with pytest.raises(AssertionError, match="memberPodSecurity"):
        helm.template(HUB_CHART, sets={"operator.memberPodSecurity": "open"})


def test_ha_monitoring_values(helm: Helm) -> None:
    docs = helm.template(HUB_CHART, values=HUB_SETS["ha-monitoring"])
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] == 3
    assert c["image"] == "registry.example.com/platform/tenbin@sha256:" + "0123456789abcdef" * 4
    assert c["imagePullPolicy"] == "Always" and pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert c["args"] == ["run", "--metrics-port=8080", "--health-port=8081", "--delete-grace=120",
                         "--resync-seconds=5", "--unreachable-after=30", "--lease-name=tenbin",
                         "--lease-duration=15", "--renew-deadline=10", "--retry-period=2", "--verbose"]
    assert {"name": "TZ", "value": "Asia/Tokyo"} in c["env"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "34%"
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s",
                                        "scrapeTimeout": "10s"}]
    assert sm["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_single_minimal_values(helm: Helm) -> None:
    docs = helm.template(HUB_CHART, values=HUB_SETS["single-minimal"])
    dep = one(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert dep["spec"]["replicas"] == 1
    assert "--no-leader-elect" in c["args"] and "--metrics-port=9090" in c["args"] and "--health-port=9091" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--lease")]
    assert c["livenessProbe"]["httpGet"]["port"] == "health"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 9090, "health": 9091}
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "platform-tenbin"
    for kind in ("ServiceAccount", "PodDisruptionBudget", "Service", "ServiceMonitor", "ClusterKopfPeering"):
        assert not by_kind(docs, kind), kind
    groups = {g for _, rule in rules(docs) for g in rule["apiGroups"]}
    assert "coordination.k8s.io" not in groups and "apiextensions.k8s.io" not in groups
    subjects = [s for b in docs if b["kind"].endswith("Binding") for s in b["subjects"]]
    assert subjects and all(s["name"] == "platform-tenbin" for s in subjects)


def test_default_member_render(helm: Helm) -> None:
    docs = helm.template(MEMBER_CHART, release="tenbin-member")
    got = {(r["metadata"]["name"], tuple(rule["apiGroups"]), tuple(rule["resources"]), tuple(rule["verbs"]))
           for r, rule in rules(docs)}
    assert got == {
        ("tenbin-member-hub-access", ("",), ("nodes", "pods"), ("list",)),
        ("tenbin-member-hub-access", ("",), ("namespaces",), ("get", "create")),
        ("tenbin-member-hub-access", ("",), ("configmaps", "serviceaccounts"),
         ("get", "list", "create", "patch", "delete")),
        ("tenbin-member-hub-access", ("scheduling.k8s.io",), ("priorityclasses",), ("get", "create", "patch")),
        ("tenbin-member-hub-access", ("batch",), ("jobs",), ("get", "list", "create", "patch", "delete")),
        ("tenbin-member-hub-access", ("apps",), ("deployments", "statefulsets"),
         ("get", "list", "create", "patch", "delete")),
        ("tenbin-member-agent", ("",), ("nodes",), ("patch",)),
    }
    assert not by_kind(docs, "Role"), "the member side needs no namespaced Secrets access"
    sa = one(docs, "ServiceAccount", "tenbin-hub")
    assert sa["automountServiceAccountToken"] is False
    token = one(docs, "Secret", "tenbin-hub-token")
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "tenbin-hub"
    ds = one(docs, "DaemonSet", "tenbin-member-agent")
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["serviceAccountName"] == "tenbin-agent"
    assert c["args"][0] == "agent" and "--metrics-port=9401" in c["args"]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in c["env"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_member_custom_values(helm: Helm) -> None:
    docs = helm.template(MEMBER_CHART, release="tenbin-member", values=MEMBER_SETS["member-custom"])
    assert not by_kind(docs, "Secret")
    role = one(docs, "ClusterRole", "tenbin-member-hub-access")
    assert {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"],
            "verbs": ["get", "list", "create", "patch", "delete"]} in role["rules"]
    binding = one(docs, "ClusterRoleBinding", "tenbin-member-hub-access")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "tenbin-hub", "namespace": "tenbin-system"},
        {"kind": "ServiceAccount", "name": "tenbin", "namespace": "tenbin-system"}]
    (c,) = one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["agent", "--interval=30", "--log-level=debug", "--no-node-labels", "--ignore-xid=13",
                         "--ignore-xid=43", "--ignore-xid=63"]
    assert "ports" not in c
    assert one(docs, "DaemonSet")["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"


INVALID = [
    (HUB_CHART, {"replicaCount": "0"}, "at '/replicaCount': minimum: got 0, want 1"),
    (HUB_CHART, {"replicas": "2"}, "additional properties 'replicas' not allowed"),
    (HUB_CHART, {"image.pullPolicy": "Sometimes"}, "at '/image/pullPolicy': value must be one of"),
    (HUB_CHART, {"metrics.port": "80800"}, "at '/metrics/port': maximum"),
    (HUB_CHART, {"operator.resyncSeconds": "0"}, "at '/operator/resyncSeconds'"),
    (HUB_CHART, {"operator.pendingTimeout": "60"}, "additional properties 'pendingTimeout' not allowed"),
    (HUB_CHART, {"operator.maxFailovers": "1.5"}, "at '/operator/maxFailovers'"),
    (HUB_CHART, {"securityContext.allowPrivilegeEscalation": "true"}, "at '/securityContext/allowPrivilegeEscalation'"),
    (HUB_CHART, {"podSecurityContext.runAsNonRoot": "false"}, "at '/podSecurityContext/runAsNonRoot'"),
    (HUB_CHART, {"image.digest": "latest"}, "at '/image/digest'"),
    (HUB_CHART, {"resources.limits.memory": "lots"}, "at '/resources/limits/memory'"),
    (HUB_CHART, {"leaderElection.leaseDuration": "0"}, "at '/leaderElection/leaseDuration'"),
    (HUB_CHART, {"peering.enabled": "false"}, "additional properties 'peering' not allowed"),
    (MEMBER_CHART, {"hubAccess.workloadResources[0].apiGroup": "*"}, "at '/hubAccess/workloadResources/0/apiGroup'"),
    (MEMBER_CHART, {"agent.intervalSeconds": "0"}, "at '/agent/intervalSeconds'"),
    (MEMBER_CHART, {"agent.logLevel": "loud"}, "at '/agent/logLevel': value must be one of"),
]


@pytest.mark.parametrize(("chart", "sets", "message"), INVALID,
                         ids=[f"{c.name}:{next(iter(s))}" for c, s, _ in INVALID])
def test_invalid_values_are_rejected_by_the_schema(helm: Helm, chart: Path, sets: dict[str, str],
                                                   message: str) -> None:
    argv = ["template", "x", str(chart)]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    res = helm.run(*argv, check=False)
    assert res.returncode != 0, res.stdout[:500]
    assert "values don't meet the specifications of the schema" in res.stderr, res.stderr
    assert message in res.stderr, res.stderr


@pytest.mark.parametrize(("chart", "sets", "message"), [
    (HUB_CHART, {"leaderElection.enabled": "false"}, "set replicaCount to 1 (it is 2)"),
    (HUB_CHART, {"leaderElection.renewDeadline": "15"},
     "leaderElection.renewDeadline (15) must be shorter than leaderElection.leaseDuration (15)"),
    (HUB_CHART, {"leaderElection.retryPeriod": "10"},
     "leaderElection.retryPeriod (10) must be shorter than leaderElection.renewDeadline (10)"),
    (HUB_CHART, {"metrics.serviceMonitor.enabled": "true", "metrics.service.enabled": "false"},
     "set metrics.service.enabled=true too"),
    (HUB_CHART, {"serviceAccount.create": "false"}, "serviceAccount.name is required"),
    (MEMBER_CHART, {"hubAccess.serviceAccount.create": "false"}, "nothing to bind"),
], ids=["no-leader-election-with-2-replicas", "renew-deadline-not-below-lease", "retry-not-below-renew",
        "servicemonitor-without-service", "no-sa-name", "member-nothing-to-bind"])
def test_inconsistent_values_fail_with_a_clear_message(helm: Helm, chart: Path, sets: dict[str, str],
                                                       message: str) -> None:
    argv = ["template", "x", str(chart)]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    res = helm.run(*argv, check=False)
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_notes_tell_the_user_what_to_do_next(helm: Helm) -> None:
    out = helm.run("install", "tenbin", str(HUB_CHART), "--namespace", "tenbin-system", "--dry-run=client").stdout
    notes = out.split("NOTES:", 1)[1]
    for step in ("rollout status deployment/tenbin", "helm install tenbin-member",
                 "kubectl -n tenbin-system create secret generic <member>-kubeconfig",
                 "kubeconfigSecretRef: {namespace: tenbin-system", "kubectl get gpuclusters",
                 "does not delete them"):
        assert step in notes, step
    member = helm.run("install", "tenbin-member", str(MEMBER_CHART), "--namespace", "tenbin-system",
                      "--dry-run=client").stdout.split("NOTES:", 1)[1]
    assert "get secret tenbin-hub-token" in member and "kubeconfigSecretRef" in member


def test_chart_crds_are_the_generated_ones(tmp_path: Path) -> None:
    ok = subprocess.run(["bash", str(ROOT / "charts" / "verify.sh")], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    # the check can fail: a copy of the layout with one changed byte in the chart's copy
    (tmp_path / "charts" / "tenbin").mkdir(parents=True)
    shutil.copy(ROOT / "charts" / "verify.sh", tmp_path / "charts" / "verify.sh")
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    shutil.copytree(ROOT / "charts" / "tenbin" / "crds", tmp_path / "charts" / "tenbin" / "crds")
    stale = tmp_path / "charts" / "tenbin" / "crds" / "tenbin.io_gpuclusters.yaml"
    stale.write_text(stale.read_text().replace("GPUCluster", "GPUClustr", 1))
    bad = subprocess.run(["bash", str(tmp_path / "charts" / "verify.sh")], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert "tenbin.io_gpuclusters.yaml differs" in bad.stderr and "cp crds/*.yaml" in bad.stderr


def test_dockerfile_is_multi_stage_non_root_runtime_only() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = [ln.split() for ln in text.splitlines() if ln.startswith("FROM ")]
    assert len(froms) == 2 and froms[0][-1] == "builder", froms
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    runtime = text.split("FROM ${PYTHON_IMAGE}\n", 1)[1]
    assert "COPY --from=builder /opt/tenbin /opt/tenbin" in runtime
    assert "pip install" not in runtime and "[dev]" not in text
    # the same locked, hashed dependencies image/build.sh installs (make verify keeps the lock in sync)
    assert "pip install --require-hashes --only-binary=:all: -r requirements.lock" in text
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text().split()
    users = [ln.split()[1] for ln in runtime.splitlines() if ln.startswith("USER ")]
    assert users == ["10001:10001"]
    # the chart runs it as that user: a mismatch would fail runAsNonRoot only at run time
    assert "runAsUser: 10001" in (ROOT / "charts" / "tenbin" / "values.yaml").read_text()
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*"):][:4] == ["*", "!pyproject.toml", "!README.md", "!operator/"]




def _verbs_table(text: str) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) from the "Verbs" table of docs/member-access.md ("core" is "")."""
    section = text.split("## Verbs", 1)[1].split("\n## ", 1)[0]
    out = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("API group", "") or set(cells[0]) <= {"-"}:
            continue
        group = "" if cells[0] == "core" else cells[0]
        out |= {(group, r.strip(), v.strip()) for r in cells[1].split(",") for v in cells[2].split(",")}
    return out


def test_member_access_page_lists_exactly_what_the_member_chart_grants(helm: Helm) -> None:
    docs = helm.template(MEMBER_CHART)
    (role,) = [d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"].endswith("-hub-access")]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    page = (ROOT / "docs" / "member-access.md").read_text()
    assert _verbs_table(page) == granted
    # the admission policy's defaults are the ones the page gives
    policy = one(docs, "ValidatingAdmissionPolicy")
    rendered = yaml.safe_dump(policy["spec"])
    for name in ("kube-system", "kube-public", "kube-node-lease", "tenbin-system", "baseline", "restricted"):
        assert name in rendered and (name == "tenbin-system" or f"`{name}`" in page), name
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}


def test_member_admission_policy_values(helm: Helm) -> None:
    docs = helm.template(MEMBER_CHART, sets={"hubAccess.namespaces.allowed": "{team-*,ml}",
                                             "hubAccess.dependencies.secrets": "true"})
    spec = one(docs, "ValidatingAdmissionPolicy")["spec"]
    exprs = " ".join(v["expression"] for v in spec["validations"])
    assert 'in ["ml"]' in exprs and '["team-"].exists' in exprs
    assert any("secrets" in r["resources"] for r in spec["matchConstraints"]["resourceRules"])
    assert 'system:serviceaccount:tenbin-system:tenbin-hub' in spec["matchConditions"][0]["expression"]
    off = helm.template(MEMBER_CHART, sets={"hubAccess.namespaces.admissionPolicy": "false"})
    assert not by_kind(off, "ValidatingAdmissionPolicy") and not by_kind(off, "ValidatingAdmissionPolicyBinding")
    with pytest.raises(AssertionError, match=r"1\.30"):
        helm.template(MEMBER_CHART, "--kube-version", "1.29.0")
    with pytest.raises(AssertionError, match="allowed"):
        helm.template(MEMBER_CHART, sets={"hubAccess.namespaces.allowed": "{Team_A}"})
