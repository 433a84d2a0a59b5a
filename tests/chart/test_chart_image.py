"""The image `make image` builds, run by a real OCI runtime (runc) as the chart's pod would run it: the image's
own user, entrypoint and environment, a read-only root filesystem with /tmp a tmpfs, and the hub reached
in-cluster style (KUBERNETES_SERVICE_HOST and the ServiceAccount token mounted at
/var/run/secrets/kubernetes.io/serviceaccount, a TokenRequest token for the chart's ServiceAccount). It places
a workload end to end through both charts' RBAC.

The image is built here by image/build.sh (what `make image` runs), so this tests the current source, never a
stale tarball. The container shares the host's network namespace: the testbed's apiservers listen on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_harness import HUB_CHART, ROOT, Helm
from install_harness import MEMBER, NS, ChartOperator, Installed, hub_namespace, installed_charts

from operator_harness import aiw, apply, hub_json, workload
from tenbin.testbed.binaries import cache_dir
from tenbin.testbed.fleet import Fleet, wait_until

pytestmark = pytest.mark.testbed  # built tools (testbed/build-image-tools.sh): `make test-unit` leaves these out
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _tool(name: str) -> Path:
    path = cache_dir() / "image-tools" / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} missing: run 'make testbed' (testbed/build-image-tools.sh fetches umoci and runc)")
    return path


def _version() -> str:
    return str(yaml.safe_load((HUB_CHART / "Chart.yaml").read_text())["appVersion"])


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The OCI layout of a fresh `make image`, unpacked from the tarball it ships."""
    if os.geteuid() != 0:
        pytest.fail("the image tests run as root (image/build.sh and runc need it), as make test does here")
    out = tmp_path_factory.mktemp("image")
    res = subprocess.run(["bash", str(ROOT / "image" / "build.sh"), str(out)], capture_output=True, text=True,
                         timeout=900, check=False, env={**os.environ, "PYTHON": str(ROOT / ".venv" / "bin" / "python")})
    assert res.returncode == 0, res.stderr + res.stdout
    tarball = out / f"tenbin-{_version()}.oci.tar"
    assert f"image: {tarball} (tenbin:{_version()}" in res.stdout, res.stdout
    layout = out / "layout"
    with tarfile.open(tarball) as tf:
        tf.extractall(layout, filter="tar")
    return layout


def _blob(layout: Path, digest: str) -> Any:
    algo, _, hexa = digest.partition(":")
    return json.loads((layout / "blobs" / algo / hexa).read_text())


def test_the_image_is_tagged_labelled_and_unprivileged(image: Path) -> None:
    index = json.loads((image / "index.json").read_text())
    (desc,) = index["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == _version()  # the chart's appVersion
    manifest = _blob(image, desc["digest"])
    ann = manifest["annotations"]
    assert ann["org.opencontainers.image.version"] == _version()
    assert ann["org.opencontainers.image.source"].startswith("https://")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert ann["org.opencontainers.image.revision"] in (head, f"{head}-dirty")
    config = _blob(image, manifest["config"]["digest"])["config"]
    assert config["User"] == "10001:10001"  # numeric: the chart's runAsNonRoot can be checked without a name
    assert config["Entrypoint"] == ["/usr/bin/python3", "-m", "tenbin"] and config["Cmd"] == ["run"]
    assert config["Labels"]["org.opencontainers.image.revision"] == ann["org.opencontainers.image.revision"]
    values = yaml.safe_load((HUB_CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == ""  # so the chart runs the tag make image wrote: its appVersion


class ImageOperator(ChartOperator):
    """The operator as the image's container: runc runs the bundle umoci unpacked from the image."""

    def __init__(self, fleet: Fleet, log: Path, image: Path, workdir: Path, token: str, pod_name: str) -> None:
        super().__init__(fleet, log, kubeconfig=Path("/nonexistent"), pod_name=pod_name)
        self.image, self.workdir, self.token = image, workdir, token
        self.state = workdir / "runc-state"
        self.id = f"tenbin-{pod_name}"

    def _bundle(self) -> Path:
        bundle = self.workdir / "bundle"
        if bundle.exists():
            shutil.rmtree(bundle)
        subprocess.run([str(_tool("umoci")), "unpack", "--image", f"{self.image}:{_version()}", str(bundle)],
                       check=True, capture_output=True, timeout=300)
        sa = self.workdir / "serviceaccount"
        sa.mkdir(mode=0o755, exist_ok=True)
        (sa / "token").write_text(self.token)
        shutil.copy(self.fleet.pki.ca_cert, sa / "ca.crt")
        (sa / "namespace").write_text(NS)
        for f in sa.iterdir():
            f.chmod(0o644)
        hub = urllib.parse.urlsplit(self.fleet.state.clusters["hub"].url)
        spec = json.loads((bundle / "config.json").read_text())
        proc = spec["process"]
        # what the image says to run, as which user, from its own config (umoci translated it)
        assert proc["args"] == ["/usr/bin/python3", "-m", "tenbin", "run"], proc["args"]
        assert (proc["user"]["uid"], proc["user"]["gid"]) == (10001, 10001)
        proc["args"] = [*proc["args"], *self.run_flags()]
        proc["terminal"] = False
        proc["env"] = [*proc["env"], f"KUBERNETES_SERVICE_HOST={hub.hostname}", f"KUBERNETES_SERVICE_PORT={hub.port}",
                       f"POD_NAME={self.pod_name}", f"POD_NAMESPACE={NS}", "TMPDIR=/tmp"]
        spec["root"]["readonly"] = True  # the chart's readOnlyRootFilesystem
        spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "cgroup"] + [  # this machine: hybrid cgroups
            {"destination": SA_DIR, "type": "bind", "source": str(sa), "options": ["rbind", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        ]
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
        spec["linux"].pop("resources", None)
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def start(self) -> None:
        bundle = self._bundle()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(_tool("runc")), "--root", str(self.state), "run", "--bundle",
                                          str(bundle), self.id], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        wait_until("the image's operator /healthz", self._healthy, timeout=120, abort=self._died)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        try:
            super().stop(sig)  # runc run forwards the signal to the container's process
        finally:
            subprocess.run([str(_tool("runc")), "--root", str(self.state), "delete", "--force", self.id],
                           capture_output=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def installed(fleet: Fleet, helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    with installed_charts(fleet, helm, tmp_path_factory.mktemp("chart-image")) as inst:
        yield inst


@pytest.fixture(scope="module")
def container(installed: Installed, image: Path) -> Iterator[ImageOperator]:
    token = installed.fleet.kubectl("create", "token", "tenbin", "-n", NS, "--duration=2h").stdout.strip()
    op = ImageOperator(installed.fleet, installed.dir / "image-operator.log", image, installed.dir, token,
                       pod_name="tenbin-image-a")
    op.start()
    try:
        yield op
    finally:
        op.stop()


def test_the_image_places_work_end_to_end_under_the_chart_identity(installed: Installed,
                                                                  container: ImageOperator) -> None:
    fleet = installed.fleet
    with hub_namespace(installed) as ns:
        # SovereignCloud in JP: of the fixture fleet, only MEMBER (reached with the scoped identity) qualifies
        w = workload("image-e2e", gpus=2, run_seconds=3, jurisdictions=["JP"])
        w["spec"]["residency"]["tiers"] = ["SovereignCloud"]
        apply(fleet, ns, w)
        wait_until("Succeeded", lambda: (aiw(fleet, ns, "image-e2e").get("status") or {}).get("phase") == "Succeeded",
                   timeout=120, abort=container._died)
        body = aiw(fleet, ns, "image-e2e")
        assert body["status"]["placement"]["cluster"] == MEMBER
        assert [h["event"] for h in body["status"]["history"]] == ["Scheduled", "Running", "Succeeded"]
        job = json.loads(fleet.kubectl("get", "job", "image-e2e", "-n", ns, "-o", "json", cluster=MEMBER).stdout)
        assert job["status"].get("succeeded") == 1
        # the container's operator is the one that acted: it holds the chart's Lease under its pod name
        lease = hub_json(fleet, "lease", "tenbin", "-n", NS)
        assert lease["spec"]["holderIdentity"].startswith("tenbin-image-a"), lease["spec"]
    log = container.log.read_text(errors="replace")
    assert "Traceback" not in log and "Read-only file system" not in log, container.tail()
