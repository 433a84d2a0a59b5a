"""`Config` is the one source of the operator's settings: every field has its `tenbin run` flag, with
the field's default, and a bad value is one line naming the flag (exit 2); the Helm chart's flag table,
schema and the install guide's table agree with it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tenbin.cli import build_parser
from tenbin.services.settings import Config, config_flags


def test_every_field_has_one_flag_and_the_flags_default_is_the_fields() -> None:
    flags = config_flags()
    assert [f.name for f in flags] == [f.name for f in dataclasses.fields(Config)]
    assert len({f.flag for f in flags}) == len(flags)
    args = build_parser().parse_args(["run"])
    assert Config(**{f.name: getattr(args, f.name) for f in flags}) == Config()


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


ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tenbin"


def test_the_chart_passes_every_setting_by_its_flag_and_nothing_else() -> None:
    text = (CHART / "templates" / "_settings.tpl").read_text()
    body = text.split('{{- define "tenbin.settingFlags" -}}', 1)[1].split("{{- end -}}", 1)[0]
    table = yaml.safe_load(body)
    assert table == {f.chart_key: f.flag for f in config_flags()}


def test_the_chart_schema_takes_every_setting_with_its_type_and_minimum() -> None:
    props = json.loads((CHART / "values.schema.json").read_text())["properties"]["operator"]["properties"]
    not_config = ("verbose", "logFormat", "memberPodSecurity", "extraArgs", "env")  # flags of their own
    settings = {k: v for k, v in props.items() if k not in not_config}
    assert settings == {f.chart_key: {"type": "integer" if f.kind is int else "number", "minimum": f.minimum}
                        for f in config_flags()}
    values = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]
    assert not set(values) & set(settings), "values.yaml repeats a default that Config holds"


def test_the_install_guide_lists_every_setting_with_its_default() -> None:
    text = (ROOT / "docs" / "install.md").read_text()
    for f in config_flags():
        assert f"| `operator.{f.chart_key}` | `{f.flag}` | {f.default:g} | {f.help} |" in text, f.name
