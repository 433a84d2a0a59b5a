"""Exchange rates over time, driven through the real `Controller` against the in-memory hub and members: a
placement records the rate it was priced at and when the policy says the rates were taken; a weaker yen
re-prices a dollar-priced cluster at once, and CostAware work leaves it when the saving clears its bar — and
not when it does not."""

from __future__ import annotations

import asyncio

from harness import Fleet, deployment_workload, gpucluster
from world import NS

AWS, KDDI = "aws-tokyo", "kddi-osaka"
AS_OF = "2026-12-01T09:00:00Z"


def test_a_weaker_yen_moves_cost_aware_work_off_the_dollar_priced_cluster() -> None:
    async def run() -> None:
        f = Fleet({"baseCurrency": "JPY", "exchangeRates": {"USD": 150.0}, "exchangeRatesSource": "MUFG TTM",
                   "exchangeRatesAsOf": AS_OF},
                  [gpucluster(AWS, 2.0, "USD"), gpucluster(KDDI, 400.0)])
        await f.start()
        f.hub.create(deployment_workload("serve", NS, residency={"dataClassification": "Internal"},
                                         migration={"policy": "CostAware", "minSavingsPercent": 20,
                                                    "cooldownSeconds": 1}))
        await f.rounds(4)
        placed = f.status(NS, "serve")["placement"]
        assert placed["cluster"] == AWS and placed["pricePerGPUHour"] == 300.0
        assert (placed["listPricePerGPUHour"], placed["listCurrency"], placed["exchangeRate"]) == (2.0, "USD", 150.0)
        assert placed["exchangeRatesAsOf"] == AS_OF

        # 2.0 USD at 190 = 380 JPY, still cheaper than 400: stays
        f.hub.merge("PlacementPolicy", None, "default", {"spec": {"exchangeRates": {"USD": 190.0}}})
        await f.deliver()
        await f.rounds(10)
        assert f.status(NS, "serve")["placement"]["cluster"] == AWS
        # at 240: 480 JPY against 400, a saving of 16.7 %, under the 20 % bar: stays
        f.hub.merge("PlacementPolicy", None, "default", {"spec": {"exchangeRates": {"USD": 240.0}}})
        await f.deliver()
        await f.rounds(10)
        assert f.status(NS, "serve")["placement"]["cluster"] == AWS
        # at 260: 520 JPY, a saving of 23 %: moves, and the new placement says the rate it was priced at
        f.hub.merge("PlacementPolicy", None, "default", {"spec": {"exchangeRates": {"USD": 260.0},
                                                                  "exchangeRatesAsOf": "2026-12-04T09:00:00Z"}})
        await f.deliver()
        await f.rounds(12)
        st = f.status(NS, "serve")
        assert st["placement"]["cluster"] == KDDI and st["phase"] == "Running"
        assert (st["placement"]["exchangeRate"], st["placement"]["listCurrency"]) == (1.0, "JPY")
        assert "exchangeRatesAsOf" not in st["placement"]  # priced in the base currency: no rate applied
        moves = [h for h in st["history"] if h["event"] == "Migrated"]
        assert [(h.get("reason"), h.get("from")) for h in moves] == [("Cost", AWS)]

    asyncio.run(run())
