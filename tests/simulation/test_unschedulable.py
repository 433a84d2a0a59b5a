"""What an unschedulable AIWorkload says, driven through the real `Controller` against the in-memory hub and
member: waiting for room (Scheduled=False Unschedulable) or needing an edit because no cluster can ever take
it as written (NoClusterCanFit), which Argo CD shows as Progressing and Degraded."""

from __future__ import annotations

import asyncio

from test_races import deliver, fleet, job, round_
from world import NS

from tenbin.api import Reason


def test_waiting_for_room_and_ruled_out_by_residency_say_different_reasons() -> None:
    async def run() -> None:
        hub, member, ctl, clock = fleet()
        await ctl.seed()
        await deliver(hub, ctl)
        await round_(hub, member, ctl, clock)
        big = job("big", 8)
        big["spec"]["replicas"] = 2  # 16 GPUs on an 8-GPU member: no room
        big["spec"]["template"]["spec"]["parallelism"] = 2
        abroad = job("abroad", 1)
        abroad["spec"]["residency"] = {"dataClassification": "Internal", "jurisdictions": ["US"]}  # the member is JP
        for doc in (big, abroad):
            hub.create(doc)
        await deliver(hub, ctl)
        await round_(hub, member, ctl, clock)

        def scheduled(name: str) -> tuple[str, str]:
            found = hub.get("AIWorkload", NS, name)
            assert found is not None
            c = next(c for c in found["status"]["conditions"] if c["type"] == "Scheduled")
            return found["status"]["phase"], c["reason"]

        assert scheduled("big") == ("Unschedulable", Reason.UNSCHEDULABLE)
        assert scheduled("abroad") == ("Unschedulable", Reason.NO_CLUSTER_CAN_FIT)
        assert [e[2] for e in hub.events if e[0] == f"{NS}/abroad"] == [Reason.NO_CLUSTER_CAN_FIT]
        assert not member.objects  # neither went anywhere

    asyncio.run(run())
