"""Live GPU telemetry from Prometheus (NVIDIA DCGM exporter series) and how it adjusts a cluster's inventory.

Two halves, kept apart so the decision is unit-testable:

* I/O — :class:`PrometheusTelemetrySource` runs a few instant queries with prometheus-api-client and returns
  a :class:`TelemetrySnapshot`. It never raises: an unreachable server or a failed query is recorded in the
  snapshot's ``error``.
* Pure — :func:`apply_telemetry` takes the API inventory, a snapshot and the current time and returns the
  adjusted inventory; :func:`telemetry_condition` says whether telemetry was usable (the GPUCluster
  ``TelemetryAvailable`` condition). Stale, missing or failed telemetry leaves the API inventory unchanged.

What telemetry changes, per node, using only that node's *fresh* GPUs (newest sample younger than max age):

* a GPU whose most recent XID error is a hardware/driver XID (not an application XID such as 13 or 43) is
  unhealthy: ``unhealthy = max(API annotation, telemetry)``, so it stops counting as free;
* a GPU that is busy (utilization or framebuffer use above the idle thresholds) but that Kubernetes counts
  as free is taken by something outside Kubernetes' accounting: ``allocated = max(API allocated, busy)``;
* an allocated GPU that is idle stays allocated (the device plugin will not hand it out twice); it only
  lowers the node's recorded utilization and is counted in the note;
* ``utilization`` is the mean utilization (0..1) of the node's fresh GPUs, for the availability score.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from tenbin.inventory.model import ClusterInventory, NodeGPUs

if TYPE_CHECKING:
    from tenbin.api.telemetry import PrometheusTelemetry

# --- defaults ---------------------------------------------------------------------------------------------

DEFAULT_NODE_LABEL = "Hostname"
DEFAULT_MAX_AGE_S = 120.0
XID_WINDOW = "10m"
GPU_LABELS = ("gpu", "UUID", "device")  # the first one present identifies a GPU within its node

# The DCGM exporter's default field names. Raw selectors on purpose: `timestamp(<selector>)` then yields the
# real sample times, which is how staleness is measured.
DEFAULT_QUERIES: Mapping[str, str] = {
    "utilization": "DCGM_FI_DEV_GPU_UTIL",
    "fb_free": "DCGM_FI_DEV_FB_FREE",
    "fb_used": "DCGM_FI_DEV_FB_USED",
    # The XID gauge keeps the last XID code until the driver reloads; only a recent change is news.
    "xid_errors": f"DCGM_FI_DEV_XID_ERRORS and (changes(DCGM_FI_DEV_XID_ERRORS[{XID_WINDOW}]) > 0)",
}
QUERY_KEYS = ("utilization", "fb_free", "fb_used", "xid_errors")

# XIDs caused by the application, not the GPU (as NVIDIA's k8s-device-plugin skips them by default):
# 13 graphics engine exception, 31 GPU memory page fault, 43 GPU stopped processing,
# 45 preemptive cleanup, 68 video processor exception, 109 context switch timeout.
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})

IDLE_UTILIZATION = 0.05  # at or below: the GPU computes nothing worth mentioning
BUSY_MEMORY_FRACTION = 0.10  # above: some process holds the GPU's memory, even between kernels

MAX_NOTE_ITEMS = 5

ConditionReason = Literal["Fresh", "Partial", "Unreachable", "QueryFailed", "Stale", "NoData", "NoGPUNodes"]


# --- data -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GPUTelemetry:
    """What the telemetry says about one GPU. Any field may be unknown (None)."""

    node: str
    gpu: str
    utilization: float | None = None  # 0..1
    fb_free_mib: float | None = None
    fb_used_mib: float | None = None
    xid: int | None = None  # most recent XID code, only when it changed recently; 0/None: none
    timestamp: float | None = None  # unix seconds of the newest sample; None: unknown (treated as fresh)

    @property
    def memory_fraction(self) -> float | None:
        if self.fb_free_mib is None or self.fb_used_mib is None:
            return None
        total = self.fb_free_mib + self.fb_used_mib
        return self.fb_used_mib / total if total > 0 else None

    def critical_xid(self, ignored: frozenset[int] = APPLICATION_XIDS) -> int | None:
        if self.xid is None or self.xid <= 0 or self.xid in ignored:
            return None
        return self.xid

    def busy(self) -> bool:
        if self.utilization is not None and self.utilization > IDLE_UTILIZATION:
            return True
        mem = self.memory_fraction
        return mem is not None and mem > BUSY_MEMORY_FRACTION


@dataclass(frozen=True)
class TelemetrySnapshot:
    """One read of the telemetry source: per-GPU data, or why there is none."""

    gpus: tuple[GPUTelemetry, ...] = ()
    error: str | None = None  # the source could not be read at all
    error_kind: Literal["Unreachable", "QueryFailed"] | None = None
    source: str = "telemetry"  # for messages: the Prometheus URL
    max_age_s: float = DEFAULT_MAX_AGE_S
    fetched_at: float | None = None
    skipped_series: int = 0  # series without the node label

    @classmethod
    def failed(cls, source: str, kind: Literal["Unreachable", "QueryFailed"], error: str,
               max_age_s: float = DEFAULT_MAX_AGE_S, fetched_at: float | None = None) -> TelemetrySnapshot:
        return cls(error=error, error_kind=kind, source=source, max_age_s=max_age_s, fetched_at=fetched_at)


@dataclass(frozen=True)
class NodeEffect:
    """How telemetry changed one node (for the note and for tests)."""

    node: str
    fresh_gpus: int
    unhealthy: int = 0  # GPUs with a recent critical XID
    busy_unaccounted: int = 0  # busy GPUs Kubernetes counted as free
    idle_allocated: int = 0
    xids: tuple[tuple[str, int], ...] = ()  # (gpu, xid)


@dataclass(frozen=True)
class TelemetryAssessment:
    """The verdict on a snapshot against an inventory at a time: usable or not, and what it changes."""

    available: bool
    reason: ConditionReason
    message: str
    fresh: Mapping[str, tuple[GPUTelemetry, ...]] = field(default_factory=dict)  # inventory node -> fresh GPUs
    stale_nodes: tuple[str, ...] = ()
    missing_nodes: tuple[str, ...] = ()


# --- parsing Prometheus answers -------------------------------------------------------------------------


def _number(raw: Any) -> float | None:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def gpu_key(labels: Mapping[str, str]) -> str:
    """Identity of a GPU within its node: the first of the ``gpu``, ``UUID``, ``device`` labels present."""
    for name in GPU_LABELS:
        v = labels.get(name)
        if v:
            return str(v)
    return ""


def parse_vector(result: Any, node_label: str) -> tuple[dict[tuple[str, str], float], int]:
    """Parse an instant-vector answer (``[{"metric": {...}, "value": [ts, "v"]}, ...]``).

    Returns ``{(node, gpu): value}`` and the number of series skipped (no node label, value not a finite
    number, malformed entry). Several series for one GPU (pod-mapping labels, two scrapers) keep the largest.
    """
    out: dict[tuple[str, str], float] = {}
    skipped = 0
    if not isinstance(result, list):
        return out, 0
    for item in result:
        if not isinstance(item, Mapping):
            skipped += 1
            continue
        labels = item.get("metric") or {}
        value = item.get("value")
        node = labels.get(node_label) if isinstance(labels, Mapping) else None
        v = _number(value[1]) if isinstance(value, (list, tuple)) and len(value) == 2 else None
        if not node or v is None:
            skipped += 1
            continue
        key = (str(node), gpu_key(labels))
        out[key] = max(out[key], v) if key in out else v
    return out, skipped


def build_snapshot(
    results: Mapping[str, Any], timestamps: Any, node_label: str, *, source: str = "telemetry",
    max_age_s: float = DEFAULT_MAX_AGE_S, fetched_at: float | None = None,
) -> TelemetrySnapshot:
    """Assemble a snapshot from the raw answers to the four queries and to the ``timestamp()`` query.

    ``results`` maps ``utilization``/``fb_free``/``fb_used``/``xid_errors`` to instant-vector answers.
    Utilization arrives in percent and is stored as 0..1 (clamped).
    """
    parsed: dict[str, dict[tuple[str, str], float]] = {}
    skipped = 0
    for key in QUERY_KEYS:
        values, s = parse_vector(results.get(key) or [], node_label)
        parsed[key] = values
        skipped += s
    stamps, _ = parse_vector(timestamps or [], node_label)
    gpus: list[GPUTelemetry] = []
    keys = sorted(set().union(*(set(p) for p in parsed.values())))
    for k in keys:
        util = parsed["utilization"].get(k)
        xid = parsed["xid_errors"].get(k)
        gpus.append(GPUTelemetry(
            node=k[0], gpu=k[1],
            utilization=None if util is None else min(1.0, max(0.0, util / 100.0)),
            fb_free_mib=parsed["fb_free"].get(k),
            fb_used_mib=parsed["fb_used"].get(k),
            xid=None if xid is None else int(xid),
            timestamp=stamps.get(k),
        ))
    return TelemetrySnapshot(tuple(gpus), source=source, max_age_s=max_age_s, fetched_at=fetched_at,
                             skipped_series=skipped)


# --- the pure adjustment --------------------------------------------------------------------------------


def _match_nodes(inventory_nodes: Iterable[str], telemetry_nodes: Iterable[str]) -> dict[str, str]:
    """telemetry node name -> inventory node name: exact, else the unique short-hostname match."""
    inv = list(inventory_nodes)
    exact = set(inv)
    short: dict[str, list[str]] = {}
    for n in inv:
        short.setdefault(n.split(".")[0].lower(), []).append(n)
    out: dict[str, str] = {}
    for t in telemetry_nodes:
        if t in exact:
            out[t] = t
            continue
        cands = short.get(t.split(".")[0].lower(), [])
        if len(cands) == 1:
            out[t] = cands[0]
    return out


def _few(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NOTE_ITEMS])
    return shown + (f" and {len(items) - MAX_NOTE_ITEMS} more" if len(items) > MAX_NOTE_ITEMS else "")


def assess(inv: ClusterInventory, telemetry: TelemetrySnapshot, now: float) -> TelemetryAssessment:
    """Decide whether ``telemetry`` is usable for ``inv`` at ``now``, and which GPUs of each node are fresh."""
    src = telemetry.source
    if telemetry.error is not None:
        kind = telemetry.error_kind or "Unreachable"
        return TelemetryAssessment(False, kind, f"{src}: {telemetry.error}; using API inventory")
    names = [n.node for n in inv.nodes]
    if not names:
        return TelemetryAssessment(False, "NoGPUNodes", f"{src}: the cluster has no GPU nodes")
    by_tnode: dict[str, list[GPUTelemetry]] = {}
    for g in telemetry.gpus:
        by_tnode.setdefault(g.node, []).append(g)
    mapping = _match_nodes(names, by_tnode)
    per_node: dict[str, list[GPUTelemetry]] = {}
    for tnode, gs in by_tnode.items():
        if tnode in mapping:
            per_node.setdefault(mapping[tnode], []).extend(gs)

    fresh: dict[str, tuple[GPUTelemetry, ...]] = {}
    stale: list[str] = []
    missing: list[str] = []
    oldest_age: float | None = None
    for name in names:
        node_gpus = per_node.get(name)
        if not node_gpus:
            missing.append(name)
            continue
        ok = tuple(g for g in node_gpus if g.timestamp is None or now - g.timestamp <= telemetry.max_age_s)
        if ok:
            fresh[name] = ok
        else:
            stale.append(name)
            age = now - max(g.timestamp for g in node_gpus if g.timestamp is not None)
            oldest_age = age if oldest_age is None else max(oldest_age, age)

    if not fresh:
        if stale:
            msg = (f"{src}: GPU samples are stale (newest {oldest_age:.0f}s old, max age "
                   f"{telemetry.max_age_s:.0f}s) on {_few(stale)}; using API inventory")
            return TelemetryAssessment(False, "Stale", msg, stale_nodes=tuple(stale), missing_nodes=tuple(missing))
        extra = f" ({telemetry.skipped_series} series lacked the node label or a number)" \
            if telemetry.skipped_series else ""
        msg = f"{src}: no GPU series for any of the cluster's {len(names)} GPU nodes{extra}; using API inventory"
        return TelemetryAssessment(False, "NoData", msg, missing_nodes=tuple(missing))
    if stale or missing:
        parts = []
        if stale:
            parts.append(f"stale on {_few(stale)}")
        if missing:
            parts.append(f"missing on {_few(missing)}")
        msg = f"{src}: fresh on {len(fresh)}/{len(names)} GPU nodes; {'; '.join(parts)} (API inventory there)"
        return TelemetryAssessment(True, "Partial", msg, fresh, tuple(stale), tuple(missing))
    return TelemetryAssessment(True, "Fresh", f"{src}: fresh on all {len(names)} GPU nodes", fresh)


def adjust_node(node: NodeGPUs, gpus: Sequence[GPUTelemetry],
                ignored_xids: frozenset[int] = APPLICATION_XIDS) -> tuple[NodeGPUs, NodeEffect]:
    """One node's inventory adjusted by its fresh GPU telemetry (see the module docstring for the rules)."""
    # a GPU reported twice (by UUID and by index from two queries) cannot be told apart: trust capacity
    gpus = gpus[: max(node.capacity, 0)]
    xids = tuple((g.gpu, x) for g in gpus if (x := g.critical_xid(ignored_xids)) is not None)
    tel_unhealthy = len(xids)
    unhealthy = min(node.capacity, max(node.unhealthy, tel_unhealthy))
    healthy = [g for g in gpus if g.critical_xid(ignored_xids) is None]
    busy = sum(1 for g in healthy if g.busy())
    usable = max(0, node.allocatable - unhealthy) if node.ready and node.schedulable else 0
    allocated = max(node.allocated, min(busy, usable)) if usable else node.allocated
    utils = [g.utilization for g in gpus if g.utilization is not None]
    utilization = sum(utils) / len(utils) if utils else node.utilization
    memory = node.memory_mib
    if memory is None:
        totals = [g.fb_free_mib + g.fb_used_mib for g in gpus
                  if g.fb_free_mib is not None and g.fb_used_mib is not None]
        memory = int(max(totals)) if totals else None
    effect = NodeEffect(
        node=node.node, fresh_gpus=len(gpus), unhealthy=tel_unhealthy,
        busy_unaccounted=max(0, allocated - node.allocated),
        idle_allocated=max(0, min(node.allocated, len(healthy)) - busy),
        xids=xids,
    )
    return replace(node, unhealthy=unhealthy, allocated=allocated, utilization=utilization,
                   memory_mib=memory), effect


def _note(assessment: TelemetryAssessment, effects: Sequence[NodeEffect]) -> str:
    parts = [assessment.message]
    bad = [f"{e.node} gpu {g} XID {x}" for e in effects for g, x in e.xids]
    if bad:
        parts.append(f"{len(bad)} GPU(s) unhealthy: {_few(bad)}")
    busy = sum(e.busy_unaccounted for e in effects)
    if busy:
        parts.append(f"{busy} GPU(s) busy but free in Kubernetes' accounting (counted as allocated)")
    idle = sum(e.idle_allocated for e in effects)
    if idle:
        parts.append(f"{idle} GPU(s) allocated but idle")
    return "; ".join(parts)


def apply_telemetry(inv: ClusterInventory, telemetry: TelemetrySnapshot | None, now: float,
                    ignored_xids: frozenset[int] = APPLICATION_XIDS) -> ClusterInventory:
    """The API inventory adjusted by fresh telemetry. Pure: the clock is ``now`` (unix seconds).

    No telemetry configured (``None``): ``inv`` unchanged. Telemetry unusable (source unreachable, query
    failed, no series, every sample older than the max age): ``inv``'s nodes unchanged and ``telemetry_note``
    saying why. Otherwise nodes with fresh GPU samples are adjusted; the others keep their API values.
    """
    if telemetry is None:
        return inv
    a = assess(inv, telemetry, now)
    if not a.available:
        return inv.with_nodes(inv.nodes, a.message)
    nodes: list[NodeGPUs] = []
    effects: list[NodeEffect] = []
    for n in inv.nodes:
        gs = a.fresh.get(n.node)
        if gs:
            adjusted, effect = adjust_node(n, gs, ignored_xids)
            nodes.append(adjusted)
            effects.append(effect)
        else:
            nodes.append(n)
    return inv.with_nodes(nodes, _note(a, effects))


def telemetry_condition(inv: ClusterInventory, telemetry: TelemetrySnapshot | None, now: float) -> dict[str, str]:
    """The GPUCluster ``TelemetryAvailable`` condition (type, status, reason, message) for this read.

    ``status`` is ``"True"`` when at least one GPU node had fresh telemetry, ``"False"`` when the API
    inventory was used instead, ``"Unknown"`` (reason ``NotConfigured``) when no telemetry is configured.
    """
    if telemetry is None:
        return {"type": "TelemetryAvailable", "status": "Unknown", "reason": "NotConfigured",
                "message": "spec.telemetry is not set; using API inventory"}
    a = assess(inv, telemetry, now)
    return {"type": "TelemetryAvailable", "status": "True" if a.available else "False",
            "reason": a.reason, "message": a.message[:4096]}


# --- I/O: Prometheus --------------------------------------------------------------------------------------


def _short_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(e).__name__}: {first}"[:300]


class PrometheusTelemetrySource:
    """Reads DCGM exporter series from one Prometheus. :meth:`fetch` never raises."""

    def __init__(
        self, url: str, *, node_label: str = DEFAULT_NODE_LABEL, queries: Mapping[str, str | None] | None = None,
        max_age_s: float = DEFAULT_MAX_AGE_S, token: str | None = None, timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time, connect: Any = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.node_label = node_label
        unknown = set(queries or {}) - set(QUERY_KEYS)
        if unknown:
            raise ValueError(f"unknown telemetry queries: {', '.join(sorted(unknown))}")
        self.queries: dict[str, str] = dict(DEFAULT_QUERIES)
        for k, v in (queries or {}).items():
            if v:
                self.queries[k] = v
        self.max_age_s = float(max_age_s)
        self.timeout_s = timeout_s
        self.clock = clock
        self._token = token
        self._connect = connect  # a PrometheusConnect-like object (tests); built lazily otherwise

    @classmethod
    def from_spec(cls, spec: PrometheusTelemetry, token: str | None = None, **kw: Any) -> PrometheusTelemetrySource:
        """From ``GPUCluster.spec.telemetry.prometheus``; ``token`` is the value behind ``authSecretRef``."""
        q = spec.queries
        queries = {k: getattr(q, k) for k in QUERY_KEYS} if q is not None else None
        return cls(spec.url, node_label=spec.node_label, queries=queries, max_age_s=spec.max_age_seconds,
                   token=token, **kw)

    @property
    def freshness_query(self) -> str:
        """Sample times of the utilization series (real sample times for a raw selector)."""
        return f"timestamp({self.queries['utilization']})"

    def _client(self) -> Any:
        if self._connect is None:
            from prometheus_api_client import PrometheusConnect
            from urllib3.util.retry import Retry

            headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
            # one quick retry at most: a sync loop must not hang on a dead Prometheus
            self._connect = PrometheusConnect(url=self.url, headers=headers, retry=Retry(total=1, backoff_factor=0),
                                              timeout=self.timeout_s)
        return self._connect

    def fetch(self) -> TelemetrySnapshot:
        now = self.clock()
        try:
            client = self._client()
        except Exception as e:  # a bad URL or a missing library: telemetry is unavailable, not fatal
            return TelemetrySnapshot.failed(self.url, "Unreachable", _short_error(e), self.max_age_s, now)
        results: dict[str, Any] = {}
        for key, query in [*self.queries.items(), ("__timestamps__", self.freshness_query)]:
            try:
                results[key] = client.custom_query(query, params={"time": f"{now:.3f}"})
            except Exception as e:
                return TelemetrySnapshot.failed(self.url, _error_kind(e), f"query {query!r}: {_short_error(e)}",
                                                self.max_age_s, now)
        stamps = results.pop("__timestamps__")
        return build_snapshot(results, stamps, self.node_label, source=self.url, max_age_s=self.max_age_s,
                              fetched_at=now)


def _error_kind(e: BaseException) -> Literal["Unreachable", "QueryFailed"]:
    try:
        from prometheus_api_client import PrometheusApiClientException
    except ImportError:  # pragma: no cover - the dependency is declared
        return "Unreachable"
    return "QueryFailed" if isinstance(e, PrometheusApiClientException) else "Unreachable"


def read_telemetry(source: PrometheusTelemetrySource | None, inv: ClusterInventory,
                   now: float | None = None) -> tuple[ClusterInventory, dict[str, str]]:
    """Convenience for the inventory sync: fetch, adjust, and the condition, in one call. Never raises."""
    if source is None:
        return inv, telemetry_condition(inv, None, now or time.time())
    snap = source.fetch()
    t = now if now is not None else (snap.fetched_at or time.time())
    return apply_telemetry(inv, snap, t), telemetry_condition(inv, snap, t)
