"""`tenbin agent`: the NVML node agent (a DaemonSet on member clusters).

Each interval it reads every GPU of its node with NVML and patches the Node's metadata: GPU Feature Discovery
labels (product, memory, count, MIG capability) and Tenbin's health annotations, which the operator's
inventory reads to stop counting broken GPUs as free.

Exit codes (also in docs/telemetry.md):
  0  done (--once) or stopped by SIGTERM/SIGINT
  1  unexpected internal error (one log line; --log-level=debug shows the traceback)
  2  bad command line
  3  no NVIDIA driver (NVML library missing, driver not loaded, or library/driver version mismatch)
  4  the Kubernetes API could not be used (no credentials; --once: the Node patch failed)
  5  NVML failed to initialise for another reason (e.g. insufficient permissions)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from tenbin.agent.gpus import APPLICATION_XIDS, GPUInfo, GPUReader, NoDriverError, NVMLInitError, nvml_error_text
from tenbin.agent.publish import (
    STATUS_NO_DRIVER,
    STATUS_NVML_ERROR,
    NodePublisher,
    api_error_text,
    gpu_patch,
    status_patch,
)
from tenbin.clusters.nodes import KubeNodePublisher, load_api_client

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NO_DRIVER = 3
EXIT_KUBE = 4
EXIT_NVML = 5

log = logging.getLogger("tenbin.agent")


# ---- metrics -----------------------------------------------------------------------------------------------


class AgentMetrics:
    """The agent's own /metrics (prometheus-client, a private registry)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["gpu", "uuid", "model"]
        self.nvml_up = Gauge("tenbin_agent_nvml_up", "1 when NVML answered the last read.", registry=self.registry)
        self.gpus = Gauge("tenbin_agent_gpus", "GPUs NVML reports on this node.", registry=self.registry)
        self.unhealthy = Gauge("tenbin_agent_unhealthy_gpus", "GPUs the agent reports as unhealthy.",
                               registry=self.registry)
        self.healthy = Gauge("tenbin_agent_gpu_healthy", "1 healthy, 0 unhealthy.", labels, registry=self.registry)
        self.memory = Gauge("tenbin_agent_gpu_memory_total_mib", "Framebuffer memory of the GPU (MiB).", labels,
                            registry=self.registry)
        self.mig = Gauge("tenbin_agent_gpu_mig_devices", "MIG instances on the GPU (0: MIG disabled).", labels,
                         registry=self.registry)
        self.publishes = Counter("tenbin_agent_node_patches", "Node metadata patches, by result.", ["result"],
                                 registry=self.registry)
        self.last_publish = Gauge("tenbin_agent_last_patch_timestamp_seconds", "Time of the last successful patch.",
                                  registry=self.registry)

    def observe(self, gpus: list[GPUInfo] | None) -> None:
        self.nvml_up.set(0 if gpus is None else 1)
        for gauge in (self.healthy, self.memory, self.mig):
            gauge.clear()
        if gpus is None:
            return
        self.gpus.set(len(gpus))
        self.unhealthy.set(sum(1 for g in gpus if not g.healthy))
        for g in gpus:
            lv = (str(g.index), g.uuid or "", g.name or "")
            self.healthy.labels(*lv).set(1 if g.healthy else 0)
            if g.memory_mib is not None:
                self.memory.labels(*lv).set(g.memory_mib)
            self.mig.labels(*lv).set(g.mig_devices)

    def published(self, ok: bool, when: float) -> None:
        self.publishes.labels("ok" if ok else "error").inc()
        if ok:
            self.last_publish.set(when)


@contextlib.contextmanager
def serve_metrics(metrics: AgentMetrics | None, address: str, port: int) -> Iterator[int | None]:
    """Serve /metrics while the block runs; yields the bound port (None when disabled)."""
    if metrics is None or port < 0:
        yield None
        return
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=address, registry=metrics.registry)
    try:
        log.info("serving /metrics on %s:%d", address, server.server_port)
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---- the agent ---------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Agent:
    """Read GPUs, patch the Node; :meth:`run` loops until ``stop`` is set. No Kubernetes or NVML globals: both
    come in as parameters, so tests hand in a fake NVML and a client for a test apiserver."""

    nvml: Any
    publisher: NodePublisher | None
    node: str
    interval_s: float = 30.0
    node_labels: bool = True
    metrics: AgentMetrics | None = None
    ignored_xids: frozenset[int] = APPLICATION_XIDS
    clock: Callable[[], datetime] = _now
    iterations: int = 0
    last_error: str | None = None
    _reader: GPUReader = field(init=False)

    def __post_init__(self) -> None:
        self._reader = GPUReader(self.nvml, ignored_xids=self.ignored_xids)

    def _publish(self, body: dict[str, Any]) -> bool:
        if self.publisher is None:
            return False
        try:
            self.publisher.patch(self.node, body)
        except Exception as e:  # any API failure: report and carry on; the next iteration retries
            self.last_error = api_error_text(e)
            log.error("could not patch node %s: %s", self.node, self.last_error)
            if self.metrics:
                self.metrics.published(False, 0)
            return False
        if self.metrics:
            self.metrics.published(True, self.clock().timestamp())
        return True

    def start(self) -> int:
        """Open NVML. On failure log one line, record it on the Node if possible, return the exit code."""
        try:
            self._reader.open()
        except NoDriverError as e:
            log.error("no NVIDIA driver: %s", e)
            if self.metrics:
                self.metrics.observe(None)
            self._publish(status_patch(STATUS_NO_DRIVER, f"no NVIDIA driver: {e}", self.clock()))
            return EXIT_NO_DRIVER
        except NVMLInitError as e:
            log.error("NVML failed to initialise: %s", e)
            if self.metrics:
                self.metrics.observe(None)
            self._publish(status_patch(STATUS_NVML_ERROR, f"NVML failed to initialise: {e}", self.clock()))
            return EXIT_NVML
        return EXIT_OK

    def step(self) -> bool:
        """One read + patch. Returns whether the patch succeeded."""
        self.iterations += 1
        try:
            gpus = self._reader.read()
        except Exception as e:  # NVML stopped answering (driver crash, GPU lost): say so, keep looping
            text = nvml_error_text(e)
            log.error("reading GPUs failed: %s", text)
            if self.metrics:
                self.metrics.observe(None)
            return self._publish(status_patch(STATUS_NVML_ERROR, f"reading GPUs failed: {text}", self.clock()))
        if self.metrics:
            self.metrics.observe(gpus)
        driver = None
        with contextlib.suppress(Exception):
            driver = str(self.nvml.nvmlSystemGetDriverVersion())
        bad = [g for g in gpus if not g.healthy]
        if bad:
            log.warning("%d/%d GPU(s) unhealthy: %s", len(bad), len(gpus),
                        "; ".join(f"GPU {g.index}: {', '.join(g.problems)}" for g in bad))
        return self._publish(gpu_patch(gpus, self.clock(), node_labels=self.node_labels, driver_version=driver))

    def stop(self) -> None:
        self._reader.close()

    def run(self, stop: threading.Event, once: bool = False) -> int:
        code = self.start()
        if code != EXIT_OK:
            return code
        try:
            ok = self.step()
            if once:
                return EXIT_OK if ok else EXIT_KUBE
            while not stop.wait(self.interval_s):  # the loop's cadence; a stop request ends the wait early
                self.step()
            return EXIT_OK
        finally:
            self.stop()


# ---- command line --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tenbin agent",
        description="Read this node's GPUs with NVML and publish GFD labels and Tenbin health annotations on its "
                    "Node. Exit codes: 0 ok, 1 internal error, 2 usage, 3 no NVIDIA driver, 4 Kubernetes API "
                    "unusable, 5 NVML init failed.",
    )
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME"),
                   help="the Node to patch (default: $NODE_NAME, set it from spec.nodeName in the DaemonSet)")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig file (default: in-cluster credentials in a pod, else $KUBECONFIG/~/.kube/config)")
    p.add_argument("--interval", type=float, default=30.0, metavar="SECONDS",
                   help="seconds between reads (default 30)")
    p.add_argument("--once", action="store_true", help="read and patch once, then exit")
    p.add_argument("--no-node-labels", dest="node_labels", action="store_false",
                   help="write only the tenbin.io annotations (GPU Feature Discovery already labels the node)")
    p.add_argument("--metrics-port", type=int, default=-1, metavar="PORT",
                   help="serve Prometheus /metrics on this port (0: any free port; default: off)")
    p.add_argument("--metrics-address", default="0.0.0.0", metavar="ADDR",
                   help="address for /metrics (default 0.0.0.0; tests use 127.0.0.1)")
    p.add_argument("--ignore-xid", type=int, action="append", metavar="XID",
                   help="an XID that does not make a GPU unhealthy (repeatable; default: the application XIDs "
                        + ",".join(map(str, sorted(APPLICATION_XIDS))) + ")")
    p.add_argument("--nvml-module", default="pynvml", metavar="MODULE",
                   help="Python module with pynvml's API (default pynvml; tests pass a fake)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tenbin-agent %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def agent_command(argv: list[str]) -> int:
    parser = build_parser()
    if argv[:1] == ["--"]:  # `tenbin agent -- --once ...`
        argv = argv[1:]
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2)
        return int(e.code or 0)
    _setup_logging(args.log_level)
    if not args.node_name:
        parser.print_usage(sys.stderr)
        print("tenbin agent: error: --node-name (or $NODE_NAME) is required", file=sys.stderr)
        return EXIT_USAGE
    if args.interval <= 0:
        print("tenbin agent: error: --interval must be > 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _run(args)
    except Exception as e:
        log.error("internal error: %s: %s", type(e).__name__, e, exc_info=log.isEnabledFor(logging.DEBUG))
        return EXIT_INTERNAL


def _run(args: argparse.Namespace) -> int:
    try:
        nvml = importlib.import_module(args.nvml_module)
    except ImportError as e:
        log.error("no NVIDIA driver: cannot import NVML binding %r: %s", args.nvml_module, e)
        return EXIT_NO_DRIVER
    try:
        api_client = load_api_client(args.kubeconfig)
    except Exception as e:
        log.error("no Kubernetes credentials: %s", api_error_text(e))
        api_client = None
    publisher = KubeNodePublisher(api_client) if api_client is not None else None
    ignored = frozenset(args.ignore_xid) if args.ignore_xid is not None else APPLICATION_XIDS
    metrics = AgentMetrics() if args.metrics_port >= 0 else None
    agent = Agent(nvml=nvml, publisher=publisher, node=args.node_name, interval_s=args.interval,
                  node_labels=args.node_labels, metrics=metrics, ignored_xids=ignored)
    if publisher is None:  # still find out whether there is a driver: that exit code says more
        code = agent.start()
        agent.stop()
        return code if code != EXIT_OK else EXIT_KUBE
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with serve_metrics(metrics, args.metrics_address, args.metrics_port):
            code = agent.run(stop, once=args.once)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if api_client is not None:
            with contextlib.suppress(Exception):
                api_client.close()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(agent_command(sys.argv[1:]))
