"""Deleting a GPUCluster whose member does not answer, driven through the real `Controller` against the
in-memory hub and member: the member is let go after `delete_grace_seconds` with an event naming what stays —
unless it holds a run-once copy of work that is not finished. Such a copy may still be running there; once
the GPUCluster is gone nothing would keep the work from starting elsewhere as well (the random simulation,
seed 6, found exactly that). So the deletion waits for a fence, says so once, and goes once fenced."""

from __future__ import annotations

import asyncio

from test_races import MEMBER, deliver, fleet, job, round_
from world import CONFIG, NS

from tenbin.api import ClusterReason


def test_a_deleted_member_holding_a_jobs_copy_is_let_go_only_once_fenced() -> None:
    async def run() -> None:
        hub, member, ctl, clock = fleet()
        await ctl.seed()
        await deliver(hub, ctl)
        await round_(hub, member, ctl, clock)
        hub.create(job("train", 1))
        await deliver(hub, ctl)
        for _ in range(3):
            await round_(hub, member, ctl, clock)
        assert hub.get("AIWorkload", NS, "train")["status"]["phase"] == "Running"  # type: ignore[index]

        member.reachable = False
        hub.delete("GPUCluster", None, MEMBER)
        await deliver(hub, ctl)

        async def wait(seconds: float) -> None:
            for _ in range(int(seconds / CONFIG.resync_seconds)):
                await round_(hub, member, ctl, clock)
                for _ in range(5):
                    await asyncio.sleep(0)  # the drain task runs on the clock's sleeps

        def events(reason: str) -> list[str]:
            return [e[3] for e in hub.events if e[0] == f"/{MEMBER}" and e[2] == reason]

        await wait(CONFIG.delete_grace_seconds * 4)
        assert hub.get("GPUCluster", None, MEMBER) is not None, "let go while its Job may still run there"
        [said] = events(ClusterReason.DELETION_AWAITS_FENCE)
        assert f"Job {NS}/train" in said and "tenbin.io/fenced=true" in said
        assert not events(ClusterReason.LEFT_IN_MEMBER)

        hub.merge("GPUCluster", None, MEMBER, {"metadata": {"annotations": {"tenbin.io/fenced": "true"}}})
        await deliver(hub, ctl)
        await wait(CONFIG.resync_seconds * 4)
        assert hub.get("GPUCluster", None, MEMBER) is None
        [left] = events(ClusterReason.LEFT_IN_MEMBER)
        assert f"Job {NS}/train" in left

    asyncio.run(run())
