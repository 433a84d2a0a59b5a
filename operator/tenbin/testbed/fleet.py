"""A local hybrid fleet: one hub and one member control plane per GPUCluster, as plain processes.

Layout of a fleet's state directory::

    state.json            what runs: clusters (API port, kubeconfig), processes (PID, argv, log)
    pki/                  CA, loopback serving cert, service-account keys
    etcd/                 the one etcd every apiserver shares (each under its own --etcd-prefix)
    logs/<process>.log    each process's output
    hub.kubeconfig, <member>.kubeconfig

Members run kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (fake GPU nodes whose
pods "run"); the hub runs kube-apiserver and kube-controller-manager. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tenbin.gpumodels import product_label
from tenbin.testbed.binaries import Binaries, TestbedError
from tenbin.testbed.pki import PKI, create_pki

HUB = "hub"
GPUS_PER_NODE = 8
SYSTEM_NAMESPACE = "tenbin-system"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
STARTUP_TIMEOUT_S = float(os.environ.get("TENBIN_DEV_STARTUP_TIMEOUT", "180"))
STOP_TIMEOUT_S = 15.0
PORT_RACE_ATTEMPTS = 3  # ports are picked free, but another program may bind one before our process does

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- fleet spec


@dataclass(frozen=True)
class GPUSpec:
    model: str
    count: int
    memory_gib: int


@dataclass(frozen=True)
class MemberSpec:
    name: str
    tier: str
    jurisdiction: str
    gpus: tuple[GPUSpec, ...]
    addons: tuple[str, ...] = ()
    """AI workload controllers to run in it (`tenbin.testbed.addons`), from its `testbed.tenbin.io/addons`
    annotation."""


ADDONS_ANNOTATION = "testbed.tenbin.io/addons"


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if path.is_file():
        return [path]
    raise TestbedError(f"{path}: no such file or directory")


def load_fleet(paths: Iterable[str | Path]) -> list[MemberSpec]:
    """Read the GPUCluster documents (name, tier, jurisdiction, gpus) from files or directories."""
    members: dict[str, MemberSpec] = {}
    for root in paths:
        for f in _yaml_files(Path(root)):
            try:
                docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
            except yaml.YAMLError as e:
                raise TestbedError(f"{f}: not valid YAML: {e}".splitlines()[0]) from None
            for doc in docs:
                if not isinstance(doc, dict) or doc.get("kind") != "GPUCluster":
                    continue
                m = _member_from_doc(f, doc)
                if m.name in members:
                    raise TestbedError(f"{f}: GPUCluster {m.name}: defined twice in the fleet")
                members[m.name] = m
    if not members:
        raise TestbedError(f"no GPUCluster documents in {', '.join(map(str, paths))}")
    return list(members.values())


def _member_from_doc(f: Path, doc: dict[str, Any]) -> MemberSpec:
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise TestbedError(f"{f}: GPUCluster: metadata.name: required")
    if name == HUB or not all(c.isalnum() or c == "-" for c in name) or name != name.lower():
        raise TestbedError(f"{f}: GPUCluster {name}: metadata.name: must be a lower-case DNS label other than 'hub'")
    spec = doc.get("spec") or {}

    def need(key: str) -> Any:
        if key not in spec:
            raise TestbedError(f"{f}: GPUCluster {name}: spec.{key}: required")
        return spec[key]

    tier, jurisdiction = str(need("tier")), str(need("jurisdiction"))
    gpus = []
    for i, g in enumerate(need("gpus") or []):
        try:
            gpus.append(GPUSpec(str(g["model"]), int(g["count"]), int(g.get("memoryGiB", 0))))
        except (KeyError, TypeError, ValueError) as e:
            raise TestbedError(
                f"{f}: GPUCluster {name}: spec.gpus[{i}]: needs model and an integer count ({e})"
            ) from None
        if gpus[-1].count < 0:
            raise TestbedError(f"{f}: GPUCluster {name}: spec.gpus[{i}].count: must be >= 0")
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    addons = tuple(a.strip() for a in str(annotations.get(ADDONS_ANNOTATION) or "").split(",") if a.strip())
    return MemberSpec(name, tier, jurisdiction, tuple(gpus), addons)


# ---------------------------------------------------------------------------------------------- state


@dataclass
class ProcessRecord:
    name: str
    cluster: str
    pid: int
    argv: list[str]
    log: str


@dataclass
class ClusterRecord:
    name: str
    role: str  # hub | member
    port: int
    kubeconfig: str
    tier: str = ""
    jurisdiction: str = ""
    gpus: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclass
class FleetState:
    etcd_port: int
    token: str
    clusters: dict[str, ClusterRecord] = field(default_factory=dict)
    processes: list[ProcessRecord] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FleetState:
        raw = json.loads(text)
        return cls(
            etcd_port=raw["etcd_port"],
            token=raw["token"],
            clusters={k: ClusterRecord(**v) for k, v in raw["clusters"].items()},
            processes=[ProcessRecord(**p) for p in raw["processes"]],
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_OWN_ARGV0 = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0] if Path("/proc/self/cmdline").exists() else b""


def pid_alive(rec: ProcessRecord) -> bool:
    """True when ``rec.pid`` is alive and is still the program we started (not a reused PID)."""
    try:
        cmdline = Path(f"/proc/{rec.pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{rec.pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has finished
        return False
    if not cmdline or not cmdline[0] or cmdline[0] == _OWN_ARGV0:
        # exec under way: for an instant a new child still shows its parent's (or no) command line
        return True
    return cmdline[0].decode(errors="replace") in (rec.argv[0], _program(rec.argv))


def _program(argv: list[str]) -> str:
    """The program an argv runs in the end: `env VAR=value ... prog` execs prog in the same PID, so that PID
    soon shows prog's command line, not env's (an add-on that needs its own environment starts that way)."""
    if argv and Path(argv[0]).name == "env":
        return next((a for a in argv[1:] if "=" not in a), argv[0])
    return argv[0]


# ---------------------------------------------------------------------------------------------- the fleet


class Fleet:
    """A running (or stopped) fleet, addressed by its state directory."""

    def __init__(self, state_dir: Path, state: FleetState, binaries: Binaries) -> None:
        self.state_dir = state_dir
        self.state = state
        self.binaries = binaries
        self.pki = PKI.in_dir(state_dir / "pki")
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # ---- loading ------------------------------------------------------------------------------------

    @staticmethod
    def state_file(state_dir: Path) -> Path:
        return state_dir / "state.json"

    @classmethod
    def load(cls, state_dir: Path, binaries: Binaries | None = None) -> Fleet | None:
        f = cls.state_file(state_dir)
        if not f.exists():
            return None
        return cls(state_dir, FleetState.from_json(f.read_text()), binaries or Binaries.locate())

    def save(self) -> None:
        tmp = self.state_file(self.state_dir).with_suffix(".tmp")
        tmp.write_text(self.state.to_json())
        tmp.replace(self.state_file(self.state_dir))

    # ---- queries ------------------------------------------------------------------------------------

    @property
    def members(self) -> list[str]:
        return [n for n, c in self.state.clusters.items() if c.role == "member"]

    def kubeconfig(self, name: str) -> Path:
        return Path(self.state.clusters[name].kubeconfig)

    def running(self) -> list[ProcessRecord]:
        return [p for p in self.state.processes if pid_alive(p)]

    def dead(self) -> list[ProcessRecord]:
        return [p for p in self.state.processes if not pid_alive(p)]

    def process(self, name: str) -> ProcessRecord:
        for p in self.state.processes:
            if p.name == name:
                return p
        raise KeyError(name)

    def kubectl(
        self, *args: str, cluster: str = HUB, input: str | None = None, check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against one of the fleet's clusters."""
        argv = [str(self.binaries.kubectl), "--kubeconfig", str(self.kubeconfig(cluster)), *args]
        res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise TestbedError(f"kubectl {' '.join(args)} on {cluster} failed: {res.stderr.strip()}")
        return res

    def wait_established(self, *targets: str, cluster: str = HUB, timeout: float = 60.0) -> None:
        """Wait until the CRDs named by `targets` (`crd/<name>`..., or `crd -l <selector>`) are Established,
        read from their status: `kubectl wait --for=condition=Established` fails outright, instead of waiting,
        when it meets a CRD whose status has no conditions yet (seen once on a fleet start)."""

        def established() -> bool:
            res = self.kubectl("get", *targets, "-o", "json", cluster=cluster, check=False)
            if res.returncode != 0:
                return False
            doc = json.loads(res.stdout)
            items = doc.get("items") or [] if doc.get("kind") == "List" else [doc]
            return bool(items) and all(any(c.get("type") == "Established" and c.get("status") == "True"
                                           for c in (i.get("status") or {}).get("conditions") or [])
                                       for i in items)

        wait_until(f"{' '.join(targets)} Established on {cluster}", established, timeout)

    def api_client(self, name: str) -> Any:
        """A kubernetes (sync) ApiClient for one cluster."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig(name)))

    # ---- HTTP readiness -----------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def _get(self, url: str, timeout: float = 5) -> tuple[int, str]:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.state.token}"})
        ctx = self._ssl() if url.startswith("https") else None
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def version(self, name: str) -> str:
        status, body = self._get(self.state.clusters[name].url + "/version")
        if status != 200:
            raise TestbedError(f"{name}: /version answered {status}")
        return str(json.loads(body)["gitVersion"])

    def _await(self, what: str, check: Callable[[], bool], procs: list[ProcessRecord],
               timeout: float = STARTUP_TIMEOUT_S) -> None:
        def died() -> str | None:
            for p in procs:
                child = self._children.get(p.pid)
                if (child.poll() is not None) if child is not None else not pid_alive(p):
                    return f"{p.name} exited while waiting for {what}:\n{_tail(p.log)}"
            return None

        wait_until(what, check, timeout, abort=died)

    def await_apiserver(self, name: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        url = self.state.clusters[name].url + "/readyz"
        self._await(f"{name} apiserver /readyz", lambda: self._get(url)[0] == 200,
                    [self.process(f"{name}-kube-apiserver")], timeout)

    # ---- processes ----------------------------------------------------------------------------------

    def _spawn(self, name: str, cluster: str, argv: list[str]) -> ProcessRecord:
        log = self.state_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # survives `tenbin dev up` returning; no terminal signals
            )
        self._children[proc.pid] = proc
        rec = ProcessRecord(name=name, cluster=cluster, pid=proc.pid, argv=argv, log=str(log))
        self.state.processes = [p for p in self.state.processes if p.name != name] + [rec]
        self.save()
        return rec

    def _stop_pid(self, rec: ProcessRecord, sig: int = signal.SIGTERM) -> None:
        if not pid_alive(rec):
            self._reap(rec.pid)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, sig)

    def _reap(self, pid: int) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.1)

    def _await_gone(self, recs: list[ProcessRecord], timeout: float) -> list[ProcessRecord]:
        deadline = time.monotonic() + timeout
        alive = list(recs)
        while alive and time.monotonic() < deadline:
            for r in alive:
                child = self._children.get(r.pid)
                if child is not None:
                    child.poll()  # reaps our own children so they do not linger as zombies
            alive = [r for r in alive if pid_alive(r)]
            if alive:
                time.sleep(0.05)
        for r in recs:
            if not pid_alive(r):
                self._reap(r.pid)
        return alive

    def stop_processes(self, recs: list[ProcessRecord]) -> None:
        """SIGTERM, wait, then SIGKILL what is left; each PID is checked to still be ours first."""
        for r in recs:
            self._stop_pid(r)
        left = self._await_gone(recs, STOP_TIMEOUT_S)
        for r in left:
            self._stop_pid(r, signal.SIGKILL)
        left = self._await_gone(left, STOP_TIMEOUT_S)
        if left:
            raise TestbedError("could not stop: " + ", ".join(f"{r.name} (pid {r.pid})" for r in left))

    def stop(self, name: str) -> None:
        """Stop one process of the fleet (e.g. a member's apiserver, to simulate an outage)."""
        self.stop_processes([self.process(name)])

    def restart(self, name: str) -> None:
        """Start a stopped process again with the argv it had."""
        rec = self.process(name)
        if pid_alive(rec):
            return
        self._spawn(rec.name, rec.cluster, rec.argv)
        if name.endswith("-kube-apiserver"):
            self.await_apiserver(rec.cluster)

    def down(self) -> None:
        """Stop every process this fleet started (apiservers last) and remove the state directory."""
        order = {"kwok": 0, "kube-scheduler": 0, "kube-controller-manager": 0, "kube-apiserver": 1, "etcd": 2}
        by_stage: dict[int, list[ProcessRecord]] = {}
        for p in self.state.processes:
            stage = next((v for k, v in order.items() if p.name.endswith(k)), 0)
            by_stage.setdefault(stage, []).append(p)
        for stage in sorted(by_stage):
            self.stop_processes(by_stage[stage])
        _rmtree(self.state_dir)

    # ---- bring-up -----------------------------------------------------------------------------------

    @classmethod
    def up(
        cls, members: list[MemberSpec], state_dir: Path, binaries: Binaries | None = None,
        log: Log = print, hub_only: bool = False,
    ) -> Fleet:
        """Start the fleet and return once every apiserver is ready and every fake GPU node is Ready.

        A fleet already running in ``state_dir`` is returned as it is; a broken one is an error.
        A Karmada control plane joins a running fleet: ``tenbin.testbed.karmada.Karmada.up(fleet)``.
        """
        state_dir = state_dir.resolve()
        existing = cls.load(state_dir, binaries)
        if existing is not None:
            dead = existing.dead()
            if dead:
                raise TestbedError(
                    f"a fleet in {state_dir} is partly down ({', '.join(p.name for p in dead)} not running);"
                    f" run 'tenbin dev down --state-dir {state_dir}' first"
                )
            log(f"fleet already up in {state_dir}; not starting a second one")
            return existing

        binaries = binaries or Binaries.locate()
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            state_dir.mkdir(parents=True, exist_ok=True)
            fleet = cls(state_dir, FleetState(etcd_port=free_port(), token=secrets.token_hex(24)), binaries)
            fleet.save()
            try:
                fleet._bring_up([] if hub_only else members, log)
                return fleet
            except TestbedError as e:
                lost_race = fleet._lost_port_race()
                log(f"bring-up failed ({e}); stopping what was started")
                with contextlib.suppress(TestbedError):
                    fleet.down()
                if not lost_race or attempt == PORT_RACE_ATTEMPTS:
                    raise
                log("a port was taken by another program meanwhile; trying again with new ports")
            except BaseException:
                with contextlib.suppress(TestbedError):
                    fleet.down()
                raise
        raise AssertionError("unreachable")

    def _lost_port_race(self) -> bool:
        """A process died because a port we picked was taken by someone else before it could bind."""
        for p in self.state.processes:
            with contextlib.suppress(OSError):
                if "address already in use" in Path(p.log).read_text(errors="replace"):
                    return True
        return False

    def _bring_up(self, members: list[MemberSpec], log: Log) -> None:
        t0 = time.monotonic()
        create_pki(self.state_dir / "pki")
        (self.state_dir / "token.csv").write_text(f'{self.state.token},admin,admin,"system:masters"\n')
        (self.state_dir / "token.csv").chmod(0o600)

        etcd = self._start_etcd()
        health = f"http://127.0.0.1:{self.state.etcd_port}/health"
        self._await("etcd /health", lambda: self._get(health)[0] == 200, [etcd])

        self.state.clusters[HUB] = ClusterRecord(HUB, "hub", free_port(), str(self.state_dir / "hub.kubeconfig"))
        for m in members:
            self.state.clusters[m.name] = ClusterRecord(
                m.name, "member", free_port(), str(self.state_dir / f"{m.name}.kubeconfig"),
                tier=m.tier, jurisdiction=m.jurisdiction, gpus=[asdict(g) for g in m.gpus],
            )
        for c in self.state.clusters.values():
            self._write_kubeconfig(c)
            self._start_apiserver(c)
        self.save()
        for c in self.state.clusters.values():
            self.await_apiserver(c.name)
            log(f"  apiserver {c.name:<20} {c.url}  ({time.monotonic() - t0:.1f}s)")

        for c in self.state.clusters.values():
            self._start_controllers(c)
        for m in members:
            self._create_gpu_nodes(m)
        self._create_hub_secrets()
        for m in members:
            self._await_member_ready(m)
            log(f"  member    {m.name:<20} nodes Ready  ({time.monotonic() - t0:.1f}s)")
        self._await_service_account(HUB)

    def _start_etcd(self) -> ProcessRecord:
        peer = free_port()
        data = self.state_dir / "etcd"
        return self._spawn("etcd", "", [
            str(self.binaries.etcd), "--name=tenbin-dev", f"--data-dir={data}",
            f"--listen-client-urls=http://127.0.0.1:{self.state.etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{self.state.etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=tenbin-dev=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--log-level=warn", "--quota-backend-bytes=4294967296",
        ])

    def _start_apiserver(self, c: ClusterRecord) -> ProcessRecord:
        pki = self.pki
        return self._spawn(f"{c.name}-kube-apiserver", c.name, [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.state.etcd_port}",
            f"--etcd-prefix=/{c.name}/registry",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={c.port}",
            f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={self.state_dir / 'token.csv'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--enable-priority-and-fairness=false", "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false", "--v=0",
        ])

    def _start_controllers(self, c: ClusterRecord) -> None:
        kc = f"--kubeconfig={c.kubeconfig}"
        self._spawn(f"{c.name}-kube-controller-manager", c.name, [
            str(self.binaries.kube_controller_manager), kc, "--leader-elect=false", "--secure-port=0",
            f"--service-account-private-key-file={self.pki.sa_key}", f"--root-ca-file={self.pki.ca_cert}",
            "--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle,-route",
            "--concurrent-job-syncs=20", "--v=0",
        ])
        if c.role != "member":
            return
        self._spawn(f"{c.name}-kube-scheduler", c.name, [
            str(self.binaries.kube_scheduler), kc, "--leader-elect=false", "--secure-port=0", "--v=0",
        ])
        self._spawn(f"{c.name}-kwok", c.name, [
            str(self.binaries.kwok), kc, f"--config={self.binaries.kwok_stages}",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            "--node-ip=127.0.0.1",
        ])

    def _write_kubeconfig(self, c: ClusterRecord) -> None:
        Path(c.kubeconfig).write_text(self.kubeconfig_text(c.name))
        Path(c.kubeconfig).chmod(0o600)

    def kubeconfig_text(self, name: str) -> str:
        c = self.state.clusters[name]
        ca = base64.b64encode(self.pki.ca_cert.read_bytes()).decode()
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": {"server": c.url, "certificate-authority-data": ca}}],
            "users": [{"name": f"{name}-admin", "user": {"token": self.state.token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def _create_gpu_nodes(self, m: MemberSpec) -> None:
        from kubernetes import client

        with contextlib.closing(self.api_client(m.name)) as api:
            core: Any = client.CoreV1Api(api)  # plain dicts are valid bodies; the stubs want models
            for node in gpu_nodes(m):
                core.create_node(node)

    def _create_hub_secrets(self) -> None:
        from kubernetes import client

        with contextlib.closing(self.api_client(HUB)) as api:
            core: Any = client.CoreV1Api(api)  # plain dicts are valid bodies; the stubs want models
            core.create_namespace({"metadata": {"name": SYSTEM_NAMESPACE}})
            for name in self.members:
                core.create_namespaced_secret(SYSTEM_NAMESPACE, {
                    "metadata": {"name": f"{name}-kubeconfig", "labels": {"tenbin.io/cluster": name}},
                    "type": "Opaque",
                    "stringData": {"kubeconfig": self.kubeconfig_text(name)},
                })

    def _await_member_ready(self, m: MemberSpec) -> None:
        from kubernetes import client

        want = {n["metadata"]["name"] for n in gpu_nodes(m)}
        procs = [p for p in self.state.processes if p.cluster == m.name]
        with contextlib.closing(self.api_client(m.name)) as api:
            core: Any = client.CoreV1Api(api)  # plain dicts are valid bodies; the stubs want models

            def ready() -> bool:
                nodes = core.list_node().items
                ok = {n.metadata.name for n in nodes if _node_ready(n)}
                return want <= ok

            self._await(f"{m.name}: {len(want)} fake GPU nodes Ready", ready, procs)
        self._await_service_account(m.name)

    def _await_service_account(self, name: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        procs = [p for p in self.state.processes if p.cluster == name]
        with contextlib.closing(self.api_client(name)) as api:
            core: Any = client.CoreV1Api(api)  # plain dicts are valid bodies; the stubs want models

            def has_sa() -> bool:
                try:
                    core.read_namespaced_service_account("default", "default")
                    return True
                except ApiException as e:
                    if e.status == 404:
                        return False
                    raise

            self._await(f"{name}: default ServiceAccount", has_sa, procs)


def wait_until(what: str, check: Callable[[], bool], timeout: float,
               abort: Callable[[], str | None] | None = None) -> None:
    """Poll ``check`` until it is true, with a deadline; ``abort`` may name a reason to give up early.

    Connection errors count as "not yet". This awaits a condition; it never sleeps a fixed time.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            if check():
                return
        if abort is not None and (reason := abort()):
            raise TestbedError(reason)
        if time.monotonic() > deadline:
            raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def gpu_nodes(m: MemberSpec) -> list[dict[str, Any]]:
    """Fake GPU Node objects for a member: GFD-style labels, ``nvidia.com/gpu`` in capacity/allocatable."""
    nodes: list[dict[str, Any]] = []
    for g in m.gpus:
        n_nodes = math.ceil(g.count / GPUS_PER_NODE)
        slug = g.model.lower().replace(".", "-")
        for i in range(n_nodes):
            gpus = min(GPUS_PER_NODE, g.count - i * GPUS_PER_NODE)
            resources = {"cpu": "96", "memory": "1024Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
            name = f"{m.name}-{slug}-{i}"
            nodes.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "nvidia.com/gpu.present": "true",
                        "nvidia.com/gpu.product": product_label(g.model),
                        "nvidia.com/gpu.memory": str(g.memory_gib * 1024),
                        "nvidia.com/gpu.count": str(gpus),
                        "topology.kubernetes.io/region": m.name,
                    },
                },
                "status": {"capacity": dict(resources), "allocatable": dict(resources)},
            })
    return nodes


def _node_ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running_fleet(members: list[MemberSpec], state_dir: Path, log: Log = print) -> Iterator[Fleet]:
    """A fleet for the duration of a ``with`` block: always taken down, also when the block fails."""
    fleet = Fleet.up(members, state_dir, log=log)
    try:
        yield fleet
    finally:
        fleet.down()
