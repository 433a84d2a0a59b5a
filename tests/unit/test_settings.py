"""`Config` is the one source of the operator's settings: every field has its `tenbin run` flag, with
the field's default, and a bad value is one line naming the flag (exit 2)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tenbin.cli import build_parser
from tenbin.services.settings import Config, config_flags


def test_every_field_has_one_flag_and_the_flags_default_is_the_fields() -> None:
    flags = config_flags()
    assert [f[0] for f in flags] == [f.name for f in dataclasses.fields(Config)]
    assert len({f[1] for f in flags}) == len(flags)
    args = build_parser().parse_args(["run"])
    assert Config(**{name: getattr(args, name) for name, *_ in flags}) == Config()


def test_a_flag_sets_its_field() -> None:
    args = build_parser().parse_args(["run", "--pending-timeout", "7.5", "--max-failovers", "0",
                                      "--not-served-ttl", "12"])
    assert (args.pending_timeout_seconds, args.max_failovers, args.not_served_ttl_seconds) == (7.5, 0, 12.0)


@pytest.mark.parametrize(("flag", "value", "why"), [
    ("--resync-seconds", "0", "0 is below 0.1"),
    ("--delete-grace", "-1", "-1 is below 0"),
    ("--max-failovers", "1.5", "invalid int value: '1.5'"),
    ("--pending-timeout", "soon", "invalid float value: 'soon'"),
])
def test_a_bad_value_is_one_line_naming_the_flag(flag: str, value: str, why: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tenbin", "run", flag, value], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"tenbin run: error: argument {flag}: {why}"
    assert "Traceback" not in done.stderr
