"""`tenbin explain NAMESPACE/NAME`: every candidate for one AIWorkload, scored or rejected, read from the hub.

The table is recomputed by the same core the operator uses, from the hub's current GPUClusters (their
live `status.gpus`) and the default PlacementPolicy. The GPUs the workload itself holds are counted
as free on its own cluster, so its current placement is judged as if it were placed anew.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy
from tenbin.scheduling.scheduler import Scheduler
from tenbin.scheduling.snapshot import Snapshot

ALL = 1 << 30


def explain_rows(workload: AIWorkload, clusters: list[GPUCluster], policy: PlacementPolicy | None
                 ) -> tuple[list[dict[str, Any]], Any]:
    """One row per (cluster, model) candidate: verdict, price in base currency, score breakdown or reasons."""
    snap = Snapshot(clusters)
    sched = Scheduler(policy, top_k=ALL)
    reserved: dict[tuple[str, str], int] = {}
    st = workload.status
    if st is not None and st.placement is not None and st.placement.gpu_model and st.phase not in (
            "Succeeded", "Failed"):
        reserved[(st.placement.cluster, st.placement.gpu_model)] = -workload.spec.total_gpus
    decision = sched.place(workload, snap, reserved=reserved)
    free = snap.free_after(reserved)
    prices = sched.price_base(snap)
    scored = {(c.cluster, c.model): c for c in decision.top}
    reasons = decision.diagnosis.reasons
    rows: list[dict[str, Any]] = []
    for r in range(snap.n_rows):
        key = (snap.cluster_name(r), snap.model_name(r))
        info = snap.clusters[int(snap.cluster[r])]
        cand = scored.get(key)
        rows.append({
            "cluster": key[0], "model": key[1], "tier": str(info.tier), "jurisdiction": info.jurisdiction,
            "free": int(free[r]), "pricePerGPUHour": None if prices[r] != prices[r] else round(float(prices[r]), 2),
            "feasible": cand is not None,
            "chosen": decision.chosen is not None and key == (decision.chosen.cluster, decision.chosen.model),
            "score": None if cand is None else round(cand.score, 2),
            "breakdown": {} if cand is None else {t.plugin: round(t.score, 1) for t in cand.breakdown},
            "reasons": [str(x) for x in reasons.get(key, ())],
        })
    rows.sort(key=lambda x: (not x["chosen"], not x["feasible"], -float(x["score"] or 0), x["cluster"], x["model"]))
    return rows, decision


def _table(workload: AIWorkload, rows: list[dict[str, Any]], decision: Any) -> str:
    st = workload.status
    spec = workload.spec
    res = spec.residency
    out = [f"AIWorkload {workload.key}: {spec.replicas} x {spec.gpu.count} GPU"
           f" ({', '.join(spec.gpu.models) or 'any model'}), {res.data_classification if res else 'Internal'}"
           f", jurisdictions [{', '.join(res.jurisdictions) if res else ''}]"]
    if st is not None:
        where = f" on {st.placement.cluster} ({st.placement.gpu_model})" if st.placement else ""
        out.append(f"status: {st.phase or 'Pending'}{where}")
        if st.message:
            out.append(f"message: {st.message}")
    out.append(f"now: {decision.reason}")
    out.append("")
    plugins = sorted({p for r in rows for p in r["breakdown"]})
    head = ["", "CLUSTER", "MODEL", "TIER", "JURIS.", "FREE", f"{decision.base_currency}/GPU-h", "SCORE",
            *(p.upper() for p in plugins), "WHY NOT"]
    table = [head]
    for r in rows:
        table.append([
            "*" if r["chosen"] else ("ok" if r["feasible"] else "x"), r["cluster"], r["model"], r["tier"],
            r["jurisdiction"], str(r["free"]), "-" if r["pricePerGPUHour"] is None else f"{r['pricePerGPUHour']:g}",
            "-" if r["score"] is None else f"{r['score']:.1f}",
            *("-" if p not in r["breakdown"] else f"{r['breakdown'][p]:.1f}" for p in plugins),
            "; ".join(r["reasons"]) or "-",
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    for row in table:
        out.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[-1])
    out.append("")
    out.append("* chosen now   ok feasible   x rejected (every reason listed)")
    return "\n".join(out)


def explain_command(ref: str, kubeconfig: str | None, output: str) -> int:
    if "/" not in ref:
        print(f"tenbin explain: {ref!r}: expected NAMESPACE/NAME", file=sys.stderr)
        return 2
    namespace, name = ref.split("/", 1)
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from tenbin.api import GROUP, VERSION
    from tenbin.clusters.hub import hub_api_client

    try:
        api: Any = client.CustomObjectsApi(hub_api_client(kubeconfig))
        body: Mapping[str, Any] = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "aiworkloads", name)
        clusters_raw = api.list_cluster_custom_object(GROUP, VERSION, "gpuclusters")["items"]
        policies = api.list_cluster_custom_object(GROUP, VERSION, "placementpolicies")["items"]
    except ApiException as e:
        print(f"tenbin explain: {ref}: {e.status} {e.reason}", file=sys.stderr)
        return 1
    except Exception as e:  # no kubeconfig, unreachable hub: one line, no traceback
        print(f"tenbin explain: cannot read the hub: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        return 1
    try:
        workload = AIWorkload.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        print(f"tenbin explain: {ref}: {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return 2
    clusters = []
    for c in clusters_raw:
        try:
            clusters.append(GPUCluster.model_validate(c))
        except ValidationError:
            print(f"tenbin explain: skipping invalid GPUCluster {c['metadata']['name']}", file=sys.stderr)
    policy = next((PlacementPolicy.model_validate(p) for p in policies if p["metadata"]["name"] == "default"), None)
    rows, decision = explain_rows(workload, clusters, policy)
    if output == "json":
        print(json.dumps({"workload": workload.key, "reason": decision.reason, "candidates": rows}, indent=2))
    else:
        print(_table(workload, rows, decision))
    return 0
