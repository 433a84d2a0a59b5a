"""Shared fixtures. The `fleet` fixture is a real hub + 3 member control planes, started once per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from operator_harness import ROOT as _ROOT
from operator_harness import OperatorProcess, hub_json
from tenbin.testbed.binaries import Binaries
from tenbin.testbed.fleet import Fleet, load_fleet, wait_until

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_FLEET = ROOT / "tests" / "fixtures" / "fleet"


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    # Missing binaries are an error, never a skip: a suite that skips its real control planes proves nothing.
    return Binaries.locate()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory, binaries: Binaries) -> Iterator[Fleet]:
    """Hub + one member per tier (tests/fixtures/fleet), torn down at the end even when tests fail."""
    state = tmp_path_factory.mktemp("fleet")
    f = Fleet.up(load_fleet([FIXTURE_FLEET]), state, binaries, log=lambda _m: None)
    try:
        yield f
    finally:
        f.down()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that use a control plane are marked, so `make test-unit` can leave them out.
    for item in items:
        if {"fleet", "binaries"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.testbed)


os.environ.setdefault("TENBIN_DEV_STARTUP_TIMEOUT", "240")


# ---------------------------------------------------- the operator against the hub (e2e, telemetry, chart)


@pytest.fixture(scope="session")
def hub(fleet: Fleet) -> Fleet:
    """The fleet's hub with Tenbin's CRDs, the fixture GPUClusters and the example default policy."""
    fleet.kubectl("apply", "--server-side", "-f", str(_ROOT / "crds"))
    fleet.wait_established("crd", "-l", "app.kubernetes.io/part-of=tenbin")
    fleet.kubectl("apply", "-f", str(_ROOT / "tests" / "fixtures" / "fleet"),
                  "-f", str(_ROOT / "examples" / "policy" / "default.yaml"))
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
    """A fresh hub namespace; afterwards its AIWorkloads are deleted and awaited, and so are their pods in
    every member, so the next test starts with the members' GPUs free."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    hub.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        hub.kubectl("delete", "aiworkloads", "--all", "-n", name, "--wait=false", check=False)
        wait_until(f"AIWorkloads in {name} gone",
                   lambda: not hub_json(hub, "aiworkloads", "-n", name)["items"], timeout=60)
        hub.kubectl("delete", "namespace", name, "--wait=false", check=False)

        def member_pods_gone() -> bool:
            for member in hub.members:
                res = hub.kubectl("get", "pods", "-n", name, "-o", "name", cluster=member, check=False)
                if res.returncode == 0 and res.stdout.strip():
                    return False
            return True

        wait_until(f"pods of {name} gone from every member", member_pods_gone, timeout=60)
