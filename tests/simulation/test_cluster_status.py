"""A GPUCluster's status as the operator writes it, driven through the real `Controller` against the in-memory
hub and member: written when the member's state changes, not every round (Argo CD refreshes an application
each time one of its objects changes)."""

from __future__ import annotations

import asyncio

from test_races import MEMBER, deliver, fleet, round_
from world import CONFIG


def test_an_unreachable_members_status_says_since_when_and_is_written_once() -> None:
    async def run() -> None:
        hub, member, ctl, clock = fleet()
        await ctl.seed()
        await deliver(hub, ctl)
        await round_(hub, member, ctl, clock)

        def status() -> dict[str, object]:
            found = hub.get("GPUCluster", None, MEMBER)
            assert found is not None
            return dict(found.get("status") or {})

        assert status()["phase"] == "Ready"
        member.reachable = False
        rounds = 0
        while status()["phase"] == "Ready":
            await round_(hub, member, ctl, clock)
            rounds += 1
            assert rounds * CONFIG.resync_seconds <= CONFIG.unreachable_after_seconds + CONFIG.resync_seconds
        first = status()
        assert str(first["message"]).startswith("unreachable since 20"), first["message"]
        written = first["lastSyncTime"]
        # rounds go by while it stays down, short of the heartbeat: nothing to write
        for _ in range(int(CONFIG.status_heartbeat_seconds / CONFIG.resync_seconds) - 2):
            await round_(hub, member, ctl, clock)
            assert status()["message"] == first["message"] and status()["lastSyncTime"] == written
        member.reachable = True
        await round_(hub, member, ctl, clock)
        assert status()["phase"] == "Ready" and status()["message"] == "member apiserver reachable"

    asyncio.run(run())
