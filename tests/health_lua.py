"""Run Argo CD's Lua health checks and resource actions (examples/argocd/health/*.lua, actions/*/*.lua) in a
real Lua 5.1 runtime, as Argo CD (gopher-lua, Lua 5.1) does: the object is the global `obj`; a health check
returns {status, message}, a discovery script {action: {disabled}}, an action the changed object. Argo CD runs
them in a sandbox (util/lua/lua.go: only the base, table and package libraries and an `os` with just time and
date; no string or math library, so no `s:find()` either): so does this runner, and a script that would fail
in Argo CD fails here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51

HEALTH = Path(__file__).resolve().parents[1] / "examples" / "argocd" / "health"
SCRIPTS = {"AIWorkload": HEALTH / "aiworkload.lua", "GPUCluster": HEALTH / "gpucluster.lua",
           "Application": HEALTH / "application.lua"}
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


SANDBOX = """
local date, time = os.date, os.time
debug.setmetatable("", nil)
string, math, io, debug = nil, nil, nil, nil
package.loaded.string, package.loaded.math, package.loaded.io, package.loaded.debug = nil, nil, nil, nil
os = {date = date, time = time}
package.loaded.os = os
"""


def runtime(obj: Mapping[str, Any]) -> lua51.LuaRuntime:
    """A Lua 5.1 runtime limited as Argo CD's, with `obj` set."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=False)
    lua.execute(SANDBOX)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    return lua


def health(kind: str, obj: Mapping[str, Any], script: Path | None = None) -> tuple[str, str]:
    lua = runtime(obj)
    hs = lua.execute((script or SCRIPTS[kind]).read_text())
    status, message = hs["status"], hs["message"]
    assert status in STATUSES, status
    assert isinstance(message, str)
    return str(status), message


ACTIONS = Path(__file__).resolve().parents[1] / "examples" / "argocd" / "actions"
ACTION_DIRS = {"AIWorkload": ACTIONS / "aiworkload", "GPUCluster": ACTIONS / "gpucluster"}


def _plain(value: Any) -> Any:
    """A Lua value as JSON-like Python data, as Argo CD converts it back (a table keyed 1..n is a list)."""
    if lua51.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
        return [_plain(items[i]) for i in range(1, len(items) + 1)]
    return {str(k): _plain(v) for k, v in items.items()}


def discover(kind: str, obj: Mapping[str, Any]) -> dict[str, bool]:
    """Run the kind's discovery.lua as Argo CD does: {action name: enabled}."""
    lua = runtime(obj)
    found = _plain(lua.execute((ACTION_DIRS[kind] / "discovery.lua").read_text()))
    assert isinstance(found, dict)
    return {name: not spec.get("disabled", False) for name, spec in found.items()}


def act(kind: str, action: str, obj: Mapping[str, Any], script: Path | None = None) -> dict[str, Any]:
    """Run one action.lua as Argo CD does: the object as the global `obj`, the chunk returns it changed."""
    lua = runtime(obj)
    out = _plain(lua.execute((script or ACTION_DIRS[kind] / f"{action}.lua").read_text()))
    assert isinstance(out, dict)
    return out


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) from `old` to `new`: what Argo CD sends after an action changed an object."""
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        return new
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        if k not in old:
            out[k] = v
        elif old[k] != v:
            out[k] = merge_patch(old[k], v)
    return out
