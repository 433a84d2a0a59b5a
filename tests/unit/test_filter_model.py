from __future__ import annotations

from typing import Any

import pytest

from helpers import cluster, run_filter, workload
from tenbin.scheduling import reasons as R
from tenbin.scheduling.plugins import ModelFilter

C = cluster("c", gpus=[("H100-80GB", 8, 1, "JPY"), ("A100-40GB", 8, 1, "JPY"), ("H200-141GB", 8, 1, "JPY")])


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, {}),
        ({"models": ["H100-80GB"]}, {"A100-40GB": (R.model_not_requested("A100-40GB", ["H100-80GB"]),),
                                     "H200-141GB": (R.model_not_requested("H200-141GB", ["H100-80GB"]),)}),
        ({"min_memory_gib": 80}, {"A100-40GB": (R.too_little_memory("A100-40GB", 40, 80),)}),
        ({"min_memory_gib": 141}, {"A100-40GB": (R.too_little_memory("A100-40GB", 40, 141),),
                                   "H100-80GB": (R.too_little_memory("H100-80GB", 80, 141),)}),
        ({"models": ["A100-40GB", "H200-141GB"], "min_memory_gib": 100},
         {"H100-80GB": (R.model_not_requested("H100-80GB", ["A100-40GB", "H200-141GB"]),
                        R.too_little_memory("H100-80GB", 80, 100)),
          "A100-40GB": (R.too_little_memory("A100-40GB", 40, 100),)}),
        ({"models": ["B200-192GB"]}, {m: (R.model_not_requested(m, ["B200-192GB"]),)
                                      for m in ("H100-80GB", "A100-40GB", "H200-141GB")}),
    ],
)
def test_model_and_memory(kw: dict[str, Any], expected: dict[str, tuple[R.Reason, ...]]) -> None:
    got = run_filter(ModelFilter(), workload(**kw), [C])
    assert got == {("c", g.model): expected.get(g.model, ()) for g in C.spec.gpus}
