"""The PlacementPolicy's attestations (`tenbin.scheduling.attestations`): a label an attestation names is the
policy's — held exactly while an attestation covering the cluster has not lapsed — and every other label is
the cluster's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helpers import cluster, policy_doc
from tenbin.api import PlacementPolicy, parse_object
from tenbin.scheduling.attestations import attested, lapsing

NOW = datetime(2027, 3, 1, tzinfo=UTC)


def policy(*attestations: dict[str, Any], warning_days: int = 30) -> PlacementPolicy:
    doc = policy_doc()
    doc["spec"]["attestations"] = list(attestations)
    doc["spec"]["attestationWarningDays"] = warning_days
    p = parse_object(doc)
    assert isinstance(p, PlacementPolicy)
    return p


def ismap(until: datetime, **covers: Any) -> dict[str, Any]:
    return {"label": "ismap", "validUntil": until.isoformat(), "evidence": "ISMAP register C23-0001", **covers}


FLEET = [cluster("sakura", provider="sakura", residency_labels=["ismap", "iso27017"]),
         cluster("kddi", provider="kddi", residency_labels=[]),
         cluster("claims-it", provider="other", residency_labels=["ismap"])]


def labels(p: PlacementPolicy | None, at: datetime = NOW) -> dict[str, list[str]]:
    out, _ = attested(FLEET, p, at)
    return {c.metadata.name: list(c.spec.residency_labels) for c in out}


def test_without_attestations_the_clusters_labels_are_their_own() -> None:
    assert labels(None) == labels(policy()) == {"sakura": ["ismap", "iso27017"], "kddi": [], "claims-it": ["ismap"]}


def test_an_attested_label_is_held_only_through_an_attestation_that_has_not_lapsed() -> None:
    p = policy(ismap(NOW + timedelta(days=10), providers=["sakura"]), ismap(NOW + timedelta(days=99),
                                                                             clusters=["kddi"]))
    assert labels(p) == {"sakura": ["iso27017", "ismap"], "kddi": ["ismap"], "claims-it": []}  # its own claim: not
    assert labels(p, NOW + timedelta(days=10)) == {"sakura": ["iso27017"], "kddi": ["ismap"], "claims-it": []}
    assert labels(p, NOW + timedelta(days=100))["kddi"] == []


def test_the_next_change_is_the_earliest_lapse_still_ahead() -> None:
    p = policy(ismap(NOW + timedelta(days=10), providers=["sakura"]), ismap(NOW - timedelta(days=1),
                                                                             clusters=["kddi"]))
    assert attested(FLEET, p, NOW)[1] == NOW + timedelta(days=10)
    assert attested(FLEET, p, NOW + timedelta(days=11))[1] is None


def test_lapsing_is_the_warning_window() -> None:
    p = policy(ismap(NOW + timedelta(days=10), providers=["sakura"]), warning_days=7)
    assert not lapsing(FLEET[0], p, NOW)
    assert [a.label for a in lapsing(FLEET[0], p, NOW + timedelta(days=4))] == ["ismap"]
    assert not lapsing(FLEET[0], p, NOW + timedelta(days=10))  # lapsed: no longer "lapsing"
    assert not lapsing(FLEET[1], p, NOW + timedelta(days=4))  # does not cover kddi


def test_an_attestation_must_cover_something() -> None:
    doc = policy_doc()
    doc["spec"]["attestations"] = [ismap(NOW)]
    with pytest.raises(ValueError) as e:
        parse_object(doc)
    assert "spec.attestations[0]" in str(e.value) and "clusters" in str(e.value)
