"""docs/contract.md, the fixed part of the API, stays true: its examples are accepted by the models, the kinds
have the scope and short names it gives, and the score weights it fixes exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tenbin.api import AIWorkload, GPUCluster, PlacementPolicy
from tenbin.api.common import Weights

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = (ROOT / "docs" / "contract.md").read_text()
MODELS: dict[str, Any] = {"AIWorkload": AIWorkload, "GPUCluster": GPUCluster, "PlacementPolicy": PlacementPolicy}


def test_every_example_in_the_contract_is_accepted_by_the_models() -> None:
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", CONTRACT, re.S)]
    assert sorted(b["kind"] for b in blocks) == sorted(MODELS)
    for b in blocks:
        assert b["apiVersion"] == "tenbin.io/v1alpha1"
        MODELS[b["kind"]].model_validate(b)


def test_the_kinds_have_the_scope_and_short_names_the_contract_gives() -> None:
    crds = {c["spec"]["names"]["kind"]: c for p in sorted((ROOT / "crds").glob("*.yaml"))
            for c in [yaml.safe_load(p.read_text())]}
    headings = re.findall(r"^## (\w+) \((cluster-scoped|namespaced)(?:, short name `(\w+)`)?", CONTRACT, re.M)
    assert sorted(h[0] for h in headings) == sorted(MODELS)
    for kind, scope, short in headings:
        spec = crds[kind]["spec"]
        assert spec["group"] == "tenbin.io" and [v["name"] for v in spec["versions"]] == ["v1alpha1"]
        assert spec["scope"] == ("Cluster" if scope == "cluster-scoped" else "Namespaced"), kind
        if short:
            assert short in spec["names"].get("shortNames", []), kind


def test_the_weights_the_contract_fixes_exist() -> None:
    assert {"price", "availability"} <= set(Weights.model_fields)
