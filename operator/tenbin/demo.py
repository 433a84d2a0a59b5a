"""`make demo`: the local fleet from examples/fleet, its live GPU inventory, then everything torn down."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from tenbin.testbed.binaries import TestbedError
from tenbin.testbed.fleet import Fleet, load_fleet

EXAMPLES = Path("examples")


def _section(title: str) -> None:
    print(f"\n=== {title}")


def main() -> int:
    if not (EXAMPLES / "fleet").is_dir():
        print("tenbin demo: run it from the repository root (examples/fleet/ not found)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="tenbin-demo-") as tmp:
        try:
            members = load_fleet([EXAMPLES / "fleet"])
            _section(f"starting a hub and {len(members)} member control planes (real kube-apiserver, "
                     "scheduler, controller-manager, KWOK GPU nodes)")
            t0 = time.monotonic()
            fleet = Fleet.up(members, Path(tmp) / "fleet")
        except TestbedError as e:
            print(f"tenbin demo: {e}", file=sys.stderr)
            return 1
        try:
            print(f"fleet ready in {time.monotonic() - t0:.1f}s")
            _section("GPU inventory of each member, as its own apiserver reports it")
            cols = ("custom-columns=NODE:.metadata.name,PRODUCT:.metadata.labels.nvidia\\.com/gpu\\.product,"
                    "GPUS:.status.allocatable.nvidia\\.com/gpu,READY:.status.conditions[?(@.type=='Ready')].status")
            for name in fleet.members:
                c = fleet.state.clusters[name]
                print(f"\n--- {name} ({c.tier}, {c.jurisdiction})")
                print(fleet.kubectl("get", "nodes", "-o", cols, cluster=name).stdout.rstrip())
            _section("member kubeconfig Secrets in the hub")
            print(fleet.kubectl("get", "secrets", "-n", "tenbin-system").stdout.rstrip())
        finally:
            _section("tearing the fleet down")
            fleet.down()
            print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
