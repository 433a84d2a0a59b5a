"""Fixtures for end-to-end tests: the hub with Tenbin's CRDs, the operator process, a namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from operator_harness import ROOT, OperatorProcess, hub_json
from tenbin.testbed.fleet import Fleet, wait_until


@pytest.fixture(scope="session")
def hub(fleet: Fleet) -> Fleet:
    """The fleet's hub with Tenbin's CRDs, the fixture GPUClusters and the example default policy."""
    fleet.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    fleet.kubectl("wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=tenbin",
                  "--timeout=60s")
    fleet.kubectl("apply", "-f", str(ROOT / "tests" / "fixtures" / "fleet"),
                  "-f", str(ROOT / "examples" / "policy" / "default.yaml"))
    return fleet


@pytest.fixture(scope="module")
def operator(hub: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(hub, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def ns(hub: Fleet) -> Iterator[str]:
    """A fresh hub namespace; its AIWorkloads are deleted (and awaited) afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    hub.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        hub.kubectl("delete", "aiworkloads", "--all", "-n", name, "--wait=false", check=False)
        wait_until(f"AIWorkloads in {name} gone",
                   lambda: not hub_json(hub, "aiworkloads", "-n", name)["items"], timeout=60)
        hub.kubectl("delete", "namespace", name, "--wait=false", check=False)
