"""`tenbin simulate -f PATH [-f PATH ...] [-o table|json]`: where would these workloads go, at what price.

This module does the file I/O; the decisions come from the pure core (`tenbin.scheduling`).

Inputs: YAML files (multi-document) or directories, searched recursively for *.yaml / *.yml in sorted
path order (hidden files and directories skipped). Every document must be a GPUCluster, AIWorkload or
PlacementPolicy: an unknown kind is an input error, as the contract says, so point simulate at
directories that hold only Tenbin objects (e.g. examples/fleet examples/policy examples/workloads).
The PlacementPolicy named `default` applies (other policies are validated and ignored); without one,
the built-in defaults apply (base currency JPY, no exchange rates, weights price 0.5 / availability 0.5).

Exit codes: 0 valid input (also with unschedulable workloads); 2 invalid input, with exactly one line
on stderr naming the file, the object and the field; 1 an internal error (still no traceback).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy
from tenbin.api.objects import ObjectError, object_name, parse_object
from tenbin.api.policy import DEFAULT_POLICY_NAME

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


class InputError(Exception):
    """One invalid input; `str()` is the single stderr line."""


@dataclass(frozen=True)
class Loaded:
    path: str
    obj: GPUCluster | AIWorkload | PlacementPolicy


@dataclass
class Inputs:
    clusters: list[Loaded]
    workloads: list[Loaded]
    policies: list[Loaded]


def _yaml_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        found: list[Path] = []
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(root) / f for f in files
                         if not f.startswith(".") and f.endswith((".yaml", ".yml")))
        return sorted(found)
    raise InputError(f"{path}: no such file or directory")


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        for i, doc in enumerate(yaml.safe_load_all(text), start=1):
            if doc is not None:
                yield i, doc
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{path}{where}: invalid YAML: {problem}") from None


def _jsonable(doc: Any) -> Any:
    """YAML timestamps become RFC 3339 strings, as the apiserver would hold them."""
    if isinstance(doc, dict):
        return {k if isinstance(k, str) else str(k): _jsonable(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_jsonable(v) for v in doc]
    if isinstance(doc, datetime | date):
        return doc.isoformat()
    return doc


def load(paths: list[str]) -> Inputs:
    files: list[Path] = []
    for p in paths:
        files.extend(_yaml_files(p))
    inputs = Inputs([], [], [])
    seen: dict[tuple[str, str], str] = {}
    for f in files:
        for index, doc in _documents(f):
            try:
                obj = parse_object(_jsonable(doc))
            except ObjectError as err:
                what = str(err) if err.obj else f"document {index}: {err}"
                raise InputError(f"{f}: {what}") from None
            who = object_name(obj.model_dump(by_alias=True, include={"kind", "metadata"}))
            key = (obj.kind, who)
            if key in seen:
                raise InputError(f"{f}: {who}: metadata.name: duplicate of the object in {seen[key]}")
            seen[key] = str(f)
            bucket = {"GPUCluster": inputs.clusters, "AIWorkload": inputs.workloads,
                      "PlacementPolicy": inputs.policies}[obj.kind]
            bucket.append(Loaded(str(f), obj))
    return inputs


def _check_currencies(inputs: Inputs, policy: Any) -> None:
    """Every price and budget must be convertible to the base currency."""
    base = policy.base_currency
    src = f"PlacementPolicy {policy.name}" if policy.name else "the built-in defaults (no PlacementPolicy)"
    for item in inputs.clusters:
        c = item.obj
        assert isinstance(c, GPUCluster)
        for i, g in enumerate(c.spec.gpus):
            if policy.rate(g.currency) is None:
                raise InputError(
                    f"{item.path}: GPUCluster {c.metadata.name}: spec.gpus[{i}].currency: no exchange rate "
                    f"for {g.currency} in {src} (base currency {base})"
                )
    for item in inputs.workloads:
        w = item.obj
        assert isinstance(w, AIWorkload)
        if w.spec.budget is not None and policy.rate(w.spec.budget.currency) is None:
            raise InputError(
                f"{item.path}: AIWorkload {w.key}: spec.budget.currency: no exchange rate "
                f"for {w.spec.budget.currency} in {src} (base currency {base})"
            )


def _round(x: float | None, digits: int) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x, digits)


def run(paths: list[str]) -> tuple[str, list[Any]]:
    """Load, validate and place. Returns (base currency, decisions). Raises InputError."""
    from tenbin.scheduling import EffectivePolicy, Scheduler, Snapshot

    inputs = load(paths)
    chosen_policy = next((p.obj for p in inputs.policies if p.obj.metadata.name == DEFAULT_POLICY_NAME), None)
    assert chosen_policy is None or isinstance(chosen_policy, PlacementPolicy)
    policy = EffectivePolicy.from_api(chosen_policy)
    _check_currencies(inputs, policy)
    snap = Snapshot([c.obj for c in inputs.clusters if isinstance(c.obj, GPUCluster)])
    workloads = [w.obj for w in inputs.workloads if isinstance(w.obj, AIWorkload)]
    return policy.base_currency, Scheduler(policy).place_all(workloads, snap)


def to_json(decisions: list[Any]) -> dict[str, Any]:
    return {
        "placements": [
            {
                "workload": d.workload,
                "cluster": d.chosen.cluster if d.chosen else None,
                "gpuModel": d.chosen.model if d.chosen else None,
                "pricePerGPUHour": _round(d.chosen.price_base, 4) if d.chosen else None,
                "score": _round(d.chosen.score, 3) if d.chosen else None,
                "reason": d.reason,
            }
            for d in decisions
        ]
    }


def to_table(base: str, decisions: list[Any]) -> str:
    from tenbin.scheduling import money

    head = ["WORKLOAD", "CLUSTER", "MODEL", "GPUS", f"PRICE/GPU-H ({base})", "SCORE", "REASON"]
    rows = []
    for d in decisions:
        c = d.chosen
        rows.append([
            d.workload,
            c.cluster if c else "-",
            c.model if c else "-",
            str(d.gpus),
            money(c.price_base, base) if c else "-",
            f"{c.score:.1f}" if c else "-",
            d.reason if c else f"UNSCHEDULABLE: {d.reason}",
        ])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
             for r in [head, *rows]]
    placed = [d for d in decisions if d.chosen]
    hourly = sum(d.chosen.price_base * d.gpus for d in placed)
    lines.append("")
    lines.append(f"{len(decisions)} workloads: {len(placed)} placed, {len(decisions) - len(placed)} unschedulable;"
                 f" placed GPUs cost {money(hourly, base)}/h (illustrative prices, base currency {base})")
    return "\n".join(lines)


def simulate_command(paths: list[str], output: str) -> int:
    try:
        base, decisions = run(paths)
    except InputError as err:
        print(err, file=sys.stderr)  # "FILE: KIND NAME: FIELD: problem", one line
        return EXIT_INPUT
    except Exception as err:  # never a traceback for a user; say what broke
        print(f"tenbin simulate: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_INTERNAL
    if output == "json":
        print(json.dumps(to_json(decisions), ensure_ascii=False))
    else:
        print(to_table(base, decisions))
    return EXIT_OK
