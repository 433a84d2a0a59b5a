"""AI workload controllers in a running fleet's members: JobSet, LeaderWorkerSet, KubeRay, Kubeflow training;
and Volcano's Job CRD alone (no controller: see ``testbed/build-addons.sh``).

Each is the project's own controller, built from its Go module by ``testbed/build-addons.sh`` (``make
testbed``), with the CRDs of the same module version. ``install(fleet, member, names)`` applies the CRDs to
the member, starts the controller there as a fleet process (leader election off, health probe and webhook
server on loopback, metrics off), registers its webhooks where the controller depends on them (JobSet's and
LeaderWorkerSet's defaulting, without which their reconcilers dereference unset fields, and their Pod
webhooks, which label the pods they reconcile by, limited to their own pods as their kustomize patch is), and
waits for its ``/readyz``. The fleet stops the processes with the rest (``Fleet.down``), or ``uninstall``
stops them earlier. Pods the controllers make are KWOK pods: they "run" and, when a Job owns them, complete.

A fleet file names each member's add-ons in an annotation of its GPUCluster::

    metadata:
      annotations: {testbed.tenbin.io/addons: "jobset,lws,kuberay,training-operator"}
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tenbin.testbed.binaries import CHECKOUT, TestbedError, _parse_env, cache_dir
from tenbin.testbed.fleet import Fleet, Log, free_port

ADDON_PINS = CHECKOUT / "testbed" / "addons" / "versions.env"
ADDON_NAMESPACE = "tenbin-testbed-addons"  # where a controller that insists on a namespace keeps its objects
TRAINING_OPERATOR_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # fixed in its source (pkg/cert)


@dataclass(frozen=True)
class Run:
    """What one controller process in one member is given."""

    member: str
    kubeconfig: str
    workdir: Path
    health_port: int
    webhook_port: int


@dataclass(frozen=True)
class Addon:
    name: str
    pin: str
    kinds: tuple[tuple[str, str], ...]
    argv: Callable[[Path, Run], list[str]] | None
    """How to start its controller; None: its CRDs only (nothing runs; a test writes what a controller would)."""
    webhooks: bool = False
    """Register the webhooks of its manifests (pointed at the loopback webhook server)."""
    pod_label: str | None = None
    """Its Pod webhooks only see pods carrying this label (as the project's own kustomize patch selects)."""


def _controller_runtime_config(api_version: str) -> Callable[[Path, Run], list[str]]:
    """JobSet and LeaderWorkerSet read a Configuration file; certificates are the testbed's loopback ones."""
    def argv(binary: Path, run: Run) -> list[str]:
        cfg = {"apiVersion": api_version, "kind": "Configuration",
               "leaderElection": {"leaderElect": False}, "internalCertManagement": {"enable": False},
               "health": {"healthProbeBindAddress": f"127.0.0.1:{run.health_port}"},
               "metrics": {"bindAddress": "0"},
               "webhook": {"port": run.webhook_port, "host": "127.0.0.1", "certDir": str(run.workdir / "certs")}}
        (run.workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
        return [str(binary), f"--kubeconfig={run.kubeconfig}", f"--config={run.workdir / 'config.yaml'}"]
    return argv


def _kuberay(binary: Path, run: Run) -> list[str]:
    return [str(binary), f"--kubeconfig={run.kubeconfig}", "--metrics-addr=0", "--enable-leader-election=false",
            f"--health-probe-bind-address=127.0.0.1:{run.health_port}"]


def _training_operator(binary: Path, run: Run) -> list[str]:
    # It always runs its own certificate rotator (a Secret and a ValidatingWebhookConfiguration it patches,
    # in MY_POD_NAMESPACE), writing to controller-runtime's default directory; install() creates both,
    # the configuration with no webhooks (its validation is not what Tenbin relies on).
    return ["/usr/bin/env", f"MY_POD_NAMESPACE={ADDON_NAMESPACE}", str(binary), f"--kubeconfig={run.kubeconfig}",
            "--metrics-bind-address=0", "--leader-elect=false", "--enable-scheme=pytorchjob",
            f"--health-probe-bind-address=127.0.0.1:{run.health_port}", f"--webhook-server-port={run.webhook_port}"]


ADDONS: dict[str, Addon] = {a.name: a for a in (
    Addon("jobset", "JOBSET_VERSION", (("jobset.x-k8s.io/v1alpha2", "JobSet"),),
          _controller_runtime_config("config.jobset.x-k8s.io/v1alpha1"), webhooks=True,
          pod_label="jobset.sigs.k8s.io/jobset-name"),
    Addon("lws", "LWS_VERSION", (("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),),
          _controller_runtime_config("config.lws.x-k8s.io/v1alpha1"), webhooks=True,
          pod_label="leaderworkerset.sigs.k8s.io/name"),
    Addon("kuberay", "KUBERAY_VERSION", (("ray.io/v1", "RayJob"), ("ray.io/v1", "RayCluster")), _kuberay),
    Addon("training-operator", "TRAINING_OPERATOR_VERSION", (("kubeflow.org/v1", "PyTorchJob"),),
          _training_operator),
    Addon("volcano", "VOLCANO_APIS_VERSION", (("batch.volcano.sh/v1alpha1", "Job"),), None),
)}


def versions() -> dict[str, str]:
    try:
        return _parse_env(ADDON_PINS.read_text())
    except OSError as e:
        raise TestbedError(f"cannot read the add-on pins {ADDON_PINS} ({e.strerror}); run from a Tenbin checkout "
                           "with tenbin installed editable ('make venv')") from None


def addon_dir(name: str) -> Path:
    addon = ADDONS[name]
    d = cache_dir() / f"addon-{name}-{versions()[addon.pin]}"
    if not (d / ".complete").is_file() or (addon.argv is not None and not (d / name).is_file()):
        raise TestbedError(f"add-on {name} missing in {d}; run 'make testbed' (or 'bash testbed/build-addons.sh')")
    return d


def parse_addons(text: str, where: str) -> tuple[str, ...]:
    """The `testbed.tenbin.io/addons` annotation: a comma-separated list of add-on names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ADDONS]
    if unknown:
        raise TestbedError(f"{where}: unknown add-on {unknown[0]!r} (known: {', '.join(sorted(ADDONS))})")
    return names


def _webhook_configurations(manifests: Path, name: str, port: int, ca: bytes,
                            pod_label: str | None) -> list[dict[str, Any]]:
    """The module's webhook configurations, each pointed at the loopback webhook server and trusting the
    testbed CA; its Pod webhooks limited to its own pods (`pod_label`), or left out without one."""
    out = []
    for doc in yaml.safe_load_all(manifests.read_text()):
        if not doc or doc.get("kind") not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            continue
        hooks = []
        for hook in doc.get("webhooks") or []:
            if any("pods" in (r.get("resources") or []) for r in hook.get("rules") or []):
                if pod_label is None:
                    continue
                hook["objectSelector"] = {"matchExpressions": [{"key": pod_label, "operator": "Exists"}]}
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": base64.b64encode(ca).decode()}
            hooks.append(hook)
        kind = doc["kind"].removesuffix("WebhookConfiguration").lower()
        out.append({"apiVersion": doc["apiVersion"], "kind": doc["kind"],
                    "metadata": {"name": f"tenbin-testbed-{name}-{kind}"}, "webhooks": hooks})
    return out


def install(fleet: Fleet, member: str, names: Iterable[str], log: Log = print) -> None:
    """Start each named add-on's controller in `member` (its CRDs first) and wait until it is ready."""
    for name in names:
        addon, d = ADDONS[name], addon_dir(name)
        proc_name = f"{member}-addon-{name}"
        if any(p.name == proc_name for p in fleet.running()):
            continue
        fleet.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(d / "crds"), cluster=member)
        crds = [f"crd/{yaml.safe_load(f.read_text())['metadata']['name']}" for f in sorted((d / "crds").glob("*.yaml"))]
        fleet.wait_established(*crds, cluster=member)
        if addon.argv is None:
            log(f"  add-on    {name:<18} in {member}: CRDs only ({', '.join(k for _, k in addon.kinds)})")
            continue
        workdir = fleet.state_dir / "addons" / f"{member}-{name}"
        (workdir / "certs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fleet.pki.serving_cert, workdir / "certs" / "tls.crt")
        shutil.copyfile(fleet.pki.serving_key, workdir / "certs" / "tls.key")
        run = Run(member, str(fleet.kubeconfig(member)), workdir, free_port(), free_port())
        if name == "training-operator":
            docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ADDON_NAMESPACE}},
                    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "training-operator-webhook-cert",
                                                                         "namespace": ADDON_NAMESPACE}},
                    {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                     "metadata": {"name": "validator.training-operator.kubeflow.org"}, "webhooks": []}]
            fleet.kubectl("apply", "-f", "-", cluster=member, input=yaml.safe_dump_all(docs))
            # in a pod the kubelet mounts the rotator's Secret at this fixed path, and the rotator waits for a
            # file there before it says ready; any serving pair does, as no webhook of it is registered
            TRAINING_OPERATOR_CERT_DIR.mkdir(parents=True, exist_ok=True)
            for src, dst in ((fleet.pki.serving_cert, "tls.crt"), (fleet.pki.serving_key, "tls.key")):
                shutil.copyfile(src, TRAINING_OPERATOR_CERT_DIR / dst)
        rec = fleet._spawn(proc_name, member, addon.argv(d / name, run))
        if addon.webhooks:
            ca = Path(fleet.pki.ca_cert).read_bytes()
            hooks = [h for f in sorted((d / "webhooks").glob("*.yaml"))
                     for h in _webhook_configurations(f, name, run.webhook_port, ca, addon.pod_label)]
            fleet.kubectl("apply", "-f", "-", cluster=member, input=yaml.safe_dump_all(hooks))
        url = f"http://127.0.0.1:{run.health_port}/readyz"

        def ready(url: str = url) -> bool:
            return fleet._get(url, timeout=2)[0] == 200

        fleet._await(f"{name} controller in {member} /readyz", ready, [rec], timeout=120)
        log(f"  add-on    {name:<18} in {member} ready ({', '.join(k for _, k in addon.kinds)})")


def restart(fleet: Fleet, member: str, names: Iterable[str], log: Log = print) -> None:
    """Stop and start again the add-ons' controllers in `member`: after its apiserver came back, the way a
    member that comes back in real life comes back whole (a controller need not have survived the outage)."""
    names = list(names)
    uninstall(fleet, member, names)
    install(fleet, member, names, log=log)


def uninstall(fleet: Fleet, member: str, names: Iterable[str]) -> None:
    """Stop the add-ons' controllers in `member` and remove their webhook configurations (the CRDs stay)."""
    procs = [p for p in fleet.running() if p.name in {f"{member}-addon-{n}" for n in names}]
    fleet.stop_processes(procs)
    for name in names:
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            fleet.kubectl("delete", kind, f"tenbin-testbed-{name}-{kind.removesuffix('webhookconfiguration')}",
                          "--ignore-not-found", cluster=member, check=False)
