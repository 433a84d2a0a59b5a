"""A real Prometheus (built by testbed/build-prometheus.sh) scraping a DCGM-style test exporter, on 127.0.0.1.

Each test that asks for `prom` gets its own exporter and its own Prometheus (temp storage, 1s scrapes);
the fixture's finalizer stops both, also when the test fails.
"""

from __future__ import annotations

import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fake_dcgm import Exporter
from prom_server import Prom, stop_process

from tenbin.testbed.binaries import prometheus
from tenbin.testbed.fleet import free_port, wait_until

STARTUP_S = 60.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Prometheus is a built tool like the control planes (`make testbed`): `make test-unit` leaves these out.
    for item in items:
        if "prom" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.testbed)


@pytest.fixture
def prom(tmp_path: Path) -> Iterator[Prom]:
    # The pinned build from `make testbed`, else a TestbedError naming the fix: never a skip, and never a
    # `prometheus` found on PATH (a system package there would hide a missing build and be unpinned).
    binary = prometheus()
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
                [str(binary), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
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
            stop_process(proc)
        exporter.stop()
