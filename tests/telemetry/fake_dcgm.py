"""A test exporter that serves DCGM-exporter-style series on loopback, controlled by the test.

Series and labels follow NVIDIA's dcgm-exporter: ``DCGM_FI_DEV_GPU_UTIL`` (percent),
``DCGM_FI_DEV_FB_FREE`` / ``DCGM_FI_DEV_FB_USED`` (MiB) and ``DCGM_FI_DEV_XID_ERRORS`` (the last XID code),
each with ``gpu``, ``UUID``, ``device``, ``modelName`` and ``Hostname`` labels.

Like dcgm-exporter, samples carry no timestamps by default: Prometheus stamps them with the scrape time and,
when a scrape fails, marks the series stale at once. With ``explicit_timestamps`` the exporter stamps each
sample itself (as federation and some agents do); Prometheus then writes no staleness markers, and
``freeze()`` stops the stamps advancing — the "samples older than max age" case, as when an exporter or a
federation link hangs while Prometheus keeps answering with the last samples for its 5-minute lookback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LABELS = ["gpu", "UUID", "device", "modelName", "Hostname"]


@dataclass
class FakeGPU:
    util: float = 0.0
    fb_free: float = 81000.0
    fb_used: float = 500.0
    xid: int = 0
    model: str = "NVIDIA H100 80GB HBM3"


class FakeDCGM(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gpus: dict[tuple[str, int], FakeGPU] = {}
        self._frozen_at: float | None = None
        self.explicit_timestamps = False  # set before the first scrape of a series; switching marks it stale

    def add_node(self, node: str, gpus: int = 8, **kw: Any) -> None:
        with self._lock:
            for i in range(gpus):
                self._gpus[(node, i)] = FakeGPU(**kw)

    def set(self, node: str, gpu: int | None = None, **kw: Any) -> None:
        """Change fields of one GPU (or every GPU of the node when ``gpu`` is None)."""
        with self._lock:
            for (n, i), g in self._gpus.items():
                if n == node and (gpu is None or gpu == i):
                    for k, v in kw.items():
                        setattr(g, k, v)

    def freeze(self) -> float:
        """Stop the sample stamps advancing (needs ``explicit_timestamps``)."""
        assert self.explicit_timestamps, "freeze() needs explicit_timestamps"
        with self._lock:
            self._frozen_at = time.time()
            return self._frozen_at

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            gpus = sorted(self._gpus.items())
            ts = (self._frozen_at or time.time()) if self.explicit_timestamps else None
        fams = {
            "util": GaugeMetricFamily("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", labels=LABELS),
            "fb_free": GaugeMetricFamily("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", labels=LABELS),
            "fb_used": GaugeMetricFamily("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", labels=LABELS),
            "xid": GaugeMetricFamily("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.",
                                     labels=LABELS),
        }
        for (node, i), g in gpus:
            labels = [str(i), f"GPU-{node}-{i}", f"nvidia{i}", g.model, node]
            for key, fam in fams.items():
                fam.add_metric(labels, float(getattr(g, key)), timestamp=ts)
        yield from fams.values()


class Exporter:
    """FakeDCGM served over HTTP on 127.0.0.1; ``stop()`` shuts the server down and closes its socket."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dcgm = FakeDCGM()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.dcgm)
        self._server, self._thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None  # type: ignore[assignment]
