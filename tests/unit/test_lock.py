"""requirements.lock (the image's pinned, hashed dependencies) is checked against pyproject.toml by
image/lock.py, which `make verify` runs: the real lock passes, and each way of falling out of date is named."""

from __future__ import annotations

import tomllib
from pathlib import Path

from helpers import load_script

ROOT = Path(__file__).resolve().parents[2]


LOCK = load_script(ROOT / "image" / "lock.py", "image_lock")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TEXT = (ROOT / "requirements.lock").read_text()


def _drop(text: str, name: str, only_hashes: bool = False) -> str:
    """The lock with one package's block (pin line, hashes, via notes) removed, or only its hashes."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if m := LOCK.PIN.match(line):
            inside = LOCK.canonicalize_name(m[1]) == name
        if inside and (not only_hashes or "--hash=" in line):
            continue
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
        LOCK.problems(PYPROJECT, _drop(TEXT, "kopf", only_hashes=True))
    orphaned = _drop(TEXT, "dateparser")  # prometheus-api-client's; tzlocal came only for it
    assert "tzlocal: in requirements.lock but nothing in pyproject.toml needs it any more" in \
        LOCK.problems(PYPROJECT, orphaned)

