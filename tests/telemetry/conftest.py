"""A real Prometheus (Debian's `prometheus` package) scraping a DCGM-style test exporter, both on 127.0.0.1.

Each test that asks for `prom` gets its own exporter and its own Prometheus (temp storage, 1s scrapes);
the fixture's finalizer stops both, also when the test fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_dcgm import Exporter

from tenbin.testbed.fleet import free_port, wait_until

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
STARTUP_S = 60.0


@dataclass
class Prom:
    url: str
    exporter: Exporter
    proc: subprocess.Popen[bytes]
    log: Path

    def query(self, q: str) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": q}),
                                    timeout=5) as r:
            return list(json.load(r)["data"]["result"])

    def await_query(self, what: str, q: str, pred: Any = bool, timeout: float = 30) -> None:
        """Wait until Prometheus answers ``q`` with a result satisfying ``pred`` (i.e. it has scraped)."""
        wait_until(what, lambda: pred(self.query(q)), timeout, abort=self._died)

    def _died(self) -> str | None:
        if self.proc.poll() is not None:
            return f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}"
        return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@pytest.fixture
def prom(tmp_path: Path) -> Iterator[Prom]:
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed (Debian package `prometheus`); these tests need a real server")
    exporter = Exporter(free_port())
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "dcgm", "static_configs": [{"targets": [exporter.target]}]}],
    }))
    log = tmp_path / "prometheus.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        p = Prom(f"http://127.0.0.1:{port}", exporter, proc, log)

        def ready() -> bool:
            with urllib.request.urlopen(f"{p.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)

        wait_until("prometheus /-/ready", ready, STARTUP_S, abort=p._died)
        yield p
    finally:
        if proc is not None:
            _stop(proc)
        exporter.stop()
