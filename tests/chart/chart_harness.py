"""The real Helm CLI (built from its Go module by testbed/build-helm.sh) and helpers over its output."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tenbin.testbed.binaries import TestbedError, cache_dir

ROOT = Path(__file__).resolve().parents[2]
HUB_CHART = ROOT / "charts" / "tenbin"
MEMBER_CHART = ROOT / "charts" / "tenbin-member"
VALUES = Path(__file__).resolve().parent / "values"
PINS = ROOT / "testbed" / "helm" / "versions.env"


def pins() -> dict[str, str]:
    out = {}
    for line in PINS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


@dataclass(frozen=True)
class Helm:
    """`helm` with its own config/cache/data directories (never the user's ~/.config/helm)."""

    binary: Path
    home: Path

    @classmethod
    def locate(cls, home: Path) -> Helm:
        version = pins()["HELM_VERSION"]
        binary = Path(os.environ.get("TENBIN_HELM") or cache_dir() / f"helm-{version}" / "helm")
        if not binary.is_file():
            # An error, never a skip: a chart suite that skips its real Helm proves nothing.
            raise TestbedError(f"helm {version} missing at {binary}; run 'bash testbed/build-helm.sh' to build it")
        return cls(binary, home)

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HELM_CONFIG_HOME": str(self.home / "config"), "HELM_CACHE_HOME": str(self.home / "cache"),
               "HELM_DATA_HOME": str(self.home / "data"), "HELM_NO_PLUGINS": "1"}
        env.pop("KUBECONFIG", None)
        res = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=env, timeout=timeout,
                             check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout[-2000:]}")
        return res

    def template(self, chart: Path, *args: str, release: str = "tenbin", namespace: str = "tenbin-system",
                 values: Iterable[Path] = (), sets: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        argv = ["template", release, str(chart), "--namespace", namespace, *args]
        for f in values:
            argv += ["--values", str(f)]
        for k, v in (sets or {}).items():
            argv += ["--set", f"{k}={v}"]
        return [d for d in yaml.safe_load_all(self.run(*argv).stdout) if d]


def by_kind(docs: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> Mapping[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def rules(docs: Iterable[Mapping[str, Any]]) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(role, rule) for every rule of every Role and ClusterRole."""
    for d in docs:
        if d.get("kind") in ("Role", "ClusterRole"):
            for r in d.get("rules") or []:
                yield d, r


def kubeconfig_for_token(server: str, ca_b64: str, token: str, name: str) -> str:
    """A kubeconfig holding only a bearer token: what docs/install.md tells users to build."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca_b64}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }, sort_keys=False)


def crds_established(fleet: Any, *names: str) -> bool:
    """Every named CRD reports Established=True (kubectl wait errors out while a new CRD has no conditions)."""
    for name in names:
        res = fleet.kubectl("get", "crd", name, "-o", "json", check=False)
        if res.returncode != 0:
            return False
        conditions = (json.loads(res.stdout).get("status") or {}).get("conditions") or []
        if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return False
    return True


def json_of(res: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(res.stdout)
