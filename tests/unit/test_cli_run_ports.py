"""`tenbin run` with a port it cannot have: one line naming the flag and the port, exit 2, before any hub call.

The kubeconfig points at a loopback port nobody listens on: the port check comes first, so the
operator never tries the hub (and a regression that reaches the hub shows up as a timeout or a
traceback, not as a pass).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers import ROOT


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port held (listening) by this test."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()  # nobody listens there now
    path = tmp_path / "hub.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "hub",
        "clusters": [{"name": "hub", "cluster": {"server": f"https://127.0.0.1:{dead}",
                                                 "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "hub", "context": {"cluster": "hub", "user": "u"}}],
    }))
    return str(path)


def run(kubeconfig: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenbin", "run", "--kubeconfig", kubeconfig, "--standalone",
                           "--metrics-address", "127.0.0.1", "--health-address", "127.0.0.1", *flags],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_metrics_port_in_use(kubeconfig: str, taken: int) -> None:
    line = one_line(run(kubeconfig, "--metrics-port", str(taken), "--health-port", "0"))
    assert line.startswith(f"tenbin run: --metrics-port {taken}: "), line
    assert "127.0.0.1" in line and "in use" in line


def test_health_port_in_use(kubeconfig: str, taken: int) -> None:
    line = one_line(run(kubeconfig, "--metrics-port", "0", "--health-port", str(taken)))
    assert line.startswith(f"tenbin run: --health-port {taken}: "), line
    assert "in use" in line


def test_one_port_for_both(kubeconfig: str, taken: int) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    line = one_line(run(kubeconfig, "--metrics-port", str(port), "--health-port", str(port)))
    assert line.startswith(f"tenbin run: --health-port {port}: "), line
    assert "--metrics-port" in line


@pytest.mark.parametrize(
    ("flags", "prefix"),
    [(("--metrics-port", "70000", "--health-port", "0"), "tenbin run: --metrics-port 70000: "),
     (("--metrics-port", "0", "--health-port", "-1"), "tenbin run: --health-port -1: "),
     (("--metrics-port", "0", "--health-port", "1", "--health-address", "not-an-address.invalid"),
      "tenbin run: --health-address not-an-address.invalid: ")],
    ids=["out-of-range", "negative", "unknown-address"],
)
def test_ports_and_addresses_it_cannot_use(kubeconfig: str, flags: tuple[str, ...], prefix: str) -> None:
    line = one_line(run(kubeconfig, *flags))
    assert line.startswith(prefix), line
