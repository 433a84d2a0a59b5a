"""requirements.lock against pyproject.toml, offline: `make verify` runs `python image/lock.py --check`.

`make lock` writes the lock with uv (pinned versions, sha256 hashes, for CPython 3.11 on linux x86_64: the
image's interpreter). The check fails, naming the package, when a runtime dependency of pyproject.toml is
missing from the lock or pinned to a version its specifier refuses, when a pinned package has no hash, or when
the lock holds a package nothing needs any more (uv's `# via` notes say who needs what). Resolution itself needs
the index, so the check does not redo it: it proves the lock still fits what pyproject.toml asks for.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
VIA = re.compile(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*|tenbin \(pyproject\.toml\))\s*$")


@dataclass
class Pin:
    version: str
    hashes: int = 0
    via: set[str] = field(default_factory=set)


def parse(text: str) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in text.splitlines():
        if m := PIN.match(line):
            current = pins.setdefault(canonicalize_name(m[1]), Pin(m[2]))
        elif current is not None and "--hash=sha256:" in line:
            current.hashes += 1
        elif current is not None and (v := VIA.match(line)):
            current.via.add(v[1] if v[1].startswith("tenbin ") else canonicalize_name(v[1]))
    return pins


def problems(pyproject: dict[str, object], lock_text: str) -> list[str]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    pins = parse(lock_text)
    out = []
    direct = set()
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        direct.add(name)
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11", "sys_platform": "linux"}):
            continue
        if name not in pins:
            out.append(f"{req.name}: a dependency in pyproject.toml, missing from requirements.lock")
        elif not req.specifier.contains(pins[name].version, prereleases=True):
            out.append(f"{req.name}: requirements.lock pins {pins[name].version}, pyproject.toml asks {req.specifier}")
    for name, pin in sorted(pins.items()):
        if pin.hashes == 0:
            out.append(f"{name}: pinned without a --hash (pip --require-hashes would refuse the lock)")
        needed = name in direct or any(v in pins for v in pin.via)
        if not needed:
            out.append(f"{name}: in requirements.lock but nothing in pyproject.toml needs it any more")
    return out


def main(argv: list[str]) -> int:
    lock = ROOT / "requirements.lock"
    if not lock.exists():
        print("requirements.lock is missing: run make lock", file=sys.stderr)
        return 1
    found = problems(tomllib.loads((ROOT / "pyproject.toml").read_text()), lock.read_text())
    for p in found:
        print(f"requirements.lock: {p}", file=sys.stderr)
    if found:
        print("run make lock (uv pip compile) and commit requirements.lock", file=sys.stderr)
        return 1
    print(f"requirements.lock: {len(parse(lock.read_text()))} pinned, hashed packages fit pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
