"""An attestation of the PlacementPolicy lapses, driven through the real `Controller` against the in-memory hub
and members: the GPUCluster it covers is warned once inside the warning window, and once it lapses the work
that needs the label moves to a cluster that still holds it (ResidencyDrift) — with no edit of anything."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from harness import Fleet, deployment_workload, gpucluster
from world import NS, T0

from tenbin.api import ClusterReason

DAY = 86_400.0
SAKURA, KDDI = "sakura-ishikari", "kddi-osaka"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def test_a_lapsed_attestation_moves_the_work_that_needs_it_after_one_warning() -> None:
    async def run() -> None:
        # both claim ismap themselves: not enough once the policy attests it
        f = Fleet({"baseCurrency": "JPY", "attestationWarningDays": 1, "attestations": [
                      {"label": "ismap", "providers": ["sakura"], "validUntil": iso(T0 + 2 * DAY),
                       "evidence": "ISMAP C22-0042"},
                      {"label": "ismap", "clusters": [KDDI], "validUntil": iso(T0 + 365 * DAY)}]},
                  [gpucluster(SAKURA, 300.0, residency_labels=("ismap",)),  # the cheaper one: chosen first
                   gpucluster(KDDI, 500.0, residency_labels=("ismap",))])
        await f.start()
        f.hub.create(deployment_workload("serve", NS, residency={"dataClassification": "Confidential",
                                                                 "requiredLabels": ["ismap"]}))
        await f.rounds(4)

        def where() -> tuple[str | None, str | None]:
            st = f.status(NS, "serve")
            return (st.get("placement") or {}).get("cluster"), st.get("phase")

        def said(reason: str) -> list[str]:
            return [e[3] for e in f.hub.events if e[0] == f"/{SAKURA}" and e[2] == reason]

        assert where() == (SAKURA, "Running")
        assert not said(ClusterReason.ATTESTATION_LAPSING)
        f.clock.advance(1.5 * DAY)  # inside the one-day window before the lapse
        await f.rounds(3)
        [warning] = said(ClusterReason.ATTESTATION_LAPSING)
        assert "ISMAP C22-0042" in warning and f"{NS}/serve" in warning
        assert where() == (SAKURA, "Running")  # not yet

        f.clock.advance(0.5 * DAY)
        await f.rounds(8)
        assert where() == (KDDI, "Running")
        [lapsed] = said(ClusterReason.ATTESTATION_LAPSED)
        assert f"{NS}/serve" in lapsed
        history = f.status(NS, "serve")["history"]
        assert [h.get("reason") for h in history if h["event"] == "Migrated"] == ["ResidencyDrift"]
        assert len(said(ClusterReason.ATTESTATION_LAPSING)) == 1  # once

    asyncio.run(run())
