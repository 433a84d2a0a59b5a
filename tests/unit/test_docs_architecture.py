"""docs/architecture.svg is what docs/architecture.py draws, it is well-formed SVG, and every module a box
names exists in operator/tenbin/ (the picture cannot keep a part the code lost)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

from helpers import load_script

ROOT = Path(__file__).resolve().parents[2]


def drawing() -> ModuleType:
    return load_script(ROOT / "docs" / "architecture.py", "architecture")


def test_the_committed_picture_is_what_the_script_draws() -> None:
    svg = drawing().draw()
    assert (ROOT / "docs" / "architecture.svg").read_text() == svg, "run: python docs/architecture.py"
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_every_module_a_box_names_exists() -> None:
    mod = drawing()
    named = [m for b in mod.BOXES for m in b.modules]
    assert len(named) >= 10
    missing = [m for m in named if not (ROOT / "operator" / "tenbin" / m).exists()]
    assert missing == []
    keys = {b.key for b in mod.BOXES}
    assert all(a in keys and b in keys for a, b, _ in mod.ARROWS)


def test_the_readme_shows_it() -> None:
    assert "](docs/architecture.svg)" in (ROOT / "README.md").read_text()
