"""The generated CRDs are structural-looking, bounded, deterministic and in sync with crds/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from helpers import ROOT
from tenbin.api import KINDS
from tenbin.api.crdgen import SchemaError, crd_for, crds_command, generate, to_structural

CRDS = {name: yaml.safe_load(text) for name, text in generate().items()}


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}.*")


def all_nodes() -> list[tuple[str, str, dict[str, Any]]]:
    out: list[tuple[str, str, dict[str, Any]]] = []
    for crd in CRDS.values():
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        out.extend((crd["spec"]["names"]["kind"], p, n) for p, n in nodes(root))
    return out


NODES = all_nodes()


def test_one_crd_per_kind_with_expected_names() -> None:
    assert sorted(CRDS) == sorted(f"tenbin.io_{k.plural}.yaml" for k in KINDS.values())
    for info in KINDS.values():
        spec = CRDS[f"tenbin.io_{info.plural}.yaml"]["spec"]
        assert spec["scope"] == ("Namespaced" if info.namespaced else "Cluster")
        assert spec["names"]["shortNames"] == list(info.short_names)
        assert "tenbin" in spec["names"]["categories"]
        version = spec["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert version["served"] and version["storage"]


@pytest.mark.parametrize(("kind", "short"), [("AIWorkload", "aiw"), ("GPUCluster", "gpuc")])
def test_contract_short_names(kind: str, short: str) -> None:
    assert short in KINDS[kind].short_names


def test_no_json_schema_leftovers() -> None:
    for kind, path, node in NODES:
        for key in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const", "propertyNames", "uniqueItems"):
            assert key not in node, f"{kind}{path}: {key}"
        if "properties" in node:
            assert node.get("additionalProperties") is not False, f"{kind}{path}"
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(key, True), bool), f"{kind}{path}: {key} must be boolean (OpenAPI v3.0)"


def test_every_node_has_a_type_and_every_collection_is_bounded() -> None:
    for kind, path, node in NODES:
        preserve = node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node, f"{kind}{path}"
        t = node["type"]
        if t == "array":
            assert "maxItems" in node, f"{kind}{path}"
        if t == "string" and path not in (".apiVersion", ".kind"):  # the apiserver owns those two
            assert "maxLength" in node or "enum" in node, f"{kind}{path}"
        if t == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{kind}{path}"
        if t == "object" and path not in ("", ".metadata") and not preserve:
            assert "properties" in node or "additionalProperties" in node, f"{kind}{path}"


def test_every_field_has_a_description() -> None:
    """`kubectl explain` is the user's manual: every field says what it is (apiVersion, kind and metadata are
    the apiserver's own; items and map values are described by the field that holds them)."""
    missing = [f"{kind}{path}" for kind, path, node in NODES
               if path not in ("", ".apiVersion", ".kind", ".metadata") and not path.endswith(("[]", ".*"))
               and not path.startswith(".metadata.") and not node.get("description")]
    assert missing == []


def test_lists_declare_their_merge_semantics() -> None:
    for kind, path, node in NODES:
        if node.get("type") == "array" and node.get("items", {}).get("type") != "object":
            assert node.get("x-kubernetes-list-type") == "set" or path.endswith(".values"), f"{kind}{path}"
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", [])), f"{kind}{path}: map keys must be required"


def test_nullable_fields_are_optional() -> None:
    for kind, path, node in NODES:
        for name in node.get("required", []):
            assert not node["properties"][name].get("nullable"), f"{kind}{path}.{name}"


def test_embedded_template_and_contract_patterns() -> None:
    aiw = CRDS["tenbin.io_aiworkloads.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = aiw["properties"]["spec"]
    tpl = spec["properties"]["template"]
    assert tpl["x-kubernetes-embedded-resource"] is True
    assert tpl["x-kubernetes-preserve-unknown-fields"] is True
    gpuc = CRDS["tenbin.io_gpuclusters.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    gspec = gpuc["properties"]["spec"]
    assert gspec["properties"]["jurisdiction"]["pattern"] == "^[A-Z]{2}$"
    assert gspec["properties"]["gpus"]["items"]["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    assert set(gspec["required"]) >= {"tier", "jurisdiction"}
    assert spec["properties"]["gpu"]["properties"]["count"]["minimum"] == 1


def test_cel_rules_sit_on_bounded_nodes() -> None:
    found = 0
    for kind, path, node in NODES:
        for rule in node.get("x-kubernetes-validations", []):
            found += 1
            assert rule["rule"] and rule["message"], f"{kind}{path}"
    assert found >= 4


def test_printer_columns_from_the_issue() -> None:
    def cols(file: str) -> list[str]:
        return [c["name"] for c in CRDS[file]["spec"]["versions"][0]["additionalPrinterColumns"]]

    assert {"Phase", "Cluster", "GPUs", "Model", "Price/GPU-h", "Age"} <= set(cols("tenbin.io_aiworkloads.yaml"))
    assert {"Tier", "Jurisdiction", "Free GPUs", "Phase"} <= set(cols("tenbin.io_gpuclusters.yaml"))
    for crd in CRDS.values():
        v = crd["spec"]["versions"][0]
        root = v["schema"]["openAPIV3Schema"]
        for c in v["additionalPrinterColumns"]:
            node = root
            for part in c["jsonPath"].strip(".").split("."):
                if part == "metadata" or node.get("type") != "object" or "properties" not in node:
                    break
                assert part in node["properties"], c
                node = node["properties"][part]


def test_generation_is_deterministic() -> None:
    assert generate() == generate()


def test_committed_crds_match_the_models() -> None:
    for name, text in generate().items():
        assert (ROOT / "crds" / name).read_text() == text, f"crds/{name} is stale: run `make crds`"


def test_crds_command_writes_then_check_detects_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "crds"
    assert crds_command(out, check=True) == 1  # nothing there yet
    assert crds_command(out, check=False) == 0
    assert crds_command(out, check=True) == 0
    victim = sorted(out.iterdir())[0]
    victim.write_text(victim.read_text().replace("maxItems", "minItems", 1))
    capsys.readouterr()
    assert crds_command(out, check=True) == 1
    assert victim.name in capsys.readouterr().err
    before = {p.name: p.read_text() for p in out.iterdir()}
    assert crds_command(out, check=True) == 1
    assert before == {p.name: p.read_text() for p in out.iterdir()}  # check writes nothing
    (out / "tenbin.io_stale.yaml").write_text("x")
    crds_command(out, check=False)
    assert crds_command(out, check=True) == 1


class _Inner(BaseModel):
    x: int


class _Outer(BaseModel):
    a: _Inner | None = None
    b: list[int] = []
    c: int | str = 0


def test_to_structural_rewrites_and_refuses_unions() -> None:
    schema = _Outer.model_json_schema()
    schema["properties"].pop("c")
    out = to_structural(schema)
    assert out["properties"]["a"]["nullable"] is True
    assert out["properties"]["a"]["properties"]["x"] == {"type": "integer"}
    assert "title" not in out
    excl = to_structural({"type": "number", "exclusiveMinimum": 0, "title": "t"})
    assert excl == {"type": "number", "minimum": 0, "exclusiveMinimum": True}
    s = to_structural({"type": "array", "items": {"type": "string", "maxLength": 3}, "uniqueItems": True})
    assert s["x-kubernetes-list-type"] == "set" and "uniqueItems" not in s
    with pytest.raises(SchemaError):
        to_structural(_Outer.model_json_schema())


def test_crd_for_uses_the_kind_metadata() -> None:
    for info in KINDS.values():
        crd = crd_for(info)
        assert crd["metadata"]["name"] == f"{info.plural}.tenbin.io"
        assert crd["spec"]["names"]["kind"] == info.kind
