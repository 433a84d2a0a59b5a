"""Shared fixtures. The `fleet` fixture is a real hub + 3 member control planes, started once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenbin.testbed.binaries import Binaries
from tenbin.testbed.fleet import Fleet, load_fleet

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
