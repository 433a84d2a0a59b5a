"""Time as the services see it, one object injected into the controller: the real clock in `tenbin run`,
a fake one in the deterministic simulation (`tests/simulation`), so deadlines and backoffs can be driven."""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Wall time for timestamps written to the hub, monotonic time for intervals, and sleeping."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM = Clock()
