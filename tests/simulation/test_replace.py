"""`tenbin.io/replace` is idempotent, driven through the real `Controller` against the in-memory hub and
member: a value is acted on once and recorded in status.replaceRequest, the annotation stays (so Argo CD's
selfHeal, which would restore a removed one, never loops), and only a new value is a new request."""

from __future__ import annotations

import asyncio
from typing import Any

from test_races import deliver, fleet, job, round_
from world import NS

from tenbin.api import Reason


def test_a_replace_request_is_acted_on_once_per_value_and_the_annotation_stays() -> None:
    async def run() -> None:
        hub, member, ctl, clock = fleet()
        await ctl.seed()
        await deliver(hub, ctl)
        hub.create(job("train", 1))
        await deliver(hub, ctl)
        for _ in range(3):
            await round_(hub, member, ctl, clock)

        def body() -> dict[str, Any]:
            found = hub.get("AIWorkload", NS, "train")
            assert found is not None
            return found

        def requests() -> list[str]:
            return [e[3] for e in hub.events if e[0] == f"{NS}/train" and e[2] == Reason.REPLACE_REQUEST]

        assert body()["status"]["phase"] == "Running"
        for value, asked in (("2026-12-04", 1), ("2026-12-04", 1), ("again", 2)):
            hub.merge("AIWorkload", NS, "train", {"metadata": {"annotations": {"tenbin.io/replace": value}}})
            await deliver(hub, ctl)
            for _ in range(3):
                await round_(hub, member, ctl, clock)
            got = body()
            assert got["metadata"]["annotations"]["tenbin.io/replace"] == value
            assert got["status"]["replaceRequest"] == value
            # one member: nowhere else to go, said once per request
            assert len(requests()) == asked and "staying on" in requests()[-1], requests()

    asyncio.run(run())
