"""`tenbin ... | head`: a reader that closes the pipe early ends the command quietly, never a traceback.

The reader here closes its end before the command writes anything, so the command's first write
fails with EPIPE every time (with `head` that is a race; here it is certain).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, cluster_doc, workload_doc

SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for `ls | head` too


def run_into_closed_pipe(*args: str) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tenbin", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "0"})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line
    try:
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return rc, err


@pytest.mark.parametrize(
    "args",
    [("simulate", "-f", "examples/fleet", "-f", "examples/policy", "-f", "examples/workloads"),
     ("simulate", "-f", "examples/fleet", "-f", "examples/policy", "-f", "examples/workloads", "-o", "json"),
     ("--help",), ("--version",), ("simulate", "--help")],
    ids=["simulate-table", "simulate-json", "help", "version", "subcommand-help"],
)
def test_output_into_a_closed_pipe_ends_quietly(args: tuple[str, ...]) -> None:
    rc, err = run_into_closed_pipe(*args)
    assert err == "", err
    assert rc == SIGPIPE_EXIT


def test_output_larger_than_the_buffer_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # 300 rows (> 8 KiB): the write fails inside print(), not at interpreter exit
    f = tmp_path / "many.yaml"
    f.write_text(yaml.safe_dump_all([cluster_doc("c1"), *(workload_doc(f"w{i:03d}") for i in range(300))]))
    rc, err = run_into_closed_pipe("simulate", "-f", str(f))
    assert err == "", err
    assert rc == SIGPIPE_EXIT


def test_dev_status_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # no fleet in this state dir: `dev status` still writes to stdout (and exits 1 when the reader is there)
    rc, err = run_into_closed_pipe("dev", "status", "--state-dir", str(tmp_path / "none"))
    assert err == "", err
    assert rc == SIGPIPE_EXIT


def test_with_the_reader_there_the_exit_code_is_the_commands_own(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "tenbin", "dev", "status", "--state-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert res.returncode == 1 and res.stdout.startswith("tenbin dev: no fleet in ") and res.stderr == ""
