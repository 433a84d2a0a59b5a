"""Parsing Prometheus answers and assembling snapshots; the source's query set and its no-raise contract."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_api_client import PrometheusApiClientException

from tenbin.api.telemetry import PrometheusTelemetry, TelemetrySpec
from tenbin.inventory.telemetry import (
    DEFAULT_QUERIES,
    PrometheusTelemetrySource,
    build_snapshot,
    gpu_key,
    parse_vector,
)


def item(value: Any, ts: float = 100.0, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [ts, value]}


def test_parse_vector_keys_by_node_and_gpu_and_skips_bad_series() -> None:
    result = [
        item("42", Hostname="n1", gpu="0", UUID="GPU-x"),
        item("7", Hostname="n1", gpu="1"),
        item("NaN", Hostname="n1", gpu="2"),  # DCGM blank
        item("+Inf", Hostname="n1", gpu="3"),
        item("5", gpu="4"),  # no node label
        item("oops", Hostname="n1", gpu="5"),
        {"metric": {"Hostname": "n1"}},  # no value
        "garbage",
    ]
    values, skipped = parse_vector(result, "Hostname")
    assert values == {("n1", "0"): 42.0, ("n1", "1"): 7.0}
    assert skipped == 6


def test_parse_vector_duplicate_series_keep_the_largest() -> None:
    result = [item("10", node="n1", gpu="0", pod="a"), item("90", node="n1", gpu="0", pod="b")]
    assert parse_vector(result, "node")[0] == {("n1", "0"): 90.0}


@pytest.mark.parametrize(("labels", "key"), [
    ({"gpu": "3", "UUID": "GPU-a", "device": "nvidia3"}, "3"),
    ({"UUID": "GPU-a", "device": "nvidia3"}, "GPU-a"),
    ({"device": "nvidia3"}, "nvidia3"),
    ({}, ""),
])
def test_gpu_key(labels: dict[str, str], key: str) -> None:
    assert gpu_key(labels) == key


def test_parse_vector_non_list_is_empty() -> None:
    assert parse_vector(None, "Hostname") == ({}, 0)
    assert parse_vector({"resultType": "matrix"}, "Hostname") == ({}, 0)


def test_build_snapshot_joins_queries_and_converts_units() -> None:
    results = {
        "utilization": [item("150", Hostname="n1", gpu="0"), item("50", Hostname="n1", gpu="1")],
        "fb_free": [item("1000", Hostname="n1", gpu="0")],
        "fb_used": [item("79000", Hostname="n1", gpu="0")],
        "xid_errors": [item("79", Hostname="n1", gpu="1")],
    }
    stamps = [item("95.5", Hostname="n1", gpu="0")]
    snap = build_snapshot(results, stamps, "Hostname", source="s", max_age_s=30, fetched_at=100.0)
    g0, g1 = snap.gpus
    assert (g0.node, g0.gpu, g0.utilization, g0.fb_free_mib, g0.fb_used_mib, g0.xid, g0.timestamp) == \
        ("n1", "0", 1.0, 1000.0, 79000.0, None, 95.5)
    assert (g1.utilization, g1.xid, g1.timestamp) == (0.5, 79, None)
    assert snap.max_age_s == 30 and snap.source == "s" and snap.error is None


class FakeConnect:
    """Stands in for PrometheusConnect: records queries, answers from a table or raises."""

    def __init__(self, answers: dict[str, Any] | None = None, exc: BaseException | None = None) -> None:
        self.answers, self.exc, self.queries = answers or {}, exc, []  # type: ignore[var-annotated]

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any:
        self.queries.append(query)
        if self.exc is not None:
            raise self.exc
        return self.answers.get(query, [])


def test_source_runs_default_queries_then_timestamps() -> None:
    fake = FakeConnect()
    src = PrometheusTelemetrySource("http://p:9090/", connect=fake, clock=lambda: 50.0)
    snap = src.fetch()
    assert fake.queries == [*DEFAULT_QUERIES.values(), "timestamp(DCGM_FI_DEV_GPU_UTIL)"]
    assert snap.error is None and snap.gpus == () and snap.fetched_at == 50.0 and snap.source == "http://p:9090"


def test_source_from_spec_applies_overrides_and_node_label() -> None:
    spec = TelemetrySpec.model_validate({"prometheus": {
        "url": "https://prom.example:9090", "nodeLabel": "node", "maxAgeSeconds": 30,
        "queries": {"utilization": 'avg by (node, gpu) (DCGM_FI_DEV_GPU_UTIL{job="dcgm"})'},
    }})
    assert spec.prometheus is not None
    fake = FakeConnect({'avg by (node, gpu) (DCGM_FI_DEV_GPU_UTIL{job="dcgm"})': [item("100", node="n", gpu="0")]})
    src = PrometheusTelemetrySource.from_spec(spec.prometheus, token="t", connect=fake)
    assert (src.node_label, src.max_age_s) == ("node", 30.0)
    assert src.queries["fb_free"] == DEFAULT_QUERIES["fb_free"]
    snap = src.fetch()
    assert [(g.node, g.utilization) for g in snap.gpus] == [("n", 1.0)]
    assert fake.queries[-1] == 'timestamp(avg by (node, gpu) (DCGM_FI_DEV_GPU_UTIL{job="dcgm"}))'


def test_unknown_query_override_is_rejected() -> None:
    with pytest.raises(ValueError, match="bogus"):
        PrometheusTelemetrySource("http://p", queries={"bogus": "up"})


@pytest.mark.parametrize(("exc", "kind"), [
    (PrometheusApiClientException("HTTP Status Code 400 (b'bad_data')"), "QueryFailed"),
    (ConnectionError("connection refused"), "Unreachable"),
    (TimeoutError("read timed out"), "Unreachable"),
    (RuntimeError("anything else"), "Unreachable"),
])
def test_source_never_raises(exc: BaseException, kind: str) -> None:
    snap = PrometheusTelemetrySource("http://p", connect=FakeConnect(exc=exc)).fetch()
    assert snap.error_kind == kind and snap.error is not None and type(exc).__name__ in snap.error
    assert snap.gpus == ()


@pytest.mark.parametrize("doc", [
    {"url": "ftp://x"},
    {"url": "http://"},
    {"url": "http://a b"},
    {"url": "http://p", "nodeLabel": "1bad"},
    {"url": "http://p", "maxAgeSeconds": 0},
    {"url": "http://p", "maxAgeSeconds": 3601},
    {"url": "http://p", "maxAgeSeconds": "60"},
    {"url": "http://p", "queries": {"utilization": ""}},
    {"url": "http://p", "queries": {"power": "x"}},
    {"url": "http://p", "authSecretRef": {"name": "s"}},
    {"url": "http://p", "extra": 1},
    {"url": "http://" + "a" * 2048},
])
def test_prometheus_spec_rejects(doc: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PrometheusTelemetry.model_validate(doc)


def test_prometheus_spec_defaults() -> None:
    p = PrometheusTelemetry.model_validate({"url": "http://prometheus.monitoring:9090",
                                            "authSecretRef": {"namespace": "tenbin-system", "name": "prom"}})
    assert (p.node_label, p.max_age_seconds, p.queries) == ("Hostname", 120, None)
    assert p.auth_secret_ref is not None and p.auth_secret_ref.key == "token"
    assert p.model_dump(exclude_none=True) == {
        "url": "http://prometheus.monitoring:9090", "nodeLabel": "Hostname", "maxAgeSeconds": 120,
        "authSecretRef": {"namespace": "tenbin-system", "name": "prom", "key": "token"},
    }
