"""The operator under test (`tenbin run` as a subprocess, optionally under py-spy) and its /proc footprint."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tenbin.testbed.fleet import Fleet, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcSample:
    t: float  # monotonic
    cpu_s: float  # user + system, this process and its threads
    rss_mib: float
    hwm_mib: float


def sample(pid: int) -> ProcSample:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return ProcSample(time.monotonic(), cpu, rss, hwm)


def fleet_cpu(fleet: Fleet) -> dict[str, float]:
    """CPU seconds so far of the fleet's processes, summed by component (hub apiserver, member apiservers, ...)."""
    out: dict[str, float] = {}
    for p in fleet.state.processes:
        try:
            cpu = sample(p.pid).cpu_s
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        kind = p.name[len(p.cluster) + 1:] if p.cluster else p.name
        group = f"hub {kind}" if p.cluster == "hub" else kind if not p.cluster else f"member {kind}s"
        out[group] = out.get(group, 0.0) + cpu
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class Operator:
    """`tenbin run` against the fleet's hub, with the production defaults unless told otherwise."""

    def __init__(self, fleet: Fleet, log: Path, resync_seconds: float = 2.0, profile: Path | None = None) -> None:
        self.fleet = fleet
        self.log = log
        self.resync = resync_seconds
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.health_port = free_port()

    def start(self) -> None:
        argv = [sys.executable, "-m", "tenbin", "run", "--kubeconfig", str(self.fleet.kubeconfig("hub")),
                "--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
                "--health-address", "127.0.0.1", "--health-port", str(self.health_port), "--standalone",
                "--resync-seconds", str(self.resync)]
        if self.profile is not None:
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            # on-CPU samples only, without pausing the process (low overhead on a 2-core machine)
            argv = [spy, "record", "--format", "raw", "--rate", "50", "--nonblocking", "--threads", "-o",
                    str(self.profile), "--", *argv]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_until("operator /healthz", self._healthy, timeout=90, abort=self._died)

    @property
    def pid(self) -> int:
        """The Python process (the child of py-spy when profiling)."""
        assert self.proc is not None
        if self.profile is None:
            return self.proc.pid
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(kids[0]) if kids else self.proc.pid

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
            return bool(r.status == 200)

    def _died(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"operator exited with {self.proc.returncode}:\n{self.tail()}"
        return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def sample(self) -> ProcSample:
        return sample(self.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if self.profile is not None:
                # py-spy writes its profile when the program it runs exits: stop the program, not py-spy
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
