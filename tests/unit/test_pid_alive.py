"""The testbed knows its processes by PID and program: a process started as `env VAR=value prog` (an add-on
that needs its own environment) is still its own once env has exec'd prog, so `Fleet.stop` signals it. Before,
such a process looked already gone and leaked: a training-operator per add-on install, never stopped."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tenbin.testbed.fleet import ProcessRecord, pid_alive, wait_until


def _first_arg(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]


def test_a_process_started_through_env_is_still_ours_after_the_exec(tmp_path: Path) -> None:
    argv = ["/usr/bin/env", "TENBIN_PROBE=1", "sleep", "60"]
    proc = subprocess.Popen(argv)
    try:
        rec = ProcessRecord(name="probe", cluster="hub", pid=proc.pid, argv=argv, log=str(tmp_path / "log"))
        wait_until("env exec'd sleep", lambda: _first_arg(proc.pid) == b"sleep", timeout=10)
        assert pid_alive(rec)
        other = ProcessRecord(name="probe", cluster="hub", pid=proc.pid, argv=["/usr/bin/env", "X=1", "cat"],
                              log=str(tmp_path / "log"))
        assert not pid_alive(other)  # a PID reused by another program is not ours
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert not pid_alive(rec)
