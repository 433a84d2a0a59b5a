"""`tenbin simulate -f PATH [-f PATH ...] [-o table|json|yaml] [--skip-other-kinds] [--at TIME]`: where would
these workloads go, at what price (the policy's attestations judged at TIME, default now).

This module does the file I/O; the decisions come from the pure core (`tenbin.scheduling`).

Inputs: YAML files (multi-document) or directories, searched recursively for *.yaml / *.yml in sorted
path order (hidden files and directories skipped); `-f -` reads standard input (once; named `-` in
errors). Every document must be a GPUCluster, AIWorkload or PlacementPolicy: an unknown kind is an input
error, as the contract says. A directory that also holds what the workloads use (ConfigMaps, Secrets, an
Argo CD Application) can be read with `--skip-other-kinds`: documents whose apiVersion is not in Tenbin's
group (tenbin.io) are then skipped, one warning line each on stderr; an unknown kind of Tenbin's group
stays an error.
The PlacementPolicy named `default` applies (other policies are validated and ignored); without one,
the built-in defaults apply (base currency JPY, no exchange rates, weights price 0.5 / availability 0.5).

Every AIWorkload must also pass the operator's own semantic checks (`tenbin.services.validation`, the
function that marks a spec `Valid=False` on the hub): simulate refuses what the operator would refuse.

Input bounds, so that a small hostile file cannot exhaust memory or the stack (each an input error):
- a file is at most `MAX_FILE_BYTES` (8 MiB, some 20,000 AIWorkloads);
- YAML anchors and aliases are accepted, as kubectl accepts them, but the nodes aliases add to a file
  may not exceed the nodes the file writes plus `ALIAS_SLACK_NODES` (10,000): a "billion laughs" file
  is refused at its first excessive alias, after reading a few hundred nodes;
- an alias inside the node it names (a loop) is refused;
- nesting is at most `MAX_DEPTH` (100) levels.

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
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy
from tenbin.api.common import API_VERSION
from tenbin.api.objects import KINDS, ObjectError, object_name, parse_object
from tenbin.api.policy import DEFAULT_POLICY_NAME
from tenbin.kinds import Kinds
from tenbin.scheduling.attestations import attested
from tenbin.services.validation import semantic_error

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2
MAX_FILE_BYTES = 8 << 20
ALIAS_SLACK_NODES = 10_000
MAX_DEPTH = 100
STDIN = "-"


class InputError(Exception):
    """One invalid input; `str()` is the single stderr line."""


@dataclass(frozen=True)
class Loaded:
    path: str
    obj: GPUCluster | AIWorkload | PlacementPolicy
    doc: dict[str, Any]  # the document as written (what the operator's checks read on the hub)


@dataclass
class Inputs:
    clusters: list[Loaded]
    workloads: list[Loaded]
    policies: list[Loaded]
    skipped: list[str]
    """One line per document left out by --skip-other-kinds."""


def _yaml_files(path: str) -> list[Path]:
    if path == STDIN:
        return [Path(STDIN)]
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


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the bounds above, checked while the node graph is composed.

    Aliases are references in the composed graph (cheap), but everything downstream (plain dicts,
    pydantic, the template copies) expands them; so each alias is charged the full expanded size of
    the node it names. Errors name the object (once its `kind` and `metadata.name` were read) and the
    field path, like every other input error.
    """

    def __init__(self, text: str, source: Path) -> None:
        super().__init__(text)
        self.source = source
        self.written = 0  # nodes the file writes
        self.expanded = 0  # nodes after expanding every alias
        self.document = 0
        self.sizes: dict[str, int] = {}  # anchor -> expanded size, once its node is complete
        self.path: list[str] = []
        self.depth = 0
        self.kind: str | None = None
        self.meta: dict[str, str] = {}

    def compose_document(self) -> Any:
        self.document += 1
        self.sizes, self.path, self.depth, self.kind, self.meta = {}, [], 0, None, {}
        return super().compose_document()

    def _fail(self, segment: str, problem: str, mark: Any) -> InputError:
        field = "".join([*self.path, segment]).lstrip(".") or "(document root)"
        if len(field) > 120:
            field = field[:117] + "..."
        obj = f"document {self.document}"
        if self.kind and self.meta.get("name"):
            info = KINDS.get(self.kind)
            obj = f"{self.kind} {info.display_name(self.meta) if info else self.meta['name']}"
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return InputError(f"{self.source}: {obj}: {field}: {problem}{where}")

    def compose_node(self, parent: Any, index: Any) -> Any:
        if isinstance(index, yaml.ScalarNode):
            segment = f".{index.value}"
        elif isinstance(index, int):
            segment = f"[{index}]"
        else:
            segment = ""  # the document root, or a mapping key
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            if anchor in self.anchors and anchor not in self.sizes:
                raise self._fail(segment, f"alias *{anchor} is inside the node &{anchor} it names, which then "
                                          "contains itself (a loop): write the value out instead",
                                 event.start_mark)
            node = super().compose_node(parent, index)  # an undefined alias is PyYAML's own error
            self.expanded += self.sizes[anchor]
            if self.expanded - self.written > self.written + ALIAS_SLACK_NODES:
                raise self._fail(segment, f"alias *{anchor}: the aliases of this file would expand to more "
                                          f"nodes than the {self.written} written so far plus "
                                          f"{ALIAS_SLACK_NODES}; write the values out", event.start_mark)
            return node
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._fail(segment, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self.written += 1
        self.expanded += 1
        before = self.expanded - 1
        self.path.append(segment)
        node = super().compose_node(parent, index)
        self.path.pop()
        self.depth -= 1
        if event.anchor is not None:
            self.sizes[event.anchor] = self.expanded - before
        if isinstance(node, yaml.ScalarNode) and isinstance(index, yaml.ScalarNode) and self.depth <= 2:
            # who is this? kind and metadata.name/namespace, read as they go by
            where = "".join(self.path) + segment
            if where == ".kind":
                self.kind = node.value
            elif where in (".metadata.name", ".metadata.namespace"):
                self.meta[where.rsplit(".", 1)[1]] = node.value
        return node


def _read(path: Path) -> str:
    try:
        if str(path) == STDIN:
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
            size = len(data)
        else:
            with path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
                size = max(len(data), os.fstat(f.fileno()).st_size)
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path}: {size} bytes: larger than the {MAX_FILE_BYTES >> 20} MiB tenbin simulate reads "
                         "per file; split it into several files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    loader = _BoundedLoader(_read(path), path)
    try:
        i = 0
        while loader.check_data():
            i += 1
            doc = loader.get_data()
            if doc is not None:
                yield i, doc
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{path}{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()


def _jsonable(doc: Any) -> Any:
    """YAML timestamps become RFC 3339 strings, as the apiserver would hold them."""
    if isinstance(doc, dict):
        return {k if isinstance(k, str) else str(k): _jsonable(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_jsonable(v) for v in doc]
    if isinstance(doc, datetime | date):
        return doc.isoformat()
    return doc


def _tenbins(doc: Any) -> bool:
    """Whether a document claims Tenbin's API group (so its errors are errors, never skipped)."""
    api_version = doc.get("apiVersion") if isinstance(doc, dict) else None
    return isinstance(api_version, str) and api_version.split("/", 1)[0] == API_VERSION.split("/", 1)[0]


def load(paths: list[str], skip_other_kinds: bool = False) -> Inputs:
    if paths.count(STDIN) > 1:
        raise InputError(f"{STDIN}: standard input given more than once (-f -)")
    files: list[Path] = []
    for p in paths:
        files.extend(_yaml_files(p))
    inputs = Inputs([], [], [], [])
    seen: dict[tuple[str, str], str] = {}
    for f in files:
        for index, doc in _documents(f):
            plain = _jsonable(doc)
            if skip_other_kinds and isinstance(plain, dict) and not _tenbins(plain):
                inputs.skipped.append(f"{f}: skipped {object_name(plain)} (apiVersion {plain.get('apiVersion')!r} "
                                      "is not Tenbin's)")
                continue
            try:
                obj = parse_object(plain)
            except ObjectError as err:
                what = str(err) if err.obj else f"document {index}: {err}"
                if isinstance(plain, dict) and not _tenbins(plain):
                    what += "; --skip-other-kinds skips objects that are not Tenbin's"
                raise InputError(f"{f}: {what}") from None
            who = object_name(obj.model_dump(by_alias=True, include={"kind", "metadata"}))
            key = (obj.kind, who)
            if key in seen:
                raise InputError(f"{f}: {who}: metadata.name: duplicate of the object in {seen[key]}")
            seen[key] = str(f)
            bucket = {"GPUCluster": inputs.clusters, "AIWorkload": inputs.workloads,
                      "PlacementPolicy": inputs.policies}[obj.kind]
            bucket.append(Loaded(str(f), obj, plain))
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


def _check_semantics(inputs: Inputs, policy: Any, kinds: Kinds) -> None:
    """What the operator checks before placing (and marks `Valid=False` on the hub): the same function."""
    for item in inputs.workloads:
        assert isinstance(item.obj, AIWorkload)
        problem = semantic_error(item.doc, policy, kinds)
        if problem is not None:
            field, message = problem
            raise InputError(f"{item.path}: AIWorkload {item.obj.key}: {field}: {message}")


def _round(x: float | None, digits: int) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x, digits)


def _instant(at: str | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--at {at!r}: not an RFC 3339 time such as 2027-04-01T00:00:00Z") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def run(paths: list[str], skip_other_kinds: bool = False,
        at: datetime | None = None) -> tuple[str, list[Any], list[str]]:
    """Load, validate and place. Returns (base currency, decisions, skipped documents). Raises InputError."""
    from tenbin.scheduling import EffectivePolicy, Scheduler, Snapshot

    inputs = load(paths, skip_other_kinds)
    chosen_policy = next((p.obj for p in inputs.policies if p.obj.metadata.name == DEFAULT_POLICY_NAME), None)
    assert chosen_policy is None or isinstance(chosen_policy, PlacementPolicy)
    policy = EffectivePolicy.from_api(chosen_policy)
    _check_currencies(inputs, policy)
    _check_semantics(inputs, policy, Kinds.from_policy(chosen_policy))
    clusters, _ = attested([c.obj for c in inputs.clusters if isinstance(c.obj, GPUCluster)], chosen_policy,
                           at or datetime.now(UTC))
    snap = Snapshot(clusters)
    workloads = [w.obj for w in inputs.workloads if isinstance(w.obj, AIWorkload)]
    return policy.base_currency, Scheduler(policy).place_all(workloads, snap), inputs.skipped


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


def simulate_command(paths: list[str], output: str, skip_other_kinds: bool = False, at: str | None = None) -> int:
    try:
        base, decisions, skipped = run(paths, skip_other_kinds, _instant(at))
    except InputError as err:
        print(err, file=sys.stderr)  # "FILE: KIND NAME: FIELD: problem", one line
        return EXIT_INPUT
    except Exception as err:  # never a traceback for a user; say what broke
        print(f"tenbin simulate: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_INTERNAL
    for line in skipped:
        print(f"warning: {line}", file=sys.stderr)
    if output == "json":
        print(json.dumps(to_json(decisions), ensure_ascii=False))
    elif output == "yaml":
        print(yaml.safe_dump(to_json(decisions), sort_keys=False, allow_unicode=True), end="")
    else:
        print(to_table(base, decisions))
    return EXIT_OK
