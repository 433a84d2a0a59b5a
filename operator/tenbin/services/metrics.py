"""Prometheus metrics of the operator (served on /metrics by `tenbin run --metrics-port`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.placements = Counter(
            "tenbin_placements", "Placement decisions by result and reason category",
            ["result", "reason"], registry=r)
        self.placement_latency = Histogram(
            "tenbin_placement_latency_seconds",
            "From AIWorkload creation to its object applied in the chosen member",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=r)
        self.decision_latency = Histogram(
            "tenbin_decision_seconds", "Time the scheduling core takes for one decision",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5), registry=r)
        self.free_gpus = Gauge(
            "tenbin_free_gpus", "Free GPUs per member cluster and model (live inventory)",
            ["cluster", "model"], registry=r)
        self.cluster_ready = Gauge(
            "tenbin_cluster_ready", "1 when the member is Ready", ["cluster"], registry=r)
        self.cost_per_hour = Gauge(
            "tenbin_estimated_cost_per_hour", "Estimated cost per hour of placed, unfinished work, base currency",
            ["namespace", "currency"], registry=r)
        self.member_errors = Counter(
            "tenbin_member_errors", "Failed calls to member clusters", ["cluster", "operation"], registry=r)
        self.member_syncs = Counter(
            "tenbin_member_syncs", "Observation rounds of each member, by result", ["cluster", "result"], registry=r)
        self.migrations = Counter(
            "tenbin_migrations", "Migrations by trigger and result (started, completed, failed, no-target)",
            ["reason", "result"], registry=r)
        self.invalid_specs = Counter(
            "tenbin_invalid_specs", "AIWorkloads rejected by validation", ["field"], registry=r)
