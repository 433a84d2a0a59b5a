"""Draws docs/architecture.svg: the hub, the operator's parts, the members (direct or through Karmada) and the
data flow of one placement. Run `python docs/architecture.py` after changing it; `make verify` (through
tests/unit/test_docs_architecture.py) fails when the committed SVG differs from what this draws.

The boxes name the real modules of operator/tenbin/, and the test checks each named module exists, so the
picture cannot keep a part the code no longer has."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path

OUT = Path(__file__).with_name("architecture.svg")


@dataclass(frozen=True)
class Box:
    key: str
    x: int
    y: int
    w: int
    h: int
    title: str
    lines: tuple[str, ...] = ()
    fill: str = "#ffffff"
    modules: tuple[str, ...] = ()
    """operator/tenbin/ paths this box stands for (checked to exist)."""


HUB, CORE, MEMBER, FED, USER = "#eef4fb", "#fdf3e1", "#eaf6ec", "#f3ecf8", "#f4f4f4"

BOXES = [
    Box("user", 20, 20, 220, 86, "Platform engineer", ("kubectl apply / Argo CD sync", "tenbin simulate · explain"),
        USER),
    Box("api", 290, 20, 330, 86, "Hub apiserver (tenbin.io/v1alpha1)",
        ("AIWorkload · GPUCluster · PlacementPolicy", "status · conditions · events"), HUB, ("api",)),
    Box("handlers", 290, 150, 330, 52, "Kopf handlers", ("validate, queue, leader election",), HUB,
        ("handlers", "clusters/leader.py")),
    Box("world", 290, 240, 330, 70, "World: hub view + member observations",
        ("the ledger of promised GPUs;", "status.py builds every status patch"), HUB,
        ("services/world.py", "services/ledger.py", "services/status.py")),
    Box("machines", 290, 345, 330, 70, "State machines",
        ("placement · member_sync · migrator:", "make-before-break, checkpoints, fences"), HUB,
        ("services/placement.py", "services/member_sync.py", "services/migrator.py")),
    Box("core", 705, 240, 230, 175, "Scheduling core (pure)",
        ("filters: health, selector, residency,", "  model, gang capacity, budget", "scores: price (base currency),",
         "  availability", "explain: every reason", "migration decisions"), CORE, ("scheduling",)),
    Box("inventory", 20, 240, 220, 86, "Inventory", ("Nodes + Pods → free GPUs", "DCGM via Prometheus (optional)"),
        HUB, ("inventory",)),
    Box("gateways", 290, 455, 330, 60, "Member gateways", ("kubeconfig · in-cluster · Karmada",), HUB,
        ("clusters/kube.py", "clusters/karmada.py")),
    Box("m1", 20, 570, 200, 90, "Member: on-prem", ("Job · JobSet · RayJob · …", "NVML agent labels Nodes"), MEMBER,
        ("agent",)),
    Box("m2", 240, 570, 200, 90, "Member: sovereign cloud", ("the same kinds,", "its own controllers"), MEMBER),
    Box("karmada", 480, 560, 200, 60, "Karmada", ("PropagationPolicy pins", "the chosen member"), FED),
    Box("m3", 720, 570, 200, 90, "Member: hyperscaler", ("burst work allowed", "by residency"), MEMBER),
]

ARROWS = [  # (from, to, label)
    ("user", "api", "1 apply"),
    ("api", "handlers", "2 watch · 6 status, events"),
    ("handlers", "world", ""),
    ("world", "core", "3 candidates"),
    ("core", "machines", "4 choice + why"),
    ("machines", "gateways", "5 place / move"),
    ("gateways", "m1", ""),
    ("gateways", "m2", ""),
    ("gateways", "karmada", ""),
    ("karmada", "m3", ""),
    ("m1", "inventory", "observe"),
    ("inventory", "world", ""),
]


def _ends(a: Box, b: Box) -> tuple[float, float, float, float]:
    """A straight line between two boxes: horizontal or vertical where they face each other, else centre to
    centre, clipped to the borders."""
    lo, hi = max(a.y, b.y), min(a.y + a.h, b.y + b.h)
    if lo < hi:  # side by side
        y = (lo + hi) / 2
        return (a.x + a.w, y, b.x, y) if a.x < b.x else (a.x, y, b.x + b.w, y)
    lo, hi = max(a.x, b.x), min(a.x + a.w, b.x + b.w)
    if lo < hi:  # one above the other
        x = (lo + hi) / 2
        return (x, a.y + a.h, x, b.y) if a.y < b.y else (x, a.y, x, b.y + b.h)
    (x1, y1), (x2, y2) = _clip(a, b), _clip(b, a)
    return x1, y1, x2, y2


def _clip(b: Box, toward: Box) -> tuple[float, float]:
    cx, cy = b.x + b.w / 2, b.y + b.h / 2
    dx, dy = toward.x + toward.w / 2 - cx, toward.y + toward.h / 2 - cy
    sx = (b.w / 2) / abs(dx) if dx else float("inf")
    sy = (b.h / 2) / abs(dy) if dy else float("inf")
    k = min(sx, sy)
    return cx + dx * k, cy + dy * k


def draw() -> str:
    boxes = {b.key: b for b in BOXES}
    out = ['<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 950 690" width="950" height="690" '
           'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
           '<rect x="0" y="0" width="950" height="690" fill="#ffffff"/>',
           '<rect x="270" y="135" width="680" height="395" rx="10" fill="none" stroke="#8aa" '
           'stroke-dasharray="6 4"/>',
           '<text x="940" y="527" text-anchor="end" fill="#577" font-size="11">tenbin run (the hub operator)</text>']
    for b in BOXES:
        out.append(f'<rect x="{b.x}" y="{b.y}" width="{b.w}" height="{b.h}" rx="6" fill="{b.fill}" '
                   f'stroke="#666"/>')
        out.append(f'<text x="{b.x + 10}" y="{b.y + 20}" font-weight="bold">{escape(b.title)}</text>')
        for i, line in enumerate(b.lines):
            out.append(f'<text x="{b.x + 10}" y="{b.y + 38 + 15 * i}" fill="#333">{escape(line)}</text>')
    for a, b, label in ARROWS:
        x1, y1, x2, y2 = _ends(boxes[a], boxes[b])
        both = ' marker-start="url(#arrow)"' if "·" in label else ""  # a two-way flow
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#555" '
                   f'stroke-width="1.4" marker-end="url(#arrow)"{both}/>')
        if label:  # a third of the way from the source, beside the line
            lx, ly = (min(x1, x2) + 4, y1 - 6) if y1 == y2 else (x1 + (x2 - x1) * 0.35 + 6, y1 + (y2 - y1) * 0.35 - 5)
            out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" fill="#a04000" '
                       f'font-size="11">{escape(label)}</text>')
    out.append('<text x="20" y="682" fill="#555" font-size="11">Residency is a filter in the core: a cluster it '
               'rules out is never a candidate for placement, move or failover. Drawn by docs/architecture.py.</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    OUT.write_text(draw())
    sys.stdout.write(f"wrote {OUT}\n")
