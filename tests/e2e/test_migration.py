"""Migration end to end: cluster loss, make-before-break, checkpoint handshake, cost, residency drift."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from health_lua import act, discover, merge_patch
from operator_harness import (
    CHECKPOINT_GRACE,
    OperatorProcess,
    aiw,
    apply,
    bring_member_back,
    held,
    hub_json,
    member_pods,
    release,
    workload,
)
from tenbin.testbed.fleet import Fleet, wait_until

CHEAPEST = {"placement": {"weights": {"price": 1}}}  # deterministic: the cheapest feasible cluster wins
ONPREM, SOVEREIGN, US = "t-onprem-jp", "t-sovereign-jp", "t-hyperscaler-us"


def cheapest(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"].update(CHEAPEST)
    return doc


def status(fleet: Fleet, ns: str, name: str) -> dict[str, Any]:
    return dict(aiw(fleet, ns, name).get("status") or {})


def copies(fleet: Fleet, ns: str, kind: str = "jobs", members: tuple[str, ...] = (ONPREM, SOVEREIGN, US),
           ) -> dict[str, list[dict[str, Any]]]:
    """Tenbin-managed objects of the namespace in each of `members` (all three unless one is down).

    A member that does not answer raises ConnectionError ("not yet" inside `wait_until`): an empty list
    must mean the member has none, never that it could not be asked."""
    out: dict[str, list[dict[str, Any]]] = {}
    for member in members:
        res = fleet.kubectl("get", kind, "-n", ns, "-l", "app.kubernetes.io/managed-by=tenbin", "-o", "json",
                            cluster=member, check=False, timeout=10)
        if res.returncode != 0:
            raise ConnectionError(f"kubectl get {kind} in {member}: {res.stderr.strip()[:300]}")
        out[member] = json.loads(res.stdout)["items"]
    return out


def where(fleet: Fleet, ns: str, kind: str = "jobs", members: tuple[str, ...] = (ONPREM, SOVEREIGN, US),
          ) -> dict[str, list[str]]:
    return {m: [o["metadata"]["name"] for o in objs] for m, objs in copies(fleet, ns, kind, members).items()}


def migrated(fleet: Fleet, ns: str, name: str) -> list[dict[str, Any]]:
    return [h for h in status(fleet, ns, name).get("history", []) if h["event"] == "Migrated"]


def running_on(fleet: Fleet, ns: str, name: str, cluster: str) -> bool:
    st = status(fleet, ns, name)
    return st.get("phase") == "Running" and (st.get("placement") or {}).get("cluster") == cluster


def _syncs(operator: OperatorProcess) -> float:
    return sum(float(v) for v in re.findall(r'tenbin_member_syncs_total{[^}]*result="ok"} ([0-9.]+)',
                                             operator.metrics()))


def await_rounds(operator: OperatorProcess, rounds: int) -> None:
    """The operator has observed the fleet `rounds` more times (3 members per round)."""
    start = _syncs(operator)
    wait_until(f"{rounds} observation rounds", lambda: _syncs(operator) >= start + 3 * rounds, timeout=120)


def set_price(fleet: Fleet, cluster: str, index: int, price: float) -> None:
    fleet.kubectl("patch", "gpucluster", cluster, "--type=json",
                  "-p", json.dumps([{"op": "replace", "path": f"/spec/gpus/{index}/pricePerGPUHour", "value": price}]))


@contextmanager
def sampling(fn: Any, every: float = 0.2) -> Iterator[list[Any]]:
    """Call fn repeatedly in a thread while the block runs; yields the list of samples."""
    samples: list[Any] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                samples.append(fn())
            except Exception as e:  # a sample that could not be taken ends the sampling, and the test says so
                failed.append(e)
                return
            stop.wait(every)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield samples
    finally:
        stop.set()
        t.join(timeout=30)
    if failed:
        raise AssertionError(f"sampling stopped after {len(samples)} samples: {failed[0]}")


# ----------------------------------------------------------------------------------------------------


def test_lost_member_work_reappears_and_confidential_work_never_crosses_the_line(
        operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    # The sovereign JP member is full, so after the on-prem member dies the US hyperscaler is the only
    # cluster with room: generic work may go there, confidential JP work must not.
    apply(fleet, ns, workload("fill-h100", gpus=8, tiers=["SovereignCloud"], models=["H100-80GB"], run_seconds=600),
          workload("fill-h200", gpus=4, tiers=["SovereignCloud"], models=["H200-141GB"], run_seconds=600))
    try:
        wait_until("fillers Running", lambda: all(status(fleet, ns, n).get("phase") == "Running"
                                                  for n in ("fill-h100", "fill-h200")), timeout=120)
    except Exception:
        print({n: status(fleet, ns, n) for n in ("fill-h100", "fill-h200")})
        for args in (("get", "jobs,pods", "-o", "wide"), ("get", "events")):
            print(fleet.kubectl(*args, "-n", ns, cluster=SOVEREIGN, check=False).stdout)
        print(operator.tail(60))
        raise
    apply(fleet, ns, cheapest(workload("generic", gpus=2, run_seconds=600)),
          cheapest(workload("secret", gpus=2, classification="Confidential", jurisdictions=["JP"], run_seconds=600)))
    wait_until("both Running on-prem", lambda: running_on(fleet, ns, "generic", ONPREM)
               and running_on(fleet, ns, "secret", ONPREM), timeout=120)

    fleet.stop(f"{ONPREM}-kube-apiserver")  # graceful: returns once the apiserver has exited
    try:
        # Jobs never run twice: from the hub a dead member and a cut-off one look the same, so they wait
        wait_until("generic awaits a fence", lambda: _ready_reason(fleet, ns, "generic") == "AwaitingFence",
                   timeout=60)
        assert where(fleet, ns, members=(US,))[US] == [] and \
            status(fleet, ns, "generic")["placement"]["cluster"] == ONPREM
        # fenced the way Argo CD's `fence` action does it ("it is really down"): offered on the GPUCluster the
        # operator wrote Unreachable, its Lua run on that object, the change sent as a merge patch
        def live() -> dict[str, Any]:
            return dict(json.loads(fleet.kubectl("get", "gpucluster", ONPREM, "-o", "json").stdout))

        wait_until("Argo CD offers fence", lambda: discover("GPUCluster", live())["fence"], timeout=60)
        body = live()
        t0 = time.monotonic()
        fleet.kubectl("patch", "gpucluster", ONPREM, "--type=merge", "-p",
                      json.dumps(merge_patch(body, act("GPUCluster", "fence", body))))
        wait_until("generic Running on the US member", lambda: running_on(fleet, ns, "generic", US), timeout=90)
        failover_s = time.monotonic() - t0
        wait_until("secret Unschedulable", lambda: status(fleet, ns, "secret").get("phase") == "Unschedulable",
                   timeout=120)
        secret = status(fleet, ns, "secret")
        assert "placement" not in secret or not secret["placement"]
        assert "jurisdiction US not in [JP]" in secret["message"]
        lost = secret["history"][-1]
        assert (lost["event"], lost["reason"], lost["from"]) == ("Lost", "ClusterLost", ONPREM)
        gen = migrated(fleet, ns, "generic")
        assert len(gen) == 1 and gen[0]["reason"] == "ClusterLost" and gen[0]["from"] == ONPREM
        assert where(fleet, ns, members=(US,))[US] == ["generic"]
        print(f"\nfailover: generic Running on {US} {failover_s:.1f}s after {ONPREM} was fenced")
        assert failover_s < 60
    finally:
        bring_member_back(fleet, ONPREM)
    # the fence vouched for this outage only: once the member answers, Tenbin removes it
    wait_until("the fence consumed", lambda: "tenbin.io/fenced" not in (json.loads(fleet.kubectl(
        "get", "gpucluster", ONPREM, "-o", "json").stdout)["metadata"].get("annotations") or {}), timeout=60)
    wait_until("Argo CD no longer offers fence (the member answers)", lambda: not discover("GPUCluster", json.loads(
        fleet.kubectl("get", "gpucluster", ONPREM, "-o", "json").stdout))["fence"], timeout=60)
    # the member is back: the copy of `generic` left there is removed; `secret` runs there again, once
    wait_until("stale generic removed from on-prem", lambda: "generic" not in where(fleet, ns)[ONPREM], timeout=120)
    wait_until("secret Running on-prem again", lambda: running_on(fleet, ns, "secret", ONPREM), timeout=120)
    seen = where(fleet, ns)
    assert seen[ONPREM].count("secret") == 1 and "secret" not in seen[US] + seen[SOVEREIGN]
    assert seen[US] == ["generic"]


def _ready_reason(fleet: Fleet, ns: str, name: str) -> str | None:
    return next((c.get("reason") for c in status(fleet, ns, name).get("conditions") or [] if c["type"] == "Ready"),
                None)


@contextmanager
def watching_deployments(fleet: Fleet, ns: str, members: tuple[str, ...]) -> Iterator[list[tuple[float, str, int]]]:
    """Every change of the namespace's Deployments in `members`, from real watches (none can be missed, unlike
    polling): a timeline of (monotonic time received, member, ready replicas of that member's copies)."""
    from kubernetes import client, watch

    timeline: list[tuple[float, str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()
    started = threading.Barrier(len(members) + 1)

    def follow(member: str) -> None:
        apps = client.AppsV1Api(fleet.api_client(member))
        listed = apps.list_namespaced_deployment(ns)
        ready = {d.metadata.name: int(d.status.ready_replicas or 0) for d in listed.items}
        rv = listed.metadata.resource_version
        with lock:
            timeline.append((time.monotonic(), member, sum(ready.values())))
        started.wait()
        while not stop.is_set():
            w = watch.Watch()
            for ev in w.stream(apps.list_namespaced_deployment, ns, resource_version=rv, timeout_seconds=2):
                d = ev["object"]
                rv = d.metadata.resource_version
                gone = ev["type"] == "DELETED" or d.metadata.deletion_timestamp is not None
                ready[d.metadata.name] = 0 if gone else int(d.status.ready_replicas or 0)
                with lock:
                    timeline.append((time.monotonic(), member, sum(ready.values())))

    threads = [threading.Thread(target=follow, args=(m,), daemon=True) for m in members]
    for t in threads:
        t.start()
    started.wait(timeout=30)
    try:
        yield timeline
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)


def test_make_before_break_keeps_a_ready_replica_throughout(operator: OperatorProcess, ns: str) -> None:
    """The source is stopped only once the target is ready: the target's pod is held unbound (a scheduling
    gate) while the operator observes it; the source must survive that, and watches see every change."""
    fleet = operator.fleet
    apply(fleet, ns, held(cheapest(workload("server", gpus=1, kind="Deployment"))))
    wait_until("the source pod created on-prem", lambda: release(fleet, ONPREM, ns) == 1, timeout=120)
    wait_until("server Running on-prem", lambda: running_on(fleet, ns, "server", ONPREM), timeout=120)
    assert discover("AIWorkload", aiw(fleet, ns, "server")) == {"re-place": True}
    with watching_deployments(fleet, ns, (ONPREM, US)) as timeline:
        fleet.kubectl("annotate", "aiworkload", "-n", ns, "server", "tenbin.io/replace=now")
        wait_until("the target pod created, held", lambda: any(
            p["spec"].get("schedulingGates") for p in member_pods(fleet, US, ns)), timeout=60)
        await_rounds(operator, 2)  # the operator has seen the target not ready, twice
        assert where(fleet, ns, "deployments")[ONPREM] == ["server"], "the source went before the target was ready"
        # Argo CD offers no second re-place while this move is under way (what the operator wrote says so)
        assert discover("AIWorkload", aiw(fleet, ns, "server")) == {"re-place": False}
        assert release(fleet, US, ns) == 1
        wait_until("server Running elsewhere", lambda: running_on(fleet, ns, "server", US), timeout=120)
        wait_until("source removed", lambda: not where(fleet, ns, "deployments")[ONPREM], timeout=30)
        wait_until("the watches saw the source go", lambda: any(
            m == ONPREM and r == 0 for _, m, r in list(timeline)), timeout=30)
    ready = {ONPREM: 0, US: 0}
    states = []
    for _, member, n in sorted(timeline):
        ready[member] = n
        states.append(dict(ready))
    observed = states[1:]  # from the moment both watches had listed (neither watches before that)
    assert observed[0] == {ONPREM: 1, US: 0}, observed[0]
    assert all(s[ONPREM] + s[US] >= 1 for s in observed), states  # never a moment without a ready replica
    assert any(s[ONPREM] >= 1 and s[US] >= 1 for s in observed), states  # the two copies overlapped
    assert observed[-1] == {ONPREM: 0, US: 1}, observed[-1]
    hist = migrated(fleet, ns, "server")
    assert [(h["reason"], h["from"], h["cluster"]) for h in hist] == [("Requested", ONPREM, US)]
    # the request is recorded as acted on, and the annotation stays (Argo CD selfHeal would put it back)
    body = aiw(fleet, ns, "server")
    assert body["metadata"]["annotations"]["tenbin.io/replace"] == "now" and body["status"]["replaceRequest"] == "now"


def _job_annotations(fleet: Fleet, ns: str, member: str, name: str) -> dict[str, str]:
    for j in copies(fleet, ns)[member]:
        if j["metadata"]["name"] == name:
            return dict(j["metadata"].get("annotations") or {})
    return {}


def test_job_checkpoint_handshake_awaits_the_acknowledgement(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    apply(fleet, ns, cheapest(workload("trainer", gpus=1, run_seconds=600)))
    wait_until("trainer Running on-prem", lambda: running_on(fleet, ns, "trainer", ONPREM), timeout=120)
    with sampling(lambda: where(fleet, ns)) as samples:
        fleet.kubectl("annotate", "aiworkload", "-n", ns, "trainer", "tenbin.io/replace=now")
        wait_until("checkpoint requested", lambda: "tenbin.io/checkpoint-requested" in
                   _job_annotations(fleet, ns, ONPREM, "trainer"), timeout=30)
        await_rounds(operator, 2)
        assert (status(fleet, ns, "trainer").get("migration") or {}).get("phase") == "Checkpointing"
        assert where(fleet, ns)[US] == [], "the target started before the checkpoint was acknowledged"
        fleet.kubectl("annotate", "job", "-n", ns, "trainer", "tenbin.io/checkpoint-done=step-42", cluster=ONPREM)
        wait_until("trainer on the US member", lambda: where(fleet, ns)[US] == ["trainer"], timeout=30)
    target = _job_annotations(fleet, ns, US, "trainer")
    assert target["tenbin.io/checkpoint"] == "step-42" and target["tenbin.io/resume-from"] == ONPREM
    pod_tmpl = copies(fleet, ns)[US][0]["spec"]["template"]["metadata"]["annotations"]
    assert pod_tmpl["tenbin.io/checkpoint"] == "step-42"  # visible to the workload (downward API)
    assert all(len(s[ONPREM]) + len(s[US]) + len(s[SOVEREIGN]) <= 1 for s in samples), "two copies of a Job"
    assert where(fleet, ns)[ONPREM] == []


def test_job_checkpoint_without_acknowledgement_is_bounded_by_the_grace_period(
        operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    apply(fleet, ns, cheapest(workload("silent", gpus=1, run_seconds=600)))
    wait_until("silent Running on-prem", lambda: running_on(fleet, ns, "silent", ONPREM), timeout=120)
    fleet.kubectl("annotate", "aiworkload", "-n", ns, "silent", "tenbin.io/replace=now")
    wait_until("checkpoint requested", lambda: "tenbin.io/checkpoint-requested" in
               _job_annotations(fleet, ns, ONPREM, "silent"), timeout=30)
    t0 = time.monotonic()
    wait_until("silent on the US member", lambda: where(fleet, ns)[US] == ["silent"], timeout=CHECKPOINT_GRACE + 30)
    waited = time.monotonic() - t0
    assert waited >= CHECKPOINT_GRACE - 2  # the grace was given (2 s: timestamps have 1 s resolution)
    assert waited < CHECKPOINT_GRACE + 20  # and it bounded the wait
    assert _job_annotations(fleet, ns, US, "silent")["tenbin.io/checkpoint"].startswith("none: grace period")


def test_cost_moves_once_past_the_threshold_and_never_ping_pongs(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    cooldown = 20
    doc = cheapest(workload("thrifty", gpus=1, tiers=["OnPrem", "SovereignCloud"], models=["H100-80GB"],
                            run_seconds=600))
    doc["spec"]["migration"] = {"policy": "CostAware", "minSavingsPercent": 20, "cooldownSeconds": cooldown}
    apply(fleet, ns, doc)
    wait_until("thrifty Running on-prem (300 JPY)", lambda: running_on(fleet, ns, "thrifty", ONPREM), timeout=120)
    placed_at = time.monotonic()
    try:
        # the cooldown since placement has passed: from now on only the threshold holds it back
        wait_until("cooldown since placement", lambda: time.monotonic() - placed_at >= cooldown, timeout=cooldown + 5)
        set_price(fleet, SOVEREIGN, 0, 260)  # 13% cheaper: below the threshold
        await_rounds(operator, 3)
        assert running_on(fleet, ns, "thrifty", ONPREM) and migrated(fleet, ns, "thrifty") == []
        set_price(fleet, SOVEREIGN, 0, 200)  # 33% cheaper: move
        wait_until("moved to sovereign", lambda: running_on(fleet, ns, "thrifty", SOVEREIGN), timeout=120)
        # prices flap back and forth inside the cooldown: no ping-pong
        for onprem, sovereign in ((100, 200), (300, 90), (80, 400)):
            set_price(fleet, ONPREM, 0, onprem)
            set_price(fleet, SOVEREIGN, 0, sovereign)
            await_rounds(operator, 2)
        moves = migrated(fleet, ns, "thrifty")
        assert [(m["reason"], m["from"], m["cluster"]) for m in moves] == [("Cost", ONPREM, SOVEREIGN)]
        assert where(fleet, ns)[SOVEREIGN] == ["thrifty"] and where(fleet, ns)[ONPREM] == []
    finally:
        set_price(fleet, ONPREM, 0, 300)
        set_price(fleet, SOVEREIGN, 0, 480)


def test_residency_drift_evacuates_even_with_policy_never(operator: OperatorProcess, ns: str) -> None:
    fleet = operator.fleet
    doc = workload("ismap-only", gpus=1, classification="Confidential", jurisdictions=["JP"],
                   required_labels=["ismap"], run_seconds=600, migration={"policy": "Never"})
    apply(fleet, ns, doc)
    wait_until("Running on sovereign (the only ISMAP member)", lambda: running_on(fleet, ns, "ismap-only", SOVEREIGN),
               timeout=120)
    labels = hub_json(fleet, "gpucluster", SOVEREIGN)["spec"]["residencyLabels"]
    fleet.kubectl("patch", "gpucluster", SOVEREIGN, "--type=merge",
                  "-p", json.dumps({"spec": {"residencyLabels": [lb for lb in labels if lb != "ismap"]}}))
    try:
        wait_until("evacuated", lambda: status(fleet, ns, "ismap-only").get("phase") == "Unschedulable", timeout=120)
        st = status(fleet, ns, "ismap-only")
        assert "missing label ismap" in st["message"]
        assert not st.get("placement")
        evac = st["history"][-1]
        assert (evac["event"], evac["reason"], evac["from"]) == ("Evacuated", "ResidencyDrift", SOVEREIGN)
        events = hub_json(fleet, "events", "-n", ns, "--field-selector", "involvedObject.name=ismap-only")["items"]
        assert any(e["reason"] == "Evacuated" and e["type"] == "Warning" for e in events)
        wait_until("member copy stopped", lambda: where(fleet, ns)[SOVEREIGN] == [], timeout=30)
        assert where(fleet, ns) == {ONPREM: [], SOVEREIGN: [], US: []}
    finally:
        fleet.kubectl("patch", "gpucluster", SOVEREIGN, "--type=merge",
                      "-p", json.dumps({"spec": {"residencyLabels": labels}}))
    wait_until("placed again once compliant", lambda: running_on(fleet, ns, "ismap-only", SOVEREIGN), timeout=120)


def test_a_lapsed_attestation_is_residency_drift_and_the_work_leaves(operator: OperatorProcess, ns: str) -> None:
    """The policy vouches for ISMAP on the sovereign member until a minute from now (the label is then the
    policy's: the GPUClusters' own residencyLabels entries no longer count). The work that needs it runs there,
    the GPUCluster is warned, a new registration covers on-prem, the sovereign one lapses: the work moves."""
    fleet = operator.fleet
    until = datetime.now(UTC) + timedelta(seconds=45)

    def attest(*atts: dict[str, Any]) -> None:
        fleet.kubectl("patch", "placementpolicy", "default", "--type=merge",
                      "-p", json.dumps({"spec": {"attestationWarningDays": 1, "attestations": list(atts)}}))

    sovereign = {"label": "ismap", "clusters": [SOVEREIGN], "validUntil": until.isoformat(),
                 "evidence": "ISMAP register (test)"}
    attest(sovereign)
    try:
        doc = workload("attested", gpus=1, classification="Confidential", jurisdictions=["JP"],
                       required_labels=["ismap"], kind="Deployment")
        apply(fleet, ns, doc)
        wait_until("Running on the attested sovereign member",
                   lambda: status(fleet, ns, "attested").get("phase") == "Running"
                   and (status(fleet, ns, "attested").get("placement") or {}).get("cluster") == SOVEREIGN,
                   timeout=120)

        def cluster_events(reason: str) -> list[dict[str, Any]]:
            return [e for e in hub_json(fleet, "events", "-A", "--field-selector",
                                        f"involvedObject.name={SOVEREIGN}")["items"] if e["reason"] == reason]

        wait_until("the GPUCluster warned", lambda: bool(cluster_events("AttestationLapsing")), timeout=60)
        assert f"{ns}/attested" in cluster_events("AttestationLapsing")[0]["message"]
        attest(sovereign, {"label": "ismap", "clusters": [ONPREM],
                           "validUntil": (datetime.now(UTC) + timedelta(days=365)).isoformat()})
        wait_until("moved to on-prem once the sovereign attestation lapsed",
                   lambda: (status(fleet, ns, "attested").get("placement") or {}).get("cluster") == ONPREM
                   and status(fleet, ns, "attested").get("phase") == "Running", timeout=150)
        assert datetime.now(UTC) >= until
        moves = [h for h in status(fleet, ns, "attested")["history"] if h["event"] == "Migrated"]
        assert [(h["reason"], h["from"]) for h in moves] == [("ResidencyDrift", SOVEREIGN)]
        assert cluster_events("AttestationLapsed")
        wait_until("the sovereign copy gone", lambda: where(fleet, ns, "deployments")[SOVEREIGN] == [], timeout=60)
    finally:
        fleet.kubectl("patch", "placementpolicy", "default", "--type=json",
                      "-p", json.dumps([{"op": "remove", "path": "/spec/attestations"},
                                        {"op": "remove", "path": "/spec/attestationWarningDays"}]), check=False)
