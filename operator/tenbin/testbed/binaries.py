"""Where the testbed's binaries are, pinned by the versions in ``versions.env``.

Prometheus (for the telemetry tests) is pinned separately, in the checkout's
``testbed/prometheus/versions.env``, which ``testbed/build-prometheus.sh`` reads too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


class TestbedError(RuntimeError):
    """A testbed problem a user can act on; the message says what to do."""

    __test__ = False  # not a pytest test class


# The source checkout this package runs from (an editable install, as `make` sets up): testbed/ is there.
CHECKOUT = Path(__file__).resolve().parents[3]
PROMETHEUS_PINS = CHECKOUT / "testbed" / "prometheus" / "versions.env"


def _parse_env(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def versions() -> dict[str, str]:
    return _parse_env(resources.files("tenbin.testbed").joinpath("versions.env").read_text())


def prometheus_versions() -> dict[str, str]:
    """The Prometheus pin: PROMETHEUS_VERSION (v3.X.Y) and PROMETHEUS_MODULE_VERSION (v0.3XX.Y)."""
    try:
        pins = _parse_env(PROMETHEUS_PINS.read_text())
    except OSError as e:
        raise TestbedError(
            f"cannot read the Prometheus pin {PROMETHEUS_PINS} ({e.strerror}); "
            "run from a Tenbin checkout with tenbin installed editable ('make venv')"
        ) from None
    if not pins.get("PROMETHEUS_VERSION"):
        raise TestbedError(f"{PROMETHEUS_PINS}: PROMETHEUS_VERSION: required")
    return pins


def cache_dir() -> Path:
    return Path(os.environ.get("TENBIN_CACHE") or Path.home() / ".cache" / "tenbin")


def bin_dir() -> Path:
    override = os.environ.get("TENBIN_TESTBED_BIN")
    if override:
        return Path(override)
    v = versions()
    return cache_dir() / (
        f"bin-k8s-{v['KUBERNETES_VERSION']}-etcd-{v['ETCD_VERSION']}-kwok-{v['KWOK_VERSION']}"
    )


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path
    kwok: Path
    kwok_stages: Path
    kubernetes_version: str

    @classmethod
    def locate(cls) -> Binaries:
        d = bin_dir()
        names = {
            "kube_apiserver": "kube-apiserver",
            "kube_controller_manager": "kube-controller-manager",
            "kube_scheduler": "kube-scheduler",
            "kubectl": "kubectl",
            "etcd": "etcd",
            "kwok": "kwok",
            "kwok_stages": "kwok-stages.yaml",
        }
        paths = {attr: d / name for attr, name in names.items()}
        missing = [names[a] for a, p in paths.items() if not p.is_file()]
        if missing:
            raise TestbedError(
                f"testbed binaries missing in {d}: {', '.join(missing)}; run 'make testbed' to build them"
            )
        return cls(**paths, kubernetes_version=versions()["KUBERNETES_VERSION"])


def prometheus() -> Path:
    """The real Prometheus server built by ``testbed/build-prometheus.sh`` (``make testbed``).

    ``TENBIN_PROMETHEUS`` names another binary explicitly. There is no search of ``PATH`` or ``/usr/bin``:
    a system package found there would hide a missing or broken build and run an unpinned version.
    """
    override = os.environ.get("TENBIN_PROMETHEUS")
    if override:
        path = Path(override)
        if not path.is_file():
            raise TestbedError(f"TENBIN_PROMETHEUS={override} is not a file; unset it to use the testbed's build")
        return path
    version = prometheus_versions()["PROMETHEUS_VERSION"]
    d = cache_dir() / f"prometheus-{version}"
    path = d / "prometheus"
    if not (path.is_file() and (d / ".complete").is_file()):
        raise TestbedError(
            f"prometheus {version} missing at {path}; run 'make testbed' "
            "(or 'bash testbed/build-prometheus.sh') to build it"
        )
    return path
