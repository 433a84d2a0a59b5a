"""Where the testbed's binaries are, pinned by the versions in ``versions.env``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


class TestbedError(RuntimeError):
    """A testbed problem a user can act on; the message says what to do."""

    __test__ = False  # not a pytest test class


def versions() -> dict[str, str]:
    text = resources.files("tenbin.testbed").joinpath("versions.env").read_text()
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


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
