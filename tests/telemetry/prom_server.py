"""A real Prometheus process for tests: query helpers and a clean stop (used by conftest.py's `prom` fixture)."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_dcgm import Exporter

from tenbin.testbed.fleet import wait_until


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


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)
