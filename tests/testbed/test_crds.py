"""The generated CRDs on a real kube-apiserver: they install, every example is accepted, invalid objects
are rejected with the field named, and what the apiserver hands back parses with the same models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import EXAMPLE_DIRS, INVALID, ROOT, Invalid
from tenbin.api import KINDS, parse_object

pytestmark = pytest.mark.testbed

CRDS = sorted((ROOT / "crds").glob("*.yaml"))


def _example_docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for d in EXAMPLE_DIRS:
        for f in sorted(d.glob("*.y*ml")):
            out.extend((f, doc) for doc in yaml.safe_load_all(f.read_text()) if doc)
    return out


@pytest.fixture(scope="module")
def crds_installed(fleet: Any) -> Any:
    for f in CRDS:
        fleet.kubectl("apply", "--server-side", "-f", str(f))
    names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in CRDS]
    fleet.wait_established(*(f"crd/{n}" for n in names))
    return fleet


@pytest.fixture(scope="module")
def examples_applied(crds_installed: Any) -> Any:
    fleet = crds_installed
    namespaces = sorted({d["metadata"].get("namespace") for _, d in _example_docs()} - {None})
    for ns in namespaces:
        manifest = fleet.kubectl("create", "namespace", ns, "--dry-run=client", "-o", "yaml").stdout
        fleet.kubectl("apply", "--server-side", "-f", "-", input=manifest)
    for d in EXAMPLE_DIRS:
        fleet.kubectl("apply", "--server-side", "-f", str(d))
    return fleet


def test_every_crd_is_established_and_structural(crds_installed: Any) -> None:
    assert len(CRDS) == len(KINDS)
    for f in CRDS:
        name = yaml.safe_load(f.read_text())["metadata"]["name"]
        crd = json.loads(crds_installed.kubectl("get", f"crd/{name}", "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", (name, conditions)
        assert conditions.get("NonStructuralSchema") in (None, "False"), (name, conditions)


def test_every_example_is_accepted_and_reads_back_as_a_valid_model(examples_applied: Any) -> None:
    fleet = examples_applied
    for path, doc in _example_docs():
        info = KINDS[doc["kind"]]
        args = ["get", f"{info.plural}.tenbin.io", doc["metadata"]["name"], "-o", "json"]
        if info.namespaced:
            args += ["-n", doc["metadata"]["namespace"]]
        stored = json.loads(fleet.kubectl(*args).stdout)
        obj = parse_object(stored)  # what the operator will read must validate with the same models
        assert obj.metadata.name == doc["metadata"]["name"], path
        assert set(doc["spec"]) <= set(stored["spec"]), path  # nothing the user wrote was pruned
        if doc["kind"] == "AIWorkload":
            assert stored["spec"]["template"] == doc["spec"]["template"], path  # embedded object kept whole


def test_schema_defaults_are_applied_by_the_apiserver(examples_applied: Any) -> None:
    # ct-segmentation sets neither replicas nor migration.cooldownSeconds: the CRD defaults fill them in
    stored = json.loads(examples_applied.kubectl("get", "aiw", "ct-segmentation", "-n", "medical", "-o",
                                                 "json").stdout)
    model_fields = KINDS["AIWorkload"].model.model_fields["spec"].annotation.model_fields  # type: ignore[union-attr]
    assert stored["spec"]["replicas"] == model_fields["replicas"].default
    assert "cooldownSeconds" in stored["spec"]["migration"]


def test_short_names_category_and_printer_columns(examples_applied: Any) -> None:
    fleet = examples_applied
    out = fleet.kubectl("get", "gpuc").stdout
    header = out.splitlines()[0].split()
    for col in ("TIER", "JURISDICTION", "FREE", "PHASE"):
        assert col in header, header
    fleet_names = {d["metadata"]["name"] for _, d in _example_docs() if d["kind"] == "GPUCluster"}
    assert fleet_names <= {line.split()[0] for line in out.splitlines()[1:]}
    aiw = fleet.kubectl("get", "aiw", "-A").stdout.splitlines()[0]
    for col in ("PHASE", "CLUSTER", "GPUS", "MODEL", "PRICE/GPU-H", "AGE"):
        assert col in aiw, aiw
    everything = fleet.kubectl("get", "tenbin", "-A", "-o", "name").stdout
    assert "gpucluster.tenbin.io/" in everything and "aiworkload.tenbin.io/" in everything


def test_cluster_scoped_and_namespaced_kinds(crds_installed: Any) -> None:
    res = crds_installed.kubectl("api-resources", "--api-group=tenbin.io", "-o", "wide").stdout
    rows = {line.split()[0]: line for line in res.splitlines()[1:]}
    for info in KINDS.values():
        assert info.plural in rows, res
        assert ("true" in rows[info.plural].split()) == info.namespaced, rows[info.plural]


@pytest.mark.parametrize("bad", INVALID, ids=[i.id for i in INVALID])
def test_invalid_object_is_rejected_naming_the_field(crds_installed: Any, bad: Invalid) -> None:
    res = crds_installed.kubectl("create", "-f", "-", input=json.dumps(bad.doc), check=False)
    assert res.returncode != 0, f"{bad.id} was accepted: {res.stdout}"
    assert bad.field in res.stderr, res.stderr
    # the same object must also fail the models, so `tenbin simulate` rejects what the apiserver does
    with pytest.raises(ValueError) as err:
        parse_object(bad.doc)
    assert (bad.model_field or bad.field) in str(err.value)

