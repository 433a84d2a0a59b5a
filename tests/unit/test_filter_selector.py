from __future__ import annotations

from typing import Any

import pytest

from helpers import cluster, run_filter, workload
from tenbin.api import LabelSelector
from tenbin.scheduling.plugins import SelectorFilter

FLEET = [
    cluster("a", labels={"alliance": "jp", "team": "ml"}),
    cluster("b", labels={"alliance": "jp"}),
    cluster("c", labels={"team": "web"}),
    cluster("d"),
]


@pytest.mark.parametrize(
    "selector",
    [
        {"matchLabels": {"alliance": "jp"}},
        {"matchLabels": {"alliance": "jp", "team": "ml"}},
        {"matchExpressions": [{"key": "team", "operator": "In", "values": ["ml", "web"]}]},
        {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["ml"]}]},
        {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
        {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
        {"matchLabels": {"alliance": "jp"}, "matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
        {"matchLabels": {"nobody": "x"}},
        {},
    ],
)
def test_selector_matches_like_the_scalar_semantics(selector: dict[str, Any]) -> None:
    got = run_filter(SelectorFilter(), workload(selector=selector), FLEET)
    sel = LabelSelector.model_validate(selector)
    for c in FLEET:
        passes = got[(c.metadata.name, "H100-80GB")] == ()
        assert passes == sel.matches(c.metadata.labels), c.metadata.name
        if not passes:
            assert got[(c.metadata.name, "H100-80GB")][0].category == "cluster selector"
