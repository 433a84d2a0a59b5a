"""Run Argo CD's Lua health checks (examples/argocd/health/*.lua) in a real Lua 5.1 runtime, as Argo CD
(gopher-lua, Lua 5.1) does: the object is the global `obj`, the chunk returns a table {status, message}."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51

HEALTH = Path(__file__).resolve().parents[1] / "examples" / "argocd" / "health"
SCRIPTS = {"AIWorkload": HEALTH / "aiworkload.lua", "GPUCluster": HEALTH / "gpucluster.lua",
           "Application": HEALTH / "application.lua"}
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def health(kind: str, obj: Mapping[str, Any], script: Path | None = None) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=False)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute((script or SCRIPTS[kind]).read_text())
    status, message = hs["status"], hs["message"]
    assert status in STATUSES, status
    assert isinstance(message, str)
    return str(status), message
