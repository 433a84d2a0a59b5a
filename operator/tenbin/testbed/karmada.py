"""A real Karmada control plane as local processes, on top of a running testbed :class:`Fleet`.

What runs (all on 127.0.0.1, recorded in the fleet's ``state.json`` so ``Fleet.down()`` stops them)::

    karmada-kube-apiserver          the testbed's kube-apiserver as karmada-apiserver (own etcd prefix in the
                                    fleet's etcd; front-proxy / requestheader flags for API aggregation)
    karmada-kube-controller-manager namespace, garbage collector, service-account tokens (no workload controllers:
                                    a Job in the Karmada apiserver is a template, never run there)
    karmada-aggregated-apiserver    serves cluster.karmada.io (Cluster objects, cluster proxy), behind an APIService
    karmada-webhook                 admission (e.g. labels PropagationPolicies with their permanent id) and the
                                    ResourceBinding conversion webhook
    karmada-controller-manager      detector, binding, execution, cluster status, ...
    karmada-scheduler               Karmada's own scheduler (Tenbin pins placements; it only confirms them)

Members join in Push mode: a ``Cluster`` with ``apiEndpoint``, ``syncMode: Push`` and Secrets holding the fleet's
static admin token and CA bundle (the same credentials every member accepts). The Karmada kubeconfig is
``DIR/karmada.kubeconfig``; on the hub it is the Secret ``tenbin-system/karmada-kubeconfig`` (key ``kubeconfig``),
which a GPUCluster's ``spec.connection.karmada.kubeconfigSecretRef`` can point at.

Binaries come from ``testbed/build-karmada.sh`` (pinned by ``KARMADA_VERSION`` below), built from Go modules.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import ipaddress
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tenbin.testbed.binaries import TestbedError, cache_dir
from tenbin.testbed.fleet import (
    HUB,
    STARTUP_TIMEOUT_S,
    SYSTEM_NAMESPACE,
    ClusterRecord,
    Fleet,
    Log,
    ProcessRecord,
    free_port,
    wait_until,
)

KARMADA_VERSION = "v1.18.2"
KARMADA = "karmada"  # the Karmada apiserver's name among the fleet's clusters (role "karmada")
KARMADA_SYSTEM = "karmada-system"
KARMADA_CLUSTER_NS = "karmada-cluster"  # where the members' credentials live in the Karmada apiserver
HUB_SECRET = "karmada-kubeconfig"  # in the hub's tenbin-system: the Karmada kubeconfig for GPUClusters
ETCD_PREFIX = "/karmada"
CLUSTER_STATUS_UPDATE = "2s"  # how often Karmada refreshes a member's Cluster status (upstream default 10s)
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "aggregated-apiserver", "webhook",
              "controller-manager", "scheduler")

# The admission webhooks karmada-webhook serves that matter for propagation (policies, bindings, works):
# (mutating?, resource, scope, operations, path). Multi-cluster services, HPAs, quotas etc. are not used here.
_WEBHOOKS = (
    (True, "policy.karmada.io", "propagationpolicies", "Namespaced", ("CREATE", "UPDATE"), "mutate-propagationpolicy"),
    (True, "policy.karmada.io", "clusterpropagationpolicies", "Cluster", ("CREATE", "UPDATE"),
     "mutate-clusterpropagationpolicy"),
    (True, "policy.karmada.io", "overridepolicies", "Namespaced", ("CREATE", "UPDATE"), "mutate-overridepolicy"),
    (True, "work.karmada.io", "resourcebindings", "Namespaced", ("CREATE",), "mutate-resourcebinding"),
    (True, "work.karmada.io", "clusterresourcebindings", "Cluster", ("CREATE",), "mutate-clusterresourcebinding"),
    (True, "work.karmada.io", "works", "Namespaced", ("CREATE", "UPDATE"), "mutate-work"),
    (False, "policy.karmada.io", "propagationpolicies", "Namespaced", ("CREATE", "UPDATE"),
     "validate-propagationpolicy"),
    (False, "policy.karmada.io", "clusterpropagationpolicies", "Cluster", ("CREATE", "UPDATE"),
     "validate-clusterpropagationpolicy"),
    (False, "policy.karmada.io", "overridepolicies", "Namespaced", ("CREATE", "UPDATE"), "validate-overridepolicy"),
    (False, "policy.karmada.io", "clusteroverridepolicies", "Cluster", ("CREATE", "UPDATE"),
     "validate-clusteroverridepolicy"),
    (False, "config.karmada.io", "resourceinterpretercustomizations", "Cluster", ("CREATE", "UPDATE"),
     "validate-resourceinterpretercustomization"),
    (False, "work.karmada.io", "resourcebindings", "Namespaced", ("CREATE", "UPDATE"), "validate-resourcebinding"),
)


# ---------------------------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class KarmadaBinaries:
    controller_manager: Path
    scheduler: Path
    aggregated_apiserver: Path
    webhook: Path
    crds: Path  # charts/karmada/_crds of the same module

    @classmethod
    def locate(cls) -> KarmadaBinaries:
        d = Path(os.environ.get("TENBIN_KARMADA_BIN") or cache_dir() / f"bin-karmada-{KARMADA_VERSION}")
        paths = {
            "controller_manager": d / "karmada-controller-manager",
            "scheduler": d / "karmada-scheduler",
            "aggregated_apiserver": d / "karmada-aggregated-apiserver",
            "webhook": d / "karmada-webhook",
            "crds": d / "crds",
        }
        missing = [p.name for p in paths.values() if not p.exists()]
        if missing:
            raise TestbedError(f"Karmada {KARMADA_VERSION} binaries missing in {d}: {', '.join(missing)}; "
                               "run 'bash testbed/build-karmada.sh' (make testbed-karmada) to build them")
        return cls(**paths)


# ---------------------------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class KarmadaPKI:
    """Certificates Karmada needs on top of the fleet's CA (which signs the serving certificate)."""

    serving_cert: Path  # aggregated apiserver and webhook: localhost, 127.0.0.1, their in-cluster service names
    serving_key: Path
    webhook_cert_dir: Path  # tls.crt / tls.key, as karmada-webhook's --cert-dir wants them
    front_proxy_ca: Path  # a CA of its own: only the front proxy's client certificate is signed by it
    front_proxy_client_cert: Path
    front_proxy_client_key: Path

    @classmethod
    def in_dir(cls, d: Path) -> KarmadaPKI:
        return cls(d / "karmada-serving.crt", d / "karmada-serving.key", d / "webhook",
                   d / "front-proxy-ca.crt", d / "front-proxy-client.crt", d / "front-proxy-client.key")


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(issuer: x509.Certificate | None, issuer_key: ec.EllipticCurvePrivateKey | None, cn: str,
           sans: list[x509.GeneralName] | None = None, server: bool = False, ca: bool = False,
           ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer.subject if issuer is not None else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key if issuer_key is not None else key, hashes.SHA256()), key


def create_karmada_pki(fleet: Fleet, d: Path) -> KarmadaPKI:
    d.mkdir(parents=True, exist_ok=True)
    pki = KarmadaPKI.in_dir(d)
    ca = x509.load_pem_x509_certificate(fleet.pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(fleet.pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    dns = ["localhost"] + [f"{svc}.{KARMADA_SYSTEM}.svc" for svc in ("karmada-aggregated-apiserver", "karmada-webhook")]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert, key = _issue(ca, ca_key, "karmada-serving", sans, server=True)
    fp_ca, fp_ca_key = _issue(None, None, "tenbin-front-proxy-ca", ca=True)
    fp, fp_key = _issue(fp_ca, fp_ca_key, "front-proxy-client")
    files = {
        pki.serving_cert: cert.public_bytes(serialization.Encoding.PEM), pki.serving_key: _pem_key(key),
        pki.front_proxy_ca: fp_ca.public_bytes(serialization.Encoding.PEM),
        pki.front_proxy_client_cert: fp.public_bytes(serialization.Encoding.PEM),
        pki.front_proxy_client_key: _pem_key(fp_key),
        pki.webhook_cert_dir / "tls.crt": cert.public_bytes(serialization.Encoding.PEM),
        pki.webhook_cert_dir / "tls.key": _pem_key(key),
    }
    pki.webhook_cert_dir.mkdir(exist_ok=True)
    for path, data in files.items():
        path.write_bytes(data)
        if path.suffix == ".key":
            path.chmod(0o600)
    return pki


# ---------------------------------------------------------------------------------------------- the plane


def _proc(name: str) -> str:
    return f"{KARMADA}-{name}"


class Karmada:
    """A Karmada control plane started on a fleet; addressed through the fleet's state."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.dir = fleet.state_dir / KARMADA
        self.pki = KarmadaPKI.in_dir(self.dir / "pki")

    # ---- queries ------------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.fleet.kubeconfig(KARMADA)

    @property
    def url(self) -> str:
        return self.fleet.state.clusters[KARMADA].url

    def processes(self) -> list[ProcessRecord]:
        names = {_proc(c) for c in COMPONENTS}
        return [p for p in self.fleet.state.processes if p.name in names]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return self.fleet.kubectl(*args, cluster=KARMADA, input=input, check=check)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def _apply(self, *docs: dict[str, Any]) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(docs))

    # ---- bring-up -----------------------------------------------------------------------------------

    @classmethod
    def up(cls, fleet: Fleet, log: Log = print, binaries: KarmadaBinaries | None = None) -> Karmada:
        """Start Karmada on ``fleet`` and join every member; returns when every member's Cluster is Ready.

        Already running on this fleet: returned as it is. Partly running: an error naming what died.
        """
        k = cls(fleet)
        running = k.processes()
        if KARMADA in fleet.state.clusters and running:
            dead = [p.name for p in running if p not in fleet.running()]
            if dead:
                raise TestbedError(f"Karmada on {fleet.state_dir} is partly down ({', '.join(dead)} not running); "
                                   f"run 'tenbin dev down --state-dir {fleet.state_dir}' first")
            log("Karmada already up on this fleet; not starting a second one")
            return k
        bins = binaries or KarmadaBinaries.locate()
        try:
            k._bring_up(bins, log)
        except BaseException:
            with contextlib.suppress(TestbedError):
                k.down()
            raise
        return k

    def _bring_up(self, bins: KarmadaBinaries, log: Log) -> None:
        t0 = time.monotonic()
        fleet = self.fleet
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        create_karmada_pki(fleet, self.dir / "pki")
        _delete_etcd_prefix(fleet, ETCD_PREFIX)  # a previous plane's objects must not come back
        rec = ClusterRecord(KARMADA, KARMADA, free_port(), str(fleet.state_dir / "karmada.kubeconfig"))
        fleet.state.clusters[KARMADA] = rec
        fleet.save()
        Path(rec.kubeconfig).write_text(fleet.kubeconfig_text(KARMADA))
        Path(rec.kubeconfig).chmod(0o600)

        self._start_apiserver(rec)
        fleet.await_apiserver(KARMADA)
        log(f"  karmada   apiserver             {rec.url}  ({time.monotonic() - t0:.1f}s)")
        self._spawn("kube-controller-manager", [
            str(fleet.binaries.kube_controller_manager), f"--kubeconfig={rec.kubeconfig}",
            "--leader-elect=false", "--secure-port=0",
            f"--service-account-private-key-file={fleet.pki.sa_key}", f"--root-ca-file={fleet.pki.ca_cert}",
            "--controllers=namespace,garbagecollector,serviceaccount-token,clusterrole-aggregation",
            "--v=0",
        ])
        self._apply(*({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                      for n in (KARMADA_SYSTEM, KARMADA_CLUSTER_NS)))

        webhook_port = free_port()
        self._install_crds(bins, webhook_port)
        log(f"  karmada   CRDs installed              ({time.monotonic() - t0:.1f}s)")

        agg_port = free_port()
        agg = self._spawn("aggregated-apiserver", [
            str(bins.aggregated_apiserver), f"--kubeconfig={rec.kubeconfig}",
            f"--authentication-kubeconfig={rec.kubeconfig}", f"--authorization-kubeconfig={rec.kubeconfig}",
            f"--etcd-servers=http://127.0.0.1:{fleet.state.etcd_port}", f"--etcd-prefix={ETCD_PREFIX}/registry",
            "--bind-address=127.0.0.1", f"--secure-port={agg_port}",
            f"--tls-cert-file={self.pki.serving_cert}", f"--tls-private-key-file={self.pki.serving_key}",
            "--audit-log-path=-", "--audit-log-maxage=0", "--audit-log-maxbackup=0", "--v=0",
        ])
        self._register_aggregated_apiserver(agg_port)
        fleet._await("APIService v1alpha1.cluster.karmada.io Available", self._apiservice_available, [agg])
        log(f"  karmada   aggregated apiserver  https://127.0.0.1:{agg_port}  ({time.monotonic() - t0:.1f}s)")

        health = free_port()
        hook = self._spawn("webhook", [
            str(bins.webhook), f"--kubeconfig={rec.kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={webhook_port}", f"--cert-dir={self.pki.webhook_cert_dir}",
            "--metrics-bind-address=0", f"--health-probe-bind-address=127.0.0.1:{health}", "--v=1",
        ])
        ready = f"https://127.0.0.1:{webhook_port}/readyz/"
        fleet._await("karmada-webhook /readyz", lambda: fleet._get(ready)[0] == 200, [hook])
        self._register_webhooks(webhook_port)
        log(f"  karmada   webhook               https://127.0.0.1:{webhook_port}  "
            f"({time.monotonic() - t0:.1f}s)")

        cm_health, sched_health = free_port(), free_port()
        cm = self._spawn("controller-manager", [
            str(bins.controller_manager), f"--kubeconfig={rec.kubeconfig}", "--leader-elect=false",
            "--metrics-bind-address=0", f"--health-probe-bind-address=127.0.0.1:{cm_health}",
            f"--cluster-status-update-frequency={CLUSTER_STATUS_UPDATE}", "--v=1",
        ])
        sched = self._spawn("scheduler", [
            str(bins.scheduler), f"--kubeconfig={rec.kubeconfig}", "--leader-elect=false",
            "--metrics-bind-address=0", f"--health-probe-bind-address=127.0.0.1:{sched_health}", "--v=1",
        ])
        for what, port, proc in (("controller-manager", cm_health, cm), ("scheduler", sched_health, sched)):
            url = f"http://127.0.0.1:{port}/healthz"
            fleet._await(f"karmada-{what} /healthz", functools.partial(self._ok, url), [proc])

        for member in fleet.members:
            self.join(member)
        procs = self.processes()
        for member in fleet.members:
            fleet._await(f"Karmada Cluster {member} Ready", functools.partial(self.cluster_ready, member), procs)
            log(f"  karmada   joined {member:<20} Push  ({time.monotonic() - t0:.1f}s)")
        self._publish_kubeconfig_on_hub()

    def _ok(self, url: str) -> bool:
        return self.fleet._get(url)[0] == 200

    def _spawn(self, component: str, argv: list[str]) -> ProcessRecord:
        return self.fleet._spawn(_proc(component), KARMADA, argv)

    def _start_apiserver(self, rec: ClusterRecord) -> ProcessRecord:
        fleet, pki = self.fleet, self.fleet.pki
        return self._spawn("kube-apiserver", [
            str(fleet.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{fleet.state.etcd_port}", f"--etcd-prefix={ETCD_PREFIX}/registry",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={rec.port}",
            f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}", f"--token-auth-file={fleet.state_dir / 'token.csv'}",
            "--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
            "--disable-admission-plugins=StorageObjectInUseProtection,ServiceAccount",
            # API aggregation (cluster.karmada.io): the apiserver proxies as front-proxy-client with these headers
            f"--proxy-client-cert-file={self.pki.front_proxy_client_cert}",
            f"--proxy-client-key-file={self.pki.front_proxy_client_key}",
            f"--requestheader-client-ca-file={self.pki.front_proxy_ca}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--enable-priority-and-fairness=false", "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false", "--v=0",
        ])

    def _ca_bundle(self) -> str:
        return base64.b64encode(self.fleet.pki.ca_cert.read_bytes()).decode()

    def _install_crds(self, bins: KarmadaBinaries, webhook_port: int) -> None:
        """The module's CRDs, as its kustomization lists them, with the conversion webhook patches applied."""
        kust = yaml.safe_load((bins.crds / "kustomization.yaml").read_text())
        patches: dict[str, dict[str, Any]] = {}
        for p in kust.get("patches") or []:
            doc = yaml.safe_load((bins.crds / p["path"]).read_text())
            conv = doc["spec"]["conversion"]
            conv["webhook"]["clientConfig"] = {"url": f"https://127.0.0.1:{webhook_port}/convert",
                                               "caBundle": self._ca_bundle()}
            patches[doc["metadata"]["name"]] = conv
        docs = []
        for res in kust["resources"]:
            for doc in yaml.safe_load_all((bins.crds / res).read_text()):
                if not doc:
                    continue
                if doc["metadata"]["name"] in patches:
                    doc["spec"]["conversion"] = patches[doc["metadata"]["name"]]
                docs.append(doc)
        self._apply(*docs)
        names = [d["metadata"]["name"] for d in docs]
        self.fleet.wait_established(*(f"crd/{n}" for n in names), cluster=KARMADA, timeout=120)

    def _register_aggregated_apiserver(self, port: int) -> None:
        # The aggregator resolves an ExternalName service to https://<externalName>:<port>: loopback, no endpoints.
        svc = "karmada-aggregated-apiserver"
        self._apply(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": KARMADA_SYSTEM},
             "spec": {"type": "ExternalName", "externalName": "localhost",
                      "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": "v1alpha1.cluster.karmada.io", "labels": {"app": svc}},
             "spec": {"group": "cluster.karmada.io", "version": "v1alpha1", "groupPriorityMinimum": 2000,
                      "versionPriority": 10, "caBundle": self._ca_bundle(),
                      "service": {"name": svc, "namespace": KARMADA_SYSTEM, "port": port}}},
        )

    def _apiservice_available(self) -> bool:
        res = self.kubectl("get", "apiservice", "v1alpha1.cluster.karmada.io", "-o", "json", check=False)
        if res.returncode != 0:
            return False
        conds = json.loads(res.stdout).get("status", {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conds)

    def _register_webhooks(self, port: int) -> None:
        hooks: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for mutating, group, resource, scope, ops, path in _WEBHOOKS:
            hooks[mutating].append({
                "name": f"{resource}.{group}",
                "rules": [{"operations": list(ops), "apiGroups": [group], "apiVersions": ["*"],
                           "resources": [resource], "scope": scope}],
                "clientConfig": {"url": f"https://127.0.0.1:{port}/{path}", "caBundle": self._ca_bundle()},
                "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            })
        self._apply(
            {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
             "metadata": {"name": "karmada-mutating"}, "webhooks": hooks[True]},
            {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
             "metadata": {"name": "karmada-validating"}, "webhooks": hooks[False]},
        )

    # ---- members ------------------------------------------------------------------------------------

    def join(self, member: str) -> None:
        """Register a fleet member in Push mode: Karmada reaches it with the fleet's admin token and CA."""
        c = self.fleet.state.clusters[member]
        ca = self.fleet.pki.ca_cert.read_text()
        token = self.fleet.state.token
        self._apply(
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": member, "namespace": KARMADA_CLUSTER_NS},
             "stringData": {"token": token, "caBundle": ca}},
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": f"{member}-impersonator", "namespace": KARMADA_CLUSTER_NS},
             "stringData": {"token": token}},
        )
        self._apply({
            "apiVersion": "cluster.karmada.io/v1alpha1", "kind": "Cluster",
            "metadata": {"name": member,
                         "labels": {"tenbin.io/tier": c.tier, "tenbin.io/jurisdiction": c.jurisdiction}},
            "spec": {"apiEndpoint": c.url, "syncMode": "Push",
                     "secretRef": {"namespace": KARMADA_CLUSTER_NS, "name": member},
                     "impersonatorSecretRef": {"namespace": KARMADA_CLUSTER_NS, "name": f"{member}-impersonator"}},
        })

    def cluster(self, member: str) -> dict[str, Any]:
        return dict(self.get_json("clusters.cluster.karmada.io", member))

    def cluster_ready(self, member: str) -> bool:
        res = self.kubectl("get", "clusters.cluster.karmada.io", member, "-o", "json", check=False)
        if res.returncode != 0:
            return False
        status = json.loads(res.stdout).get("status") or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        return ready and bool((status.get("resourceSummary") or {}).get("allocatable"))

    def _publish_kubeconfig_on_hub(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = {"metadata": {"name": HUB_SECRET, "labels": {"tenbin.io/karmada": "true"}}, "type": "Opaque",
                "stringData": {"kubeconfig": self.fleet.kubeconfig_text(KARMADA)}}
        with contextlib.closing(self.fleet.api_client(HUB)) as api:
            core: Any = client.CoreV1Api(api)
            try:
                core.create_namespaced_secret(SYSTEM_NAMESPACE, body)
            except ApiException as e:
                if e.status != 409:
                    raise
                core.replace_namespaced_secret(HUB_SECRET, SYSTEM_NAMESPACE, body)

    # ---- tear-down ----------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop Karmada's processes (apiserver last), forget them, and remove its data from the fleet's etcd.

        What Karmada had propagated into members stays there (as when a real Karmada goes away).
        """
        fleet = self.fleet
        procs = self.processes()
        fleet.stop_processes([p for p in procs if p.name != _proc("kube-apiserver")])
        if KARMADA in fleet.state.clusters:
            with contextlib.suppress(Exception):
                self._unpublish_kubeconfig_on_hub()
        fleet.stop_processes([p for p in procs if p.name == _proc("kube-apiserver")])
        names = {p.name for p in procs}
        fleet.state.processes = [p for p in fleet.state.processes if p.name not in names]
        fleet.state.clusters.pop(KARMADA, None)
        fleet.save()
        with contextlib.suppress(OSError):
            _delete_etcd_prefix(fleet, ETCD_PREFIX)
        with contextlib.suppress(FileNotFoundError):
            (fleet.state_dir / "karmada.kubeconfig").unlink()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _unpublish_kubeconfig_on_hub(self) -> None:
        from kubernetes import client

        with contextlib.closing(self.fleet.api_client(HUB)) as api:
            client.CoreV1Api(api).delete_namespaced_secret(HUB_SECRET, SYSTEM_NAMESPACE, _request_timeout=5)


def _delete_etcd_prefix(fleet: Fleet, prefix: str) -> None:
    """Delete every key under ``prefix`` through etcd's v3 JSON gateway (served on the client URL)."""
    key = prefix.rstrip("/") + "/"
    end = key[:-1] + chr(ord(key[-1]) + 1)
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "range_end": base64.b64encode(end.encode()).decode()}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{fleet.state.etcd_port}/v3/kv/deleterange", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def karmada_up(fleet: Fleet, log: Log = print) -> Karmada:
    """Start Karmada on a running fleet and join its members (what ``tenbin dev up --karmada`` does)."""
    return Karmada.up(fleet, log)


@contextlib.contextmanager
def running_karmada(fleet: Fleet, log: Log = print) -> Iterator[Karmada]:
    """Karmada on ``fleet`` for the duration of a ``with`` block: always stopped, also when the block fails."""
    k = Karmada.up(fleet, log)
    try:
        yield k
    finally:
        k.down()


def await_karmada(what: str, check: Any, karmada: Karmada, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Await a condition while watching that Karmada's processes stay up."""
    karmada.fleet._await(what, check, karmada.processes(), timeout)


__all__ = ["KARMADA", "KARMADA_VERSION", "Karmada", "KarmadaBinaries", "await_karmada", "karmada_up",
           "running_karmada", "wait_until"]
