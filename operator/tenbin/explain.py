"""`tenbin explain NAMESPACE/NAME`: every candidate for one AIWorkload, scored or rejected, read from the hub.

The table is recomputed by the same core the operator uses, from the hub's current GPUClusters (their
live `status.gpus`) and the default PlacementPolicy. The GPUs the workload itself holds are counted
as free on its own cluster, so its current placement is judged as if it were placed anew; "holds"
means what the member shows: GPUs of the workload's pods bound to nodes there (read from the member
through the GPUCluster's connection, as the operator reads it), never more than the hub's inventory
counts as allocated, and never more free than the cluster's usable GPUs. Pods still pending hold
nothing, so nothing is added back for them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy
from tenbin.clusters.gateway import GatewayError
from tenbin.clusters.hub import HubClient, hub_api_client, member_gateways
from tenbin.scheduling.attestations import attested
from tenbin.scheduling.scheduler import Scheduler
from tenbin.scheduling.snapshot import Snapshot

ALL = 1 << 30


def own_gpus_free_again(workload: AIWorkload, clusters: list[GPUCluster], bound: int) -> int:
    """How many GPUs explain may count as free again on the workload's own (cluster, model): the GPUs its
    pods hold there by the member (`bound`), at most what the hub's inventory counts as allocated and
    at most what lifts free to the model's usable GPUs. 0 when it holds none, has no live placement, or
    the cluster has no inventory (then free is the spec's count, from which nothing was taken)."""
    st = workload.status
    if (bound <= 0 or st is None or st.placement is None or not st.placement.gpu_model
            or st.phase in ("Succeeded", "Failed")):
        return 0
    cluster = next((c for c in clusters if c.metadata.name == st.placement.cluster), None)
    inv = cluster.status.gpus if cluster is not None and cluster.status is not None else None
    row = next((g for g in inv or [] if g.model == st.placement.gpu_model), None)
    if row is None:
        return 0
    return max(0, min(bound, workload.spec.total_gpus, row.allocated, row.allocatable - row.free))


def explain_rows(workload: AIWorkload, clusters: list[GPUCluster], policy: PlacementPolicy | None,
                 own_bound: int = 0) -> tuple[list[dict[str, Any]], Any]:
    """One row per (cluster, model) candidate: verdict, price in base currency, score breakdown or reasons.

    `own_bound`: GPUs the member shows bound to this workload's pods (see `own_gpus_free_again`)."""
    clusters, _ = attested(clusters, policy, datetime.now(UTC))  # residency labels as the policy vouches now
    snap = Snapshot(clusters)
    sched = Scheduler(policy, top_k=ALL)
    reserved: dict[tuple[str, str], int] = {}
    st = workload.status
    back = own_gpus_free_again(workload, clusters, own_bound)
    if back and st is not None and st.placement is not None and st.placement.gpu_model:
        reserved[(st.placement.cluster, st.placement.gpu_model)] = -back
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


def _table(workload: AIWorkload, rows: list[dict[str, Any]], decision: Any, note: str | None = None) -> str:
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
    if note:
        out.append(f"own GPUs: {note}")
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
    try:
        body, clusters_raw, policies, hub = asyncio.run(_read_hub(kubeconfig, namespace, name))
    except GatewayError as e:
        print(f"tenbin explain: {ref}: {e}".splitlines()[0], file=sys.stderr)
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
    own_bound, note = _own_bound_gpus(hub, workload, clusters)
    rows, decision = explain_rows(workload, clusters, policy, own_bound)
    back = own_gpus_free_again(workload, clusters, own_bound)
    if note is None and workload.status is not None and workload.status.placement is not None:
        note = (f"{back} GPUs its pods hold on {workload.status.placement.cluster} are counted as free there"
                if back else f"its pods hold no GPUs on {workload.status.placement.cluster} (none bound):"
                " nothing counted as free again")
    if output == "json":
        print(json.dumps({"workload": workload.key, "reason": decision.reason, "ownGPUsCountedFree": back,
                          "candidates": rows}, indent=2))
    else:
        print(_table(workload, rows, decision, note))
    return 0


async def _read_hub(kubeconfig: str | None, namespace: str, name: str
                    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], HubClient]:
    hub = HubClient(hub_api_client(kubeconfig))
    body = await hub.get("AIWorkload", namespace, name)
    return body, await hub.list("GPUCluster"), await hub.list("PlacementPolicy"), hub


def _own_bound_gpus(hub: HubClient, workload: AIWorkload, clusters: list[GPUCluster]) -> tuple[int, str | None]:
    """GPUs the member shows bound to this workload's pods, read the way the operator reads the member
    (one observation through the GPUCluster's connection); (0, why) when it cannot be read."""
    st = workload.status
    if st is None or st.placement is None or st.phase in ("Succeeded", "Failed") or not workload.metadata.uid:
        return 0, None
    cluster = next((c for c in clusters if c.metadata.name == st.placement.cluster), None)
    if cluster is None:
        return 0, f"GPUCluster {st.placement.cluster} is not on the hub: nothing counted as free again"
    try:
        observation = asyncio.run(_observe(hub, cluster))
    except Exception as e:  # an unreachable member must not hide the rest of the table
        why = f"{type(e).__name__}: {e}".splitlines()[0]
        return 0, f"cannot read {cluster.metadata.name} ({why}): its GPUs are not counted as free again"
    obj = observation.objects.get(workload.metadata.uid)
    return (obj.pods_bound_gpus if obj is not None else 0), None


async def _observe(hub: HubClient, cluster: GPUCluster) -> Any:
    """One observation of the member through its GPUCluster's spec.connection, as `tenbin run` makes it."""
    conn = cluster.model_dump(by_alias=True)["spec"].get("connection") or {}
    gateway = await member_gateways(hub)(cluster.metadata.name, conn)
    try:
        return await gateway.observe()
    finally:
        await gateway.close()
