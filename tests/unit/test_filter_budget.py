from __future__ import annotations

import pytest

from helpers import POLICY, cluster, run_filter, workload
from tenbin.scheduling import reasons as R
from tenbin.scheduling.plugins import BudgetFilter

RATE = POLICY.rates["USD"]


@pytest.mark.parametrize(
    ("price", "currency", "budget"),
    [
        (480, "JPY", None),
        (480, "JPY", (500, "JPY")),
        (480, "JPY", (480, "JPY")),      # equal is within budget
        (520, "JPY", (500, "JPY")),
        (3.0, "USD", (500, "JPY")),      # $3 = ¥450
        (3.9, "USD", (500, "JPY")),      # $3.9 = ¥585
        (480, "JPY", (3.0, "USD")),      # budget $3 = ¥450
        (0, "JPY", (0, "JPY")),
    ],
)
def test_budget_in_base_currency(price: float, currency: str, budget: tuple[float, str] | None) -> None:
    c = cluster("c", gpus=[("H100-80GB", 8, price, currency)])
    got = run_filter(BudgetFilter(), workload(budget=budget), [c])[("c", "H100-80GB")]
    to_base = {"JPY": 1.0, "USD": RATE}
    p = price * to_base[currency]
    if budget is None or p <= budget[0] * to_base[budget[1]]:
        assert got == ()
    else:
        assert got == (R.over_budget(p, budget[0] * to_base[budget[1]], "JPY"),)


def test_unknown_currencies_reject_instead_of_raising() -> None:
    c = cluster("c", gpus=[("H100-80GB", 8, 5, "GBP"), ("L4-24GB", 8, 100, "JPY")])
    got = run_filter(BudgetFilter(), workload(), [c])
    assert got[("c", "H100-80GB")] == (R.unpriced("GBP", "JPY"),)
    assert got[("c", "L4-24GB")] == ()
    got = run_filter(BudgetFilter(), workload(budget=(5, "CHF")), [c])
    assert got[("c", "H100-80GB")] == (R.unpriced("GBP", "JPY"), R.budget_currency_unknown("CHF", "JPY"))
    assert got[("c", "L4-24GB")] == (R.budget_currency_unknown("CHF", "JPY"),)
