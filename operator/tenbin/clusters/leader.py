"""Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics.

Only the replica holding the Lease runs the operator; the others stand by and retry. What holds:

- Two candidates never both win an election: every acquisition and renewal is an `update` of the Lease
  carrying the `resourceVersion` that was read, so of two writers racing on the same version the apiserver
  accepts one and refuses the other (409 Conflict).
- A standby takes a Lease over only when its record (`resourceVersion`) has not changed for the record's
  `leaseDurationSeconds`, measured on the standby's own monotonic clock from when it first saw that record.
  Wall clocks are never compared, so clock *offset* between machines does not matter.
- The leader's *fence* is the monotonic time at which it sent its last successful renewal (before the
  request left, so no later than the apiserver stored it) plus `renew_deadline`. From the fence on, a
  watchdog thread ends the process (exit 1, as client-go operators do) and the Kubernetes client refuses
  every write (`install_write_fence`). Since `renew_deadline < lease_duration`, the fence falls before any
  standby may take over, by at least `lease_duration - renew_deadline` of the standby's clock.

What does not hold (client-go says the same: this is no fencing token the apiservers check):
- clocks that *run at different rates* by more than `lease_duration / renew_deadline` between machines;
- a write that had passed the fence check when the process froze (SIGSTOP, a VM pause, a stalled
  network buffer) reaches the apiserver when it wakes, possibly after a successor took over;
- requests Kopf makes itself (its daemon finalizer, events it posts): these are not behind the write
  fence; only the watchdog stops them, within milliseconds of the fence, also after a freeze.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException
from prometheus_client import Gauge
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "tenbin-system"
LOST_EXIT_CODE = 1
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def default_identity() -> str:
    """The pod's name ($POD_NAME, else the host name) and a per-process suffix: a restarted process is a
    new candidate, never mistaken for the holder it replaces."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def default_namespace() -> str:
    return os.environ.get("POD_NAMESPACE") or DEFAULT_NAMESPACE


@dataclass(frozen=True)
class LeaseConfig:
    name: str = "tenbin"
    namespace: str = DEFAULT_NAMESPACE
    identity: str = ""
    lease_duration: float = 15.0  # a standby waits this long without a change before taking over
    renew_deadline: float = 10.0  # the leader stops acting this long after its last successful renewal
    retry_period: float = 2.0     # how often a standby retries and the leader renews

    def problem(self) -> str | None:
        """Why this configuration cannot give one leader at a time, or None."""
        if not self.name or not self.namespace:
            return "--lease-name and --lease-namespace must not be empty"
        if not self.retry_period > 0:
            return f"--retry-period ({self.retry_period:g}) must be greater than 0"
        if not self.renew_deadline > self.retry_period:
            return (f"--renew-deadline ({self.renew_deadline:g}) must be longer than --retry-period "
                    f"({self.retry_period:g}), or the leader could not renew in time")
        if not self.lease_duration > self.renew_deadline:
            return (f"--lease-duration ({self.lease_duration:g}) must be longer than --renew-deadline "
                    f"({self.renew_deadline:g}): the leader must stop before a standby may take over")
        return None


class NotLeader(ApiException):
    """A write refused in the process because this replica does not (or no longer) hold the Lease."""

    def __init__(self, method: str, url: str) -> None:
        super().__init__(status=503, reason=f"not the leader: {method} {url} refused (Lease not held)")


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _detail(e: ApiException) -> str:
    try:
        msg = json.loads(e.body or "{}").get("message")
    except (ValueError, AttributeError):
        msg = None
    return f": {msg}" if msg else ""


def _die(reason: str) -> None:
    """client-go's behaviour on losing the lease: stop at once, let Kubernetes restart the process."""
    log.error("leader election: %s; exiting so that no second actor exists", reason)
    for h in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # the exit must happen whatever the logging does
            h.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(LOST_EXIT_CODE)


class LeaderElector:
    """Acquire the Lease (blocking, retrying), then renew it from a thread of its own until the process
    ends; the event loop's health does not delay renewals, and a lost Lease ends the process."""

    def __init__(self, api: client.ApiClient, cfg: LeaseConfig,
                 on_lost: Callable[[str], None] = _die, registry: Any = None) -> None:
        self.cfg = cfg if cfg.identity else LeaseConfig(**{**cfg.__dict__, "identity": default_identity()})
        self.api = api
        self.coord: Any = client.CoordinationV1Api(api)  # plain-dict bodies; the stubs want models
        self.on_lost = on_lost
        self._fence = 0.0                # monotonic deadline of the current term; 0: not leading
        self._lock = threading.RLock()    # renewals, the watchdog and release() take turns
        self._observed_rv: str | None = None
        self._observed_at = 0.0
        self._stopping = threading.Event()
        self._renewed = threading.Event()
        self._last_error = ""
        self._threads: list[threading.Thread] = []
        self._gauge: Any = None
        if registry is not None:
            self._gauge = Gauge("tenbin_leader", "1 while this replica holds the leader Lease and acts",
                                registry=registry)
            self._gauge.set(0)

    @property
    def identity(self) -> str:
        return self.cfg.identity

    def leading(self) -> bool:
        """True while this replica holds the Lease and its renew deadline has not passed."""
        return time.monotonic() < self._fence

    # ---- one attempt, as client-go's tryAcquireOrRenew --------------------------------------------

    def _timeout(self) -> tuple[float, float]:
        t = max(0.5, self.cfg.renew_deadline / 2)
        return (t, t)

    def _record(self, spec: dict[str, Any], now: str) -> dict[str, Any]:
        mine = spec.get("holderIdentity") == self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.cfg.lease_duration),
            "acquireTime": spec.get("acquireTime") if mine and spec.get("acquireTime") else now,
            "renewTime": now,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if mine or not spec else 1),
        }

    def try_acquire_or_renew(self) -> bool:
        """One read-modify-write of the Lease. True: this replica holds it until `self._fence`."""
        sent = time.monotonic()  # the fence counts from before any request of this attempt left
        if sent >= self._fence > 0:
            return False  # past the deadline a renewal is never attempted: the term is over
        ns, name = self.cfg.namespace, self.cfg.name
        what = "read"
        try:
            try:
                resp = self.coord.read_namespaced_lease(name, ns, _preload_content=False,
                                                        _request_timeout=self._timeout())
                lease = json.loads(resp.data)
            except ApiException as e:
                if e.status != 404:
                    raise
                what = "create"
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": name, "namespace": ns,
                                     "labels": {"app.kubernetes.io/part-of": "tenbin"}},
                        "spec": self._record({}, _now_micro())}
                self.coord.create_namespaced_lease(ns, body, _preload_content=False,
                                                   _request_timeout=self._timeout())
                self._won(sent, None)
                return True
            meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
            rv = meta.get("resourceVersion")
            if rv != self._observed_rv:
                self._observed_rv, self._observed_at = rv, time.monotonic()
            holder = spec.get("holderIdentity") or ""
            if holder and holder != self.identity:
                duration = float(spec.get("leaseDurationSeconds") or self.cfg.lease_duration)
                if self._fence:
                    self.on_lost(f"the Lease {ns}/{name} is held by {holder}")
                    return False
                if time.monotonic() < self._observed_at + duration:
                    self._note(f"the Lease {ns}/{name} is held by {holder}; standing by")
                    return False
            elif not holder and self._fence:
                self.on_lost(f"the Lease {ns}/{name} was released by someone else")
                return False
            what = "update"
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {**meta, "resourceVersion": rv}, "spec": {**spec, **self._record(spec, _now_micro())}}
            out = self.coord.replace_namespaced_lease(name, ns, body, _preload_content=False,
                                                      _request_timeout=self._timeout())
            self._won(sent, json.loads(out.data), taken_from=holder if holder != self.identity else None)
            return True
        except ApiException as e:
            if e.status == 409:  # another candidate wrote first: it won this round
                self._note(f"the Lease {ns}/{name} changed under this attempt (409 Conflict)")
            else:
                self._note(f"{what} Lease {ns}/{name}: {e.status} {e.reason}{_detail(e)}")
            return False
        except (HTTPError, OSError) as e:
            self._note(f"{what} Lease {ns}/{name}: {type(e).__name__}: {e}".splitlines()[0])
            return False

    def _won(self, sent: float, lease: dict[str, Any] | None, taken_from: str | None = None) -> None:
        with self._lock:
            first = not self._fence
            self._fence = sent + self.cfg.renew_deadline
            if lease is not None:
                self._observed_rv = (lease.get("metadata") or {}).get("resourceVersion")
                self._observed_at = time.monotonic()
        self._renewed.set()
        self._last_error = ""
        if first:
            was = f" (taken over from {taken_from})" if taken_from else ""
            log.info("leader election: %s acquired the Lease %s/%s%s", self.identity, self.cfg.namespace,
                     self.cfg.name, was)
            if self._gauge is not None:
                self._gauge.set(1)

    def _note(self, msg: str) -> None:
        if msg != self._last_error:  # one line per change of situation, not per retry
            self._last_error = msg
            log.info("leader election: %s", msg)

    # ---- the loops ---------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Block until this replica holds the Lease, trying every retry period."""
        log.info("leader election: %s wants the Lease %s/%s (duration %gs, renew deadline %gs, retry %gs)",
                 self.identity, self.cfg.namespace, self.cfg.name, self.cfg.lease_duration,
                 self.cfg.renew_deadline, self.cfg.retry_period)
        while not self.try_acquire_or_renew():
            if self._stopping.wait(self.cfg.retry_period):
                raise RuntimeError("leader election stopped before the Lease was acquired")
        self._start_thread("lease-watchdog", self._watchdog)
        self._start_thread("lease-renew", self._renew_loop)

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _renew_loop(self) -> None:
        while not self._stopping.wait(self.cfg.retry_period):
            with self._lock:
                if self._stopping.is_set():
                    return
                self.try_acquire_or_renew()

    def _watchdog(self) -> None:
        # Wakes at the fence (monotonic: a frozen process that wakes past it is caught at once) unless
        # a renewal moved it; the write fence covers the instant between the deadline and the exit.
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                left = self._fence - time.monotonic()
                if left <= 0:
                    if self._gauge is not None:
                        self._gauge.set(0)
                    self.on_lost(f"no successful renewal of the Lease {self.cfg.namespace}/{self.cfg.name} "
                                 f"within the renew deadline ({self.cfg.renew_deadline:g}s)")
                    return
            self._renewed.wait(left)
            self._renewed.clear()

    def release(self) -> None:
        """Stop renewing and, if still within the term, hand the Lease back (holder cleared) so that a
        standby need not wait out the lease duration. Call only once nothing acts any more."""
        with self._lock:
            self._stopping.set()
            self._renewed.set()
            leading, self._fence = self.leading(), 0.0
        if self._gauge is not None:
            self._gauge.set(0)
        if not leading:
            return
        ns, name = self.cfg.namespace, self.cfg.name
        try:
            resp = self.coord.read_namespaced_lease(name, ns, _preload_content=False, _request_timeout=self._timeout())
            lease = json.loads(resp.data)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"].update({"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _now_micro()})
            self.coord.replace_namespaced_lease(name, ns, lease, _preload_content=False,
                                                _request_timeout=self._timeout())
            log.info("leader election: %s released the Lease %s/%s", self.identity, ns, name)
        except (ApiException, HTTPError, OSError) as e:
            log.warning("leader election: could not release the Lease %s/%s (%s); a standby takes over "
                        "after the lease duration", ns, name, e)


_fence_installed: list[Callable[..., Any]] = []


def install_write_fence(elector: LeaderElector) -> None:
    """Every write through the Kubernetes Python client of this process (hub and members alike) is refused
    unless `elector` leads at the moment the request is about to leave. The elector's own client is exempt
    (it must write the Lease to become leader). Reads pass: they change nothing."""
    if _fence_installed:
        raise RuntimeError("the write fence is installed once per process")
    original = rest.RESTClientObject.request
    _fence_installed.append(original)
    exempt = elector.api.rest_client

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self is not exempt and method.upper() in MUTATING and not elector.leading():
            log.warning("leader election: refused %s %s: this replica does not hold the Lease", method, url)
            raise NotLeader(method, url)
        return original(self, method, url, *args, **kwargs)

    rest.RESTClientObject.request = request  # type: ignore[method-assign]
