"""Leader election on the real hub: two `tenbin run` replicas contend for one coordination.k8s.io/v1 Lease;
only its holder acts. The leader is killed (SIGKILL) and frozen (SIGSTOP): the standby takes over only once
the Lease could have expired, and a frozen leader that wakes after losing it exits without acting."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest

from operator_harness import OperatorProcess, aiw, apply, workload
from tenbin.clusters.hub import hub_api_client
from tenbin.clusters.leader import LOST_EXIT_CODE, LeaderElector, LeaseConfig
from tenbin.testbed.fleet import SYSTEM_NAMESPACE, Fleet, wait_until

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 4.0, 3.0, 1.0


class Replicas:
    """Replicas of the operator contending for one Lease of this test's own; every one is stopped after."""

    def __init__(self, hub: Fleet, tmp: Path) -> None:
        self.hub = hub
        self.tmp = tmp
        self.lease = f"tenbin-test-{uuid.uuid4().hex[:8]}"
        self.procs: dict[str, OperatorProcess] = {}

    def start(self, name: str, *extra_args: str) -> OperatorProcess:
        flags = ["--leader-elect", "--lease-name", self.lease, "--lease-namespace", SYSTEM_NAMESPACE,
                 "--lease-duration", str(LEASE_DURATION), "--renew-deadline", str(RENEW_DEADLINE),
                 "--retry-period", str(RETRY_PERIOD)]
        op = OperatorProcess(self.hub, self.tmp / f"{name}.log", leader_elect=flags, env={"POD_NAME": name},
                            extra_args=extra_args)
        self.procs[name] = op
        op.start()
        return op

    def spec(self) -> dict[str, Any]:
        res = self.hub.kubectl("get", "lease", self.lease, "-n", SYSTEM_NAMESPACE, "-o", "json", check=False)
        if res.returncode != 0:
            return {}
        return dict(json.loads(res.stdout).get("spec") or {})

    def holder(self) -> str:
        """The replica (POD_NAME) holding the Lease, or ''."""
        return str(self.spec().get("holderIdentity") or "").split("_", 1)[0]

    def stop_all(self) -> None:
        for op in self.procs.values():
            op.stop()  # SIGCONT first: a frozen replica is woken, then stopped
        self.hub.kubectl("delete", "lease", self.lease, "-n", SYSTEM_NAMESPACE, "--ignore-not-found", check=False)


@pytest.fixture
def replicas(hub: Fleet, tmp_path: Path) -> Iterator[Replicas]:
    # requested before `ns`: torn down after it, so a leader still releases the test's AIWorkloads
    r = Replicas(hub, tmp_path)
    try:
        yield r
    finally:
        r.stop_all()


def metric(op: OperatorProcess, name: str, **labels: str) -> float:
    total = 0.0
    for line in op.metrics().splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? ([0-9.e+-]+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def placed(op: OperatorProcess) -> float:
    return metric(op, "tenbin_placements_total", result="placed")


def placing_lines(op: OperatorProcess, key: str) -> list[str]:
    return [ln for ln in op.log.read_text(errors="replace").splitlines() if f"placing {key}:" in ln]


def running_once(fleet: Fleet, ns: str, name: str) -> dict[str, Any]:
    """The AIWorkload is Running, was scheduled exactly once, and exists as exactly one member Job."""
    wait_until(f"{name} Running", lambda: aiw(fleet, ns, name).get("status", {}).get("phase") == "Running",
               timeout=90)
    body = aiw(fleet, ns, name)
    assert [h["event"] for h in body["status"]["history"]].count("Scheduled") == 1, body["status"]["history"]
    jobs = [m for m in fleet.members if fleet.kubectl("get", "job", name, "-n", ns, "-o", "name", cluster=m,
                                                       check=False).returncode == 0]
    assert jobs == [body["status"]["placement"]["cluster"]], jobs
    return body


def test_two_replicas_one_lease_holder_and_only_it_places(replicas: Replicas, ns: str) -> None:
    fleet = replicas.hub
    with ThreadPoolExecutor(2) as pool:  # both start at once and contend for the Lease from the start
        a, b = pool.map(lambda n: replicas.start(n, "--log-format", "json"), ["leader-a", "leader-b"])
    wait_until("a Lease holder", lambda: replicas.holder() in ("leader-a", "leader-b"), timeout=30)
    leader, standby = (a, b) if replicas.holder() == "leader-a" else (b, a)
    spec = replicas.spec()
    assert spec["leaseDurationSeconds"] == 4 and spec["leaseTransitions"] == 0
    assert spec["acquireTime"] and spec["renewTime"]
    wait_until("the leader reports itself", lambda: metric(leader, "tenbin_leader") == 1, timeout=30)
    assert metric(standby, "tenbin_leader") == 0

    apply(fleet, ns, workload("le-once", gpus=1, run_seconds=600))
    body = running_once(fleet, ns, "le-once")
    assert placed(leader) == 1 and placed(standby) == 0
    assert len(placing_lines(leader, f"{ns}/le-once")) == 1 and placing_lines(standby, f"{ns}/le-once") == []
    # the standby stays one: it renews nothing, and the lease keeps its holder across several renewals
    renewed = replicas.spec()["renewTime"]
    wait_until("the leader renews", lambda: replicas.spec()["renewTime"] != renewed, timeout=10)
    assert replicas.holder() == ("leader-a" if leader is a else "leader-b")
    assert "standing by" in standby.log.read_text(errors="replace")
    assert body["status"]["placement"]["gpus"] == 1
    # --log-format json: every line either writes is one JSON object (what a log pipeline parses)
    for op in (leader, standby):
        lines = [json.loads(line) for line in op.log.read_text(errors="replace").splitlines() if line.strip()]
        assert lines and all(isinstance(x, dict) and {"message", "timestamp", "severity"} <= set(x) for x in lines)
    # the events come from tenbin (kubectl describe's From), not from the framework it is written with
    events = json.loads(fleet.kubectl("get", "events", "-n", ns, "--field-selector",
                                      "involvedObject.name=le-once", "-o", "json").stdout)["items"]
    assert events and {(e.get("reportingComponent"), (e.get("source") or {}).get("component"))
                       for e in events} == {("tenbin", "tenbin")}


def test_killed_leader_is_replaced_after_the_lease_duration(replicas: Replicas, ns: str) -> None:
    fleet = replicas.hub
    a = replicas.start("leader-a")
    wait_until("a holds the Lease", lambda: replicas.holder() == "leader-a", timeout=30)
    b = replicas.start("leader-b")
    wait_until("b stands by", lambda: "standing by" in b.log.read_text(errors="replace"), timeout=30)
    transitions = replicas.spec()["leaseTransitions"]

    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    a.proc.wait(timeout=10)
    wait_until("b takes the Lease over", lambda: replicas.holder() == "leader-b", timeout=30)
    took = time.monotonic() - killed
    print(f"SIGKILL -> standby holds the Lease: {took:.2f} s (lease {LEASE_DURATION:g} s, retry {RETRY_PERIOD:g} s)")
    # never before the Lease could have expired: a renewed at most one retry period before the kill
    assert took >= LEASE_DURATION - RETRY_PERIOD, took
    assert took <= LEASE_DURATION + 3 * RETRY_PERIOD + 5, took
    assert replicas.spec()["leaseTransitions"] == transitions + 1

    apply(fleet, ns, workload("le-after-kill", gpus=1, run_seconds=600))
    running_once(fleet, ns, "le-after-kill")
    wait_until("b counts the placement", lambda: placed(b) == 1, timeout=10)
    assert len(placing_lines(b, f"{ns}/le-after-kill")) == 1


def test_frozen_leader_loses_the_lease_and_exits_without_acting_when_it_wakes(replicas: Replicas,
                                                                             ns: str) -> None:
    fleet = replicas.hub
    a = replicas.start("leader-a")
    wait_until("a holds the Lease", lambda: replicas.holder() == "leader-a", timeout=30)
    b = replicas.start("leader-b")
    wait_until("b stands by", lambda: "standing by" in b.log.read_text(errors="replace"), timeout=30)
    apply(fleet, ns, workload("le-before", gpus=1, run_seconds=600))
    running_once(fleet, ns, "le-before")
    assert a.proc is not None

    a.proc.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    # created while a is frozen: its watch stream holds the event, unread, for when a wakes up
    apply(fleet, ns, workload("le-frozen", gpus=1, run_seconds=600))
    wait_until("b takes the Lease over", lambda: replicas.holder() == "leader-b", timeout=30)
    took = time.monotonic() - frozen
    print(f"SIGSTOP -> standby holds the Lease: {took:.2f} s")
    assert took >= LEASE_DURATION - RETRY_PERIOD, took
    body = running_once(fleet, ns, "le-frozen")
    wait_until("b placed it", lambda: len(placing_lines(b, f"{ns}/le-frozen")) == 1, timeout=10)
    woke_at = len(a.log.read_text(errors="replace").splitlines())

    a.proc.send_signal(signal.SIGCONT)
    woke = time.monotonic()
    wait_until("a exits on waking", lambda: a.proc is not None and a.proc.poll() is not None, timeout=15)
    print(f"SIGCONT -> old leader exited: {time.monotonic() - woke:.2f} s (exit {a.proc.returncode})")
    assert a.proc.returncode == LOST_EXIT_CODE, a.tail()
    after = a.log.read_text(errors="replace").splitlines()[woke_at:]
    assert any("within the renew deadline" in ln and "exiting" in ln for ln in after), "\n".join(after)
    assert not [ln for ln in after if "placing " in ln or "acquired the Lease" in ln], "\n".join(after)
    assert placing_lines(a, f"{ns}/le-frozen") == []
    # nothing a did on waking changed the work: still one schedule, one Job, and b still leads
    again = running_once(fleet, ns, "le-frozen")
    assert again["status"]["history"] == body["status"]["history"]
    assert again["status"]["placement"] == body["status"]["placement"]
    assert replicas.holder() == "leader-b"
    apply(fleet, ns, workload("le-after-wake", gpus=1, run_seconds=600))
    running_once(fleet, ns, "le-after-wake")
    assert len(placing_lines(b, f"{ns}/le-after-wake")) == 1



def _candidates(hub: Fleet, lease: str, n: int) -> list[LeaderElector]:
    """n candidates in this process (no threads of their own, no write fence: try_acquire_or_renew only)."""
    cfg = LeaseConfig(name=lease, namespace=SYSTEM_NAMESPACE, lease_duration=LEASE_DURATION,
                      renew_deadline=RENEW_DEADLINE, retry_period=RETRY_PERIOD)
    return [LeaderElector(hub_api_client(str(hub.kubeconfig("hub"))), cfg, on_lost=lambda _: None)
            for _ in range(n)]


def _at_once(electors: list[LeaderElector]) -> list[bool]:
    gate = Barrier(len(electors))

    def attempt(e: LeaderElector) -> bool:
        gate.wait()
        return e.try_acquire_or_renew()

    with ThreadPoolExecutor(len(electors)) as pool:
        return list(pool.map(attempt, electors))


def _passed(t: float) -> bool:
    return time.monotonic() >= t


def _lease(hub: Fleet, lease: str) -> dict[str, Any]:
    return dict(json.loads(hub.kubectl("get", "lease", lease, "-n", SYSTEM_NAMESPACE, "-o", "json").stdout))


def test_candidates_racing_for_a_lease_never_both_win(hub: Fleet) -> None:
    """Optimistic concurrency on the real apiserver: of 8 simultaneous candidates exactly one wins, both when
    the Lease is created and when an expired holder's Lease is taken over (update with resourceVersion)."""
    lease = f"tenbin-race-{uuid.uuid4().hex[:8]}"
    try:
        got = _at_once(_candidates(hub, lease, 8))  # no Lease yet: all create it at once, the apiserver keeps one
        assert got.count(True) == 1, got
        for round_ in range(3):
            # a holder that stopped renewing: expired for candidates that have seen it unchanged for 1 s
            body = _lease(hub, lease)
            body["spec"].update({"holderIdentity": f"ghost-{round_}", "leaseDurationSeconds": 1})
            hub.kubectl("replace", "-f", "-", input=json.dumps(body))
            electors = _candidates(hub, lease, 8)
            assert not any(e.try_acquire_or_renew() for e in electors)  # seen held by the ghost: not yet
            expiry = max(e._observed_at for e in electors) + 1  # when the last one saw the ghost, plus 1 s
            wait_until("the ghost's Lease expires for every candidate", partial(_passed, expiry), timeout=5)
            got = _at_once(electors)
            assert got.count(True) == 1, (round_, got)
            spec = _lease(hub, lease)["spec"]
            assert spec["holderIdentity"] == electors[got.index(True)].identity
            assert spec["leaseTransitions"] == round_ + 1
    finally:
        hub.kubectl("delete", "lease", lease, "-n", SYSTEM_NAMESPACE, "--ignore-not-found", check=False)


@pytest.mark.parametrize(("flags", "message"), [
    (["--lease-duration", "3", "--renew-deadline", "3"],
     "--lease-duration (3) must be longer than --renew-deadline (3)"),
    (["--renew-deadline", "2", "--retry-period", "2"],
     "--renew-deadline (2) must be longer than --retry-period (2)"),
    (["--retry-period", "0"], "--retry-period (0) must be greater than 0"),
], ids=["renew-not-below-lease", "retry-not-below-renew", "zero-retry"])
def test_lease_timings_that_allow_two_leaders_are_refused(flags: list[str], message: str) -> None:
    res = subprocess.run([sys.executable, "-m", "tenbin", "run", *flags], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"tenbin run: {message}"), line
