"""Locating the testbed's Prometheus (testbed/build-prometheus.sh): the pin, the cache, the error naming the fix."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tenbin.testbed import binaries
from tenbin.testbed.binaries import TestbedError, prometheus, prometheus_versions


@pytest.fixture
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENBIN_PROMETHEUS", raising=False)


def test_pinned_module_version_is_the_pinned_release() -> None:
    # Prometheus v3.X.Y is published as Go module version v0.3XX.Y (v3.16.0 -> v0.316.0).
    pins = prometheus_versions()
    m = re.fullmatch(r"v3\.(\d+)\.(\d+)", pins["PROMETHEUS_VERSION"])
    assert m, pins
    assert pins["PROMETHEUS_MODULE_VERSION"] == f"v0.3{int(m[1]):02d}.{m[2]}"


def test_missing_build_names_the_fix(no_override: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENBIN_CACHE", str(tmp_path))
    version = prometheus_versions()["PROMETHEUS_VERSION"]
    with pytest.raises(TestbedError, match=rf"prometheus {version} missing at {tmp_path}/prometheus-{version}/"
                                           r"prometheus; run 'make testbed'"):
        prometheus()


def test_unfinished_build_is_missing(no_override: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A binary without the build script's .complete marker (an interrupted build) is not used.
    monkeypatch.setenv("TENBIN_CACHE", str(tmp_path))
    d = tmp_path / f"prometheus-{prometheus_versions()['PROMETHEUS_VERSION']}"
    d.mkdir()
    (d / "prometheus").write_bytes(b"")
    with pytest.raises(TestbedError, match="make testbed"):
        prometheus()
    (d / ".complete").touch()
    assert prometheus() == d / "prometheus"


def test_no_fallback_to_path(no_override: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A `prometheus` on PATH (say Debian's package) must not stand in for a missing build.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "prometheus").write_text("#!/bin/sh\nexit 0\n")
    (fake / "prometheus").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    monkeypatch.setenv("TENBIN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(TestbedError, match="make testbed"):
        prometheus()


def test_explicit_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENBIN_PROMETHEUS", str(tmp_path / "nope"))
    with pytest.raises(TestbedError, match=r"TENBIN_PROMETHEUS=.*nope is not a file"):
        prometheus()
    (tmp_path / "mine").write_bytes(b"")
    monkeypatch.setenv("TENBIN_PROMETHEUS", str(tmp_path / "mine"))
    assert prometheus() == tmp_path / "mine"


def test_unreadable_pin_names_the_file(no_override: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(binaries, "PROMETHEUS_PINS", tmp_path / "versions.env")
    with pytest.raises(TestbedError, match=rf"cannot read the Prometheus pin {tmp_path}/versions.env"):
        prometheus()


@pytest.mark.testbed
def test_built_binary_reports_the_pinned_version(no_override: None) -> None:
    pins = prometheus_versions()
    out = subprocess.run([str(prometheus()), "--version"], capture_output=True, text=True, timeout=30, check=True)
    first = (out.stdout or out.stderr).splitlines()[0]
    assert first.startswith(f"prometheus, version {pins['PROMETHEUS_VERSION'].removeprefix('v')} "), first
