"""Fixtures for the chart tests: the real Helm CLI, with its own home directory."""

from __future__ import annotations

import pytest
from chart_harness import Helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm.locate(tmp_path_factory.mktemp("helm-home"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Helm is a built tool like the control planes (testbed/build-helm.sh): `make test-unit` leaves these out.
    for item in items:
        if "helm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.testbed)
