"""Fixtures for the Karmada backend: a real Karmada on the session fleet, GPUClusters that reach the members
through it, the real `tenbin run` process.

The GPUClusters here are this module's own (``k-*``, label ``tenbin.io/backend: karmada``; the latency test
adds a direct ``d-*`` one for a while) and every workload selects them by label.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import yaml
from kbackend import MEMBERS, delete_gpuclusters, gpuclusters, karmada_name, reaches_members_directly

from operator_harness import ROOT, OperatorProcess, hub_json
from tenbin.testbed.fleet import Fleet, wait_until
from tenbin.testbed.karmada import Karmada


@pytest.fixture(scope="module")
def karmada(fleet: Fleet) -> Iterator[Karmada]:
    """A real Karmada control plane on the session fleet, every member joined in Push mode."""
    k = Karmada.up(fleet, log=lambda _m: None)
    try:
        yield k
    finally:
        k.down()


@pytest.fixture(scope="module")
def khub(fleet: Fleet, karmada: Karmada) -> Iterator[Fleet]:
    """The hub with Tenbin's CRDs, the default policy and this module's GPUClusters (removed afterwards).

    GPUClusters other tests left that reach the same members directly are set aside for the module and put
    back afterwards: one member registered twice (directly and through Karmada) makes the direct one treat
    Karmada's copies as stale copies of its own.
    """
    fleet.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    fleet.wait_established("crd", "-l", "app.kubernetes.io/part-of=tenbin")
    fleet.kubectl("apply", "-f", str(ROOT / "examples" / "policy" / "default.yaml"))
    parked = [{"apiVersion": d["apiVersion"], "kind": d["kind"],
               "metadata": {"name": d["metadata"]["name"], "labels": d["metadata"].get("labels") or {}},
               "spec": d["spec"]}
              for d in hub_json(fleet, "gpuclusters")["items"] if reaches_members_directly(d)]
    delete_gpuclusters(fleet, [d["metadata"]["name"] for d in parked])
    docs = gpuclusters()
    fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    try:
        yield fleet
    finally:
        delete_gpuclusters(fleet, [d["metadata"]["name"] for d in docs])
        if parked:
            fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(parked))


@pytest.fixture(scope="module")
def operator(khub: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(khub, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    try:
        wait_until("Karmada-backed GPUClusters Ready", lambda: all(
            (hub_json(khub, "gpucluster", karmada_name(m)).get("status") or {}).get("phase") == "Ready"
            for m in MEMBERS), timeout=60)
        yield op
    finally:
        op.stop()


@pytest.fixture
def ns(khub: Fleet, karmada: Karmada) -> Iterator[str]:
    """A fresh hub namespace; its AIWorkloads are deleted (and awaited) afterwards, and nothing Tenbin put
    into Karmada for them may be left behind."""
    name = f"k-{uuid.uuid4().hex[:8]}"
    khub.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        khub.kubectl("delete", "aiworkloads", "--all", "-n", name, "--wait=false", check=False)
        wait_until(f"AIWorkloads in {name} gone",
                   lambda: not hub_json(khub, "aiworkloads", "-n", name)["items"], timeout=90)
        karmada.kubectl("delete", "propagationpolicies,jobs", "--all", "-n", name, "--wait=false", check=False)
        khub.kubectl("delete", "namespace", name, "--wait=false", check=False)
