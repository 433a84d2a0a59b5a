"""requirements.lock (the image's pinned, hashed dependencies) is checked against pyproject.toml by
image/lock.py, which `make verify` runs: the real lock passes, and each way of falling out of date is named."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_lock", ROOT / "image" / "lock.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


LOCK = _lock_module()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TEXT = (ROOT / "requirements.lock").read_text()


def _without(text: str, name: str) -> str:
    """The lock with one package's block (pin line, hashes, via notes) removed."""
    lines = text.splitlines(keepends=True)
    out, skipping = [], False
    for line in lines:
        if LOCK.PIN.match(line):
            skipping = LOCK.canonicalize_name(LOCK.PIN.match(line)[1]) == name
        if not skipping:
            out.append(line)
    return "".join(out)


def test_the_committed_lock_fits_pyproject() -> None:
    assert LOCK.problems(PYPROJECT, TEXT) == []
    pins = LOCK.parse(TEXT)
    assert "kopf" in pins and all(p.hashes >= 1 for p in pins.values())
    assert "scipy" not in pins and "pytest" not in pins  # extras stay out of the image


def test_a_new_dependency_missing_from_the_lock_is_named() -> None:
    project = {**PYPROJECT["project"], "dependencies": [*PYPROJECT["project"]["dependencies"], "rich>=13"]}
    assert LOCK.problems({"project": project}, TEXT) == [
        "rich: a dependency in pyproject.toml, missing from requirements.lock"]


def test_a_pin_the_specifier_refuses_is_named() -> None:
    version = LOCK.parse(TEXT)["kopf"].version
    project = {**PYPROJECT["project"], "dependencies": [
        d if not d.startswith("kopf") else f"kopf>{version}" for d in PYPROJECT["project"]["dependencies"]]}
    (problem,) = LOCK.problems({"project": project}, TEXT)
    assert problem == f"kopf: requirements.lock pins {version}, pyproject.toml asks >{version}"


def test_an_unhashed_pin_and_an_orphan_are_named() -> None:
    assert "kopf: pinned without a --hash (pip --require-hashes would refuse the lock)" in \
        LOCK.problems(PYPROJECT, _unhash(TEXT, "kopf"))
    orphaned = _without(TEXT, "dateparser")  # prometheus-api-client's; tzlocal came only for it
    assert "tzlocal: in requirements.lock but nothing in pyproject.toml needs it any more" in \
        LOCK.problems(PYPROJECT, orphaned)


def _unhash(text: str, name: str) -> str:
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if LOCK.PIN.match(line):
            inside = LOCK.canonicalize_name(LOCK.PIN.match(line)[1]) == name
        if inside and "--hash=" in line:
            continue
        out.append(line)
    return "".join(out)
