"""Fixtures for the chart tests: the real Helm CLI, with its own home directory."""

from __future__ import annotations

import pytest
from chart_harness import Helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm.locate(tmp_path_factory.mktemp("helm-home"))
