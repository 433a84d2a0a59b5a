"""Thin Kopf handlers: turn watch events into calls on the controller. No decisions here."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from tenbin.api import GROUP, VERSION
from tenbin.services.controller import Controller

KOPF_FINALIZER = "tenbin.io/kopf-daemon"


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf tuned for Tenbin: bounded watches and requests, no handler state in status, quiet events."""
    settings.watching.server_timeout = 300  # the apiserver closes the watch; we re-list and continue
    settings.watching.client_timeout = 330  # a silent, stalled watch is dropped and re-established
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.tenbin.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.tenbin.io")
    settings.posting.level = logging.WARNING  # Tenbin posts its own decision events
    settings.posting.reporting_component = "tenbin"  # the events' source (`kubectl describe`'s From)
    # No Kopf peering: one replica at a time is made sure of by the Lease (tenbin.clusters.leader), before Kopf starts.
    settings.peering.standalone = True
    # At most 64 objects are handled at once. Kopf keeps a finished object's worker (and its slot) for
    # idle_timeout (default 5 s) in case more events come; with 64 slots that capped placement at
    # 64 / 5 s ≈ 13 AIWorkloads/s and made every new object wait for a slot. Our own patches' events
    # arrive within milliseconds, so a short linger keeps the reuse without holding slots.
    settings.queueing.worker_limit = 64
    settings.queueing.idle_timeout = 0.2


def register(registry: kopf.OperatorRegistry, ctl: Controller) -> None:
    @kopf.on.startup(registry=registry)
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)
        await ctl.seed()

    @kopf.on.event(GROUP, VERSION, "aiworkloads", registry=registry)
    async def _workload(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        deleted = event.get("type") == "DELETED"
        key = ctl.observe_workload(dict(body), deleted=deleted)
        if not deleted:
            await ctl.reconcile(key)

    @kopf.on.event(GROUP, VERSION, "gpuclusters", registry=registry)
    async def _cluster(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        ctl.observe_cluster(dict(body), deleted=event.get("type") == "DELETED")

    @kopf.on.event(GROUP, VERSION, "placementpolicies", registry=registry)
    async def _policy(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        ctl.observe_policy(dict(body), deleted=event.get("type") == "DELETED")

    @kopf.daemon(GROUP, VERSION, "gpuclusters", registry=registry, cancellation_timeout=10)
    async def _monitor(name: str, stopped: kopf.DaemonStopped, **_: Any) -> None:
        # One loop per member: observe, write status, follow workloads. Stopped by Kopf when the
        # GPUCluster goes away or the operator exits (a replica that loses the Lease exits at once).
        while not stopped:
            await ctl.sync_cluster(name)
            await stopped.wait(ctl.config.resync_seconds)
