"""`tenbin dev up|down|status`: the local fleet from the command line."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from tenbin.testbed import addons
from tenbin.testbed.binaries import TestbedError
from tenbin.testbed.fleet import HUB, SYSTEM_NAMESPACE, Fleet, load_fleet
from tenbin.testbed.karmada import Karmada

DEFAULT_FLEET = Path("examples/fleet")


def default_state_dir() -> Path:
    env = os.environ.get("TENBIN_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "tenbin" / "dev"


def _err(e: Exception) -> int:
    print(f"tenbin dev: error: {e}", file=sys.stderr)
    return 1


def dev_up(files: list[str] | None, state_dir: str | None, hub_only: bool = False,
           karmada: bool = False) -> int:
    sd = Path(state_dir) if state_dir else default_state_dir()
    try:
        if not files and not DEFAULT_FLEET.is_dir():
            raise TestbedError(f"no fleet given and {DEFAULT_FLEET}/ is not here; pass -f FLEET_PATH")
        members = [] if hub_only else load_fleet(files or [DEFAULT_FLEET])
        t0 = time.monotonic()
        print(f"tenbin dev: starting a hub and {len(members)} member control planes in {sd.resolve()}")
        if karmada:
            print("tenbin dev: and a Karmada control plane; the members join it in Push mode")
        started = Fleet.load(sd) is None
        fleet = Fleet.up(members, sd, log=print, hub_only=hub_only)
        try:
            for m in members:
                addons.install(fleet, m.name, addons.parse_addons(",".join(m.addons), f"GPUCluster {m.name}"))
        except BaseException:
            if started:
                with contextlib.suppress(TestbedError):
                    fleet.down()
            raise
        if karmada:
            try:
                Karmada.up(fleet, print)
            except BaseException:
                if started:  # stop what this command started; a fleet that was already up stays
                    with contextlib.suppress(TestbedError):
                        fleet.down()
                raise
        print(f"tenbin dev: fleet ready in {time.monotonic() - t0:.1f}s\n")
        _print_fleet(fleet)
    except TestbedError as e:
        return _err(e)
    return 0


def dev_down(state_dir: str | None) -> int:
    sd = Path(state_dir) if state_dir else default_state_dir()
    try:
        fleet = Fleet.load(sd)
        if fleet is None:
            print(f"tenbin dev: no fleet in {sd}; nothing to stop")
            return 0
        n = len(fleet.running())
        fleet.down()
    except TestbedError as e:
        return _err(e)
    print(f"tenbin dev: stopped {n} processes and removed {sd}")
    return 0


def dev_status(state_dir: str | None) -> int:
    sd = Path(state_dir) if state_dir else default_state_dir()
    try:
        fleet = Fleet.load(sd)
    except TestbedError as e:
        return _err(e)
    if fleet is None:
        print(f"tenbin dev: no fleet in {sd}")
        return 1
    _print_fleet(fleet)
    return 0 if not fleet.dead() else 1


def _print_fleet(fleet: Fleet) -> None:
    rows = [("CLUSTER", "ROLE", "TIER", "JURIS.", "GPUS", "API", "KUBECONFIG")]
    for c in fleet.state.clusters.values():
        gpus = ", ".join(f"{g['count']}x{g['model']}" for g in c.gpus) or "-"
        rows.append((c.name, c.role, c.tier or "-", c.jurisdiction or "-", gpus, c.url, c.kubeconfig))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])
    print()
    w = max(len(p.name) for p in fleet.state.processes) + 2
    print("PROCESS".ljust(w) + "PID".ljust(9) + "STATE    LOG")
    for p in fleet.state.processes:
        state = "running" if p in fleet.running() else "STOPPED"
        print(f"{p.name:<{w}}{p.pid:<9}{state:<9}{p.log}")
    print()
    print(f"member kubeconfigs are Secrets in the hub: namespace {SYSTEM_NAMESPACE}, key 'kubeconfig'")
    print(f"try:  {fleet.binaries.kubectl} --kubeconfig {fleet.kubeconfig(HUB)} get secrets -n {SYSTEM_NAMESPACE}")
    print(f"stop: tenbin dev down --state-dir {fleet.state_dir}")
