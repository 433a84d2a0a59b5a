"""`tenbin run`: the operator against a hub (kubeconfig, $KUBECONFIG, or in-cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf
from prometheus_client import start_http_server

from tenbin.clusters.hub import HubClient, hub_api_client, member_gateways, pod_security_labels
from tenbin.clusters.leader import LeaderElector, LeaseConfig, install_write_fence
from tenbin.handlers import register
from tenbin.services.controller import Config, Controller
from tenbin.services.metrics import Metrics


@dataclass
class RunOptions:
    kubeconfig: str | None = None
    metrics_address: str = "0.0.0.0"
    metrics_port: int = 8080
    health_address: str = "0.0.0.0"
    health_port: int = 8081
    lease: LeaseConfig | None = None  # None: no leader election (a single replica)
    verbose: bool = False
    log_format: str = "text"  # "json": one JSON object per line
    member_pod_security: str = "baseline"  # Pod Security level of the namespaces Tenbin creates in members
    config: Config | None = None


_ELECTOR: LeaderElector | None = None


def _post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    if _ELECTOR is not None and not _ELECTOR.leading():
        return  # Kopf's events are not behind the write fence: a replica that does not lead posts none
    kopf.event(cast(kopf.Body, dict(body)), type=type_, reason=reason, message=message[:1024])


def make_controller(opts: RunOptions) -> Controller:
    hub = HubClient(hub_api_client(opts.kubeconfig))

    gateways = member_gateways(hub, pod_security_labels(opts.member_pod_security))
    return Controller(hub, gateways, _post_event, opts.config or Config(), Metrics())


def connection_info(cfg: Any) -> kopf.ConnectionInfo:
    """Kopf's credentials from the same client configuration the hub client uses (one source of truth)."""
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
        username=cfg.username or None, password=cfg.password or None, scheme=scheme, token=token,
        certificate_path=cfg.cert_file, private_key_path=cfg.key_file,
    )


def port_problem(opts: RunOptions) -> str | None:
    """The first of --metrics-port/--health-port `tenbin run` cannot listen on, as one line naming the flag
    (None: both usable). Checked before anything else, so a taken port is said at once, not after the hub.
    Each port is bound (SO_REUSEADDR, as the servers do) and held until both are checked: one port given
    for both is refused too. The servers bind them again a moment later."""
    held: list[tuple[str, int, socket.socket]] = []
    try:
        for flag, addr_flag, address, port in (
                ("--metrics-port", "--metrics-address", opts.metrics_address, opts.metrics_port),
                ("--health-port", "--health-address", opts.health_address, opts.health_port)):
            if port == 0:
                continue  # off
            if not 0 < port < 65536:
                return f"{flag} {port}: not a TCP port (1-65535, or 0 for off)"
            try:
                family, type_, proto, _, sockaddr = socket.getaddrinfo(
                    address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            except (socket.gaierror, UnicodeError) as e:
                return f"{addr_flag} {address}: not an address to listen on ({getattr(e, 'strerror', None) or e})"
            s = socket.socket(family, type_, proto)
            held.append((flag, port, s))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(sockaddr)
                s.listen(1)
            except OSError as e:
                same = next((f for f, p, _ in held[:-1] if p == port), None)
                why = (f"already used by {same}" if same and e.errno == errno.EADDRINUSE
                       else "already in use by another program" if e.errno == errno.EADDRINUSE
                       else e.strerror or str(e))
                return f"{flag} {port}: cannot listen on {address}:{port}: {why}"
    finally:
        for _, _, s in held:
            s.close()
    return None


def serve_metrics(opts: RunOptions, registry: Any) -> str | None:
    """Prometheus /metrics on --metrics-port (0: off); a bind failure is one line naming the flag."""
    if not opts.metrics_port:
        return None
    try:
        start_http_server(opts.metrics_port, addr=opts.metrics_address, registry=registry)
    except OSError as e:  # taken between port_problem() and now
        return f"--metrics-port {opts.metrics_port}: cannot listen on {opts.metrics_address}:{opts.metrics_port}: " \
               f"{e.strerror or e}"
    return None


def configure_logging(log_format: str, verbose: bool) -> None:
    """Text lines, or (json) one JSON object per line, Kopf's formatter: message, timestamp, severity, and
    the Kubernetes object a line is about under "object" (Kopf's own lines); Python warnings go through it
    too."""
    if log_format == "json":
        kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON, log_refkey="object")
        logging.captureWarnings(True)
    else:
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not one line per watch event
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # not one line per probe


def run(opts: RunOptions) -> int:
    if (problem := port_problem(opts)) is not None:  # before the hub: say it now, exit 2
        print(f"tenbin run: {problem}", file=sys.stderr)
        return 2
    configure_logging(opts.log_format, opts.verbose)
    global _ELECTOR
    if opts.lease is not None and (problem := opts.lease.problem()):
        print(f"tenbin run: {problem}", file=sys.stderr)
        return 2
    ctl = make_controller(opts)
    registry = kopf.OperatorRegistry()
    register(registry, ctl)

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(ctl.hub.api.configuration)

    if (problem := serve_metrics(opts, ctl.metrics.registry)) is not None:
        print(f"tenbin run: {problem}", file=sys.stderr)
        return 2
    liveness = f"http://{opts.health_address}:{opts.health_port}/healthz" if opts.health_port else None
    if opts.lease is not None:
        _ELECTOR = LeaderElector(hub_api_client(opts.kubeconfig), opts.lease, registry=ctl.metrics.registry)
        install_write_fence(_ELECTOR)
    asyncio.run(_operate(registry, liveness, _ELECTOR, opts))
    return 0


async def _operate(registry: kopf.OperatorRegistry, liveness: str | None, elector: LeaderElector | None,
                   opts: RunOptions) -> None:
    """Kopf without its own peering: with leader election, started only once the Lease is held (a standby
    answers /healthz meanwhile), and the process ends when the Lease is lost (see tenbin.clusters.leader)."""
    if elector is not None:
        async with _standby_health(opts.health_address, opts.health_port):
            await _acquire(elector)
    try:
        await kopf.operator(registry=registry, clusterwide=True, standalone=True, liveness_endpoint=liveness)
    finally:
        if elector is not None:
            elector.release()  # Kopf has stopped: hand the Lease over without making a standby wait


async def _acquire(elector: LeaderElector) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def acquire() -> None:
        error: BaseException | None = None
        try:
            elector.acquire()
        except BaseException as e:  # handed to the waiting coroutine
            error = e
        loop.call_soon_threadsafe(settle, error)

    # a daemon thread, not the default executor: a standby ended by a signal must not wait for it
    threading.Thread(target=acquire, name="lease-acquire", daemon=True).start()
    await done


@contextlib.asynccontextmanager
async def _standby_health(address: str, port: int) -> AsyncIterator[None]:
    """/healthz while standing by (alive: waiting for the Lease is this replica's job); Kopf's own
    endpoint takes the port once this replica leads."""
    if not port:
        yield
        return
    from aiohttp import web

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"leader": False})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    try:
        yield
    finally:
        await runner.cleanup()
