"""`make demo`: the example fleet on real control planes, the operator placing the example workloads.

1. a hub and one member control plane per GPUCluster in examples/fleet (real apiservers, KWOK GPU nodes);
2. Tenbin's CRDs, the example GPUClusters and default PlacementPolicy applied to the hub;
3. `tenbin run` started against the hub;
4. every AIWorkload in examples/workloads applied; wait until each has landed (or cannot);
5. a table of where each landed and why, and the live GPU inventory; then everything is torn down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tenbin.testbed.binaries import TestbedError
from tenbin.testbed.fleet import Fleet, free_port, load_fleet, wait_until

EXAMPLES = Path("examples")
SETTLED = {"Running", "Succeeded", "Failed", "Unschedulable"}


def _section(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def _workloads() -> list[dict[str, Any]]:
    docs = []
    for f in sorted((EXAMPLES / "workloads").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") == "AIWorkload"]
    return docs


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows)


def _start_operator(fleet: Fleet, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    health = free_port()
    argv = [sys.executable, "-m", "tenbin", "run", "--kubeconfig", str(fleet.kubeconfig("hub")), "--standalone",
            "--metrics-address", "127.0.0.1", "--metrics-port", str(free_port()),
            "--health-address", "127.0.0.1", "--health-port", str(health), "--resync-seconds", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as r:
            return bool(r.status == 200)

    wait_until("operator /healthz", healthy, 60,
               abort=lambda: f"operator exited, see {log}" if proc.poll() is not None else None)
    return proc, health


def main() -> int:
    if not (EXAMPLES / "fleet").is_dir():
        print("tenbin demo: run it from the repository root (examples/fleet/ not found)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="tenbin-demo-") as tmp:
        try:
            members = load_fleet([EXAMPLES / "fleet"])
            _section(f"1. a hub and {len(members)} member control planes (kube-apiserver, scheduler, "
                     "controller-manager, KWOK GPU nodes), all on 127.0.0.1")
            t0 = time.monotonic()
            fleet = Fleet.up(members, Path(tmp) / "fleet")
        except TestbedError as e:
            print(f"tenbin demo: {e}", file=sys.stderr)
            return 1
        operator: subprocess.Popen[bytes] | None = None
        try:
            print(f"fleet ready in {time.monotonic() - t0:.1f}s")
            _section("2. CRDs, the example GPUClusters and the default PlacementPolicy on the hub")
            fleet.kubectl("apply", "--server-side", "-f", "crds")
            fleet.wait_established("crd", "-l", "app.kubernetes.io/part-of=tenbin")
            fleet.kubectl("apply", "-f", str(EXAMPLES / "fleet"), "-f", str(EXAMPLES / "policy"))

            _section("3. tenbin run (the operator) against the hub")
            operator, _ = _start_operator(fleet, Path(tmp) / "operator.log")
            wait_until("every member observed", lambda: all(
                (c.get("status") or {}).get("phase") == "Ready"
                for c in json.loads(fleet.kubectl("get", "gpuc", "-o", "json").stdout)["items"]), 60)
            print(fleet.kubectl("get", "gpuclusters").stdout.rstrip())

            docs = _workloads()
            _section(f"4. the {len(docs)} example AIWorkloads applied")
            for ns in sorted({d["metadata"].get("namespace", "default") for d in docs}):
                fleet.kubectl("create", "namespace", ns, check=False)
            fleet.kubectl("apply", "-f", str(EXAMPLES / "workloads"))

            def items() -> list[dict[str, Any]]:
                return list(json.loads(fleet.kubectl("get", "aiw", "-A", "-o", "json").stdout)["items"])

            wait_until("every workload landed or diagnosed", lambda: len(items()) == len(docs) and all(
                (w.get("status") or {}).get("phase") in SETTLED for w in items()), 120)

            _section("5. where each workload landed, and why")
            rows = [["WORKLOAD", "CLASS", "PHASE", "CLUSTER", "TIER", "JURIS.", "MODEL", "GPUS", "JPY/GPU-h",
                     "WHY"]]
            for w in sorted(items(), key=lambda x: (x["metadata"]["namespace"], x["metadata"]["name"])):
                st, p = w.get("status") or {}, (w.get("status") or {}).get("placement") or {}
                placed: dict[str, Any] = next((h for h in st.get("history", []) if h["event"] == "Scheduled"), {})
                why = (next((c["message"] for c in st.get("conditions", []) if c["type"] == "Scheduled"), "")
                       or st.get("message", ""))
                rows.append([
                    f"{w['metadata']['namespace']}/{w['metadata']['name']}",
                    (w["spec"].get("residency") or {}).get("dataClassification", "Internal"),
                    st.get("phase", "-"), p.get("cluster", "-"), p.get("tier", "-"), p.get("jurisdiction", "-"),
                    p.get("gpuModel", "-"), str(p.get("gpus", "-")),
                    f"{placed.get('pricePerGPUHour', p.get('pricePerGPUHour', '-'))}", why[:150],
                ])
            print(_table(rows))
            print("\nper candidate: tenbin explain NAMESPACE/NAME --kubeconfig <hub kubeconfig>; "
                  "with no cluster at all: tenbin simulate -f examples/fleet -f examples/policy -f examples/workloads")
        finally:
            _section("6. tearing everything down")
            if operator is not None and operator.poll() is None:
                operator.send_signal(signal.SIGTERM)
                try:
                    operator.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    operator.kill()
                    operator.wait()
            fleet.down()
            print("done: every process stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
